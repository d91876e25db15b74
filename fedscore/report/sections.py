"""The content of a report as plain dicts, built from arrays or read from a run folder.

A *report* is a dict; every key is optional and a missing one simply leaves its section
out::

    {
        "title": "fedscore demo",
        "party": "brand",              # whose view this is (None: the run's shared files only)
        "kpis": [["3,000", "customers in common"], ...],   # headline numbers
        "facts": [["matched users", 3000], ...],           # the summary table
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


def persona_section(name, features, means, sizes, *, scales=None, held_by=None, labels=None, min_size=None,
                    suppressed=0, note=None):
    """A segmentation's released profiles as a report section.

    Parameters
    ----------
    features : list of str
        Feature names; ``column=value`` names a one-hot category, whose mean is a share.
    means : array-like, shape (segments, features)
        Each released segment's mean of each feature, in the feature's own units.
    sizes : list of int
        People per released segment.
    scales : list of float or None, optional
        Each feature's standard deviation over the people segmented, where known. A
        share's is derived from the share itself; a number whose spread is unknown
        (another party's column) is scaled by the spread between segments instead.
    labels : list of str, optional
        Segment names; defaults to A, B, C, ...
    min_size : int, optional
        The release threshold, stated in the report.
    suppressed : int
        How many segments fell below ``min_size`` and were not released.

    Returns
    -------
    dict
        Per segment its size, its means and ``z``: how far each mean lies from the
        average of all segments, in standard deviations (what the heat map colours).
    """
    means = np.asarray(means, dtype=float).reshape(len(sizes), len(features))
    weights = np.asarray(sizes, dtype=float)
    labels = list(labels) if labels is not None else [chr(ord("A") + i) for i in range(len(sizes))]
    scales = list(scales) if scales is not None else [None] * len(features)
    overall, z, relative = [], np.full(means.shape, np.nan), []
    for j, feature in enumerate(features):
        column = means[:, j]
        ok = np.isfinite(column) & (weights > 0)
        if not ok.any():
            overall.append(None)
            continue
        average = float(np.average(column[ok], weights=weights[ok]))
        scale = scales[j]
        if (scale is None or not np.isfinite(scale)) and "=" in feature:
            scale = float(np.sqrt(average * (1 - average))) if 0 < average < 1 else None
        elif scale is None or not np.isfinite(scale):
            spread = float(np.sqrt(np.average((column[ok] - average) ** 2, weights=weights[ok])))
            scale = spread or None
            relative.append(feature)
        if scale:
            z[ok, j] = (column[ok] - average) / scale
        overall.append(average)
    return {
        "name": name, "held_by": held_by, "note": note, "features": list(features),
        "kinds": ["share" if "=" in f else "number" for f in features], "overall": overall,
        "relative": relative, "min_size": min_size, "suppressed": int(suppressed),
        "segments": [{"segment": str(label), "size": int(size), "means": _floats(row), "z": _floats(zrow)}
                     for label, size, row, zrow in zip(labels, sizes, means, z)],
    }


def _floats(values):
    return [float(v) if np.isfinite(v) else None for v in values]


def ledger_section(entries, name=None):
    """Bytes, messages and message kinds per direction, from ledger entries (never values).

    Returns
    -------
    dict
        ``{"name", "messages", "bytes", "directions": {"brand -> coordinator": {"messages",
        "bytes", "payloads": {category: bytes}, "steps": {step: count}}}}``
    """
    directions = {}
    for entry in entries:
        key = f"{entry['sender']} -> {entry['receiver']}"
        d = directions.setdefault(key, {"sender": entry["sender"], "receiver": entry["receiver"],
                                        "messages": 0, "bytes": 0, "payloads": {}, "steps": {}})
        d["messages"] += 1
        d["bytes"] += int(entry.get("bytes", 0))
        d["steps"][entry["step"]] = d["steps"].get(entry["step"], 0) + 1
        for field in entry.get("fields", {}).values():
            d["payloads"][field["payload"]] = d["payloads"].get(field["payload"], 0) + int(field["bytes"])
    return {
        "name": name,
        "messages": sum(d["messages"] for d in directions.values()),
        "bytes": sum(d["bytes"] for d in directions.values()),
        "directions": directions,
    }


def merge_directions(ledgers):
    """Add up the directions of several ledger sections (for one chart over a whole demo)."""
    total = {}
    for ledger in ledgers:
        for key, d in ledger.get("directions", {}).items():
            t = total.setdefault(key, {"sender": d.get("sender"), "receiver": d.get("receiver"),
                                       "messages": 0, "bytes": 0, "payloads": {}, "steps": {}})
            t["messages"] += d.get("messages", 0)
            t["bytes"] += d.get("bytes", 0)
            for k, v in d.get("payloads", {}).items():
                t["payloads"][k] = t["payloads"].get(k, 0) + v
            for k, v in d.get("steps", {}).items():
                t["steps"][k] = t["steps"].get(k, 0) + v
    return dict(sorted(total.items(), key=_direction_order))


def _direction_order(item):
    d = item[1]
    # party -> coordinator first, then coordinator -> party, each by party name
    return (d.get("sender") == COORDINATOR, d.get("receiver") if d.get("sender") == COORDINATOR else d.get("sender"))


def received(ledgers, role):
    """What ``role`` received over the run, by payload category: ``{category: bytes}`` and a count."""
    payloads, messages = {}, 0
    for ledger in ledgers:
        for d in ledger.get("directions", {}).values():
            if d.get("receiver") == role:
                messages += d.get("messages", 0)
                for k, v in d.get("payloads", {}).items():
                    payloads[k] = payloads.get(k, 0) + v
    return messages, payloads


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


def read_run(run_dir, party=None, name=None):
    """Collect a run folder's report content as seen by ``party``.

    Reads ``summary.json`` (its scalars become ``details``) and ``ledger.jsonl``, which
    the run shares, and, when ``party`` is given, ``<run_dir>/<party>/report.json``:
    never another party's folder. Missing files are skipped.

    Returns
    -------
    dict
        A partial report (see the module docstring).
    """
    run_dir = Path(run_dir)
    name = name or run_dir.name
    report = {"facts": [], "details": [], "scoring": [], "personas": [], "ledger": [], "learned": {}, "notes": []}
    summary = _read_json(run_dir / "summary.json")
    if isinstance(summary, dict):
        report["details"] += summary_facts({k: v for k, v in summary.items() if k not in ("learned", "report")},
                                           prefix=name)
        _add_learned(report["learned"], summary.get("learned"))
    if (run_dir / "ledger.jsonl").is_file():
        report["ledger"].append(ledger_section(read_ledger(run_dir / "ledger.jsonl"), name))
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
