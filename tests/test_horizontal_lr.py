import dataclasses
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

import fedscore
from fedscore import dp, params
from fedscore.audit import audit_ledger, read_transcript
from fedscore.errors import FedscoreError, InputError, PartyError, ProtocolError
from fedscore.keys import PUBLIC_FILE, init_keys, load_secret_key, party_key_name
from fedscore.kit.model import ModelFile, score_file
from fedscore.ledger import COORDINATOR, Ledger, read_ledger
from fedscore.metrics import auc
from fedscore.protocols import drive
from fedscore.protocols.horizontal import PrivacyWarning
from fedscore.protocols.horizontal_lr import coordinator as lr_coordinator
from fedscore.protocols.horizontal_lr import party as lr_party
from fedscore.protocols.horizontal_lr.options import DP_LOCAL_STEPS, LOCAL_STEPS, HorizontalLROptions
from fedscore.protocols.horizontal_lr.training import validation_mask
from fedscore.runtime import coordinator as coordinator_module
from fedscore.runtime import local as local_engine
from fedscore.runtime.coordinator import Coordinator
from fedscore.runtime.local import LocalTransport
from fedscore.wire import Field, Message

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


NO_LIMITS = {"min_category_count": None, "outlier_quantile": None}


def fit(parties, out, keys, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PrivacyWarning)
        return fedscore.horizontal_lr(parties, id_column="id", label_column="y", out=out, key_dir=keys, **options)


@pytest.fixture(scope="module")
def plain_run(parties, keys, tmp_path_factory):
    # the arithmetic against scikit-learn: without the encoding limits (the default encoding is tested below)
    return fit(parties, tmp_path_factory.mktemp("plain") / "run", keys, rounds=5, **NO_LIMITS)


@pytest.mark.integration
def test_flower_simulation_coordinator_holds_only_ciphertexts(parties, keys, tmp_path):
    """Through Flower, with DP: each party sizes its noise itself and counts its own releases."""
    out = tmp_path / "run"
    result = fedscore.horizontal_lr(parties, id_column="id", label_column="y", rounds=2, dp_epsilon=3.0, out=out,
                                    key_dir=keys, engine="simulation")
    for path in parties:
        scores = pd.read_csv(out / path.stem / "scores.csv", dtype={"id": str})
        assert list(scores["id"]) == list(pd.read_csv(path, dtype=str)["id"])
        assert scores["score"].between(0, 1).all()
        report = json.loads((out / path.stem / "report.json").read_text())
        assert [r["round"] for r in report["rounds"]] == [1, 2]
        own = report["privacy"]["dp"]
        assert own["releases"] == own["releases_budget"] == 2 * DP_LOCAL_STEPS and own["epsilon_spent"] <= 3.0
        assert own["noise_multiplier"] == result.summary["dp"]["noise_multiplier"]
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


class RewritingTransport:
    """A coordinator that changes what it sends: ``rewrite(step, fields)`` edits each request's decoded fields."""

    def __init__(self, inner, rewrite):
        self.inner, self.rewrite = inner, rewrite

    @property
    def roles(self):
        return self.inner.roles

    def exchange(self, requests, timeout=None):
        return self.inner.exchange([self._rewritten(r) for r in requests], timeout)

    def _rewritten(self, request):
        message = Message.decode(request.fields, request.payloads)
        fields = {name: Field(message.payload(name), message[name]) for name in message}
        self.rewrite(request.step, fields)
        encoded, payloads = Message(**fields).encode()
        return dataclasses.replace(request, fields=encoded, payloads=payloads)


def party_configs(parties, keys, tmp_path, **own):
    """Each party's configuration for a run driven here: its table, key, folder and its own options."""
    configs = {}
    for i, path in enumerate(parties):
        (tmp_path / path.stem).mkdir(parents=True, exist_ok=True)
        configs[path.stem] = {"data": str(path), "key-path": str(keys / party_key_name(i + 1)),
                              "out": str(tmp_path / path.stem), **own}
    return configs


