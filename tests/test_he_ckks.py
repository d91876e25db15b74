import math
import pickle

import numpy as np
import pytest

from fedscore.errors import CryptoError
from fedscore.he import CKKSContext, create_context, load_context


@pytest.fixture(scope="module")
def owner():
    return create_context("ckks")


@pytest.fixture(scope="module")
def peer(owner):
    return load_context(owner.public_context().to_bytes())


@pytest.fixture
def rng():
    return np.random.default_rng(7)


def tracked_bound(vector, message_bound):
    """The error bound the vector's tracked variance promises (exceeded w.p. about 2^-40)."""
    return vector.context._error_bound(vector, message_bound)


def test_round_trip_spans_several_ciphertexts(owner, peer, rng):
    x = rng.uniform(-1, 1, owner.slots + 100)
    enc = peer.encrypt(x)
    assert len(enc.ciphertexts) == 2 and enc.size == x.size
    assert np.max(np.abs(owner.decrypt(enc) - x)) <= tracked_bound(enc, 1.0)


def test_addition_and_subtraction(owner, peer, rng):
    x, y, a = rng.uniform(-1, 1, (3, 300))
    ex, ey = peer.encrypt(x), peer.encrypt(y)
    for enc, expected in [
        (ex + ey, x + y),
        (ex - ey, x - y),
        (ex + a, x + a),
        (a + ex, a + x),
        (ex - a, x - a),
        (3.0 - ex, 3.0 - x),
        (-ex, -x),
    ]:
        assert np.max(np.abs(owner.decrypt(enc) - expected)) <= tracked_bound(enc, 1.0)


def test_multiplication_by_plaintext_has_no_scale_bias(owner, peer, rng):
    x = rng.uniform(-1000, 1000, 400)
    w = rng.uniform(-1, 1, 400)
    enc = peer.encrypt(x)
    for product, expected in [(enc * w, x * w), (enc * 0.5, x * 0.5), ((enc * w) * 0.25, x * w * 0.25)]:
        error = np.abs(owner.decrypt(product) - expected)
        assert np.max(error) <= tracked_bound(product, 1000.0)
        # TenSEAL's nominal scale alone would leave a relative bias of ~2^-23 (1e-4 here)
        assert np.max(error) < 1e-5


def test_out_of_depth_is_refused(peer):
    enc = peer.encrypt([1.0, 2.0]) * 2.0 * 2.0
    with pytest.raises(CryptoError, match="depth"):
        enc * 2.0


def test_dot_returns_partial_sums_within_tracked_error(owner, peer, rng):
    x = rng.uniform(-1, 1, owner.slots + 50)
    matrix = rng.normal(size=(x.size, 5))
    matrix[: owner.slots, 2] = 0.0  # a sparse column skips the all-zero block
    result = peer.encrypt(x).dot(matrix)
    assert result.layout == "partial" and result.size == 5 and len(result.ciphertexts) == 5
    assert np.max(np.abs(owner.decrypt(result) - matrix.T @ x)) <= tracked_bound(result, 1.0)


def test_sum_of_packed_and_partial_vectors(owner, peer, rng):
    x = rng.uniform(-1, 1, 700)
    matrix = rng.normal(size=(700, 3))
    total = peer.encrypt(x).sum()
    assert total.size == 1
    assert abs(owner.decrypt(total)[0] - x.sum()) <= tracked_bound(total, 1.0)
    nested = peer.encrypt(x).dot(matrix).sum()
    assert abs(owner.decrypt(nested)[0] - (matrix.T @ x).sum()) <= tracked_bound(nested, 1.0)


def test_mask_added_to_partial_sums_hides_every_slot(owner, peer, rng):
    x = rng.uniform(-1, 1, 64)
    matrix = rng.uniform(-1, 1, (64, 2))
    mask = np.array([5e3, -7e3])
    masked = peer.encrypt(x).dot(matrix) + mask
    secret_key = owner._seal.secret_key()
    slots = np.asarray(masked.ciphertexts[0].decrypt(secret_key))
    assert np.median(np.abs(slots[:64] - x * matrix[:, 0])) > 100  # products are not visible
    assert np.max(np.abs(owner.decrypt(masked) - (matrix.T @ x + mask))) <= tracked_bound(masked, 1.0)


def test_release_is_flooded_rounded_and_within_documented_noise(rng):
    owner = CKKSContext(release_budget=4096)
    x = rng.uniform(-5, 5, 4000)
    enc = owner.encrypt(x)
    sigma = owner.release_noise_std(enc, bound=5.0)
    released = owner.decrypt_release(enc, bound=5.0)
    raw = owner.decrypt(enc)
    grid = 2.0 ** math.floor(math.log2(sigma))
    assert not np.allclose(released, raw)
    assert np.allclose(released / grid, np.round(released / grid))
    noise = released - x
    assert np.max(np.abs(noise)) < 8 * sigma
    assert 0.9 * sigma < np.std(noise) < 1.1 * sigma
    assert owner.released == 4000


def test_release_budget_and_bound_are_enforced(rng):
    owner = CKKSContext(release_budget=10)
    with pytest.raises(CryptoError, match="exceed the declared bound"):
        owner.decrypt_release(owner.encrypt([1.0, 50.0]), bound=10.0)
    assert owner.released == 0
    with pytest.raises(CryptoError, match="wrapped around"):
        owner.decrypt_release(owner.encrypt([1.0]) * 2.0 * 2.0, bound=2.0**19)  # q_0 / scale / 2
    owner.decrypt_release(owner.encrypt(np.zeros(10)), bound=1.0)
    with pytest.raises(CryptoError, match="budget"):
        owner.decrypt_release(owner.encrypt([0.0]), bound=1.0)


