"""One self-contained HTML page per run: it opens offline, charts embedded as PNG.

:func:`build_report` turns a report dict (see :mod:`fedscore.report.sections`) into the
page and its charts; :func:`save_report` writes both, the PNGs beside the page;
:func:`write_report` does all of it from run folders. The page holds no script, no
stylesheet link and no external URL: everything it shows is in the file.
"""

import base64
import datetime
import html
import math
import re
from pathlib import Path

from .. import metrics
from .._version import __version__
from ..ledger import COORDINATOR
from . import charts, sections
from .jobs import EACH_PARTY
from .sections import direction_order, merge_directions, merge_report, read_run, received

PAYLOAD_MEANING = {
    "ciphertext": "values encrypted under a party's key or sealed for one party: the coordinator relays them "
                  "unread, and the receiver reads only what the protocol releases to it",
    "released": "results the protocol releases to the receiving party by design (listed under what each party "
                "learned); encrypted or sealed in transit, read by that party only",
    "blinded_ids": "identifiers raised to a secret exponent; they cannot be linked to a person without it",
    "masked_value": "values hidden under a random mask that only the other party holds",
    "public_parameter": "public keys, encryption parameters and agreed settings",
    "aggregate": "aggregates released by design (counts, AUC, profiles of large enough groups)",
    "size": "counts of rows or items",
    "output": "per-person results the protocol exists to deliver to this party",
    "control": "step names, acknowledgements and status",
}
"""Plain-language meaning of each ledger payload category."""

_CSS = """
body{font-family:-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:#1d2530;
margin:0;background:#f4f6f9;line-height:1.45}
main{max-width:1120px;margin:0 auto;padding:24px 28px 48px;background:#fff;min-height:100vh}
header{border-bottom:3px solid #1f5fa8;margin-bottom:18px;padding-bottom:10px}
h1{font-size:26px;margin:0 0 4px}h2{font-size:20px;margin:30px 0 8px;border-bottom:1px solid #dde3ea;
padding-bottom:4px}h3{font-size:16px;margin:20px 0 6px}
.sub{color:#5a6573;font-size:14px}.badge{display:inline-block;font-size:12px;padding:1px 8px;border-radius:10px;
background:#e6eef8;color:#1f5fa8;margin-left:8px;vertical-align:middle;font-weight:normal}
table{border-collapse:collapse;margin:8px 0 12px;font-size:14px}
th,td{border-bottom:1px solid #e3e7ec;padding:5px 12px 5px 0;text-align:left;vertical-align:top}
th{color:#5a6573;font-weight:600;font-size:13px}td.num,th.num{text-align:right;padding-left:12px}
.figs{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:14px;align-items:start}
.figs figure{margin:0}.figs .wide{grid-column:1/-1}img{max-width:100%;height:auto;border:1px solid #eef0f3}
figcaption{font-size:12px;color:#5a6573}.note{color:#5a6573;font-size:14px;margin:2px 0 8px}
.warn{color:#7a4b00;background:#fff5e0;border-left:3px solid #e0a030;font-size:14px;padding:4px 10px;margin:4px 0 8px}
.kpis{display:flex;flex-wrap:wrap;gap:12px;margin:8px 0}.kpi{border:1px solid #dde3ea;border-radius:6px;
padding:8px 14px;min-width:120px}.kpi b{display:block;font-size:22px}.kpi span{font-size:12px;color:#5a6573}
.learned{display:grid;grid-template-columns:repeat(auto-fit,minmax(300px,1fr));gap:12px}
.learned div{border:1px solid #dde3ea;border-radius:6px;padding:8px 14px}.learned h3{margin-top:4px}
.learned ul{padding-left:18px;margin:4px 0}footer{margin-top:36px;font-size:12px;color:#5a6573}
code{font-size:12px;background:#f1f3f6;padding:0 3px;border-radius:3px}
td.num,td.nowrap{white-space:nowrap}td.interval{text-align:right;padding-left:12px;white-space:pre}td.small{font-size:12px;color:#3d4753}
tr.group th{padding-top:14px;color:#1d2530;font-size:14px}details{margin-top:24px}summary{cursor:pointer;color:#1f5fa8;font-size:14px}
"""


