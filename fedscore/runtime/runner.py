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

import json
import shutil
import uuid

from pathlib import Path

from ..errors import FedscoreError, InputError
from ..ledger import Ledger
from ..output import staged_output
from ..protocols import drive, options_of
from . import checkpoint
from .checkpoint import Journal
from .coordinator import Coordinator
from .local import LocalTransport

ENGINES = ("local", "simulation", "deployment")


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
        set here to ``out_dir/<role>``.
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
    journal, the ledger and each party's snapshot. It is deleted when the run succeeds;
    when the run fails it stays, and the error says how to resume.
    """
    if engine not in ENGINES:
        raise InputError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    options = options_of(job).from_dict(options).to_dict()  # refused here, before anything starts
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
    ledger = Ledger(ledger_path, run_id=run_id)
    try:
        coordinator = Coordinator(LocalTransport(party_configs), ledger, run_id=run_id, timeout=timeout,
                                  journal=Journal(folder, run_id))
        return drive(coordinator, job, options)
    finally:
        ledger.close()
