"""Fixtures shared by the protocol tests."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fedscore.he import CKKSContext
from fedscore.protocols import ANY_PARTY, STEPS

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SMOKE_TIMEOUT_SECONDS = 600


def pytest_collection_modifyitems(items):
    """A benchmark's smoke run is an integration test: ``-m "not integration"`` leaves it out."""
    for item in items:
        if "smoke_benchmark" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def smoke_benchmark(tmp_path):
    """Run ``benchmarks/bench_<name>.py --smoke`` into ``tmp_path``; return the JSON result it wrote."""
    def run(name):
        script = BENCHMARKS / f"bench_{name}.py"
        done = subprocess.run([sys.executable, str(script), "--smoke", "--out", str(tmp_path)], capture_output=True,
                              text=True, timeout=SMOKE_TIMEOUT_SECONDS, cwd=BENCHMARKS)
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads((tmp_path / f"{name}.json").read_text())
    return run


@pytest.fixture
def decryptions(monkeypatch):
    """Record every raw CKKS decryption and whether it happened inside decrypt_release."""
    calls = []
    inside = []
    original_decrypt, original_release = CKKSContext.decrypt, CKKSContext.decrypt_release

    def decrypt(self, vector):
        calls.append(bool(inside))
        return original_decrypt(self, vector)

    def decrypt_release(self, vector, bound, message_bound=None):
        inside.append(True)
        try:
            return original_release(self, vector, bound, message_bound)
        finally:
            inside.pop()

    monkeypatch.setattr(CKKSContext, "decrypt", decrypt)
    monkeypatch.setattr(CKKSContext, "decrypt_release", decrypt_release)
    return calls


@pytest.fixture
def register_step(monkeypatch):
    """Add a test-only step to the table of steps, for this test: ``register_step(name, function)``."""
    def register(name, function):
        monkeypatch.setitem(STEPS, name, {ANY_PARTY: function})
    return register


@pytest.fixture
def pinned():
    """Identities for parties a test builds directly (``PartyContext``): ``pinned({role: config})``
    gives each config an identity key of its own and pins every party's at every party, as the
    local engine does; the channel refuses a peer without a pin."""
    from fedscore.runtime.party import pin_every_party

    return pin_every_party
