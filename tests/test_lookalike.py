"""Hidden-seed lookalike: the whole flow (local and Flower simulation), ledger, model file, bad input."""

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from fedscore import params
from fedscore.api.lookalike import lookalike
from fedscore.audit import audit_ledger, read_transcript
from fedscore.cli import main
from fedscore.errors import FedscoreError, InputError
from fedscore.kit.model import ModelFile, score_file
from fedscore.kit.options import LABEL_DP_EPSILON
from fedscore.ledger import COORDINATOR, read_ledger
from fedscore.protocols.lookalike.bounds import DP_CLIP_NORM
from fedscore.protocols.lookalike.options import LookalikeOptions

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "protocols" / "lookalike.md"
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

# What may reach the media or the coordinator: never a label, an ID or a feature value in
# the clear. Masked values travel sealed (as ciphertext) between the parties.
MAY_REACH_MEDIA_OR_COORDINATOR = {"ciphertext", "blinded_ids", "public_parameter", "size", "control"}


def tables(rows=400, seed_size=60, random_state=0):
    """A media audience with a signal: seed members have shifted features."""
    rng = np.random.default_rng(random_state)
    ids = [f"user{i:05d}@example.com" for i in range(rows)]
    likeness = rng.random(rows)
    media = pd.DataFrame({
        "uid": ids,
        "visits": rng.poisson(3 + 6 * likeness),
        "minutes": np.round(rng.gamma(2.0, 10 + 20 * likeness), 1),
        "device": np.where(rng.random(rows) < 0.3 + 0.4 * likeness, "ios", "android"),
    })
    chosen = np.argsort(-(likeness + 0.3 * rng.random(rows)))[:seed_size]
    # a few seed IDs the media does not know: they must not match
    seed = pd.DataFrame({"uid": [ids[i].upper() for i in chosen] + [f"other{i}@example.com" for i in range(5)]})
    return seed, media


def check_ledger(out):
    entries = read_ledger(out / "ledger.jsonl")
    assert audit_ledger(entries, read_transcript(SPEC)) == []
    for entry in entries:
        if entry["receiver"] in ("media", COORDINATOR):
            for name, field in entry["fields"].items():
                assert field["payload"] in MAY_REACH_MEDIA_OR_COORDINATOR, (entry["step"], name)
    return entries


EXCLUDING = {"exclude_seed": True, "label_dp_epsilon": float("inf")}
"""Seed exclusion: it needs label DP off (it tells the media the seed flags of its top users)."""


def test_local_ckks_end_to_end_at_the_defaults(tmp_path, decryptions):
    """Label DP on at its default epsilon, seed members left in the audiences, nothing else asked."""
    seed, media = tables()
    result = lookalike(seed, media, id_column="uid", out=tmp_path / "run", min_seed=50,
                       audience_sizes="5%,10%,30", random_state=1)
    report = result.report
    assert report["matched_seed"] == 60 and report["seed_size"] == 65 and report["media_rows"] == 400
    assert report["label_dp"]["epsilon"] == LABEL_DP_EPSILON and result.summary["label_dp"]["epsilon"] == 4.0
    # the label-DP noise is fresh each run: over 15 runs 0.69-0.84 (mean 0.78, sd 0.04) on these 60 seeds
    assert report["holdout"]["auc"] > 0.6
    assert {k: len(v) for k, v in result.audiences.items()} == {"5pct": 20, "10pct": 40, "30": 30}
    ranked = result.scores.sort_values("score", ascending=False, kind="stable")["uid"]
    assert list(result.audiences["30"]["uid"]) == list(ranked[:30])  # seed members included
    assert result.model.clip_norm == DP_CLIP_NORM
    entries = check_ledger(tmp_path / "run")
    assert "lookalike.release_flags" not in {e["step"] for e in entries}


