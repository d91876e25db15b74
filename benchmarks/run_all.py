"""Run every benchmark, then render their results into ``benchmarks/RESULTS.md``.

Each ``bench_*.py`` in this folder runs in a Python process of its own (one benchmark's
memory and threads cannot slow the next), in name order, with ``--smoke`` and
``--out`` passed through when given. Rendering reads every ``*.json`` in the results
folder and writes one section per benchmark (its tables, charts and notes), a table of
the dates and machines the results were measured on, and, first, the targets of
BRIEF.md with the figures read out of the results and whether each was met.

The render depends only on the result files: rendering again without new results gives
the same bytes. Smoke results (tiny sizes, written by the test suite's runs) are never
rendered: they are skipped with a message, and ``--smoke`` runs render nothing.

Run::

    python benchmarks/run_all.py                     # every benchmark, then RESULTS.md
    python benchmarks/run_all.py --only psi growth   # some benchmarks, then RESULTS.md
    python benchmarks/run_all.py --render-only       # RESULTS.md from the results at hand
    python benchmarks/run_all.py --smoke --out DIR   # every benchmark at tiny sizes, no render
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS_DIR  # noqa: E402

BENCHMARKS_DIR = Path(__file__).resolve().parent
MARKDOWN = BENCHMARKS_DIR / "RESULTS.md"
SCRIPT_PREFIX = "bench_"
RESULT_KEYS = ("benchmark", "date", "smoke", "machine", "tables", "notes")

# Targets, from BRIEF.md ("Targets").
EPOCH_TARGET_SECONDS = 60.0
EPOCH_TARGET_ROWS = 100_000
EPOCH_TARGET_FEATURES = "30 + 300"  # FATE's workload: brand 30 + media 300, as bench_propensity writes it
PSI_TARGET_SECONDS = 60.0
PSI_TARGET_IDS = 1_000_000
PSI_TARGET_RATIO = 1.5  # fedscore's CPU seconds over SecretFlow's ECDH PSI's, measured in the same run
AUC_TOLERANCE = 0.005
AUC_DIGITS = 4  # the benchmarks round AUCs to 4 decimals
ARI_TARGET = 0.95
ATTACK_AUC_TARGET = 0.6
ATTACK_DEFAULTS_SETTING = "defaults"  # bench_attacks.py names the run at the default options "defaults (...)"
SCORING_TARGET_M_ROWS_PER_MINUTE = 10.0

MET, MISSED, NOT_MEASURED = "met", "missed", "not measured"


class ResultError(Exception):
    """A result file lacks something the render reads from it (a key, a table, a column)."""


# --- running -------------------------------------------------------------------------------

def benchmark_scripts(folder=BENCHMARKS_DIR):
    """Every ``bench_*.py`` in ``folder``, by name: ``{"psi": Path(".../bench_psi.py"), ...}``."""
    return {path.stem[len(SCRIPT_PREFIX):]: path for path in sorted(folder.glob(f"{SCRIPT_PREFIX}*.py"))}


def select(scripts, names):
    """The scripts named in ``names`` (``psi`` or ``bench_psi.py`` alike), in the scripts' order."""
    wanted = {Path(name).stem.removeprefix(SCRIPT_PREFIX) for name in names}
    unknown = sorted(wanted - set(scripts))
    if unknown:
        raise SystemExit(f"unknown benchmark(s): {', '.join(unknown)} (there are: {', '.join(scripts)})")
    return {name: path for name, path in scripts.items() if name in wanted}


def run_benchmarks(scripts, smoke=False, out=None):
    """Run each script in its own process; return the names of those that failed."""
    failed = []
    for name, script in scripts.items():
        command = [sys.executable, str(script)] + (["--smoke"] if smoke else []) + \
            (["--out", str(Path(out).resolve())] if out is not None else [])
        print(f"== {name}: {' '.join(command[1:])}", flush=True)
        start = time.perf_counter()
        code = subprocess.run(command, check=False).returncode
        status = "ok" if code == 0 else f"FAILED (exit status {code})"
        print(f"== {name}: {status} after {time.perf_counter() - start:.0f} s", flush=True)
        if code != 0:
            failed.append(name)
    return failed


