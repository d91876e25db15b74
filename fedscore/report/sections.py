"""The content of a report as plain dicts, built from arrays or read from a run folder.

A *report* is a dict; every key is optional and a missing one simply leaves its section
out::

    {
        "title": "fedscore demo",
        "party": "brand",              # whose view this is (None: the run's shared files only)
        "kpis": [["3,000", "customers in common"], ...],   # headline numbers
        "facts": [["matched users", 3000], ...],           # the summary table (3rd item: a group)
        "details": [["psi: intersection", 3000], ...],     # the runs' own summaries (folded away)
        "scoring": [scoring_section(...), ...],             # AUC, KS, lift, gain, audiences
        "personas": [persona_section(...), ...],            # segment profiles
        "ledger": [ledger_section(entries, "psi"), ...],    # bytes and message kinds
        "learned": {"brand": ["..."], "media": ["..."], "coordinator": ["..."]},
        "notes": ["..."],
    }

Each protocol feeds it the aggregates it releases, either by calling the helpers here or
by writing the same dicts as ``<run>/<party>/report_sections.json``; :func:`read_run` collects
them. A report for one party is built only from the run's shared files (``summary.json``,
``ledger.jsonl``) and that party's own folder, so it can only show what the party holds.
"""

import json
from pathlib import Path

import numpy as np

from .. import metrics
from ..ledger import COORDINATOR, read_ledger
from .steps import RELEASED_CATEGORY, released, step_words

GAIN_POINTS = 100
"""Points of a gain curve kept in a report: percentiles of the population, never rows."""

REPORT_FILE = "report_sections.json"
"""The file a protocol may write in a party's output folder to add sections to its report."""


def scoring_section(name, y, score, *, held_by=None, sizes=metrics.AUDIENCE_FRACTIONS, note=None, compare=(),
                    short=None):
    """Aggregate a model's scores into a report section (run by the party holding the labels).

    Parameters
    ----------
    name : str
        What was scored, e.g. ``"Joint propensity (validation)"``.
    y, score : array-like
        Labels in {0, 1} and scores of the same rows.
    held_by : str, optional
        The party that holds ``y`` and ``score`` and therefore this section.
    sizes : iterable
        Audience sizes (fractions or counts) for the audience table.
    note : str, optional
        One sentence shown under the section title.
    compare : iterable of (label, score)
        Other models' scores of the same rows (e.g. a brand-only baseline), drawn on the
        same charts.
    short : str, optional
        A short name for the headline figures (defaults to ``name``).

    Returns
    -------
    dict
        Only aggregates: AUC, KS, lift at 10 %, a 100-point gain curve, the audience table.
    """
    y = np.asarray(y, dtype=float)
    section = {"name": name, "short": short, "held_by": held_by, "note": note, "label": "this model"}
    section.update(metrics.score_report(y, score))
    section["audiences"] = metrics.audience_table(y, score, sizes)
    fraction, gain = metrics.gain_curve(y, score, points=GAIN_POINTS)
    section["gain"] = {"fraction": fraction.round(4).tolist(), "gain": gain.round(5).tolist()}
    section["compare"] = []
    for label, other in compare:
        fraction, gain = metrics.gain_curve(y, other, points=GAIN_POINTS)
        section["compare"].append({
            "label": label, "auc": metrics.auc(y, other), "ks": metrics.ks(y, other),
            "lift_at_10pct": metrics.lift_at(y, other, 0.10),
            "gain": {"fraction": fraction.round(4).tolist(), "gain": gain.round(5).tolist()},
        })
    return section


MIN_TRAIT_SHARE = 0.05
"""A category held by fewer than this share of a persona and of everyone counts for less as
one of the persona's traits: its relative difference moves with a handful of people."""

NO_LEVEL = 0.1
"""A column whose persona means differ in sign and whose average lies closer to zero than
this share of its largest mean has no level to compare with (a centred value): its
differences are measured against that largest mean instead."""


