"""Propensity scores every user to score: the joint model's ranks for matched users, the brand's own model for the others.

One ranking in ``brand/scores.csv`` (``source``: joint / brand only), both kinds of score
calibrated into probabilities on held-out labelled users; nothing new crosses.
"""

import numpy as np
import pandas as pd
import pytest
from scipy.stats import rankdata
from test_propensity import SHARED_DATA, SPEC, run_in_process, tables

from fedscore.audit import audit_ledger, read_transcript
from fedscore.kit.model import ModelFile
from fedscore.kit.table import PartyTable
from fedscore.protocols.propensity.brand import (
    BRAND_ONLY,
    JOINT,
    PlattCalibration,
    merged_ranking,
    rank_logit,
    validation_split,
)
from fedscore.protocols.vertical_lr import BoundOptimizer, fit_from_aggregate

pytestmark = pytest.mark.filterwarnings("ignore:1024-bit Paillier key:UserWarning")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One small run with both parties in this process: 240 matched users, 30 brand users the media does not know."""
    tmp_path = tmp_path_factory.mktemp("every_customer")
    brand, media = tables()
    summary, transport, ledger = run_in_process(tmp_path, brand, media, epochs=6, top="20%", random_state=0,
                                                paillier_key_bits=1024)
    scores = pd.read_csv(tmp_path / "brand" / "scores.csv", dtype={"uid": str}, keep_default_na=False)
    report = pd.read_json(tmp_path / "brand" / "report.json", typ="series")
    return {"tmp": tmp_path, "brand": brand, "media": media, "summary": summary, "transport": transport,
            "ledger": ledger, "scores": scores, "report": report}


def test_every_user_to_score_appears_once_with_its_source(run):
    brand, media, scores = run["brand"], run["media"], run["scores"]
    to_score = set(brand.loc[brand["y"] == "", "uid"])
    known = set(media["uid"])
    assert list(scores.columns) == ["uid", "score", "source"]
    assert not scores["uid"].duplicated().any() and set(scores["uid"]) == to_score
    source = dict(zip(scores["uid"], scores["source"]))
    assert {uid for uid in to_score if uid not in known} == {uid for uid, s in source.items() if s == BRAND_ONLY}
    assert {uid for uid in to_score if uid in known} == {uid for uid, s in source.items() if s == JOINT}
    assert (scores["source"] == BRAND_ONLY).any() and (scores["source"] == JOINT).any()
    # one ranking: highest probability first; top.csv is its head
    assert scores["score"].between(0, 1).all() and scores["score"].is_monotonic_decreasing
    top = pd.read_csv(run["tmp"] / "brand" / "top.csv", dtype={"uid": str}, keep_default_na=False)
    assert len(top) == round(0.2 * len(scores))
    pd.testing.assert_frame_equal(top, scores.head(len(top)))


def test_report_and_summary_count_the_same_users_and_say_what(run):
    report, summary, scores = run["report"], run["summary"], run["scores"]
    assert report["scored_users"] == len(scores)
    assert report["scored_by_source"] == scores["source"].value_counts().to_dict()
    assert report["ranked_users"] == summary["ranked_users"]
    state = run["transport"].parties["brand"].state["propensity"]
    assert report["ranked_users"] == int((state.validation | state.to_score).sum())
    assert report["scored_by_source"][JOINT] == int(state.to_score.sum())
    assert "scored_users" in report["counts"] and "ranked_users" in report["counts"]
    assert report["top"]["count"] == round(0.2 * len(scores))


def test_merged_order_within_each_source_is_that_sources_order(run):
    """The joint rows follow the joint model (both halves added up), the brand-only rows the brand's own model."""
    tmp, scores = run["tmp"], run["scores"]
    parties = run["transport"].parties
    state = parties["brand"].state["propensity"]
    # joint: the two model halves on the matched rows, as the ranking added them
    joint = 0
    for role in ("brand", "media"):
        model = ModelFile.load(tmp / role / "model.json")
        rows = parties[role].state["psi"].rows
        joint = joint + np.clip(model.logits(model.encoder.transform(PartyTable.read(tmp / f"{role}.csv"), rows=rows)),
                                -64, 64)
    joint = dict(zip(state.ids, joint))
    joint_rows = scores[scores["source"] == JOINT]
    assert np.all(np.diff([joint[uid] for uid in joint_rows["uid"]]) <= 1e-9)
    # brand only: logistic regression on the brand's columns, without the joint model's validation users
    table = PartyTable.read(tmp / "brand.csv", text_columns=["uid", "y"])
    features = state.encoder.transform(table)
    labels = table.labels("y")
    ids = table.ids("uid")
    labelled = ~np.isnan(labels)
    matched = np.isin(ids, state.ids)
    held_out = np.isin(ids, state.ids[state.validation]) | validation_split(ids, labelled & ~matched, 0.2, 0)
    train = labelled & ~held_out
    weights, _ = fit_from_aggregate(features[train], np.append(features[train].T @ labels[train], labels[train].sum()),
                                    state.options.l2)
    own = dict(zip(ids, BoundOptimizer.design(features, True) @ weights))
    own_rows = scores[scores["source"] == BRAND_ONLY]
    assert np.all(np.diff([own[uid] for uid in own_rows["uid"]]) <= 1e-9)
    brand_only = run["report"]["brand_only"]
    assert brand_only["training_users"] == int(train.sum())
    assert brand_only["validation"]["users"] == int(state.validation.sum()) > 0
    assert brand_only["held_out"]["users"] == int(held_out.sum())


