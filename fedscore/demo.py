"""The demo: the whole story on data shipped with fedscore, in a few minutes on a laptop.

A bank (the *brand*) and an ad platform (the *media* party) each hold part of the UCI
Bank Marketing data (see ``fedscore/data/README.md``). The demo runs, one after another:

1. **psi**: private ID matching: how many customers the two know in common;
2. **lookalike**: the media trains on the brand's seed list without learning who is in
   it, and scores its whole audience;
3. **propensity**: a joint model on brand and media features scores the brand's
   customers still to score;
4. **segment**: federated KMeans splits the shared customers into personas.

Each phase is an ordinary job run as the library runs it (:func:`fedscore.api._run.run`:
every party's input checked first, then the run, then each party's report), with its own
run folder; a phase whose protocol is not part of this installation is skipped and said so. At the
end one report per party is written over every phase, each shown as its command's own page shows
it (:mod:`fedscore.report.jobs`), built only from what that party holds.

Examples
--------
>>> from fedscore.demo import run_demo
>>> result = run_demo("fedscore-demo", small=True)          # doctest: +SKIP
>>> result["reports"]["brand"]                              # doctest: +SKIP
PosixPath('fedscore-demo/report/brand.html')
"""

import contextlib
import importlib.util
import json
import shutil
import time
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import numpy as np
import pandas as pd

from .api import ENGINE, run
from .errors import FedscoreError
from .output import staged_output
from .params import DEMO_OUT
from .protocols import JOBS, options_of
from .report import write_report

DATA_FILES = {"brand": "bank_brand.csv", "media": "bank_media.csv", "seed": "bank_seed.csv"}
"""The shipped demo files, in the package's ``data`` folder."""

ID_COLUMN = "uid"
LABEL_COLUMN = "y"

SMALL_SHARE = 0.5
"""Share of the people kept by ``--small`` (chosen by ``uid``, so the overlap keeps its shape):
about 2,000 brand rows, 2,500 media rows and 166 seed customers, 123 of them in the media's
audience: above the lookalike's minimum of 100."""

PERSONAS = 3
"""Segments the demo asks for: three personas, each of which would get its own campaign."""

REPORT_TITLE = "fedscore demo: a bank and an ad platform"
REPORT_SUBTITLE = "UCI Bank Marketing data (CC BY 4.0), split between a brand and a media platform"


def demo_data_dir():
    """The folder holding the shipped demo files."""
    return Path(str(files("fedscore") / "data"))


@dataclass(frozen=True)
class DemoData:
    """Paths of the demo's input files (each party reads only its own)."""

    brand: Path
    media: Path
    seed: Path


@dataclass(frozen=True)
class Phase:
    """One step of the demo story: which job to run and how to present what it released.

    Attributes
    ----------
    name : str
        The job name and the run folder's name.
    title : str
        What the progress bar says.
    tables : callable
        ``tables(data) -> {role: path}``: each party's own file.
    options : callable
        ``options(small) -> dict``: the job's public options.
    headline : callable, optional
        ``headline(summary, run_dir) -> str``: the phase's one-line result for the summary
        table printed to whoever ran the demo (who, here, plays every party).

    Each party's page shows a phase as every command's page shows its job
    (:mod:`fedscore.report.jobs`): from that party's own folder only.
    """

    name: str
    title: str
    tables: object
    options: object = lambda small: {}
    headline: object = None

    @property
    def available(self):
        """Whether this installation has the phase's protocol."""
        job = JOBS.get(self.name)
        if job is None:
            return False
        with contextlib.suppress(ImportError, ValueError):
            return importlib.util.find_spec(job.coordinator.split(":")[0]) is not None
        return False


def _both_tables(data):
    return {"brand": data.brand, "media": data.media}


# --- The one-line result of each phase, for whoever ran the demo ------------------------------

def _psi_headline(summary, run_dir):
    return f"{summary['intersection']:,} in common"


LOOKALIKE_AUDIENCES = ["1%", "2%", "5%", "10%", "20%"]
"""Audience sizes the lookalike measures: also the points of its gain and lift curves."""


def _lookalike_headline(summary, run_dir):
    report = _read_json(Path(run_dir) / "brand" / "report.json") or {}
    auc = report.get("holdout", {}).get("auc")
    found = f"held-out AUC {auc:.3f}, " if auc is not None else ""
    return f"{found}{len(summary['audience_sizes'])} audiences"


