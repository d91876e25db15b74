"""The party side of every protocol: a registry of steps and the state they share.

A step is a plain function ``step(party, message) -> Message`` registered under a dotted
name whose part before the last dot is the fedscore module that defines it
(``"psi.blind_own"`` lives in ``fedscore.psi``, ``"runtime.diagnostic.echo"`` in
``fedscore.runtime.diagnostic``). Steps only touch their own party's data and state;
whatever they return crosses the party boundary and is recorded in the ledger by the
coordinator.
"""

import importlib
from dataclasses import dataclass, field

from ..errors import ProtocolError
from ..wire import Message
from .checkpoint import load_snapshot, save_snapshot

_STEPS = {}


def party_step(name):
    """Register a function as the party-side handler of step ``name``."""

    def register(fn):
        if name in _STEPS and _STEPS[name] is not fn:
            raise RuntimeError(f"step {name!r} registered twice")
        _STEPS[name] = fn
        return fn

    return register


def resolve_step(name):
    """Return the handler of ``name``, importing its module on first use."""
    if name not in _STEPS:
        module = name.rpartition(".")[0]
        if not all(part.isidentifier() for part in module.split(".")):
            raise ProtocolError(f"unknown step {name!r}")
        try:
            importlib.import_module(f"fedscore.{module}")
        except ModuleNotFoundError:
            raise ProtocolError(f"unknown step {name!r}") from None
    try:
        return _STEPS[name]
    except KeyError:
        raise ProtocolError(f"unknown step {name!r}") from None


@dataclass
class PartyContext:
    """What a party step may use: its role, its local configuration and its own state.

    Attributes
    ----------
    role : str
        ``"brand"``, ``"media"`` or a horizontal party's name.
    config : dict
        Local settings that never leave the party: data paths, output folder, options.
    state : dict
        Values kept between the steps of one run (keys, blinded sets, model). Must be
        picklable: Flower starts a fresh process per message and the state travels in
        the node's ``context.state``.
    run_id : str or None
        The run this party is taking part in; set by the first message of the run.
    last_seq : int
        Sequence number of the last message accepted, to refuse replays.
    """

    role: str
    config: dict
    state: dict = field(default_factory=dict)
    run_id: str = None
    last_seq: int = -1
    last_step: str = None
    last_reply: Message = None

    @classmethod
    def restore(cls, role, config):
        """The party as its checkpoint left it, when its config says to resume; else a fresh one.

        ``config["checkpoint"]`` is where the party writes a snapshot after every step
        (:mod:`fedscore.runtime.checkpoint`); ``config["resume"]`` makes it start from it.
        """
        path = config.get("checkpoint")
        snapshot = load_snapshot(path) if path and config.get("resume") else None
        return cls(role=role, config=dict(config), **(snapshot or {}))

    def handle(self, step, run_id, seq, message):
        """Check that a request belongs to this run and comes in order, then run its step.

        With a checkpoint, the request this party answered last may come again (the run
        resumed after another party failed in that round): it gets the same reply, not a
        new one drawn with fresh randomness.
        """
        if self.run_id is None:
            self.run_id = run_id
        elif run_id != self.run_id:
            raise ProtocolError(f"message from another run ({run_id!r}, expected {self.run_id!r})")
        if (seq, step) == (self.last_seq, self.last_step) and self.last_reply is not None:
            return self.last_reply
        if seq <= self.last_seq:
            raise ProtocolError(f"replayed or out-of-order message (sequence {seq} after {self.last_seq})")
        self.last_seq, self.last_step, self.last_reply = seq, step, None
        reply = resolve_step(step)(self, message)
        if reply is None:
            reply = Message()
        if not isinstance(reply, Message):
            raise TypeError(f"step {step!r} must return a Message")
        checkpoint = self.config.get("checkpoint")
        if checkpoint:
            self.last_reply = reply
            save_snapshot(checkpoint, {"state": self.state, "run_id": self.run_id, "last_seq": seq,
                                       "last_step": step, "last_reply": reply})
        return reply
