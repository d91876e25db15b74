"""Vertical segmentation: Lloyd's algorithm exactly, through Flower, with nothing in clear."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score
from test_horizontal_lr import RewritingTransport, set_field

from fedscore import segment
from fedscore.audit import audit_ledger, read_transcript
from fedscore.errors import FedscoreError, InputError, PartyError
from fedscore.he import load_context
from fedscore.kit.model import ModelFile, score_file
from fedscore.kit.table import PartyTable
from fedscore.ledger import COORDINATOR, Ledger, Payload, read_ledger
from fedscore.protocols import drive
from fedscore.runtime import local
from fedscore.runtime.coordinator import Coordinator
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


def _central(brand, media, result):
    """The joint standardised table in the protocol's row order, as a centralised run sees it.

    Each party's block is encoded by its own model file's encoder: the encoding limits (on by
    default) are preprocessing both sides share, so the reference sees the rows the parties
    clustered.
    """
    blocks = []
    for role, path in (("brand", brand), ("media", media)):
        table = PartyTable.read(path, required=["uid"], text_columns=["uid"])
        position = {uid: row for row, uid in enumerate(table.ids("uid"))}
        rows = np.array([position[uid] for uid in result.ids])
        blocks.append(result.models[role].encoder.transform(table, rows=rows))
    return np.hstack(blocks)


def _segment(brand, media, **options):
    return segment(brand, media, id_column="uid", exclude=["label"], **options)


@pytest.mark.integration
def test_vertical_kmeans_through_flower_matches_sklearn_and_spec(tmp_path):
    brand, media = _tables(tmp_path)
    # PSI's shared order is new every run, so the initial users are too: 20 restarts find the
    # small persona all but always (each random restart starts in it with odds of about 1 in 4).
    result = _segment(brand, media, k=3, n_init=20, min_segment_size=20, random_state=1, engine="simulation",
                      out=tmp_path / "run")
    assert len(result.ids) == 148 and not any(i.startswith("other") for i in result.ids)

    X = _central(brand, media, result)
    reference = KMeans(3, init=X[result.init_rows], n_init=1).fit(X)
    assert adjusted_rand_score(reference.labels_, result.labels) == pytest.approx(1.0)
    assert result.inertia == pytest.approx(reference.inertia_, rel=1e-6)
    assert np.allclose(result.cluster_centers, reference.cluster_centers_, atol=1e-6)

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
    # sizes, public parameters and control: not even an inertia or a shift
    entries = read_ledger(out / "ledger.jsonl")
    assert audit_ledger(entries, read_transcript(SPEC)) == []
    to_coordinator = {f["payload"] for e in entries if e["receiver"] == COORDINATOR for f in e["fields"].values()}
    assert to_coordinator <= {Payload.CIPHERTEXT.value, Payload.BLINDED_IDS.value, Payload.SIZE.value,
                              Payload.PUBLIC_PARAMETER.value, Payload.CONTROL.value}
    for entry in entries:
        for name in ("distances", "labels", "positions", "profile", "stats"):
            if name in entry["fields"]:
                assert entry["fields"][name]["payload"] == Payload.CIPHERTEXT.value


def test_local_run_matches_the_spec_and_writes_each_party_half_a_model(tmp_path):
    """Each party's model file holds its encoder and its slice of the centroids: half a model, not scorable."""
    brand, media = _tables(tmp_path, seed=4)
    out = tmp_path / "run"
    result = _segment(brand, media, k=3, n_init=2, random_state=0, out=out)
    assert audit_ledger(read_ledger(out / "ledger.jsonl"), read_transcript(SPEC)) == []
    assert result.out == out and (out / "brand" / "report.html").is_file()
    widths = []
    for role in ("brand", "media"):
        model = ModelFile.load(out / role / "model.json")
        assert model.kind == "segment" and model.party == role and not model.scorable
        assert model.training["init_rows"] == result.init_rows and model.training["n_iter"] == result.n_iter
        widths.append(len(model.encoder.feature_names_))
        assert np.array_equal(model.centers, result.models[role].centers)
        with pytest.raises(InputError, match="half"):
            score_file(out / role / "model.json", brand if role == "brand" else media, id_column="uid",
                       out=tmp_path / f"{role}-scores.csv")
    joint = np.hstack([result.models["brand"].centers, result.models["media"].centers])
    assert np.array_equal(joint, result.cluster_centers) and result.cluster_centers.shape == (3, sum(widths))
    assert result.feature_names[:2] == ["brand.spend", "brand.visits"] and result.feature_names[-1] == "media.views"


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
    result = _segment(brand, media, k=3, n_init=2, random_state=0)

    secrets = np.concatenate([pd.read_csv(brand)[["spend", "visits"]].to_numpy().ravel(),
                              pd.read_csv(media)[["clicks", "views"]].to_numpy().ravel()])
    X = _central(brand, media, result)
    distances = ((X[:, None, :] - result.cluster_centers[None]) ** 2).sum(axis=2)
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