def build_report(report):
    """Render a report dict as one self-contained HTML page.

    Parameters
    ----------
    report : dict
        See :mod:`fedscore.report.sections`; every key is optional.

    Returns
    -------
    page : str
        The HTML document, charts embedded as base64 PNG.
    images : dict of str to bytes
        The same charts by file name (``gain-1.png``, ...), to write beside the page.
    """
    party = report.get("party")
    page = _Page()
    scoring = [s for s in report.get("scoring") or () if _visible(s, party)]
    personas = [s for s in report.get("personas") or () if _visible(s, party)]
    hidden = len(report.get("scoring") or ()) + len(report.get("personas") or ()) - len(scoring) - len(personas)
    ledgers = [entry for entry in report.get("ledger") or () if entry.get("directions")]

    title = report.get("title") or "fedscore report"
    view = f"what the {party} sees" if party else "the run's shared records"
    page.add(f"<header><h1>{_e(title)}</h1><div class='sub'>{_e(report.get('subtitle') or '')}"
             f"{' · ' if report.get('subtitle') else ''}Report of {_e(view)} · fedscore {_e(__version__)} · "
             f"{datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}</div></header>")

    page.add(_summary(report, scoring, ledgers))
    if scoring:
        page.add("<h2>Scoring quality</h2>")
        for i, section in enumerate(scoring, 1):
            page.add(_scoring(section, i, page))
    if personas:
        page.add("<h2>Personas</h2>")
        for i, section in enumerate(personas, 1):
            page.add(_personas(section, i, page))
    if ledgers or report.get("learned"):
        page.add(_privacy(report, ledgers, page))
    if hidden:
        page.add(f"<p class='note'>{hidden} section(s) held by another party are not part of this view.</p>")
    if report.get("details"):
        page.add("<details><summary>Run summaries, as each job returned them</summary>"
                 + _table(["", "value"], [[label, _fmt(value)] for label, value in report["details"]], num_cols={1})
                 + "</details>")
    if not (scoring or personas or ledgers or report.get("facts") or report.get("details")):
        page.add("<p class='note'>This run folder holds no results to report yet.</p>")
    page.add("<footer><p>Every number in this report is an aggregate; no row of either party's data "
             "is in this file. Charts are also saved as PNG files beside it.</p></footer>")
    document = ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
                "<meta name='viewport' content='width=device-width, initial-scale=1'>"
                f"<title>{_e(title)}</title><style>{_CSS}</style></head><body><main>"
                + "\n".join(page.parts) + "</main></body></html>\n")
    return document, page.images