# --- reading results -----------------------------------------------------------------------

def load_results(results_dir):
    """Every full-size result in ``results_dir`` by file name, sorted; smoke results are skipped."""
    results = {}
    for path in sorted(Path(results_dir).glob("*.json")):
        result = json.loads(path.read_text(encoding="utf-8"))
        missing = [key for key in RESULT_KEYS if key not in result]
        if missing:
            raise ResultError(f"{path.name}: missing key(s) {', '.join(missing)}")
        if result["smoke"]:
            print(f"skipped {path.name}: written with --smoke (tiny sizes); smoke results are never rendered",
                  file=sys.stderr)
            continue
        results[path.name] = result
    return results


def rows_with(results, file_name, columns):
    """Rows (column name -> value) of every table in ``file_name`` that has all of ``columns``.

    Returns None when there is no full-size result of that name (not measured yet).
    Raises :class:`ResultError` when the result exists but no table has the columns:
    a renamed column must stop the render, never turn a target into "not measured".
    """
    result = results.get(file_name)
    if result is None:
        return None
    tables = [table for table in result["tables"] if set(columns) <= set(table["columns"])]
    if not tables:
        described = "; ".join(f"{table['title']!r}: {', '.join(table['columns'])}" for table in result["tables"])
        raise ResultError(f"{file_name}: no table has the column(s) {', '.join(columns)} (tables: {described})")
    return [dict(zip(table["columns"], row)) for table in tables for row in table["rows"]]


# --- targets -------------------------------------------------------------------------------

def epoch_target(results):
    rows = rows_with(results, "propensity.json", ["backend", "rows measured", "features", "seconds for 100k rows"])
    if rows is None:
        return "no result", NOT_MEASURED
    rows = [r for r in rows if r["backend"] == "ckks" and r["features"] == EPOCH_TARGET_FEATURES
            and r["rows measured"] == EPOCH_TARGET_ROWS]
    if not rows:
        return f"no CKKS epoch measured on {EPOCH_TARGET_ROWS:,} rows × ({EPOCH_TARGET_FEATURES})", NOT_MEASURED
    seconds = max(r["seconds for 100k rows"] for r in rows)
    return f"{seconds} s", MET if seconds <= EPOCH_TARGET_SECONDS else MISSED


def psi_target(results):
    rows = rows_with(results, "psi.json", ["brand IDs", "media IDs", "PSI s"])
    if rows is None:
        return "no result", NOT_MEASURED
    rows = [r for r in rows if r["brand IDs"] == PSI_TARGET_IDS and r["media IDs"] == PSI_TARGET_IDS
            and r.get("implementation", "fedscore") == "fedscore"]  # not the peer's rows, nor the fallback's
    if not rows:
        return f"no {PSI_TARGET_IDS:,} × {PSI_TARGET_IDS:,} run", NOT_MEASURED
    seconds = max(r["PSI s"] for r in rows)
    return f"{seconds} s", MET if seconds <= PSI_TARGET_SECONDS else MISSED


def psi_ratio_target(results):
    """fedscore's CPU seconds at 1M × 1M over SecretFlow's ECDH PSI's of the same run, the larger of the two modes."""
    rows = rows_with(results, "psi.json", ["brand IDs", "media IDs", "PSI s"])
    if rows is None:
        return "no result", NOT_MEASURED
    rows = [r for r in rows if r["brand IDs"] == PSI_TARGET_IDS and r["media IDs"] == PSI_TARGET_IDS
            and r.get("implementation") == "fedscore" and r.get("CPU / SecretFlow ECDH") is not None]
    if not rows:
        return f"no {PSI_TARGET_IDS:,} × {PSI_TARGET_IDS:,} run beside SecretFlow's", NOT_MEASURED
    worst = max(rows, key=lambda r: r["CPU / SecretFlow ECDH"])
    ratios = ", ".join(f"{r['who learns the result']} {r['CPU / SecretFlow ECDH']}× ({r['CPU s']} CPU s)" for r in rows)
    return ratios, MET if worst["CPU / SecretFlow ECDH"] <= PSI_TARGET_RATIO else MISSED


