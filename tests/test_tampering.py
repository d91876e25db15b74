"""A coordinator that tampers with what it relays between parties: every protocol that seals stops it.

The coordinator may be run by one of the parties, so it is the adversary here: a
transport wrapper around the in-process transport rewrites the requests it relays. It
swaps a party's channel key for its own (validly formed and signed, by its own
identity), replays an earlier sealed payload (an earlier round's, an earlier step's, or
an earlier run's where a channel carries one payload per run), reorders two sealed
payloads in flight together, and drops one. Each must stop the run with an error
naming what happened.
"""

import copy
import dataclasses
import re
import stat

import numpy as np
import pandas as pd
import pytest

from fedscore.errors import CryptoError, InputError, PartyError
from fedscore.kit.channel import OFFER_MAGIC, SEALED_MAGIC, Channels, offer_header, sealed_header
from fedscore.kit.identity import Identity, load_identity
from fedscore.ledger import Ledger
from fedscore.protocols import JOBS, Job, drive
from fedscore.runtime import checkpoint
from fedscore.runtime.coordinator import Coordinator
from fedscore.runtime.local import LocalTransport
from fedscore.runtime.party import IDENTITY_FILE, pin_every_party
from fedscore.runtime.runner import run_job
from fedscore.wire import Field, Message, ciphertext, public

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


# --- tiny tables for every protocol that seals ---------------------------------------------------

def _vertical(rows=160):
    rng = np.random.default_rng(0)
    ids = [f"u{i:04d}" for i in range(rows)]
    signal = rng.normal(size=rows)
    labels = np.where(rng.random(rows) < 1 / (1 + np.exp(-2 * signal)), 1, 0).astype(object)
    labels[:20] = ""  # users to score
    brand = pd.DataFrame({"uid": ids, "spend": (signal + rng.normal(size=rows)).round(3), "y": labels})
    media = pd.DataFrame({"uid": ids, "visits": (signal + rng.normal(size=rows)).round(3),
                          "clicks": rng.normal(size=rows).round(3)})
    seed = pd.DataFrame({"uid": [ids[i] for i in np.argsort(-signal)[:60]]})
    return brand, media, seed


def _horizontal(parties=3, rows=40):
    rng = np.random.default_rng(1)
    return {f"store{p}": pd.DataFrame({"id": [f"s{p}-{i}" for i in range(rows)], "age": rng.normal(size=rows).round(3),
                                       "spend": rng.normal(size=rows).round(3)}) for p in range(parties)}


BRAND, MEDIA, SEED = _vertical()


@dataclasses.dataclass(frozen=True)
class Case:
    job: str
    tables: dict
    options: dict
    replay: str
    """Which earlier payload a replay sends: ``"round"`` (the same step's, an earlier round),
    ``"step"`` (an earlier step's on the same channel) or ``"run"`` (where a channel carries one
    payload per run: the same payload of an earlier run between the same parties)."""
    reorder: str = None
    """Which two payloads in flight together are swapped: ``"channel"`` (two on one channel, in
    one request) or ``"exchange"`` (two of one round, to different parties); None where payloads
    cross one at a time."""
    drop: tuple = ("", None)
    """(step or its start, field or None): the first sealed payload dropped that matches."""
    own: dict = dataclasses.field(default_factory=dict)
    """Options each party sets in its own configuration too (the horizontal jobs' privacy options)."""


PROTOCOLS = {
    "psi_both": Case("psi", {"brand": BRAND, "media": MEDIA}, {"id_column": "uid", "min_intersection": 10},
                     replay="run", reorder="exchange"),
    "psi_labelled": Case("psi", {"brand": SEED, "media": MEDIA},
                         {"id_column": "uid", "mode": "labelled", "min_intersection": 10}, replay="run"),
    "lookalike": Case("lookalike", {"brand": SEED, "media": MEDIA}, {"id_column": "uid", "min_seed": 20},
                      replay="step", drop=("lookalike.", None)),
    "propensity": Case("propensity", {"brand": BRAND, "media": MEDIA},
                       {"id_column": "uid", "label_column": "y", "epochs": 2, "min_intersection": 10},
                       replay="round", reorder="exchange", drop=("propensity.", None)),
    "segment": Case("segment", {"brand": BRAND.drop(columns="y"), "media": MEDIA}, {"id_column": "uid", "k": 2},
                    replay="round", reorder="channel", drop=("segment.mask_distances", "labels")),
    "horizontal_kmeans": Case("horizontal_kmeans", _horizontal(),
                              {"id_column": "id", "k": 2, "max_iter": 2, "min_proposal_size": 5},
                              replay="run", reorder="exchange", own={"max_iter": 2, "min_proposal_size": 5}),
}