def persona_section(name, features, means, sizes, *, held_by=None, labels=None, min_size=None, suppressed=0,
                    note=None):
    """A segmentation's released profiles as a report section.

    Parameters
    ----------
    features : list of str
        Feature names; ``column=value`` names a one-hot category, whose mean is a share.
    means : array-like, shape (segments, features)
        Each released segment's mean of each feature, in the feature's own units.
    sizes : list of int
        People per released segment.
    labels : list of str, optional
        Segment names; defaults to A, B, C, ...
    min_size : int, optional
        The release threshold, stated in the report.
    suppressed : int
        How many segments fell below ``min_size`` and were not released.

    Returns
    -------
    dict
        Per segment its size, its means, ``vs_average``: how far each mean lies from the
        average of all the segments' people, as a share of that average (``+0.28`` is
        28 % above it), and ``weight``: how distinctive that is, for picking traits.

    Notes
    -----
    Every party that holds the released profiles computes the same differences, from
    the profiles alone: no column's spread over people is needed, which only its owner
    knows. So the brand's and the media's pages colour the same personas the same way,
    and a small difference (a day of the month 14.6 against 15.8) stays small next to a
    large one (days since the last contact 245 against 38).
    """
    means = np.asarray(means, dtype=float).reshape(len(sizes), len(features))
    weights = np.asarray(sizes, dtype=float)
    labels = list(labels) if labels is not None else [chr(ord("A") + i) for i in range(len(sizes))]
    kinds = ["share" if "=" in f else "number" for f in features]
    overall, change, weight = [], np.full(means.shape, np.nan), np.full(means.shape, np.nan)
    for j, kind in enumerate(kinds):
        column = means[:, j]
        ok = np.isfinite(column) & (weights > 0)
        if not ok.any():
            overall.append(None)
            continue
        average = float(np.average(column[ok], weights=weights[ok]))
        largest = float(np.max(np.abs(column[ok])))
        mixed = column[ok].min() < 0 < column[ok].max()
        level = largest if mixed and abs(average) < NO_LEVEL * largest else abs(average)
        change[ok, j] = (column[ok] - average) / level if level > 0 else 0.0
        weight[ok, j] = np.abs(change[ok, j])
        if kind == "share":
            base = np.maximum(column[ok], average)
            weight[ok, j] *= np.minimum(1.0, base / MIN_TRAIT_SHARE)
        overall.append(average)
    return {
        "name": name, "held_by": held_by, "note": note, "features": list(features), "kinds": kinds,
        "overall": overall, "min_size": min_size, "suppressed": int(suppressed),
        "segments": [{"segment": str(label), "size": int(size), "means": _floats(row), "vs_average": _floats(c),
                      "weight": _floats(w)}
                     for label, size, row, c, w in zip(labels, sizes, means, change, weight)],
    }


def _floats(values):
    return [float(v) if np.isfinite(v) else None for v in values]


def ledger_section(entries, name=None):
    """Bytes, messages and message kinds per direction, from ledger entries (never values).

    A field that :data:`fedscore.report.steps.RELEASED` lists counts, on its hop to the
    party that opens it, as ``released`` rather than under its payload category.

    Returns
    -------
    dict
        ``{"name", "messages", "bytes", "directions": {"brand -> coordinator": {"messages",
        "bytes", "payloads": {category: bytes}, "steps": {step: count},
        "phases": {plain words: count}, "released": {plain words: bytes}}}}``
    """
    directions = {}
    for entry in entries:
        key = f"{entry['sender']} -> {entry['receiver']}"
        d = directions.setdefault(key, _direction(entry["sender"], entry["receiver"]))
        d["messages"] += 1
        d["bytes"] += int(entry.get("bytes", 0))
        _count(d["steps"], entry["step"])
        _count(d["phases"], step_words(entry["step"]))
        for field, info in entry.get("fields", {}).items():
            what = released(entry["step"], field) if entry["receiver"] != COORDINATOR else None
            category = RELEASED_CATEGORY if what else info["payload"]
            _count(d["payloads"], category, int(info["bytes"]))
            if what:
                _count(d["released"], what, int(info["bytes"]))
    return {
        "name": name,
        "messages": sum(d["messages"] for d in directions.values()),
        "bytes": sum(d["bytes"] for d in directions.values()),
        "directions": directions,
    }


def _direction(sender, receiver):
    return {"sender": sender, "receiver": receiver, "messages": 0, "bytes": 0, "payloads": {}, "steps": {},
            "phases": {}, "released": {}}


def _count(counts, key, n=1):
    counts[key] = counts.get(key, 0) + n


def merge_directions(ledgers):
    """Add up the directions of several ledger sections (for one chart over a whole demo)."""
    total = {}
    for ledger in ledgers:
        for key, d in ledger.get("directions", {}).items():
            t = total.setdefault(key, _direction(d.get("sender"), d.get("receiver")))
            t["messages"] += d.get("messages", 0)
            t["bytes"] += d.get("bytes", 0)
            for part in ("payloads", "steps", "phases", "released"):
                for k, v in d.get(part, {}).items():
                    _count(t[part], k, v)
    return dict(sorted(total.items(), key=lambda item: direction_order(item[1])))


