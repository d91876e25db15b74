"""Vertical segmentation: Lloyd's algorithm exactly, through Flower, with nothing in clear."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

from fedscore.audit import audit_ledger, read_transcript
from fedscore.data import FeatureEncoder
from fedscore.errors import FedscoreError
from fedscore.ledger import COORDINATOR, Payload, read_ledger
from fedscore.runtime import local
from fedscore.segment import VerticalKMeans
from fedscore.wire import Message

SPEC = Path(__file__).resolve().parents[1] / "protocols" / "segment_vertical.md"
PLAINTEXT = {Payload.PUBLIC_PARAMETER.value, Payload.AGGREGATE.value, Payload.SIZE.value, Payload.CONTROL.value}


def _tables(tmp_path, n=150, seed=0):
    """Three well-separated personas; one small (15 users) so that its profile is withheld."""
    rng = np.random.default_rng(seed)
    sizes = [80, 55, 15]
    centers = np.array([[0, 0, 0, 0], [6, 6, -6, 6], [-6, 6, 6, -6]], dtype=float)
    points = np.vstack([c + rng.normal(size=(s, 4)) for c, s in zip(centers, sizes)])
    channel = np.repeat(["app", "web", "store"], sizes)
    ids = np.array([f"user{i:04d}" for i in range(len(points))])
    brand = pd.DataFrame({"uid": ids, "spend": points[:, 0].round(4), "visits": points[:, 1].round(4),
                          "channel": channel, "label": rng.integers(0, 2, len(ids))})
    media = pd.DataFrame({"uid": ids, "clicks": points[:, 2].round(4), "views": points[:, 3].round(4)})
    # media holds extra users and its own order; brand holds two users media lacks
    extra = pd.DataFrame({"uid": [f"other{i}" for i in range(20)], "clicks": rng.normal(size=20).round(4),
                          "views": rng.normal(size=20).round(4)})
    media = pd.concat([media.iloc[2:], extra]).sample(frac=1, random_state=seed)
    brand.to_csv(tmp_path / "brand.csv", index=False)
    media.to_csv(tmp_path / "media.csv", index=False)
    return tmp_path / "brand.csv", tmp_path / "media.csv"


def _central(brand, media, model, exclude=("label",)):
    """The joint standardised table in the protocol's row order, as a centralised run sees it."""
    blocks = []
    for path in (brand, media):
        table = pd.read_csv(path, dtype=str).set_index("uid").loc[model.ids_].reset_index()
        columns = [c for c in table.columns if c != "uid" and c not in exclude]
        blocks.append(FeatureEncoder().fit_transform(table, columns))
    return np.hstack(blocks)


def test_vertical_kmeans_through_flower_matches_sklearn_and_spec(tmp_path):
    brand, media = _tables(tmp_path)
    model = VerticalKMeans(3, id_column="uid", exclude=["label"], n_init=2, min_segment_size=20,
                           random_state=1, engine="simulation").fit(brand, media, tmp_path / "run")
    assert len(model.ids_) == 148 and not any(i.startswith("other") for i in model.ids_)

    X = _central(brand, media, model)
    reference = KMeans(3, init=X[model.init_rows_], n_init=1).fit(X)
    assert adjusted_rand_score(reference.labels_, model.labels_) == pytest.approx(1.0)
    assert model.inertia_ == pytest.approx(reference.inertia_, rel=1e-6)
    assert np.allclose(model.cluster_centers_, reference.cluster_centers_, atol=1e-6)

    # both parties hold the same segments, in their own files
    out = tmp_path / "run"
    b = pd.read_csv(out / "brand" / "segments.csv", dtype={"uid": str})
    m = pd.read_csv(out / "media" / "segments.csv", dtype={"uid": str})
    assert b.equals(m)

    # the small persona is profiled to each party only from its own columns
    for role, peer_columns in (("brand", ["media.clicks", "media.views"]),
                               ("media", ["brand.spend", "brand.visits", "brand.channel=app"])):
        profiles = pd.read_csv(out / role / "profiles.csv")
        small = profiles["size"] < 20
        assert small.sum() == 1 and (profiles["released"] == ~small).all()
        assert profiles.loc[small, peer_columns].isna().all().all()
        assert profiles.loc[~small, peer_columns].notna().all().all()

    # every hop is in the spec's transcript; the coordinator received nothing in clear but
    # sizes, public parameters, control and the aggregates the spec names
    entries = read_ledger(out / "ledger.jsonl")
    assert audit_ledger(entries, read_transcript(SPEC)) == []
    for entry in entries:
        for name in ("distances", "labels", "positions", "profile"):
            if name in entry["fields"]:
                assert entry["fields"][name]["payload"] == Payload.CIPHERTEXT.value