def _propensity_headline(summary, run_dir):
    report = _read_json(Path(run_dir) / "brand" / "report.json") or {}
    auc = report.get("validation", {}).get("auc")
    found = f"validation AUC {auc:.3f}, " if auc is not None else ""
    by_source = report.get("scored_by_source") or {}
    split = ", ".join(f"{count:,} {source}" for source, count in by_source.items())
    return f"{found}{report.get('scored_users', 0):,} scored" + (f" ({split})" if split else "")


def _brand_alone(data):
    """What the brand achieves with its own columns only: 5-fold cross-validated logistic regression."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    from .kit.encoder import FeatureEncoder
    from .kit.table import PartyTable
    from .metrics import auc, ks, lift_at

    table = PartyTable.read(data.brand, required=[ID_COLUMN, LABEL_COLUMN], text_columns=[ID_COLUMN, LABEL_COLUMN])
    labels = table.labels(LABEL_COLUMN)
    known = np.flatnonzero(~np.isnan(labels))
    features = FeatureEncoder(data.brand).fit_transform(
        table, table.feature_columns(exclude=(ID_COLUMN, LABEL_COLUMN)), rows=known)
    y = labels[known]
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=0)
    score = cross_val_predict(LogisticRegression(max_iter=1000), features, y, cv=folds, method="decision_function")
    return [{"label": "brand's columns alone", "auc": auc(y, score), "ks": ks(y, score),
             "lift_at_10pct": lift_at(y, score, 0.10),
             "note": "The brand's columns alone: the brand's own model on its own columns, 5-fold cross-validated on "
                     f"all {len(y):,} of its labelled customers, computed locally."}]


def _segment_headline(summary, run_dir):
    return f"{summary['released_segments']} personas, {summary['n_iter']} iterations"


def _read_json(path):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


PHASES = (
    Phase(
        name="psi",
        title="Private ID matching",
        tables=_both_tables,
        options=lambda small: {"id_column": ID_COLUMN},
        headline=_psi_headline,
    ),
    Phase(
        name="lookalike",
        title="Hidden-seed lookalike",
        tables=lambda data: {"brand": data.seed, "media": data.media},
        options=lambda small: {"id_column": ID_COLUMN, "audience_sizes": LOOKALIKE_AUDIENCES, "random_state": 0},
        headline=_lookalike_headline,
    ),
    Phase(
        name="propensity",
        title="Joint propensity",
        tables=_both_tables,
        options=lambda small: {"id_column": ID_COLUMN, "label_column": LABEL_COLUMN, "top": "10%", "random_state": 0,
                               **({"epochs": 8} if small else {})},
        headline=_propensity_headline,
    ),
    Phase(
        name="segment",
        title="Persona segmentation",
        tables=_both_tables,
        options=lambda small: {"id_column": ID_COLUMN, "exclude": [LABEL_COLUMN], "k": PERSONAS,
                               "random_state": 0, "n_init": 2 if small else 4, "max_iter": 20 if small else 40},
        headline=_segment_headline,
    ),
)
"""The demo's story, in order."""