def direction_order(d):
    """Sort key of a direction: party → coordinator first, then coordinator → party, by party."""
    return (d.get("sender") == COORDINATOR, d.get("receiver") if d.get("sender") == COORDINATOR else d.get("sender"))


def received(ledgers, role):
    """What ``role`` received over the run: messages, bytes by category, and released results by name."""
    payloads, results, messages = {}, {}, 0
    for ledger in ledgers:
        for d in ledger.get("directions", {}).values():
            if d.get("receiver") == role:
                messages += d.get("messages", 0)
                for k, v in d.get("payloads", {}).items():
                    _count(payloads, k, v)
                for k, v in d.get("released", {}).items():
                    _count(results, k, v)
    return messages, payloads, results


def summary_facts(summary, prefix=None, limit=24):
    """The scalar values of a job summary (one level of nesting), as ``[label, value]`` rows."""
    facts = []
    for key, value in (summary or {}).items():
        if isinstance(value, dict):
            facts += [[f"{key} {k}".replace("_", " "), v] for k, v in value.items() if _scalar(v)]
        elif _scalar(value):
            facts.append([str(key).replace("_", " "), value])
    if prefix:
        facts = [[f"{prefix}: {label}", value] for label, value in facts]
    return facts[:limit]


def _scalar(value):
    return isinstance(value, (str, int, float, bool)) and not (isinstance(value, str) and len(value) > 80)


def read_run(run_dir, party=None, name=None, *, job=None, prefix=False, compare=()):
    """Collect a run folder's report content as seen by ``party``.

    Reads ``summary.json`` (its scalars become ``details``) and ``ledger.jsonl``, which
    the run shares, and, when ``party`` is given, that party's own folder
    ``<run_dir>/<party>/``: its job's outputs (:mod:`fedscore.report.jobs`) and
    ``report_sections.json``; never another party's folder. Missing files are skipped.

    Parameters
    ----------
    run_dir : path
    party : str, optional
    name : str, optional
        What the run is called on the page (its ``run`` column); defaults to the folder's name.
    job : str, optional
        The job that ran; defaults to the summary's ``job``.
    prefix : bool
        Start each statement of what a role learned with ``name`` (a page over several runs).
    compare : iterable of dict
        Other models of the party's, measured on the same rows (see
        :func:`fedscore.report.jobs.job_report`).

    Returns
    -------
    dict
        A partial report (see the module docstring).
    """
    from .jobs import TITLES, job_report

    run_dir = Path(run_dir)
    name = name or run_dir.name
    report = {"facts": [], "details": [], "scoring": [], "personas": [], "ledger": [], "learned": {}, "notes": []}
    summary = _read_json(run_dir / "summary.json")
    summary = summary if isinstance(summary, dict) else {}
    report["details"] += summary_facts({k: v for k, v in summary.items() if k not in ("learned", "report")},
                                       prefix=name)
    _add_learned(report["learned"], summary.get("learned"))
    if (run_dir / "ledger.jsonl").is_file():
        report["ledger"].append(ledger_section(read_ledger(run_dir / "ledger.jsonl"), name))
    job = job or summary.get("job")
    if job:
        part = job_report(job, run_dir, party, summary=summary, compare=compare)
        if prefix:
            title = TITLES.get(job, name)
            part["learned"] = {role: [f"{title}: {s}" for s in statements]
                               for role, statements in part["learned"].items()}
            part["facts"] = [[label, value, title] for label, value, *_ in part["facts"]]
        merge_report(report, part)
    if party is not None:
        own = _read_json(run_dir / party / REPORT_FILE)
        if isinstance(own, dict):
            merge_report(report, own)
    return report


def merge_report(report, part):
    """Add a partial report's facts, sections, ledgers, statements and notes to ``report``."""
    for key in ("kpis", "facts", "details", "scoring", "personas", "ledger", "notes"):
        report.setdefault(key, [])
        items = part.get(key) or []
        if isinstance(items, (str, dict)):
            items = [items] if key == "notes" and isinstance(items, str) else []
        report[key] += list(items)
    _add_learned(report.setdefault("learned", {}), part.get("learned"))
    for key in ("title", "subtitle", "party"):
        if part.get(key) and not report.get(key):
            report[key] = part[key]
    return report


def _add_learned(target, learned):
    for role, statements in (learned or {}).items():
        if isinstance(statements, str):
            statements = [statements]
        target.setdefault(role, [])
        target[role] += [s for s in statements if s not in target[role]]


def _read_json(path):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