def auc_target(file_name, label, federated, central, keep=None):
    """Federated AUC within ``AUC_TOLERANCE`` of central on every run of ``file_name``.

    ``label`` names the column, or the tuple of columns, that says where the largest gap is;
    ``keep``, a function of a row (column name -> value), leaves out rows the target is not
    about (runs with differential privacy, which trade accuracy for a guarantee by design).
    """
    labels = (label,) if isinstance(label, str) else tuple(label)

    def evaluate(results):
        rows = rows_with(results, file_name, [*labels, federated, central])
        if rows is None:
            return "no result", NOT_MEASURED
        rows = [r for r in rows if keep is None or keep(r)]
        if not rows:
            return "no runs in the table", NOT_MEASURED
        gaps = [(round(abs(r[federated] - r[central]), AUC_DIGITS), ", ".join(str(r[c]) for c in labels))
                for r in rows]
        worst, where = max(gaps)
        text = f"largest gap {worst:.{AUC_DIGITS}f} over {len(rows)} run{'s' if len(rows) > 1 else ''}, on {where}"
        return text, MET if worst <= AUC_TOLERANCE else MISSED
    return evaluate


ATTACK_ALONE = "alone in a category: above chance"
ATTACK_OUTLIER = "numeric outlier: above chance"
"""bench_attacks.py: 0.5 plus the strongest attack's AUC above the chance level of choosing the strongest."""


def attack_target(job, recovered):
    """The strongest attack's AUC on ``job``'s rare users at the default options, against ``ATTACK_AUC_TARGET``."""

    def evaluate(results):
        rows = rows_with(results, "attacks.json", ["job", "recovered", "setting", ATTACK_ALONE, ATTACK_OUTLIER,
                                                   "alone in a category: attack AUC (pooled)",
                                                   "numeric outlier: attack AUC (pooled)", "chance level",
                                                   "chance level (outliers)"])
        if rows is None:
            return "no result", NOT_MEASURED
        rows = [r for r in rows if str(r["setting"]).startswith(ATTACK_DEFAULTS_SETTING) and r["job"] == job
                and r["recovered"] == recovered]
        if not rows:
            return "no run at the default options", NOT_MEASURED
        row = rows[0]
        worst = max(row[ATTACK_ALONE], row[ATTACK_OUTLIER])
        raw = (f" (raw {row['alone in a category: attack AUC (pooled)']} / {row['numeric outlier: attack AUC (pooled)']}"
               f" against chance levels {row['chance level']} / {row['chance level (outliers)']})")
        return (f"alone in a category {row[ATTACK_ALONE]}, numeric outlier {row[ATTACK_OUTLIER]} above chance{raw}",
                MET if worst <= ATTACK_AUC_TARGET else MISSED)
    return evaluate


def quality_ari_target(results):
    rows = rows_with(results, "quality.json", ["capability", "data", "ARI vs scikit-learn (same encoding, same start)"])
    if rows is None:
        return "no result", NOT_MEASURED
    if not rows:
        return "no runs in the table", NOT_MEASURED
    lowest, where = min((r["ARI vs scikit-learn (same encoding, same start)"], f"{r['capability']}, {r['data']}")
                        for r in rows)
    return f"lowest ARI {lowest} over {len(rows)} runs, on {where}", MET if lowest >= ARI_TARGET else MISSED


def ari_target(results):
    rows = rows_with(results, "segment.json", ["data", "ARI"])
    if rows is None:
        return "no result", NOT_MEASURED
    if not rows:
        return "no runs in the table", NOT_MEASURED
    lowest, where = min((r["ARI"], str(r["data"])) for r in rows)
    return f"lowest ARI {lowest} over {len(rows)} runs, on {where}", MET if lowest >= ARI_TARGET else MISSED


def scoring_target(results):
    rows = rows_with(results, "scoring.json", ["format", "rows", "scorer", "M rows / min", "peak RSS MiB"])
    if rows is None:
        return "no result yet (bench_scoring.py)", NOT_MEASURED
    rows = [r for r in rows if r["scorer"] == "fedscore"]
    if not rows:
        return "no fedscore run in the table", NOT_MEASURED
    largest = max(r["rows"] for r in rows)
    rows = sorted((r for r in rows if r["rows"] == largest), key=lambda r: str(r["format"]))
    rates = ", ".join(f"{r['format']} {r['M rows / min']} M rows/min (peak RSS {r['peak RSS MiB']} MiB)"
                      for r in rows)
    slowest = min(r["M rows / min"] for r in rows)
    return f"{largest:,} rows: {rates}", MET if slowest >= SCORING_TARGET_M_ROWS_PER_MINUTE else MISSED


