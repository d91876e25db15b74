"""Typed messages and their byte encoding.

A :class:`Message` maps field names to values, and each field carries the
:class:`~fedscore.ledger.Payload` category that says what it holds privacy-wise. The
sender declares the category when it builds the message (``ciphertext(...)``,
``blinded_ids(...)``, ...); the ledger records categories and sizes, never values.

Encoding is deliberately small and explicit: every field becomes one ``bytes`` string
with a one-byte type tag, so a message crosses Flower's ``ConfigRecord`` unchanged and a
corrupted or foreign byte string fails with :class:`~fedscore.errors.ProtocolError`
instead of unpickling arbitrary objects.
"""

import io
import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .errors import ProtocolError
from .ledger import Payload

_TAG_BYTES = b"B"
_TAG_ARRAY = b"A"
_TAG_BYTES_LIST = b"L"
_TAG_JSON = b"J"


@dataclass(frozen=True)
class Field:
    """A value together with its privacy category."""

    payload: Payload
    value: object


def ciphertext(value):
    return Field(Payload.CIPHERTEXT, value)


def blinded_ids(value):
    return Field(Payload.BLINDED_IDS, value)


def masked(value):
    return Field(Payload.MASKED, value)


def public(value):
    return Field(Payload.PUBLIC_PARAMETER, value)


def aggregate(value):
    return Field(Payload.AGGREGATE, value)


def size(value):
    return Field(Payload.SIZE, int(value))


def output(value):
    return Field(Payload.OUTPUT, value)


def control(value):
    return Field(Payload.CONTROL, value)


class Message(Mapping):
    """An immutable mapping of field name to value, with a payload category per field.

    Examples
    --------
    >>> msg = Message(points=blinded_ids(b"..."), count=size(3))
    >>> msg["count"]
    3
    >>> msg.payload("points").value
    'blinded_ids'
    """

    def __init__(self, **fields):
        for name, field in fields.items():
            if not isinstance(field, Field):
                raise TypeError(f"message field {name!r} must be wrapped in a payload category")
        self._fields = dict(fields)

    def __getitem__(self, name):
        try:
            return self._fields[name].value
        except KeyError:
            raise ProtocolError(f"message has no field {name!r} (fields: {sorted(self._fields)})") from None

    def __contains__(self, name):
        return name in self._fields

    def __iter__(self):
        return iter(self._fields)

    def __len__(self):
        return len(self._fields)

    def payload(self, name):
        return self._fields[name].payload

    def encode(self):
        """Return ``(fields, payloads)``: name → encoded bytes, name → category string."""
        encoded = {name: encode_value(f.value) for name, f in self._fields.items()}
        payloads = {name: f.payload.value for name, f in self._fields.items()}
        return encoded, payloads

    @classmethod
    def decode(cls, encoded, payloads):
        if set(encoded) != set(payloads):
            raise ProtocolError("message fields and payload categories do not match")
        try:
            return cls(**{n: Field(Payload(payloads[n]), decode_value(b)) for n, b in encoded.items()})
        except ValueError as exc:
            raise ProtocolError(f"undecodable message: {exc}") from None


def encode_value(value):
    """Encode one field value as tagged bytes."""
    if isinstance(value, (bytes, bytearray)):
        return _TAG_BYTES + bytes(value)
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise TypeError("object arrays cannot cross a party boundary")
        buf = io.BytesIO()
        np.save(buf, value, allow_pickle=False)
        return _TAG_ARRAY + buf.getvalue()
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, (bytes, bytearray)) for v in value):
        lengths = np.fromiter((len(v) for v in value), dtype="<u8", count=len(value))
        return _TAG_BYTES_LIST + struct.pack("<Q", len(value)) + lengths.tobytes() + b"".join(value)
    return _TAG_JSON + json.dumps(value, allow_nan=False).encode("utf-8")


def decode_value(data):
    """Inverse of :func:`encode_value`; raises ``ValueError`` on malformed input."""
    if not isinstance(data, (bytes, bytearray)) or not data:
        raise ValueError("empty or non-bytes field")
    tag, body = bytes(data[:1]), memoryview(data)[1:]
    if tag == _TAG_BYTES:
        return bytes(body)
    if tag == _TAG_ARRAY:
        try:
            return np.load(io.BytesIO(body), allow_pickle=False)
        except Exception as exc:  # numpy raises several types on garbage
            raise ValueError(f"bad array field ({exc})") from None
    if tag == _TAG_BYTES_LIST:
        if len(body) < 8:
            raise ValueError("truncated bytes list")
        (count,) = struct.unpack("<Q", body[:8])
        if count > (len(body) - 8) // 8:
            raise ValueError("bytes list count exceeds message size")
        lengths = np.frombuffer(body[8 : 8 + 8 * count], dtype="<u8")
        blob = body[8 + 8 * count :]
        if int(lengths.sum()) != len(blob):
            raise ValueError("bytes list lengths do not match its content")
        offsets = [0] + np.cumsum(lengths, dtype=np.uint64).tolist()
        return [bytes(blob[offsets[i] : offsets[i + 1]]) for i in range(count)]
    if tag == _TAG_JSON:
        try:
            return json.loads(bytes(body).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"bad JSON field ({exc})") from None
    raise ValueError(f"unknown field tag {tag!r}")
