"""Paillier through python-paillier (with gmpy2): exact arithmetic on fixed-point vectors.

Encoding
--------
A vector of floats is encoded as integers ``round(x * 2^e)`` modulo ``n`` with one
exponent ``e`` for the whole vector (``precision_bits`` for a fresh encryption; a
plaintext multiplication adds ``precision_bits`` more, as in python-paillier's
``EncodedNumber``). As in python-paillier, integers above ``n - n // 3`` stand for
negatives and the band between ``n // 3`` and ``n - n // 3`` is overflow, which
decryption reports instead of returning a wrong number.

Fast paths
----------
* Encryption draws its randomness as ``h_s^a mod n^2`` with ``h_s = (-x^2)^n`` fixed
  per context and ``a`` a random exponent of ``ceil(|n| / 2)`` bits (Damgård, Jurik
  and Nielsen, "A generalization of Paillier's public-key system with applications to
  electronic voting", IJIS 2010), computed with a fixed-base table of every window's
  every digit (:class:`_FixedBase`: one multiplication per 8-bit window). This replaces
  the full-size ``r^n mod n^2`` that dominates python-paillier's encryption. Large
  batches are drawn in worker processes, one per core (:func:`_obfuscator_batch`).
* Decryption uses python-paillier's CRT decryption, with the two big exponentiations
  done for the whole batch by gmpy2's list functions, which release the interpreter
  lock and therefore run on every core.
* Adding a plaintext costs one multiplication: ``c * (1 + n m) mod n^2`` (g = n + 1).
* A product ``Mᵀ[[v]]`` is one multi-exponentiation ``Π c_i^(m_ij)`` per column, by
  Pippenger's bucket method (:func:`_multi_power`): the squarings are shared by every
  ciphertext, so a column costs about ``n · bits / w`` multiplications instead of
  ``n · 1.5 bits`` for ``n`` separate exponentiations.

Function privacy
----------------
A ciphertext ``c^k`` lets the key owner, who can recover the randomness of any
ciphertext, find a short ``k`` by a discrete logarithm. Vectors that went through a
plaintext multiplication are therefore re-randomised by :meth:`PaillierVector.to_bytes`
before they leave the process.
"""

import json
import math
import secrets
import warnings

import gmpy2
import numpy as np
from phe import paillier

from ..errors import CryptoError
from ..params import PAILLIER_KEY_BITS, PAILLIER_MIN_KEY_BITS
from . import _envelope
from ..parallel import WORKERS, parallel_map
from ._validate import plain_matrix, plain_operand, release_bound, values_to_encrypt
from .base import EncryptedVector, HEContext

# Fraction bits of the fixed-point encoding: a resolution of 2^-40 (about 1e-12), finer
# than float64's own rounding for values above 2^13, at the cost of ~40-bit exponents in
# plaintext multiplications.
PRECISION_BITS = 40

_FIXED_BASE_WINDOW_BITS = 8
"""Window of the fixed-base table: |a| / 8 multiplications per encryption, for a table of
255 powers per window (38 MB for a 3072-bit key, built once per process in about 0.2 s)."""

PARALLEL_MIN_ENCRYPTIONS = 256
"""From this many obfuscators on (about a second of work), they are drawn in worker
processes: the workers (a fresh interpreter each) start once and are kept for later batches."""


def _check_key_bits(key_bits, allow_weak_key):
    """Refuse keys below the 128-bit level unless explicitly allowed (then warn)."""
    if key_bits >= PAILLIER_KEY_BITS:
        return
    if not allow_weak_key:
        raise CryptoError(
            f"a {key_bits}-bit Paillier key is below 128-bit security ({PAILLIER_KEY_BITS} bits, "
            f"NIST SP 800-57); pass allow_weak_key=True only for tests or legacy peers"
        )
    strength = "112-bit" if key_bits >= PAILLIER_MIN_KEY_BITS else "well under 112-bit"
    warnings.warn(f"{key_bits}-bit Paillier key: {strength} security only", UserWarning, stacklevel=3)