def _spy_on_messages(monkeypatch):
    """Record every (step, request, reply) the local transport carries, decoded."""
    seen = []
    original = local.LocalTransport.exchange

    def spy(self, requests, timeout=None):
        replies = original(self, requests, timeout)
        for r, reply in zip(requests, replies):
            if reply.error is None:
                seen.append((r.step, Message.decode(r.fields, r.payloads), Message.decode(reply.fields, reply.payloads)))
        return replies

    monkeypatch.setattr(local.LocalTransport, "exchange", spy)
    return seen


def test_settled_restarts_are_no_longer_masked(tmp_path, monkeypatch):
    """Restart s is masked at most in the rounds 1..n_iter_s of its own Lloyd run, then never again."""
    brand, media = _tables(tmp_path, seed=4)
    seen = _spy_on_messages(monkeypatch)
    n_init, k = 6, 3
    result = _segment(brand, media, k=k, n_init=n_init, restart_iter=100, random_state=5)
    init_rows = next(request["init_rows"] for step, request, _ in seen if step == "segment.keys")
    X = _central(brand, media, result)
    iterations = [KMeans(k, init=X[rows], n_init=1).fit(X).n_iter_ for rows in init_rows]
    masked = [len(reply["distances"]) // k for step, _, reply in seen
              if step == "segment.mask_distances" and "distances" in set(reply)]
    assert masked[0] == n_init and len(masked) <= max(iterations)
    # still running in round r only if its own run needs an r-th assignment (fewer when two
    # restarts reach the same assignment: one of them is dropped)
    assert all(m <= sum(n >= r for n in iterations) for r, m in enumerate(masked, start=1))
    assert masked == sorted(masked, reverse=True) and masked[-1] < n_init  # the old protocol masked all to the end
    best = min(KMeans(k, init=X[rows], n_init=1).fit(X).inertia_ for rows in init_rows)
    assert result.inertia == pytest.approx(best, rel=1e-6)


def test_restarts_that_reach_the_same_assignment_are_not_both_masked(tmp_path, monkeypatch):
    brand, media = _tables(tmp_path, seed=4)
    seen = _spy_on_messages(monkeypatch)
    # the same initial users in another order: the same assignment up to numbering
    first = _segment(brand, media, k=3, n_init=1, random_state=5)
    rows = first.init_rows
    seen.clear()
    monkeypatch.setattr(np.random, "default_rng", lambda seed=None: _FixedRows([rows, rows[::-1], rows[1:] + rows[:1]]))
    again = _segment(brand, media, k=3, n_init=3, random_state=5)
    masked = [len(reply["distances"]) // 3 for step, _, reply in seen
              if step == "segment.mask_distances" and "distances" in set(reply)]
    assert masked[0] == 3 and set(masked[1:]) == {1}
    # PSI's shared order is new every run, so the same row numbers are other users than in
    # the first run: compare with scikit-learn started from this run's initial users.
    X = _central(brand, media, again)
    reference = KMeans(3, init=X[again.init_rows], n_init=1).fit(X)
    assert again.inertia == pytest.approx(reference.inertia_, rel=1e-6)


class _FixedRows:
    """Stands in for the coordinator's generator of initial rows: hands out the given sets."""

    def __init__(self, sets):
        self.sets = iter(sets)

    def choice(self, n, size, replace):
        return np.asarray(next(self.sets))