def test_no_feature_value_or_distance_crosses_in_clear(tmp_path, monkeypatch):
    """Decode every plaintext field of every message and look for the parties' numbers."""
    brand, media = _tables(tmp_path, n=150, seed=3)
    crossed = []
    original = local.LocalTransport.exchange

    def spy(self, requests, timeout=None):
        replies = original(self, requests, timeout)
        for r in requests:
            crossed.append(Message.decode(r.fields, r.payloads))
        for r in replies:
            if r.error is None:
                crossed.append(Message.decode(r.fields, r.payloads))
        return replies

    monkeypatch.setattr(local.LocalTransport, "exchange", spy)
    model = VerticalKMeans(3, id_column="uid", exclude=["label"], n_init=2, random_state=0).fit(brand, media)

    secrets = np.concatenate([pd.read_csv(brand)[["spend", "visits"]].to_numpy().ravel(),
                              pd.read_csv(media)[["clicks", "views"]].to_numpy().ravel()])
    X = _central(brand, media, model)
    distances = ((X[:, None, :] - model.cluster_centers_[None]) ** 2).sum(axis=2)
    secrets = np.concatenate([secrets, X.ravel(), distances.ravel()])
    clear = []
    for message in crossed:
        for name in message:
            if message.payload(name).value in PLAINTEXT:
                value = message[name]
                if isinstance(value, (int, float, list, np.ndarray)) and not isinstance(value, bool):
                    try:
                        clear.append(np.asarray(value, dtype=float).ravel())
                    except (TypeError, ValueError):
                        pass  # lists of names or bytes: not numbers
    clear = np.concatenate(clear)
    clear = clear[np.abs(clear) > 1e-9]  # sizes and zeros
    clear = clear[clear != np.round(clear)]  # counts, positions, seeds
    close = np.isclose(clear[:, None], secrets[None, :], rtol=1e-9, atol=0).any(axis=1)
    assert not close.any(), f"plaintext numbers equal to a feature or distance: {clear[close][:5]}"


def test_profile_noise_changes_only_released_means(tmp_path):
    brand, media = _tables(tmp_path)
    model = VerticalKMeans(3, id_column="uid", exclude=["label"], n_init=2, random_state=2, min_segment_size=20,
                           profile_noise=0.5).fit(brand, media)
    labels = pd.Series(model.labels_, index=model.ids_)
    profiles = model.profiles_["brand"].set_index("segment")
    raw = {role: pd.read_csv(path).set_index("uid").loc[model.ids_] for role, path in
           (("brand", brand), ("media", media))}
    exact_own = raw["brand"][["spend", "visits"]].groupby(labels.to_numpy()).mean()
    assert np.allclose(profiles[["brand.spend", "brand.visits"]], exact_own)  # own profile: exact
    exact_peer = raw["media"][["clicks", "views"]].groupby(labels.to_numpy()).mean()
    released = profiles.index[profiles["released"]]
    shown = profiles.loc[released, ["media.clicks", "media.views"]].to_numpy()
    gap = np.abs(shown - exact_peer.loc[released].to_numpy()) / raw["media"][["clicks", "views"]].std(ddof=0).to_numpy()
    assert (gap > 0).all() and (gap < 5 * 0.5).all()  # noised, by about half a standard deviation


@pytest.mark.parametrize("k, message", [(200, "only 148 users"), (1, "at least 2")])
def test_bad_k_is_refused(tmp_path, k, message):
    brand, media = _tables(tmp_path)
    with pytest.raises(FedscoreError, match=message):
        VerticalKMeans(k, id_column="uid", exclude=["label"]).fit(brand, media)


def test_bad_input_names_file_and_column(tmp_path):
    brand, media = _tables(tmp_path)
    table = pd.read_csv(media, dtype=str)
    table.iloc[5, table.columns.get_loc("clicks")] = "n/a"
    table.to_csv(media, index=False)
    with pytest.raises(FedscoreError, match="media.csv.*clicks.*row 7"):
        VerticalKMeans(3, id_column="uid", exclude=["label"]).fit(brand, media)
    with pytest.raises(FedscoreError, match="missing column"):
        VerticalKMeans(3, id_column="customer").fit(brand, media)


def test_cli_segment_writes_the_contracted_files(tmp_path):
    from click.testing import CliRunner

    import fedscore.cli.segment  # noqa: F401  (registers the command)
    from fedscore.cli import main

    brand, media = _tables(tmp_path)
    out = tmp_path / "cli"
    result = CliRunner().invoke(main, ["segment", "--brand", str(brand), "--media", str(media), "--id-column", "uid",
                                       "--k", "3", "--exclude", "label", "--out", str(out), "--engine", "local",
                                       "--n-init", "2", "--seed", "0"])
    assert result.exit_code == 0, result.output
    for role in ("brand", "media"):
        assert (out / role / "segments.csv").is_file() and (out / role / "profiles.csv").is_file()
    assert (out / "ledger.jsonl").is_file()
    assert COORDINATOR not in {p.name for p in out.iterdir()}

    refused = CliRunner().invoke(main, ["segment", "--brand", str(brand), "--media", str(media), "--id-column", "uid",
                                        "--k", "500", "--exclude", "label", "--out", str(tmp_path / "bad"),
                                        "--engine", "local"])
    assert refused.exit_code == 1 and "only 148 users are in both files" in refused.output
    assert not (tmp_path / "bad").exists()  # a failed run leaves no partial output


def test_benchmark_smoke(tmp_path):
    import json
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    if not (root.parent / "shared" / "data" / "public").is_dir():
        pytest.skip("benchmark data (shared/data next to the project) is absent")
    result = subprocess.run([sys.executable, str(root / "benchmarks" / "bench_segment.py"), "--smoke", "--out",
                             str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    tables = json.loads((tmp_path / "segment.json").read_text())["tables"]
    assert all(row[8] for row in tables[0]["rows"]) and all(row[9] for row in tables[1]["rows"])