def test_local_ckks_end_to_end_excluding_the_seed(tmp_path, decryptions):
    seed, media = tables()
    result = lookalike(seed, media, id_column="uid", out=tmp_path / "run", min_seed=50,
                       audience_sizes="5%,10%,30", random_state=1, **EXCLUDING)
    out = tmp_path / "run"
    report = result.report
    assert report["matched_seed"] == 60 and report["seed_size"] == 65 and report["media_rows"] == 400
    assert report["label_dp"] is None
    # three candidates: reported on half of the 80 held-out users (8 seed members), 0.697 with this draw
    assert report["holdout"]["auc"] > 0.6 and report["selection"]["rows"] == report["holdout"]["rows"] == 40
    assert [a["size"] for a in report["holdout"]["audiences"]] == ["5pct", "10pct", "30"]
    assert len(result.scores) == 400 and result.scores["score"].between(0, 1).all()
    seed_ids = {s.lower() for s in seed["uid"]}
    assert {k: len(v) for k, v in result.audiences.items()} == {"5pct": 20, "10pct": 40, "30": 30}
    for audience in result.audiences.values():
        assert not set(audience["uid"]) & seed_ids  # seed excluded
        assert audience["score"].is_monotonic_decreasing
    model = result.model
    assert model.kind == "lookalike" and model.party == "media"
    assert len(model.coef) == len(model.encoder.feature_names_) and np.isfinite(model.intercept)
    assert model.clip_norm is None and model.training["l2"] == report["chosen_l2"]
    brand_files = {p.name for p in (out / "brand").iterdir()}
    assert "report.json" in brand_files and all(name.startswith("report") for name in brand_files)  # aggregates only
    check_ledger(out)
    # every CKKS decryption was a flooded release
    assert decryptions and all(decryptions)


WORKER_SPY = '''"""Loaded at start-up by every Ray worker of one test: log each CKKS decryption."""
import importlib.abc
import importlib.util
import os
import sys

LOG = os.environ.get("FEDSCORE_DECRYPTION_LOG")


def _spy(ckks):
    decrypt, release = ckks.CKKSContext.decrypt, ckks.CKKSContext.decrypt_release
    inside = []

    def spy_decrypt(self, vector):
        with open(LOG, "a", encoding="utf-8") as log:
            log.write("flooded\\n" if inside else "raw\\n")
        return decrypt(self, vector)

    def spy_release(self, vector, bound, message_bound=None):
        inside.append(True)
        try:
            return release(self, vector, bound, message_bound)
        finally:
            inside.pop()

    ckks.CKKSContext.decrypt, ckks.CKKSContext.decrypt_release = spy_decrypt, spy_release


class _PatchOnImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "fedscore.he.ckks":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        execute = spec.loader.exec_module

        def exec_module(module):
            execute(module)
            _spy(module)

        spec.loader.exec_module = exec_module
        return spec


if LOG:
    sys.meta_path.insert(0, _PatchOnImport())
'''


@pytest.fixture
def worker_decryptions(tmp_path, monkeypatch):
    """Record every raw CKKS decryption in the parties' Ray workers, and whether it was a flooded release.

    The simulated parties run in Ray worker processes, out of reach of a monkeypatch
    here. Flower passes this process's ``sys.path`` to them as ``PYTHONPATH``, so a
    ``sitecustomize`` module placed on it is loaded by each worker at start-up and wraps
    the CKKS context there, as :func:`decryptions` does in this process.
    """
    spy = tmp_path / "spy"
    spy.mkdir()
    (spy / "sitecustomize.py").write_text(WORKER_SPY, encoding="utf-8")
    log = tmp_path / "decryptions.log"
    monkeypatch.setenv("PYTHONPATH", os.environ.get("PYTHONPATH", ""))  # Flower rewrites it: restore it after
    monkeypatch.setenv("FEDSCORE_DECRYPTION_LOG", str(log))
    monkeypatch.syspath_prepend(str(spy))
    return lambda: log.read_text(encoding="utf-8").split() if log.exists() else []


def check_small_run(tmp_path, seed, result):
    """The 240-row run of :func:`tables` (``random_state=2``): audiences without seed members, as ranked."""
    assert result.report["holdout"]["auc"] > 0.6
    assert len(result.scores) == 240
    seed_ids = {s.lower() for s in seed["uid"]}
    assert {k: len(v) for k, v in result.audiences.items()} == {"10pct": 24, "30": 30}
    for audience in result.audiences.values():
        assert not set(audience["uid"]) & seed_ids  # seed members excluded, with either backend
    ranked = result.scores.sort_values("score", ascending=False, kind="stable")["uid"]
    assert list(result.audiences["30"]["uid"]) == [u for u in ranked if u not in seed_ids][:30]
    entries = check_ledger(tmp_path / "run")
    assert "lookalike.release_flags" in {e["step"] for e in entries}


