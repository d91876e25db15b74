"""The group PSI computes in: Curve25519's prime-order subgroup, and the operations on it.

Each function works on one party's own values (its IDs, its secret scalar) or checks
values received from the peer; the steps in :mod:`.party` call them. The scalar
multiplications run on an engine of :mod:`.engine` (IPP-Crypto's multi-buffer X25519
where the CPU has it, libsodium otherwise), on every core
(:func:`fedscore.parallel.parallel_chunks`): both engines release Python's GIL.
Hashing onto the curve holds the GIL and runs before the multiplications, in the
calling thread.
"""

import hashlib

import gmpy2
import nacl.bindings
import nacl.utils
import numpy as np

from ...errors import ProtocolError
from ...parallel import parallel_chunks
from .engine import POINT_BYTES, default_engine

# --- Group parameters -------------------------------------------------------------------
# Curve25519, RFC 7748 section 4.1: v^2 = u^3 + A u^2 + u over GF(p). The curve has order
# 8 * l with l a 253-bit prime; X25519 clamps every scalar to a multiple of 8, so the
# product of a clamped scalar and any point of the curve lies in the order-l subgroup.
FIELD_PRIME = 2**255 - 19
MONTGOMERY_A = 486662
SCALAR_BYTES = nacl.bindings.crypto_scalarmult_SCALARBYTES

HASH_DOMAIN = b"fedscore/psi/v2/curve25519/sha512-try-and-increment"
"""Domain separator of the hash onto the curve; the run id is appended per run."""

HASH_TO_CURVE_MAX_TRIES = 256
"""Each try lands on the curve with probability 1/2 (the other half is the twist), so
256 tries all fail with probability 2^-256. Two tries per SHA-512 digest."""

SMALL_ORDER_POINTS = frozenset({
    1,  # order 4 on the curve
    FIELD_PRIME - 1,  # order 4 on the twist
    325606250916557431795983626356110631294008115727848805560023387167927233504,  # order 8
    39382357235489614581723060781553021112529911719440698176882885853963445705823,  # order 8
})
"""Canonical u-coordinates of the points of order 2, 4 and 8 of Curve25519 and of its
twist, besides u = 0 (order 2), which :func:`check_points` refuses already: the list
libsodium refuses in ``crypto_scalarmult`` (there with the non-canonical p and p + 1,
which are refused as non-canonical here). Every other point, of the curve or of its
twist, has a 253-bit prime factor in its order."""

RECEIVED_CURVE_SAMPLE = 128
"""Received points checked to lie on the curve (not its twist), drawn at random per set:
a set hashed or encoded otherwise (another protocol version) has about half of its
points on the twist and is refused with probability 1 - 2^-128."""

_POINT_DTYPE = np.dtype((np.bytes_, POINT_BYTES))
_SMALL_ORDER_ROWS = np.array([list(u.to_bytes(POINT_BYTES, "little")) for u in sorted(SMALL_ORDER_POINTS)],
                             dtype=np.uint8)


PROGRESS_BLOCK = 1 << 17
"""IDs per block of work between two progress reports: about a second each."""


def hash_domain(run_id):
    """The per-run domain separator: the same IDs hash to unrelated points in every run."""
    return HASH_DOMAIN + b"/" + run_id.encode("utf-8")


