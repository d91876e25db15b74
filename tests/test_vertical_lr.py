"""The shared vertical-LR engine: masked releases, products, slot hiding, optimiser, split sigmoid."""

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit
from sklearn.linear_model import LogisticRegression

from fedscore.errors import CryptoError, ProtocolError
from fedscore.he import load_context
from fedscore.kit.encoder import FeatureEncoder
from fedscore.kit.release import Expected, KeyOwner
from fedscore.kit.table import PartyTable
from fedscore.protocols.vertical_lr import (
    MIN_HIDING_BITS,
    PAILLIER_MASK_BITS,
    BoundOptimizer,
    centred_media_logit,
    create_key,
    encoded_column_bound,
    encoded_entry_bound,
    encrypt_scaled,
    encrypted_product,
    encrypted_products,
    fit_from_aggregate,
    hide_slots,
    mask,
    masked_release_bound,
    media_logit_bound,
    media_quantiles,
    message_bound,
    open_release,
    open_values,
    product,
    seal_values,
    split_brier,
    split_coefficient_bounds,
    split_sigmoid,
)
from fedscore.runtime.party import PartyContext

pytestmark = pytest.mark.filterwarnings("ignore:1024-bit Paillier key:UserWarning")


@pytest.fixture(scope="module")
def keys():
    return {"ckks": create_key("ckks", release_budget=256), "paillier": create_key("paillier", paillier_key_bits=1024, allow_weak_key=True)}


def masked_release(key, labels, x, public_bound, plain=None):
    """The media's masked ``xᵀ[[y]] (+ plain)`` released by the key owner: (released, mask, masked vector)."""
    aggregate, shift, bound = encrypted_product(labels, x, 1.0, bound=public_bound, plain=plain)
    masked, record = mask(aggregate, bound, shift)
    owner = KeyOwner(key, {"step": 1})
    expected = Expected("step", count=x.shape[1], bound=masked_release_bound(key.scheme, public_bound),
                        product=product(key.scheme, public_bound, len(x), [(len(x) * 16.0, 16.0)],
                                        additions=1 + (plain is not None)))
    return owner.release(masked.to_bytes(), expected), record, masked


@pytest.mark.parametrize("scheme", ["ckks", "paillier"])
def test_masked_release_round_trip(keys, scheme):
    """The mask owner recovers Xᵀy; the key owner sees values far from it."""
    rng = np.random.default_rng(0)
    n = 300 if scheme == "ckks" else 40
    x = np.clip(rng.standard_normal((n, 4)), -4, 4)
    y = (rng.random(n) < 0.3).astype(float)
    key = keys[scheme]
    peer = load_context(key.public_context().to_bytes(), allow_weak_key=True)
    labels = peer.load_vector(encrypt_scaled(key, y).to_bytes())
    public_bound = encoded_column_bound(n, n) * 4 + 1.0  # generous: x is not standardised on exactly n rows
    released, record, masked = masked_release(key, labels, x, public_bound, plain=np.ones(4))
    recovered = record.remove(released)
    if scheme == "ckks":
        tolerance = 8 * key.release_noise_std(masked, masked_release_bound(scheme, public_bound), 2.0**10) \
            / 2.0**record.shift
        key_owner_view = np.asarray(released) / 2.0**record.shift
    else:
        tolerance = 1e-9
        assert all(type(v) is int for v in released)  # exact integers: the mask hides every bit
        key_owner_view = np.array([float(v) for v in released]) / 2.0**record.exponent
    np.testing.assert_allclose(recovered, x.T @ y + 1.0, atol=tolerance)
    assert np.min(np.abs(key_owner_view - (x.T @ y + 1.0))) > 1.0  # the key owner sees masked values


def test_paillier_masks_are_uniform_integers_40_bits_above_the_bound(keys):
    """No float64 mask on an exact plaintext: the mask is an integer over 2 * B * 2^40 values."""
    key = keys["paillier"]
    vector = encrypt_scaled(key, np.ones(3)).dot(np.eye(3))
    bound = 3.0
    masked, record = mask(vector, bound, 0)
    radius = int(bound * 2**PAILLIER_MASK_BITS) << record.exponent
    assert all(type(m) is int and abs(m) <= radius for m in record.values)
    assert max(abs(m) for m in record.values) > radius >> 8  # drawn over the whole range
    low_bits = {m & 0xFFFF for m in record.values}
    assert len(low_bits) == 3  # the low bits are random too (a float64 mask leaves them zero)
    released = key.release_integers(masked, masked_release_bound("paillier", bound))
    np.testing.assert_array_equal(record.remove(released), [1.0, 1.0, 1.0])