TARGETS = (
    (f"Vertical LR epoch, CKKS, {EPOCH_TARGET_ROWS:,} rows × ({EPOCH_TARGET_FEATURES}) features: "
     f"≤ {EPOCH_TARGET_SECONDS:.0f} s", "propensity.json", epoch_target),
    (f"PSI {PSI_TARGET_IDS:,} × {PSI_TARGET_IDS:,} IDs: ≤ {PSI_TARGET_SECONDS:.0f} s", "psi.json", psi_target),
    (f"PSI {PSI_TARGET_IDS:,} × {PSI_TARGET_IDS:,} IDs, both modes: CPU seconds within {PSI_TARGET_RATIO}× of "
     f"SecretFlow's ECDH PSI in the same run", "psi.json", psi_ratio_target),
    (f"Lookalike: federated AUC within {AUC_TOLERANCE} of central", "lookalike.json",
     auc_target("lookalike.json", "backend", "federated held-out AUC", "central sklearn AUC")),
    (f"Propensity: federated AUC within {AUC_TOLERANCE} of central", "propensity.json",
     auc_target("propensity.json", "data", "federated AUC", "central joint AUC")),
    (f"Horizontal LR: federated AUC within {AUC_TOLERANCE} of central", "horizontal.json",
     auc_target("horizontal.json", "data", "federated AUC", "centralised sklearn AUC")),
    (f"Every capability on bank, default_credit, breast and wholesale at its default options (label DP, limits): "
     f"federated AUC within {AUC_TOLERANCE} of central without DP or limits", "quality.json",
     auc_target("quality.json", ("capability", "data"), "federated AUC", "central AUC",
                keep=lambda row: "label DP" not in str(row["capability"]))),
    (f"The same, opted out (no label DP, no limits): federated AUC within {AUC_TOLERANCE} of central",
     "quality.json", auc_target("quality.json", ("capability", "data"), "federated AUC, opted out", "central AUC")),
    *((f"Privacy at default options, {what}: no attack recovers it for users alone in a category or with an "
       f"outlying value better than AUC {ATTACK_AUC_TARGET}", "attacks.json", attack_target(job, recovered))
      for job, recovered, what in (("lookalike", "seed membership", "lookalike seed membership"),
                                   ("propensity", "label", "propensity labels"),
                                   ("propensity", "training membership", "propensity training membership"))),
    (f"KMeans: ARI ≥ {ARI_TARGET} against central scikit-learn", "segment.json", ari_target),
    (f"KMeans at its default options (encoder limits): ARI ≥ {ARI_TARGET} against central scikit-learn on the same "
     "encoded rows", "quality.json", quality_ari_target),
    (f"Scoring: ≥ {SCORING_TARGET_M_ROWS_PER_MINUTE:.0f}M rows per minute per party", "scoring.json",
     scoring_target),
)
"""(target as BRIEF.md states it, result file, function of the results -> (measured, verdict))."""


# --- rendering -----------------------------------------------------------------------------