def drive_horizontal_lr(configs, keys, transport=None, **options):
    """Drive a run over ``configs`` with the coordinator's ``options`` (the parties keep their own)."""
    local = LocalTransport(configs)
    coordinator = Coordinator(local if transport is None else transport(local), Ledger(), timeout=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PrivacyWarning)
        return drive(coordinator, "horizontal_lr", {"id_column": "id", "label_column": "y",
                                                    "public_key": str(keys / PUBLIC_FILE), **options})


def run_with_dropouts(parties, keys, tmp_path, lost, min_parties):
    configs = party_configs(parties, keys, tmp_path, rounds=3, min_parties=min_parties)
    return drive_horizontal_lr(configs, keys, lambda local: DroppingTransport(local, lost), rounds=3,
                               min_parties=min_parties)


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


# --- each party's own options, budget and rule on how few parties a sum may hold ----------------

def test_a_coordinator_asking_for_other_privacy_options_is_refused(parties, keys, tmp_path):
    configs = party_configs(parties, keys, tmp_path, dp_epsilon=1.0, rounds=2)
    with pytest.raises(PartyError, match=r"dp_epsilon: the coordinator's 4\.0, this party's 1\.0"):
        drive_horizontal_lr(configs, keys, dp_epsilon=4.0, rounds=2)
    with pytest.raises(PartyError, match=r"min_parties: the coordinator's 2, this party's None \(the default\)"):
        drive_horizontal_lr(configs, keys, dp_epsilon=1.0, rounds=2, min_parties=2)


def set_field(fields, name, value):
    fields[name] = Field(fields[name].payload, value)


def test_a_coordinator_announcing_a_smaller_noise_multiplier_is_refused(parties, keys, tmp_path):
    configs = party_configs(parties, keys, tmp_path, dp_epsilon=1.0, rounds=2)

    def smaller(step, fields):
        if "noise_multiplier" in fields:
            set_field(fields, "noise_multiplier", fields["noise_multiplier"].value / 2)

    with pytest.raises(PartyError, match=r"announced a DP noise multiplier of [\d.]+, but this party's own is"):
        drive_horizontal_lr(configs, keys, lambda local: RewritingTransport(local, smaller), dp_epsilon=1.0, rounds=2)


@pytest.mark.parametrize("cheat, refusal", [
    ("more rounds", "round 3 asked after round 2: this party takes part in rounds 1 to 2, each once"),
    ("a round again", "round 1 asked after round 1"),
])
def test_a_round_beyond_a_partys_budget_is_refused(parties, keys, tmp_path, cheat, refusal):
    """The coordinator tells the parties 2 rounds and drives 3, or asks for round 1 twice: each party refuses."""
    configs = party_configs(parties, keys, tmp_path, dp_epsilon=1.0, rounds=2)
    told = HorizontalLROptions.from_dict({"id_column": "id", "label_column": "y", "dp_epsilon": 1.0, "rounds": 2})

    def rewrite(step, fields):
        if step == "horizontal_lr.describe":
            set_field(fields, "options", {**fields["options"].value, "rounds": 2})
            set_field(fields, "noise_multiplier", told.noise_multiplier())
        elif cheat == "a round again" and step == "horizontal_lr.train_round" and fields["round"].value == 2:
            set_field(fields, "round", 1)

    rounds = 3 if cheat == "more rounds" else 2
    with pytest.raises(FedscoreError, match=rf"only 0 of 3 parties answered.*{refusal}"):
        drive_horizontal_lr(configs, keys, lambda local: RewritingTransport(local, rewrite), dp_epsilon=1.0,
                            rounds=rounds)


