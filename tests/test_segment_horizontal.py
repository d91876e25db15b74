"""Horizontal segmentation: N parties, Lloyd's algorithm on HE-aggregated sums, through Flower."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

from fedscore.audit import audit_ledger, read_transcript
from fedscore.errors import FedscoreError
from fedscore.ledger import COORDINATOR, Payload, read_ledger
from fedscore.scoring_horizontal import PrivacyWarning
from fedscore.segment_horizontal import HorizontalKMeans

SPEC = Path(__file__).resolve().parents[1] / "protocols" / "segment_horizontal.md"


def _parties(tmp_path, n_parties=3, rows=60, seed=0):
    """Stores with the same columns; each holds users of every persona, in its own mix."""
    rng = np.random.default_rng(seed)
    centers = np.array([[20.0, 300.0, 1.0], [60.0, 100.0, 5.0], [40.0, 900.0, 9.0]])
    paths = {}
    for p in range(n_parties):
        which = rng.integers(0, 3, rows)
        values = centers[which] + rng.normal(size=(rows, 3)) * [3.0, 40.0, 0.5]
        frame = pd.DataFrame(values.round(3), columns=["age", "spend", "visits"])
        frame.insert(0, "id", [f"s{p}-{i}" for i in range(rows)])
        frame["region"] = f"region{p}"  # text: must be excluded
        paths[f"store{p}"] = tmp_path / f"store{p}.csv"
        frame.to_csv(paths[f"store{p}"], index=False)
    return paths


def _pooled(paths, model):
    raw = np.vstack([pd.read_csv(path)[["age", "spend", "visits"]].to_numpy() for path in paths.values()])
    return (raw - model.mean_) / model.scale_, raw


def test_three_parties_through_flower_match_sklearn_and_spec(tmp_path):
    paths = _parties(tmp_path)
    model = HorizontalKMeans(3, id_column="id", exclude=["region"], min_proposal_size=5, random_state=0,
                             engine="simulation").fit(paths, tmp_path / "run")
    X, raw = _pooled(paths, model)
    assert np.allclose(model.mean_, raw.mean(axis=0)) and np.allclose(model.scale_, raw.std(axis=0))
    reference = KMeans(3, init=model.init_centers_, n_init=1).fit(X)
    labels = np.concatenate([model.labels_[name] for name in paths])
    assert adjusted_rand_score(reference.labels_, labels) == pytest.approx(1.0)
    assert np.allclose(model.cluster_centers_, reference.cluster_centers_, atol=1e-6)
    assert model.summary_["converged"] and model.summary_["warnings"] == []

    out = tmp_path / "run"
    centroids = [pd.read_csv(out / name / "centroids.csv") for name in paths]
    assert all(c.equals(centroids[0]) for c in centroids)  # every party holds the same centroids
    # the sizes are those of the assignment in segments.csv, over all parties
    written = np.concatenate([pd.read_csv(out / name / "segments.csv")["segment"] for name in paths])
    assert list(centroids[0]["size"]) == list(np.bincount(written, minlength=3))

    entries = read_ledger(out / "ledger.jsonl")
    assert audit_ledger(entries, read_transcript(SPEC)) == []
    to_coordinator = {f["payload"] for e in entries if e["receiver"] == COORDINATOR for f in e["fields"].values()}
    assert Payload.AGGREGATE.value not in to_coordinator  # not even an aggregate reaches the coordinator
    for entry in entries:
        for name in ("stats", "centers", "sums", "aggregate", "sealed_keys", "sealed_key"):
            if name in entry["fields"]:
                assert entry["fields"][name]["payload"] == Payload.CIPHERTEXT.value


def test_sizes_match_segments_when_the_last_update_moves_labels(tmp_path):
    """Stopped by max_iter while still moving: the last assignment differs from the previous one."""
    rng = np.random.default_rng(2)
    paths = {}
    for p in range(3):  # no cluster structure: Lloyd's iterations keep moving rows
        frame = pd.DataFrame(rng.uniform(size=(60, 3)).round(4), columns=["age", "spend", "visits"])
        frame.insert(0, "id", [f"u{p}-{i}" for i in range(60)])
        paths[f"store{p}"] = tmp_path / f"store{p}.csv"
        frame.to_csv(paths[f"store{p}"], index=False)
    model = HorizontalKMeans(3, id_column="id", min_proposal_size=5, random_state=0,
                             max_iter=1).fit(paths, tmp_path / "run")
    X, _ = _pooled(paths, model)
    before = np.argmin(((X[:, None] - model.init_centers_[None]) ** 2).sum(axis=2), axis=1)
    written = np.concatenate([model.labels_[name] for name in paths])
    assert (before != written).any()  # the case that used to be off by one assignment
    sizes = pd.read_csv(tmp_path / "run" / "store0" / "centroids.csv")["size"]
    assert list(sizes) == list(np.bincount(written, minlength=3))


def test_ten_small_parties_on_default_settings(tmp_path):
    """Wholesale-sized parties (about 40 rows each) need no tuning of the proposal threshold."""
    paths = _parties(tmp_path, n_parties=10, rows=40, seed=3)
    model = HorizontalKMeans(3, id_column="id", exclude=["region"], random_state=0).fit(paths)
    X, _ = _pooled(paths, model)
    reference = KMeans(3, init=model.init_centers_, n_init=1).fit(X)
    labels = np.concatenate([model.labels_[name] for name in paths])
    assert adjusted_rand_score(reference.labels_, labels) == pytest.approx(1.0)


def test_dp_initialisation_noises_every_released_value(tmp_path, monkeypatch):
    """With DP no proposal value is exact: not the sums, not the counts, not the empty cells."""
    import fedscore.segment_horizontal as module

    paths = _parties(tmp_path, n_parties=3, rows=60, seed=1)
    released = []
    original = module.CKKSContext.encrypt

    def spy(self, values):
        released.append(np.asarray(values, dtype=float))
        return original(self, values)

    monkeypatch.setattr(module.CKKSContext, "encrypt", spy)
    HorizontalKMeans(3, id_column="id", exclude=["region"], random_state=0, dp_epsilon=8.0, max_iter=3).fit(paths)
    stats, proposals = released[:3], released[3:6]  # column_stats, then local_centers, of every party
    assert all(len(p) == 4 * 3 * 4 for p in proposals)  # 4k random cells x (d sums + count)
    for vector in proposals:
        assert not np.any(vector == np.round(vector))  # no exact count, no exact zero
    assert all(np.all(s[-1:] == np.round(s[-1:])) for s in stats)  # row counts: exact (not covered)


def test_two_parties_warn_and_dp_noise_is_accounted(tmp_path):
    paths = _parties(tmp_path, n_parties=2, rows=400, seed=1)
    with pytest.warns(PrivacyWarning, match="only two parties"):
        model = HorizontalKMeans(3, id_column="id", exclude=["region"], min_proposal_size=5, random_state=0,
                                 dp_epsilon=8.0, max_iter=10).fit(paths)
    dp = model.summary_["dp"]
    assert 0 < dp["epsilon_spent"] <= 8.0 + 1e-9 and dp["noise_multiplier"] > 0
    assert model.summary_["warnings"]
    X, _ = _pooled(paths, model)
    exact = KMeans(3, init=model.init_centers_, n_init=1).fit(X)
    labels = np.concatenate([model.labels_[name] for name in paths])
    assert adjusted_rand_score(exact.labels_, labels) > 0.8  # noisy, still the same personas


@pytest.mark.filterwarnings("ignore::fedscore.scoring_horizontal.PrivacyWarning")
def test_mismatched_or_text_columns_are_refused(tmp_path):
    paths = _parties(tmp_path, n_parties=2)
    with pytest.raises(FedscoreError, match="region.*not a finite number"):
        HorizontalKMeans(3, id_column="id", min_proposal_size=5).fit(paths)
    other = pd.read_csv(paths["store1"]).rename(columns={"visits": "sessions"})
    other.to_csv(paths["store1"], index=False)
    with pytest.raises(FedscoreError, match="same columns"):
        HorizontalKMeans(3, id_column="id", exclude=["region"], min_proposal_size=5).fit(paths)


@pytest.mark.filterwarnings("ignore::fedscore.scoring_horizontal.PrivacyWarning")
def test_k_larger_than_the_users_is_refused(tmp_path):
    paths = _parties(tmp_path, n_parties=2, rows=10)
    with pytest.raises(FedscoreError, match="only 20 users"):
        HorizontalKMeans(25, id_column="id", exclude=["region"]).fit(paths)
    with pytest.raises(FedscoreError, match="local clusters"):
        HorizontalKMeans(3, id_column="id", exclude=["region"], min_proposal_size=50).fit(paths)


def test_cli_horizontal_kmeans(tmp_path):
    from click.testing import CliRunner

    from fedscore.cli import main

    paths = _parties(tmp_path)
    out = tmp_path / "cli"
    args = ["horizontal", "kmeans", "--id-column", "id", "--k", "3", "--exclude", "region", "--out", str(out),
            "--min-proposal-size", "5", "--engine", "local", "--seed", "0"]
    for path in paths.values():
        args += ["--party", str(path)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    for name in paths:
        segments = pd.read_csv(out / name / "segments.csv")
        assert list(segments.columns) == ["id", "segment"] and len(segments) == 60
        assert (out / name / "centroids.csv").is_file()
