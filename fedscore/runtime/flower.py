"""Carry the coordinator's requests and the parties' replies over Flower's Message API.

The ServerApp is the coordinator: it finds which SuperNode plays which role, then runs
a job whose every request becomes one Flower ``query`` message to that party's node.
The ClientApp is a party: it unpacks the request, runs the party's step and packs the
reply. Nothing else crosses: a request or reply is exactly the encoded fields of a
:class:`fedscore.wire.Message` (``bytes`` in a ``ConfigRecord``) plus its payload
categories and the step, run id and sequence number in a ``meta`` record.

A party learns its role and local files from its node config in a deployment
(``role``, ``data-path``, ``out-dir``, its identity key ``identity-key`` and the
fingerprints it pins, ``peer-fingerprints`` or ``parties-file``, set by the party's
operator when starting its SuperNode) and from its partition id in a simulation. With
SuperNode authentication, the name a node's key was registered under is its role: a node
claiming another role is refused, so a role is bound to the key its operator registered.
That binds a node to a role for the coordinator only; the parties authenticate each other
by their identity keys (``protocols/channel.md``).
"""

import json
import pickle
import time
from dataclasses import dataclass, field
from logging import INFO
from pathlib import Path

from flwr.app import ConfigRecord, RecordDict
from flwr.app import Message as FlowerMessage
from flwr.clientapp import ClientApp
from flwr.common import log
from flwr.serverapp import ServerApp

from .._version import __version__
from ..errors import FedscoreError, InputError, OptionsError, ProtocolError
from ..ledger import Ledger
from ..wire import Message
from .checkpoint import Journal
from ..protocols import drive
from .coordinator import Coordinator, Reply
from .party import PartyContext

ROLE_QUERY = "query.role"
"""Message type of the discovery query: which role does this node play?"""
STEP_QUERY = "query"
"""Message type of a protocol step request."""

POLL_FIRST, POLL_MAX, POLL_GROWTH = 0.05, 0.5, 1.5
"""Reply polling: start fast (a simulation hop takes well under a second), back off to
two pulls per second. Flower's own ``send_and_receive`` sleeps a fixed 3 s between pulls,
which would add up to 3 s to every hop of a deployment."""
LIVENESS_INTERVAL = 5.0
"""Seconds between checks that the nodes a reply is awaited from are still online, so a
party whose SuperNode died is reported as failed instead of waited for until timeout."""

NODE_CONFIG_KEYS = {"data": "data-path", "out": "out-dir", "identity": "identity-key",
                    "peer_fingerprints": "peer-fingerprints", "parties_file": "parties-file"}
"""Party config key → node config key; other keys pass through unchanged."""
PATH_KEYS = ("data", "out", "identity", "parties_file")
"""Party config keys that hold a file path (made absolute for a SuperNode in another folder)."""

RUN_CONFIG_DEFAULTS = {
    "job": "ping",
    "options": "{}",
    "roles": "brand,media",
    "ledger-path": "ledger.jsonl",
    "result-path": "",
    "run-id": "",
    "timeout": 600.0,
    "require-node-names": True,
    "checkpoint-path": "",
}
"""The ServerApp's run config and its defaults (``[tool.flwr.app.config]`` states the same)."""

_STATE_KEY = "fedscore"


# -- Request / Reply <-> Flower records -------------------------------------------------


def pack_request(request):
    """Turn a coordinator :class:`~fedscore.runtime.coordinator.Request` into Flower records."""
    return RecordDict({
        "fields": ConfigRecord(dict(request.fields)),
        "payloads": ConfigRecord(dict(request.payloads)),
        "meta": ConfigRecord({"step": request.step, "run-id": request.run_id, "seq": request.seq,
                              "job": request.job}),
    })


def unpack_request(content):
    """Return ``(step, run_id, seq, message)`` from a request's records."""
    try:
        meta = content["meta"]
        step, run_id, seq = meta["step"], meta["run-id"], meta["seq"]
        fields, payloads = dict(content["fields"]), dict(content["payloads"])
    except KeyError as exc:
        raise ProtocolError(f"malformed request: no {exc}") from None
    return step, run_id, seq, Message.decode(fields, payloads)


def request_job(content):
    """The job a request's records name (empty if none: the coordinator did not say)."""
    return str(content.get("meta", {}).get("job", ""))


def pack_reply(message):
    fields, payloads = message.encode()
    return RecordDict({"fields": ConfigRecord(fields), "payloads": ConfigRecord(payloads)})


