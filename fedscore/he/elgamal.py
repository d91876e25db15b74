"""Exponential ElGamal on edwards25519's prime-order group: bits a peer may pick, mask and shuffle.

A bit ``b`` is encrypted as ``(r G, b G + r H)`` with ``H = s G`` the public key and ``r`` a
fresh random scalar (ElGamal, IEEE Trans. Inf. Theory 1985, with the message in the
exponent). The group is the order-``l`` subgroup of edwards25519 (RFC 8032), through
libsodium's ``crypto_core_ed25519`` and ``crypto_scalarmult_ed25519`` (PyNaCl), about
0.2 ms per encryption where a 3072-bit Paillier encryption takes 6.

It does one job: the lookalike's seed exclusion (``protocols/lookalike.md``), where the
media picks the encrypted seed flags of its top users, XORs each with a random bit of
its own (``r + (1 - 2r) b``: the pair or its complement ``(-C1, G - C2)``), shuffles them,
re-randomises them (adding an encryption of 0) and sends them back, and the brand, who
holds ``s``, releases each as a bit. Decryption gives the point ``b G``, which the key
owner recognises only for ``b`` in {0, 1}: a sum of several flags or a multiple of one
is no bit and is refused (:meth:`BitKey.decrypt_bits`), so every released value says at
most one bit. Under the decisional Diffie-Hellman assumption in this group the
ciphertexts hide the bits, and re-randomised pairs cannot be linked to the ones the key
owner sent.
"""

import json
import os

import nacl.bindings as sodium
import numpy as np

from ..errors import CryptoError
from ..parallel import parallel_chunks
from . import _envelope

POINT_BYTES = sodium.crypto_core_ed25519_BYTES
"""An edwards25519 point, compressed (RFC 8032, section 5.1.2)."""

PAIR_BYTES = 2 * POINT_BYTES

_IDENTITY = b"\x01" + bytes(POINT_BYTES - 1)
_ONE = (1).to_bytes(sodium.crypto_core_ed25519_SCALARBYTES, "little")
_GENERATOR = sodium.crypto_scalarmult_ed25519_base_noclamp(_ONE)


def _scalar():
    """A uniform scalar modulo ``l``: 512 random bits reduced (libsodium's ``scalar_reduce``)."""
    return sodium.crypto_core_ed25519_scalar_reduce(os.urandom(64))


def _blind(pairs, public_point):
    """Add a fresh encryption of 0 to each pair: the same bits, unlinkable pairs."""
    out = np.empty_like(pairs)
    for i, pair in enumerate(pairs):
        r = _scalar()
        c1 = sodium.crypto_core_ed25519_add(bytes(pair[:POINT_BYTES]), sodium.crypto_scalarmult_ed25519_base_noclamp(r))
        c2 = sodium.crypto_core_ed25519_add(bytes(pair[POINT_BYTES:]), sodium.crypto_scalarmult_ed25519_noclamp(r, public_point))
        out[i] = np.frombuffer(c1 + c2, dtype=np.uint8)
    return out


def _encrypt(bits, public_point):
    out = np.empty((len(bits), PAIR_BYTES), dtype=np.uint8)
    for i, bit in enumerate(bits):
        r = _scalar()
        c2 = sodium.crypto_scalarmult_ed25519_noclamp(r, public_point)
        if bit:
            c2 = sodium.crypto_core_ed25519_add(c2, _GENERATOR)
        out[i] = np.frombuffer(sodium.crypto_scalarmult_ed25519_base_noclamp(r) + c2, dtype=np.uint8)
    return out


def _valid(points):
    """Whether each point is in the prime-order subgroup, canonical and not of small order (libsodium's check)."""
    return np.array([sodium.crypto_core_ed25519_is_valid_point(bytes(p)) for p in points], dtype=bool)


def _decrypt(pairs, secret):
    """0 or 1 per pair, -1 where the decrypted point is neither ``0 G`` nor ``1 G``."""
    out = np.empty(len(pairs), dtype=np.int8)
    for i, pair in enumerate(pairs):
        shared = sodium.crypto_scalarmult_ed25519_noclamp(secret, bytes(pair[:POINT_BYTES]))
        point = sodium.crypto_core_ed25519_sub(bytes(pair[POINT_BYTES:]), shared)
        out[i] = 0 if point == _IDENTITY else 1 if point == _GENERATOR else -1
    return out


