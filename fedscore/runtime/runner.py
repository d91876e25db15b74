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
import uuid

from ..ledger import Ledger
from ..output import staged_output
from ..report import write_report
from .coordinator import Coordinator
from .jobs import resolve_job
from .local import LocalTransport

ENGINES = ("local", "simulation", "deployment")


def run_job(job, options, parties, out_dir, *, engine="local", overwrite=False, timeout=600.0, reports=True):
    """Run ``job`` with each party's local files and write everything under ``out_dir``.

    Parameters
    ----------
    job : str
        A name from :data:`fedscore.runtime.jobs.JOBS`.
    options : dict
        Public, JSON-serialisable job options (the same for every party).
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
    reports : bool
        Write each party's HTML report (and its PNG charts) into its own folder as
        ``<role>/report.html``, built only from the shared files and that party's folder.

    Returns
    -------
    dict
        The job's summary.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, not {engine!r}")
    run_id = uuid.uuid4().hex
    with staged_output(out_dir, overwrite=overwrite) as staging:
        party_configs = {}
        for role, cfg in parties.items():
            (staging / role).mkdir()
            party_configs[role] = {**cfg, "out": str(staging / role)}
        ledger_path = staging / "ledger.jsonl"
        if engine == "local":
            summary = _run_local(job, options, party_configs, ledger_path, run_id, timeout)
        elif engine == "simulation":
            from .simulation import run_simulated

            summary = run_simulated(job, options, party_configs, ledger_path, run_id, timeout)
        else:
            from .deployment import run_deployed

            summary = run_deployed(job, options, party_configs, ledger_path, run_id, timeout)
        (staging / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        if reports:
            for role in parties:
                write_report(staging, staging / role, party=role, title=f"fedscore {job}", name="report")
    return summary


def _run_local(job, options, party_configs, ledger_path, run_id, timeout):
    ledger = Ledger(ledger_path, run_id=run_id)
    try:
        coordinator = Coordinator(LocalTransport(party_configs), ledger, run_id=run_id, timeout=timeout)
        return resolve_job(job)(coordinator, dict(options))
    finally:
        ledger.close()