def test_a_partys_budget_counts_its_releases():
    budget = dp.PrivacyBudget(1.0, 3, 1e-6)
    assert budget.noise_multiplier == dp.noise_multiplier(1.0, 3, 1e-6)
    budget.spend(2)
    budget.spend()
    with pytest.raises(ProtocolError, match="would be Gaussian release 4 of this party, whose noise is sized for 3"):
        budget.spend()
    assert budget.spent == 3 and budget.epsilon_spent() == pytest.approx(1.0, rel=1e-3)
    budget.check_claim(budget.noise_multiplier * (1 + 1e-9))  # the last digits of a root search
    with pytest.raises(ProtocolError, match="announced a DP noise multiplier"):
        budget.check_claim(budget.noise_multiplier * 0.99)


@pytest.mark.parametrize("added, refusal", [
    ("one party's", "the sum of column sums adds up 1 parties' vectors; this party accepts from 3 to 3"),
    ("one party's twice", "adds up 4 parties' vectors"),
])
def test_a_sum_of_other_than_every_partys_vector_is_refused(parties, keys, tmp_path, monkeypatch, added, refusal):
    original = lr_coordinator.add_ciphertexts
    extra = (lambda blobs: blobs[:1]) if added == "one party's" else (lambda blobs: blobs + blobs[:1])
    monkeypatch.setattr(lr_coordinator, "add_ciphertexts", lambda context, blobs: original(context, extra(blobs)))
    with pytest.raises(PartyError, match=refusal):
        drive_horizontal_lr(party_configs(parties, keys, tmp_path), keys)


def test_a_partys_own_min_parties_holds_when_the_coordinators_is_lower(parties, keys, tmp_path):
    """The coordinator tells the parties min_parties = 3, sums two updates when one drops out: they refuse it."""
    configs = party_configs(parties, keys, tmp_path, rounds=3, min_parties=3)

    def told_three(step, fields):
        if step == "horizontal_lr.describe":
            set_field(fields, "options", {**fields["options"].value, "min_parties": 3})

    def transport(local):
        return DroppingTransport(RewritingTransport(local, told_three), lost={("south", 2)})

    with pytest.raises(FedscoreError, match=r"round 3: only 0 of 3 parties answered.*the sum of updates adds up 2 "
                                            r"parties' vectors; this party accepts from 3 to 3"):
        drive_horizontal_lr(configs, keys, transport, rounds=3, min_parties=2)


def test_rare_categories_and_outliers_are_limited_on_each_partys_rows(parties, keys, tmp_path, monkeypatch):
    """North holds 'kiosk' in 3 rows and one huge spend; south holds 'kiosk' in 80: only north merges it."""
    tables = {p.stem: pd.read_csv(p, dtype=str, keep_default_na=False) for p in parties}
    tables["north"].loc[20:22, "channel"] = "kiosk"
    tables["north"].loc[30, "spend"] = "90000000"
    tables["south"].loc[20:99, "channel"] = "kiosk"
    announced = {}
    original = local_engine.LocalTransport.exchange

    def spy(self, requests, timeout=None):
        replies = original(self, requests, timeout)
        for request, reply in zip(requests, replies):
            if request.step == "horizontal_lr.describe" and reply.error is None:
                announced[request.role] = Message.decode(reply.fields, reply.payloads)["schema"]["categories"]
        return replies

    monkeypatch.setattr(local_engine.LocalTransport, "exchange", spy)
    result = fit(tables, tmp_path / "run", keys, rounds=2, min_category_count=20, outlier_quantile=0.01)
    assert "kiosk" not in announced["north"]["channel"] and "kiosk" in announced["south"]["channel"]
    north, south = result.models["north"].encoder, result.models["south"].encoder
    assert north.categories_["channel"] == ["app", "store", "web", "<other>"]
    assert south.categories_["channel"] == ["app", "kiosk", "store", "web", "<other>"]
    assert north.bounds_["spend"][1] < 60_000 and north.min_category_count == 20 and north.outlier_quantile == 0.01
    assert north.means_["spend"] == south.means_["spend"] < 51_000  # the pooled mean, of winsorised values
    coef = {r: dict(zip(m.encoder.feature_names_, m.coef)) for r, m in result.models.items()}
    assert coef["north"]["channel=<other>"] == coef["south"]["channel=<other>"]  # one global model
    for name, frame in tables.items():  # each party's model file scores its table as the run did
        frame.to_csv(tmp_path / f"{name}.csv", index=False)
        score_file(result.out / name / "model.json", tmp_path / f"{name}.csv", id_column="id",
                   out=tmp_path / f"{name}-scores.csv")
        again = pd.read_csv(tmp_path / f"{name}-scores.csv")["score"].to_numpy()
        np.testing.assert_array_equal(again, pd.read_csv(result.out / name / "scores.csv")["score"].to_numpy())
    assert result.reports["north"]["privacy"]["min_category_count"] == 20


