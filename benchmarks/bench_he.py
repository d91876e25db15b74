"""Homomorphic-encryption primitives per backend, against plaintext NumPy in the same run.

For CKKS (TenSEAL, default parameters) and Paillier (python-paillier + gmpy2, 3072-bit
key) this times, median of repeats: encrypt, decrypt, decrypt_release, ciphertext +
ciphertext, ciphertext + plaintext, ciphertext x plaintext (element-wise), dot with an
``n x d`` plaintext matrix, sum, and serialisation, and records the serialised size.
The NumPy column is the same operation on plaintext arrays. A second table gives the
flooding noise CKKS adds on release for typical results, and a third the cost of plain
python-paillier encryption that fedscore's obfuscator precomputation replaces.

Run: ``python benchmarks/bench_he.py`` (``--smoke`` for tiny sizes and a small key).
"""

import secrets
import warnings

import gmpy2
import numpy as np
from _common import median_time, parse_args, write_results

from fedscore.he import CKKSContext, PaillierContext

# (n, d, repeats): vector length, columns of the dot matrix, timing repeats.
CKKS_SIZES = ((4096, 16, 5), (4096, 300, 3), (32768, 16, 3))
PAILLIER_SIZES = ((100, 4, 3), (1000, 4, 3))
SMOKE_SIZES = ((8, 2, 1),)
PAILLIER_KERNEL_SIZE = (2000, 10)  # enough terms for the worker processes to start
SMOKE_PAILLIER_KEY_BITS = 1024  # allowed with a warning; only to keep the smoke run fast
TIMING_RELEASE_BUDGET = 2**40  # timing repeats release far more values than one key should


def operations(context, x, y, w, matrix):
    """(name, encrypted operation, the same operation on plaintext) for one vector size."""
    enc_x, enc_y = context.encrypt(x), context.encrypt(y)
    product = enc_x * w
    data = product.to_bytes()
    bound = float(np.max(np.abs(x)) * np.max(np.abs(w))) + 1.0
    return [
        ("encrypt", lambda: context.encrypt(x), lambda: np.array(x)),
        ("decrypt", lambda: context.decrypt(enc_x), lambda: np.array(x)),
        ("decrypt_release (after x plain)", lambda: context.decrypt_release(product, bound),
         lambda: np.round(x * w, 12)),
        ("add ciphertext", lambda: enc_x + enc_y, lambda: x + y),
        ("add plaintext", lambda: enc_x + w, lambda: x + w),
        ("multiply by plaintext", lambda: enc_x * w, lambda: x * w),
        (f"dot with n x {matrix.shape[1]}", lambda: enc_x.dot(matrix), lambda: matrix.T @ x),
        ("sum", lambda: enc_x.sum(), lambda: x.sum()),
        ("to_bytes (after x plain)", lambda: product.to_bytes(), lambda: (x * w).tobytes()),
        ("load_vector", lambda: context.load_vector(data), lambda: np.frombuffer((x * w).tobytes())),
    ]


def time_backend(name, context, sizes, rng):
    rows = []
    for n, d, repeats in sizes:
        x, y, w = rng.uniform(-1, 1, (3, n))
        matrix = rng.normal(size=(n, d))
        for op, encrypted, plain in operations(context, x, y, w, matrix):
            seconds, _, result = median_time(encrypted, repeats)
            baseline, _, _ = median_time(plain, max(repeats, 5))
            size = len(result.to_bytes()) if hasattr(result, "to_bytes") else None
            rows.append([name, op, n, d, round(seconds * 1e3, 3), round(seconds / n * 1e6, 2),
                         round(baseline * 1e3, 4), round(seconds / baseline) if baseline else None, size])
            print(f"{name:9s} n={n:6d} {op:32s} {seconds * 1e3:10.2f} ms   numpy {baseline * 1e3:8.4f} ms")
        print(f"{name:9s} n={n:6d} ciphertext bytes per value: {len(context.encrypt(x).to_bytes()) / n:.1f}")
    return rows


def release_noise(context, rng, smoke):
    """Flooding noise (std) that CKKS adds on release, for typical results at these parameters."""
    n = 8 if smoke else 4096
    x = rng.uniform(-1, 1, n)
    enc = context.encrypt(x)
    cases = [
        ("fresh encryption", enc, 1.0),
        ("x * plaintext in [-1, 1]", enc * rng.uniform(-1, 1, n), 1.0),
        (f"dot, {n} rows, standard-normal column", enc.dot(rng.normal(size=(n, 1))), 4 * np.sqrt(n)),
    ]
    return [[label, n, bound, context.release_budget, f"{context.release_noise_std(v, bound, message_bound=1.0):.3g}"]
            for label, v, bound in cases]


def _one_exponentiation_per_entry(vector, matrix):
    """``Mᵀ[[v]]`` as fedscore computed it before the bucket method: one modular exponentiation per entry."""
    nsquare = vector.context._nsquare
    multipliers = [vector._signed_multipliers(row) for row in matrix]
    inverses = vector._inverses(multipliers)
    outputs = []
    for j in range(matrix.shape[1]):
        total = gmpy2.mpz(1)
        for c, inverse, row in zip(vector.ciphertexts, inverses, multipliers):
            if row[j]:
                total = total * gmpy2.powmod(c if row[j] > 0 else inverse, abs(row[j]), nsquare) % nsquare
        outputs.append(total)
    return outputs