def pack_error(text, options_error=False):
    return RecordDict({"meta": ConfigRecord({"error": text, "options_error": bool(options_error)})})


def unpack_reply(role, reply):
    """Turn what :meth:`FlowerTransport._send` returned into a coordinator :class:`Reply`."""
    if reply is None:
        return None
    if isinstance(reply, str):
        return Reply(role, error=reply)
    if reply.has_error():
        return Reply(role, error=f"its ClientApp failed ({reply.error.reason})")
    content = reply.content
    if "meta" in content and "error" in content["meta"]:
        meta = content["meta"]
        return Reply(role, error=meta["error"], options_error=bool(meta.get("options_error", False)))
    try:
        return Reply(role, dict(content["fields"]), dict(content["payloads"]))
    except KeyError as exc:
        return Reply(role, error=f"malformed reply: no {exc}")


# -- The coordinator's side ---------------------------------------------------------------


class FlowerTransport:
    """The coordinator's transport over a Flower ``Grid``: one query message per request.

    Parameters
    ----------
    grid : flwr.serverapp.Grid
    roles : sequence of str
        The roles the job needs. Construction waits until a node has answered for each.
    timeout : float
        Seconds to wait for the parties to connect and say which role they play.
    require_node_names : bool
        Accept a node's role only if its key was registered under that role's name
        (SuperNode authentication). Off only where there are no keys: a simulation, or
        a deployment started without authentication for debugging.

    Notes
    -----
    Each :meth:`exchange` pushes all its messages at once and then polls for the
    replies, so the parties of one round work concurrently; a round trip costs one
    message hop, whatever the number of parties.
    """

    def __init__(self, grid, roles, *, timeout=600.0, require_node_names=True):
        self.grid = grid
        self.require_node_names = require_node_names
        self.nodes = self._discover(list(roles), timeout)

    @property
    def roles(self):
        return list(self.nodes)

    def exchange(self, requests, timeout=None):
        messages = [
            FlowerMessage(content=pack_request(r), dst_node_id=self.nodes[r.role], message_type=STEP_QUERY)
            for r in requests
        ]
        replies = self._send(messages, timeout)
        return [unpack_reply(r.role, reply) for r, reply in zip(requests, replies)]

    def _discover(self, roles, timeout):
        """Ask every connected node for its role until each needed role has a node."""
        deadline = time.monotonic() + timeout
        asked, claims, problems = set(), {}, []
        delay = POLL_FIRST
        while True:
            nodes = {node.node_id: node.name for node in self.grid.get_nodes() if node.node_id not in asked}
            if nodes:
                asked.update(nodes)
                hellos = [FlowerMessage(content=RecordDict(), dst_node_id=n, message_type=ROLE_QUERY) for n in nodes]
                for node_id, reply in zip(nodes, self._send(hellos, max(deadline - time.monotonic(), 0.0))):
                    self._claim(node_id, nodes[node_id], reply, roles, claims, problems,
                                require_name=self.require_node_names)
            if all(role in claims for role in roles):
                return {role: claims[role] for role in roles}
            if time.monotonic() >= deadline:
                missing = ", ".join(repr(r) for r in roles if r not in claims)
                detail = f" ({'; '.join(problems)})" if problems else ""
                raise FedscoreError(f"no node answered as {missing} within {timeout:g} s{detail}")
            time.sleep(delay)
            delay = min(delay * POLL_GROWTH, POLL_MAX)

    @staticmethod
    def _claim(node_id, name, reply, roles, claims, problems, *, require_name=True):
        """Record the role a node answered with, refusing a claim its registered key contradicts.

        A node without a registered name is not taken at its word when names are
        required: anyone who can reach the SuperLink could otherwise claim to be the brand.
        """
        if reply is None or isinstance(reply, str) or reply.has_error():
            failed = unpack_reply(f"node {node_id}", reply)
            problems.append(f"node {node_id}: {failed.error if failed else 'no answer'}")
            return
        meta = reply.content.get("meta") or {}
        if "role" not in meta or "version" not in meta:
            problems.append(f"node {node_id}: {meta.get('error', 'malformed answer to the role query')}")
            return
        role, version = meta["role"], meta["version"]
        if require_name and not name:
            problems.append(f"node {node_id} claims role {role!r} but has no registered key name (start the "
                            f"SuperLink with --enable-supernode-auth and register each party's key under its role)")
            return
        if name and name != role:
            raise FedscoreError(f"node {node_id} claims role {role!r} but its key is registered as {name!r}")
        if role not in roles:
            return
        if role in claims:
            raise FedscoreError(f"two nodes claim role {role!r} ({claims[role]} and {node_id})")
        if version != __version__:
            raise FedscoreError(
                f"party {role!r} runs fedscore {version} but the coordinator runs {__version__}: "
                "install the same version everywhere"
            )
        claims[role] = node_id

    def _send(self, messages, timeout):
        """Push ``messages``, then poll until every one is answered, its node is gone, or time is up.

        Returns one entry per message: the Flower reply, an error string (not delivered,
        node offline) or ``None`` (no answer in time).
        """
        pushed = set(self.grid.push_messages(messages))
        result = {}
        pending = {}
        for msg in messages:
            if msg.metadata.message_id in pushed:
                pending[msg.metadata.message_id] = msg.metadata.dst_node_id
            else:
                result[msg.metadata.message_id] = "the SuperLink refused the message (too large or malformed)"
        deadline = time.monotonic() + (timeout if timeout is not None else float("inf"))
        next_liveness = time.monotonic() + LIVENESS_INTERVAL
        delay = POLL_FIRST
        while pending:
            for reply in self.grid.pull_messages(list(pending)):
                if pending.pop(reply.metadata.reply_to_message_id, None) is not None:
                    result[reply.metadata.reply_to_message_id] = reply
            now = time.monotonic()
            if not pending or now >= deadline:
                break
            if now >= next_liveness:
                online = set(self.grid.get_node_ids())
                for message_id, node_id in list(pending.items()):
                    if node_id not in online:
                        del pending[message_id]
                        result[message_id] = "its SuperNode went offline"
                next_liveness = now + LIVENESS_INTERVAL
            time.sleep(min(delay, max(deadline - now, 0.0)))
            delay = min(delay * POLL_GROWTH, POLL_MAX)
        return [result.get(msg.metadata.message_id) for msg in messages]


