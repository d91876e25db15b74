"""Fuzzing of everything that decodes bytes another party or the coordinator sent.

Whatever arrives, decoding ends in one of fedscore's own errors (which the runtime turns
into a clear refusal), never a crash, a hang or a wrong value silently used.
"""

import numpy as np
import pytest
from flwr.app import ConfigRecord, RecordDict
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedscore.errors import CryptoError, ProtocolError
from fedscore.he import _envelope, create_context, load_context
from fedscore.ledger import Payload
from fedscore.runtime.flower import unpack_request
from fedscore.wire import Message, ciphertext, size

CATEGORIES = [p.value for p in Payload]
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def contexts():
    """A CKKS and a (small, test-only) Paillier context, and a valid ciphertext of each."""
    ckks = create_context("ckks")
    with pytest.warns(UserWarning):
        paillier = create_context("paillier", key_bits=1024, allow_weak_key=True)
    return {name: (ctx, ctx.encrypt(np.arange(4.0)).to_bytes()) for name, ctx in
            (("ckks", ckks), ("paillier", paillier))}


@FUZZ
@given(st.dictionaries(st.text(max_size=8), st.binary(max_size=64), max_size=4),
       st.dictionaries(st.text(max_size=8), st.one_of(st.sampled_from(CATEGORIES), st.text(max_size=12)), max_size=4))
def test_message_decoding_refuses_whatever_it_cannot_read(fields, payloads):
    try:
        Message.decode(fields, payloads)
    except ProtocolError:
        pass


@FUZZ
@given(st.dictionaries(
    st.sampled_from(["meta", "fields", "payloads", "other"]),
    st.dictionaries(st.sampled_from(["step", "run-id", "seq", "x", "error"]),
                    st.one_of(st.text(max_size=10), st.integers(0, 2**40), st.binary(max_size=30)), max_size=4),
    max_size=4))
def test_a_flower_request_of_any_shape_is_refused_cleanly(records):
    content = RecordDict({name: ConfigRecord(values) for name, values in records.items()})
    try:
        unpack_request(content)
    except ProtocolError:
        pass


def test_a_well_formed_request_decodes():
    encoded, payloads = Message(sealed=ciphertext(b"\x01\x02"), n=size(3)).encode()
    content = RecordDict({"meta": ConfigRecord({"step": "psi.match", "run-id": "r", "seq": 4}),
                          "fields": ConfigRecord(encoded), "payloads": ConfigRecord(payloads)})
    step, run_id, seq, message = unpack_request(content)
    assert (step, run_id, seq, message["n"], message["sealed"]) == ("psi.match", "r", 4, 3, b"\x01\x02")


@FUZZ
@given(st.binary(max_size=300))
def test_arbitrary_bytes_are_never_taken_for_a_key_or_a_ciphertext(contexts, data):
    with pytest.raises(CryptoError):
        load_context(data)
    for context, _ in contexts.values():
        with pytest.raises(CryptoError):
            context.load_vector(data)


@FUZZ
@given(st.data())
def test_a_flipped_byte_in_a_ciphertext_is_always_caught(contexts, data):
    name = data.draw(st.sampled_from(sorted(contexts)))
    context, valid = contexts[name]
    position = data.draw(st.integers(0, len(valid) - 1))
    flipped = valid[:position] + bytes([valid[position] ^ data.draw(st.integers(1, 255))]) + valid[position + 1:]
    with pytest.raises(CryptoError):
        context.load_vector(flipped)


@FUZZ
@given(st.data())
def test_a_well_sealed_envelope_of_garbage_is_refused_not_crashed_on(contexts, data):
    """The envelope's digest is no signature: anyone can seal garbage; its fields are still checked."""
    name = data.draw(st.sampled_from(sorted(contexts)))
    context, _ = contexts[name]
    fields = data.draw(st.lists(st.binary(max_size=64), max_size=3))
    forged_vector = _envelope.pack(_envelope.KIND_VECTOR, name, context.fingerprint, fields)
    forged_context = _envelope.pack(_envelope.KIND_CONTEXT, name, context.fingerprint, fields)
    with pytest.raises(CryptoError):
        context.load_vector(forged_vector)
    with pytest.raises(CryptoError):
        load_context(forged_context)
