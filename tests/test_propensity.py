"""Joint propensity: the whole flow (local, Flower simulation, deployment), ledger, model halves, bad input."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from scipy.special import expit

import fedscore
from fedscore import dp, params
from fedscore.audit import audit_ledger, read_transcript
from fedscore.cli import main
from fedscore.errors import FedscoreError, InputError
from fedscore.kit.model import ModelFile, score_file
from fedscore.kit.options import LABEL_DP_EPSILON
from fedscore.kit.table import PartyTable
from fedscore.ledger import COORDINATOR, Ledger, read_ledger
from fedscore.protocols import drive
from fedscore.protocols.propensity.brand import EarlyStopping, validation_split
from fedscore.protocols.propensity.options import PropensityOptions
from fedscore.protocols.vertical_lr import BoundOptimizer
from fedscore.runtime.coordinator import Coordinator
from fedscore.runtime.deployment import flower_executables
from fedscore.runtime.local import LocalTransport

propensity = fedscore.propensity

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "protocols" / "propensity.md"
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

# Never a label, an ID, a feature value, a partial logit, a quantile or a gradient in the
# clear: what reaches the media or the coordinator is encrypted, sealed, blinded, public or
# a count.
MAY_REACH = {"ciphertext", "blinded_ids", "public_parameter", "size", "control"}

pytestmark = pytest.mark.filterwarnings("ignore:1024-bit Paillier key:UserWarning")


def tables(matched=240, random_state=0):
    """Brand and media tables with signal on both sides, partial overlap and users to score."""
    rng = np.random.default_rng(random_state)
    n = matched + 60
    ids = np.array([f"c{i:04d}" for i in range(n)])
    spend, visits = rng.normal(size=n), rng.normal(size=n)
    segment = rng.choice(["a", "b", "c"], size=n)
    clicks = rng.poisson(np.exp(0.5 + 0.4 * rng.normal(size=n)))
    logit = 1.2 * spend + 1.0 * visits + 0.5 * (segment == "a") - 1.0
    label = np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "yes", "no").astype(object)
    label[rng.random(n) < 0.2] = ""  # users to score
    brand = pd.DataFrame({"uid": ids[:matched + 30], "spend": spend[:matched + 30].round(3),
                          "segment": segment[:matched + 30], "y": label[:matched + 30]})
    media_rows = np.r_[np.arange(matched), np.arange(matched + 30, n)]
    media = pd.DataFrame({"uid": ids[media_rows], "visits": visits[media_rows].round(3),
                          "clicks": clicks[media_rows]})
    return brand, media


def check_ledger(out):
    return check_entries(read_ledger(out / "ledger.jsonl"))


def check_entries(entries):
    assert audit_ledger(entries, read_transcript(SPEC)) == []
    for entry in entries:
        for name, field in entry["fields"].items():
            if entry["receiver"] in ("media", COORDINATOR):
                assert field["payload"] in MAY_REACH, (entry["step"], entry["receiver"], name)
    return entries


def run_in_process(tmp_path, brand, media, **options):
    """Run the job with both parties in this process; return the summary, the transport (its parties) and the ledger."""
    configs = {}
    for role, table in (("brand", brand), ("media", media)):
        table.to_csv(tmp_path / f"{role}.csv", index=False)
        (tmp_path / role).mkdir()
        configs[role] = {"data": str(tmp_path / f"{role}.csv"), "out": str(tmp_path / role), "allow_weak_keys": True}
    transport, ledger = LocalTransport(configs), Ledger()
    summary = drive(Coordinator(transport, ledger), "propensity", {"id_column": "uid", "label_column": "y", **options})
    return summary, transport, ledger


def test_local_ckks_end_to_end(tmp_path, decryptions):
    brand, media = tables()
    # label DP off: its fresh noise moves this small run's AUC between 0.60 and 0.82 (10 runs); the
    # defaults are run by test_cli_contract
    result = propensity(brand, media, id_column="uid", label_column="y", out=tmp_path / "run", epochs=8,
                        top="20%", random_state=0, paillier_key_bits=1024, label_dp_epsilon=None)
    report = result.report
    assert report["matched_users"] == 240
    assert report["validation"]["auc"] > 0.7
    unlabelled = set(brand.loc[brand["y"] == "", "uid"])
    assert set(result.scores["uid"]) == unlabelled and result.scores["uid"].is_unique  # every customer to score
    joint = set(result.scores.loc[result.scores["source"] == "joint", "uid"])
    assert joint == unlabelled & set(media["uid"])  # the matched ones by the joint model, the rest by the brand's
    assert result.scores["score"].between(0, 1).all() and result.scores["score"].is_monotonic_decreasing
    assert len(result.top) == round(0.2 * len(unlabelled))
    assert result.brand_model.intercept is not None and len(result.brand_model.coef) == 4  # spend + 3 segments
    assert len(result.media_model.coef) == 2 and result.media_model.intercept is None
    check_ledger(tmp_path / "run")
    assert decryptions and all(decryptions)  # every CKKS decryption was a flooded release


def test_exact_scores_are_probabilities(tmp_path):
    brand, media = tables(random_state=1)
    result = propensity(brand, media, id_column="uid", label_column="y", out=tmp_path / "run", epochs=4,
                        exact_scores=True, paillier_key_bits=1024)
    assert result.scores["score"].between(0, 1).all()
    assert result.scores["score"].nunique() > 10
    assert result.summary["exact_scores"] is True


@pytest.mark.integration
@pytest.mark.parametrize("backend, epsilon", [("ckks", None), ("paillier", 10.0)])
def test_flower_simulation(tmp_path, backend, epsilon):
    """Through Flower's simulation runtime; the Paillier run with label DP, whose extra fields cross too."""
    brand, media = tables(matched=150, random_state=2)
    result = propensity(brand, media, id_column="uid", label_column="y", out=tmp_path / "run", epochs=3,
                        backend=backend, paillier_key_bits=1024, engine="simulation", random_state=0,
                        label_dp_epsilon=epsilon)
    assert result.report["validation"]["auc"] > 0.6
    assert (result.summary["label_dp"] or {}).get("epsilon") == epsilon
    entries = check_ledger(tmp_path / "run")
    assert any("label_term" in entry["fields"] for entry in entries) == (epsilon is not None)


