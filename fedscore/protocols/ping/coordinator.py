"""The ``ping`` job, the coordinator's side: are the parties reachable, who they say, and ready?

It carries no party data, so it is safe to run against a real deployment before a
protocol: each party confirms the role the coordinator addressed it by, that its data
file (if configured) exists and its output folder is writable; then each party's random
token is relayed to the next party (brand's to media, media's to brand) and echoed back,
which exercises both directions of the relay through the coordinator. Each party also
returns its own token from its saved state, which checks that a party's state survives
between messages (Flower may run every message in a fresh process).

The summary reports each party's fedscore version and the seconds each round trip took,
which is the per-hop latency of the engine (polling dominates in a deployment).
"""

import time

from ...errors import ProtocolError
from ...wire import Message, control


def run(coordinator, options):
    """Coordinator side: one round to check every party, one round to relay tokens between them."""
    roles = coordinator.roles
    started = time.perf_counter()
    hello = coordinator.exchange({role: ("ping.ready", Message(role=control(role))) for role in roles})
    first = time.perf_counter()
    tokens = {role: hello[role]["token"] for role in roles}
    peers = {role: roles[(i + 1) % len(roles)] for i, role in enumerate(roles)}
    echoed = coordinator.exchange(
        {role: ("ping.echo", Message(token=control(tokens[peers[role]]))) for role in roles}
    )
    second = time.perf_counter()
    for role in roles:
        if echoed[role]["token"] != tokens[peers[role]]:
            raise ProtocolError(f"party {role!r} echoed a different token than {peers[role]!r} sent")
        if echoed[role]["own"] != tokens[role]:
            raise ProtocolError(f"party {role!r} lost its state between messages")
    return {
        "job": "ping",
        "roles": roles,
        "versions": {role: hello[role]["version"] for role in roles},
        "round_trip_seconds": [round(first - started, 3), round(second - first, 3)],
    }
