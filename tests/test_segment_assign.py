"""New users into a trained vertical segmentation: the training's segments again, central argmin, one round."""

import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_segment import _tables

from fedscore import segment, segment_assign
from fedscore.audit import audit_ledger, read_transcript
from fedscore.errors import FedscoreError, InputError, PartyError
from fedscore.kit.model import ModelFile
from fedscore.kit.table import PartyTable
from fedscore.ledger import COORDINATOR, Ledger, Payload, read_ledger
from fedscore.protocols.segment_assign.coordinator import run
from fedscore.protocols.segment_assign.options import SegmentAssignOptions
from fedscore.runtime import local
from fedscore.runtime.coordinator import Coordinator
from fedscore.wire import Message, ciphertext

SPEC = Path(__file__).resolve().parents[1] / "protocols" / "segment_vertical.md"
ROLES = ("brand", "media")


def _train(tables, out, **options):
    brand, media = tables
    return segment(brand, media, id_column="uid", exclude=["label"], k=3, n_init=2, random_state=0, out=out,
                   **options)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One training run (its '<other>' channel column holds the 15 'store' users) and its tables."""
    folder = tmp_path_factory.mktemp("trained")
    tables = _tables(folder, seed=4)
    return _train(tables, folder / "run", min_category_count=20), tables


def _new_tables(folder, seed=7, channels=("app", "web", "store", "kiosk")):
    """Next month's users: 100 new, 40 returning with new values; each party with users the other lacks."""
    rng = np.random.default_rng(seed)
    ids = [f"new{i:03d}" for i in range(100)] + [f"user{i:04d}" for i in range(0, 120, 3)]
    centers = np.array([[0, 0, 0, 0], [6, 6, -6, 6], [-6, 6, 6, -6]], dtype=float)
    points = centers[rng.integers(0, 3, len(ids))] + rng.normal(scale=1.5, size=(len(ids), 4))
    brand = pd.DataFrame({"uid": ids, "spend": points[:, 0].round(4), "visits": points[:, 1].round(4),
                          "channel": rng.choice(channels, len(ids)), "label": rng.integers(0, 2, len(ids)),
                          "new_column": 1.0})
    media = pd.DataFrame({"uid": ids, "clicks": points[:, 2].round(4), "views": points[:, 3].round(4)})
    brand = pd.concat([brand.iloc[5:], pd.DataFrame({"uid": ["brandonly"], "spend": [0.0], "visits": [0.0],
                                                     "channel": ["app"], "label": [0], "new_column": [1.0]})])
    media = media.iloc[:-4].sample(frac=1, random_state=seed)
    folder.mkdir(parents=True, exist_ok=True)
    brand.to_csv(folder / "brand.csv", index=False)
    media.to_csv(folder / "media.csv", index=False)
    return folder / "brand.csv", folder / "media.csv"


def _central(run, tables, ids, unseen="error"):
    """Each user's nearest trained centroid, from the joint distances in the saved encoding (numpy argmin)."""
    blocks, centers = [], []
    for role, path in zip(ROLES, tables):
        model = ModelFile.load(run / role / "model.json")
        table = PartyTable.read(path, required=["uid"], text_columns=["uid"])
        position = {uid: row for row, uid in enumerate(table.ids("uid"))}
        blocks.append(model.encoder.transform(table, rows=np.array([position[u] for u in ids]), unseen=unseen))
        centers.append(model.centers)
    X, C = np.hstack(blocks), np.hstack(centers)
    return ((X[:, None, :] - C[None]) ** 2).sum(axis=2).argmin(axis=1)


