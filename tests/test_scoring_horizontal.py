import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from fedscore.audit import audit_ledger, read_transcript
from fedscore.errors import FedscoreError, InputError, PartyError
from fedscore.keys import PUBLIC_FILE, init_keys, party_key_name
from fedscore.ledger import COORDINATOR, Ledger, read_ledger
from fedscore.metrics import auc
from fedscore.runtime import Coordinator, LocalTransport
from fedscore.runtime import coordinator as coordinator_module
from fedscore.scoring_horizontal import (
    HorizontalLogisticRegression,
    PrivacyWarning,
    run_horizontal_lr,
    validation_mask,
)
from fedscore.wire import Message

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SPEC = Path(__file__).resolve().parents[1] / "protocols" / "scoring_horizontal.md"
ROWS = 400
COEF = np.array([1.2, -0.8, 0.5])


def make_party(path, seed, rows=ROWS, extra_column=False):
    """Rows from one logistic model: three numeric columns on different scales and a category."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 3))
    channel = rng.choice(["app", "store", "web"], size=rows)
    logit = x @ COEF + np.where(channel == "app", 0.7, 0.0) - 0.3
    y = (rng.uniform(size=rows) < 1 / (1 + np.exp(-logit))).astype(int).astype(str)
    y[:10] = ""  # rows to score
    frame = pd.DataFrame({
        "id": [f"{seed}-{i}" for i in range(rows)],
        "y": y,
        "visits": x[:, 0] * 3 + 10,
        "spend": x[:, 1] * 2000 + 50_000,  # large mean next to its spread
        "age": np.round(x[:, 2] * 10 + 40, 1),
        "channel": channel,
    })
    if extra_column:
        frame["region"] = "north"
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def parties(tmp_path_factory):
    folder = tmp_path_factory.mktemp("parties")
    return [make_party(folder / f"{name}.csv", seed) for seed, name in enumerate(["north", "south", "west"])]


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    folder = tmp_path_factory.mktemp("keys") / "k"
    init_keys(folder, 3)
    return folder


def fit(parties, out, keys, **params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PrivacyWarning)
        return HorizontalLogisticRegression(**params).fit(parties, id_column="id", label_column="y", out_dir=out,
                                                          key_dir=keys)


def test_flower_simulation_coordinator_holds_only_ciphertexts(parties, keys, tmp_path):
    out = tmp_path / "run"
    model = HorizontalLogisticRegression(rounds=2).fit(parties, id_column="id", label_column="y", out_dir=out,
                                                      key_dir=keys, engine="simulation")
    for path in parties:
        scores = pd.read_csv(out / path.stem / "scores.csv", dtype={"id": str})
        assert list(scores["id"]) == list(pd.read_csv(path, dtype=str)["id"])
        assert scores["score"].between(0, 1).all()
        report = json.loads((out / path.stem / "report.json").read_text())
        assert [r["round"] for r in report["rounds"]] == [1, 2]
    assert json.loads((out / "model.json").read_text())["feature_names"] == model.feature_names_

    entries = read_ledger(out / "ledger.jsonl")
    assert audit_ledger(entries, read_transcript(SPEC)) == []
    to_coordinator = [e for e in entries if e["receiver"] == COORDINATOR]
    assert len(to_coordinator) == 3 * (3 + 2 + 1)
    for entry in to_coordinator:
        for name, field in entry["fields"].items():
            if name in ("schema", "key_fingerprint"):
                assert field["payload"] == "public_parameter"
            elif name == "status":
                assert field["payload"] == "control"
            else:  # sums, spreads, updates: everything computed from rows
                assert field["payload"] == "ciphertext", (entry["step"], name)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["finished"] == [p.stem for p in parties] and summary["dropouts"] == []


def test_matches_centralised_logistic_regression(parties, keys, tmp_path):
    model = fit(parties, tmp_path / "run", keys, rounds=5)
    frames = [pd.read_csv(p, dtype=str, keep_default_na=False) for p in parties]
    pooled = pd.concat(frames, ignore_index=True)
    labels = pd.to_numeric(pooled["y"].replace("", np.nan)).to_numpy()
    train = ~np.isnan(labels) & ~validation_mask(pooled["id"].to_numpy(), labels, 0.2)
    x = model.encoder_.transform(pooled)
    central = LogisticRegression(C=1 / (1e-4 * train.sum()), max_iter=1000).fit(x[train], labels[train])
    held_out = ~np.isnan(labels) & ~train
    federated_auc = auc(labels[held_out], model.decision_function(pooled[held_out]))
    central_auc = auc(labels[held_out], central.decision_function(x[held_out]))
    assert abs(federated_auc - central_auc) < 0.005
    np.testing.assert_allclose(model.coef_, central.coef_[0], atol=0.05)
    # global standardisation: the encoder's means are the pooled means
    assert model.encoder_.means_["spend"] == pytest.approx(pooled["spend"].astype(float).mean(), rel=1e-9)


def test_two_parties_without_dp_warn(parties, keys, tmp_path):
    with pytest.warns(PrivacyWarning, match="read the other's"):
        model = HorizontalLogisticRegression(rounds=1).fit(parties[:2], id_column="id", label_column="y",
                                                          out_dir=tmp_path / "plain", key_dir=keys)
    assert model.summary_["warnings"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", PrivacyWarning)
        model = HorizontalLogisticRegression(rounds=2, dp_epsilon=2.0).fit(
            parties[:2], id_column="id", label_column="y", out_dir=tmp_path / "dp", key_dir=keys)
    assert model.summary_["warnings"] == []
    assert model.epsilon_ == pytest.approx(2.0, rel=1e-3) and model.epsilon_ <= 2.0
    assert model.summary_["dp"]["releases"] == 2 * 5


class DroppingTransport:
    """Delivers every request, but loses the replies of some parties to some train rounds."""

    def __init__(self, inner, lost):
        self.inner, self.lost = inner, lost  # lost: {(role, round)} or {(role, "finish")}

    @property
    def roles(self):
        return self.inner.roles

    def exchange(self, requests, timeout=None):
        replies = self.inner.exchange(requests, timeout)
        return [None if self._lost(req) else rep for req, rep in zip(requests, replies)]

    def _lost(self, request):
        if request.step.endswith("finish"):
            return (request.role, "finish") in self.lost
        if not request.step.endswith("train_round"):
            return False
        round_ = Message.decode(request.fields, request.payloads)["round"]
        return (request.role, round_) in self.lost


def run_with_dropouts(parties, keys, tmp_path, lost, min_parties):
    configs = {}
    for i, path in enumerate(parties):
        (tmp_path / path.stem).mkdir(parents=True)
        configs[path.stem] = {"data": str(path), "key-path": str(keys / party_key_name(i + 1)),
                              "out": str(tmp_path / path.stem)}
    coordinator = Coordinator(DroppingTransport(LocalTransport(configs), lost), Ledger(), timeout=1.0)
    options = {"id_column": "id", "label_column": "y", "public_key": str(keys / PUBLIC_FILE), "rounds": 3,
               "min_parties": min_parties}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PrivacyWarning)
        return run_horizontal_lr(coordinator, options)


def test_round_proceeds_without_a_dropped_party(parties, keys, tmp_path):
    summary = run_with_dropouts(parties, keys, tmp_path, lost={("south", 2)}, min_parties=2)
    assert [r["parties"] for r in summary["rounds"]] == [["north", "south", "west"], ["north", "west"],
                                                         ["north", "south", "west"]]
    assert [(d["role"], d["step"]) for d in summary["dropouts"]] == [("south", "scoring_horizontal.train_round")]
    assert summary["finished"] == ["north", "south", "west"]
    models = [json.loads((tmp_path / r / "model.json").read_text())["coef"] for r in ("north", "south", "west")]
    assert models[0] == models[1] == models[2]  # the party that dropped caught up


def test_too_few_parties_stops_the_run(parties, keys, tmp_path):
    with pytest.raises(FedscoreError, match=r"round 2: only 1 of 3 parties answered, at least 2 needed"):
        run_with_dropouts(parties, keys, tmp_path, lost={("south", 2), ("west", 2)}, min_parties=2)


def test_finish_enforces_min_parties(parties, keys, tmp_path):
    summary = run_with_dropouts(parties, keys, tmp_path / "one", lost={("west", "finish")}, min_parties=2)
    assert summary["finished"] == ["north", "south"]
    with pytest.raises(FedscoreError, match=r"finish: only 1 of 3 parties answered, at least 2 needed.*south"):
        run_with_dropouts(parties, keys, tmp_path / "two", lost={("south", "finish"), ("west", "finish")},
                          min_parties=2)


def test_flower_simulation_party_failing_mid_run_drops_out(parties, keys, tmp_path, monkeypatch):
    """West's secret key becomes unreadable for round 2 only: its ClientApp fails that step for real."""
    west_key = keys / party_key_name(3)
    original = coordinator_module.Coordinator.exchange

    def exchange(self, requests, allow_missing=False):
        second_round = any(step.endswith("train_round") and message["round"] == 2
                           for step, message in requests.values())
        if second_round:
            west_key.chmod(0o644)  # load_secret_key refuses a key file others can read
        try:
            return original(self, requests, allow_missing)
        finally:
            west_key.chmod(0o600)

    monkeypatch.setattr(coordinator_module.Coordinator, "exchange", exchange)
    out = tmp_path / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PrivacyWarning)
        model = HorizontalLogisticRegression(rounds=3, min_parties=2).fit(
            parties, id_column="id", label_column="y", out_dir=out, key_dir=keys, engine="simulation")
    summary = model.summary_
    assert [r["parties"] for r in summary["rounds"]] == [["north", "south", "west"], ["north", "south"],
                                                         ["north", "south", "west"]]
    assert [(d["role"], d["step"]) for d in summary["dropouts"]] == [("west", "scoring_horizontal.train_round")]
    assert "accessible by other users" in summary["dropouts"][0]["reason"]
    assert summary["finished"] == ["north", "south", "west"]
    entries = read_ledger(out / "ledger.jsonl")
    assert audit_ledger(entries, read_transcript(SPEC)) == []
    assert any("error" in e["fields"] for e in entries)  # the failure crossed, as a control message


