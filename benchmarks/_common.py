"""What every benchmark script shares: arguments, timing, machine facts, result files.

Each ``bench_*.py`` accepts ``--smoke`` (tiny sizes, used by the test suite so the
scripts cannot rot) and ``--out DIR`` (default ``benchmarks/results``), and writes
``DIR/<name>.json`` with ``tables`` (title, columns, rows) and ``notes``; ``run_all.py``
renders every result file into ``benchmarks/RESULTS.md``.
"""

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import time
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def parse_args(description, extra=None):
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check the script runs")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="folder for the JSON result")
    if extra:
        extra(parser)
    return parser.parse_args()


def median_time(fn, repeats):
    """Run ``fn`` ``repeats`` times; return (median seconds, list of seconds, last result)."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times, result


def machine():
    """Facts about the machine a result was measured on."""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        model = platform.processor()
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        memory = float("nan")
    return {"cpu": model, "cores": os.cpu_count(), "memory_gib": round(memory, 1),
            "python": platform.python_version(), "system": platform.system()}


def write_results(name, out, tables, notes=(), smoke=False, figures=()):
    """Write ``out/<name>.json``; ``tables`` is a list of {title, columns, rows}.

    ``figures`` is a list of {title, path}, each path a file in ``out`` (a chart the
    script saved beside its result), for ``run_all.py`` to show under the tables. The
    key is written only when there are figures, so results without charts keep their
    shape.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": name,
        "date": datetime.date.today().isoformat(),
        "smoke": smoke,
        "machine": machine(),
        "tables": tables,
        "notes": list(notes),
    }
    if figures:
        payload["figures"] = list(figures)
    path = out / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, default=float) + "\n")
    return path


def peak_mib():
    """This process's peak resident memory: the kernel's high-water mark (VmHWM), in MiB.

    ``getrusage``'s ``ru_maxrss`` is not used: Linux carries it across ``execve``, so a
    fresh child would report its parent's peak (the table generator's, say) when larger.
    """
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
