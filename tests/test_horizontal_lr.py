import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

import fedscore
from fedscore import params
from fedscore.audit import audit_ledger, read_transcript
from fedscore.errors import FedscoreError, InputError, PartyError
from fedscore.keys import PUBLIC_FILE, init_keys, party_key_name
from fedscore.kit.model import ModelFile, score_file
from fedscore.ledger import COORDINATOR, Ledger, read_ledger
from fedscore.metrics import auc
from fedscore.protocols import drive
from fedscore.protocols.horizontal import PrivacyWarning
from fedscore.protocols.horizontal_lr.options import DP_LOCAL_STEPS, LOCAL_STEPS, HorizontalLROptions
from fedscore.protocols.horizontal_lr.training import validation_mask
from fedscore.runtime import coordinator as coordinator_module
from fedscore.runtime.coordinator import Coordinator
from fedscore.runtime.local import LocalTransport
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
        frame["region"] = rng.choice(["north", "east"], size=rows)
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


def fit(parties, out, keys, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PrivacyWarning)
        return fedscore.horizontal_lr(parties, id_column="id", label_column="y", out=out, key_dir=keys, **options)


@pytest.fixture(scope="module")
def plain_run(parties, keys, tmp_path_factory):
    return fit(parties, tmp_path_factory.mktemp("plain") / "run", keys, rounds=5)


@pytest.mark.integration
def test_flower_simulation_coordinator_holds_only_ciphertexts(parties, keys, tmp_path):
    out = tmp_path / "run"
    result = fedscore.horizontal_lr(parties, id_column="id", label_column="y", rounds=2, out=out, key_dir=keys,
                                    engine="simulation")
    for path in parties:
        scores = pd.read_csv(out / path.stem / "scores.csv", dtype={"id": str})
        assert list(scores["id"]) == list(pd.read_csv(path, dtype=str)["id"])
        assert scores["score"].between(0, 1).all()
        report = json.loads((out / path.stem / "report.json").read_text())
        assert [r["round"] for r in report["rounds"]] == [1, 2]
    assert json.loads((out / "model.json").read_text())["feature_names"] == result.feature_names

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


def test_local_run_matches_the_spec_and_sends_the_options_once(plain_run):
    entries = read_ledger(plain_run.out / "ledger.jsonl")
    assert audit_ledger(entries, read_transcript(SPEC)) == []
    sent = [(e["step"], name) for e in entries if e["sender"] == COORDINATOR for name in e["fields"]]
    assert sent.count(("horizontal_lr.describe", "options")) == 3
    assert not [s for s in sent if s[1] == "options" and s[0] != "horizontal_lr.describe"]


def test_matches_centralised_logistic_regression(parties, plain_run):
    result = plain_run
    frames = [pd.read_csv(p, dtype=str, keep_default_na=False) for p in parties]
    pooled = pd.concat(frames, ignore_index=True)
    labels = pd.to_numeric(pooled["y"].replace("", np.nan)).to_numpy()
    train = ~np.isnan(labels) & ~validation_mask(pooled["id"].to_numpy(), labels, 0.2)
    x = result.transform(pooled)
    central = LogisticRegression(C=1 / (1e-4 * train.sum()), max_iter=1000).fit(x[train], labels[train])
    held_out = ~np.isnan(labels) & ~train
    federated_auc = auc(labels[held_out], result.decision_function(pooled[held_out]))
    central_auc = auc(labels[held_out], central.decision_function(x[held_out]))
    assert abs(federated_auc - central_auc) < 0.005
    np.testing.assert_allclose(result.coef, central.coef_[0], atol=0.05)
    # global standardisation: the encoder's means are the pooled means
    assert result.encoder.means_["spend"] == pytest.approx(pooled["spend"].astype(float).mean(), rel=1e-9)


def test_predictions_take_frames_of_any_dtypes(parties, plain_run):
    typed = pd.read_csv(parties[0])  # numbers as float64, the category as text
    text = pd.read_csv(parties[0], dtype=str, keep_default_na=False)
    assert typed["spend"].dtype == np.float64
    proba = plain_run.predict_proba(typed)
    np.testing.assert_array_equal(proba, plain_run.predict_proba(text))
    assert proba.shape == (ROWS, 2) and np.allclose(proba.sum(axis=1), 1.0)
    logits = plain_run.decision_function(typed)
    np.testing.assert_allclose(proba[:, 1], 1 / (1 + np.exp(-logits)), rtol=1e-12)