def _five_bit_fixed_base(context, count):
    """Obfuscators as fedscore drew them before the full comb table: BGMW with 5-bit windows, in this process."""
    w, bits, modulus = 5, context._exponent_bits, context._nsquare
    powers = [context._obfuscator_base.base]
    for _ in range(-(-bits // w) - 1):
        powers.append(gmpy2.powmod(powers[-1], 1 << w, modulus))
    out = []
    for _ in range(count):
        exponent, buckets = secrets.randbits(bits), [gmpy2.mpz(1)] * (1 << w)
        for i, power in enumerate(powers):
            digit = (exponent >> (w * i)) & ((1 << w) - 1)
            if digit:
                buckets[digit] = buckets[digit] * power % modulus
        result = running = gmpy2.mpz(1)
        for digit in range((1 << w) - 1, 0, -1):
            running = running * buckets[digit] % modulus
            result = result * running % modulus
        out.append(result)
    return out


def paillier_kernels(context, rng, smoke):
    """The kernels of a Paillier epoch and of the private ranking, now against how they were computed before."""
    n, d = (40, 3) if smoke else PAILLIER_KERNEL_SIZE
    x, scale = rng.uniform(-1, 1, n), 1000.0
    matrix = rng.normal(size=(n, d))
    context.encrypt(x[:1])  # builds the key's fixed-base table once, as a run does
    enc = context.encrypt(x)
    scaled = enc._signed_multipliers(np.array([scale]))[0]
    cases = [
        (f"product Mᵀ[[v]], n x {d}", lambda: _one_exponentiation_per_entry(enc, matrix), lambda: enc.dot(matrix),
         n * d),
        ("obfuscators (encryption's cost)", lambda: _five_bit_fixed_base(context, n),
         lambda: context._obfuscators(n), n),
        ("scalar multiplication", lambda: [gmpy2.powmod(c, scaled, context._nsquare) for c in enc.ciphertexts],
         lambda: enc * scale, n),
    ]
    rows = []
    for name, before, now, terms in cases:
        old, _, _ = median_time(before, 1)
        new, _, _ = median_time(now, 3)
        rows.append([context.key_bits, name, n, round(old * 1e6 / terms, 1), round(new * 1e6 / terms, 1),
                     round(old / new, 1)])
        print(f"paillier {name:36s} before {old:8.2f} s   now {new:8.2f} s   x{old / new:.1f}")
    return rows


def main():
    args = parse_args(__doc__.splitlines()[0])
    rng = np.random.default_rng(0)
    ckks = CKKSContext(release_budget=TIMING_RELEASE_BUDGET)
    if args.smoke:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            paillier = PaillierContext(key_bits=SMOKE_PAILLIER_KEY_BITS, allow_weak_key=True)
    else:
        paillier = PaillierContext()
    ckks_sizes = SMOKE_SIZES if args.smoke else CKKS_SIZES
    paillier_sizes = SMOKE_SIZES if args.smoke else PAILLIER_SIZES
    rows = time_backend("ckks", ckks, ckks_sizes, rng) + time_backend("paillier", paillier, paillier_sizes, rng)

    reference_n = 8 if args.smoke else 50
    values = rng.uniform(-1, 1, reference_n).tolist()
    phe_seconds, _, _ = median_time(lambda: [paillier.public_key.encrypt(v) for v in values], 1)
    ours, _, _ = median_time(lambda: paillier.encrypt(values), 3)
    reference = [[paillier.key_bits, round(phe_seconds / reference_n * 1e3, 2), round(ours / reference_n * 1e3, 2),
                  round(phe_seconds / ours, 1)]]
    print(f"paillier encrypt per value: phe {reference[0][1]} ms, fedscore {reference[0][2]} ms")

    kernels = paillier_kernels(paillier, rng, args.smoke)

    tables = [
        {
            "title": "HE primitives (median wall time; the NumPy column is the same operation in plaintext)",
            "columns": ["backend", "operation", "n", "d", "ms", "us per value", "numpy ms", "x numpy", "result bytes"],
            "rows": rows,
        },
        {
            "title": "CKKS flooding noise added by decrypt_release (std, message_bound = 1)",
            "columns": ["result", "n", "bound", "release budget", "noise std"],
            "rows": release_noise(CKKSContext(), rng, args.smoke),
        },
        {
            "title": "Paillier encryption per value: python-paillier vs fedscore (DJN + fixed-base table)",
            "columns": ["key bits", "phe ms", "fedscore ms", "speed-up"],
            "rows": reference,
        },
        {
            "title": "Paillier epoch and ranking kernels: before (one exponentiation per product entry, 5-bit "
                     "fixed-base table, one process) against now (Pippenger's buckets, 8-bit comb table, a worker "
                     "process per core), same run, µs per entry or value (wall)",
            "columns": ["key bits", "kernel", "n", "before µs", "now µs", "speed-up"],
            "rows": kernels,
        },
    ]
    notes = [
        f"CKKS: N = {ckks.poly_modulus_degree}, primes {list(ckks.coeff_mod_bit_sizes)}, "
        f"scale 2^{ckks.global_scale_bits}, {ckks.slots} values per ciphertext, no Galois keys "
        "(dot and sum leave partial sums, one ciphertext per output).",
        f"Paillier: {paillier.key_bits}-bit key, fixed point 2^-{paillier.precision_bits}; products are re-randomised "
        "in to_bytes, which is why it costs about one encryption per value after a multiplication.",
        "Threads: CKKS encryption, products and decryption, and Paillier decryption, run on every core.",
    ]
    path = write_results("he", args.out, tables, notes, smoke=args.smoke)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