@pytest.mark.integration
def test_flower_simulation(tmp_path, worker_decryptions):
    seed, media = tables(rows=240, seed_size=40, random_state=2)
    result = lookalike(seed, media, id_column="uid", out=tmp_path / "run", backend="ckks", min_seed=30,
                       engine="simulation", audience_sizes="10%,30", random_state=3, **EXCLUDING)
    check_small_run(tmp_path, seed, result)
    decryptions = worker_decryptions()
    assert decryptions and set(decryptions) == {"flooded"}  # every CKKS decryption was a flooded release


def test_paillier(tmp_path, decryptions):
    """The same run with Paillier (on the local engine: the Flower transport is tested above)."""
    seed, media = tables(rows=240, seed_size=40, random_state=2)
    result = lookalike(seed, media, id_column="uid", out=tmp_path / "run", backend="paillier", min_seed=30,
                       paillier_key_bits=1024, audience_sizes="10%,30", random_state=3, **EXCLUDING)
    check_small_run(tmp_path, seed, result)
    assert decryptions == []


def test_label_dp_reports_epsilon(tmp_path):
    seed, media = tables()
    result = lookalike(seed, media, id_column="uid", out=tmp_path / "run", min_seed=50, exclude_seed=False,
                       label_dp_epsilon=4.0)
    dp_report = result.report["label_dp"]
    assert dp_report["epsilon"] == 4.0 and dp_report["noise_std"] > 0
    assert result.summary["label_dp"]["epsilon"] == 4.0
    assert [m["l2"] for m in result.report["model_selection"]] == [1e-4]
    assert result.model.clip_norm == DP_CLIP_NORM  # the model file clips as training did