def test_result_carries_the_model_and_each_partys_history(parties, plain_run):
    result = plain_run
    assert isinstance(result.model, ModelFile) and result.model.kind == "horizontal_lr"
    assert len(result.coef) == len(result.feature_names) == 3 + 3  # three numeric columns, three channels
    assert set(result.history) == {p.stem for p in parties}
    assert all([r["round"] for r in h] == [1, 2, 3, 4, 5] for h in result.history.values())
    assert result.epsilon is None and result.summary["dp"] is None
    report = json.loads((result.out / "report.json").read_text())
    assert set(report["parties"]) == set(result.history) and report["summary"] == result.summary
    for path in parties:  # every party decrypted the same model
        party_model = ModelFile.load(result.out / path.stem / "model.json")
        np.testing.assert_array_equal(party_model.coef, result.coef)
        assert party_model.party == path.stem


@pytest.mark.parametrize("dp_epsilon", [None, 3.0])
def test_score_file_reproduces_each_partys_scores(parties, keys, plain_run, tmp_path, dp_epsilon):
    """``fedscore score`` with a party's model file on its table writes exactly the run's own scores."""
    result = plain_run if dp_epsilon is None else fit(parties, tmp_path / "dp", keys, rounds=2,
                                                      dp_epsilon=dp_epsilon)
    for path in parties:
        written = tmp_path / f"{path.stem}-scores.csv"
        score_file(result.out / path.stem / "model.json", path, id_column="id", out=written)
        own = pd.read_csv(result.out / path.stem / "scores.csv", dtype={"id": str})
        again = pd.read_csv(written, dtype={"id": str})
        assert list(again["id"]) == list(own["id"])
        np.testing.assert_array_equal(again["score"].to_numpy(), own["score"].to_numpy())


