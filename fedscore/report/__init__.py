"""Reports people look at: one self-contained HTML page per run, with its charts as PNG.

A report shows a model's AUC, KS, lift and gain curves, audience size against precision
and recall, persona profiles, and the privacy ledger: bytes and message kinds per
direction, with a plain statement of what each party learned. It is built from plain
dicts of aggregates, so every protocol can feed it, and a party's report reads only the
run's shared files and that party's own folder. Each job's sections and statements live in
:mod:`fedscore.report.jobs`, so every command's page and the demo's pages are built alike;
:mod:`fedscore.report.steps` says in plain words what each protocol step is for.

Examples
--------
>>> from fedscore.report import scoring_section, save_report
>>> section = scoring_section("Propensity", y, score, held_by="brand")   # doctest: +SKIP
>>> save_report({"title": "My run", "party": "brand", "scoring": [section]}, "out")  # doctest: +SKIP
"""

from .html import build_report, save_report, write_report
from .jobs import job_report
from .sections import ledger_section, persona_section, read_run, scoring_section

__all__ = ["build_report", "job_report", "ledger_section", "persona_section", "read_run", "save_report",
           "scoring_section", "write_report"]
