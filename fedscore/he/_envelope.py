"""The byte envelope shared by every serialised key and ciphertext.

Layout (all integers big-endian)::

    magic "FSHE" | version u8 | kind u8 | scheme u8 | fingerprint (16 bytes)
    | field count u16 | per field: length u64, bytes | BLAKE2b-256 of everything before

The fingerprint says which key the payload belongs to, so a vector under another key is
refused before anything is decrypted. The digest catches truncation and corruption in
transit or storage; it is not a signature (the threat model is semi-honest, and the
transport authenticates the sender).
"""

import hashlib
import struct

from ..errors import CryptoError

MAGIC = b"FSHE"
VERSION = 1
FINGERPRINT_BYTES = 16
_DIGEST_BYTES = 32

KIND_CONTEXT = 1
KIND_VECTOR = 2
_KIND_NAMES = {KIND_CONTEXT: "key context", KIND_VECTOR: "encrypted vector"}

SCHEME_IDS = {"ckks": 1, "paillier": 2, "elgamal": 3}
SCHEME_NAMES = {v: k for k, v in SCHEME_IDS.items()}

_HEADER = struct.Struct(">4sBBB16sH")
_LENGTH = struct.Struct(">Q")


def fingerprint(public_bytes):
    """Return the 16-byte BLAKE2b fingerprint of a public key's canonical bytes."""
    return hashlib.blake2b(public_bytes, digest_size=FINGERPRINT_BYTES).digest()


def pack(kind, scheme, key_fingerprint, fields):
    """Wrap byte ``fields`` in the envelope; see the module docstring for the layout."""
    parts = [_HEADER.pack(MAGIC, VERSION, kind, SCHEME_IDS[scheme], key_fingerprint, len(fields))]
    for field in fields:
        parts.append(_LENGTH.pack(len(field)))
        parts.append(bytes(field))
    body = b"".join(parts)
    return body + hashlib.blake2b(body, digest_size=_DIGEST_BYTES).digest()


def unpack(data, kind):
    """Check and open an envelope of the given ``kind``.

    Returns
    -------
    scheme : str
    key_fingerprint : bytes
    fields : list of bytes

    Raises
    ------
    CryptoError
        If the bytes are not an envelope, are truncated or corrupted, or hold another
        kind of object.
    """
    what = _KIND_NAMES[kind]
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CryptoError(f"expected bytes for a serialised {what}, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < _HEADER.size + _DIGEST_BYTES or data[:4] != MAGIC:
        raise CryptoError(f"not a serialised {what} (bad header or too short: {len(data)} bytes)")
    body, digest = data[:-_DIGEST_BYTES], data[-_DIGEST_BYTES:]
    if hashlib.blake2b(body, digest_size=_DIGEST_BYTES).digest() != digest:
        raise CryptoError(f"serialised {what} is truncated or corrupted (integrity check failed)")
    _, version, got_kind, scheme_id, key_fingerprint, count = _HEADER.unpack_from(body)
    if version != VERSION:
        raise CryptoError(f"serialised {what} has format version {version}, expected {VERSION}")
    if got_kind != kind:
        raise CryptoError(f"expected a serialised {what}, got a {_KIND_NAMES.get(got_kind, 'unknown object')}")
    if scheme_id not in SCHEME_NAMES:
        raise CryptoError(f"serialised {what} names unknown scheme id {scheme_id}")
    fields, offset = [], _HEADER.size
    for _ in range(count):
        if offset + _LENGTH.size > len(body):
            raise CryptoError(f"serialised {what} is malformed (field table runs past the end)")
        (length,) = _LENGTH.unpack_from(body, offset)
        offset += _LENGTH.size
        if offset + length > len(body):
            raise CryptoError(f"serialised {what} is malformed (field runs past the end)")
        fields.append(body[offset:offset + length])
        offset += length
    if offset != len(body):
        raise CryptoError(f"serialised {what} is malformed ({len(body) - offset} trailing bytes)")
    return SCHEME_NAMES[scheme_id], key_fingerprint, fields


def check_vector_key(data, scheme, expected_fingerprint):
    """Open a vector envelope and refuse it unless it is under the expected key."""
    got_scheme, key_fingerprint, fields = unpack(data, KIND_VECTOR)
    if got_scheme != scheme:
        raise CryptoError(f"vector is a {got_scheme} ciphertext, this context is {scheme}")
    if key_fingerprint != expected_fingerprint:
        raise CryptoError(
            "vector was encrypted under another key "
            f"(key {key_fingerprint.hex()}, this context {expected_fingerprint.hex()})"
        )
    return fields