def hash_to_curve(ids, domain):
    """Hash each ID onto the curve by try and increment: ``(n, 32)`` uint8 u-coordinates.

    Try and increment, as in Google's private-join-and-compute (there on P-256):
    the digest ``SHA-512(len(D) || D || ID || counter)`` gives two candidates, its
    two 32-byte halves read little-endian and reduced mod p; the first candidate u
    with u^3 + A u^2 + u a non-zero square (u on the curve rather than on its twist)
    is the ID's point. Two tries per digest halve the SHA-512 calls; the Legendre
    symbols (GMP's Jacobi symbol through gmpy2, about 2 per ID) are most of the cost.
    """
    prefix = hashlib.sha512(len(domain).to_bytes(2, "big") + domain)
    copy_prefix, from_bytes, jacobi = prefix.copy, gmpy2.mpz.from_bytes, gmpy2.jacobi
    p, a = gmpy2.mpz(FIELD_PRIME), MONTGOMERY_A
    counters = [c.to_bytes(2, "big") for c in range(HASH_TO_CURVE_MAX_TRIES // 2)]
    out = bytearray(POINT_BYTES * len(ids))
    for i, value in enumerate(ids):
        data = value.encode("utf-8")
        for counter in counters:
            h = copy_prefix()
            h.update(data + counter)
            digest = h.digest()
            u = from_bytes(digest[:32], "little") % p
            if jacobi(u * (u * (u + a) + 1), p) == 1:
                break
            u = from_bytes(digest[32:], "little") % p
            if jacobi(u * (u * (u + a) + 1), p) == 1:
                break
        else:  # pragma: no cover - probability 2^-256
            raise RuntimeError("hash to curve failed")
        out[i * POINT_BYTES:(i + 1) * POINT_BYTES] = u.to_bytes(POINT_BYTES, "little")
    return np.frombuffer(bytes(out), dtype=np.uint8).reshape(-1, POINT_BYTES)


def multiply(points, key, engine=None):
    """``X25519(key, p)`` for each row of ``points``, on every core: ``(n, 32)`` uint8."""
    engine = engine or default_engine()
    return parallel_chunks(engine.multiply, np.ascontiguousarray(points, dtype=np.uint8), key)


def in_blocks(work, rows, on_block=None):
    """``work(rows)`` applied :data:`PROGRESS_BLOCK` rows at a time, the results stacked.

    ``on_block(k, total)`` is called before block ``k`` (from 1): a million IDs take tens
    of seconds, and a party's console shows how far it has come.
    """
    total = max(1, -(-len(rows) // PROGRESS_BLOCK))
    parts = []
    for k in range(total):
        if on_block is not None:
            on_block(k + 1, total)
        parts.append(work(rows[k * PROGRESS_BLOCK:(k + 1) * PROGRESS_BLOCK]))
    return np.concatenate(parts) if len(parts) > 1 else parts[0]


def hash_and_blind(ids, key, domain, engine=None, on_block=None):
    """Hash each ID onto the curve and multiply it by ``key``: ``(n, 32)`` uint8."""
    return in_blocks(lambda block: multiply(hash_to_curve(block, domain), key, engine), ids, on_block)


def blind_received(points, key, engine=None, on_block=None):
    """Multiply received points by ``key``, after checking them: ``(n, 32)`` uint8.

    The points' encoding was checked before (:func:`check_points`). Refused here:
    any point of small order (X25519 would map it to zero, and the engines disagree
    on what they return for some of them), a set with a point of the twist among
    :data:`RECEIVED_CURVE_SAMPLE` points drawn at random, and, should a check ever be
    missed, any product that is zero. ``protocols/psi.md`` ("Checks on received
    values") says why a sample of the curve check suffices.
    """
    prefixes = _prefixes(points)
    suspects = np.flatnonzero(np.isin(prefixes, _prefixes(_SMALL_ORDER_ROWS)))
    if len(suspects) and (points[suspects, None, :] == _SMALL_ORDER_ROWS[None, :, :]).all(axis=2).any():
        raise ProtocolError("a received value is a point of small order")
    if not on_curve(points[random_sample(len(points), RECEIVED_CURVE_SAMPLE)]).all():
        raise ProtocolError("a received value is not a point of the curve")
    out = in_blocks(lambda block: multiply(block, key, engine), points, on_block)
    if not out.any(axis=1).all():
        raise ProtocolError("a received value is a point of small order")
    return out


def on_curve(points):
    """True for each row of ``points`` (``(n, 32)`` uint8, canonical) that lies on the curve, not its twist."""
    data, from_bytes, jacobi = np.ascontiguousarray(points, dtype=np.uint8).tobytes(), gmpy2.mpz.from_bytes, gmpy2.jacobi
    p, a = gmpy2.mpz(FIELD_PRIME), MONTGOMERY_A
    flags = np.empty(len(points), dtype=bool)
    for i in range(len(points)):
        u = from_bytes(data[i * POINT_BYTES:(i + 1) * POINT_BYTES], "little")
        flags[i] = jacobi(u * (u * (u + a) + 1), p) == 1
    return flags


def check_points(value, name, expected=None):
    """Validate the structure of received curve points; return them as ``(n, 32)`` uint8.

    Every value must be the canonical encoding of a non-zero u-coordinate (0 < u < p).
    Membership of the curve is checked where a point is multiplied
    (:func:`blind_received`); points that are only compared need no more: a value off
    the curve can never equal one of ours, which all lie on it.
    """
    if not isinstance(value, np.ndarray) or value.dtype != np.uint8 or value.ndim != 2 \
            or value.shape[1] != POINT_BYTES:
        raise ProtocolError(f"{name} must be an (n, {POINT_BYTES}) array of bytes")
    if expected is not None and len(value) != expected:
        raise ProtocolError(f"{name} holds {len(value)} values, expected {expected}")
    top = value[:, -1]
    # u >= p = 2^255 - 19 iff the top bit is set, or the value is 2^255-19 .. 2^255-1.
    too_large = (top >= 0x80) | ((top == 0x7F) & (value[:, 1:-1] == 0xFF).all(axis=1) & (value[:, 0] >= 0xED))
    zero = ~value.any(axis=1)
    bad = np.flatnonzero(too_large | zero)
    if len(bad):
        raise ProtocolError(f"{name}: value {int(bad[0])} is not a canonical non-zero curve coordinate")
    return value


def as_keys(points):
    """View ``(n, 32)`` points as fixed-width byte strings, for sorting and matching."""
    return np.ascontiguousarray(points).view(_POINT_DTYPE).ravel()


def _prefixes(points):
    """The first 8 bytes of each point as a big-endian integer: sorts like the points' bytes."""
    return np.ascontiguousarray(points[:, :8]).view(">u8").ravel().astype(np.uint64)


def _distinct(keys):
    ordered = np.sort(keys)
    return bool((ordered[1:] != ordered[:-1]).all())


def distinct(points):
    """True when no two rows of ``points`` are equal."""
    if _distinct(_prefixes(points)):
        return True
    return _distinct(as_keys(points))


def intersect(own, peer):
    """Rows common to ``own`` and ``peer`` (each without repeats), in the order of their bytes.

    Returns
    -------
    own_index, peer_index : numpy.ndarray of int
        ``own[own_index[i]] == peer[peer_index[i]]``, ordered by that value as bytes.

    Notes
    -----
    Sorting 8-byte prefixes is several times faster than sorting 32-byte strings. When
    the prefixes are distinct on each side (two of 10^6 random points share one with
    probability about 10^12 / 2^64 = 5 * 10^-8) each prefix pairs at most one row with
    one row, and the pairs are confirmed on all 32 bytes; otherwise the full values
    are compared.
    """
    own_keys, peer_keys = _prefixes(own), _prefixes(peer)
    if _distinct(own_keys) and _distinct(peer_keys):
        _, own_index, peer_index = np.intersect1d(own_keys, peer_keys, assume_unique=True, return_indices=True)
        same = (own[own_index] == peer[peer_index]).all(axis=1)
        return own_index[same], peer_index[same]
    _, own_index, peer_index = np.intersect1d(as_keys(own), as_keys(peer), return_indices=True)
    return own_index, peer_index


def random_sample(n, k):
    """``min(n, k)`` distinct indices below ``n`` (fewer when ``n`` is barely above ``k``), drawn
    with the OS's cryptographic generator."""
    if n <= k:
        return np.arange(n)
    picks = np.frombuffer(nacl.utils.random(8 * 4 * k), dtype=np.uint64) % np.uint64(n)  # bias < n / 2^64
    _, first = np.unique(picks, return_index=True)
    return picks[np.sort(first)][:k].astype(np.int64)  # in order of drawing: the first k distinct


def random_permutation(n):
    """A uniformly random permutation drawn from the OS's cryptographic generator."""
    return np.argsort(np.frombuffer(nacl.utils.random(8 * n), dtype=np.uint64), kind="stable")
