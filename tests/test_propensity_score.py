"""Scoring with a trained joint propensity model: the training's scores again, the central arithmetic, every customer."""

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from scipy.special import expit
from scipy.stats import rankdata
from test_propensity import MAY_REACH, SPEC, tables

from fedscore import propensity, propensity_score
from fedscore.audit import audit_ledger, read_transcript
from fedscore.cli import main
from fedscore.errors import InputError, PartyError
from fedscore.kit.model import ModelFile
from fedscore.kit.table import PartyTable
from fedscore.ledger import COORDINATOR, Ledger, read_ledger
from fedscore.protocols.propensity.brand import (
    BRAND_ONLY,
    JOINT,
    PlattCalibration,
    validation_split,
)
from fedscore.protocols.propensity_score.coordinator import run
from fedscore.protocols.propensity_score.options import PropensityScoreOptions
from fedscore.report.jobs import job_report
from fedscore.runtime.coordinator import Coordinator
from fedscore.runtime.local import LocalTransport
from fedscore.wire import Message, ciphertext

pytestmark = pytest.mark.filterwarnings("ignore:1024-bit Paillier key:UserWarning")

ROLES = ("brand", "media")
FAST = {"paillier_key_bits": 1024, "min_intersection": 10}
"""Short ranking keys and a small overlap: tests only."""