def _configs(tmp_path, case):
    configs = {}
    for role, table in case.tables.items():
        table.to_csv(tmp_path / f"{role}.csv", index=False)
        (tmp_path / role).mkdir(exist_ok=True)
        configs[role] = {"data": str(tmp_path / f"{role}.csv"), "out": str(tmp_path / role), "allow_weak_keys": True,
                         **case.own}
    return pin_every_party(configs)


# --- the tampering coordinator ------------------------------------------------------------------

def _sealed(value):
    return isinstance(value, bytes) and value.startswith(SEALED_MAGIC)


def _offer(value):
    return isinstance(value, bytes) and value.startswith(OFFER_MAGIC)


def _kind_of_step(step):
    """A step's name without its round (``propensity.quantiles.3`` -> ``propensity.quantiles``)."""
    return step.rstrip("0123456789").rstrip(".")


class Tampering:
    """A coordinator's transport that rewrites the requests it relays, once, in one way.

    Parameters
    ----------
    inner : transport
        What really carries the requests (in-process here, Flower's grid in a simulation).
    kind : {None, "swap", "replay", "reorder", "drop"}
        None only records what crossed.
    case : Case, optional
        Which replay, reorder or drop the protocol allows.
    earlier : list of dict, optional
        The sealed payloads an earlier run relayed (its :attr:`relayed`), for ``case.replay == "run"``.

    Attributes
    ----------
    relayed : list of dict
        Every sealed payload relayed: its clear header and its bytes.
    offers : dict of role to bytes
        The parties' own signed channel keys, as they sent them.
    done : str or None
        What was done, once it was.
    most_in_flight : int
        The most sealed payloads the coordinator held at once (sent by a party, not yet
        relayed to their receiver): what a coordinator could reorder.
    """

    def __init__(self, inner, kind=None, *, case=None, earlier=None, target=None):
        self.inner, self.kind, self.case, self.earlier, self.target = inner, kind, case, earlier or [], target
        self.relayed, self.offers, self.done = [], {}, None
        self.held, self.most_in_flight = set(), 0
        self.attacker = Identity.generate()  # the coordinator's own identity: no party pinned it
        self.attacker_channels = []

    @property
    def roles(self):
        return self.inner.roles

    def exchange(self, requests, timeout=None):
        messages = [dict(Message.decode(r.fields, r.payloads)._fields) for r in requests]
        for _, _, _, value in self._items(messages):
            if _offer(value):
                self.offers.setdefault(offer_header(value)["role"], value)
        if self.done is None and self.kind is not None:
            getattr(self, f"_{self.kind}")(requests, messages)
        for _, _, _, value in self._items(messages):
            if _sealed(value):
                self.relayed.append({**sealed_header(value), "bytes": value})
                self.held.discard(value)
        rewritten = []
        for request, message in zip(requests, messages):
            fields, payloads = Message(**message).encode()
            rewritten.append(dataclasses.replace(request, fields=fields, payloads=payloads))
        replies = self.inner.exchange(rewritten, timeout)
        answered = [dict(Message.decode(r.fields, r.payloads)._fields) for r in replies if r and r.error is None]
        self.held.update(value for _, _, _, value in self._items(answered) if _sealed(value))
        self.most_in_flight = max(self.most_in_flight, len(self.held))
        return replies

    @staticmethod
    def _items(messages):
        """(message index, field name, list index or None, value) of every sealed payload or offer."""
        for i, message in enumerate(messages):
            for name, field in message.items():
                values = field.value if isinstance(field.value, list) else [field.value]
                for j, value in enumerate(values):
                    if _sealed(value) or _offer(value):
                        yield i, name, j if isinstance(field.value, list) else None, value

    @staticmethod
    def _put(messages, i, name, j, value):
        field = messages[i][name]
        if j is None:
            messages[i][name] = Field(field.payload, value)
        else:
            messages[i][name] = Field(field.payload, [value if n == j else v for n, v in enumerate(field.value)])

    def _swap(self, requests, messages):
        """Put the coordinator's own channel key, signed by its own identity, in place of a peer's."""
        for i, name, j, value in self._items(messages):
            claimed = offer_header(value)["role"] if _offer(value) else None
            if claimed and claimed != requests[i].role and self.target in (None, claimed):
                pins = {role: offer_header(offer)["fingerprint"] for role, offer in self.offers.items()
                        if role != claimed}
                own = Channels(claimed, requests[i].run_id, self.attacker, pins, job=requests[i].job)
                self.attacker_channels.append(own)
                self._put(messages, i, name, j, own.offer)
                self.done = f"swapped the {claimed}'s channel key sent to the {requests[i].role}"
                return

    def _replay(self, requests, messages):
        for i, name, j, value in self._items(messages):
            if not _sealed(value):
                continue
            now = sealed_header(value)
            earlier = [p for p in (self.earlier if self.case.replay == "run" else self.relayed)
                       if (p["sender"], p["receiver"]) == (now["sender"], now["receiver"])]
            if self.case.replay != "step":
                earlier = [p for p in earlier if _kind_of_step(p["step"]) == _kind_of_step(now["step"])]
            if earlier:
                self._put(messages, i, name, j, earlier[-1]["bytes"])
                self.done = f"replayed {earlier[-1]['step']} #{earlier[-1]['seq']} at {now['step']}"
                return

    def _reorder(self, requests, messages):
        sealed = [item for item in self._items(messages) if _sealed(item[3])]
        if self.case.reorder == "channel":
            sealed = [item for item in sealed if sum(other[0] == item[0] for other in sealed) > 1]
        if self.case.reorder is None or len(sealed) < 2:
            return
        (i, a, ja, first), (k, b, jb, second) = sealed[:2]
        self._put(messages, i, a, ja, second)
        self._put(messages, k, b, jb, first)
        self.done = f"swapped {a} to the {requests[i].role} and {b} to the {requests[k].role}"

    def _drop(self, requests, messages):
        for i, name, j, value in self._items(messages):
            step, field = self.case.drop
            if _sealed(value) and requests[i].step.startswith(step) and field in (None, name):
                assert j is None
                del messages[i][name]
                self.done = f"dropped {name} to the {requests[i].role} at {requests[i].step}"
                return

    def attacker_reads(self):
        """How many relayed payloads the coordinator opens with the channel keys it swapped in."""
        opened = 0
        for own in self.attacker_channels:
            for payload in self.relayed:
                if payload["receiver"] != own.role or payload["sender"] not in self.offers:
                    continue
                channel = copy.deepcopy(own)
                channel.connect(payload["sender"], self.offers[payload["sender"]])
                channel._peers[payload["sender"]]["received"] = payload["seq"]
                try:
                    channel.open(payload["sender"], payload["step"], payload["bytes"], round=payload["round"])
                    opened += 1
                except CryptoError:
                    pass
        return opened


