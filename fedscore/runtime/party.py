"""The party side of every protocol: the state a party keeps between steps, and how a step is run.

A step is a plain function ``step(party, message) -> Message``, listed under its
protocol name in :data:`fedscore.protocols.STEPS`. Steps only touch their own party's
data and state; whatever they return crosses the party boundary and is recorded in the
ledger by the coordinator.
"""

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError, ProtocolError
from ..kit.channel import HOW_TO_PIN, Channels
from ..kit.identity import Identity, load_identity, parse_fingerprints, read_parties_file, write_identity
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
        column names, its consent to weak keys, its identity key and the fingerprints
        it pins for its peers (:data:`IDENTITY_KEY`, :data:`PINS_KEY`,
        :data:`PARTIES_FILE_KEY`).
    state : dict
        Values kept between the steps of one run, one typed object per protocol phase
        (:meth:`phase`). Must be picklable: Flower starts a fresh process per message
        and the state travels in the node's ``context.state``.
    run_id : str or None
        The run this party is taking part in; set by the first message of the run.
    job : str or None
        The job of that run, set by the same message; bound into the sealed channel.
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
    job: str = None

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
            self.channels = Channels(self.role, self.run_id, party_identity(self.role, self.config),
                                     party_pins(self.config), job=self.job)
        return self.channels

    def phase(self, name):
        """The state a protocol phase left, or a :class:`ProtocolError` saying the step came too early."""
        try:
            return self.state[name]
        except KeyError:
            raise ProtocolError(f"step out of order: the {name} phase has not started at the {self.role}") from None

    def handle(self, step, run_id, seq, message, job=""):
        """Check that a request belongs to this run (and job) and comes in order, then run its step.

        With a checkpoint, the request this party answered last may come again (the run
        resumed after another party failed in that round): it gets the same reply, not a
        new one drawn with fresh randomness.
        """
        if self.run_id is None:
            self.run_id = run_id
        elif run_id != self.run_id:
            raise ProtocolError(f"message from another run ({run_id!r}, expected {self.run_id!r})")
        if self.job is None:
            self.job = job
        elif job != self.job:
            raise ProtocolError(f"message of another job ({job!r}, this run is {self.job!r})")
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
                                       "last_step": step, "last_reply": reply, "channels": self.channels,
                                       "job": self.job})
        return reply


# --- Identities -------------------------------------------------------------------------------
# A party signs its channel key with its long-term identity key and accepts a peer's only
# when it is signed by the identity it pinned for that peer (``protocols/channel.md``).

IDENTITY_KEY = "identity"
"""Party config: its identity key file (``fedscore identity init``), or an
:class:`~fedscore.kit.identity.Identity` when every party runs in this process."""
PINS_KEY = "peer_fingerprints"
"""Party config: the fingerprint pinned for each peer, ``{role: fingerprint}`` or ``"role=FP,role=FP"``."""
PARTIES_FILE_KEY = "parties_file"
"""Party config: a JSON or TOML file mapping each role to its fingerprint (read with :data:`PINS_KEY`)."""
IDENTITY_SETTINGS = (IDENTITY_KEY, PINS_KEY, PARTIES_FILE_KEY)
IDENTITY_FILE = "identity.key"
"""A party's identity file in a run's checkpoint folder, when fedscore made it for the run."""


def party_identity(role, config):
    """The identity key a party's config names.

    Raises
    ------
    InputError
        If it names none, or its file is missing, not owner-only or not an identity file.
    """
    value = config.get(IDENTITY_KEY)
    if isinstance(value, Identity):
        return value
    if not value:
        raise InputError(f"the {role} has no identity key to sign its channel key with: make one with "
                         f"`fedscore identity init --out PATH` and give it to the {role} (--identity {role}=PATH, "
                         f"or the node config key identity-key=\"PATH\")")
    return load_identity(value)


def party_pins(config):
    """The fingerprints a party pinned, by role: its own list and its parties file together.

    Raises
    ------
    InputError
        If either is malformed, or they pin two fingerprints for one role.
    """
    pins = parse_fingerprints(config.get(PINS_KEY))
    if config.get(PARTIES_FILE_KEY):
        for role, fp in read_parties_file(config[PARTIES_FILE_KEY]).items():
            if pins.setdefault(role, fp) != fp:
                raise InputError(f"the parties file and --peer-fingerprint pin two fingerprints for the {role}",
                                 path=config[PARTIES_FILE_KEY])
    return pins


def has_identity_settings(config):
    """Whether a party's config says anything about identities (then it must say everything)."""
    return any(config.get(key) not in (None, "", {}) for key in IDENTITY_SETTINGS)


def check_identities(party_configs):
    """Check, before a run, that every party has an identity and pins every other party's.

    The same checks the parties make when their channels connect, made early so that a
    missing pin fails in a second with nothing written, not halfway through a run.

    Raises
    ------
    InputError
        Naming the party, and saying how to fix it.
    """
    for role, config in party_configs.items():
        identity = party_identity(role, config)
        pins = party_pins(config)
        if pins.get(role, identity.fingerprint) != identity.fingerprint:
            raise InputError(f"the {role}'s identity key has fingerprint {identity.fingerprint}, but the "
                             f"fingerprint pinned for the {role} is {pins[role]}: a wrong key file, or a wrong pin")
        for peer in party_configs:
            if peer != role and peer not in pins:
                raise InputError(f"the {role} has no fingerprint pinned for the {peer}, and fedscore refuses a "
                                 f"channel to an unauthenticated peer: {HOW_TO_PIN.format(role=peer)}")


def pin_every_party(party_configs, files=None):
    """Give every party an identity and pin each party's at every party: one user plays them all.

    For runs where every party is on this machine (the local engine, the simulation and
    ``--deployment``): whoever runs them is every party, so fedscore makes the keys and
    tells each party the others' fingerprints itself.

    Parameters
    ----------
    party_configs : dict of role to dict
    files : dict of role to path, optional
        Where each party's identity is kept (owner-only), so that a resumed run finds
        the same keys; an existing file is reused. Without it, the identities live in
        memory (every party in this process).

    Returns
    -------
    dict of role to dict
        The configs with :data:`IDENTITY_KEY` and :data:`PINS_KEY` set.
    """
    identities, where = {}, {}
    for role in party_configs:
        if files is None:
            identities[role] = where[role] = Identity.generate()
            continue
        path = Path(files[role])
        identities[role] = load_identity(path) if path.exists() else Identity.generate()
        if not path.exists():
            write_identity(identities[role], path)
        where[role] = str(path)
    pins = {role: identity.fingerprint for role, identity in identities.items()}
    return {role: {**config, IDENTITY_KEY: where[role], PINS_KEY: dict(pins)} for role, config in party_configs.items()}
