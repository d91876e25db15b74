"""The party side of every protocol: the state a party keeps between steps, and how a step is run.

A step is a plain function ``step(party, message) -> Message``, listed under its
protocol name in :data:`fedscore.protocols.STEPS`. Steps only touch their own party's
data and state; whatever they return crosses the party boundary and is recorded in the
ledger by the coordinator.
"""

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ProtocolError
from ..kit.channel import Channels
from ..protocols import step_of
from ..wire import Message
from .checkpoint import load_snapshot, save_snapshot


@dataclass
class PartyContext:
    """What a party step may use: its role, its local configuration and its own state.

    Attributes
    ----------
    role : str
        ``"brand"``, ``"media"`` or a horizontal party's name.
    config : dict
        Local settings that never leave the party: data paths, output folder, its own
        column names, its consent to weak keys.
    state : dict
        Values kept between the steps of one run, one typed object per protocol phase
        (:meth:`phase`). Must be picklable: Flower starts a fresh process per message
        and the state travels in the node's ``context.state``.
    run_id : str or None
        The run this party is taking part in; set by the first message of the run.
    last_seq : int
        Sequence number of the last message accepted, to refuse replays.
    channels : fedscore.kit.channel.Channels or None
        This party's sealed channels to its peers, made on first use (:attr:`channel`).
    """

    role: str
    config: dict
    state: dict = field(default_factory=dict)
    run_id: str = None
    last_seq: int = -1
    last_step: str = None
    last_reply: Message = None
    channels: Channels = None

    @classmethod
    def restore(cls, role, config):
        """The party as its checkpoint left it, when its config says to resume; else a fresh one.

        ``config["checkpoint"]`` is where the party writes a snapshot after every step
        (:mod:`fedscore.runtime.checkpoint`); ``config["resume"]`` makes it start from it.
        """
        path = config.get("checkpoint")
        snapshot = load_snapshot(path) if path and config.get("resume") else None
        return cls(role=role, config=dict(config), **(snapshot or {}))

    @property
    def out(self):
        """This party's own output folder."""
        return Path(self.config["out"])

    @property
    def channel(self):
        """This party's sealed channels for the run (made on first use)."""
        if self.channels is None:
            self.channels = Channels(self.role, self.run_id)
        return self.channels

    def phase(self, name):
        """The state a protocol phase left, or a :class:`ProtocolError` saying the step came too early."""
        try:
            return self.state[name]
        except KeyError:
            raise ProtocolError(f"step out of order: the {name} phase has not started at the {self.role}") from None

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
        function = step_of(step, self.role)
        self.last_seq, self.last_step, self.last_reply = seq, step, None
        reply = function(self, message)
        if reply is None:
            reply = Message()
        if not isinstance(reply, Message):
            raise TypeError(f"step {step!r} must return a Message")
        checkpoint = self.config.get("checkpoint")
        if checkpoint:
            self.last_reply = reply
            save_snapshot(checkpoint, {"state": self.state, "run_id": self.run_id, "last_seq": seq,
                                       "last_step": step, "last_reply": reply, "channels": self.channels})
        return reply