def _train(brand, media, out, **options):
    return propensity(brand, media, id_column="uid", label_column="y", out=out, epochs=3, random_state=0,
                      paillier_key_bits=1024, **options)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One training run (240 matched users, 30 brand users the media does not know) and its tables."""
    folder = tmp_path_factory.mktemp("trained")
    brand, media = tables()
    return _train(brand, media, folder / "run"), brand, media


def _ranked_population(result, brand, media):
    """The brand rows the training ranked (validation users, matched users to score) and its unmatched users to score."""
    matched = brand["uid"].isin(media["uid"])
    labelled = (brand["y"] != "").to_numpy()
    validation = validation_split(brand["uid"].to_numpy(), labelled & matched.to_numpy(), 0.2, 0)
    assert validation.sum() == result.report["validation"]["users"]
    return brand[validation | ~labelled].drop(columns=["y"])


def test_rescoring_the_trainings_ranked_users_gives_the_trainings_scores(trained, tmp_path):
    """The new table holds the training's ranked users and its unmatched users to score, without labels:
    every training user to score gets the training's probability, source and order."""
    result, brand, media = trained
    new = _ranked_population(result, brand, media)
    scored = propensity_score(new, media, model=result.out, id_column="uid", out=tmp_path / "june", **FAST)
    assert list(scored.scores.columns) == ["uid", "score", "source"]
    assert set(scored.scores["uid"]) == set(new["uid"]) and scored.scores["uid"].is_unique  # every row once
    again = scored.scores[scored.scores["uid"].isin(result.scores["uid"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(again[["uid", "source"]], result.scores[["uid", "source"]])
    assert np.allclose(again["score"], result.scores["score"], rtol=0, atol=1e-12)
    assert scored.summary["ranked_users"] == result.summary["ranked_users"]
    report = scored.reports["brand"]
    assert report["model_id"] == scored.reports["media"]["model_id"] == scored.model_id
    assert report["trained_run_id"] == result.brand_model.training["run_id"]
    assert report["scored_users"] == len(new) and report["scored_by_source"] == {
        JOINT: result.summary["ranked_users"], BRAND_ONLY: int((~new["uid"].isin(media["uid"])).sum())}
    assert len(scored.top) == round(0.1 * len(new))
    pd.testing.assert_frame_equal(scored.top, scored.scores.head(len(scored.top)))


def test_with_exact_scores_any_table_of_the_trainings_users_gets_the_trainings_scores(tmp_path):
    brand, media = tables(random_state=1)
    result = _train(brand, media, tmp_path / "exact", exact_scores=True)
    to_score = brand[brand["y"] == ""].drop(columns=["y"])
    scored = propensity_score(to_score, media, model=result.out, id_column="uid", **FAST, out=tmp_path / "june")
    pd.testing.assert_frame_equal(scored.scores[["uid", "source"]], result.scores[["uid", "source"]])
    assert np.allclose(scored.scores["score"], result.scores["score"], rtol=0, atol=1e-9)
    assert scored.reports["brand"]["exact_scores"] and scored.reports["media"]["exact_scores"]


def _encoded(model, path, ids):
    """Rows ``ids`` of the table at ``path``, encoded with the model file's saved encoder."""
    table = PartyTable.read(path, required=["uid"], text_columns=["uid"])
    position = {uid: row for row, uid in enumerate(table.ids("uid"))}
    return model.encoder.transform(table, rows=np.array([position[u] for u in ids], dtype=int))


def test_new_customers_score_as_the_two_halves_and_the_saved_maps_compute_centrally(trained, tmp_path):
    """Next month's tables (new values, new and returning customers, a label column nobody reads):
    the joint rows are the two halves' logits ranked and mapped, the others the brand-only model mapped."""
    result, _, _ = trained
    brand, media = tables(random_state=3)
    brand["y"] = "not a label"  # present, never read
    brand = pd.concat([brand, pd.DataFrame({"uid": ["newcomer"], "spend": [0.5], "segment": ["b"], "y": [""]})])
    paths = {role: tmp_path / f"{role}.csv" for role in ROLES}
    brand.to_csv(paths["brand"], index=False)
    media.to_csv(paths["media"], index=False)
    scored = propensity_score(paths["brand"], paths["media"], model={role: result.out / role for role in ROLES},
                              id_column="uid", out=tmp_path / "june", **FAST)
    scores = scored.scores.set_index("uid")
    assert set(scores.index) == set(brand["uid"]) and scores.index.is_unique
    known = set(media["uid"])
    unmatched = [u for u in brand["uid"] if u not in known]
    assert set(scores.index[scores["source"] == BRAND_ONLY]) == set(unmatched) and "newcomer" in unmatched
    matched = [u for u in brand["uid"] if u in known]
    assert set(scores.index[scores["source"] == JOINT]) == set(matched)

    halves = {role: ModelFile.load(result.out / role / "model.json") for role in ROLES}
    own = ModelFile.load(result.out / "brand" / "brand_only.json")
    z = sum(np.clip(halves[role].logits(_encoded(halves[role], paths[role], matched)), -64, 64) for role in ROLES)
    joint_map = PlattCalibration.from_dict(halves["brand"].training["calibration"])
    percentile = (rankdata(z) - 0.5) / len(z)
    expected_joint = joint_map.predict(np.log(percentile / (1 - percentile)))
    assert np.allclose(scores.loc[matched, "score"], expected_joint, rtol=0, atol=1e-12)
    own_map = own.training["calibration"]
    own_logit = own.logits(_encoded(own, paths["brand"], unmatched))
    expected_own = expit(own_map["slope"] * own_logit + own_map["intercept"])
    assert np.allclose(scores.loc[unmatched, "score"], expected_own, rtol=0, atol=1e-12)
    assert scored.scores["score"].is_monotonic_decreasing


def test_the_run_replays_against_the_spec_and_nothing_but_ciphertexts_and_sizes_crosses(trained, tmp_path):
    result, brand, media = trained
    out = tmp_path / "june"
    propensity_score(brand, media, model=result.out, id_column="uid", out=out, **FAST)
    entries = read_ledger(out / "ledger.jsonl")
    assert entries and audit_ledger(entries, read_transcript(SPEC)) == []
    steps = [e["step"] for e in entries]
    assert {s.split(".")[0] for s in steps} == {"psi", "propensity_score"}
    assert steps.count("propensity_score.rank_reveal") == 2  # one request, one reply: one decryption
    for entry in entries:
        for name, field in entry["fields"].items():
            if entry["receiver"] in ("media", COORDINATOR):
                assert field["payload"] in MAY_REACH, (entry["step"], entry["receiver"], name)
            if name in ("model", "media_logits", "scores", "ranks"):
                assert field["payload"] == "ciphertext"
    page = job_report("propensity_score", out, "brand")
    assert page["learned"]["media"] and any("customers scored" in k[1] for k in page["kpis"])
    assert job_report("propensity_score", out, "media")["facts"]


def _configs(tmp_path, tables_, halves):
    configs = {}
    tmp_path.mkdir(parents=True, exist_ok=True)
    for role, frame, half in zip(ROLES, tables_, halves):
        frame.to_csv(tmp_path / f"{role}.csv", index=False)
        (tmp_path / role).mkdir()
        configs[role] = {"data": str(tmp_path / f"{role}.csv"), "out": str(tmp_path / role), "model": str(half),
                         "allow_weak_keys": True}
    return configs


def test_halves_of_two_runs_or_the_wrong_half_are_refused(trained, tmp_path):
    result, brand, media = trained
    other = _train(brand, media, tmp_path / "other").out  # the same data and options: another run
    with pytest.raises(InputError, match="halves of the model are not from the same propensity run"):
        propensity_score(brand, media, model={"brand": result.out / "brand", "media": other / "media"},
                         id_column="uid", out=tmp_path / "mixed", **FAST)
    assert not (tmp_path / "mixed").exists()
    # across organisations each party checks the peer's model id itself, before it encrypts or masks anything
    coordinator = Coordinator(LocalTransport(_configs(tmp_path / "apart", (brand, media), (result.out, other))),
                              Ledger())
    with pytest.raises(PartyError, match="party 'media' failed: the brand's half of the model is not from the "
                                         "fedscore propensity run this media's half comes from"):
        run(coordinator, PropensityScoreOptions.from_dict({"id_column": "uid", **FAST}))
    with pytest.raises(InputError, match="this is the brand's half of the model; the media needs its own"):
        propensity_score(brand, media, model={"brand": result.out / "brand", "media": result.out / "brand"},
                         id_column="uid", out=tmp_path / "x", **FAST)
    with pytest.raises(InputError, match="no model file for the brand in this folder"):
        propensity_score(brand, media, model=tmp_path, id_column="uid", out=tmp_path / "x", **FAST)
    with pytest.raises(InputError, match="missing column.*the model was trained on: clicks"):
        propensity_score(brand, media.drop(columns=["clicks"]), model=result.out, id_column="uid",
                         out=tmp_path / "x", **FAST)
    # a brand half without the calibration a training run now saves beside it
    old = tmp_path / "old" / "brand"
    old.mkdir(parents=True)
    half = json.loads((result.out / "brand" / "model.json").read_text())
    del half["training"]["calibration"]
    (old / "model.json").write_text(json.dumps(half))
    with pytest.raises(InputError, match="no saved calibration or brand-only model"):
        propensity_score(brand, media, model={"brand": old, "media": result.out / "media"}, id_column="uid",
                         out=tmp_path / "x", **FAST)


def test_the_ranking_runs_once(trained, tmp_path):
    """A coordinator asking the media for a second decryption, or the brand for a second masking, is refused."""
    result, brand, media = trained
    coordinator = Coordinator(LocalTransport(_configs(tmp_path, (brand, media), (result.out, result.out))), Ledger())
    summary = run(coordinator, PropensityScoreOptions.from_dict({"id_column": "uid", **FAST}))
    assert summary["ranked_users"] == 240
    for role, step in (("media", "propensity_score.rank_reveal"), ("brand", "propensity_score.rank_mask")):
        with pytest.raises(PartyError, match=f"{step} asked for again|{step.split('.')[1]} asked for again"):
            coordinator.call(role, step, Message(scores=ciphertext(b"")))


def test_cli_propensity_with_a_model(trained, tmp_path):
    result, brand, media = trained
    brand.to_csv(tmp_path / "brand.csv", index=False)
    media.to_csv(tmp_path / "media.csv", index=False)
    out = tmp_path / "cli"
    args = ["propensity", "--brand", str(tmp_path / "brand.csv"), "--media", str(tmp_path / "media.csv"),
            "--id-column", "uid", "--model", str(result.out), "--out", str(out), "--top", "5"]
    done = CliRunner().invoke(main, args)
    assert done.exit_code == 0, done.output
    assert f"propensity --model: {len(brand):,} customers scored with the model of {result.out}" in done.output
    scores = pd.read_csv(out / "brand" / "scores.csv", dtype={"uid": str})
    assert list(scores.columns) == ["uid", "score", "source"] and set(scores["uid"]) == set(brand["uid"])
    assert len(pd.read_csv(out / "brand" / "top.csv")) == 5
    assert (out / "media" / "report.json").is_file() and (out / "ledger.jsonl").is_file()

    bad = tmp_path / "bad"
    for extra, words in ((["--epochs", "5"], "--epochs: training option"),
                         (["--no-label-dp"], "--no-label-dp: training option"),
                         (["--label-column", "y"], "--label-column: training option")):
        refused = CliRunner().invoke(main, args[:-4] + ["--out", str(bad)] + extra)
        assert refused.exit_code == 2 and words in refused.output, refused.output
    unseen_alone = CliRunner().invoke(main, ["propensity", "--brand", str(tmp_path / "brand.csv"), "--media",
                                             str(tmp_path / "media.csv"), "--id-column", "uid", "--label-column", "y",
                                             "--unseen", "zero", "--out", str(bad)])
    assert unseen_alone.exit_code == 2 and "--unseen applies to scoring with --model only" in unseen_alone.output
    assert not bad.exists()


@pytest.mark.integration
def test_through_flower(trained, tmp_path):
    result, brand, media = trained
    new = _ranked_population(result, brand, media)
    scored = propensity_score(new, media, model=result.out, id_column="uid", engine="simulation", out=tmp_path / "sim",
                              **FAST)
    again = scored.scores[scored.scores["uid"].isin(result.scores["uid"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(again[["uid", "source"]], result.scores[["uid", "source"]])
    assert audit_ledger(read_ledger(tmp_path / "sim" / "ledger.jsonl"), read_transcript(SPEC)) == []