def test_refuses_small_seed_before_sending_anything(tmp_path):
    seed, media = tables()
    with pytest.raises(InputError, match="at least 100"):
        lookalike(seed.head(20), media, id_column="uid", out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_refuses_too_few_matches(tmp_path):
    seed, media = tables()
    unmatched = pd.DataFrame({"uid": list(seed["uid"][:10]) + [f"nobody{i}" for i in range(100)]})
    with pytest.raises(FedscoreError, match="fewer IDs matched than the minimum"):
        lookalike(unmatched, media, id_column="uid", out=tmp_path / "run", min_seed=50)


def test_refuses_dp_with_seed_exclusion(tmp_path):
    seed, media = tables()
    with pytest.raises(InputError, match=r"use exclude_seed=False \(the default\), or label_dp_epsilon=inf"):
        lookalike(seed, media, id_column="uid", out=tmp_path / "run", min_seed=50, label_dp_epsilon=1.0,
                  exclude_seed=True)
    assert not (tmp_path / "run").exists()


def test_audience_sizes():
    def sizes(text):
        return [(s.label, s.fraction if s.fraction is not None else s.count)
                for s in LookalikeOptions.from_dict({"id_column": "uid", "audience_sizes": text}).sizes]

    assert sizes("1%, 5%,2000") == [("1pct", 0.01), ("5pct", 0.05), ("2000", 2000)]
    for bad in ("0%", "150%", "-3", "ten"):
        with pytest.raises(InputError):
            sizes(bad)


def test_options():
    """One schema: defaults, the rules between options, the label-DP defaults."""
    options = LookalikeOptions.from_dict({"id_column": "uid"})
    assert options.label_dp_epsilon == LABEL_DP_EPSILON and not options.exclude_seed and options.min_seed == 100
    assert options.candidates == (1e-4,)  # one candidate: the choice among several is label-dependent
    assert (options.min_category_count, options.outlier_quantile) == (20, 0.005)
    for off in (float("inf"), "inf", None):  # opting out, as Python, a run config or the command line says it
        opted = LookalikeOptions.from_dict({"id_column": "uid", "label_dp_epsilon": off, "exclude_seed": True})
        assert opted.label_dp_epsilon is None and opted.candidates == (1e-4, 1e-3, 1e-2)
    unlimited = LookalikeOptions.from_dict({"id_column": "uid", "min_category_count": "none", "outlier_quantile": 0})
    assert unlimited.min_category_count is None and unlimited.outlier_quantile is None
    assert params.DP_DELTA == options.label_dp_delta
    for bad, message in (({}, "id_column= is required"), ({"min_seed": 0}, "min_seed= must be at least 1"),
                         ({"holdout_fraction": 1.0}, "holdout_fraction= must be less than 1"),
                         ({"l2_candidates": "-1"}, "l2_candidates= must be at least 0"),
                         ({"l2_candidates": ""}, "at least one"),
                         ({"exclude_seed": False, "label_dp_epsilon": 0}, "label_dp_epsilon= must be greater than 0"),
                         ({"backend": "rsa"}, "backend= must be one of ckks, paillier"),
                         ({"top": "5%"}, "unknown lookalike option")):
        with pytest.raises(InputError, match=message):
            LookalikeOptions.from_dict({"id_column": "uid", **bad} if bad else {})


@pytest.mark.parametrize("epsilon", [None, 4.0])
def test_model_file_scores_equal_the_runs_scores(tmp_path, epsilon):
    """``fedscore score`` with DIR/media/model.json over the media's table gives DIR/media/scores.csv exactly.

    With label DP the media trains on clipped rows; the model file records the clipping
    norm, so scoring it clips alike (it once wrote no norm and scored up to 0.17 apart).
    """
    seed, media = tables()
    media_path = tmp_path / "media.csv"
    media.to_csv(media_path, index=False)
    run = tmp_path / "run"
    lookalike(seed, media_path, id_column="uid", out=run, min_seed=50, random_state=0,
              exclude_seed=epsilon is None, label_dp_epsilon=epsilon)
    model = ModelFile.load(run / "media" / "model.json")
    assert model.clip_norm == (None if epsilon is None else DP_CLIP_NORM)
    score_file(run / "media" / "model.json", media_path, id_column="uid", out=tmp_path / "scores.csv",
               chunk_rows=64)
    ours = pd.read_csv(tmp_path / "scores.csv", dtype={"uid": str})
    theirs = pd.read_csv(run / "media" / "scores.csv", dtype={"uid": str})
    assert ours["uid"].tolist() == theirs["uid"].tolist()
    np.testing.assert_allclose(ours["score"], theirs["score"], rtol=0, atol=1e-12)


def test_missing_id_column(tmp_path):
    seed, media = tables()
    with pytest.raises(InputError, match="missing column"):
        lookalike(seed.rename(columns={"uid": "email"}), media, id_column="uid", out=tmp_path / "run")


@pytest.mark.integration
@pytest.mark.skipif(not (SHARED_DATA / "public").is_dir(), reason="shared data not available")
def test_benchmark_smoke(smoke_benchmark):
    assert smoke_benchmark("lookalike")["smoke"] is True


def test_cli_contract(tmp_path):
    """``fedscore lookalike`` writes the files and columns the issue's CLI contract names."""
    seed, media = tables(rows=600, seed_size=120, random_state=4)
    seed.assign(note="ignored").to_csv(tmp_path / "seed.csv", index=False)  # other seed columns are ignored
    media.to_csv(tmp_path / "media.csv", index=False)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, [
        "lookalike", "--seed", str(tmp_path / "seed.csv"), "--media", str(tmp_path / "media.csv"),
        "--id-column", "uid", "--out", str(out), "--audience-size", "1%,5%,10%", "--min-seed", "100",
        "--exclude-seed", "--no-label-dp", "--engine", "local"])
    assert result.exit_code == 0, result.output
    assert "label DP: off (opted out): the media may read the seed membership of a user who stands out" in result.output
    media_files = {p.name for p in (out / "media").iterdir()}
    assert media_files >= {"scores.csv", "model.json", "audience_1pct.csv", "audience_5pct.csv", "audience_10pct.csv"}
    assert (out / "brand" / "report.json").is_file() and (out / "ledger.jsonl").is_file()
    scores = pd.read_csv(out / "media" / "scores.csv")
    assert list(scores.columns) == ["uid", "score"] and set(scores["uid"]) == set(media["uid"])
    for label, count in (("1pct", 6), ("5pct", 30), ("10pct", 60)):
        audience = pd.read_csv(out / "media" / f"audience_{label}.csv")
        assert list(audience.columns) == ["uid", "score"] and len(audience) == count
    report = json.loads((out / "brand" / "report.json").read_text())
    assert report["seed_size"] == 125 and report["matched_seed"] == 120
    assert set(report["holdout"]) >= {"auc", "audiences"}
    assert [a["size"] for a in report["holdout"]["audiences"]] == ["1pct", "5pct", "10pct"]
    assert all({"recall", "precision"} <= set(a) for a in report["holdout"]["audiences"])


