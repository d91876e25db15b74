import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedscore.errors import ProtocolError
from fedscore.ledger import Payload
from fedscore.wire import Message, aggregate, blinded_ids, ciphertext, decode_value, encode_value, size


def test_round_trip_keeps_values_and_categories():
    msg = Message(points=blinded_ids([b"a" * 32, b"b" * 32]), ct=ciphertext(b"\x00\x01"),
                  stats=aggregate({"auc": 0.7}), n=size(3), arr=aggregate(np.arange(5.0)))
    encoded, payloads = msg.encode()
    back = Message.decode(encoded, payloads)
    assert back["points"] == [b"a" * 32, b"b" * 32]
    assert back["ct"] == b"\x00\x01"
    assert back["stats"] == {"auc": 0.7}
    assert back["n"] == 3
    np.testing.assert_array_equal(back["arr"], np.arange(5.0))
    assert back.payload("points") is Payload.BLINDED_IDS
    assert payloads["ct"] == "ciphertext"


def test_fields_must_declare_a_category():
    with pytest.raises(TypeError, match="payload category"):
        Message(value=1.0)


def test_missing_field_is_a_protocol_error():
    with pytest.raises(ProtocolError, match="no field 'x'"):
        Message(n=size(1))["x"]


def test_object_arrays_never_cross():
    with pytest.raises(TypeError):
        encode_value(np.array(["a", 1], dtype=object))


def test_unknown_payload_category_is_refused():
    encoded, _ = Message(n=size(1)).encode()
    with pytest.raises(ProtocolError):
        Message.decode(encoded, {"n": "plaintext_secret"})


@pytest.mark.parametrize("data", [b"", b"Z123", b"L\x05\x00\x00\x00\x00\x00\x00\x00", b"J{not json", b"A\x93NUMPY"])
def test_malformed_values_raise_value_error(data):
    with pytest.raises(ValueError):
        decode_value(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_decoding_arbitrary_bytes_never_crashes(data):
    try:
        decode_value(data)
    except ValueError:
        pass


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=40), min_size=1, max_size=20))
def test_bytes_lists_round_trip(values):
    assert decode_value(encode_value(values)) == values