def test_only_the_best_restart_goes_on_after_restart_iter(tmp_path, monkeypatch):
    brand, media = _tables(tmp_path, seed=4)
    seen = _spy_on_messages(monkeypatch)
    result = _segment(brand, media, k=3, n_init=6, restart_iter=1, random_state=5, tol=0)
    masked = [len(reply["distances"]) // 3 for step, _, reply in seen
              if step == "segment.mask_distances" and "distances" in set(reply)]
    assert masked[0] == 6 and set(masked[1:]) <= {1}
    X = _central(brand, media, result)
    reference = KMeans(3, init=X[result.init_rows], n_init=1, tol=0).fit(X)
    assert adjusted_rand_score(reference.labels_, result.labels) == pytest.approx(1.0)
    assert result.inertia == pytest.approx(reference.inertia_, rel=1e-6)


def test_max_iter_stops_with_the_assignment_of_the_last_centroids(tmp_path):
    brand, media = _tables(tmp_path, seed=4)
    result = _segment(brand, media, k=3, n_init=2, max_iter=1, tol=0, random_state=5)
    X = _central(brand, media, result)
    reference = KMeans(3, init=X[result.init_rows], n_init=1, max_iter=1).fit(X)
    assert result.n_iter == 1
    assert np.allclose(result.cluster_centers, reference.cluster_centers_, atol=1e-6)
    nearest = ((X[:, None, :] - result.cluster_centers[None]) ** 2).sum(axis=2).argmin(axis=1)
    assert (result.labels == nearest).all()  # the labels are those of the final centroids


def test_profile_noise_changes_only_released_means(tmp_path):
    brand, media = _tables(tmp_path)
    # profiles are means of the values as encoded: without the limits, the raw means
    result = _segment(brand, media, k=3, n_init=2, random_state=2, min_segment_size=20, profile_noise=0.5,
                      min_category_count=None, outlier_quantile=None)
    labels = pd.Series(result.labels, index=result.ids)
    profiles = result.profiles["brand"].set_index("segment")
    raw = {role: pd.read_csv(path, dtype={"uid": str}).set_index("uid").loc[result.ids] for role, path in
           (("brand", brand), ("media", media))}
    exact_own = raw["brand"][["spend", "visits"]].groupby(labels.to_numpy()).mean()
    assert np.allclose(profiles[["brand.spend", "brand.visits"]], exact_own)  # own profile: exact
    exact_peer = raw["media"][["clicks", "views"]].groupby(labels.to_numpy()).mean()
    released = profiles.index[profiles["released"]]
    shown = profiles.loc[released, ["media.clicks", "media.views"]].to_numpy()
    gap = np.abs(shown - exact_peer.loc[released].to_numpy()) / raw["media"][["clicks", "views"]].std(ddof=0).to_numpy()
    assert (gap > 0).all() and (gap < 5 * 0.5).all()  # noised, by about half a standard deviation


def test_encoding_limits_are_each_partys_and_recorded_in_its_model_file(tmp_path):
    """The brand's 15 'store' users fall below min_category_count = 20: merged into '<other>' on its side."""
    brand, media = _tables(tmp_path)
    result = _segment(brand, media, k=3, n_init=2, random_state=0, min_category_count=20, outlier_quantile=0.01)
    encoder = result.models["brand"].encoder
    assert encoder.categories_["channel"] == ["app", "web", "<other>"]
    assert set(encoder.bounds_) == {"spend", "visits"} and encoder.outlier_quantile == 0.01
    assert set(result.models["media"].encoder.bounds_) == {"clicks", "views"}


# --- what the key owner decrypts ------------------------------------------------------------------

class CheatingMasker(RewritingTransport):
    """Replaces the masked columns of the first ``segment.argmin`` with what ``cheat`` makes of the owner's own."""

    def __init__(self, inner, cheat):
        super().__init__(inner, self._cheat)
        self.cheat, self.contexts, self.owner_columns, self.done = cheat, {}, None, False

    def exchange(self, requests, timeout=None):
        replies = super().exchange(requests, timeout)
        for request, reply in zip(requests, replies):
            if reply.error is None and request.step in ("segment.setup", "segment.encrypt_distances"):
                message = Message.decode(reply.fields, reply.payloads)
                if request.step == "segment.setup":
                    self.contexts[request.role] = load_context(message["he_context"])
                elif self.owner_columns is None:
                    self.owner_columns = request.role, message["distances"]
        return replies

    def _cheat(self, step, fields):
        if step == "segment.argmin" and not self.done:
            self.done = True
            role, columns = self.owner_columns
            set_field(fields, "distances", self.cheat(self.contexts[role], columns))


