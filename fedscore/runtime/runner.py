"""Run a job end to end on one machine: pick an engine, stage outputs, write the ledger.

Engines:

``local``
    Every party in this process (:class:`~fedscore.runtime.local.LocalTransport`).
``simulation``
    Flower's simulation runtime: a ServerApp (the coordinator) and one ClientApp node
    per party.
``deployment``
    A real local Flower SuperLink and one SuperNode per party on loopback, with TLS and
    SuperNode authentication.

The protocol code is the same in all three; only the transport differs.
"""

import contextlib
import contextvars
import json
import shutil
import uuid

from pathlib import Path

from ..errors import FedscoreError, InputError
from ..kit.identity import parse_fingerprints
from ..ledger import Ledger
from ..output import staged_output
from ..protocols import drive, options_of
from . import checkpoint, progress
from .checkpoint import Journal
from .coordinator import Coordinator
from .local import LocalTransport
from .party import (
    IDENTITY_FILE,
    IDENTITY_KEY,
    PARTIES_FILE_KEY,
    PINS_KEY,
    check_identities,
    has_identity_settings,
    pin_every_party,
)

ENGINES = ("local", "simulation", "deployment")

_IDENTITIES = contextvars.ContextVar("fedscore_identities", default=None)


@contextlib.contextmanager
def identities(keys=None, fingerprints=None, parties_file=None):
    """Run the jobs started inside with the parties' own identity keys and pins.

    Without it, every run makes one identity key per party and pins them itself: every
    party runs on this machine, for the caller. With it, each party signs its channel
    keys with its own key and accepts a peer's only when it is signed by the identity
    pinned for that peer; a party without a key, or a peer without a pin, is refused
    before the run starts. The command line's ``--identity``, ``--peer-fingerprint``
    and ``--parties-file`` land here.

    Parameters
    ----------
    keys : dict of role to path, or sequence of "ROLE=PATH"
        Each party's identity key file (``fedscore identity init``).
    fingerprints : dict of role to str, or sequence of "ROLE=FINGERPRINT"
        The fingerprints every party pins.
    parties_file : path, optional
        A JSON or TOML file mapping each role to its fingerprint.

    Examples
    --------
    >>> with identities(keys={"brand": "brand.key", "media": "media.key"},
    ...                 parties_file="parties.json"):  # doctest: +SKIP
    ...     fedscore.psi("brand.csv", "media.csv", id_column="email", out="run")
    """
    if not isinstance(keys, dict):
        keys = dict(_role_and_path(entry) for entry in (keys or ()))
    token = _IDENTITIES.set({"keys": {role: str(Path(path).absolute()) for role, path in keys.items()},
                             "pins": parse_fingerprints(fingerprints),
                             "parties_file": str(Path(parties_file).absolute()) if parties_file else None})
    try:
        yield
    finally:
        _IDENTITIES.reset(token)


def _role_and_path(entry):
    role, sep, path = str(entry).partition("=")
    if not sep or not role.strip() or not path.strip():
        raise InputError(f"--identity: {entry!r} is not ROLE=PATH")
    return role.strip(), path.strip()


def _with_identities(parties):
    """Each party's config with the identity settings of the enclosing :func:`identities`, if any."""
    given = _IDENTITIES.get()
    if given is None:
        return parties
    unknown = sorted(set(given["keys"]) - set(parties))
    if unknown:
        raise InputError(f"--identity names {', '.join(unknown)}, not a party of this job "
                         f"(its parties: {', '.join(parties)})")
    configs = {}
    for role, config in parties.items():
        own = {IDENTITY_KEY: given["keys"].get(role), PINS_KEY: dict(given["pins"]),
               PARTIES_FILE_KEY: given["parties_file"]}
        configs[role] = {**config, **{k: v for k, v in own.items() if v}}
    return configs


