"""Horizontal segmentation: N parties, Lloyd's algorithm on HE-aggregated sums, through Flower."""

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score
from test_horizontal_lr import RewritingTransport, set_field

from fedscore import horizontal_kmeans
from fedscore.audit import audit_ledger, read_transcript
from fedscore.errors import FedscoreError, PartyError
from fedscore.he import CKKSContext
from fedscore.kit.model import ModelFile, score_file
from fedscore.ledger import COORDINATOR, Ledger, Payload, read_ledger
from fedscore.protocols import drive
from fedscore.protocols.horizontal import PrivacyWarning
from fedscore.protocols.horizontal_kmeans import coordinator as kmeans_coordinator
from fedscore.protocols.horizontal_kmeans.options import HorizontalKMeansOptions
from fedscore.runtime.coordinator import Coordinator
from fedscore.runtime.local import LocalTransport

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


def _pooled(paths, result):
    raw = np.vstack([pd.read_csv(path)[["age", "spend", "visits"]].to_numpy() for path in paths.values()])
    return (raw - result.mean) / result.scale, raw


def _assigned_alone(out, paths, tmp_path):
    """Each party's table assigned with its own model file alone, as ``fedscore score`` does it."""
    for name, path in paths.items():
        scored = tmp_path / f"{name}-assigned.csv"
        score_file(out / name / "model.json", path, id_column="id", out=scored)
        yield name, pd.read_csv(scored, dtype={"id": str}), pd.read_csv(out / name / "segments.csv", dtype={"id": str})


@pytest.mark.integration
def test_three_parties_through_flower_match_sklearn_and_spec(tmp_path):
    paths = _parties(tmp_path)
    # the pooled statistics against the raw rows: without the outlier limit (on by default, tested below)
    result = horizontal_kmeans(paths, id_column="id", k=3, exclude=["region"], min_proposal_size=5, random_state=0,
                               engine="simulation", out=tmp_path / "run", outlier_quantile=None)
    X, raw = _pooled(paths, result)
    assert np.allclose(result.mean, raw.mean(axis=0)) and np.allclose(result.scale, raw.std(axis=0))
    reference = KMeans(3, init=result.init_centers, n_init=1).fit(X)
    labels = np.concatenate([result.labels[name] for name in paths])
    assert adjusted_rand_score(reference.labels_, labels) == pytest.approx(1.0)
    assert np.allclose(result.cluster_centers, reference.cluster_centers_, atol=1e-6)
    assert result.summary["converged"] and result.summary["warnings"] == []

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


def test_each_party_model_file_assigns_its_table_as_the_run_did(tmp_path):
    """``fedscore score`` on a party's table with its model file alone reproduces its segments.csv."""
    paths = _parties(tmp_path)
    out = tmp_path / "run"
    result = horizontal_kmeans(paths, id_column="id", k=3, exclude=["region"], min_proposal_size=5, random_state=0,
                               out=out)
    assert audit_ledger(read_ledger(out / "ledger.jsonl"), read_transcript(SPEC)) == []
    for name, assigned, written in _assigned_alone(out, paths, tmp_path):
        assert assigned.equals(written), name
        model = ModelFile.load(out / name / "model.json")
        assert model.kind == "horizontal_kmeans" and model.party == name and model.scorable
        assert np.array_equal(model.centers, result.cluster_centers)
        assert model.training["n_iter"] == result.n_iter
    assert result.feature_names == ["age", "spend", "visits"] and result.out == out


@pytest.mark.filterwarnings("ignore::fedscore.protocols.horizontal.PrivacyWarning")
def test_model_files_assign_as_the_run_did_with_dp(tmp_path):
    paths = _parties(tmp_path, n_parties=2, rows=200, seed=1)
    out = tmp_path / "run"
    horizontal_kmeans(paths, id_column="id", k=3, exclude=["region"], random_state=0, dp_epsilon=8.0, max_iter=3,
                      out=out)
    for name, assigned, written in _assigned_alone(out, paths, tmp_path):
        assert assigned.equals(written), name