def _times_one(context, blob):
    """The column, one plaintext multiplication deep, as a masker's columns are: a new ciphertext of the same values."""
    vector = context.load_vector(blob)
    return (vector * np.ones(vector.size)).to_bytes()


CHEATS = {
    "its own columns": (lambda ctx, cols: list(cols), "sent back distance columns this party encrypted", False),
    "its own columns, re-encrypted": (lambda ctx, cols: [_times_one(ctx, c) for c in cols],
                                      "sent this party's own partial distances back", True),
    "a longer vector": (lambda ctx, cols: [_times_one(ctx, ctx.encrypt(np.zeros(149)).to_bytes()) for _ in cols],
                        "holds 149 values .* not the 148 shared users'", False),
    "an extra column": (lambda ctx, cols: [_times_one(ctx, c) for c in cols + cols[:1]],
                        r"expected 6 masked distance columns \(2 running restarts x k = 3\), got 7", False),
}


@pytest.mark.parametrize("cheat", list(CHEATS))
def test_the_key_owner_decrypts_only_a_masked_round(tmp_path, cheat, decryptions):
    """A masker that hands the owner its own distances, a longer vector or more columns is refused."""
    make, refusal, decrypted = CHEATS[cheat]
    brand, media = _tables(tmp_path)
    configs = {role: {"data": str(path), "out": str(tmp_path)} for role, path in (("brand", brand), ("media", media))}
    coordinator = Coordinator(CheatingMasker(local.LocalTransport(configs), make), Ledger())
    with pytest.raises(PartyError, match=f"party 'media' failed: .*{refusal}"):
        drive(coordinator, "segment", {"id_column": "uid", "k": 3, "exclude": ["label"], "n_init": 2,
                                       "random_state": 0})
    assert bool(decryptions) == decrypted  # refused before decrypting, but for a content only decryption shows


@pytest.mark.parametrize("k, message", [(200, "only 148 users"), (1, "at least 2")])
def test_bad_k_is_refused(tmp_path, k, message):
    brand, media = _tables(tmp_path)
    with pytest.raises(FedscoreError, match=message):
        _segment(brand, media, k=k)


def test_bad_input_names_file_and_column(tmp_path):
    brand, media = _tables(tmp_path)
    table = pd.read_csv(media, dtype=str)
    table.iloc[5, table.columns.get_loc("clicks")] = "n/a"
    table.to_csv(media, index=False)
    with pytest.raises(FedscoreError, match="media.csv.*clicks.*row 7"):
        _segment(brand, media, k=3)
    with pytest.raises(FedscoreError, match="missing column"):
        segment(brand, media, id_column="customer", k=3)


def test_cli_segment_writes_the_contracted_files(tmp_path):
    from click.testing import CliRunner

    from fedscore.cli import main

    brand, media = _tables(tmp_path)
    out = tmp_path / "cli"
    result = CliRunner().invoke(main, ["segment", "--brand", str(brand), "--media", str(media), "--id-column", "uid",
                                       "--k", "3", "--exclude", "label", "--out", str(out), "--engine", "local",
                                       "--n-init", "2", "--random-state", "0"])
    assert result.exit_code == 0, result.output
    assert "shared users in 3 segments" in result.output
    for role in ("brand", "media"):
        assert (out / role / "segments.csv").is_file() and (out / role / "profiles.csv").is_file()
        assert (out / role / "model.json").is_file()
    assert (out / "ledger.jsonl").is_file()
    assert COORDINATOR not in {p.name for p in out.iterdir()}

    refused = CliRunner().invoke(main, ["segment", "--brand", str(brand), "--media", str(media), "--id-column", "uid",
                                        "--k", "500", "--exclude", "label", "--out", str(tmp_path / "bad"),
                                        "--engine", "local"])
    assert refused.exit_code == 1 and "only 148 users are in both files" in refused.output
    assert not (tmp_path / "bad").exists()  # a failed run leaves no partial output


@pytest.mark.integration
def test_benchmark_smoke(smoke_benchmark):
    root = Path(__file__).resolve().parents[1]
    if not (root.parent / "shared" / "data" / "public").is_dir():
        pytest.skip("benchmark data (shared/data next to the project) is absent")
    tables = smoke_benchmark("segment")["tables"]
    assert all(row[8] for row in tables[0]["rows"]) and all(row[9] for row in tables[1]["rows"])