def _fixed_point(values, exponent):
    """Return ``round(values * 2^exponent)`` as exact Python integers.

    NumPy does the work while the results fit in 62 bits (the usual case); beyond that
    each float is split into its 53-bit integer mantissa and a power of two.
    """
    if values.size == 0 or np.max(np.abs(values)) < 2.0 ** (62 - exponent):
        return np.rint(np.ldexp(values, exponent)).astype(np.int64).tolist()
    encoded = []
    for value in values.tolist():
        mantissa, power = math.frexp(value)
        integer, shift = int(mantissa * 2**53), power - 53 + exponent
        encoded.append(integer << shift if shift >= 0 else (integer + (1 << (-shift - 1))) >> -shift)
    return encoded


def _int_bytes(value, width):
    return int(value).to_bytes(width, "big")


def _window_bits(count, bits):
    """The bucket window that makes :func:`_multi_power` cheapest: ``ceil(bits / w) (count + 2^(w+1))`` at its least."""
    return min(range(1, 17), key=lambda w: -(-bits // w) * (count + (2 << w)))


PARALLEL_MIN_PRODUCT_TERMS = 20_000
"""From this many (ciphertext, multiplier) pairs on, a product's columns are shared among
worker processes: below it, sending the ciphertexts to them would not pay."""


def _multi_power_columns(bases, inverses, columns, modulus):
    """In a worker process: :func:`_multi_power` of each column of multipliers, as ints."""
    modulus = gmpy2.mpz(modulus)
    bases = [gmpy2.mpz(b) for b in bases]
    inverses = [None if i is None else gmpy2.mpz(i) for i in inverses]
    return [int(_multi_power(bases, inverses, column, modulus)) for column in columns]


def _multi_powers(bases, inverses, columns, modulus):
    """:func:`_multi_power` of each column of ``columns``, the columns shared among worker processes when large."""
    if WORKERS == 1 or len(columns) < 2 or len(bases) * len(columns) < PARALLEL_MIN_PRODUCT_TERMS:
        return [_multi_power(bases, inverses, column, modulus) for column in columns]
    from joblib import Parallel, delayed

    shares = np.array_split(np.arange(len(columns)), WORKERS)
    plain_bases, plain_inverses = [int(b) for b in bases], [None if i is None else int(i) for i in inverses]
    parts = Parallel(n_jobs=WORKERS, backend="loky")(
        delayed(_multi_power_columns)(plain_bases, plain_inverses, [columns[j] for j in share], int(modulus))
        for share in shares if len(share))
    return [gmpy2.mpz(value) for part in parts for value in part]


def _multi_power(bases, inverses, exponents, modulus):
    """``Π bases_i ^ exponents_i mod modulus`` for signed integer exponents, by Pippenger's bucket method.

    ``inverses[i]`` is ``bases[i]^-1`` wherever ``exponents[i] < 0``. The exponents are
    cut into windows of ``w`` bits from the top; for each window every base goes into the
    bucket of its digit, and ``Π_d bucket_d^d`` is formed with ``2^(w+1)`` multiplications
    by running products; ``w`` squarings move to the next window (D. J. Bernstein,
    "Pippenger's exponentiation algorithm", 2002; Handbook of Applied Cryptography §14.6).
    The result is the same integer as the product of separate exponentiations.
    """
    terms = [(base if e > 0 else inverse, abs(e)) for base, inverse, e in zip(bases, inverses, exponents) if e]
    if not terms:
        return gmpy2.mpz(1)
    bits = max(e for _, e in terms).bit_length()
    w = _window_bits(len(terms), bits)
    mask = (1 << w) - 1
    result = None
    for shift in range(w * ((bits - 1) // w), -1, -w):
        if result is not None:
            for _ in range(w):
                result = result * result % modulus
        buckets = [None] * (mask + 1)
        for base, e in terms:
            digit = (e >> shift) & mask
            if digit:
                held = buckets[digit]
                buckets[digit] = base if held is None else held * base % modulus
        running = window = None
        for digit in range(mask, 0, -1):
            if buckets[digit] is not None:
                running = buckets[digit] if running is None else running * buckets[digit] % modulus
            if running is not None:
                window = running if window is None else window * running % modulus
        if window is not None:
            result = window if result is None else result * window % modulus
    return gmpy2.mpz(1) if result is None else result


class _FixedBase:
    """``base^a mod modulus`` for many ``a`` of at most ``exponent_bits`` bits.

    Precomputes ``base^(d 2^(w i))`` for every window ``i`` and digit ``d`` once; each
    exponentiation then costs one modular multiplication per window, ``exponent_bits / w``
    (the fixed-base comb with a full table: Menezes et al., Handbook of Applied
    Cryptography, §14.6.3).
    """

    def __init__(self, base, modulus, exponent_bits, window_bits=_FIXED_BASE_WINDOW_BITS):
        self.base, self.modulus, self.exponent_bits = gmpy2.mpz(base), gmpy2.mpz(modulus), exponent_bits
        self.window_bits = window_bits
        self.digits = -(-exponent_bits // window_bits)
        self.table = []
        power = self.base  # base^(2^(w i)) for the current window i
        for _ in range(self.digits):
            row = [None, power]
            for _ in range(2, 1 << window_bits):
                row.append(row[-1] * power % self.modulus)
            self.table.append(row)
            power = row[-1] * power % self.modulus
        self.digit_mask = (1 << window_bits) - 1

    def power(self, exponent):
        modulus, mask, width = self.modulus, self.digit_mask, self.window_bits
        result = None
        for i, row in enumerate(self.table):
            digit = (exponent >> (width * i)) & mask
            if digit:
                result = row[digit] if result is None else result * row[digit] % modulus
        return gmpy2.mpz(1) if result is None else result

    def random_powers(self, count):
        """``count`` powers by fresh exponents from the operating system's generator."""
        return [self.power(secrets.randbits(self.exponent_bits)) for _ in range(count)]


_WORKER_TABLES = {}
"""A worker process's fixed-base tables, by (base, modulus), most recently used last: built at a
key's first batch and kept for the next (a local run alternates the brand's and the media's keys)."""

_WORKER_TABLES_KEPT = 3
"""Tables a worker keeps: a table is tens of MB, and a run encrypts under at most three keys."""


def _obfuscator_batch(base, modulus, exponent_bits, count):
    """In a worker process: ``count`` obfuscators ``base^a mod modulus``, as ints (the parent's :class:`_FixedBase`)."""
    table = _WORKER_TABLES.pop((base, modulus), None)
    if table is None:
        table = _FixedBase(base, modulus, exponent_bits)
        while len(_WORKER_TABLES) >= _WORKER_TABLES_KEPT:
            del _WORKER_TABLES[next(iter(_WORKER_TABLES))]
    _WORKER_TABLES[base, modulus] = table
    return [int(r) for r in table.random_powers(count)]


def _random_powers(table, count):
    """``table.random_powers(count)``, spread over worker processes (one per core) for large counts.

    The workers are joblib's reusable process pool (loky): started once, kept between
    batches, each drawing its exponents from its own operating-system generator.
    """
    if count < PARALLEL_MIN_ENCRYPTIONS or WORKERS == 1:
        return table.random_powers(count)
    from joblib import Parallel, delayed

    shares = [count // WORKERS + (k < count % WORKERS) for k in range(WORKERS)]
    batches = Parallel(n_jobs=WORKERS, backend="loky")(
        delayed(_obfuscator_batch)(int(table.base), int(table.modulus), table.exponent_bits, share)
        for share in shares)
    return [gmpy2.mpz(r) for batch in batches for r in batch]


class PaillierContext(HEContext):
    """A Paillier key pair (or its public key) with fixed-point encoding of floats.

    Parameters
    ----------
    key_bits : int
        Size of the modulus ``n``. Below :data:`~fedscore.params.PAILLIER_KEY_BITS`
        (3072, 128-bit security) only with ``allow_weak_key=True``, which warns.
    precision_bits : int
        Fraction bits of the fixed-point encoding.
    allow_weak_key : bool
        Accept a key shorter than 3072 bits (2048 is 112-bit; smaller only for tests).

    Attributes
    ----------
    public_key : phe.paillier.PaillierPublicKey
    private_key : phe.paillier.PaillierPrivateKey or None

    Examples
    --------
    >>> ctx = PaillierContext(key_bits=1024, allow_weak_key=True)  # doctest: +SKIP
    >>> ctx.decrypt(ctx.encrypt([1.5, -2.0]) * [2.0, 3.0])  # doctest: +SKIP
    array([ 3., -6.])
    """

    scheme = "paillier"

    def __init__(self, key_bits=PAILLIER_KEY_BITS, precision_bits=PRECISION_BITS, allow_weak_key=False):
        _check_key_bits(key_bits, allow_weak_key)
        public_key, private_key = paillier.generate_paillier_keypair(n_length=key_bits)
        self._setup(public_key, private_key, precision_bits, allow_weak_key)

    def _setup(self, public_key, private_key, precision_bits, allow_weak_key):
        self.public_key, self.private_key = public_key, private_key
        self.key_bits = public_key.n.bit_length()
        self.precision_bits = int(precision_bits)
        self.allow_weak_key = bool(allow_weak_key)
        self._n = gmpy2.mpz(public_key.n)
        self._nsquare = self._n * self._n
        self._max_int = self._n // 3
        self._width = (self._nsquare.bit_length() + 7) // 8
        self._fingerprint = _envelope.fingerprint(_int_bytes(public_key.n, (self.key_bits + 7) // 8))
        self._obfuscator_base = None  # built on first encryption; local to this process

    @property
    def fingerprint(self):
        return self._fingerprint

    @property
    def has_secret_key(self):
        return self.private_key is not None

    # --- keys and serialisation -------------------------------------------------------

    def public_context(self):
        public = PaillierContext.__new__(PaillierContext)
        public._setup(self.public_key, None, self.precision_bits, self.allow_weak_key)
        return public

    def to_bytes(self, include_secret_key=False):
        if include_secret_key and not self.has_secret_key:
            raise CryptoError("this Paillier context holds no secret key to serialise")
        meta = {"precision_bits": self.precision_bits, "allow_weak_key": self.allow_weak_key}
        width = (self.key_bits + 7) // 8
        fields = [json.dumps(meta).encode(), _int_bytes(self._n, width)]
        if include_secret_key:
            fields += [_int_bytes(self.private_key.p, width), _int_bytes(self.private_key.q, width)]
        return _envelope.pack(_envelope.KIND_CONTEXT, self.scheme, self._fingerprint, fields)

    @classmethod
    def _from_fields(cls, key_fingerprint, fields, *, allow_weak_key=None):
        """Rebuild a context from an opened envelope (see :func:`fedscore.he.load_context`).

        ``allow_weak_key`` is the receiver's policy: a key below 128-bit security is
        refused unless the receiver allows it, whatever its sender allowed itself.
        ``None`` keeps the flag the context was saved with (a party's own state).
        """
        try:
            meta = json.loads(fields[0])
            precision_bits, saved_allowance = int(meta["precision_bits"]), bool(meta["allow_weak_key"])
            n = int.from_bytes(fields[1], "big")
            secret = [int.from_bytes(f, "big") for f in fields[2:]]
        except (ValueError, KeyError, TypeError, IndexError) as error:
            raise CryptoError(f"serialised Paillier context is malformed: {error}") from error
        if len(secret) not in (0, 2) or (secret and secret[0] * secret[1] != n):
            raise CryptoError("serialised Paillier context holds an inconsistent secret key")
        allow_weak_key = saved_allowance if allow_weak_key is None else bool(allow_weak_key)
        _check_key_bits(n.bit_length(), allow_weak_key)
        public_key = paillier.PaillierPublicKey(n)
        private_key = paillier.PaillierPrivateKey(public_key, *secret) if secret else None
        context = cls.__new__(cls)
        context._setup(public_key, private_key, precision_bits, allow_weak_key)
        if context.fingerprint != key_fingerprint:
            raise CryptoError("serialised Paillier context does not match its key fingerprint")
        return context

    def __getstate__(self):
        return {"data": self.to_bytes(include_secret_key=self.has_secret_key)}

    def __setstate__(self, state):
        _, key_fingerprint, fields = _envelope.unpack(state["data"], _envelope.KIND_CONTEXT)
        with warnings.catch_warnings():  # the weak key was accepted, with a warning, at creation
            warnings.simplefilter("ignore", UserWarning)
            self.__dict__.update(PaillierContext._from_fields(key_fingerprint, fields).__dict__)

    # --- encoding -----------------------------------------------------------------------

    def _encode(self, values, exponent):
        """Return ``round(values * 2^exponent)`` as integers modulo ``n``."""
        encoded = _fixed_point(np.asarray(values, dtype=np.float64), exponent)
        if any(abs(v) >= self._max_int for v in encoded):
            raise CryptoError(f"value too large for a {self.key_bits}-bit Paillier plaintext at 2^-{exponent}")
        return [v % self._n for v in encoded]

    def _decode(self, encoded, exponent):
        values = []
        for m in encoded:
            if m >= self._n - self._max_int:
                m -= self._n
            elif m > self._max_int:
                raise CryptoError("Paillier plaintext overflow: a value left the encodable range during computation")
            values.append(int(m) / (1 << exponent))
        return np.array(values, dtype=np.float64)

    # --- encryption ---------------------------------------------------------------------

    def _obfuscators(self, count):
        """Return ``count`` fresh random n-th residues modulo ``n^2`` (Damgård, Jurik and Nielsen 2010)."""
        if self._obfuscator_base is None:
            x = gmpy2.mpz(secrets.randbelow(int(self._n) - 2) + 2)
            hs = gmpy2.powmod(-x * x % self._n, self._n, self._nsquare)
            self._obfuscator_base = _FixedBase(hs, self._nsquare, self._exponent_bits)
        return _random_powers(self._obfuscator_base, count)

    @property
    def _exponent_bits(self):
        return (self.key_bits + 1) // 2

    def _encrypt_encoded(self, encoded):
        n, nsquare = self._n, self._nsquare
        return [(1 + n * m) * r % nsquare for m, r in zip(encoded, self._obfuscators(len(encoded)))]

    def encrypt(self, values):
        """Encrypt a 1-d array of floats at ``2^-precision_bits`` resolution."""
        values = values_to_encrypt(values)
        ciphertexts = self._encrypt_encoded(self._encode(values, self.precision_bits))
        return PaillierVector(self, ciphertexts, self.precision_bits, rerandomize=False)

    def _rerandomized(self, ciphertexts):
        return [c * r % self._nsquare for c, r in zip(ciphertexts, self._obfuscators(len(ciphertexts)))]

    # --- decryption ---------------------------------------------------------------------

    def _check_own(self, vector):
        if not isinstance(vector, PaillierVector):
            raise CryptoError(f"expected a Paillier encrypted vector, got {type(vector).__name__}")
        if vector.context.fingerprint != self._fingerprint:
            raise CryptoError("vector was encrypted under another key")
        if not self.has_secret_key:
            raise CryptoError("this Paillier context holds only the public key and cannot decrypt")

    def _raw_decrypt(self, ciphertexts):
        """python-paillier's CRT decryption, batched so the exponentiations use every core."""
        key = self.private_key
        p, q = gmpy2.mpz(key.p), gmpy2.mpz(key.q)
        step = max(1, -(-len(ciphertexts) // WORKERS))
        batches = [ciphertexts[i:i + step] for i in range(0, len(ciphertexts), step)]
        mod_p = sum(parallel_map(lambda b: gmpy2.powmod_base_list(b, p - 1, p * p), batches), [])
        mod_q = sum(parallel_map(lambda b: gmpy2.powmod_base_list(b, q - 1, q * q), batches), [])
        return [
            key.crt(key.l_function(xp, p) * key.hp % p, key.l_function(xq, q) * key.hq % q)
            for xp, xq in zip(mod_p, mod_q)
        ]

    def decrypt(self, vector):
        """Exact decryption for the key owner's own use (see :meth:`decrypt_release`)."""
        self._check_own(vector)
        return self._decode(self._raw_decrypt(vector.ciphertexts), vector.exponent)

    def decrypt_release(self, vector, bound):
        """Decrypt for release to another party: exact, rounded to ``2^-precision_bits``.

        Paillier decryption is exact, so there is no error to flood (unlike CKKS);
        rounding to the encoding grid drops the extra fraction bits that plaintext
        multiplications add.

        Raises
        ------
        CryptoError
            If a value exceeds ``bound``.
        """
        bound = release_bound(bound)
        values = self.decrypt(vector)
        outside = np.flatnonzero(np.abs(values) > bound)
        if outside.size:
            raise CryptoError(
                f"{outside.size} decrypted value(s) exceed the declared bound {bound:g} "
                f"(first at index {outside[0]}): refusing to release"
            )
        return np.ldexp(np.rint(np.ldexp(values, self.precision_bits)), -self.precision_bits)

    def decrypt_integers(self, vector):
        """Exact decryption as signed integers ``round(x * 2^exponent)``, for the key owner's own use."""
        self._check_own(vector)
        n, top = self._n, self._max_int
        values = []
        for m in self._raw_decrypt(vector.ciphertexts):
            if m >= n - top:
                m -= n
            elif m > top:
                raise CryptoError("Paillier plaintext overflow: a value left the encodable range during computation")
            values.append(int(m))
        return values

    def release_integers(self, vector, bound):
        """Decrypt for release to another party as exact integers: masked values that must not be rounded.

        A value masked with a uniform integer (:meth:`PaillierVector.add_integers`)
        hides the aggregate only if it travels exactly: a float64 keeps 53 bits, and the
        aggregate would show modulo the mask's last-bit spacing. The caller's ``bound``
        (on ``|x|``, in value units) is checked exactly at the vector's exponent.

        Returns
        -------
        list of int
            ``round(x * 2^exponent)`` of each value; the exponent is the vector's.

        Raises
        ------
        CryptoError
            If a value exceeds ``bound``.
        """
        limit = math.floor(math.ldexp(release_bound(bound), vector.exponent))
        values = self.decrypt_integers(vector)
        outside = [i for i, m in enumerate(values) if abs(m) > limit]
        if outside:
            raise CryptoError(
                f"{len(outside)} decrypted value(s) exceed the declared bound {bound:g} "
                f"(first at index {outside[0]}): refusing to release"
            )
        return values

    def load_vector(self, data):
        fields = _envelope.check_vector_key(data, self.scheme, self._fingerprint)
        try:
            meta = json.loads(fields[0])
            size, exponent = int(meta["size"]), int(meta["exponent"])
            blob = fields[1]
        except (ValueError, KeyError, TypeError, IndexError) as error:
            raise CryptoError(f"serialised Paillier vector has a malformed header: {error}") from error
        # an exponent beyond the key size could only describe an overflowed value
        if size < 1 or not 0 <= exponent <= self.key_bits or len(fields) != 2 or len(blob) != size * self._width:
            raise CryptoError("serialised Paillier vector has an inconsistent size")
        width = self._width
        ciphertexts = [gmpy2.mpz(int.from_bytes(blob[i:i + width], "big")) for i in range(0, len(blob), width)]
        n = self._n
        if any(not 0 < c < self._nsquare or gmpy2.gcd(c, n) != 1 for c in ciphertexts):
            # a value sharing a factor with n is no ciphertext, and its "decryption" is a function of the key
            raise CryptoError("serialised Paillier vector holds values outside the ciphertext space")
        return PaillierVector(self, ciphertexts, exponent, rerandomize=False)


class PaillierVector(EncryptedVector):
    """Encrypted fixed-point values under one Paillier key.

    Attributes
    ----------
    context : PaillierContext
    ciphertexts : list of gmpy2.mpz
    exponent : int
        Values are encoded as ``round(x * 2^exponent)``.
    """

    def __init__(self, context, ciphertexts, exponent, rerandomize):
        self.context = context
        self.ciphertexts = list(ciphertexts)
        self.exponent = exponent
        self._rerandomize = rerandomize

    @property
    def size(self):
        return len(self.ciphertexts)

    def _check_same_key(self, other):
        if not isinstance(other, PaillierVector):
            raise CryptoError(f"cannot combine a Paillier vector with a {type(other).__name__}")
        if other.context.fingerprint != self.context.fingerprint:
            raise CryptoError("cannot combine vectors encrypted under different keys")
        if other.size != self.size:
            raise CryptoError(f"cannot combine vectors of sizes {self.size} and {other.size}")

    def _at_exponent(self, exponent):
        """Return the ciphertexts re-encoded at a larger exponent (times ``2^shift``)."""
        shift = exponent - self.exponent
        if shift == 0:
            return self.ciphertexts
        nsquare = self.context._nsquare
        return [gmpy2.powmod(c, 1 << shift, nsquare) for c in self.ciphertexts]

    def __add__(self, other):
        """Add a vector under the same key, a plaintext array or a scalar."""
        context = self.context
        if isinstance(other, EncryptedVector):
            self._check_same_key(other)
            exponent = max(self.exponent, other.exponent)
            nsquare = context._nsquare
            ciphertexts = [a * b % nsquare for a, b in zip(self._at_exponent(exponent), other._at_exponent(exponent))]
            return PaillierVector(context, ciphertexts, exponent, self._rerandomize or other._rerandomize)
        plain = plain_operand(other, self.size)
        n, nsquare = context._n, context._nsquare
        encoded = context._encode(plain, self.exponent)
        ciphertexts = [c * (1 + n * m) % nsquare for c, m in zip(self.ciphertexts, encoded)]
        return PaillierVector(context, ciphertexts, self.exponent, self._rerandomize)

    def add_integers(self, values):
        """Add exact integers at this vector's exponent (``x + m * 2^-exponent``): masks that hide exactly."""
        context = self.context
        if len(values) != self.size:
            raise ValueError(f"{len(values)} integers do not match an encrypted vector of size {self.size}")
        if any(abs(int(m)) >= context._max_int for m in values):
            raise CryptoError(f"integer too large for a {context.key_bits}-bit Paillier plaintext")
        n, nsquare = context._n, context._nsquare
        ciphertexts = [c * (1 + n * (int(m) % n)) % nsquare for c, m in zip(self.ciphertexts, values)]
        return PaillierVector(context, ciphertexts, self.exponent, self._rerandomize)

    def take(self, indices):
        """The values at ``indices`` (in that order, repeats allowed) as a vector re-randomised before it leaves.

        Without fresh randomness the key owner would recognise each ciphertext it
        encrypted, and with it the position it came from.
        """
        ciphertexts = [self.ciphertexts[int(i)] for i in indices]
        return PaillierVector(self.context, ciphertexts, self.exponent, True)

    def __neg__(self):
        nsquare = self.context._nsquare
        ciphertexts = [gmpy2.invert(c, nsquare) for c in self.ciphertexts]
        return PaillierVector(self.context, ciphertexts, self.exponent, self._rerandomize)

    def __sub__(self, other):
        if isinstance(other, EncryptedVector):
            return self + (-other)
        return self + -plain_operand(other, self.size)

    def _power(self, ciphertext, inverse, k):
        """Return ``ciphertext^k mod n^2`` for a signed ``k`` (``inverse`` is ``ciphertext^-1``)."""
        nsquare = self.context._nsquare
        return gmpy2.powmod(ciphertext if k >= 0 else inverse, abs(k), nsquare)

    def _signed_multipliers(self, plain):
        return _fixed_point(plain, self.context.precision_bits)

    def _inverses(self, multipliers):
        """Inverses of the ciphertexts that meet a negative multiplier (others: None)."""
        nsquare = self.context._nsquare
        needs = [any(k < 0 for k in row) for row in multipliers]
        return [gmpy2.invert(c, nsquare) if need else None for c, need in zip(self.ciphertexts, needs)]

    def __mul__(self, other):
        """Multiply element-wise by a plaintext array or a scalar (exact; adds ``precision_bits``)."""
        if isinstance(other, EncryptedVector):
            raise TypeError("multiplying two encrypted vectors is not supported: multiply by a plaintext")
        multipliers = self._signed_multipliers(plain_operand(other, self.size))
        inverses = self._inverses([[k] for k in multipliers])
        if self.size >= 64 and len(set(multipliers)) == 1 and multipliers[0]:  # one scalar: gmpy2's list, every core
            k = multipliers[0]
            bases = self.ciphertexts if k > 0 else inverses
            step = -(-len(bases) // WORKERS)
            batches = [bases[i:i + step] for i in range(0, len(bases), step)]
            modulus = self.context._nsquare
            ciphertexts = sum(parallel_map(lambda b: gmpy2.powmod_base_list(b, abs(k), modulus), batches), [])
        else:
            ciphertexts = [self._power(c, inv, k) for c, inv, k in zip(self.ciphertexts, inverses, multipliers)]
        return PaillierVector(self.context, ciphertexts, self.exponent + self.context.precision_bits, True)

    def dot(self, matrix):
        """Return ``matrix.T @ self``: one multi-exponentiation with short exponents per column."""
        matrix = plain_matrix(matrix, self.size)
        context = self.context
        multipliers = [self._signed_multipliers(row) for row in matrix]
        inverses = self._inverses(multipliers)
        columns = [[row[j] for row in multipliers] for j in range(matrix.shape[1])]
        outputs = _multi_powers(self.ciphertexts, inverses, columns, context._nsquare)
        return PaillierVector(context, outputs, self.exponent + context.precision_bits, True)

    def sum(self):
        nsquare = self.context._nsquare
        total = gmpy2.mpz(1)
        for c in self.ciphertexts:
            total = total * c % nsquare
        return PaillierVector(self.context, [total], self.exponent, self._rerandomize)

    def to_bytes(self):
        context = self.context
        ciphertexts = context._rerandomized(self.ciphertexts) if self._rerandomize else self.ciphertexts
        meta = {"size": self.size, "exponent": self.exponent}
        blob = b"".join(_int_bytes(c, context._width) for c in ciphertexts)
        return _envelope.pack(_envelope.KIND_VECTOR, "paillier", context.fingerprint, [json.dumps(meta).encode(), blob])

    def __getstate__(self):
        return {"context": self.context, "data": self.to_bytes()}

    def __setstate__(self, state):
        self.__dict__.update(state["context"].load_vector(state["data"]).__dict__)

    def __repr__(self):
        return f"PaillierVector(size={self.size}, exponent={self.exponent})"