def _run(tmp_path, name, kind=None, *, configs=None, earlier=None, target=None):
    case = PROTOCOLS[name]
    configs = configs or _configs(tmp_path, case)
    transport = Tampering(LocalTransport(configs), kind, case=case, earlier=earlier, target=target)
    coordinator = Coordinator(transport, Ledger(), timeout=60.0, job=case.job)
    try:
        return transport, drive(coordinator, case.job, case.options)
    except PartyError as exc:
        return transport, exc


def test_every_protocol_runs_untampered(tmp_path):
    """The baseline: with nothing rewritten every protocol completes, its payloads bound to its run and job."""
    for name, case in PROTOCOLS.items():
        (tmp_path / name).mkdir()
        transport, result = _run(tmp_path / name, name)
        assert isinstance(result, dict), (name, result)
        assert transport.relayed and {p["job"] for p in transport.relayed} == {case.job}, name
        assert len({p["run_id"] for p in transport.relayed}) == 1


@pytest.mark.parametrize("name", sorted(PROTOCOLS))
def test_a_swapped_channel_key_stops_the_run(tmp_path, name):
    transport, result = _run(tmp_path, name, "swap")
    assert transport.done, name
    assert isinstance(result, PartyError), (transport.done, result)
    assert re.search(r"channel key is signed by identity .*, not by the \w+'s pinned identity .*substituted",
                     str(result)), str(result)
    assert transport.attacker_reads() == 0


