"""Run a protocol: the coordinator drives steps, parties answer them, a transport carries them.

A protocol is written once, as a coordinator function that calls party steps
(``coordinator.call("media", "psi.blind_other", msg)``) and party step functions
registered with :func:`party_step`. The same code runs over the in-process transport
(:class:`LocalTransport`, for tests and single-machine runs) and over Flower's Message
API (simulation or a real SuperLink with SuperNodes).
"""

from .coordinator import Coordinator
from .jobs import JOBS, resolve_job
from .local import LocalTransport
from .party import PartyContext, party_step

__all__ = ["Coordinator", "JOBS", "LocalTransport", "PartyContext", "party_step", "resolve_job"]
