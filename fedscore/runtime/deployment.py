"""A real Flower deployment on this machine: one SuperLink and one SuperNode per party.

Everything listens on loopback on free ports, with TLS (a throw-away certificate
authority and a server certificate for ``127.0.0.1``/``localhost``) and SuperNode
authentication (one key pair per party, each public key registered under the party's
role, so the ServerApp can check that a node claiming a role holds that role's key).
Flower's state, the SuperLink connection and every generated key live in a temporary
``FLWR_HOME`` that is deleted afterwards, and every process started here runs in its own
process group and is stopped on exit, with the processes Flower spawned from it.

This is what ``--deployment`` runs, and what a team can read to deploy across machines:
the commands are the ones each party and the coordinator would run. A party's SuperNode
is Flower's ``flower-supernode`` started through :mod:`fedscore.runtime.supernode`
(same arguments), which shortens the waits between its pulls: polling, not computing,
is most of a message hop's time otherwise.
"""

import contextlib
import datetime
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import tomli_w
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .._version import __version__
from ..errors import FedscoreError, PartyError
from .flower import PATH_KEYS, RUN_CONFIG_DEFAULTS, RunSettings, node_config_of, read_result

CONNECTION = "fedscore-local"
"""Name of the SuperLink connection written into the temporary ``FLWR_HOME``."""
LOOPBACK = "127.0.0.1"
EXECUTABLES = ("flower-superlink", "flower-supernode", "flwr")
STARTUP_TIMEOUT = 60.0
"""Seconds for the SuperLink to listen and for a submitted run to start."""
STATUS_POLL = 0.5
"""Seconds between reads of the run status once its end is near (each read is one
``flwr ls`` process)."""
STATUS_POLL_WAITING = 10.0
"""Seconds between reads of the run status while the app's result file is not written."""
FILE_POLL = 0.2
"""Seconds between looks for the result file and at the processes' health."""
STOP_GRACE = 5.0
"""Seconds a process gets to exit after SIGTERM before it is killed."""
TASK_POLL = 0.25
"""Seconds between a SuperExec's looks for an app to start (``FLWR_SUPEREXEC_TASK_POLL_INTERVAL``).
Flower's default, 1 s, is waited on every message: each message runs in a fresh
ClientApp process that the node's SuperExec starts when it sees the task. Each look is a
local HTTP request of a few milliseconds of CPU: the three SuperExecs of a local
deployment at 0.2 s cost about 0.08 of a core more than at 1 s, measured idle."""
AUTH_CURVE = ec.SECP384R1
"""SuperNode keys: ``flwr supernode register`` takes NIST curves; P-384 is the one Flower documents."""
TLS_CURVE = ec.SECP256R1
TLS_VALIDITY = datetime.timedelta(days=1)
"""The certificates only need to outlive one local run."""


SUPERNODE_MODULE = "fedscore.runtime.supernode"
"""``flower-supernode`` with shorter waits between pulls (see that module)."""
SUPERNODE_PREFIX = "supernode-"
"""Process name of a party's SuperNode, before the party's role."""
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
"""Flower colours its log lines; error messages quote them without the colour codes."""


def flower_environment(home, short_waits=True):
    """The environment of every process started here, and of those Flower starts from them.

    Besides ``FLWR_HOME``: no telemetry and no update check (no network calls of
    their own), this interpreter's folder first on ``PATH`` and, with ``short_waits``,
    :data:`TASK_POLL` for the SuperExecs. A SuperNode starts ``flwr-clientapp`` by name
    for every message, and a version manager's shim found first on ``PATH`` costs a
    process or two more each time.
    """
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = {**os.environ, "FLWR_HOME": str(home), "FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1",
           "PATH": path}
    if short_waits:
        env["FLWR_SUPEREXEC_TASK_POLL_INTERVAL"] = str(TASK_POLL)
    return env


