"""Flower's SuperNode with shorter waits between its pulls: ``python -m fedscore.runtime.supernode``.

Takes exactly the arguments of ``flower-supernode`` and runs Flower's own entry point
with them; only two waits of the SuperNode's main loop are shortened.

Notes
-----
Read from flwr 1.42.0, ``flwr/supernode/start_client_internal.py``: the SuperNode's main
loop asks the SuperLink for a message and, when there is none, sleeps a fixed 3 s
(``time.sleep(3)``) before asking again; once it has handed a message to its ClientApp,
it looks for the reply every 0.5 s (``time.sleep(0.5)``). Neither is a setting (no flag,
environment variable or node config reaches them), and together they add 1.75 s on
average, 3.5 s at worst, to every message hop of a deployment.

Both are literals, so there is no constant to set: this module gives that one Flower
module a ``time`` whose ``sleep`` shortens exactly those two waits and passes any other
through unchanged. The idle wait backs off as the ServerApp's reply polling does
(:data:`IDLE_FIRST` growing to :data:`IDLE_MAX`), so a node with nothing to do still
asks only twice a second, and starts again fast once it had a message.

Fail safe: when the installed Flower's loop does not read as described (another
version), the SuperNode runs with Flower's own waits and its log says so.
"""

import inspect
import sys
import time
from logging import INFO, WARNING

FLOWER_IDLE_WAIT = 3
"""Seconds flwr 1.42.0's SuperNode sleeps after a pull that brought no message."""
FLOWER_REPLY_WAIT = 0.5
"""Seconds flwr 1.42.0's SuperNode sleeps between looks for its ClientApp's reply."""
EXPECTED_WAITS = (f"time.sleep({FLOWER_IDLE_WAIT})", f"time.sleep({FLOWER_REPLY_WAIT})")
"""How those two waits read in Flower's source: the check that this Flower is the one read."""

IDLE_FIRST, IDLE_MAX, IDLE_GROWTH = 0.05, 0.5, 1.5
"""The idle wait here: fast right after a message, backing off to two pulls per second
(each pull is one HTTPS request to the SuperLink, which shares the parties' CPUs)."""
REPLY_POLL = 0.05
"""Seconds between looks for the ClientApp's reply: a look reads the node's own state only."""


class NodeWaits:
    """A stand-in for the ``time`` module inside Flower's SuperNode loop: shorter waits.

    Every attribute but ``sleep`` is the real ``time``'s.
    """

    def __init__(self):
        self._idle = IDLE_FIRST

    def __getattr__(self, name):
        return getattr(time, name)

    def sleep(self, seconds):
        if seconds == FLOWER_IDLE_WAIT:
            time.sleep(self._idle)
            self._idle = min(self._idle * IDLE_GROWTH, IDLE_MAX)
        elif seconds == FLOWER_REPLY_WAIT:
            self._idle = IDLE_FIRST
            time.sleep(REPLY_POLL)
        else:
            time.sleep(seconds)


def shorten_waits():
    """Give Flower's SuperNode loop :class:`NodeWaits`; return whether it was done (else it is logged why not)."""
    from flwr.common import log
    from flwr.supernode import start_client_internal as loop

    try:
        source = inspect.getsource(loop)
    except (OSError, TypeError):
        source = ""
    if getattr(loop, "time", None) is not time or not all(wait in source for wait in EXPECTED_WAITS):
        log(WARNING, "fedscore: this Flower's SuperNode loop is not the one read (flwr 1.42.0); "
                     "running with Flower's own waits between pulls")
        return False
    loop.time = NodeWaits()
    log(INFO, "fedscore: SuperNode pulls every %g-%g s when idle (Flower's own: %g s)",
        IDLE_FIRST, IDLE_MAX, FLOWER_IDLE_WAIT)
    return True


def main():
    from flwr.supernode.cli import flower_supernode

    shorten_waits()
    sys.argv[0] = "flower-supernode"
    flower_supernode()


if __name__ == "__main__":
    main()