def test_the_training_rows_get_the_training_segments_and_the_run_matches_the_spec(trained, tmp_path):
    result, tables = trained
    out = tmp_path / "assign"
    assigned = segment_assign(*tables, model=result.out, id_column="uid", out=out)
    again = pd.Series(assigned.labels, index=assigned.ids)
    assert set(again.index) == set(result.ids)
    assert (again.loc[result.ids].to_numpy() == result.labels).all()
    written = [pd.read_csv(out / role / "segments.csv", dtype={"uid": str}) for role in ROLES]
    assert written[0].equals(written[1]) and list(written[0].columns) == ["uid", "segment"]

    reports = {role: json.loads((out / role / "report.json").read_text()) for role in ROLES}
    assert reports["brand"]["model_id"] == reports["media"]["model_id"] == assigned.model_id
    assert reports["brand"]["trained_run_id"] == result.models["brand"].training["run_id"]
    assert reports["brand"]["segment_sizes"] == list(np.bincount(result.labels, minlength=3))
    assert assigned.summary["k"] == 3 and assigned.summary["rows"] == len(result.ids)

    # every hop is in the spec's transcript: PSI, then the one assignment round, nothing in clear
    entries = read_ledger(out / "ledger.jsonl")
    assert audit_ledger(entries, read_transcript(SPEC)) == []
    steps = [e["step"] for e in entries]
    assert {s.split(".")[0] for s in steps} == {"psi", "segment_assign"}
    assert steps.count("segment_assign.argmin") == 2  # one request, one reply: one decryption
    to_coordinator = {f["payload"] for e in entries if e["receiver"] == COORDINATOR for f in e["fields"].values()}
    assert to_coordinator <= {Payload.CIPHERTEXT.value, Payload.BLINDED_IDS.value, Payload.SIZE.value,
                              Payload.PUBLIC_PARAMETER.value}
    for entry in entries:
        for name in ("model", "distances", "positions", "segments"):
            if name in entry["fields"]:
                assert entry["fields"][name]["payload"] == Payload.CIPHERTEXT.value


def test_new_rows_get_the_central_argmin_of_the_saved_encoding(trained, tmp_path):
    """New and returning users, an unseen channel ('kiosk', into '<other>') and a column the model does not use."""
    result, _ = trained
    tables = _new_tables(tmp_path / "june")
    assigned = segment_assign(*tables, model={role: result.out / role for role in ROLES}, id_column="uid")
    assert len(assigned.ids) == 131 and "brandonly" not in set(assigned.ids)
    expected = _central(result.out, tables, assigned.ids)
    assert (assigned.labels == expected).all()
    assert assigned.reports["brand"]["rows_with_unseen_values"] == 0  # '<other>' takes them
    assert assigned.out is None


def test_unseen_values_follow_the_policy(tmp_path):
    """A channel column kept whole in training has no '<other>': 'kiosk' is refused, or encoded as none."""
    run = tmp_path / "run"
    _train(_tables(tmp_path, seed=4), run, min_category_count=None)
    tables = _new_tables(tmp_path / "june")
    with pytest.raises(FedscoreError, match="'kiosk' was not seen in training"):
        segment_assign(*tables, model=run, id_column="uid")
    assigned = segment_assign(*tables, model=run, id_column="uid", unseen="zero")
    assert (assigned.labels == _central(run, tables, assigned.ids, unseen="zero")).all()
    brand = pd.read_csv(tables[0]).set_index("uid").loc[assigned.ids]
    assert assigned.reports["brand"]["rows_with_unseen_values"] == int((brand["channel"] == "kiosk").sum()) > 0
    assert assigned.reports["media"]["rows_with_unseen_values"] == 0


def test_halves_of_two_runs_or_the_wrong_half_are_refused(trained, tmp_path):
    result, tables = trained
    _train(tables, tmp_path / "other", min_category_count=20)  # the same data and options: another run
    other = tmp_path / "other"
    with pytest.raises(InputError, match="halves of the model are not from the same segmentation run"):
        segment_assign(*tables, model={"brand": result.out / "brand", "media": other / "media"},
                       id_column="uid", out=tmp_path / "mixed")
    assert not (tmp_path / "mixed").exists() and not (tmp_path / "mixed.checkpoint").exists()
    # across organisations each party checks the peer's model id itself, before it encrypts or masks anything
    configs = {}
    for role, path, half in zip(ROLES, tables, (result.out, other)):
        (tmp_path / role).mkdir()
        configs[role] = {"data": str(path), "out": str(tmp_path / role), "model": str(half)}
    coordinator = Coordinator(local.LocalTransport(configs), Ledger())
    with pytest.raises(PartyError, match="party 'media' failed: the brand's half of the model is not from the "
                                         "fedscore segment run this media's half comes from"):
        run(coordinator, SegmentAssignOptions.from_dict({"id_column": "uid"}))
    with pytest.raises(InputError, match="this is the brand's half of the model; the media needs its own"):
        segment_assign(*tables, model={"brand": result.out / "brand", "media": result.out / "brand"},
                       id_column="uid")
    with pytest.raises(InputError, match="model file not found"):
        segment_assign(*tables, model=tmp_path / "nowhere", id_column="uid")
    with pytest.raises(InputError, match="no model file for the brand in this folder"):
        segment_assign(*tables, model=tmp_path, id_column="uid")
    media = pd.read_csv(tables[1]).drop(columns=["views"])
    with pytest.raises(InputError, match="missing column.*the model was trained on: views"):
        segment_assign(tables[0], media, model=result.out, id_column="uid")


