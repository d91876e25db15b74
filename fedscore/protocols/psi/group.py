"""The group PSI computes in: Curve25519's prime-order subgroup, and the operations on it.

Each function works on one party's own values (its IDs, its secret scalar) or checks
values received from the peer; the steps in :mod:`.party` call them. Hashing and
multiplying run on every core (:func:`fedscore.parallel.parallel_chunks`): PyNaCl
releases Python's GIL around libsodium's calls.
"""

import hashlib

import gmpy2
import nacl.bindings
import nacl.exceptions
import nacl.utils
import numpy as np

from ...errors import ProtocolError
from ...parallel import parallel_chunks

# --- Group parameters -------------------------------------------------------------------
# Curve25519, RFC 7748 section 4.1: v^2 = u^3 + A u^2 + u over GF(p). The curve has order
# 8 * l with l a 253-bit prime; X25519 clamps every scalar to a multiple of 8, so the
# product of a clamped scalar and any point of the curve lies in the order-l subgroup.
FIELD_PRIME = 2**255 - 19
MONTGOMERY_A = 486662
POINT_BYTES = 32  # a Montgomery u-coordinate, little-endian (RFC 7748 section 5)
SCALAR_BYTES = nacl.bindings.crypto_scalarmult_SCALARBYTES

HASH_DOMAIN = b"fedscore/psi/v1/curve25519/sha512-try-and-increment"
"""Domain separator of the hash onto the curve; the run id is appended per run."""

HASH_TO_CURVE_MAX_TRIES = 256
"""Each try lands on the curve with probability 1/2 (the other half is the twist), so
256 tries all fail with probability 2^-256."""

_POINT_DTYPE = np.dtype((np.bytes_, POINT_BYTES))



def hash_domain(run_id):
    """The per-run domain separator: the same IDs hash to unrelated points in every run."""
    return HASH_DOMAIN + b"/" + run_id.encode("utf-8")


def hash_and_blind(ids, key, domain):
    """Hash each ID onto the curve and multiply it by ``key``, on every core: ``(n, 32)`` uint8."""
    return parallel_chunks(_hash_and_blind, ids, key, domain)


def blind_received(points, key):
    """Multiply each received point by ``key`` (checked to lie on the curve), on every core."""
    return parallel_chunks(_blind_received, points, key)


def _hash_and_blind(ids, key, domain):
    """Hash each ID onto the curve (try and increment) and multiply it by ``key``.

    Try and increment, as in Google's private-join-and-compute (there on P-256):
    SHA-512 of (domain, ID, counter) reduced mod p is accepted as a u-coordinate when
    u^3 + A u^2 + u is a non-zero square, i.e. when u lies on the curve rather than
    on its twist; otherwise the counter is incremented.
    """
    prefix = hashlib.sha512(len(domain).to_bytes(2, "big") + domain)
    out = bytearray(POINT_BYTES * len(ids))
    for i, value in enumerate(ids):
        data = value.encode("utf-8")
        for counter in range(HASH_TO_CURVE_MAX_TRIES):
            h = prefix.copy()
            h.update(data + counter.to_bytes(2, "big"))
            u = gmpy2.mpz(int.from_bytes(h.digest(), "little")) % FIELD_PRIME
            if gmpy2.jacobi(u * (u * (u + MONTGOMERY_A) + 1), FIELD_PRIME) == 1:
                break
        else:  # pragma: no cover - probability 2^-256
            raise RuntimeError("hash to curve failed")
        out[i * POINT_BYTES:(i + 1) * POINT_BYTES] = nacl.bindings.crypto_scalarmult(
            key, int(u).to_bytes(POINT_BYTES, "little"))
    return np.frombuffer(bytes(out), dtype=np.uint8).reshape(-1, POINT_BYTES)


def _blind_received(points, key):
    """Multiply each received point by ``key`` after checking that it lies on the curve.

    Canonical encoding is checked before (:func:`check_points`); a point of small
    order makes libsodium refuse the multiplication, which is reported too.
    """
    out = bytearray(points.nbytes)
    for i, row in enumerate(points):
        encoded = row.tobytes()
        u = gmpy2.mpz(int.from_bytes(encoded, "little"))
        if gmpy2.jacobi(u * (u * (u + MONTGOMERY_A) + 1), FIELD_PRIME) != 1:
            raise ProtocolError("a received value is not a point of the curve")
        try:
            out[i * POINT_BYTES:(i + 1) * POINT_BYTES] = nacl.bindings.crypto_scalarmult(key, encoded)
        except nacl.exceptions.RuntimeError:
            raise ProtocolError("a received value is a point of small order") from None
    return np.frombuffer(bytes(out), dtype=np.uint8).reshape(-1, POINT_BYTES)


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


def random_permutation(n):
    """A uniformly random permutation drawn from the OS's cryptographic generator."""
    return np.argsort(np.frombuffer(nacl.utils.random(8 * n), dtype=np.uint64), kind="stable")
