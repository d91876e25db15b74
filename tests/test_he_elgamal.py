"""Exponential ElGamal bits: what the lookalike's seed exclusion releases, one bit per value."""

import pickle

import numpy as np
import pytest

from fedscore.errors import CryptoError
from fedscore.he import create_context, load_context
from fedscore.he.elgamal import POINT_BYTES


@pytest.fixture(scope="module")
def owner():
    return create_context("elgamal")


@pytest.fixture(scope="module")
def peer(owner):
    return load_context(owner.public_context().to_bytes())


def test_a_selection_masked_and_shuffled_decrypts_to_its_bits(owner, peer):
    bits = np.array([1, 0, 0, 1, 1, 0])
    sent = peer.load_vector(owner.encrypt_bits(bits).to_bytes())
    order, masks = np.array([4, 1, 1, 0]), np.array([1, 1, 0, 0])
    chosen = sent.take(order).flip(masks)
    assert owner.decrypt_bits(owner.load_vector(chosen.to_bytes())).tolist() == (bits[order] ^ masks).tolist()
    # re-randomised: none of the pairs the key owner sent comes back, even a repeated one
    assert not {p.tobytes() for p in chosen.pairs} & {p.tobytes() for p in sent.pairs}
    assert chosen.pairs[1].tobytes() != chosen.pairs[2].tobytes()


def test_anything_but_single_bits_is_refused(owner, peer):
    """A sum of two flags, a flag counted twice, a pair that is no ciphertext: refused, nothing released."""
    sent = peer.load_vector(owner.encrypt_bits([1, 1, 0]).to_bytes())
    for asked in (sent.take([0]) + sent.take([1]), sent.take([2, 0]) + sent.take([2, 0])):
        with pytest.raises(CryptoError, match="not a single 0/1 flag"):
            owner.decrypt_bits(owner.load_vector(asked.to_bytes()))
    forged = sent.take([0])
    forged.pairs[0, :POINT_BYTES] = 0  # not a point of the group
    with pytest.raises(CryptoError, match="outside the prime-order group"):
        owner.load_vector(forged.to_bytes())
    with pytest.raises(CryptoError, match="another key"):
        owner.load_vector(create_context("elgamal").encrypt_bits([1]).to_bytes())


def test_keys_serialise_and_the_public_part_cannot_decrypt(owner, peer):
    restored = pickle.loads(pickle.dumps(owner))
    vector = peer.encrypt_bits([0, 1])
    assert restored.decrypt_bits(restored.load_vector(vector.to_bytes())).tolist() == [0, 1]
    assert not peer.has_secret_key and peer.fingerprint == owner.fingerprint
    with pytest.raises(CryptoError, match="cannot decrypt"):
        peer.decrypt_bits(vector)
    with pytest.raises(CryptoError, match="no secret key"):
        peer.to_bytes(include_secret_key=True)
    with pytest.raises(ValueError, match="0/1"):
        peer.encrypt_bits([2])