@pytest.mark.integration
def test_deployment(tmp_path):
    """One epoch on a real SuperLink and two SuperNodes on loopback, with TLS and node authentication.

    About two minutes on a quiet 2-core machine, almost all of it Flower's polling (3-6 s
    per hop, about 30 hops with one epoch). One backend: the transport does not depend on it.
    """
    try:
        flower_executables()
    except FedscoreError as exc:
        pytest.skip(str(exc))
    brand, media = tables(matched=120, random_state=3)
    result = propensity(brand, media, id_column="uid", label_column="y", out=tmp_path / "run", epochs=1,
                        backend="ckks", paillier_key_bits=1024, engine="deployment", random_state=0,
                        min_intersection=100)
    assert result.report["validation"]["users"] > 0
    joint = result.scores[result.scores["source"] == "joint"]
    assert set(result.scores["uid"]) == set(brand.loc[brand["y"] == "", "uid"])
    assert set(joint["uid"]) == set(brand.loc[brand["y"] == "", "uid"]) & set(media["uid"])
    entries = check_ledger(tmp_path / "run")
    assert sum(e["step"] == "propensity.brand_round" for e in entries) == 2  # one epoch: request and reply


def test_refuses_missing_label_column(tmp_path):
    brand, media = tables()
    with pytest.raises(FedscoreError, match="missing column"):
        propensity(brand.drop(columns="y"), media, id_column="uid", label_column="y", out=tmp_path / "run")


def test_a_bad_label_is_named_by_its_row_in_the_file(tmp_path):
    brand, media = tables()
    brand = brand.reset_index(drop=True)
    brand.loc[4, "y"] = "maybe"
    path = tmp_path / "brand.csv"
    brand.to_csv(path, index=False)
    with pytest.raises(FedscoreError, match=r"brand.csv, column 'y', row 6: label 'maybe'"):
        propensity(path, media, id_column="uid", label_column="y", out=tmp_path / "run")


def test_the_coordinator_alone_cannot_weaken_a_partys_key(tmp_path):
    """A short Paillier key in the run options is refused by a party that did not consent to it."""
    from fedscore.runtime.runner import run_job

    brand, media = tables()
    brand_path, media_path = tmp_path / "brand.csv", tmp_path / "media.csv"
    brand.to_csv(brand_path, index=False)
    media.to_csv(media_path, index=False)
    options = {"id_column": "uid", "label_column": "y", "backend": "paillier", "paillier_key_bits": 1024,
               "epochs": 1, "min_intersection": 10}
    with pytest.raises(FedscoreError, match="1024-bit Paillier key is below 128-bit security"):
        run_job("propensity", options, {"brand": {"data": str(brand_path)}, "media": {"data": str(media_path)}},
                tmp_path / "run")