def test_message_bound_narrows_the_noise(owner, peer, rng):
    masked = peer.encrypt(rng.uniform(-1, 1, 10)).dot(rng.uniform(-1, 1, (10, 2))) + [1e6, 1e6]
    assert owner.release_noise_std(masked, 2e6, message_bound=1.0) < owner.release_noise_std(masked, 2e6) / 100


def test_insecure_parameters_are_refused():
    with pytest.raises(CryptoError, match="128-bit"):
        CKKSContext(coeff_mod_bit_sizes=(60, 60, 60, 60))
    with pytest.raises(CryptoError, match="128-bit"):
        CKKSContext(poly_modulus_degree=4096, coeff_mod_bit_sizes=(60, 40, 40, 60))
    with pytest.raises(CryptoError, match="poly_modulus_degree"):
        CKKSContext(poly_modulus_degree=5000)


def test_public_context_cannot_decrypt_or_export_a_secret(owner, peer):
    assert not peer.has_secret_key and peer.fingerprint == owner.fingerprint
    with pytest.raises(CryptoError, match="cannot decrypt"):
        peer.decrypt(peer.encrypt([1.0]))
    with pytest.raises(CryptoError, match="no secret key"):
        peer.to_bytes(include_secret_key=True)
    assert len(peer.to_bytes()) < 1_000_000  # no Galois or relinearisation keys


def test_vector_under_another_key_is_refused(owner, peer):
    stranger = CKKSContext()
    foreign = stranger.encrypt([1.0, 2.0])
    with pytest.raises(CryptoError, match="another key"):
        owner.load_vector(foreign.to_bytes())
    with pytest.raises(CryptoError, match="another key"):
        owner.decrypt(foreign)
    with pytest.raises(CryptoError, match="different keys"):
        peer.encrypt([1.0, 2.0]) + foreign


def test_corrupted_or_truncated_bytes_are_refused(owner, peer):
    data = bytearray((peer.encrypt(np.arange(10.0)) * 2.0).to_bytes())
    for bad in [bytes(data[:-1]), bytes(data[: len(data) // 2]), b"", b"garbage" * 10]:
        with pytest.raises(CryptoError):
            owner.load_vector(bad)
    data[len(data) // 2] ^= 0x01
    with pytest.raises(CryptoError, match="corrupted"):
        owner.load_vector(bytes(data))
    with pytest.raises(CryptoError, match="expected a serialised encrypted vector"):
        owner.load_vector(owner.public_context().to_bytes())
    context_bytes = bytearray(owner.to_bytes(include_secret_key=True))
    context_bytes[100] ^= 0xFF
    with pytest.raises(CryptoError):
        load_context(bytes(context_bytes))


def test_serialised_vector_round_trip_keeps_layout_and_error(owner, peer, rng):
    x = rng.uniform(-1, 1, 20)
    result = peer.encrypt(x).dot(rng.normal(size=(20, 3)))
    loaded = owner.load_vector(result.to_bytes())
    assert (loaded.layout, loaded.depth, loaded.error) == (result.layout, result.depth, result.error)
    assert np.allclose(owner.decrypt(loaded), owner.decrypt(result), atol=1e-12)


def test_pickle_round_trip_keeps_keys_and_release_count(rng):
    owner = CKKSContext(release_budget=100)
    owner.decrypt_release(owner.encrypt([0.5]), bound=1.0)
    x = rng.uniform(-1, 1, 30)
    vectors = [owner.encrypt(x), owner.encrypt(x) * 2.0]
    restored_owner, restored = pickle.loads(pickle.dumps((owner, vectors)))
    assert restored_owner.has_secret_key and restored_owner.released == 1
    assert restored[0].context is restored[1].context  # one context, shared as before pickling
    assert np.allclose(restored[0].context.decrypt(restored[1]), 2 * x, atol=1e-6)
    assert np.allclose(restored_owner.decrypt(restored_owner.load_vector(restored[0].to_bytes())), x, atol=1e-6)


def test_benchmark_smoke(smoke_benchmark):
    tables = smoke_benchmark("he")["tables"]
    assert {row[0] for row in tables[0]["rows"]} == {"ckks", "paillier"}


def test_the_key_owner_bounds_the_error_of_a_product_itself(owner, peer, rng):
    """product_error covers what the producer's vector tracks for any matrix within the public bounds,
    and the error actually found; a vector declaring more is refused, one declaring less gets the owner's noise."""
    rows = owner.slots + 300  # two ciphertexts
    x = rng.uniform(-1, 1, rows)
    for matrix in (rng.uniform(-1, 1, (rows, 3)), np.eye(rows, 3) * np.sqrt(rows)):  # spread, and one large entry
        square_sum, largest = float((matrix**2).sum(0).max()), float((matrix**2).max())
        result = owner.load_vector((peer.encrypt(x).dot(matrix) + np.ones(3)).to_bytes())
        own = owner.product_error(rows, [(square_sum, largest)], additions=1)
        assert result.error.base <= own.base and result.error.relative <= own.relative
        checked = owner.accept(result, own)
        assert np.max(np.abs(owner.decrypt(checked) - (matrix.T @ x + 1))) <= tracked_bound(checked, 1.0)
    with pytest.raises(CryptoError, match="not computed as the protocol says"):
        owner.accept(result, owner.product_error(rows, [(square_sum / 4, largest / 4)], additions=1))
    lowered = result._derive(result.ciphertexts, type(result.error)())  # a header that declares no error at all
    loaded = owner.load_vector(lowered.to_bytes())
    assert owner.release_noise_std(owner.accept(loaded, own), 10.0, 1.0) == owner.release_noise_std(
        owner.accept(result, own), 10.0, 1.0)
    assert owner.release_noise_std(loaded, 10.0, 1.0) < owner.release_noise_std(owner.accept(loaded, own), 10.0, 1.0)