def test_two_parties_without_dp_warn(parties, keys, tmp_path):
    with pytest.warns(PrivacyWarning, match="read the other's"):
        result = fedscore.horizontal_lr(parties[:2], id_column="id", label_column="y", rounds=1,
                                        out=tmp_path / "plain", key_dir=keys)
    assert result.summary["warnings"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", PrivacyWarning)
        result = fedscore.horizontal_lr(parties[:2], id_column="id", label_column="y", rounds=2, dp_epsilon=2.0,
                                        out=tmp_path / "dp", key_dir=keys)
    assert result.summary["warnings"] == []
    assert result.epsilon == pytest.approx(2.0, rel=1e-3) and result.epsilon <= 2.0
    assert result.summary["dp"]["releases"] == 2 * 5


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
        return drive(coordinator, "horizontal_lr", options)


def test_round_proceeds_without_a_dropped_party(parties, keys, tmp_path):
    summary = run_with_dropouts(parties, keys, tmp_path, lost={("south", 2)}, min_parties=2)
    assert [r["parties"] for r in summary["rounds"]] == [["north", "south", "west"], ["north", "west"],
                                                         ["north", "south", "west"]]
    assert [(d["role"], d["step"]) for d in summary["dropouts"]] == [("south", "horizontal_lr.train_round")]
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


@pytest.mark.integration
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
        result = fedscore.horizontal_lr(parties, id_column="id", label_column="y", rounds=3, min_parties=2, out=out,
                                        key_dir=keys, engine="simulation")
    summary = result.summary
    assert [r["parties"] for r in summary["rounds"]] == [["north", "south", "west"], ["north", "south"],
                                                         ["north", "south", "west"]]
    assert [(d["role"], d["step"]) for d in summary["dropouts"]] == [("west", "horizontal_lr.train_round")]
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
    assert not (tmp_path / "run").exists()


def test_a_column_constant_at_one_party_but_not_across_parties_is_kept(parties, keys, tmp_path):
    """A regional store's own region is constant in its table; across stores it is a feature."""
    tables = {}
    for path, region, size in zip(parties, ("north", "south", "west"), (5, 7, 9)):
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        frame["region"], frame["store_size"] = region, size
        tables[path.stem] = frame
    result = fit(tables, tmp_path / "run", keys, rounds=1)
    assert {"region=north", "store_size"} <= set(result.feature_names)
    for frame in tables.values():
        frame["store_size"] = 7
    with pytest.raises(FedscoreError, match="column 'store_size': column is constant across all parties"):
        fit(tables, tmp_path / "constant", keys, rounds=1)


def test_a_party_with_another_key_is_refused(parties, keys, tmp_path):
    other = tmp_path / "other"
    init_keys(other, 3)
    configs = {p.stem: {"data": str(p), "key-path": str((other if i == 2 else keys) / party_key_name(i + 1)),
                        "out": str(tmp_path)} for i, p in enumerate(parties)}
    coordinator = Coordinator(LocalTransport(configs), Ledger())
    with pytest.raises(FedscoreError, match="party 'west' holds a different key"):
        drive(coordinator, "horizontal_lr",
              {"id_column": "id", "label_column": "y", "public_key": str(keys / PUBLIC_FILE)})


def test_bad_min_parties_is_refused(parties, keys, tmp_path):
    with pytest.raises(InputError, match="min_parties= must be at least 2"):
        fit(parties, tmp_path / "run", keys, min_parties=1)
    with pytest.raises(InputError, match=r"min_parties= must be between 2 and the number of parties \(3\), not 4"):
        fit(parties, tmp_path / "run", keys, min_parties=4)
    assert not (tmp_path / "run").exists()


def test_options_schema():
    plain = HorizontalLROptions.from_dict({"id_column": "id", "label_column": "y"})
    assert plain.steps_per_round == LOCAL_STEPS and plain.noise_multiplier() is None
    private = plain.replace(dp_epsilon=1.0)
    assert private.steps_per_round == DP_LOCAL_STEPS and private.releases == private.rounds * DP_LOCAL_STEPS
    assert private.replace(local_steps=3).steps_per_round == 3
    # the defaults stated beside the schema (which must not import NumPy) are the DP module's
    assert (plain.dp_delta, plain.clip_norm) == (params.DP_DELTA, params.DP_CLIP_NORM)
    for bad, message in (({"rounds": 0}, "rounds= must be at least 1"),
                         ({"validation_fraction": 1}, "validation_fraction= must be less than 1"),
                         ({"learning_rate": 0}, "learning_rate= must be greater than 0"),
                         ({"dp_epsilon": -1}, "dp_epsilon= must be greater than 0"),
                         ({"l2": -1e-4}, "l2= must be at least 0"),
                         ({"label_column": ""}, "label_column= is required")):
        with pytest.raises(InputError, match=message):
            HorizontalLROptions.from_dict({"id_column": "id", "label_column": "y", **bad})


def test_tables_given_as_data_frames(parties, keys, tmp_path):
    frames = {p.stem: pd.read_csv(p) for p in parties[:2]}
    result = fit({**frames, "west": parties[2]}, tmp_path / "run", keys, rounds=1)
    assert sorted(result.history) == ["north", "south", "west"]
    scores = pd.read_csv(tmp_path / "run" / "north" / "scores.csv", dtype={"id": str})
    assert list(scores["id"]) == list(frames["north"]["id"])


def test_the_coordinators_key_path_is_not_an_argument(parties, keys, tmp_path):
    with pytest.raises(InputError, match="public_key= is set from the key folder: give key_dir= instead"):
        fit(parties, tmp_path / "run", keys, public_key=str(keys / PUBLIC_FILE))


@pytest.mark.skipif(not (DATA / "fate" / "default_credit_homo_guest.csv").exists(), reason="FATE data not present")
def test_default_credit_three_parties(keys, tmp_path):
    files = [DATA / "fate" / f"default_credit_homo_{n}.csv" for n in ("guest", "host_1", "host_2")]
    result = fit(files, tmp_path / "run", keys, rounds=3)
    test = pd.read_csv(DATA / "fate" / "default_credit_homo_test.csv", dtype=str, keep_default_na=False)
    # FATE data README: centralised LR on the pooled parties reaches 0.7297 on the test file
    assert auc(test["y"].astype(float), result.decision_function(test)) > 0.725


def test_party_failure_names_the_party_and_its_file(parties, keys, tmp_path):
    broken = tmp_path / "broken.csv"
    broken.write_text("id,y,visits\n1,maybe,3\n")
    # Through the library, every party's table is checked before the run starts: nothing is written.
    with pytest.raises(InputError, match=r"broken\.csv.*label 'maybe'"):
        fit([parties[0], broken], tmp_path / "run", keys)
    assert not (tmp_path / "run").exists()
    # A party of a deployment checks its own table in its first step; the run names it.
    configs = {p.stem: {"data": str(p), "key-path": str(keys / party_key_name(i + 1)), "out": str(tmp_path)}
               for i, p in enumerate([parties[0], broken])}
    with pytest.raises(PartyError, match="party 'broken' failed: .*label 'maybe'"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PrivacyWarning)
            drive(Coordinator(LocalTransport(configs), Ledger()), "horizontal_lr",
                  {"id_column": "id", "label_column": "y", "public_key": str(keys / PUBLIC_FILE)})


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
    bad = runner.invoke(main, args[:-4] + ["--min-parties", "3", "--keys", str(tmp_path / "keys"), "--overwrite"])
    assert bad.exit_code == 1 and "--min-parties must be between 2 and the number of parties (2)" in bad.output


@pytest.mark.integration
def test_benchmark_smoke(smoke_benchmark):
    if not (DATA / "fate").exists() or not (DATA / "public").exists():
        pytest.skip("shared data not present")
    result = smoke_benchmark("horizontal")
    assert result["smoke"] and len(result["tables"]) == 3