def test_parties_with_different_columns_are_refused(parties, keys, tmp_path):
    odd = make_party(tmp_path / "east.csv", seed=9, extra_column=True)
    expected = r"party 'east' has different columns from party 'north' \(extra \['region'\]\)"
    with pytest.raises(InputError, match=expected):
        fit([parties[0], parties[1], odd], tmp_path / "run", keys)


def test_a_party_with_another_key_is_refused(parties, keys, tmp_path):
    other = tmp_path / "other"
    init_keys(other, 3)
    configs = {p.stem: {"data": str(p), "key-path": str((other if i == 2 else keys) / party_key_name(i + 1)),
                        "out": str(tmp_path)} for i, p in enumerate(parties)}
    coordinator = Coordinator(LocalTransport(configs), Ledger())
    with pytest.raises(FedscoreError, match="party 'west' holds a different key"):
        run_horizontal_lr(coordinator, {"id_column": "id", "label_column": "y", "public_key": str(keys / PUBLIC_FILE)})


def test_bad_min_parties_is_refused(parties, keys, tmp_path):
    with pytest.raises(InputError, match="--min-parties must be between 2"):
        fit(parties, tmp_path / "run", keys, min_parties=1)


@pytest.mark.skipif(not (DATA / "fate" / "default_credit_homo_guest.csv").exists(), reason="FATE data not present")
def test_default_credit_three_parties(keys, tmp_path):
    files = [DATA / "fate" / f"default_credit_homo_{n}.csv" for n in ("guest", "host_1", "host_2")]
    model = fit(files, tmp_path / "run", keys, rounds=3)
    test = pd.read_csv(DATA / "fate" / "default_credit_homo_test.csv", dtype=str, keep_default_na=False)
    # FATE data README: centralised LR on the pooled parties reaches 0.7297 on the test file
    assert auc(test["y"].astype(float), model.decision_function(test)) > 0.725


