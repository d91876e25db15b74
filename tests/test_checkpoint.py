"""Resuming a run from its checkpoint: the coordinator replays, the parties restore, nothing is released twice."""

import secrets
import stat

import pandas as pd
import pytest
from click.testing import CliRunner

from fedscore.cli import main
from fedscore.demo import demo_data_dir
from fedscore.errors import InputError, PartyError, ProtocolError
from fedscore.ledger import Ledger, read_ledger
from fedscore.runtime import checkpoint
from fedscore.runtime.coordinator import Coordinator
from fedscore.runtime.local import LocalTransport
from fedscore.runtime.runner import run_job
from fedscore.wire import Message, control, masked, size


def _count(party, message):
    """Count the rounds this party answered; answer with a fresh random token (a new release)."""
    party.state["n"] = party.state.get("n", 0) + 1
    if party.config.get("fail_at") == party.state["n"]:
        raise InputError("cannot read the next chunk", path="media.csv")
    return Message(n=size(party.state["n"]), token=masked(secrets.token_hex(8)))


@pytest.fixture(autouse=True)
def _steps(register_step):
    register_step("tests.checkpoint.count", _count)


class CountingTransport(LocalTransport):
    def __init__(self, configs):
        super().__init__(configs)
        self.sent = []

    def exchange(self, requests, timeout=None):
        self.sent += [(r.role, r.seq) for r in requests]
        return super().exchange(requests, timeout)


def _rounds(coordinator, rounds=3):
    return [coordinator.exchange({role: ("tests.checkpoint.count", Message(round=control(i)))
                                  for role in ("brand", "media")}) for i in range(rounds)]


def _configs(folder, resume, fail_at=None):
    return {role: {"checkpoint": str(checkpoint.snapshot_path(folder, role)), "resume": resume,
                   **({"fail_at": fail_at} if role == "media" and fail_at else {})} for role in ("brand", "media")}


def test_a_failed_run_resumes_where_it_stopped_and_repeats_no_release(tmp_path):
    folder = tmp_path / "run.checkpoint"
    folder.mkdir()
    first = CountingTransport(_configs(folder, resume=False, fail_at=2))
    with pytest.raises(PartyError, match="party 'media' failed"):
        _rounds(Coordinator(first, Ledger(), run_id="r1", journal=checkpoint.Journal(folder, "r1")))
    brand_token_round_2 = first.parties["brand"].last_reply["token"]  # brand answered round 2, media failed

    again = CountingTransport(_configs(folder, resume=True))
    replies = _rounds(Coordinator(again, Ledger(), run_id="r1", journal=checkpoint.Journal(folder, "r1")))
    assert [r["brand"]["n"] for r in replies] == [1, 2, 3] and [r["media"]["n"] for r in replies] == [1, 2, 3]
    assert again.sent == [("brand", 2), ("media", 3), ("brand", 4), ("media", 5)]  # round 1 came from the journal
    assert replies[1]["brand"]["token"] == brand_token_round_2  # the same release, not a fresh one


def test_a_resume_that_builds_other_requests_is_refused(tmp_path):
    folder = tmp_path / "run.checkpoint"
    folder.mkdir()
    with pytest.raises(PartyError):
        _rounds(Coordinator(LocalTransport(_configs(folder, False, fail_at=2)), Ledger(), run_id="r1",
                            journal=checkpoint.Journal(folder, "r1")))
    other = Coordinator(LocalTransport(_configs(folder, True)), Ledger(), run_id="r1", journal=checkpoint.Journal(folder, "r1"))
    with pytest.raises(ProtocolError, match="no longer follows its checkpoint at message 0"):
        other.exchange({role: ("tests.checkpoint.count", Message(round=control(99))) for role in ("brand", "media")})


def test_the_journal_of_another_run_is_refused(tmp_path):
    folder = tmp_path / "run.checkpoint"
    _rounds(Coordinator(LocalTransport(_configs(folder, False)), Ledger(), run_id="r1",
                        journal=checkpoint.Journal(folder, "r1")), rounds=1)
    with pytest.raises(ProtocolError, match="journal of run 'r1', not of 'r2'"):
        checkpoint.Journal(folder, "r2")


def test_party_snapshots_are_owner_only(tmp_path):
    folder = tmp_path / "run.checkpoint"
    folder.mkdir()
    _rounds(Coordinator(LocalTransport(_configs(folder, False)), Ledger(), run_id="r1",
                        journal=checkpoint.Journal(folder, "r1")), rounds=1)
    for role in ("brand", "media"):
        path = checkpoint.snapshot_path(folder, role)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_bad_input_fails_before_the_run_and_leaves_no_checkpoint(tmp_path):
    """Every party's input is checked before anything is exchanged: no --resume advice, no keys left behind."""
    data = demo_data_dir()
    broken = pd.read_csv(data / "bank_media.csv", dtype=str)
    broken.loc[10, "campaign"] = "n/a"
    media_path = tmp_path / "media.csv"
    broken.to_csv(media_path, index=False)
    out = tmp_path / "out"
    failed = CliRunner().invoke(main, ["lookalike", "--seed", str(data / "bank_seed.csv"), "--media", str(media_path),
                                       "--id-column", "uid", "--out", str(out)])
    assert failed.exit_code == 1 and failed.output.count("\n") == 1
    assert "column 'campaign', row 12" in failed.output and "--resume" not in failed.output
    assert not out.exists() and not (tmp_path / "out.checkpoint").exists()


def test_lookalike_resumes_after_the_media_fixes_its_file(tmp_path):
    """PSI completes, then the media's feature file fails to load mid-run; fixed, the run goes on with resume."""
    data = demo_data_dir()
    media = pd.read_csv(data / "bank_media.csv", dtype=str)
    broken = media.copy()
    broken.loc[10, "campaign"] = "n/a"
    media_path = tmp_path / "media.csv"
    broken.to_csv(media_path, index=False)
    out = tmp_path / "out"
    parties = {"brand": {"data": str(data / "bank_seed.csv")}, "media": {"data": str(media_path)}}
    options = {"id_column": "uid", "audience_sizes": ["1%", "5%"]}
    # run_job itself checks no input: a party of a deployment meets a bad file in its load step
    with pytest.raises(PartyError, match="column 'campaign', row 12.*--resume"):
        run_job("lookalike", options, parties, out)
    assert not out.exists() and (tmp_path / "out.checkpoint").is_dir()

    media.to_csv(media_path, index=False)  # the media fixes its file
    with pytest.raises(InputError, match="checkpoint is of another run"):
        run_job("lookalike", {**options, "audience_sizes": ["1%"]}, parties, out, resume=True)
    run_job("lookalike", options, parties, out, resume=True)
    assert (out / "media" / "scores.csv").is_file() and not (tmp_path / "out.checkpoint").exists()
    steps = [e["step"] for e in read_ledger(out / "ledger.jsonl")]
    assert steps.count("psi.blind_own") == 4  # PSI ran once: both requests and replies, not again
    assert steps.count("lookalike.load_features") >= 4  # tried, failed, then done on resume


def test_resume_without_a_checkpoint_is_refused(tmp_path):
    with pytest.raises(InputError, match="no checkpoint to resume from"):
        run_job("ping", {}, {"brand": {}, "media": {}}, tmp_path / "out", resume=True)