def test_sizes_match_segments_when_the_last_update_moves_labels(tmp_path):
    """Stopped by max_iter while still moving: the last assignment differs from the previous one."""
    rng = np.random.default_rng(2)
    paths = {}
    for p in range(3):  # no cluster structure: Lloyd's iterations keep moving rows
        frame = pd.DataFrame(rng.uniform(size=(60, 3)).round(4), columns=["age", "spend", "visits"])
        frame.insert(0, "id", [f"u{p}-{i}" for i in range(60)])
        paths[f"store{p}"] = tmp_path / f"store{p}.csv"
        frame.to_csv(paths[f"store{p}"], index=False)
    result = horizontal_kmeans(paths, id_column="id", k=3, min_proposal_size=5, random_state=0, max_iter=1,
                               out=tmp_path / "run")
    X, _ = _pooled(paths, result)
    before = np.argmin(((X[:, None] - result.init_centers[None]) ** 2).sum(axis=2), axis=1)
    written = np.concatenate([result.labels[name] for name in paths])
    assert (before != written).any()  # the case that used to be off by one assignment
    sizes = pd.read_csv(tmp_path / "run" / "store0" / "centroids.csv")["size"]
    assert list(sizes) == list(np.bincount(written, minlength=3))


def test_ten_small_parties_on_default_settings(tmp_path):
    """Wholesale-sized parties (about 40 rows each) need no tuning of the proposal threshold."""
    paths = _parties(tmp_path, n_parties=10, rows=40, seed=3)
    result = horizontal_kmeans(paths, id_column="id", k=3, exclude=["region"], random_state=0)
    X, _ = _pooled(paths, result)
    reference = KMeans(3, init=result.init_centers, n_init=1).fit(X)
    labels = np.concatenate([result.labels[name] for name in paths])
    assert adjusted_rand_score(reference.labels_, labels) == pytest.approx(1.0)
    assert result.out is None


def test_dp_initialisation_noises_every_released_value(tmp_path, monkeypatch):
    """With DP no proposal value is exact: not the sums, not the counts, not the empty cells."""
    paths = _parties(tmp_path, n_parties=3, rows=60, seed=1)
    released = []
    original = CKKSContext.encrypt

    def spy(self, values):
        released.append(np.asarray(values, dtype=float))
        return original(self, values)

    monkeypatch.setattr(CKKSContext, "encrypt", spy)
    horizontal_kmeans(paths, id_column="id", k=3, exclude=["region"], random_state=0, dp_epsilon=8.0, max_iter=3)
    stats, proposals = released[:3], released[3:6]  # column_stats, then local_centers, of every party
    assert all(len(p) == 4 * 3 * 4 + 1 for p in proposals)  # 4k random cells x (d sums + count), then a 1
    for vector in proposals:
        assert not np.any(vector[:-1] == np.round(vector[:-1]))  # no exact count, no exact zero
        assert vector[-1] == 1.0  # the party's contributor count: public, not noised
    assert all(np.all(s[-2:] == np.round(s[-2:])) for s in stats)  # row counts: exact (not covered)


def test_two_parties_warn_and_dp_noise_is_accounted(tmp_path):
    paths = _parties(tmp_path, n_parties=2, rows=400, seed=1)
    with pytest.warns(PrivacyWarning, match="only two parties"):
        result = horizontal_kmeans(paths, id_column="id", k=3, exclude=["region"], min_proposal_size=5,
                                   random_state=0, dp_epsilon=8.0, max_iter=10)
    dp = result.summary["dp"]
    assert 0 < dp["epsilon_spent"] <= 8.0 + 1e-9 and dp["noise_multiplier"] > 0
    assert result.summary["warnings"]
    X, _ = _pooled(paths, result)
    exact = KMeans(3, init=result.init_centers, n_init=1).fit(X)
    labels = np.concatenate([result.labels[name] for name in paths])
    assert adjusted_rand_score(exact.labels_, labels) > 0.8  # noisy, still the same personas