def run_job(job, options, parties, out_dir, *, engine="local", overwrite=False, timeout=600.0, resume=False,
            before_commit=None):
    """Run ``job`` with each party's local files and write everything under ``out_dir``.

    Parameters
    ----------
    job : str
        A name from :data:`fedscore.protocols.JOBS`.
    options : dict
        Public, JSON-serialisable job options (the same for every party), as the job's
        options schema validates them.
    parties : dict of role to dict
        Each party's local configuration, typically ``{"data": path}``; ``"out"`` is
        set here to ``out_dir/<role>``. Without identity settings
        (:data:`~fedscore.runtime.party.IDENTITY_SETTINGS`) in any of them, every party
        gets an identity made for this run, pinned at every other party; with them,
        every party must name its identity and pin every other party's.
    out_dir : path
        Receives ``<role>/`` folders, ``ledger.jsonl`` and ``summary.json``; written
        atomically.
    engine : {"local", "simulation", "deployment"}
    overwrite : bool
        Replace ``out_dir`` if it exists (otherwise an existing folder is refused).
    timeout : float
        Seconds the coordinator waits for a party's reply before stopping the run.
    resume : bool
        Go on from the checkpoint a failed attempt of the same job left in
        ``<out_dir>.checkpoint`` (:mod:`fedscore.runtime.checkpoint`) instead of
        starting afresh.

    before_commit : callable, optional
        Called with the staging folder once the job succeeded and its files are written,
        before the folder is moved into place (the library API writes the reports here,
        so that a run's folder appears complete or not at all).

    Returns
    -------
    dict
        The job's summary.

    Notes
    -----
    While a run goes on, its checkpoint beside ``out_dir`` holds the coordinator's
    journal, the ledger and each party's snapshot, and the identity keys made for the
    run (owner-only, so that a resumed run finds the same ones). It is deleted when the
    run succeeds; when the run fails it stays, and the error says how to resume.
    """
    if engine not in ENGINES:
        raise InputError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    options = options_of(job).from_dict(options).to_dict()  # refused here, before anything starts
    parties = _with_identities(parties)
    own_identities = any(has_identity_settings(cfg) for cfg in parties.values())
    if own_identities:
        check_identities(parties)
    # Parties may run in other working directories (deployment): every path is absolute.
    out_dir = Path(out_dir).absolute()
    with staged_output(out_dir, overwrite=overwrite) as staging:
        folder, run_id = checkpoint.start(out_dir, job=job, options=options, run_id=uuid.uuid4().hex,
                                          resume=resume)
        party_configs = {}
        for role, cfg in parties.items():
            (staging / role).mkdir()
            party_configs[role] = {**cfg, "out": str(staging / role),
                                   "checkpoint": str(checkpoint.snapshot_path(folder, role)), "resume": bool(resume)}
        if not own_identities:
            party_configs = pin_every_party(party_configs, files={
                role: checkpoint.snapshot_path(folder, role).with_name(IDENTITY_FILE) for role in party_configs})
        ledger_path = folder / checkpoint.LEDGER_FILE
        try:
            summary = _run_engine(engine, job, options, party_configs, ledger_path, run_id, timeout, folder)
        except FedscoreError as exc:
            if (folder / checkpoint.JOURNAL_FILE).exists() and not isinstance(exc, InputError):
                exc.args = (f"{exc}; the rounds completed so far are kept in {folder}: "
                            f"run the same command again with --resume to go on from there",)
            else:
                checkpoint.finish(folder)
            raise
        shutil.copyfile(ledger_path, staging / "ledger.jsonl")
        (staging / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        if before_commit is not None:
            before_commit(staging)
    checkpoint.finish(folder)
    return summary


def _run_engine(engine, job, options, party_configs, ledger_path, run_id, timeout, folder):
    if engine == "local":
        return _run_local(job, options, party_configs, ledger_path, run_id, timeout, folder)
    if engine == "simulation":
        from .simulation import run_simulated

        return run_simulated(job, options, party_configs, ledger_path, run_id, timeout, folder)
    from .deployment import run_deployed

    return run_deployed(job, options, party_configs, ledger_path, run_id, timeout, folder)


def _run_local(job, options, party_configs, ledger_path, run_id, timeout, folder):
    ledger, display = Ledger(ledger_path, run_id=run_id), progress.for_run(job)
    try:
        coordinator = Coordinator(LocalTransport(party_configs), ledger, run_id=run_id, timeout=timeout,
                                  journal=Journal(folder, run_id), job=job, progress=display)
        with progress.parties_show_on(display):  # every party runs here, for the one operator of this run
            return drive(coordinator, job, options)
    finally:
        ledger.close()
        if display is not None:
            display.close()
