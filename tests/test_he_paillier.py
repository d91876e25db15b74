import math
import pickle
import warnings

import numpy as np
import pytest

from fedscore.errors import CryptoError
from fedscore.he import PaillierContext, create_context, load_context

# Small keys keep the tests fast; the 3072-bit default is checked once below.
TEST_KEY_BITS = 1024
RESOLUTION = 2.0**-40  # PRECISION_BITS


def weak_context():
    with pytest.warns(UserWarning, match="security"):
        return create_context("paillier", key_bits=TEST_KEY_BITS, allow_weak_key=True)


@pytest.fixture(scope="module")
def owner():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return create_context("paillier", key_bits=TEST_KEY_BITS, allow_weak_key=True)


@pytest.fixture(scope="module")
def peer(owner):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return load_context(owner.public_context().to_bytes(), allow_weak_key=True)


@pytest.fixture
def rng():
    return np.random.default_rng(11)


def test_round_trip_is_exact_to_the_encoding(owner, peer, rng):
    x = rng.uniform(-1e6, 1e6, 40)
    assert np.max(np.abs(owner.decrypt(peer.encrypt(x)) - x)) <= RESOLUTION


def test_addition_subtraction_and_negation(owner, peer, rng):
    x, y, a = rng.uniform(-100, 100, (3, 25))
    ex, ey = peer.encrypt(x), peer.encrypt(y)
    for enc, expected in [
        (ex + ey, x + y),
        (ex - ey, x - y),
        (ex + a, x + a),
        (a + ex, a + x),
        (ex - 2.5, x - 2.5),
        (3.0 - ex, 3.0 - x),
        (-ex, -x),
    ]:
        assert np.max(np.abs(owner.decrypt(enc) - expected)) <= 2 * RESOLUTION


def test_multiplication_dot_and_sum(owner, peer, rng):
    x = rng.uniform(-10, 10, 30)
    w = rng.uniform(-1, 1, 30)
    matrix = rng.normal(size=(30, 4))
    matrix[:, 1] = 0.0
    enc = peer.encrypt(x)
    # each product is exact up to the encodings of x (2^-41) and of the multiplier (2^-41 * |x|)
    assert np.max(np.abs(owner.decrypt(enc * w) - x * w)) <= 11 * RESOLUTION
    assert np.max(np.abs(owner.decrypt(enc * -0.75) - x * -0.75)) <= 11 * RESOLUTION
    assert np.max(np.abs(owner.decrypt(enc.dot(matrix)) - matrix.T @ x)) <= 30 * 11 * RESOLUTION
    assert abs(owner.decrypt(enc.sum())[0] - x.sum()) <= 30 * RESOLUTION
    mixed = enc * w + enc  # exponents 80 and 40 are aligned before adding
    assert np.max(np.abs(owner.decrypt(mixed) - (x * w + x))) <= 12 * RESOLUTION


def test_a_product_is_the_same_ciphertext_as_separate_exponentiations(peer, rng):
    """The bucket multi-exponentiation changes the cost of ``Mᵀ[[v]]``, not one bit of its result."""
    enc = peer.encrypt(rng.uniform(-10, 10, 60))
    matrix = rng.normal(size=(60, 5)) * rng.choice([0.0, 1.0, 1e4, 1e-7], size=(60, 5))
    matrix[:, 2] = 0.0  # a column of zeros: the product is the ciphertext 1
    matrix[:, 3] = -np.abs(matrix[:, 3])  # negative multipliers only
    # each column as n separate exponentiations (element-wise products), multiplied together
    separate = [(enc * matrix[:, j]).sum().ciphertexts[0] for j in range(matrix.shape[1])]
    assert enc.dot(matrix).ciphertexts == separate


def test_a_large_batch_is_encrypted_by_worker_processes_with_fresh_randomness(owner, peer, rng):
    """From PARALLEL_MIN_ENCRYPTIONS values on, each core's process draws its own obfuscators."""
    from fedscore.he.paillier import PARALLEL_MIN_ENCRYPTIONS

    x = rng.uniform(-1e3, 1e3, PARALLEL_MIN_ENCRYPTIONS + 3)
    first, second = peer.encrypt(x), peer.encrypt(x)
    assert np.max(np.abs(owner.decrypt(first) - x)) <= RESOLUTION
    assert len(set(first.ciphertexts) | set(second.ciphertexts)) == 2 * len(x)  # no obfuscator drawn twice


def test_release_is_exact_decryption_rounded_to_the_grid(owner, peer, rng):
    x = rng.uniform(-10, 10, 20)
    product = peer.encrypt(x) * rng.uniform(-1, 1, 20)
    raw = owner.decrypt(product)
    released = owner.decrypt_release(product, bound=10.0)
    assert not np.array_equal(released, raw)
    assert np.max(np.abs(released - raw)) <= RESOLUTION / 2
    assert np.array_equal(released / RESOLUTION, np.round(released / RESOLUTION))
    with pytest.raises(CryptoError, match="exceed the declared bound"):
        owner.decrypt_release(product, bound=0.5)


def test_products_are_rerandomised_before_leaving(owner, peer, rng):
    x = rng.uniform(-1, 1, 5)
    fresh = peer.encrypt(x)
    assert fresh.to_bytes() == fresh.to_bytes()
    product = fresh * 3.0
    first, second = product.to_bytes(), product.to_bytes()
    assert first != second
    assert np.allclose(owner.decrypt(owner.load_vector(first)), owner.decrypt(owner.load_vector(second)))