def cell(value):
    """A value as a Markdown table cell."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value).replace("|", "\\|").replace("\n", " ")


def is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def markdown_table(columns, rows, where=""):
    """Rows under a header; columns holding only numbers are right-aligned."""
    for row in rows:
        if len(row) != len(columns):
            raise ResultError(f"{where}: a row has {len(row)} cells for {len(columns)} columns: {row}")
    numeric = [bool(rows) and all(is_number(row[j]) or row[j] is None for row in rows) for j in range(len(columns))]
    lines = ["| " + " | ".join(cell(c) for c in columns) + " |",
             "|" + "|".join("---:" if right else "---" for right in numeric) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return lines


def describe_machine(machine):
    return (f"{machine.get('cpu') or 'unknown CPU'}, {machine.get('cores')} cores, {machine.get('memory_gib')} GiB, "
            f"Python {machine.get('python')}, {machine.get('system')}")


def render(results, results_dir, markdown_dir, scripts=()):
    """RESULTS.md's text from ``results`` (as :func:`load_results` returns them).

    ``scripts`` are the benchmark names there are scripts for; those without a result
    are listed, so that a benchmark never run does not go unnoticed.
    """
    results_link = Path(os.path.relpath(results_dir, markdown_dir)).as_posix()
    lines = ["# Benchmark results", "",
             f"Generated by `benchmarks/run_all.py` from the JSON files in `{results_link}/`: change the "
             "benchmarks and run them again, do not edit this file. Times are medians over repeats unless a "
             "table says otherwise; smoke results are never shown here.", ""]
    pending = sorted(set(scripts) - {Path(name).stem for name in results})
    if pending:
        lines += ["No full-size result yet: " + ", ".join(f"`{SCRIPT_PREFIX}{name}.py`" for name in pending) + ".",
                  ""]
    lines += ["## Targets", ""]
    lines += markdown_table(["target (BRIEF.md)", "result", "measured", "verdict"],
                            [[target, file_name, *evaluate(results)] for target, file_name, evaluate in TARGETS],
                            "targets")
    machines = sorted({describe_machine(r["machine"]) for r in results.values()})
    lines += ["", "## Dates and machines", ""]
    if len(machines) == 1:
        lines += [f"Every result was measured on the same machine: {machines[0]}.", ""]
        lines += markdown_table(["result", "date"], [[name, r["date"]] for name, r in results.items()], "dates")
    else:
        lines += markdown_table(["result", "date", "machine"],
                                [[name, r["date"], describe_machine(r["machine"])] for name, r in results.items()],
                                "dates")
    for name, result in results.items():
        lines += ["", f"## {result['benchmark']} (`{SCRIPT_PREFIX}{Path(name).stem}.py`, {result['date']})"]
        for table in result["tables"]:
            lines += ["", f"### {table['title']}", ""]
            lines += markdown_table(table["columns"], table["rows"], f"{name}, table {table['title']!r}")
        for figure in result.get("figures", []):
            if not (Path(results_dir) / figure["path"]).is_file():
                raise ResultError(f"{name}: figure {figure['path']} is not in {results_link}/")
            lines += ["", f"![{figure['title']}]({results_link}/{figure['path']})"]
        if result["notes"]:
            lines += ["", "Notes:", ""] + [f"- {note}" for note in result["notes"]]
    return "\n".join(lines) + "\n"


def write_markdown(results_dir, markdown, scripts=None):
    """Render every full-size result in ``results_dir`` into ``markdown``; return the path."""
    markdown = Path(markdown)
    text = render(load_results(results_dir), Path(results_dir).resolve(), markdown.resolve().parent,
                  benchmark_scripts() if scripts is None else scripts)
    markdown.write_text(text, encoding="utf-8", newline="\n")
    return markdown


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", metavar="NAME",
                        help="run only these benchmarks (psi or bench_psi.py); the render still covers every result")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check the scripts run; renders nothing")
    parser.add_argument("--out", type=Path, help=f"results folder (default {RESULTS_DIR.name}/ beside this script)")
    parser.add_argument("--render-only", action="store_true", help="run nothing, render the results at hand")
    parser.add_argument("--markdown", type=Path, default=MARKDOWN, help="where to write the render")
    args = parser.parse_args(argv)
    if args.smoke and args.render_only:
        parser.error("--smoke results are never rendered, so --smoke --render-only does nothing")
    if args.smoke and args.out is None:
        parser.error("--smoke needs --out: smoke results would overwrite the measured ones")
    return args


def main(argv=None):
    args = parse_args(argv)
    failed = []
    if not args.render_only:
        scripts = benchmark_scripts()
        failed = run_benchmarks(select(scripts, args.only) if args.only else scripts, args.smoke, args.out)
    if args.smoke:
        print("smoke run: nothing rendered (smoke results are never rendered into RESULTS.md)")
    else:
        try:
            path = write_markdown(args.out or RESULTS_DIR, args.markdown)
        except ResultError as error:
            raise SystemExit(f"cannot render: {error}") from None
        print(f"wrote {path}")
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