def test_refuses_one_class(tmp_path):
    brand, media = tables()
    brand["y"] = np.where(brand["y"] == "", "", "no")
    with pytest.raises(FedscoreError, match="need both 1 and 0"):
        propensity(brand, media, id_column="uid", label_column="y", out=tmp_path / "run")


def test_options():
    def options(**values):
        return PropensityOptions.from_dict({"id_column": "uid", "label_column": "y", **values})

    assert options(top="10%").top_size.fraction == 0.1 and options(top="250").top_size.count == 250
    for bad in ("0%", "x", "-1"):
        with pytest.raises(InputError, match="top"):
            options(top=bad)
    with pytest.raises(InputError, match="backend"):
        propensity("a.csv", "b.csv", id_column="uid", label_column="y", out="never", backend="rsa")
    # the schema restates two defaults it may not import (no numerical library in an options module)
    assert options().l2 == params.DEFAULT_L2 and options().label_dp_delta == params.DP_DELTA
    with pytest.raises(InputError, match="label_column"):
        PropensityOptions.from_dict({"id_column": "uid"})
    # the safe choice is the default; opting out is explicit
    assert options().label_dp_epsilon == LABEL_DP_EPSILON
    assert (options().min_category_count, options().outlier_quantile) == (20, 0.005)
    for off in (float("inf"), "inf", None):
        assert options(label_dp_epsilon=off).label_dp_epsilon is None