def save_report(report, out_dir, name="report"):
    """Write ``<out_dir>/<name>.html`` and its charts as ``<out_dir>/<name>-*.png``.

    Returns
    -------
    pathlib.Path
        The HTML file.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    document, images = build_report(report)
    for old in out_dir.glob(f"{name}-*.png"):
        old.unlink()
    for filename, png in images.items():
        (out_dir / f"{name}-{filename}").write_bytes(png)
    path = out_dir / f"{name}.html"
    path.write_text(document, encoding="utf-8")
    return path


def write_report(run_dir, out_dir=None, *, party=None, title=None, subtitle=None, extra=None, name=None, job=None,
                 label=None, compare=None):
    """Build a party's report from one or several run folders and write it.

    Parameters
    ----------
    run_dir : path, list of paths, or dict of name to path
        A run folder as written by :func:`fedscore.runtime.run_job` (``summary.json``,
        ``ledger.jsonl``, one folder per party), or several (the phases of a demo). In a
        dict, a name that is a job's name says which job ran there.
    out_dir : path, optional
        Where to write ``<party>.html`` and its PNGs; defaults to ``<run_dir>/report``
        (for several runs, the first run's parent ``/report``).
    party : str, optional
        Whose view: only that party's folder is read besides the shared files. Without
        it, only the shared files are used.
    title, subtitle : str, optional
    extra : dict, optional
        A partial report merged in before the run folders (facts about the inputs,
        notes, sections, statements).
    name : str, optional
        File name without extension; defaults to the party's name (or ``report``).
    job : str, optional
        The job of a single run folder, when its summary does not name it.
    label : str, optional
        What a single run is called on the page (the output folder the user named);
        defaults to the folder's name.
    compare : dict of str to list of dict, optional
        Other models of the party's, by run name, shown beside that run's model (see
        :func:`fedscore.report.jobs.job_report`).

    Returns
    -------
    pathlib.Path
        The HTML file.
    """
    from ..protocols import JOBS

    if isinstance(run_dir, dict):
        runs = [(run_name, Path(path), run_name if run_name in JOBS else None) for run_name, path in run_dir.items()]
    elif isinstance(run_dir, (list, tuple)):
        runs = [(Path(p).name, Path(p), None) for p in run_dir]
    else:
        runs = [(label or Path(run_dir).name, Path(run_dir), job)]
    if not runs:
        raise ValueError("no run folder given")
    report = {"title": title or "fedscore report", "subtitle": subtitle, "party": party}
    if extra:
        merge_report(report, extra)
    for run_name, path, run_job in runs:
        merge_report(report, read_run(path, party=party, name=run_name, job=run_job, prefix=len(runs) > 1,
                                      compare=(compare or {}).get(run_name, ())))
    if out_dir is None:
        out_dir = (runs[0][1] if len(runs) == 1 else runs[0][1].parent) / "report"
    return save_report(report, out_dir, name=name or party or "report")


class _Page:
    def __init__(self):
        self.parts = []
        self.images = {}

    def add(self, part):
        if part:
            self.parts.append(part)

    def figure(self, filename, png, caption, wide=False):
        self.images[filename] = png
        data = base64.b64encode(png).decode("ascii")
        return (f"<figure{' class=wide' if wide else ''}><img alt='{_e(caption)}' "
                f"src='data:image/png;base64,{data}'><figcaption>{_e(caption)} "
                f"(<code>{_e(filename)}</code>)</figcaption></figure>")


def _visible(section, party):
    holder = section.get("held_by")
    return party is None or holder in (None, party, "both")


def _summary(report, scoring, ledgers):
    kpis = [(str(value), str(label)) for value, label in report.get("kpis") or ()]
    for section in scoring[:4]:
        if _finite(section.get("auc")):
            kpis.append((f"{section['auc']:.3f}", f"AUC · {section.get('short') or section.get('name', '')}"))
    total = sum(entry.get("bytes", 0) for entry in ledgers)
    messages = sum(entry.get("messages", 0) for entry in ledgers)
    if ledgers:
        kpis.append((charts.human_bytes(total), f"crossed a party boundary in {messages:,} messages"))
    facts = report.get("facts") or []
    notes = list(dict.fromkeys(report.get("notes") or ()))
    if not (kpis or facts or notes):
        return ""
    out = ["<h2>Summary</h2>"]
    if kpis:
        out.append("<div class='kpis'>" + "".join(f"<div class='kpi'><b>{_e(v)}</b><span>{_e(label)}</span></div>"
                                                  for v, label in kpis) + "</div>")
    if facts:
        out.append(_facts(facts))
    out += [f"<p class='note'>{_e(note)}</p>" for note in notes]
    return "\n".join(out)


def _facts(facts):
    """The facts table; a fact's optional third item names its group (a run of a page over several)."""
    body, group = [], None
    for label, value, *rest in facts:
        if rest and rest[0] != group:
            group = rest[0]
            body.append(f"<tr class='group'><th colspan=2>{_e(group)}</th></tr>")
        body.append(f"<tr><td>{_e(label)}</td><td class=num>{_e(_fmt(value))}</td></tr>")
    return f"<table><thead><tr><th></th><th class=num>value</th></tr></thead><tbody>{''.join(body)}</tbody></table>"


def _scoring(section, index, page):
    name = section.get("name") or f"Model {index}"
    population = section.get("population") or "people scored"
    out = [f"<h3>{_e(name)}{_badge(section)}</h3>"]
    if section.get("note"):
        out.append(f"<p class='note'>{_e(section['note'])}</p>")
    positives, rows_scored = section.get("positives"), section.get("rows")
    counted = isinstance(positives, int) and isinstance(rows_scored, int)
    out += [f"<p class='warn'>{_e(text[0].upper() + text[1:])}.</p>" for text in metrics.reliability_warnings(
        positives if counted else None, section.get("lift_at_10pct"), "these figures")]
    models = [dict(section, label=section.get("label") or name)] + list(section.get("compare") or ())
    columns = [(k, h) for k, h in (("auc", "AUC (95 % interval)" if counted else "AUC"), ("ks", "KS"),
                                   ("lift_at_10pct", "lift in top 10 %")) if any(_finite(m.get(k)) for m in models)]

    def cell(model, key):
        if key == "auc" and counted and _finite(model.get("auc")):
            low, high = metrics.auc_interval(model["auc"], positives, rows_scored - positives)
            return f"{model['auc']:.3f} ({low:.3f}–{high:.3f})"
        return _fmt(model.get(key), "×" if key.startswith("lift") else "")

    rows = [[model.get("label", "")] + [cell(model, k) for k, _ in columns]
            for model in models if any(_finite(model.get(k)) for k, _ in columns)]
    if rows:
        out.append(_table(["model"] + [h for _, h in columns], rows, num_cols=set(range(1, len(columns) + 1))))
    out += [f"<p class='note'>{_e(m['note'])}</p>" for m in models[1:] if m.get("note")]
    facts = [f"{section['rows']:,} {population}" if isinstance(section.get("rows"), int) else None,
             f"{section['positives']:,} {section.get('positives_label') or 'positives'}"
             if isinstance(section.get("positives"), int) else None]
    if any(facts):
        out.append(f"<p class='note'>Measured on {_e(', '.join(f for f in facts if f))}.</p>")
    curves = [{"label": m.get("label", ""), **(m.get("gain") or {})} for m in models if m.get("gain")]
    base_rate = None
    if section.get("rows") and section.get("positives") is not None:
        base_rate = section["positives"] / section["rows"]
    rows_scored = rows_scored if isinstance(rows_scored, int) else None
    figures = []
    if curves:
        figures.append(page.figure(f"gain-{index}.png",
                                   charts.gain_chart(curves, base_rate=base_rate, population=population),
                                   f"Cumulative gain: share of the positives reached by targeting the top-scored "
                                   f"{population}"))
        figures.append(page.figure(f"lift-{index}.png",
                                   charts.lift_chart(curves, rows=rows_scored, population=population),
                                   f"Lift: how many times the overall positive rate the top-scored {population} "
                                   "reach, from the top 1 % on"))
    audiences = section.get("audiences") or []
    if audiences or (curves and base_rate is not None):
        png = charts.audience_chart(audiences, curve=section.get("gain"), rows=section.get("rows"),
                                    positives=section.get("positives"), population=population)
        figures.append(page.figure(f"audience-{index}.png", png,
                                   f"Audience size ({population}) vs precision and recall"))
    if audiences:
        figures.append(f"<div><h3>Audiences of {_e(population)}</h3>" + _table(
            [f"top of the {population}", f"{population} in it", "precision", "recall", "lift"],
            [[_audience_size(a.get("size")), _fmt(a.get("count")), *_audience_figures(a, base_rate, positives)]
             for a in audiences],
            num_cols={1, 2, 3, 4}, classes={2: "interval", 3: "interval", 4: "interval"}) + "<p class='note'>Precision: share of the audience that is positive. "
            "Recall: share of all positives that the audience reaches. Lift: precision over the overall "
            f"positive rate. Every count here is of {_e(population)}; in brackets, 95 % intervals (Wilson's, "
            "from the counts).</p></div>")
    if figures:
        out.append("<div class='figs'>" + "".join(figures) + "</div>")
    return "\n".join(out)


def _audience_figures(audience, base_rate, positives):
    """Precision, recall and lift of one audience row, each with its 95 % interval where the counts allow."""
    precision, recall, lift, count = (audience.get(k) for k in ("precision", "recall", "lift", "count"))
    if not (isinstance(count, int) and _finite(precision)):
        return [_pct(precision), _pct(recall), _fmt(lift, "×")]
    hits = round(precision * count)
    low, high = metrics.proportion_interval(hits, count)
    figures = [f"{_pct(precision)}\n{_span(100 * low, 100 * high, ' %')}"]
    if isinstance(positives, int) and positives > 0 and _finite(recall):
        low, high = metrics.proportion_interval(hits, positives)
        figures.append(f"{_pct(recall)}\n{_span(100 * low, 100 * high, ' %')}")
    else:
        figures.append(_pct(recall))
    if base_rate and _finite(lift):
        low, high = metrics.lift_interval(hits, count, base_rate)
        figures.append(f"{_fmt(lift, '×')}\n{_span(low, high, '×')}")
    else:
        figures.append(_fmt(lift, "×"))
    return figures


def _span(low, high, unit):
    """A 95 % interval in few characters, for under its figure: ``(21–100 %)``, ``(0.65–3.2×)``."""
    digits = 0 if unit == " %" else 2
    return f"({low:.{digits}f}–{high:.{digits}f}{unit})"


def _personas(section, index, page):
    name = section.get("name") or f"Segmentation {index}"
    out = [f"<h3>{_e(name)}{_badge(section)}</h3>"]
    if section.get("note"):
        out.append(f"<p class='note'>{_e(section['note'])}</p>")
    segments = section.get("segments") or []
    features = section.get("features") or []
    kinds = section.get("kinds") or ["share" if "=" in f else "number" for f in features]
    overall = section.get("overall") or [None] * len(features)
    total = sum(s.get("size", 0) for s in segments) or None
    rows = []
    for s in segments:
        means = s.get("means") or []
        change = s.get("vs_average") or [None] * len(features)
        weight = s.get("weight") or change
        ranked = sorted((i for i, w in enumerate(weight) if w is not None and i < len(features) and i < len(means)
                         and change[i] is not None and w > 0), key=lambda i: -weight[i])[:3]
        traits = "; ".join(
            f"{features[i]} {charts.format_value(means[i], kinds[i])}"
            + (f" vs {charts.format_value(overall[i], kinds[i])} on average" if overall[i] is not None else "")
            + f" ({charts.format_change(change[i])})" for i in ranked)
        rows.append([s.get("segment", ""), _fmt(s.get("size")), _pct(s["size"] / total) if total else "", traits])
    if rows:
        out.append(_table(["persona", "people", "share", "most distinctive features"], rows, num_cols={1, 2}))
    threshold, suppressed = section.get("min_size"), int(section.get("suppressed") or 0)
    if threshold or suppressed:
        size = f"at least {_fmt(threshold)} people" if threshold else "the release threshold"
        out.append(f"<p class='note'>Profiles are released only for personas of {size}; {suppressed} persona(s) "
                   "below that were withheld.</p>")
    if segments and features:
        png = charts.persona_chart(features, segments, kinds=kinds)
        caption = ("Persona profiles: each cell is the persona's average (the share of its people for a category), "
                   "coloured by how far it lies from the average of all the personas' people, as a share of that "
                   "average (capped at ±100 %)")
        out.append("<div class='figs'>" + page.figure(f"personas-{index}.png", png, caption, wide=True) + "</div>")
        out.append("<p class='note'>The colour scale is computed from the released averages alone, so every party "
                   "that holds them draws the same colours: a small difference stays pale whatever the column's "
                   "units. Categories held by fewer than "
                   f"{100 * sections.MIN_TRAIT_SHARE:.0f} % of a persona and of everyone count for less among its "
                   "distinctive features.</p>")
    return "\n".join(out)


def _privacy(report, ledgers, page):
    out = ["<h2>Privacy ledger</h2>",
           "<p class='note'>Every message that crossed a party boundary, as recorded by the coordinator: who sent "
           "it, what it was for and how many bytes of each kind it carried. The ledger never holds a value.</p>"]
    out.append(_learned(report, ledgers))
    if ledgers:
        rows, steps = [], []
        for entry in ledgers:
            for key, d in sorted(entry["directions"].items(), key=lambda kv: direction_order(kv[1])):
                phases = "; ".join(f"{words} ({n:,} message{'s' if n > 1 else ''})"
                                   for words, n in d.get("phases", {}).items())
                payloads = ", ".join(f"{charts.PAYLOAD_LABELS.get(p, p)} {charts.human_bytes(b)}"
                                     for p, b in sorted(d.get("payloads", {}).items(), key=lambda kv: -kv[1]))
                rows.append([entry.get("name") or "", key.replace(" -> ", " → "), _fmt(d.get("messages")),
                             charts.human_bytes(d.get("bytes", 0)), phases, payloads])
                steps.append([entry.get("name") or "", key.replace(" -> ", " → "),
                              ", ".join(f"{step} ×{n}" if n > 1 else step for step, n in d.get("steps", {}).items())])
        out.append("<h3>Messages by direction</h3>")
        out.append(_table(["run", "direction", "messages", "bytes", "what for", "what they carried"],
                          rows, num_cols={2, 3}, classes={1: "nowrap", 4: "small", 5: "small"}))
        directions = merge_directions(ledgers)
        out.append("<div class='figs'>" + page.figure("ledger.png", charts.ledger_chart(directions),
                                                      "Bytes per direction and kind", wide=True) + "</div>")
        out.append("<details><summary>Protocol step names, as the specifications and the ledger file name them"
                   "</summary>" + _table(["run", "direction", "steps (× messages)"], steps,
                                         classes={1: "nowrap", 2: "small"}) + "</details>")
    used = sorted({p for entry in ledgers for d in entry["directions"].values() for p in d.get("payloads", {})})
    if used:
        out.append("<h3>Kinds of payload</h3>")
        out.append(_table(["kind", "what it is"],
                          [[charts.PAYLOAD_LABELS.get(p, p), PAYLOAD_MEANING.get(p, "")] for p in used]))
    return "\n".join(out)


def _learned(report, ledgers):
    learned = report.get("learned") or {}
    party = report.get("party")
    receivers = [d.get("receiver") for entry in ledgers for d in entry["directions"].values()]
    roles = [r for r in dict.fromkeys([*learned, *receivers]) if r and r != EACH_PARTY]
    if EACH_PARTY in learned:
        # a horizontal job, any number of parties: this party's box (or one for every party) and the coordinator's
        roles = [r for r in roles if r == COORDINATOR or (r == party and party is not None)]
        if party is None or party not in roles:
            roles.insert(0, EACH_PARTY)
    roles.sort(key=lambda r: (r == COORDINATOR, r != party, r))
    if not roles:
        return ""
    boxes = []
    for role in roles:
        statements = learned.get(role) or ([] if role == COORDINATOR else learned.get(EACH_PARTY, []))
        items = [f"<li>{_e(_sentence(s))}</li>" for s in statements]
        messages, payloads, results = received(ledgers, role)
        if messages:
            total = sum(payloads.values())
            plural = "message" if messages == 1 else "messages"
            text = f"Received {messages:,} {plural} ({charts.human_bytes(total)})"
            if results:
                text += ". Released to it by design: " + "; ".join(
                    f"{what} ({charts.human_bytes(b)})" for what, b in sorted(results.items(), key=lambda kv: -kv[1]))
            rest = {p: b for p, b in payloads.items() if p != "released"}
            if rest:
                text += (". The rest: " if results else ": ") + ", ".join(
                    f"{charts.PAYLOAD_LABELS.get(p, p)} {charts.human_bytes(b)}"
                    for p, b in sorted(rest.items(), key=lambda kv: -kv[1]))
            items.append(f"<li class='measured'>{_e(text)}.</li>")
        title = role if role != party else f"{role} (this report)"
        if role == EACH_PARTY:
            title = "each party"
        boxes.append(f"<div><h3>{_e(title)}</h3><ul>{''.join(items)}</ul></div>")
    return ("<h3>What each party learned</h3><p class='note'>In plain words, from each protocol's specification; "
            "what each received is measured from the ledger.</p>"
            f"<div class='learned'>{''.join(boxes)}</div>")


def _sentence(text):
    text = str(text).strip()
    return text[:1].upper() + text[1:]


def _badge(section):
    holder = section.get("held_by")
    return f"<span class='badge'>held by {_e(holder)}</span>" if holder else ""


def _table(header, rows, num_cols=(), classes=None):
    def cls(i):
        name = (classes or {}).get(i) or ("num" if i in num_cols else None)
        return f" class={name}" if name else ""

    head = "".join(f"<th{' class=num' if i in num_cols else ''}>{_e(h)}</th>" for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(f"<td{cls(i)}>{_e(c)}</td>" for i, c in enumerate(row)) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _e(value):
    return html.escape("" if value is None else str(value), quote=True)


def _finite(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _fmt(value, suffix=""):
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}{suffix}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "–"
        if value.is_integer() and abs(value) >= 1000:
            return f"{int(value):,}{suffix}"
        if abs(value) >= 100:
            return f"{value:.3g}{suffix}"
        return f"{value:.2f}{suffix}" if suffix else f"{value:.3f}"
    return str(value)


def _pct(value):
    return f"{100 * value:.1f} %" if _finite(value) else "–"


def _audience_size(size):
    if isinstance(size, float) and 0 < size <= 1:
        text = f"{100 * size:.1f}".rstrip("0").rstrip(".")
        return f"top {text} %"
    if isinstance(size, (int, float)):
        return f"top {int(size):,}"
    return re.sub(r"\s+", " ", str(size))