def flower_executables():
    """Return the paths of Flower's command-line tools, preferring this interpreter's."""
    found = {}
    for name in EXECUTABLES:
        beside = Path(sys.executable).with_name(name)
        found[name] = str(beside) if beside.is_file() else shutil.which(name)
    missing = [name for name, path in found.items() if path is None]
    if missing:
        raise FedscoreError(f"Flower's {', '.join(missing)} not found: install flwr in this environment")
    return found


class LocalDeployment:
    """Start a SuperLink and one SuperNode per node config; stop them all on exit.

    Parameters
    ----------
    nodes : dict of str to dict
        SuperNode name (the party's role) → node config.
    secure : bool
        TLS and SuperNode authentication (the default). ``False`` runs everything
        unencrypted and unauthenticated, for debugging only.
    short_waits : bool
        SuperNodes through :mod:`fedscore.runtime.supernode` and SuperExecs that look
        for work every :data:`TASK_POLL` s (the default). ``False`` keeps Flower's own
        waits, to measure what they cost.

    Examples
    --------
    >>> with LocalDeployment({"brand": {"role": "brand"}, "media": {"role": "media"}}) as d:
    ...     status = d.run(app_dir, {"job": "ping"})
    """

    def __init__(self, nodes, *, secure=True, short_waits=True):
        self.nodes = dict(nodes)
        self.secure = secure
        self.short_waits = short_waits
        self.dir = None
        self._processes = {}
        self._tools = None
        self._env = None

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc):
        self.stop()

    def start(self):
        self._tools = flower_executables()
        self.dir = Path(tempfile.mkdtemp(prefix="fedscore-deployment-"))
        home = self.dir / "flwr-home"
        home.mkdir()
        self._env = flower_environment(home, self.short_waits)
        port = _free_port()
        address = f"{LOOPBACK}:{port}"
        connection = {"address": address}
        link_tls, node_tls = ["--insecure"], ["--insecure"]
        if self.secure:
            ca, cert, key = _write_tls(self.dir / "tls")
            connection["root-certificates"] = str(ca)
            link_tls = ["--ssl-ca-certfile", str(ca), "--ssl-certfile", str(cert), "--ssl-keyfile", str(key),
                        "--enable-supernode-auth"]
            node_tls = ["--root-certificates", str(ca)]
        else:
            connection["insecure"] = True
        (home / "config.toml").write_text(
            tomli_w.dumps({"superlink": {"default": CONNECTION, CONNECTION: connection}}), encoding="utf-8"
        )
        self._start("superlink", [
            self._tools["flower-superlink"], "--host", LOOPBACK, "--port", str(port),
            "--disable-runtime-dependency-installation", *link_tls,
        ])
        self._wait_listening(port)
        auth = {name: [] for name in self.nodes}
        if self.secure:
            keys = {name: _write_auth_key(self.dir / "keys", name) for name in self.nodes}
            self._flwr_many([("supernode", "register", str(public), CONNECTION, "--name", name, "--format", "json")
                             for name, (_, public) in keys.items()])
            auth = {name: ["--auth-supernode-private-key", str(private)] for name, (private, _) in keys.items()}
        supernode = [sys.executable, "-m", SUPERNODE_MODULE] if self.short_waits else [self._tools["flower-supernode"]]
        for name, node_config in self.nodes.items():
            config_path = self.dir / f"node-{name}.toml"
            config_path.write_text(tomli_w.dumps(node_config), encoding="utf-8")
            self._start(f"{SUPERNODE_PREFIX}{name}", [
                *supernode, "--superlink", address, "--port", str(_free_port()),
                "--node-config", str(config_path), *node_tls, *auth[name],
            ])

    def run(self, app_dir, run_config, result_path=None):
        """Submit the app in ``app_dir`` with ``run_config``; return its final status.

        The status is Flower's own (``finished:completed``, ``finished:failed``, ...),
        read with ``flwr ls`` because ``flwr run`` reports only the submission. When
        the app writes ``result_path`` as its last act, the status is read only
        occasionally until that file appears: each read is a ``flwr`` process that
        would compete with the parties for the CPU.
        """
        config_path = self.dir / "run-config.toml"
        config_path.write_text(tomli_w.dumps(run_config), encoding="utf-8")
        submitted = self._flwr("run", str(app_dir), CONNECTION, "--run-config", str(config_path), "--format", "json")
        run_id = submitted.get("run-id")
        if not run_id:
            raise FedscoreError(f"Flower refused the run: {submitted}")
        start_deadline = time.monotonic() + STARTUP_TIMEOUT
        next_read = time.monotonic()
        while True:
            finishing = result_path is None or Path(result_path).exists()
            if finishing or time.monotonic() >= next_read:
                status = self._flwr("ls", CONNECTION, "--run-id", run_id, "--format", "json")["runs"][0]["status"]
                if status.startswith("finished"):
                    return status
                if status in ("pending", "starting") and time.monotonic() > start_deadline:
                    raise FedscoreError(f"Flower run {run_id} did not start within {STARTUP_TIMEOUT:g} s ({status})")
                next_read = time.monotonic() + (STATUS_POLL if finishing else STATUS_POLL_WAITING)
            self._check_alive()
            time.sleep(FILE_POLL if not finishing else STATUS_POLL)

    def stop(self):
        """Stop every process started here (and what Flower spawned from it); remove the files."""
        family = {pid: start for p in self._processes.values() for pid, start in _descendants(p.pid).items()}
        for proc in self._processes.values():
            _signal_group(proc.pid, signal.SIGTERM)
        for pid, start in family.items():
            _signal_group(pid, signal.SIGTERM, start)
        deadline = time.monotonic() + STOP_GRACE
        for proc in self._processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
        while family and time.monotonic() < deadline and any(_started_at(p) == s for p, s in family.items()):
            time.sleep(0.1)
        for proc in self._processes.values():
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait()
        for pid, start in family.items():
            _signal_group(pid, signal.SIGKILL, start)
        self._processes = {}
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def _start(self, name, args):
        with open(self.dir / f"{name}.log", "wb") as log:
            self._processes[name] = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=self._env, cwd=self.dir, start_new_session=True,
            )

    def _wait_listening(self, port):
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            self._check_alive()
            with socket.socket() as sock:
                if sock.connect_ex((LOOPBACK, port)) == 0:
                    return
            if time.monotonic() > deadline:
                raise FedscoreError(f"the SuperLink did not listen on port {port} within {STARTUP_TIMEOUT:g} s")
            time.sleep(0.1)

    def _check_alive(self):
        """Stop waiting as soon as a process died: a dead party's SuperNode is that party's failure."""
        for name, proc in self._processes.items():
            if proc.poll() is None:
                continue
            detail = f"exited with status {proc.returncode} (its log ends: {self._log_tail(name)})"
            if name.startswith(SUPERNODE_PREFIX):
                raise PartyError(name[len(SUPERNODE_PREFIX):], f"its SuperNode {detail}")
            raise FedscoreError(f"the {name} {detail}")

    def _log_tail(self, name, lines=2):
        text = (self.dir / f"{name}.log").read_text(encoding="utf-8", errors="replace")
        return " | ".join(_ANSI_ESCAPE.sub("", line).strip() for line in text.strip().splitlines()[-lines:])

    def _flwr(self, *args):
        """Run one ``flwr`` command with ``--format json``; return its JSON answer."""
        return self._flwr_many([args])[0]

    def _flwr_many(self, commands):
        """Run ``flwr`` commands concurrently; return their JSON answers in order."""
        procs = [
            subprocess.Popen([self._tools["flwr"], *args], env=self._env, cwd=self.dir, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for args in commands
        ]
        answers = []
        for args, proc in zip(commands, procs):
            try:
                stdout, stderr = proc.communicate(timeout=STARTUP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                stdout, stderr = proc.communicate()
            try:
                answer = json.loads(stdout[stdout.index("{"):])
            except ValueError:
                answer = None
            if proc.returncode != 0 or not answer or not answer.get("success", False):
                detail = (answer or {}).get("error-message") or (stderr or stdout).strip()[-500:]
                raise FedscoreError(f"flwr {args[0]} {args[1]} failed: {detail}")
            answers.append(answer)
        return answers


def run_deployed(job, options, party_configs, ledger_path, run_id, timeout, checkpoint="", *, secure=True):
    """Run ``job`` over a :class:`LocalDeployment` of the parties; return the job's summary.

    Raises the job's own error (a party failed, bad input) when the ServerApp reported
    one, and a :class:`~fedscore.errors.FedscoreError` with Flower's final status when
    the run ended otherwise than completed.
    """
    roles = tuple(party_configs)
    nodes = {role: node_config_of(role, _absolute(party_configs[role])) for role in roles}
    with LocalDeployment(nodes, secure=secure) as deployment:
        app_dir = deployment.dir / "app"
        app_dir.mkdir()
        (app_dir / "pyproject.toml").write_text(app_manifest(), encoding="utf-8")
        result_path = deployment.dir / "result.json"
        settings = RunSettings(job=job, options=dict(options), roles=roles,
                               ledger_path=str(Path(ledger_path).resolve()), result_path=str(result_path),
                               run_id=run_id, timeout=timeout, require_node_names=secure,
                               checkpoint_path=str(checkpoint or ""))
        status = deployment.run(app_dir, settings.to_run_config(), result_path)
        summary = read_result(result_path)
        if status != "finished:completed" or summary is None:
            raise FedscoreError(f"the Flower run of {job!r} ended {status} without a result")
        return summary


def app_manifest():
    """The ``pyproject.toml`` of the Flower app bundle: component names and run config only.

    The bundle carries no code: the SuperLink and every SuperNode run the fedscore
    installed beside them (the role query checks that the versions agree). The
    ``[tool.flwr.app]`` section of fedscore's own ``pyproject.toml`` says the same.
    """
    return tomli_w.dumps({
        "project": {"name": "fedscore", "version": __version__, "license": "Apache-2.0",
                    "description": "fedscore coordinator and party apps"},
        "tool": {"flwr": {"app": {
            "publisher": "fedscore",
            "fab-include": ["pyproject.toml"],
            "components": {"serverapp": "fedscore.server_app:app", "clientapp": "fedscore.client_app:app"},
            "config": dict(RUN_CONFIG_DEFAULTS),
        }}},
    })


def _absolute(config):
    """Resolve the party's file paths: its ClientApp runs in another working directory."""
    return {k: str(Path(v).resolve()) if k in PATH_KEYS and v else v for k, v in config.items()}


def _free_port():
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def _write_tls(folder):
    """Write a CA certificate and a server certificate/key for loopback; return their paths."""
    folder.mkdir(mode=0o700)
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(TLS_CURVE())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fedscore local CA")])
    ca_cert = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + TLS_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(TLS_CURVE())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + TLS_VALIDITY)
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(LOOPBACK)),
        ]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = folder / "ca.crt", folder / "server.pem", folder / "server.key"
    paths[0].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


def _write_auth_key(folder, name):
    """Write a SuperNode's key pair in OpenSSH format (what Flower loads); return (private, public)."""
    folder.mkdir(mode=0o700, exist_ok=True)
    key = ec.generate_private_key(AUTH_CURVE())
    private, public = folder / name, folder / f"{name}.pub"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                          serialization.NoEncryption()))
    private.chmod(0o600)
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                     serialization.PublicFormat.OpenSSH))
    return private, public


def _descendants(pid):
    """Live descendants of ``pid`` as PID → start time (Linux ``/proc``; empty elsewhere).

    Flower starts its SuperExec and app processes in sessions of their own, so they
    are not in the process group of the SuperLink or SuperNode that spawned them. The
    start time tells a descendant from an unrelated process that later got its PID.
    """
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = {}, [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found[child] = _started_at(child)
            todo.append(child)
    return found


def _started_at(pid):
    """Start time of ``pid`` in clock ticks since boot, or ``None`` if it is gone."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _signal_group(pid, sig, started_at=None):
    """Signal the process group led by ``pid`` (or ``pid`` alone if it leads none).

    With ``started_at``, only if ``pid`` is still the process that started then.
    """
    if started_at is not None and _started_at(pid) != started_at:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