@dataclass(frozen=True)
class RunSettings:
    """What the ServerApp runs: the job, its public options, the roles and where to write.

    In a deployment these come from the run config (``flwr run --run-config``, keys as in
    :data:`RUN_CONFIG_DEFAULTS`); in a simulation they are passed directly.
    """

    job: str
    options: dict = field(default_factory=dict)
    roles: tuple = ("brand", "media")
    ledger_path: str = ""
    result_path: str = ""
    run_id: str = ""
    timeout: float = 600.0
    require_node_names: bool = True
    checkpoint_path: str = ""

    @classmethod
    def from_run_config(cls, run_config):
        cfg = {**RUN_CONFIG_DEFAULTS, **run_config}
        try:
            options = json.loads(cfg["options"])
        except json.JSONDecodeError as exc:
            raise InputError(f"run config 'options' is not JSON ({exc})") from None
        roles = tuple(r.strip() for r in str(cfg["roles"]).split(",") if r.strip())
        return cls(
            job=str(cfg["job"]), options=options, roles=roles, ledger_path=str(cfg["ledger-path"]),
            result_path=str(cfg["result-path"]), run_id=str(cfg["run-id"]), timeout=float(cfg["timeout"]),
            require_node_names=_as_bool(cfg["require-node-names"]), checkpoint_path=str(cfg["checkpoint-path"]),
        )

    def to_run_config(self):
        return {
            "job": self.job, "options": json.dumps(self.options), "roles": ",".join(self.roles),
            "ledger-path": self.ledger_path, "result-path": self.result_path, "run-id": self.run_id,
            "timeout": float(self.timeout), "require-node-names": bool(self.require_node_names),
            "checkpoint-path": self.checkpoint_path,
        }


def _as_bool(value):
    """A run-config flag: TOML gives a bool, ``--run-config`` text may give a string."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    return bool(value)


def run_on_grid(grid, settings):
    """Run ``settings.job`` over ``grid`` as the coordinator; return the job's summary."""
    ledger = Ledger(settings.ledger_path or None, run_id=settings.run_id or None)
    try:
        transport = FlowerTransport(grid, settings.roles, timeout=settings.timeout,
                                    require_node_names=settings.require_node_names)
        if settings.checkpoint_path and not settings.run_id:
            raise InputError("a run with a checkpoint-path needs a run-id of its own in the run config, "
                             "to resume it by later")
        journal = Journal(settings.checkpoint_path, settings.run_id) if settings.checkpoint_path else None
        coordinator = Coordinator(transport, ledger, run_id=settings.run_id or None, timeout=settings.timeout,
                                  journal=journal, job=settings.job)
        return drive(coordinator, settings.job, settings.options)
    finally:
        ledger.close()