@pytest.mark.parametrize("name", sorted(PROTOCOLS))
def test_a_replayed_sealed_payload_stops_the_run(tmp_path, name):
    case, earlier = PROTOCOLS[name], None
    configs = _configs(tmp_path, case)
    if case.replay == "run":  # the same parties ran the same job before: replay that run's payload
        clean, summary = _run(tmp_path, name, configs=configs)
        assert isinstance(summary, dict)
        earlier = clean.relayed
    transport, result = _run(tmp_path, name, "replay", configs=configs, earlier=earlier)
    assert transport.done, name
    assert isinstance(result, PartyError), (transport.done, result)
    assert "replayed" in str(result), str(result)


@pytest.mark.parametrize("name", sorted(n for n, case in PROTOCOLS.items() if case.reorder))
def test_two_reordered_sealed_payloads_stop_the_run(tmp_path, name):
    transport, result = _run(tmp_path, name, "reorder")
    assert transport.done, name
    assert isinstance(result, PartyError), (transport.done, result)
    assert re.search(r"reordered|reflected|misdirected", str(result)), str(result)


@pytest.mark.parametrize("name", sorted(n for n, case in PROTOCOLS.items() if not case.reorder))
def test_where_payloads_cross_one_at_a_time_there_is_nothing_to_reorder(tmp_path, name):
    """The premise of leaving these protocols out above, checked on their traffic: each party seals
    its next payload only after the peer opened the last, so the coordinator never holds two."""
    transport, result = _run(tmp_path, name, "reorder")
    assert isinstance(result, dict) and transport.done is None
    assert transport.most_in_flight == 1


@pytest.mark.parametrize("name", sorted(PROTOCOLS))
def test_a_dropped_sealed_payload_stops_the_run(tmp_path, name):
    transport, result = _run(tmp_path, name, "drop")
    assert transport.done, name
    assert isinstance(result, PartyError), (transport.done, result)
    assert re.search(r"was dropped|has no field|did not come", str(result)), str(result)


def test_a_dropped_payload_a_step_can_do_without_is_named_at_the_next_one(tmp_path):
    """Segment's owner sends its labels only when they changed: dropped, the next payload tells."""
    _, result = _run(tmp_path, "segment", "drop")
    assert "payload #3" in str(result) and "#2 was expected" in str(result) and "was dropped" in str(result)


@pytest.mark.parametrize("target", ["store1", "store0"])
def test_a_coordinator_that_swaps_keys_never_gets_the_shared_secret_key(tmp_path, target):
    """Horizontal KMeans: the leader (store0) seals the shared CKKS secret key to each party. A
    coordinator that swaps a party's channel key is refused by the leader before it seals; one
    that swaps the leader's key (to hand the party a key of its own) is refused by the party."""
    transport, result = _run(tmp_path, "horizontal_kmeans", "swap", target=target)
    assert isinstance(result, PartyError) and f"not by the {target}'s pinned identity" in str(result)
    assert result.role == ("store0" if target == "store1" else "store1")
    assert transport.attacker_reads() == 0
    sealed_keys = [p for p in transport.relayed if p["step"] == "horizontal_kmeans.key"]
    assert sealed_keys == [] if target == "store1" else {p["receiver"] for p in sealed_keys} == {"store1", "store2"}