def test_options_module_imports_no_numerical_library():
    """The command line builds ``--help`` from the schema: it must stay cheap to import."""
    code = ("import sys, fedscore.protocols.propensity.options; "
            "print(sorted(m for m in ('numpy', 'pandas', 'pyarrow', 'scipy') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.integration
@pytest.mark.skipif(not (SHARED_DATA / "fate").is_dir(), reason="shared data not available")
def test_benchmark_smoke(smoke_benchmark):
    assert smoke_benchmark("propensity")["smoke"] is True


def encoded(model, frame, tmp_path, name):
    """``frame``'s rows encoded by a model file's encoder, read as a party reads its table."""
    path = tmp_path / f"{name}.csv"
    frame.to_csv(path, index=False)
    return model.encoder.transform(PartyTable.read(path))


def test_early_stopping_keeps_the_best_epoch_and_chooses_on_other_users_than_it_reports(tmp_path):
    """Patience 1 stops once the stopping users' score stalls; the kept weights score what the brand was told.

    The held-out users are split in halves: the epoch is chosen on one, the report measures the other.
    """
    # 480 matched users: 37 stopping users, enough for the split-sigmoid Brier score to be within 2e-3 of the exact
    # one (20 stopping users measured 9e-3 away)
    brand, media = tables(matched=480, random_state=4)
    result = propensity(brand, media, id_column="uid", label_column="y", out=tmp_path / "run", epochs=20,
                        patience=1, backend="paillier", paillier_key_bits=1024, random_state=0,
                        label_dp_epsilon=None)  # early stopping is off under label DP
    stopping = result.report["early_stopping"]
    history = stopping["validation_brier"]
    best = stopping["best_epoch"]
    assert result.summary["stopped_early"] and len(history) == best + 2 < 20
    assert all(h > history[best] - 1e-5 for h in history[best + 1:])  # no later epoch improved by the minimum
    assert all(history[best] < h - 1e-5 for h in history[:best])
    # the Brier score of the written models on the validation users, computed here in the clear
    joined = brand.merge(media, on="uid")
    labelled = joined["y"] != ""
    ids = joined["uid"].to_numpy(dtype=object)
    held_out = validation_split(ids, labelled.to_numpy(), 0.2, 0)
    stopping_users = validation_split(ids, held_out, 0.5, 0)
    assert stopping["stopping_users"] == stopping_users.sum() > 0
    assert result.report["validation"]["users"] == (held_out & ~stopping_users).sum() > 0  # the other half
    rows = joined[stopping_users]
    logit = sum(model.logits(encoded(model, rows, tmp_path, model.party))
                for model in (result.brand_model, result.media_model))
    y = (rows["y"] == "yes").to_numpy(float)
    assert np.mean((expit(logit) - y) ** 2) == pytest.approx(history[best], abs=2e-3)


@pytest.mark.parametrize("epsilon", [None, 3.0])
def test_each_model_half_reproduces_the_partial_logits_the_ranking_used(tmp_path, epsilon):
    """Each party's model file, on its own table's matched rows, gives exactly the partial logits it ranked with.

    A half is not scorable alone: the kit's scorer refuses it, saying why.
    """
    brand, media = tables(matched=200, random_state=7)
    summary, transport, _ = run_in_process(tmp_path, brand, media, epochs=3, random_state=0, paillier_key_bits=1024,
                                           label_dp_epsilon=epsilon)
    used = {"brand": transport.parties["brand"].state["propensity"].brand_logits,
            "media": transport.parties["media"].state["propensity"].media_logits}
    for role in ("brand", "media"):
        party = transport.parties[role]
        model = ModelFile.load(tmp_path / role / "model.json")
        assert model.kind == "propensity" and model.party == role and not model.scorable
        assert model.clip_norm == (None if epsilon is None else params.LABEL_DP_CLIP_NORM)
        rows = party.state["psi"].rows
        features = model.encoder.transform(PartyTable.read(tmp_path / f"{role}.csv"), rows=rows)
        np.testing.assert_array_equal(model.logits(features), used[role])
        assert (model.intercept is not None) == (role == "brand")
        with pytest.raises(InputError, match="half"):
            score_file(tmp_path / role / "model.json", tmp_path / f"{role}.csv", id_column="uid",
                       out=tmp_path / f"{role}_scores.csv")
        assert not (tmp_path / f"{role}_scores.csv").exists()
    # the two halves add up to the joint model whose order the brand's scores follow
    scores = pd.read_csv(tmp_path / "brand" / "scores.csv", dtype={"uid": str})
    scores = scores[scores["source"] == "joint"]
    brand_state = transport.parties["brand"].state["propensity"]
    joint = dict(zip(brand_state.ids, np.clip(used["brand"], -64, 64) + np.clip(used["media"], -64, 64)))
    assert np.all(np.diff([joint[uid] for uid in scores["uid"]]) <= 1e-9)  # sorted by score, highest first


def test_early_stopping_rule():
    rule = EarlyStopping(patience=2, validation_users=10)
    assert [rule.update(s) for s in (3.0, 2.0, 2.5, 1.99999, 2.1)] == [True, True, False, False, False]
    assert rule.best_epoch_ == 1 and rule.stop
    blind = EarlyStopping(patience=1, validation_users=0)
    assert blind.update(0.0) and blind.update(0.0) and blind.best_epoch_ == 1 and not blind.stop


def test_cli_contract(tmp_path):
    """``fedscore propensity`` writes the files and columns the issue's CLI contract names."""
    brand, media = tables(random_state=5)
    brand.to_csv(tmp_path / "brand.csv", index=False)
    media.to_csv(tmp_path / "media.csv", index=False)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, [
        "propensity", "--brand", str(tmp_path / "brand.csv"), "--media", str(tmp_path / "media.csv"),
        "--id-column", "uid", "--label-column", "y", "--out", str(out), "--epochs", "3", "--top", "10%",
        "--engine", "local"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("propensity: 240 matched users, ")
    assert f"label DP: epsilon {LABEL_DP_EPSILON:g}, delta 1e-06" in result.stdout  # on by default, and said
    assert {p.name for p in (out / "brand").iterdir()} >= {"scores.csv", "top.csv", "model.json", "report.json"}
    assert {p.name for p in (out / "media").iterdir()} >= {"model.json"}
    assert (out / "ledger.jsonl").is_file()
    scores, top = pd.read_csv(out / "brand" / "scores.csv"), pd.read_csv(out / "brand" / "top.csv")
    assert list(scores.columns) == ["uid", "score", "source"] and list(top.columns) == ["uid", "score", "source"]
    assert set(scores["uid"]) == set(brand.loc[brand["y"] == "", "uid"])
    assert len(top) == round(0.1 * len(scores)) and set(top["uid"]) <= set(scores["uid"])
    report = json.loads((out / "brand" / "report.json").read_text())
    assert set(report["validation"]) >= {"auc", "ks", "lift_at_10pct"}
    brand_model = json.loads((out / "brand" / "model.json").read_text())
    media_model = json.loads((out / "media" / "model.json").read_text())
    assert brand_model["feature_names"] == ["spend", "segment=a", "segment=b", "segment=c"]
    assert media_model["feature_names"] == ["visits", "clicks"]


def test_cli_names_a_bad_option_as_a_flag(tmp_path):
    result = CliRunner().invoke(main, [
        "propensity", "--brand", "b.csv", "--media", "m.csv", "--id-column", "uid", "--label-column", "y",
        "--out", str(tmp_path / "out"), "--top", "0%"])
    assert result.exit_code == 1 and "--top 0% is neither" in result.output


def test_label_dp_releases_the_labels_once_with_the_stated_noise(tmp_path):
    """With label DP both parties' rows are clipped, each holds the label aggregate plus Gaussian
    noise of the stated scale, early stopping is off, and the transcript stays within the spec."""
    brand, media = tables(matched=400, random_state=6)
    summary, transport, ledger = run_in_process(tmp_path, brand, media, epochs=6, patience=1, random_state=0,
                                                label_dp_epsilon=1.0, paillier_key_bits=1024)
    check_entries(ledger.entries)
    brand_state = transport.parties["brand"].state["propensity"]
    media_state = transport.parties["media"].state["propensity"]
    std = dp.noise_multiplier(1.0, 1) * np.sqrt(2 * params.LABEL_DP_CLIP_NORM**2 + 1)
    assert brand_state.label_dp.noise_std == pytest.approx(std)
    assert summary["label_dp"] == {"epsilon": 1.0, "delta": params.DP_DELTA, "releases": 1}
    for state in (brand_state, media_state):
        assert np.linalg.norm(state.features, axis=1).max() <= params.LABEL_DP_CLIP_NORM + 1e-9
    trained_labels = brand_state.train * brand_state.labels  # both parties hold PSI's shared row order
    exact = np.r_[BoundOptimizer.design(brand_state.features, True).T @ trained_labels,
                  media_state.features.T @ trained_labels]
    noisy = np.r_[brand_state.label_term, media_state.label_term]
    standardised = (noisy - exact) / std
    assert 0.05 < np.mean(standardised**2) < 5  # chi-square with 7 degrees of freedom, over 7
    # patience 1 would have stopped a run without DP; under DP every epoch is the best
    assert summary["best_epoch"] == summary["epochs_run"] - 1 and not summary["stopped_early"]
    report = json.loads((tmp_path / "brand" / "report.json").read_text())
    assert report["label_dp"]["epsilon"] == 1.0 and report["early_stopping"]["enabled"] is False
    for role in ("brand", "media"):
        assert ModelFile.load(tmp_path / role / "model.json").clip_norm == params.LABEL_DP_CLIP_NORM


def test_label_dp_is_refused_with_a_bad_epsilon(tmp_path):
    brand, media = tables()
    with pytest.raises(InputError, match="epsilon"):
        propensity(brand, media, id_column="uid", label_column="y", out=tmp_path / "run", label_dp_epsilon=0.0)
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(not (SHARED_DATA / "fate").is_dir(), reason="shared data not available")
def test_the_media_logit_has_a_public_bound_when_weights_grow(tmp_path):
    """Breast with label DP: no weights reproduce the noisy label aggregate, the media's weights grow
    epoch after epoch, and ``u²`` once grew too large for CKKS to encode ("encoded values are too
    large" by the eighth epoch). Clipped to the public limit, every epoch's quantiles stay inside it."""
    from fedscore.protocols.propensity.common import MEDIA_LOGIT_LIMIT

    brand = pd.read_csv(SHARED_DATA / "fate" / "breast_hetero_guest.csv", dtype=str).rename(columns={"id": "uid"})
    media = pd.read_csv(SHARED_DATA / "fate" / "breast_hetero_host.csv", dtype=str).rename(columns={"id": "uid"})
    summary, transport, _ = run_in_process(tmp_path, brand, media, epochs=10, random_state=0, label_dp_epsilon=1.0,
                                           min_intersection=10)
    state = transport.parties["media"].state["propensity"]
    assert summary["epochs_run"] == 10
    assert np.abs(state.quantiles).max() <= MEDIA_LOGIT_LIMIT
    assert np.abs(state.features @ state.optimizer.weights_).max() > MEDIA_LOGIT_LIMIT  # the limit did bind


def test_the_brand_refuses_media_quantiles_beyond_the_public_limit(tmp_path, monkeypatch):
    from fedscore.protocols.propensity import media as media_party

    brand, media = tables(random_state=3)
    monkeypatch.setattr(media_party, "media_quantiles", lambda z: np.linspace(-100.0, 100.0, 64))
    with pytest.raises(FedscoreError, match="quantiles exceed the public limit"):
        run_in_process(tmp_path, brand, media, epochs=2, random_state=0, paillier_key_bits=1024)