def test_the_brand_only_model_never_trains_on_the_joint_validation_users(run):
    report, state = run["report"], run["transport"].parties["brand"].state["propensity"]
    brand = run["brand"]
    labelled = int((brand["y"] != "").sum())
    brand_only = report["brand_only"]
    assert brand_only["training_users"] + brand_only["held_out"]["users"] == labelled
    assert brand_only["matched_training_users"] == int(state.train.sum())  # the joint model's training users, exactly
    assert 0 <= brand_only["validation"]["auc"] <= 1 and 0 <= report["validation"]["auc"] <= 1


def test_nothing_new_crosses(run):
    """The ledger replays against the spec's Transcript: the brand-only model and the merge are local."""
    entries = run["ledger"].entries
    assert entries and audit_ledger(entries, read_transcript(SPEC)) == []
    finish = [e for e in entries if e["step"] == "propensity.finish"]
    assert [(e["sender"], sorted(e["fields"])) for e in finish] == [("coordinator", ["ranks"]), ("brand", [])]
    assert finish[-1] is entries[-1]  # the brand's last reply sends nothing, and nothing follows it


def test_exact_scores_also_merge(tmp_path):
    brand, media = tables(random_state=1)
    run_in_process(tmp_path, brand, media, epochs=4, exact_scores=True, paillier_key_bits=1024)
    scores = pd.read_csv(tmp_path / "brand" / "scores.csv", dtype={"uid": str}, keep_default_na=False)
    assert set(scores["uid"]) == set(brand.loc[brand["y"] == "", "uid"])
    assert set(scores["source"]) == {JOINT, BRAND_ONLY}
    assert scores["score"].between(0, 1).all() and scores["score"].is_monotonic_decreasing


# --- the calibration and the merge, alone ----------------------------------------------------

def test_platt_calibration_gives_probabilities_increasing_in_the_score():
    rng = np.random.default_rng(0)
    x = rng.normal(size=400)
    y = (rng.random(400) < 1 / (1 + np.exp(-(2 * x - 1)))).astype(float)
    calibration = PlattCalibration().fit(x, y)
    assert calibration.slope_ > 0 and calibration.warning_ is None
    grid = np.linspace(-10, 10, 201)
    p = calibration.predict(grid)
    assert np.all((p >= 0) & (p <= 1)) and np.all(np.diff(p) >= 0)
    assert calibration.slope_ == pytest.approx(2, rel=0.3) and calibration.intercept_ == pytest.approx(-1, abs=0.4)
    assert calibration.predict(x).mean() == pytest.approx(y.mean(), abs=0.02)  # calibrated in the large


@pytest.mark.parametrize("y", [np.zeros(20), np.ones(20), np.r_[np.ones(10), np.zeros(10)]])
def test_platt_calibration_is_finite_and_never_decreasing_on_degenerate_held_out_users(y):
    x = np.linspace(-1, 1, 20)  # the last case: the score falls as the label rises
    calibration = PlattCalibration().fit(x, y)
    p = calibration.predict(np.linspace(-5, 5, 11))
    assert np.all(np.isfinite(p)) and np.all((p > 0) & (p < 1)) and np.all(np.diff(p) >= 0)
    empty = PlattCalibration().fit([], [])
    assert empty.warning_ and np.all(empty.predict([-1.0, 1.0]) == 0.5)


def test_rank_logit_is_increasing_in_the_rank():
    order = np.array([5.0, 1.0, 3.0, 2.0, 4.0])
    assert np.array_equal(rankdata(rank_logit(order)), rankdata(order))
    assert rank_logit(np.array([1.0, 2.0])).sum() == pytest.approx(0)


def test_merged_ranking_keeps_each_sources_order_through_ties():
    flat = PlattCalibration().fit(np.zeros(4), np.array([1.0, 0, 0, 0]))  # no signal: one probability
    steep = PlattCalibration()
    steep.slope_, steep.intercept_ = 1e3, 0.0  # saturates at 0 and 1
    frame = merged_ranking("uid", [(JOINT, ["a", "b", "c"], np.array([0.1, 0.3, 0.2]), flat),
                                   (BRAND_ONLY, ["d", "e", "f", "g"], np.array([5.0, 6.0, -5.0, -6.0]), steep)])
    assert list(frame.columns) == ["uid", "score", "source"] and frame["score"].is_monotonic_decreasing
    assert list(frame.loc[frame["source"] == JOINT, "uid"]) == ["b", "c", "a"]
    assert list(frame.loc[frame["source"] == BRAND_ONLY, "uid"]) == ["e", "d", "f", "g"]


@pytest.mark.skipif(not (SHARED_DATA / "public").is_dir(), reason="shared data not available")
def test_benchmark_smoke(smoke_benchmark):
    result = smoke_benchmark("every_customer")
    assert result["smoke"] is True and len(result["tables"]) == 3
    for table in result["tables"]:
        row = dict(zip(table["columns"], table["rows"][0]))
        assert 0 <= row["merged AUC"] <= 1 and row["test users"] == row["matched"] + row["not matched"]