# --- each party's own options and budget; what it decrypts --------------------------------------

RUN = {"id_column": "id", "k": 3, "exclude": ["region"], "min_proposal_size": 5, "random_state": 0}


def _drive(paths, tmp_path, transport=None, own=None, **options):
    """Drive a run with the coordinator's ``options``; each party keeps ``own`` (and the run's proposal size)."""
    configs = {}
    for name, path in paths.items():
        (tmp_path / name).mkdir(exist_ok=True)
        configs[name] = {"data": str(path), "out": str(tmp_path / name), "min_proposal_size": 5, **(own or {})}
    local = LocalTransport(configs)
    coordinator = Coordinator(local if transport is None else transport(local), Ledger())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PrivacyWarning)
        return drive(coordinator, "horizontal_kmeans", {**RUN, **options})


def test_a_coordinator_asking_for_other_privacy_options_is_refused(tmp_path):
    paths = _parties(tmp_path)
    with pytest.raises(PartyError, match=r"dp_epsilon: the coordinator's 20\.0, this party's 8\.0"):
        _drive(paths, tmp_path, own={"dp_epsilon": 8.0, "max_iter": 3}, dp_epsilon=20.0, max_iter=3)
    with pytest.raises(PartyError, match=r"outlier_quantile: the coordinator's 0\.005, this party's 0\.01"):
        _drive(paths, tmp_path, own={"outlier_quantile": "0.01"})


def test_a_coordinator_announcing_a_smaller_noise_multiplier_is_refused(tmp_path):
    def smaller(step, fields):
        if "noise_multiplier" in fields:
            set_field(fields, "noise_multiplier", fields["noise_multiplier"].value * 0.5)

    with pytest.raises(PartyError, match="announced a DP noise multiplier of .* but this party's own is"):
        _drive(_parties(tmp_path), tmp_path, lambda local: RewritingTransport(local, smaller),
               own={"dp_epsilon": 8.0, "max_iter": 3}, dp_epsilon=8.0, max_iter=3)


def test_more_iterations_than_a_partys_max_iter_are_refused(tmp_path):
    """The coordinator tells the parties max_iter = 1 (and the noise that sizes) and iterates on: they refuse."""
    told = HorizontalKMeansOptions.from_dict({**RUN, "dp_epsilon": 8.0, "max_iter": 1})

    def rewrite(step, fields):
        if step == "horizontal_kmeans.setup":
            set_field(fields, "options", {**fields["options"].value, "max_iter": 1})
            set_field(fields, "noise_multiplier", kmeans_coordinator.noise_multiplier(told))

    with pytest.raises(PartyError, match="update 2 asked for, beyond this party's own max_iter = 1"):
        _drive(_parties(tmp_path, rows=200, seed=1), tmp_path, lambda local: RewritingTransport(local, rewrite),
               own={"dp_epsilon": 8.0, "max_iter": 1}, dp_epsilon=8.0, max_iter=10, tol=0)


@pytest.mark.parametrize("added, refusal", [
    ("one party's", "the pooled column statistics adds up 1 parties' vectors; this party accepts from 3 to 3"),
    ("one party's twice", "adds up 4 parties' vectors"),
])
def test_an_aggregate_of_other_than_every_partys_vector_is_refused(tmp_path, monkeypatch, added, refusal):
    original = kmeans_coordinator.add_ciphertexts
    extra = (lambda blobs: blobs[:1]) if added == "one party's" else (lambda blobs: blobs + blobs[:1])
    monkeypatch.setattr(kmeans_coordinator, "add_ciphertexts", lambda context, blobs: original(context, extra(blobs)))
    with pytest.raises(PartyError, match=refusal):
        _drive(_parties(tmp_path), tmp_path)