def _lone_category_attack(parties, keys, tmp_path, monkeypatch, **options):
    """AUC with which north reads the labels of south's 99 users alone in their shop from a two-party sum.

    North subtracts its own round-1 update from the round-2 model sum it decrypts: what is
    left is south's update, in which the weight of a shop held by one user moves with that
    user's label. The score of a user is the weight of the feature its row is encoded in.
    """
    lone = np.arange(10, 109)  # labelled rows (the first 10 are to score)
    tables = {p.stem: pd.read_csv(p, dtype=str, keep_default_na=False) for p in parties[:2]}
    for frame in tables.values():
        frame["shop"] = "main"
    tables["south"].loc[lone, "shop"] = [f"s{i}" for i in lone]
    own, heard = [], {}
    original_update, original_exchange = lr_party.local_update, local_engine.LocalTransport.exchange

    def update(weights, x, y, options, budget):
        own.append((len(y), original_update(weights, x, y, options, budget)))
        return own[-1][1]

    def exchange(self, requests, timeout=None):
        for r in (r for r in requests if r.role == "north"):
            message = Message.decode(r.fields, r.payloads)
            for name in ("schema", "model_sum"):
                if name in message and name not in heard:
                    heard[name] = message[name]
        return original_exchange(self, requests, timeout)

    with monkeypatch.context() as patch:
        patch.setattr(lr_party, "local_update", update)
        patch.setattr(local_engine.LocalTransport, "exchange", exchange)
        fit(tables, tmp_path / "run", keys, rounds=2, validation_fraction=0, **options)
    key = load_secret_key(keys / party_key_name(1))  # north's copy of the shared key
    total = key.decrypt(key.load_vector(heard["model_sum"]))  # [sum of n_i w_i, sum of n_i, parties]
    rows, weights = own[0]  # north's own round-1 update (north trains first)
    south = (total[:len(weights)] - rows * weights) / (total[len(weights)] - rows)
    names = lr_party.merged_feature_names(heard["schema"])
    column = {name: i for i, name in enumerate(names)}
    scores = [south[column.get(f"shop=s{i}", column.get("shop=<other>"))] for i in lone]
    return auc(tables["south"].loc[lone, "y"].astype(float).to_numpy(), np.array(scores))


def test_a_user_alone_in_a_category_is_read_from_a_two_party_sum_unless_merged(parties, keys, tmp_path,
                                                                                monkeypatch):
    exposed = _lone_category_attack(parties, keys, tmp_path / "exposed", monkeypatch, **NO_LIMITS)
    merged = _lone_category_attack(parties, keys, tmp_path / "merged", monkeypatch, min_category_count=20)
    assert exposed > 0.95 and merged == 0.5


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
    result = fit(tables, tmp_path / "run", keys, rounds=1, **NO_LIMITS)
    assert {"region=north", "store_size"} <= set(result.feature_names)
    # without the encoding limits every party encodes every party's categories: one model file for all
    assert all(m.encoder.feature_names_ == result.feature_names for m in result.models.values())
    for frame in tables.values():
        frame["store_size"] = 7
    with pytest.raises(FedscoreError, match="column 'store_size': column is constant across all parties"):
        fit(tables, tmp_path / "constant", keys, rounds=1, **NO_LIMITS)


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