def test_cli_refuses_a_small_matched_seed(tmp_path):
    seed, media = tables(rows=600, seed_size=120, random_state=4)
    seed.to_csv(tmp_path / "seed.csv", index=False)
    media.to_csv(tmp_path / "media.csv", index=False)
    result = CliRunner().invoke(main, [
        "lookalike", "--seed", str(tmp_path / "seed.csv"), "--media", str(tmp_path / "media.csv"),
        "--id-column", "uid", "--out", str(tmp_path / "out"), "--min-seed", "121", "--engine", "local"])
    assert result.exit_code == 1 and "fewer IDs matched than the minimum of 121 (--min-seed 121)" in result.output
    assert not (tmp_path / "out").exists()


def test_cli_refuses_label_dp_with_seed_exclusion(tmp_path):
    seed, media = tables()
    seed.to_csv(tmp_path / "seed.csv", index=False)
    media.to_csv(tmp_path / "media.csv", index=False)
    result = CliRunner().invoke(main, [
        "lookalike", "--seed", str(tmp_path / "seed.csv"), "--media", str(tmp_path / "media.csv"),
        "--id-column", "uid", "--out", str(tmp_path / "out"), "--label-dp-epsilon", "1", "--exclude-seed"])
    assert result.exit_code == 1 and "use --include-seed (the default), or --no-label-dp" in result.output
    assert not (tmp_path / "out").exists()


def test_the_l2_penalty_is_chosen_on_other_held_out_users_than_it_reports(tmp_path):
    """Opted out of label DP, three candidates: chosen on half of the held-out users, reported on the other half.

    Recomputed in the clear from the media's scores and the true seed: the reported AUC is the chosen
    model's on the reported half, which chose nothing.
    """
    from fedscore.metrics import auc
    from fedscore.protocols.lookalike.bounds import holdout_rows, selection_rows
    from fedscore.protocols.lookalike.media import holdout_mask, selection_mask

    seed, media = tables(rows=800, seed_size=120)
    result = lookalike(seed, media, id_column="uid", out=tmp_path / "run", min_seed=50,
                       label_dp_epsilon=float("inf"), random_state=3)
    report = result.report
    held = holdout_rows(800, LookalikeOptions.holdout_fraction)
    assert report["selection"]["rows"] == selection_rows(held, 3) == held // 2
    assert report["holdout"]["rows"] == held - held // 2
    chosen = max(report["model_selection"], key=lambda m: m["selection_auc"])
    assert report["chosen_l2"] == chosen["l2"] and len(report["model_selection"]) == 3
    low, high = chosen["selection_auc_interval"]
    assert low < chosen["selection_auc"] < high
    holdout = holdout_mask(800, LookalikeOptions.holdout_fraction, 3)
    selection = selection_mask(holdout, 3, 3)
    assert selection.sum() == held // 2 and not (selection & ~holdout).any()
    members = media["uid"].isin({s.lower() for s in seed["uid"]}).to_numpy()
    scores = media[["uid"]].merge(result.scores, on="uid")["score"].to_numpy()
    reported = holdout & ~selection
    assert report["holdout"]["seed_members"] == members[reported].sum()
    assert report["selection"]["seed_members"] == members[selection].sum()
    # within the release's flooding noise (a few thousandths of the rank sum over a few hundred seed pairs)
    assert report["holdout"]["auc"] == pytest.approx(auc(members[reported], scores[reported]), abs=0.01)
    assert chosen["selection_auc"] == pytest.approx(auc(members[selection], scores[selection]), abs=0.01)
    check_ledger(tmp_path / "run")
