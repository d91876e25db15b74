import time

import pytest
from flwr.app import ConfigRecord, Context, Metadata, RecordDict
from flwr.app import Message as FlowerMessage

from fedscore import __version__
from fedscore.errors import FedscoreError, InputError, PartyError
from fedscore.ledger import read_ledger
from fedscore.runtime.coordinator import Request
from fedscore.runtime.flower import (
    ROLE_QUERY, STEP_QUERY, FlowerTransport, RunSettings, make_client_app, node_config_of, pack_request,
    party_of_node_config, unpack_reply, unpack_request,
)
from fedscore.runtime.simulation import run_simulated
from fedscore.wire import Message, ciphertext, control


def _incoming(content, message_type, message_id="m1"):
    """A message as a SuperNode hands it to the ClientApp."""
    return FlowerMessage(content=content, metadata=Metadata(
        run_id=1, message_id=message_id, src_node_id=0, dst_node_id=7, reply_to_message_id="", group_id="",
        created_at=time.time(), ttl=60.0, message_type=message_type,
    ))


def _step(step, seq, message, run_id="run-a"):
    fields, payloads = message.encode()
    return _incoming(pack_request(Request("brand", step, run_id, seq, fields, payloads)), STEP_QUERY, f"m{seq}")


def test_request_survives_flower_records():
    fields, payloads = Message(ct=ciphertext(b"\x00" * 1000), note=control("hi")).encode()
    step, run_id, seq, message = unpack_request(pack_request(Request("media", "psi.x", "r", 4, fields, payloads)))
    assert (step, run_id, seq) == ("psi.x", "r", 4)
    assert message["ct"] == b"\x00" * 1000 and message.payload("ct").value == "ciphertext"


def test_client_app_keeps_party_state_in_the_node_context():
    app = make_client_app()
    context = Context(run_id=1, node_id=7, node_config={"role": "brand"}, state=RecordDict(), run_config={})
    hello = app(_incoming(RecordDict(), ROLE_QUERY), context)
    assert dict(hello.content["meta"]) == {"role": "brand", "version": __version__}
    ready = unpack_reply("brand", app(_step("ping.ready", 0, Message(role=control("brand"))), context))
    token = Message.decode(ready.fields, ready.payloads)["token"]
    echo = unpack_reply("brand", app(_step("ping.echo", 1, Message(token=control("t"))), context))
    assert Message.decode(echo.fields, echo.payloads)["own"] == token
    replay = unpack_reply("brand", app(_step("ping.echo", 1, Message(token=control("t"))), context))
    assert "replayed" in replay.error
    other_run = _step("ping.echo", 2, Message(token=control("t")), "run-b")
    foreign = unpack_reply("brand", app(other_run, context))
    assert "another run" in foreign.error


def test_client_app_answers_a_party_error_with_its_message():
    app = make_client_app([("media", {"data": "/nonexistent/audience.csv"})])
    context = Context(run_id=1, node_id=7, node_config={"partition-id": 0}, state=RecordDict(), run_config={})
    reply = unpack_reply("media", app(_step("ping.ready", 0, Message(role=control("media"))), context))
    assert reply.error == "/nonexistent/audience.csv: data file not found"


def test_a_node_without_a_role_says_so():
    app = make_client_app()
    context = Context(run_id=1, node_id=7, node_config={}, state=RecordDict(), run_config={})
    reply = app(_incoming(RecordDict(), ROLE_QUERY), context)
    assert "no 'role' in its node config" in reply.content["meta"]["error"]


def _role_answer(role, version=__version__):
    question = _incoming(RecordDict(), ROLE_QUERY)
    return FlowerMessage(content=RecordDict({"meta": ConfigRecord({"role": role, "version": version})}),
                         reply_to=question)


def test_a_role_claim_must_match_the_name_its_key_was_registered_under():
    claims, problems = {}, []
    FlowerTransport._claim(11, "brand", _role_answer("brand"), ["brand", "media"], claims, problems)
    assert claims == {"brand": 11}
    with pytest.raises(FedscoreError, match="claims role 'media' but its key is registered as 'brand'"):
        FlowerTransport._claim(12, "brand", _role_answer("media"), ["brand", "media"], claims, problems)
    with pytest.raises(FedscoreError, match="two nodes claim role 'brand'"):
        FlowerTransport._claim(13, "", _role_answer("brand"), ["brand", "media"], claims, problems,
                               require_name=False)
    with pytest.raises(FedscoreError, match="runs fedscore 0.0.1"):
        FlowerTransport._claim(14, "", _role_answer("media", "0.0.1"), ["brand", "media"], claims, problems,
                               require_name=False)
    FlowerTransport._claim(15, "", None, ["brand", "media"], claims, problems)
    assert problems == ["node 15: no answer"]


def test_a_node_without_a_registered_key_name_is_not_taken_at_its_word():
    claims, problems = {}, []
    FlowerTransport._claim(21, "", _role_answer("brand"), ["brand", "media"], claims, problems)
    assert claims == {} and "has no registered key name" in problems[0] and "--enable-supernode-auth" in problems[0]
    FlowerTransport._claim(22, "", _role_answer("brand"), ["brand", "media"], claims, problems, require_name=False)
    assert claims == {"brand": 22}


def test_node_config_round_trip_and_run_settings_round_trip():
    config = {"data": "/d/brand.csv", "out": "/o/brand", "id-column": "email"}
    assert node_config_of("brand", config) == {"role": "brand", "data-path": "/d/brand.csv", "out-dir": "/o/brand",
                                               "id-column": "email"}
    assert party_of_node_config(node_config_of("brand", config)) == ("brand", config)
    with pytest.raises(InputError):
        party_of_node_config({"data-path": "x"})
    settings = RunSettings("ping", {"k": [1, 2]}, ("brand", "media"), "/l.jsonl", "/r.json", "run-a", 30.0)
    assert RunSettings.from_run_config(settings.to_run_config()) == settings
    assert RunSettings.from_run_config({"job": "ping"}).require_node_names  # names are required unless said
    assert not RunSettings.from_run_config({"job": "ping", "require-node-names": "false"}).require_node_names


@pytest.mark.integration
def test_simulation_runs_the_job_and_writes_the_ledger(tmp_path):
    parties = {role: {"out": str(tmp_path)} for role in ("brand", "media")}
    summary = run_simulated("ping", {}, parties, tmp_path / "ledger.jsonl", "run-sim", 60.0)
    assert summary["versions"] == {"brand": __version__, "media": __version__}
    entries = read_ledger(tmp_path / "ledger.jsonl")
    assert len(entries) == 8 and {e["run_id"] for e in entries} == {"run-sim"}


@pytest.mark.integration
def test_simulation_reports_a_failing_party_instead_of_hanging(tmp_path):
    parties = {"brand": {}, "media": {"data": str(tmp_path / "missing.csv")}}
    started = time.monotonic()
    with pytest.raises(PartyError, match=r"party 'media' failed: .*missing.csv: data file not found"):
        run_simulated("ping", {}, parties, tmp_path / "ledger.jsonl", "run-fail", 120.0)
    assert time.monotonic() - started < 60