def test_default_key_is_3072_bits_without_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        context = PaillierContext()
    assert context.key_bits == 3072
    assert np.allclose(context.decrypt(context.encrypt([1.25, -2.5]) * 2.0), [2.5, -5.0])


def test_weak_keys_need_explicit_permission():
    for bits in (2048, 1024):
        with pytest.raises(CryptoError, match="128-bit"):
            PaillierContext(key_bits=bits)
    assert weak_context().key_bits == TEST_KEY_BITS


def test_a_weak_key_is_refused_by_its_receiver_whatever_its_sender_allowed(owner):
    """The sender serialised its context with its own allowance; the receiver's policy decides."""
    shipped = owner.public_context().to_bytes()
    with pytest.raises(CryptoError, match="128-bit"):
        load_context(shipped)
    with pytest.warns(UserWarning, match="security"):
        assert load_context(shipped, allow_weak_key=True).key_bits == TEST_KEY_BITS
    with warnings.catch_warnings():  # a party's own state keeps the allowance it was created with
        warnings.simplefilter("ignore", UserWarning)
        assert pickle.loads(pickle.dumps(owner)).key_bits == TEST_KEY_BITS


def test_too_large_value_is_refused(peer):
    with pytest.raises(CryptoError, match="too large"):
        peer.encrypt([1e300])


def test_vector_under_another_key_is_refused(owner, peer):
    stranger = weak_context()
    foreign = stranger.encrypt([1.0, 2.0])
    with pytest.raises(CryptoError, match="another key"):
        owner.load_vector(foreign.to_bytes())
    with pytest.raises(CryptoError, match="another key"):
        owner.decrypt(foreign)
    with pytest.raises(CryptoError, match="different keys"):
        peer.encrypt([1.0, 2.0]) + foreign


def test_corrupted_or_truncated_bytes_are_refused(owner, peer):
    data = bytearray(peer.encrypt(np.arange(4.0)).to_bytes())
    for bad in [bytes(data[:-1]), bytes(data[:40]), b"", b"FSHE" + bytes(100)]:
        with pytest.raises(CryptoError):
            owner.load_vector(bad)
    data[len(data) // 2] ^= 0x80
    with pytest.raises(CryptoError, match="corrupted"):
        owner.load_vector(bytes(data))
    with pytest.raises(CryptoError, match="expected a serialised key context"):
        load_context(peer.encrypt([1.0]).to_bytes())


def test_public_context_cannot_decrypt(peer):
    with pytest.raises(CryptoError, match="cannot decrypt"):
        peer.decrypt(peer.encrypt([1.0]))
    with pytest.raises(CryptoError, match="no secret key"):
        peer.to_bytes(include_secret_key=True)


def test_pickle_and_key_file_round_trip(owner, rng):
    x = rng.uniform(-1, 1, 6)
    restored_owner, restored = pickle.loads(pickle.dumps((owner, [owner.encrypt(x), owner.encrypt(x) * 2.0])))
    assert restored_owner.has_secret_key and restored_owner.fingerprint == owner.fingerprint
    assert restored[0].context is restored[1].context
    assert np.allclose(restored[0].context.decrypt(restored[1]), 2 * x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        from_file = load_context(owner.to_bytes(include_secret_key=True), allow_weak_key=True)
    assert np.allclose(from_file.decrypt(from_file.load_vector(restored[0].to_bytes())), x)


def test_integer_masks_and_exact_releases(owner, peer, rng):
    """Integers added at the vector's exponent come back exactly; the bound is checked exactly."""
    x = rng.uniform(-1, 1, 4)
    product = peer.encrypt(x).dot(np.eye(4) * 0.5)
    masks = [int(rng.integers(-2**62, 2**62)) << 60 | 12345 for _ in range(4)]
    released = owner.release_integers(owner.load_vector(product.add_integers(masks).to_bytes()), 2.0**70)
    recovered = np.array([math.ldexp(r - m, -product.exponent) for r, m in zip(released, masks)])
    assert np.max(np.abs(recovered - 0.5 * x)) <= 4 * RESOLUTION
    with pytest.raises(CryptoError, match="exceed the declared bound"):
        owner.release_integers(product.add_integers(masks), 1.0)


def test_a_selection_is_rerandomised_and_non_ciphertexts_are_refused(owner, peer):
    """take() re-randomises, so the key owner cannot tell which of its ciphertexts were chosen;
    a value sharing a factor with n is no ciphertext (its 'decryption' would be a function of the key)."""
    fresh = owner.encrypt([0.0, 1.0, 0.0])
    sent = peer.load_vector(fresh.to_bytes())
    chosen = peer.load_vector(sent.take([1, 1, 0]).to_bytes())
    assert not set(chosen.ciphertexts) & set(fresh.ciphertexts)
    assert owner.decrypt(chosen).tolist() == [1.0, 1.0, 0.0]
    forged = sent.take([0])
    forged.ciphertexts = [owner._n * 5]
    with pytest.raises(CryptoError, match="outside the ciphertext space"):
        owner.load_vector(forged.to_bytes())