def test_products_share_one_scale(keys):
    rng = np.random.default_rng(1)
    a, b, x = rng.random(200), rng.random(200), rng.uniform(-1, 1, (200, 3))
    key = keys["ckks"]
    ea, eb = encrypt_scaled(key, a), encrypt_scaled(key, b)
    public_bound = 3 * np.abs(x).sum(0).max()
    aggregate, shift, bound = encrypted_products([(ea, x, 1.0), (eb, x * 2.0, 1.0)], bound=public_bound)
    masked, record = mask(aggregate, bound, shift)
    expected = Expected("step", count=3, bound=masked_release_bound("ckks", public_bound),
                        product=product("ckks", public_bound, 200, [(200.0, 1.0), (800.0, 4.0)]))
    own = key.product_error(200, expected.product.terms, 1)
    noise = key.release_noise_std(key.accept(key.load_vector(masked.to_bytes()), own), expected.bound,
                                  message_bound("ckks", 1.0)) / 2.0**shift
    recovered = record.remove(KeyOwner(key, {"step": 1}).release(masked.to_bytes(), expected))
    assert noise < 0.1  # the shifts keep the flooding noise small in units of the values
    np.testing.assert_allclose(recovered, x.T @ a + 2.0 * x.T @ b, atol=8 * noise)


def test_ckks_refuses_aggregates_it_cannot_hide(keys):
    vector = encrypt_scaled(keys["ckks"], np.ones(10))
    with pytest.raises(CryptoError, match="paillier"):
        encrypted_product(vector, np.full((10, 1), 2.0**40), 1.0, bound=10 * 2.0**40)


def test_products_refuse_a_matrix_beyond_the_public_bound(keys):
    vector = encrypt_scaled(keys["ckks"], np.ones(10))
    with pytest.raises(ProtocolError, match="public bound"):
        encrypted_product(vector, np.full((10, 1), 2.0), 1.0, bound=19.0)


def test_encoded_column_bound_holds_for_encoded_tables(tmp_path):
    """Standardised (even heavy-tailed) and one-hot columns, over any subset of the rows fitted."""
    rng = np.random.default_rng(5)
    frame = pd.DataFrame({"spend": rng.pareto(1.5, 2000).round(2), "visits": rng.poisson(2, 2000),
                          "device": rng.choice(["ios", "android", "web"], 2000)})
    frame.to_csv(tmp_path / "table.csv", index=False)
    x = FeatureEncoder().fit_transform(PartyTable.read(tmp_path / "table.csv"), list(frame.columns))
    design = np.hstack([x, np.ones((2000, 1))])
    for used in (2000, 700, 30):
        rows = rng.choice(2000, used, replace=False)
        assert np.abs(design[rows]).sum(axis=0).max() <= encoded_column_bound(used, 2000)
    rows = np.argsort(-np.abs(x[:, 0]))[:30]  # the worst subset: the largest outliers
    assert np.abs(x[rows, 0]).sum() <= encoded_column_bound(30, 2000)


@pytest.mark.parametrize("rows", [100, 5000])
def test_hide_slots_keeps_sums_and_hides_slots(keys, rows):
    """Slot shares MIN_HIDING_BITS above the largest per-row product at the product's own scale:
    the shift grows for a table smaller than one ciphertext, and so do the shares."""
    key = keys["ckks"]
    y = np.zeros(rows)
    y[7] = 1.0
    column = np.zeros((rows, 1))
    column[:100, 0] = np.arange(100.0) / 100
    aggregate, shift, bound = encrypted_product(encrypt_scaled(key, y), column, 1.0, bound=50.0)
    hidden = hide_slots(aggregate, 2.0**shift)
    slots = np.asarray(hidden.ciphertexts[0].decrypt(key._seal.secret_key()))
    row_product = 0.07 * 2.0**shift  # what slot 7 would show unhidden
    assert np.median(np.abs(slots[:100])) > row_product * 2.0 ** (MIN_HIDING_BITS - 2)
    noise = key.release_noise_std(hidden, bound, message_bound("ckks", 1.0)) / 2.0**shift
    value = key.decrypt_release(hidden, bound, message_bound("ckks", 1.0))[0] / 2.0**shift
    assert value == pytest.approx(0.07, abs=8 * noise + 1e-3)


def test_public_entry_bound_holds_for_encoded_tables(tmp_path):
    """No encoded entry exceeds sqrt(rows fitted); clipped rows none exceeds the clipping norm."""
    rng = np.random.default_rng(8)
    frame = pd.DataFrame({"spend": np.r_[rng.normal(size=499), 1e6], "device": rng.choice(["a", "b"], 500)})
    frame.to_csv(tmp_path / "table.csv", index=False)
    x = FeatureEncoder().fit_transform(PartyTable.read(tmp_path / "table.csv"), list(frame.columns))
    assert np.abs(x).max() <= encoded_entry_bound(500) and np.abs(x).max() > 20  # the outlier comes close
    assert encoded_entry_bound(500, 3.0) == 3.0 and encoded_entry_bound(0.5) == 1.0  # the intercept's 1


def test_bound_optimizer_matches_sklearn():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((500, 5))
    y = (rng.random(500) < expit(x @ [1.0, -0.5, 0.2, 0.0, 0.3] - 1.0)).astype(float)
    l2 = 1e-3
    weights, n_iter = fit_from_aggregate(x, np.hstack([x, np.ones((500, 1))]).T @ y, l2)
    reference = LogisticRegression(C=1 / (l2 * 500), tol=1e-10, max_iter=1000).fit(x, y)
    np.testing.assert_allclose(weights[:-1], reference.coef_[0], atol=1e-5)
    assert weights[-1] == pytest.approx(reference.intercept_[0], abs=1e-5)
    assert n_iter < 500


