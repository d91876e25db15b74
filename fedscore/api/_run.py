"""Run a job with every party on this machine: the one path the library API and the command line take.

The library functions of :mod:`fedscore.api` differ only in which tables each party
reads and what they read back; everything else is here: data frames written to files a
party can read, each party's inputs checked before anything starts, the run on the
chosen engine, and each party's report written into its own folder before the run's
folder appears.
"""

import tempfile
from pathlib import Path

import pandas as pd

from ..kit.inputs import read_inputs
from ..runtime.runner import run_job

ENGINE = "local"
"""The default engine of the library and the command line: every party in this process,
every message encoded, relayed by the coordinator and written to the ledger exactly as
over Flower. ``"simulation"`` runs the parties as Flower ClientApps in Flower's
simulation runtime, ``"deployment"`` on a real local SuperLink with one SuperNode each."""


def run(job, tables, options, *, out, engine=ENGINE, overwrite=False, resume=False, timeout=600.0, settings=None,
        reports=True):
    """Run ``job`` with each role's table; return the job's public summary.

    Parameters
    ----------
    job : str
    tables : dict of role to (path or pandas.DataFrame)
        Each party's table. A data frame is written to a private temporary CSV file
        first: parties read files.
    options : fedscore.kit.options.Options
        The job's validated options.
    out : path
        The run's folder (``<role>/``, ``ledger.jsonl``, ``summary.json``), written
        atomically.
    engine : {"local", "simulation", "deployment"}
    overwrite, resume, timeout
        See :func:`fedscore.runtime.runner.run_job`.
    settings : dict of role to dict, optional
        Each party's own settings beside its table (its key file, its consent to a
        weak key).
    reports : bool
        Write ``<role>/report.html`` (with its charts) for each party, built from that
        party's folder and the shared files only.

    Raises
    ------
    InputError
        From any party's input check, before the run starts: nothing is written.
    """
    settings = settings or {}
    with tempfile.TemporaryDirectory(prefix=f"fedscore-{job}-") as scratch:
        parties = {}
        for role, table in tables.items():
            config = {**settings.get(role, {}), "data": str(_table_file(table, Path(scratch) / f"{role}.csv"))}
            read_inputs(options, role, config)
            parties[role] = config
        before_commit = _write_reports(job, list(parties), out) if reports else None
        return run_job(job, options.to_dict(), parties, out, engine=engine, overwrite=overwrite, resume=resume,
                       timeout=timeout, before_commit=before_commit)


def _table_file(table, path):
    """A path a party can read ``table`` from: itself, or the data frame written as CSV to ``path``."""
    if isinstance(table, pd.DataFrame):
        table.to_csv(path, index=False)
        return path
    return Path(table).absolute()


def _write_reports(job, roles, out):
    """Write each role's ``report.html`` into its folder of the staged run, before the run's folder appears.

    Each page is built from that role's folder and the run's shared files only, and names
    the run by the output folder the caller asked for (the staging folder is not one).
    """
    def write(staging):
        from ..report import write_report
        from ..report.jobs import TITLES

        for role in roles:
            write_report(staging, staging / role, party=role, title=f"fedscore {job}: {TITLES.get(job, job)}",
                         name="report", job=job, label=Path(out).name)

    return write