def test_an_aggregate_of_another_size_is_refused_before_it_is_decrypted(tmp_path, monkeypatch, decryptions):
    def longer(context, blobs):  # the coordinator holds the public key: it can encrypt anything
        return context.encrypt(np.ones(context.load_vector(blobs[0]).size + 3)).to_bytes()

    monkeypatch.setattr(kmeans_coordinator, "add_ciphertexts", longer)
    with pytest.raises(PartyError, match=r"the pooled column statistics holds 11 values, not the 8 this party expects"):
        _drive(_parties(tmp_path), tmp_path)
    assert decryptions == []


def test_outliers_are_limited_on_each_partys_rows(tmp_path):
    """One store holds a huge spend: winsorised to the store's own quantiles before anything is pooled."""
    paths = _parties(tmp_path)
    frame = pd.read_csv(paths["store0"])
    frame.loc[7, "spend"] = 1e7
    frame.to_csv(paths["store0"], index=False)
    out = tmp_path / "run"
    result = horizontal_kmeans(paths, id_column="id", k=3, exclude=["region"], min_proposal_size=5, random_state=0,
                               outlier_quantile=0.02, out=out)
    models = {name: ModelFile.load(out / name / "model.json") for name in paths}
    bounds = {name: m.encoder.bounds_["spend"] for name, m in models.items()}
    assert bounds["store0"][1] < 1_000 and len({tuple(b) for b in bounds.values()}) == 3  # each its own
    assert all(m.encoder.outlier_quantile == 0.02 for m in models.values())
    winsorised = np.concatenate([pd.read_csv(p)["spend"].clip(*bounds[n]) for n, p in paths.items()])
    assert result.mean[1] == pytest.approx(winsorised.mean(), rel=1e-9)  # not the 1e7 row's pull
    for name, assigned, written in _assigned_alone(out, paths, tmp_path):
        assert assigned.equals(written), name


@pytest.mark.filterwarnings("ignore::fedscore.protocols.horizontal.PrivacyWarning")
def test_mismatched_or_text_columns_are_refused(tmp_path):
    paths = _parties(tmp_path, n_parties=2)
    with pytest.raises(FedscoreError, match="region.*not a finite number"):
        horizontal_kmeans(paths, id_column="id", k=3, min_proposal_size=5)
    other = pd.read_csv(paths["store1"]).rename(columns={"visits": "sessions"})
    other.to_csv(paths["store1"], index=False)
    with pytest.raises(FedscoreError, match="same columns"):
        horizontal_kmeans(paths, id_column="id", k=3, exclude=["region"], min_proposal_size=5)


@pytest.mark.filterwarnings("ignore::fedscore.protocols.horizontal.PrivacyWarning")
def test_k_larger_than_the_users_is_refused(tmp_path):
    paths = _parties(tmp_path, n_parties=2, rows=10)
    with pytest.raises(FedscoreError, match="only 20 users"):
        horizontal_kmeans(paths, id_column="id", k=25, exclude=["region"])
    with pytest.raises(FedscoreError, match="local clusters"):
        horizontal_kmeans(paths, id_column="id", k=3, exclude=["region"], min_proposal_size=50)


def test_one_party_is_refused(tmp_path):
    paths = _parties(tmp_path, n_parties=1)
    with pytest.raises(FedscoreError, match="at least two parties"):
        horizontal_kmeans(paths, id_column="id", k=3, exclude=["region"])


def test_cli_horizontal_kmeans(tmp_path):
    from click.testing import CliRunner

    from fedscore.cli import main

    paths = _parties(tmp_path)
    out = tmp_path / "cli"
    args = ["horizontal", "kmeans", "--id-column", "id", "--k", "3", "--exclude", "region", "--out", str(out),
            "--min-proposal-size", "5", "--engine", "local", "--random-state", "0"]
    for path in paths.values():
        args += ["--party", str(path)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "180 rows of 3 parties in 3 segments" in result.output
    for name in paths:
        segments = pd.read_csv(out / name / "segments.csv")
        assert list(segments.columns) == ["id", "segment"] and len(segments) == 60
        assert (out / name / "centroids.csv").is_file() and (out / name / "model.json").is_file()