def test_two_block_steps_converge_with_collinear_blocks():
    """The brand's intercept and the media's one-hot columns are collinear: the two-block bound must hold."""
    rng = np.random.default_rng(3)
    n = 400
    xb = rng.standard_normal((n, 2))
    category = rng.integers(0, 3, n)
    xm = np.eye(3)[category]
    y = (rng.random(n) < expit(xb[:, 0] + (category == 1) - 0.5)).astype(float)
    brand, media = BoundOptimizer(xb, 1e-4, intercept=True, blocks=2), BoundOptimizer(xm, 1e-4, blocks=2)
    design = BoundOptimizer.design(xb, True)
    for _ in range(200):
        r = expit(design @ brand.lookahead + xm @ media.lookahead) - y
        brand.step(design.T @ r / n)
        step = media.step(xm.T @ r / n)
    assert step < 1e-3  # bounded, not oscillating (the flat intercept / one-hot direction moves slowly)
    joint = LogisticRegression(C=1 / (1e-4 * n), tol=1e-10, max_iter=2000).fit(np.hstack([xb, xm]), y)
    ours = design @ brand.weights_ + xm @ media.weights_
    np.testing.assert_allclose(ours, joint.decision_function(np.hstack([xb, xm])), atol=1e-2)


def test_split_sigmoid_is_close_where_the_logits_lie():
    rng = np.random.default_rng(4)
    z_b, z_m = rng.normal(-1.5, 1.0, 2000), rng.normal(0.3, 1.2, 2000)
    quantiles = media_quantiles(z_m)
    u = centred_media_logit(z_m, quantiles)
    c = split_sigmoid(z_b, quantiles)
    approx = c[:, 0] + c[:, 1] * u + c[:, 2] * u * u
    error = np.abs(approx - expit(z_b + z_m))
    taylor = np.abs(0.25 * (z_b + z_m) + 0.5 - expit(z_b + z_m))
    assert error.mean() < 0.02 and error.mean() < taylor.mean() / 5
    assert np.max(np.abs(u)) <= np.max(np.abs(quantiles - quantiles.mean())) + 1e-12


def test_sealed_values_between_peers(pinned, keys):
    """On the parties' channel (PSI connects it): a payload opens at its own step and round only;
    a Paillier release crosses as exact integers."""
    configs = pinned({"brand": {}, "media": {}})
    brand, media = (PartyContext(role, configs[role], run_id="r") for role in ("brand", "media"))
    brand.channel.connect("media", media.channel.offer)
    media.channel.connect("brand", brand.channel.offer)
    sealed = seal_values(brand, np.array([1.5, -2.0]), "step", round=3)
    with pytest.raises(CryptoError):
        open_values(media, sealed, "step", round=4)
    np.testing.assert_array_equal(open_values(media, sealed, "step", round=3), [1.5, -2.0])
    exact = [2**100 + 1, -7]
    assert open_values(media, seal_values(brand, exact, "exact"), "exact", exact=True) == exact
    with pytest.raises(ProtocolError, match="not a numeric array"):
        open_values(brand, media.channel.seal("brand", "step", {"not": "values"}), "step")
    with pytest.raises(ProtocolError, match="exact integers"):
        open_values(brand, media.channel.seal("brand", "step", [1.5]), "step", exact=True)
    vector = encrypt_scaled(keys["paillier"], np.ones(2)).dot(np.eye(2))
    masked, record = mask(vector, 2.0, 0)
    released = keys["paillier"].release_integers(masked, masked_release_bound("paillier", 2.0))
    recovered = open_release(media, brand.channel.seal("media", "release", released), "release", record)
    np.testing.assert_array_equal(recovered, [1.0, 1.0])


def test_split_fits_keep_to_their_public_bounds_and_approximate_the_brier_score():
    rng = np.random.default_rng(6)
    z_b, z_m = rng.normal(-1.0, 2.0, 3000), rng.normal(0.5, 1.5, 3000)
    y = (rng.random(3000) < expit(z_b + z_m)).astype(float)
    quantiles = media_quantiles(z_m)
    u = centred_media_logit(z_m, quantiles)
    bounds = split_coefficient_bounds(quantiles)
    residual = split_sigmoid(z_b, quantiles)
    residual[:, 0] -= y
    brier = split_brier(z_b, y, quantiles)
    for coefficients in (split_sigmoid(z_b, quantiles), residual, brier):
        assert np.all(np.abs(coefficients) <= bounds + 1e-12)
    assert np.max(np.abs(u)) <= media_logit_bound(quantiles) + 1e-12
    approx = brier[:, 0] + brier[:, 1] * u + brier[:, 2] * u * u
    assert np.mean(approx) == pytest.approx(np.mean((expit(z_b + z_m) - y) ** 2), rel=0.05)  # 2 % measured
