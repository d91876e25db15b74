import json
import os
import signal
import tempfile
import threading
import time
import tomllib
from pathlib import Path

import pytest

from fedscore import __version__
from fedscore.errors import FedscoreError, PartyError
from fedscore.ledger import read_ledger
from fedscore.runtime.deployment import SUPERNODE_MODULE, app_manifest, flower_executables
from fedscore.runtime.runner import run_job

pytestmark = pytest.mark.integration  # every test here goes through Flower

PROJECT = Path(__file__).resolve().parents[1]


def test_pyproject_declares_the_app_the_deployment_runs():
    declared = tomllib.loads((PROJECT / "pyproject.toml").read_text())["tool"]["flwr"]["app"]
    assert declared == tomllib.loads(app_manifest())["tool"]["flwr"]["app"]


def _processes_using(folder):
    """PIDs whose environment points into ``folder`` (every Flower process gets FLWR_HOME there)."""
    needle = str(folder).encode()
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if needle in environ.read_bytes():
                found.append(int(environ.parent.name))
        except OSError:
            pass
    return found


@pytest.fixture
def deployments(tmp_path, monkeypatch):
    """The folder every local deployment of the test puts its FLWR_HOME, keys and logs in."""
    try:
        flower_executables()
    except FedscoreError as exc:
        pytest.skip(str(exc))
    folder = tmp_path / "deployments"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def test_ping_over_a_real_superlink_with_tls_and_node_authentication(tmp_path, deployments):
    summary = run_job("ping", {}, {"brand": {}, "media": {}}, tmp_path / "out", engine="deployment")

    assert summary["versions"] == {"brand": __version__, "media": __version__}
    assert json.loads((tmp_path / "out" / "summary.json").read_text()) == summary
    entries = read_ledger(tmp_path / "out" / "ledger.jsonl")
    assert [e["step"] for e in entries].count("ping.echo") == 4
    assert list(deployments.iterdir()) == []
    assert _processes_using(deployments) == []


def _supernode_of(role, folder):
    """PID of the SuperNode started for ``role`` under ``folder``, or None."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if any(a.endswith(b"flower-supernode") or a == SUPERNODE_MODULE.encode() for a in args) and \
                any(str(folder).encode() in a and a.endswith(f"node-{role}.toml".encode()) for a in args):
            return int(cmdline.parent.name)
    return None


def test_a_party_whose_supernode_dies_mid_run_stops_the_run_naming_it_and_the_run_resumes(tmp_path, deployments):
    ids = [f"user{i}@example.com" for i in range(20_000)]
    for role in ("brand", "media"):
        (tmp_path / f"{role}.csv").write_text("id\n" + "\n".join(ids) + "\n")
    out = tmp_path / "out"
    killed = {}

    def kill_media_after_its_first_reply():
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            ledger = tmp_path / "out.checkpoint" / "ledger.jsonl"  # the run's ledger while it goes on
            pid = _supernode_of("media", deployments)
            if pid is not None and ledger.exists() and '"sender": "media"' in ledger.read_text():
                os.killpg(pid, signal.SIGKILL)
                killed["at"] = time.monotonic()
                return
            time.sleep(0.2)

    watcher = threading.Thread(target=kill_media_after_its_first_reply, daemon=True)
    watcher.start()
    parties = {role: {"data": str(tmp_path / f"{role}.csv")} for role in ("brand", "media")}
    with pytest.raises(PartyError, match="party 'media' failed: its SuperNode exited") as info:
        run_job("psi", {}, parties, out, engine="deployment", timeout=120.0)
    watcher.join()
    assert info.value.role == "media"
    assert time.monotonic() - killed["at"] < 30  # noticed at once, not at the timeout
    assert not out.exists() and list(tmp_path.glob(".out.staging-*")) == []  # no partial outputs
    assert "--resume" in str(info.value) and (tmp_path / "out.checkpoint" / "journal.pickle").is_file()
    assert list(deployments.iterdir()) == [] and _processes_using(deployments) == []

    # The media's operator restarts its node; the run goes on from the completed rounds.
    summary = run_job("psi", {}, parties, out, engine="deployment", timeout=120.0, resume=True)
    assert summary["intersection"] == len(ids)
    steps = [e["step"] for e in read_ledger(out / "ledger.jsonl")]
    assert steps.count("psi.blind_own") == 4  # blinded once, before the failure; not again
    assert not (tmp_path / "out.checkpoint").exists()
    assert list(deployments.iterdir()) == [] and _processes_using(deployments) == []


def test_a_command_with_relative_paths_runs_from_a_fresh_folder(tmp_path, deployments):
    """The command as a user types it: relative input and output paths, from a folder of its own.

    The SuperNodes and their ClientApp processes run in other working directories: every
    path the user gave must reach them resolved against the user's folder, not theirs.
    """
    import shutil
    import subprocess

    executable = shutil.which("fedscore")
    if executable is None:
        pytest.skip("the fedscore command is not on PATH")
    folder = tmp_path / "fresh"
    folder.mkdir()
    (folder / "brand.csv").write_text("email\n" + "".join(f"u{i}@x.com\n" for i in range(40)))
    (folder / "media.csv").write_text("email\n" + "".join(f"U{i}@X.COM\n" for i in range(30, 90)))
    env = dict(os.environ, TMPDIR=str(deployments), FLWR_TELEMETRY_ENABLED="0")
    result = subprocess.run(
        [executable, "psi", "--brand", "brand.csv", "--media", "media.csv",
         "--id-column", "email", "--out", "out", "--deployment", "--timeout", "120"],
        cwd=folder, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "10 matched" in result.stdout
    assert (folder / "out" / "media" / "intersection.csv").read_text().count("\n") == 11
    assert sorted(p.name for p in folder.iterdir()) == ["brand.csv", "media.csv", "out"]
    assert list(deployments.iterdir()) == []
    assert _processes_using(deployments) == []


def test_the_deployment_benchmark_runs(smoke_benchmark, deployments):
    result = smoke_benchmark("deployment")

    pings, demo = result["tables"]
    assert [row[0] for row in pings["rows"]] == ["local", "deployment, fedscore's waits"]
    assert all(row[2] > 0 for row in pings["rows"])
    assert [row[0] for row in demo["rows"]] == ["psi", "all phases"]
    assert demo["rows"][0][1] == 3  # PSI: blind own, blind peer, match
