"""The coordinator: drives a protocol's steps and relays what parties send each other.

This is the one place where messages cross a party boundary: :meth:`Coordinator.exchange`
records every request it sends and every reply it receives in the ledger before anything
else sees them. The coordinator holds no decryption key; whatever a party sends to another
passes through it and therefore must be a ciphertext, blinded identifiers, a masked value,
a size or an aggregate that the protocol's spec releases.
"""

import hashlib
import uuid
from dataclasses import dataclass

from ..errors import PartyError, PartyOptionsError
from ..ledger import COORDINATOR, Payload
from ..wire import Message


@dataclass(frozen=True)
class Request:
    role: str
    step: str
    run_id: str
    seq: int
    fields: dict
    payloads: dict
    job: str = ""


@dataclass(frozen=True)
class Reply:
    role: str
    fields: dict = None
    payloads: dict = None
    error: str = None
    options_error: bool = False
    """The party refused the run's options (:class:`~fedscore.errors.OptionsError`): no resume can fix it."""


class Coordinator:
    """Send step requests to parties and collect their replies, recording each hop.

    Parameters
    ----------
    transport : object
        Has ``roles`` (the connected parties' roles) and ``exchange(requests, timeout)``
        returning one :class:`Reply` per request, in order.
    ledger : fedscore.ledger.Ledger
    run_id : str, optional
        Binds every message to this run; parties refuse messages of another run.
    timeout : float
        Seconds to wait for a party before the run stops with an error naming it.
    journal : fedscore.runtime.checkpoint.Journal, optional
        Records every completed exchange; while it holds exchanges of an earlier
        attempt of this run, they are answered from it (a resumed run).
    job : str, optional
        The job the run runs: sent with every request, and bound by the parties into
        their sealed channel like the run id.
    progress : fedscore.runtime.progress.ConsoleProgress, optional
        Told each exchange and each pass of a protocol's loop, to show on the console.

    Attributes
    ----------
    random_seed : int
        Seed for the coordinator's own random choices, the same for every attempt of
        a run.
    dropouts : list of dict
        Parties left out of an ``exchange(..., allow_missing=True)``: role, step,
        sequence number and the reason (its error or the timeout).
    """

    def __init__(self, transport, ledger, run_id=None, timeout=600.0, journal=None, job=None, progress=None):
        self.transport = transport
        self.ledger = ledger
        self.run_id = run_id or uuid.uuid4().hex
        self.timeout = timeout
        self.journal = journal
        self.job = job or ""
        self.progress = progress
        # The coordinator's own random choices (initial centroid rows, a shared seed) are
        # public parameters it sends to the parties; drawing them from the run id makes a
        # resumed run, which has the same id, make the same choices again.
        self.random_seed = int.from_bytes(hashlib.blake2b(self.run_id.encode("utf-8"), digest_size=8).digest(), "little")
        self.dropouts = []
        self._seq = 0

    @property
    def roles(self):
        return list(self.transport.roles)

    def advance(self, what, done, total):
        """A protocol's loop begins pass ``done`` of at most ``total`` ("epoch", 3, 20): for the console only."""
        if self.progress is not None:
            self.progress.advance(what, done, total)

    def call(self, role, step, message=None):
        """Ask one party to run ``step`` on ``message``; return its reply."""
        return self.exchange({role: (step, message)})[role]

    def exchange(self, requests, allow_missing=False):
        """Send several requests at once (one round trip); return replies by role.

        Parameters
        ----------
        requests : dict of role to (step, Message or None)
        allow_missing : bool
            If true, a party that fails or does not answer in time is left out of the
            result instead of stopping the run, and is recorded in :attr:`dropouts`
            (protocols that tolerate dropouts decide themselves whether enough answered).
        """
        if self.progress is not None:
            self.progress.step([step for step, _ in requests.values()])
        outgoing = []
        for role, (step, message) in requests.items():
            encoded, payloads = (message or Message()).encode()
            outgoing.append(Request(role, step, self.run_id, self._seq, encoded, payloads, self.job))
            self._seq += 1
        if self.journal is not None and self.journal.replaying:
            # Answered in an earlier attempt of this run: nothing crosses again, and the
            # ledger (carried over from that attempt) already holds these hops.
            result = self._collect(outgoing, self.journal.replay(outgoing), allow_missing, record=False)
        else:
            for request in outgoing:
                self._record(COORDINATOR, request.role, request.step, request.fields, request.payloads)
            replies = self.transport.exchange(outgoing, timeout=self.timeout)
            result = self._collect(outgoing, replies, allow_missing, record=True)
            if self.journal is not None:
                self.journal.record(outgoing, replies)
        return result

    def _collect(self, outgoing, replies, allow_missing, *, record):
        """Decode the replies by role; stop at a failed party unless ``allow_missing``."""
        result = {}
        for request, reply in zip(outgoing, replies):
            if record and reply is not None and reply.error is not None:
                self._record_error(request.role, request.step, reply.error)
            if reply is None or reply.error is not None:
                reason = reply.error if reply is not None else f"no answer to {request.step!r} within {self.timeout:g} s"
                if not allow_missing:
                    refused = reply is not None and reply.options_error
                    raise (PartyOptionsError if refused else PartyError)(request.role, reason)
                self.dropouts.append({"role": request.role, "step": request.step, "seq": request.seq, "reason": reason})
                continue
            if record:
                self._record(request.role, COORDINATOR, request.step, reply.fields, reply.payloads)
            result[request.role] = Message.decode(reply.fields, reply.payloads)
        return result

    def _record_error(self, role, step, error):
        """An error reply crosses the boundary too: record its size, as a control message."""
        self.ledger.record(sender=role, receiver=COORDINATOR, step=step,
                           fields={"error": (Payload.CONTROL, len(str(error).encode("utf-8")))})

    def _record(self, sender, receiver, step, encoded, payloads):
        fields = {name: (Payload(payloads[name]), len(data)) for name, data in encoded.items()}
        self.ledger.record(sender=sender, receiver=receiver, step=step, fields=fields)