def test_party_failure_outside_rounds_names_the_party(parties, keys, tmp_path):
    broken = tmp_path / "broken.csv"
    broken.write_text("id,y,visits\n1,maybe,3\n")
    with pytest.raises(PartyError, match="party 'broken' failed: .*label 'maybe'"):
        fit([parties[0], broken], tmp_path / "run", keys)


def test_command_line(parties, tmp_path):
    from click.testing import CliRunner

    from fedscore.cli import main

    runner = CliRunner()
    result = runner.invoke(main, ["keys", "init", "--parties", "2", "--out", str(tmp_path / "keys")])
    assert result.exit_code == 0, result.output
    args = ["horizontal", "lr", "--party", str(parties[0]), "--party", str(parties[1]), "--id-column", "id",
            "--label-column", "y", "--out", str(tmp_path / "run"), "--rounds", "2", "--keys",
            str(tmp_path / "keys"), "--engine", "local"]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "warning: a round may aggregate only two parties' updates" in result.output
    assert "north: validation AUC" in result.output
    for name in ("model.json", "report.json", "ledger.jsonl", "north/scores.csv", "south/scores.csv"):
        assert (tmp_path / "run" / name).is_file()
    again = runner.invoke(main, ["keys", "init", "--parties", "2", "--out", str(tmp_path / "keys")])
    assert again.exit_code == 1 and "refusing to overwrite" in again.output


def test_benchmark_smoke(smoke_benchmark):
    if not (DATA / "fate").exists() or not (DATA / "public").exists():
        pytest.skip("shared data not present")
    result = smoke_benchmark("horizontal")
    assert result["smoke"] and len(result["tables"]) == 3
