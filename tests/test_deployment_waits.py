"""The waits a local deployment shortens: the SuperNode's pulls, the SuperExecs' looks, the ClientApp's start.

No wall clock here: what is checked is which waits are asked for, and that the installed
Flower reads them as :mod:`fedscore.runtime.supernode` and the deployment expect.
"""

import os
import sys
import time
from pathlib import Path

import pytest
from flwr.supercore.superexec import run_superexec
from flwr.supernode import start_client_internal

from fedscore.runtime import supernode
from fedscore.runtime.deployment import TASK_POLL, flower_environment


@pytest.fixture
def slept(monkeypatch):
    """The seconds every ``time.sleep`` call asked for, instead of sleeping."""
    calls = []
    monkeypatch.setattr(time, "sleep", calls.append)
    return calls


def test_the_installed_flower_is_the_one_whose_waits_were_read(monkeypatch):
    monkeypatch.setattr(start_client_internal, "time", start_client_internal.time)

    assert supernode.shorten_waits()
    assert isinstance(start_client_internal.time, supernode.NodeWaits)


def test_another_flower_runs_with_its_own_waits(monkeypatch):
    monkeypatch.setattr(start_client_internal, "time", start_client_internal.time)
    monkeypatch.setattr(supernode, "EXPECTED_WAITS", ("time.sleep(7)",))

    assert not supernode.shorten_waits()
    assert start_client_internal.time is time


def test_an_idle_node_backs_off_to_its_slowest_pull_and_a_message_makes_it_fast_again(slept):
    waits = supernode.NodeWaits()
    for _ in range(10):
        waits.sleep(supernode.FLOWER_IDLE_WAIT)
    idle = list(slept)
    waits.sleep(supernode.FLOWER_REPLY_WAIT)
    waits.sleep(supernode.FLOWER_IDLE_WAIT)

    assert idle[0] == supernode.IDLE_FIRST
    assert idle == sorted(idle) and idle[-1] == supernode.IDLE_MAX
    assert slept[-2:] == [supernode.REPLY_POLL, supernode.IDLE_FIRST]


def test_other_waits_and_the_rest_of_time_are_flowers(slept):
    waits = supernode.NodeWaits()
    waits.sleep(1.0)

    assert slept == [1.0]
    assert waits.monotonic is time.monotonic


def test_superexecs_accept_the_task_poll_and_flower_apps_start_from_this_interpreter(tmp_path, monkeypatch):
    monkeypatch.delenv(run_superexec._TASK_POLL_INTERVAL_ENV, raising=False)
    env = flower_environment(tmp_path)
    flowers_own = flower_environment(tmp_path, short_waits=False)
    monkeypatch.setenv(run_superexec._TASK_POLL_INTERVAL_ENV, env[run_superexec._TASK_POLL_INTERVAL_ENV])

    assert run_superexec._get_task_poll_interval() == TASK_POLL
    assert run_superexec._TASK_POLL_INTERVAL_ENV not in flowers_own
    assert env["PATH"].split(os.pathsep)[0] == flowers_own["PATH"].split(os.pathsep)[0] == \
        str(Path(sys.executable).parent)
