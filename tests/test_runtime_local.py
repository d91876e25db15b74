import json

import pytest

from fedscore.errors import InputError, PartyError, ProtocolError
from fedscore.ledger import Ledger, read_ledger
from fedscore.protocols.ping.coordinator import run as run_ping
from fedscore.runtime.coordinator import Coordinator
from fedscore.runtime.local import LocalTransport
from fedscore.runtime.party import PartyContext
from fedscore.runtime.runner import run_job
from fedscore.wire import Message, ciphertext, control, size

SECRET = b"\x13\x37 do not log me \x13\x37"


def _seal(party, message):
    if party.config.get("fail"):
        raise InputError("cannot read the seed list", path="seed.csv")
    return Message(sealed=ciphertext(SECRET + message["salt"].encode()), n=size(3))


@pytest.fixture(autouse=True)
def _steps(register_step):
    register_step("tests.local.seal", _seal)


def _coordinator(tmp_path, configs, run_id="run-a"):
    ledger = Ledger(tmp_path / "ledger.jsonl", run_id=run_id)
    return Coordinator(LocalTransport(configs), ledger, run_id=run_id, timeout=5.0), ledger


def test_ledger_records_every_hop_with_categories_and_sizes_never_values(tmp_path):
    coordinator, ledger = _coordinator(tmp_path, {"brand": {}, "media": {}})
    replies = coordinator.exchange({role: ("tests.local.seal", Message(salt=control("x"))) for role in ("brand", "media")})
    ledger.close()
    assert replies["media"]["sealed"] == SECRET + b"x"
    entries = read_ledger(tmp_path / "ledger.jsonl")
    assert [(e["sender"], e["receiver"]) for e in entries] == [
        ("coordinator", "brand"), ("coordinator", "media"), ("brand", "coordinator"), ("media", "coordinator"),
    ]
    reply = entries[2]
    assert reply["step"] == "tests.local.seal" and reply["run_id"] == "run-a"
    assert reply["fields"]["sealed"] == {"payload": "ciphertext", "bytes": 1 + len(SECRET) + 1}
    assert reply["fields"]["n"]["payload"] == "size"
    raw = (tmp_path / "ledger.jsonl").read_bytes()
    assert b"do not log me" not in raw and SECRET.hex().encode() not in raw


def test_a_failing_party_is_a_party_error_naming_it(tmp_path):
    coordinator, ledger = _coordinator(tmp_path, {"brand": {}, "media": {"fail": True}})
    with pytest.raises(PartyError, match=r"party 'media' failed: seed.csv: cannot read the seed list") as info:
        coordinator.exchange({role: ("tests.local.seal", Message(salt=control("x"))) for role in coordinator.roles})
    assert info.value.role == "media"
    # The error reply crossed the boundary too: it is in the ledger, as a control message of its size.
    error_entry = next(e for e in ledger.entries if e["sender"] == "media")
    assert error_entry["fields"] == {"error": {"payload": "control",
                                               "bytes": len("seed.csv: cannot read the seed list")}}


def test_an_unknown_step_is_refused_by_the_party(tmp_path):
    coordinator, _ = _coordinator(tmp_path, {"brand": {}})
    with pytest.raises(PartyError, match="unknown step 'nosuchmodule.step'"):
        coordinator.call("brand", "nosuchmodule.step")
    with pytest.raises(PartyError, match="step 'lookalike.train' is not one the brand runs"):
        coordinator.call("brand", "lookalike.train")


def test_messages_of_another_run_are_refused(tmp_path):
    transport = LocalTransport({"brand": {}})
    first = Coordinator(transport, Ledger(), run_id="run-a")
    first.call("brand", "tests.local.seal", Message(salt=control("x")))
    intruder = Coordinator(transport, Ledger(), run_id="run-b")
    with pytest.raises(PartyError, match="another run"):
        intruder.call("brand", "tests.local.seal", Message(salt=control("x")))


def test_replayed_or_reordered_messages_are_refused():
    party = PartyContext(role="brand", config={})
    msg = Message(salt=control("x"))
    party.handle("tests.local.seal", "run-a", 3, msg)
    for seq in (3, 2):
        with pytest.raises(ProtocolError, match="replayed or out-of-order"):
            party.handle("tests.local.seal", "run-a", seq, msg)


def test_ping_checks_roles_relay_and_state(tmp_path):
    coordinator, _ = _coordinator(tmp_path, {"brand": {"out": str(tmp_path)}, "media": {"out": str(tmp_path)}})
    summary = run_ping(coordinator, {})
    assert summary["roles"] == ["brand", "media"]
    assert len(summary["round_trip_seconds"]) == 2


def test_ping_reports_a_party_whose_data_file_is_missing(tmp_path):
    with pytest.raises(PartyError, match=r"party 'media' failed: .*missing.csv: data file not found"):
        run_job("ping", {}, {"brand": {}, "media": {"data": str(tmp_path / "missing.csv")}}, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_run_job_local_writes_summary_and_ledger(tmp_path):
    summary = run_job("ping", {}, {"brand": {}, "media": {}}, tmp_path / "out")
    assert json.loads((tmp_path / "out" / "summary.json").read_text()) == summary
    assert len(read_ledger(tmp_path / "out" / "ledger.jsonl")) == 8
