import json
import tempfile
import tomllib
from pathlib import Path

import pytest

from fedscore import __version__
from fedscore.errors import FedscoreError
from fedscore.ledger import read_ledger
from fedscore.runtime.deployment import app_manifest, flower_executables
from fedscore.runtime.runner import run_job

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


def test_ping_over_a_real_superlink_with_tls_and_node_authentication(tmp_path, monkeypatch):
    try:
        flower_executables()
    except FedscoreError as exc:
        pytest.skip(str(exc))
    deployments = tmp_path / "deployments"
    deployments.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(deployments))  # where the deployment puts FLWR_HOME

    summary = run_job("ping", {}, {"brand": {}, "media": {}}, tmp_path / "out", engine="deployment")

    assert summary["versions"] == {"brand": __version__, "media": __version__}
    assert json.loads((tmp_path / "out" / "summary.json").read_text()) == summary
    entries = read_ledger(tmp_path / "out" / "ledger.jsonl")
    assert [e["step"] for e in entries].count("runtime.diagnostic.echo") == 4
    assert list(deployments.iterdir()) == []
    assert _processes_using(deployments) == []