def make_server_app(settings=None, on_summary=None):
    """Build the coordinator's ServerApp.

    Parameters
    ----------
    settings : RunSettings, optional
        Fixed settings (simulation); without them each run reads its run config.
    on_summary : callable, optional
        Called with the job's summary when the job succeeds (simulation: the caller
        runs in the same process).

    Notes
    -----
    With ``result_path`` set, the outcome is written there as JSON,
    ``{"status": "completed", "summary": ...}`` or ``{"status": "failed", "error": ...}``,
    so whoever started the run learns the job's own error message, not only Flower's
    run status.
    """
    app = ServerApp()

    @app.main()
    def main(grid, context):
        run = settings or RunSettings.from_run_config(context.run_config)
        try:
            summary = run_on_grid(grid, run)
        except Exception as exc:
            error = str(exc) if isinstance(exc, FedscoreError) else f"internal error: {type(exc).__name__}: {exc}"
            _write_result(run.result_path, {"status": "failed", "error": error})
            raise
        _write_result(run.result_path, {"status": "completed", "summary": summary})
        log(INFO, "fedscore %s finished: %s", run.job, json.dumps(summary))
        if on_summary is not None:
            on_summary(summary)

    return app


def _write_result(path, result):
    if path:
        tmp = Path(f"{path}.tmp")
        tmp.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        tmp.replace(path)


def read_result(path):
    """Return the summary a ServerApp wrote to ``path``, or raise the job's error."""
    try:
        result = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    if result.get("status") != "completed":
        raise FedscoreError(result.get("error", "the job failed"))
    return result["summary"]


# -- The party's side ---------------------------------------------------------------------


def node_config_of(role, config):
    """Node config for a party's SuperNode: ``role`` plus its local config under node config keys.

    Pinned fingerprints become ``"role=FP,role=FP"`` text: node config values are scalars.
    """
    def scalar(value):
        return ",".join(f"{r}={fp}" for r, fp in value.items()) if isinstance(value, dict) else value

    return {"role": role, **{NODE_CONFIG_KEYS.get(k, k): scalar(v) for k, v in config.items()}}


def party_of_node_config(node_config):
    """Inverse of :func:`node_config_of`: ``(role, config)``."""
    if not node_config.get("role"):
        raise InputError("this SuperNode has no 'role' in its node config (--node-config 'role=\"brand\" ...')")
    local = {v: k for k, v in NODE_CONFIG_KEYS.items()}
    return str(node_config["role"]), {local.get(k, k): v for k, v in node_config.items() if k != "role"}


def make_client_app(partitions=None):
    """Build a party's ClientApp.

    Parameters
    ----------
    partitions : sequence of (role, config), optional
        Simulation: node ``partition-id`` *i* plays ``partitions[i]``. Without it the
        role and local config come from the node config.

    Notes
    -----
    Flower may run each message in a fresh process, so the party's
    :class:`~fedscore.runtime.party.PartyContext` (role, config, state, run id, last
    sequence number) is pickled into the node's ``context.state`` after every step.
    That state never leaves the node, which is what makes unpickling it safe.
    """
    app = ClientApp()

    def identity(context):
        if partitions is not None:
            return partitions[int(context.node_config["partition-id"])]
        return party_of_node_config(context.node_config)

    @app.query("role")
    def role(msg, context):
        try:
            name, _ = identity(context)
        except FedscoreError as exc:
            return FlowerMessage(content=pack_error(str(exc)), reply_to=msg)
        meta = ConfigRecord({"role": name, "version": __version__})
        return FlowerMessage(content=RecordDict({"meta": meta}), reply_to=msg)

    @app.query()
    def step(msg, context):
        try:
            party = _load_party(context, identity)
            try:
                content = pack_reply(party.handle(*unpack_request(msg.content), request_job(msg.content)))
            finally:
                context.state[_STATE_KEY] = ConfigRecord({"party": pickle.dumps(party)})
        except FedscoreError as exc:
            content = pack_error(str(exc), isinstance(exc, OptionsError))
        return FlowerMessage(content=content, reply_to=msg)

    return app


def _load_party(context, identity):
    if _STATE_KEY in context.state:
        return pickle.loads(context.state[_STATE_KEY]["party"])
    role, config = identity(context)
    return PartyContext.restore(role, config)