def test_a_partys_model_path_never_crosses(trained, tmp_path, monkeypatch):
    """Neither a path nor a model value is in any request or reply: each party reads its own half."""
    result, tables = trained
    crossed = []
    original = local.LocalTransport.exchange

    def spy(self, requests, timeout=None):
        replies = original(self, requests, timeout)
        crossed.extend(pickle.dumps((r.fields, r.payloads)) for r in requests)
        crossed.extend(pickle.dumps((r.fields, r.payloads)) for r in replies if r.error is None)
        return replies

    monkeypatch.setattr(local.LocalTransport, "exchange", spy)
    halves = {role: tmp_path / f"{role}-half" for role in ROLES}
    for role, folder in halves.items():
        folder.mkdir()
        (folder / "model.json").write_bytes((result.out / role / "model.json").read_bytes())
    assigned = segment_assign(*tables, model=halves, id_column="uid")
    assert len(assigned.ids) == len(result.ids) and crossed
    run_id = result.models["brand"].training["run_id"]
    for secret in [str(p) for p in halves.values()] + ["-half", "model.json", run_id, assigned.model_id]:
        assert not any(secret.encode() in blob for blob in crossed), secret


def test_the_round_runs_once(trained, tmp_path):
    """A coordinator asking the key owner for a second decryption, or the masker for a second masking, is refused."""
    result, tables = trained
    configs = {}
    for role, path in zip(ROLES, tables):
        (tmp_path / role).mkdir()
        configs[role] = {"data": str(path), "out": str(tmp_path / role), "model": str(result.out)}
    coordinator = Coordinator(local.LocalTransport(configs), Ledger())
    options = SegmentAssignOptions.from_dict({"id_column": "uid"})
    assert run(coordinator, options)["rows"] == len(result.ids)
    for role, step in (("media", "segment_assign.argmin"), ("brand", "segment_assign.mask_distances")):
        with pytest.raises(PartyError, match=f"{step.split('.')[1]} asked for again: the assignment runs once"):
            coordinator.call(role, step, Message(distances=ciphertext([])))


def test_cli_segment_with_a_model(trained, tmp_path):
    from click.testing import CliRunner

    from fedscore.cli import main

    result, tables = trained
    out = tmp_path / "cli"
    args = ["segment", "--brand", str(tables[0]), "--media", str(tables[1]), "--id-column", "uid",
            "--model", str(result.out), "--out", str(out)]
    done = CliRunner().invoke(main, args)
    assert done.exit_code == 0, done.output
    assert f"{len(result.ids)} shared users put into the 3 segments" in done.output
    for role in ROLES:
        written = pd.read_csv(out / role / "segments.csv", dtype={"uid": str}).set_index("uid")["segment"]
        assert (written.loc[result.ids].to_numpy() == result.labels).all()
        assert (out / role / "report.json").is_file()

    refused = CliRunner().invoke(main, args[:-1] + [str(tmp_path / "bad"), "--n-init", "5"])
    assert refused.exit_code == 2 and "--n-init: training option" in refused.output
    unseen_alone = CliRunner().invoke(main, ["segment", "--brand", str(tables[0]), "--media", str(tables[1]),
                                             "--id-column", "uid", "--k", "3", "--unseen", "zero",
                                             "--out", str(tmp_path / "bad")])
    assert unseen_alone.exit_code == 2 and "--unseen applies to assigning with --model only" in unseen_alone.output
    no_k = CliRunner().invoke(main, ["segment", "--brand", str(tables[0]), "--media", str(tables[1]),
                                     "--id-column", "uid", "--out", str(tmp_path / "bad")])
    assert no_k.exit_code == 1 and "--k is required" in no_k.output
    assert not (tmp_path / "bad").exists()


@pytest.mark.integration
def test_through_flower(trained, tmp_path):
    result, tables = trained
    assigned = segment_assign(*tables, model=result.out, id_column="uid", engine="simulation", out=tmp_path / "sim")
    assert (pd.Series(assigned.labels, index=assigned.ids).loc[result.ids].to_numpy() == result.labels).all()
    assert audit_ledger(read_ledger(tmp_path / "sim" / "ledger.jsonl"), read_transcript(SPEC)) == []