class BitKey:
    """An exponential-ElGamal key pair (or its public key) for bits, with the envelope of :mod:`fedscore.he`.

    Attributes
    ----------
    scheme : str
        ``"elgamal"``.
    fingerprint : bytes
    has_secret_key : bool

    Examples
    --------
    >>> key = BitKey()
    >>> peer = BitKey.from_public(key.public_context().to_bytes())  # doctest: +SKIP
    >>> key.decrypt_bits(key.load_vector(key.encrypt_bits([1, 0]).take([1, 0]).to_bytes())).tolist()
    [0, 1]
    """

    scheme = "elgamal"

    def __init__(self):
        secret = _scalar()
        self._setup(sodium.crypto_scalarmult_ed25519_base_noclamp(secret), secret)

    def _setup(self, public_point, secret):
        self.public_point, self._secret = bytes(public_point), secret
        self.fingerprint = _envelope.fingerprint(self.public_point)

    @property
    def has_secret_key(self):
        return self._secret is not None

    def public_context(self):
        public = BitKey.__new__(BitKey)
        public._setup(self.public_point, None)
        return public

    def to_bytes(self, include_secret_key=False):
        if include_secret_key and not self.has_secret_key:
            raise CryptoError("this ElGamal key holds no secret key to serialise")
        fields = [json.dumps({"group": "edwards25519"}).encode(), self.public_point]
        if include_secret_key:
            fields.append(self._secret)
        return _envelope.pack(_envelope.KIND_CONTEXT, self.scheme, self.fingerprint, fields)

    @classmethod
    def _from_fields(cls, key_fingerprint, fields):
        """Rebuild a key from an opened envelope (see :func:`fedscore.he.load_context`)."""
        if len(fields) not in (2, 3) or json.loads(fields[0]).get("group") != "edwards25519":
            raise CryptoError("serialised ElGamal key is malformed")
        public_point, secret = bytes(fields[1]), bytes(fields[2]) if len(fields) == 3 else None
        if not sodium.crypto_core_ed25519_is_valid_point(public_point):
            raise CryptoError("serialised ElGamal key's public point is not in the prime-order group")
        if secret is not None and sodium.crypto_scalarmult_ed25519_base_noclamp(secret) != public_point:
            raise CryptoError("serialised ElGamal key holds an inconsistent secret key")
        key = cls.__new__(cls)
        key._setup(public_point, secret)
        if key.fingerprint != key_fingerprint:
            raise CryptoError("serialised ElGamal key does not match its key fingerprint")
        return key

    def __getstate__(self):
        return {"data": self.to_bytes(include_secret_key=self.has_secret_key)}

    def __setstate__(self, state):
        _, key_fingerprint, fields = _envelope.unpack(state["data"], _envelope.KIND_CONTEXT)
        self.__dict__.update(BitKey._from_fields(key_fingerprint, fields).__dict__)

    def encrypt_bits(self, bits):
        """Encrypt each of ``bits`` (0 or 1) under this key; return a :class:`BitVector`."""
        bits = np.asarray(bits)
        if bits.ndim != 1 or not np.all(np.isin(bits, (0, 1))):
            raise ValueError("expected a 1-d array of 0/1 values")
        return BitVector(self, parallel_chunks(_encrypt, bits.astype(np.int8), self.public_point))

    def decrypt_bits(self, vector):
        """The bits, for release: each value must decrypt to exactly 0 or 1.

        Raises
        ------
        CryptoError
            Naming how many values are not a single bit (a sum, a multiple or a
            forgery): nothing is released.
        """
        if not self.has_secret_key:
            raise CryptoError("this ElGamal key holds only the public key and cannot decrypt")
        if vector.key.fingerprint != self.fingerprint:
            raise CryptoError("vector was encrypted under another key")
        bits = parallel_chunks(_decrypt, vector.pairs, self._secret)
        bad = np.flatnonzero(bits < 0)
        if bad.size:
            raise CryptoError(f"{bad.size} of the {len(bits)} values asked for are not a single 0/1 flag "
                              f"(first at position {bad[0]}): refused")
        return bits

    def load_vector(self, data):
        """Deserialise a :class:`BitVector` under this key, refusing points outside the prime-order group."""
        fields = _envelope.check_vector_key(data, self.scheme, self.fingerprint)
        if len(fields) != 1 or len(fields[0]) % PAIR_BYTES or not fields[0]:
            raise CryptoError("serialised ElGamal vector has an inconsistent size")
        pairs = np.frombuffer(fields[0], dtype=np.uint8).reshape(-1, PAIR_BYTES)
        if not parallel_chunks(_valid, pairs.reshape(-1, POINT_BYTES)).all():
            raise CryptoError("serialised ElGamal vector holds points outside the prime-order group")
        return BitVector(self, pairs.copy())


class BitVector:
    """Encrypted bits, one ElGamal pair each (a ``(size, 64)`` array of two compressed points)."""

    def __init__(self, key, pairs):
        self.key = key
        self.pairs = pairs

    @property
    def size(self):
        return len(self.pairs)

    def take(self, indices):
        """The pairs at ``indices`` (in that order, repeats allowed), re-randomised so none can be linked back."""
        return BitVector(self.key, parallel_chunks(_blind, self.pairs[np.asarray(indices, dtype=np.int64)],
                                                   self.key.public_point))

    def flip(self, mask_bits):
        """``b XOR m`` for each pair and bit of ``mask_bits``: the complement ``Enc(1 - b) = (-C1, G - C2)`` where ``m`` is 1."""
        mask_bits = np.asarray(mask_bits)
        if mask_bits.shape != (self.size,):
            raise ValueError(f"{mask_bits.shape} mask bits for {self.size} pairs")
        pairs = self.pairs.copy()
        for i in np.flatnonzero(mask_bits):
            c1, c2 = bytes(pairs[i, :POINT_BYTES]), bytes(pairs[i, POINT_BYTES:])
            flipped = sodium.crypto_core_ed25519_sub(_IDENTITY, c1) + sodium.crypto_core_ed25519_sub(_GENERATOR, c2)
            pairs[i] = np.frombuffer(flipped, dtype=np.uint8)
        return BitVector(self.key, pairs)

    def __add__(self, other):
        """Pairwise sum: encrypts the sum of the bits (no longer a bit where both are 1)."""
        pairs = np.array([np.frombuffer(sodium.crypto_core_ed25519_add(bytes(a[:POINT_BYTES]), bytes(b[:POINT_BYTES]))
                                        + sodium.crypto_core_ed25519_add(bytes(a[POINT_BYTES:]), bytes(b[POINT_BYTES:])),
                                        dtype=np.uint8) for a, b in zip(self.pairs, other.pairs)])
        return BitVector(self.key, pairs)

    def to_bytes(self):
        return _envelope.pack(_envelope.KIND_VECTOR, "elgamal", self.key.fingerprint, [self.pairs.tobytes()])

    def __repr__(self):
        return f"BitVector(size={self.size})"
