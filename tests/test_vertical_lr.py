"""The shared vertical-LR engine: masked releases, products, slot hiding, optimiser, split sigmoid."""

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit
from sklearn.linear_model import LogisticRegression

from fedscore.errors import CryptoError, ProtocolError
from fedscore.he import load_context
from fedscore.kit.encoder import FeatureEncoder
from fedscore.kit.table import PartyTable
from fedscore.protocols.vertical_lr import (
    BoundOptimizer,
    centred_media_logit,
    create_key,
    encoded_column_bound,
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
    open_values,
    release,
    seal_values,
    split_brier,
    split_coefficient_bounds,
    split_sigmoid,
    unmask,
)
from fedscore.runtime.party import PartyContext

pytestmark = pytest.mark.filterwarnings("ignore:1024-bit Paillier key:UserWarning")


@pytest.fixture(scope="module")
def keys():
    return {"ckks": create_key("ckks", release_budget=256), "paillier": create_key("paillier", paillier_key_bits=1024, allow_weak_key=True)}


@pytest.mark.parametrize("scheme", ["ckks", "paillier"])
def test_masked_release_round_trip(keys, scheme):
    """The mask owner recovers Xᵀy; the key owner sees values far from it."""
    rng = np.random.default_rng(0)
    n = 300 if scheme == "ckks" else 40
    x = rng.standard_normal((n, 4))
    y = (rng.random(n) < 0.3).astype(float)
    key = keys[scheme]
    peer = load_context(key.public_context().to_bytes(), allow_weak_key=True)
    labels = peer.load_vector(encrypt_scaled(key, y).to_bytes())
    public_bound = encoded_column_bound(n, n) * 4 + 1.0  # generous: x is not standardised on exactly n rows
    product, shift, bound = encrypted_product(labels, x, 1.0, bound=public_bound, plain=np.ones(4))
    masked, mask_values, release_bound = mask(product, bound)
    assert release_bound == masked_release_bound(scheme, public_bound)  # the key owner can recompute it
    released = release(key, key.load_vector(masked.to_bytes()), release_bound, message_bound(scheme, 1.0))
    recovered = unmask(released, mask_values, shift)
    tolerance = 8 * key.release_noise_std(masked, release_bound, 2.0**10) / 2.0**shift if scheme == "ckks" else 1e-6
    np.testing.assert_allclose(recovered, x.T @ y + 1.0, atol=tolerance)
    assert np.min(np.abs(released / 2.0**shift - (x.T @ y + 1.0))) > 1.0  # the key owner sees masked values


def test_products_share_one_scale(keys):
    rng = np.random.default_rng(1)
    a, b, x = rng.random(200), rng.random(200), rng.standard_normal((200, 3))
    key = keys["ckks"]
    ea, eb = encrypt_scaled(key, a), encrypt_scaled(key, b)
    product, shift, bound = encrypted_products([(ea, x, 1.0), (eb, x * 2.0, 1.0)], bound=3 * np.abs(x).sum(0).max())
    masked, mask_values, release_bound = mask(product, bound)
    noise = key.release_noise_std(masked, release_bound, message_bound("ckks", 1.0)) / 2.0**shift
    recovered = unmask(release(key, masked, release_bound, message_bound("ckks", 1.0)), mask_values, shift)
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


def test_hide_slots_keeps_sums_and_hides_slots(keys):
    key = keys["ckks"]
    y = np.zeros(100)
    y[7] = 1.0
    product, shift, bound = encrypted_product(encrypt_scaled(key, y), np.arange(100.0)[:, None] / 100, 1.0, bound=50.0)
    hidden = hide_slots(product, 2.0**36)
    slots = np.asarray(hidden.ciphertexts[0].decrypt(key._seal.secret_key()))
    assert np.max(np.abs(slots)) > 2.0**30  # the per-row product 0.07 * 2^shift is lost in the shares
    noise = key.release_noise_std(hidden, bound, message_bound("ckks", 1.0)) / 2.0**shift
    value = key.decrypt_release(hidden, bound, message_bound("ckks", 1.0))[0] / 2.0**shift
    assert value == pytest.approx(0.07, abs=8 * noise + 1e-3)


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


def test_sealed_values_between_peers():
    """On the parties' channel (PSI connects it): a payload opens under its own step's label only."""
    brand, media = PartyContext("brand", {}, run_id="r"), PartyContext("media", {}, run_id="r")
    brand.channel.connect("media", media.channel.public_key)
    media.channel.connect("brand", brand.channel.public_key)
    sealed = seal_values(brand, [1.5, -2.0], "step")
    with pytest.raises(CryptoError):
        open_values(media, sealed, "another step")
    np.testing.assert_array_equal(open_values(media, sealed, "step"), [1.5, -2.0])
    with pytest.raises(ProtocolError):
        seal_values(PartyContext("media", {}, run_id="r"), [1.0], "step")
    with pytest.raises(ProtocolError, match="not a numeric array"):
        open_values(brand, media.channel.seal("brand", "step", {"not": "values"}), "step")


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