@pytest.mark.integration
def test_a_swapped_channel_key_stops_a_run_in_flowers_simulation(tmp_path):
    """The same coordinator as a Flower ServerApp, the parties as simulated ClientApps reading their
    identity keys from files: the brand refuses the coordinator's key there too."""
    from flwr.serverapp import ServerApp
    from flwr.simulation import run_simulation

    from fedscore.runtime.flower import FlowerTransport, make_client_app
    from fedscore.runtime.simulation import CLIENT_RESOURCES

    case = PROTOCOLS["psi_both"]
    configs = {}
    for role, table in case.tables.items():
        table.to_csv(tmp_path / f"{role}.csv", index=False)
        (tmp_path / role).mkdir()
        configs[role] = {"data": str(tmp_path / f"{role}.csv"), "out": str(tmp_path / role)}
    configs = pin_every_party(configs, files={role: tmp_path / "keys" / f"{role}.key" for role in configs})
    outcome = []
    app = ServerApp()

    @app.main()
    def main(grid, context):
        transport = Tampering(FlowerTransport(grid, list(configs), timeout=60.0, require_node_names=False), "swap",
                              case=case)
        coordinator = Coordinator(transport, Ledger(), run_id="simulated-tampering", timeout=60.0, job=case.job)
        try:
            outcome.append(drive(coordinator, case.job, case.options))
        except PartyError as exc:
            outcome.append(exc)
        outcome.append(transport)

    run_simulation(app, make_client_app([(role, configs[role]) for role in configs]), num_supernodes=len(configs),
                   backend_config={"client_resources": dict(CLIENT_RESOURCES),
                                   "init_args": {"num_cpus": len(configs), "logging_level": "ERROR",
                                                 "log_to_driver": False}})
    result, transport = outcome
    assert transport.done and isinstance(result, PartyError) and result.role == "brand"
    assert "not by the media's pinned identity" in str(result) and transport.attacker_reads() == 0


# --- identities across a resumed run ------------------------------------------------------------

def _offer_step(party, msg):
    if party.role in party.config.get("fail_once", []):
        party.config["fail_once"].remove(party.role)
        raise InputError("cannot read the next chunk", path="media.csv")
    return Message(channel_key=public(party.channel.offer))


def _connect_step(party, msg):
    peer = "media" if party.role == "brand" else "brand"
    party.channel.connect(peer, msg["channel_key"])
    return Message(sealed=ciphertext(party.channel.seal(peer, "tests.hello", b"hello")))


def _late_channel(coordinator, options):
    """A job whose media makes its channel key a round after the brand: the brand pinned the media's
    identity before the media used it, so a resumed run must give the media the same key."""
    brand = coordinator.call("brand", "tests.offer")
    media = coordinator.call("media", "tests.offer")
    coordinator.exchange({"brand": ("tests.connect", Message(channel_key=public(media["channel_key"]))),
                          "media": ("tests.connect", Message(channel_key=public(brand["channel_key"])))})
    return {"job": "tests.late_channel"}


@pytest.fixture
def late_channel_job(register_step, monkeypatch):
    register_step("tests.offer", _offer_step)
    register_step("tests.connect", _connect_step)
    monkeypatch.setitem(JOBS, "tests.late_channel", Job(_late_channel, JOBS["ping"].options, "ping.md"))
    return "tests.late_channel"


def test_identities_made_for_a_run_are_owner_only_kept_for_resume_and_deleted_with_it(tmp_path, late_channel_job):
    fail_once = ["media"]
    parties = {"brand": {}, "media": {"fail_once": fail_once}}
    out = tmp_path / "out"
    with pytest.raises(PartyError, match="party 'media' failed: .*cannot read the next chunk"):
        run_job(late_channel_job, {}, parties, out)
    folder = checkpoint.checkpoint_dir(out)
    fingerprints = {}
    for role in parties:
        path = folder / role / IDENTITY_FILE
        assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        fingerprints[role] = load_identity(path).fingerprint
    assert len(set(fingerprints.values())) == 2
    run_job(late_channel_job, {}, parties, out, resume=True)
    assert not folder.exists()  # the keys went with the checkpoint


def test_a_resumed_run_with_other_identities_is_refused(tmp_path, late_channel_job):
    """The control of the test above: had the media's key not been kept, the brand would refuse its new one."""
    parties = {"brand": {}, "media": {"fail_once": ["media"]}}
    out = tmp_path / "out"
    with pytest.raises(PartyError):
        run_job(late_channel_job, {}, parties, out)
    (checkpoint.checkpoint_dir(out) / "media" / IDENTITY_FILE).unlink()
    with pytest.raises(PartyError, match="party 'brand' failed: .*not by the media's pinned identity"):
        run_job(late_channel_job, {}, parties, out, resume=True)