def prepare_data(out_dir, small=False):
    """Copy the shipped files (or, with ``small``, a subset chosen by ``uid``) into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for role, name in DATA_FILES.items():
        source, target = demo_data_dir() / name, out_dir / name
        if small:
            frame = pd.read_csv(source, dtype=str, keep_default_na=False)
            frame[frame[ID_COLUMN].astype(int) % 10 < round(10 * SMALL_SHARE)].to_csv(
                target, index=False, lineterminator="\n")
        else:
            shutil.copyfile(source, target)
        paths[role] = target
    return DemoData(**paths)


def _table_facts(data):
    """What each party knows of its own input, before anything is exchanged."""
    brand = pd.read_csv(data.brand, dtype=str, keep_default_na=False)
    media = pd.read_csv(data.media, dtype=str, keep_default_na=False)
    seed = pd.read_csv(data.seed, dtype=str, keep_default_na=False)
    labelled = brand[LABEL_COLUMN].str.strip() != ""
    return {
        "brand": [["brand customers (own file)", len(brand)], ["labelled customers", int(labelled.sum())],
                  ["customers still to score", int((~labelled).sum())], ["seed list (best customers)", len(seed)]],
        "media": [["media audience (own file)", len(media)]],
    }


def run_demo(out_dir=DEMO_OUT, *, engine=ENGINE, small=False, overwrite=False, phases=None, options=None,
             progress=None):
    """Run the demo story and write its run folders and reports into ``out_dir``.

    Parameters
    ----------
    out_dir : path
        Receives ``data/`` (the inputs used), one run folder per phase, ``report/``
        (``brand.html``, ``media.html`` and their PNG charts) and ``summary.json``.
        Written all at once, or not at all.
    engine : {"local", "simulation", "deployment"}
    small : bool
        Run on about half of the people, with lighter settings (for tests and slow machines).
    overwrite : bool
        Replace ``out_dir`` if it exists.
    phases : list of str, optional
        Run only these phases (default: every phase this installation has).
    options : dict of str to dict, optional
        Job options that replace the demo's, by phase: ``{"propensity": {"epochs": 5}}``.
    progress : callable, optional
        ``progress(event, phase, info)`` with event ``"start"``, ``"done"`` or
        ``"skip"``; the command line draws progress bars with it.

    Returns
    -------
    dict
        ``phases`` (name → summary, seconds, headline or why it was skipped), ``reports``
        (role → HTML path, after the output folder was moved into place).
    """
    notify = progress or (lambda event, phase, info: None)
    chosen = [p for p in PHASES if phases is None or p.name in phases]
    unknown = (set(phases or ()) | set(options or ())) - {p.name for p in PHASES}
    if unknown:
        raise FedscoreError(f"unknown demo phase(s): {', '.join(sorted(unknown))} "
                            f"(phases: {', '.join(p.name for p in PHASES)})")
    out_dir = Path(out_dir)
    results = {}
    with staged_output(out_dir, overwrite=overwrite) as staging:
        data = prepare_data(staging / "data", small=small)
        runs = {}
        for phase in chosen:
            if not phase.available:
                results[phase.name] = {"title": phase.title, "skipped": "not in this installation"}
                notify("skip", phase, results[phase.name])
                continue
            notify("start", phase, None)
            started = time.perf_counter()
            job_options = options_of(phase.name).from_dict({**phase.options(small),
                                                            **(options or {}).get(phase.name, {})})
            tables = phase.tables(data)
            # Asked for by whoever runs both parties here: both consent to a weak test key.
            consent = {"allow_weak_keys": True} if getattr(job_options, "paillier_key_bits", None) else {}
            summary = run(phase.name, tables, job_options, out=staging / phase.name, engine=engine,
                          settings={role: consent for role in tables})
            seconds = time.perf_counter() - started
            runs[phase.name] = staging / phase.name
            results[phase.name] = {"title": phase.title, "seconds": round(seconds, 2), "summary": summary,
                                   "headline": _headline(phase, summary, runs[phase.name]),
                                   "bytes": _ledger_bytes(runs[phase.name])}
            notify("done", phase, results[phase.name])
        if not runs:
            raise FedscoreError("none of the demo's protocols is part of this installation")
        reports = {role: out_dir / "report" / path.name
                   for role, path in write_demo_reports(staging, engine=engine, small=small).items()}
        (staging / "summary.json").write_text(json.dumps(
            {"engine": engine, "small": small, "phases": results}, indent=2, default=_json_default) + "\n")
    return {"phases": results, "reports": reports, "out": out_dir}


def write_demo_reports(out_dir, *, engine=ENGINE, small=False):
    """Write ``report/brand.html`` and ``report/media.html`` from a demo folder's run folders.

    Each page shows every phase as that phase's command shows it
    (:func:`fedscore.report.write_report`), read from the runs' shared files and that
    party's own output folders; the brand's also compares the joint model with what its
    own columns achieve alone, from its own input file. Never the other party's.

    Returns
    -------
    dict of str to pathlib.Path
        The HTML file of each party.
    """
    out_dir = Path(out_dir)
    data = DemoData(**{role: out_dir / "data" / name for role, name in DATA_FILES.items()})
    runs = {p.name: out_dir / p.name for p in PHASES if (out_dir / p.name / "summary.json").is_file()}
    facts = _table_facts(data)
    compare = {"propensity": _brand_alone(data)} if "propensity" in runs else {}
    reports = {}
    for role in ("brand", "media"):
        extra = {"facts": [[label, value, "Own input files, before anything was exchanged"]
                           for label, value in facts[role]], "notes": [
            f"Run with the {engine} engine{' on the small subset' if small else ''}. "
            "Data: UCI Bank Marketing (Moro, Cortez & Rita 2014), CC BY 4.0."]}
        reports[role] = write_report(runs, out_dir / "report", party=role, title=REPORT_TITLE,
                                     subtitle=REPORT_SUBTITLE, extra=extra,
                                     compare=compare if role == "brand" else None)
    return reports


def _headline(phase, summary, run_dir):
    if phase.headline is not None:
        with contextlib.suppress(KeyError, TypeError, ValueError):
            return phase.headline(summary, run_dir)
    return ""


def _ledger_bytes(run_dir):
    path = Path(run_dir) / "ledger.jsonl"
    if not path.is_file():
        return None
    total = 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                total += json.loads(line).get("bytes", 0)
    return total


def _json_default(value):
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
