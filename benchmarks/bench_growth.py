"""Cost growth: how time and bytes on the wire grow with rows and with features.

Two protocols, each measured the way its own benchmark measures it (the code is
imported from there, so the growth figures and the headline figures cannot drift apart):

- PSI in "both" mode at 10k, 100k and 1M IDs per party, end to end through the ``psi``
  job on the local engine (``bench_psi.make_tables`` and ``bench_psi.run_psi_once``),
  median of repeats;
- one epoch of vertical logistic regression (the propensity protocol, CKKS) on
  synthetic tables (``bench_propensity.epoch_speed``): against rows (10k, 100k, 1M) with
  brand 30 + media 30 features, and against the media's features (10, 30, 100, 300)
  with the brand's 30 at 100k rows, which includes FATE's shape (30 + 300).

Bytes on the wire are the sum of ``bytes`` over the run's ledger (for the epoch, over
the epoch's messages). Each epoch is measured in a fresh process, so that its peak
resident memory is its own; the process holds both parties (local engine), the
generated tables and their CSV files as read back.

Before each larger row count of the epoch, its time and peak memory are projected
linearly in rows from the two largest measured so far; a size projected over
``TIME_BUDGET_SECONDS`` or ``MEMORY_BUDGET_BYTES`` is not run, and the notes say so and
give the projection. The row sweep to 1M is at 30 + 30 features; FATE's width (30 + 300)
is measured at 100k rows. What reading and encoding a table costs on its own is measured
in ``bench_tables.py``.

Writes ``growth.json`` and the chart ``growth.png`` (log-log: time and bytes against
rows, and against features at 100k rows).

Run: ``python benchmarks/bench_growth.py`` (``--smoke`` for tiny sizes).
"""

import multiprocessing
import os
import resource
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import median_time, parse_args, write_results  # noqa: E402
from bench_propensity import epoch_speed  # noqa: E402
from bench_psi import make_tables, run_psi_once  # noqa: E402

from fedscore.ledger import read_ledger  # noqa: E402

PSI_SIZES = ((10_000, 3), (100_000, 3), (1_000_000, 1))  # (IDs per party, repeats)
SMOKE_PSI_SIZES = ((200, 1), (400, 1))

BACKEND = "ckks"
BRAND_FEATURES = 30  # FATE's published hetero-LR workload: guest 30 + host 300 features
MEDIA_FEATURES = 30  # the row sweep's width; the feature sweep goes to FATE's 300
EPOCH_ROWS = (10_000, 100_000, 1_000_000)
FEATURE_SWEEP_ROWS = 100_000
FEATURE_SWEEP_MEDIA_FEATURES = (10, 30, 100, 300)

SMOKE_BRAND_FEATURES = 3  # the synthetic labels depend on the first 3 features of each party
SMOKE_MEDIA_FEATURES = 8
SMOKE_EPOCH_ROWS = (200, 400)
SMOKE_FEATURE_SWEEP_ROWS = 400
SMOKE_FEATURE_SWEEP_MEDIA_FEATURES = (4, 8)

TIME_BUDGET_SECONDS = 600.0  # one epoch measurement, tables and setup included
MEMORY_BUDGET_BYTES = 16 * 2**30  # peak resident memory of one epoch measurement, on a 24 GiB machine
KIB, MIB, MB = 1024, 2**20, 1e6
EPOCH_PRELOAD = ("sklearn.linear_model", "tenseal", "fedscore.protocols.propensity.coordinator",
                 "fedscore.protocols.psi.coordinator", "fedscore.runtime.runner")
"""The slow imports behind ``bench_propensity.epoch_speed``, imported once by the fork server."""

PSI_COLUMNS = ["IDs per party", "shared", "repeats", "seconds", "MB on the wire", "bytes per ID"]
EPOCH_COLUMNS = ["rows", "brand features", "media features", "epoch s", "MB on the wire", "peak RSS MiB",
                 "measurement s"]
CHART = "growth.png"


def psi_cost(n, repeats, folder):
    """PSI with ``n`` IDs per party: median seconds and ledger bytes."""
    paths, shared = make_tables(n, folder)
    out = folder / "out"
    seconds, times, (summary, _, _) = median_time(lambda: run_psi_once(paths, out), repeats)
    if summary["intersection"] != shared:
        raise SystemExit(f"PSI found {summary['intersection']} shared IDs, expected {shared}")
    wire = sum(entry["bytes"] for entry in read_ledger(out / "ledger.jsonl"))
    print(f"PSI {n:,} x {n:,}: {seconds:.2f} s (runs {', '.join(f'{t:.2f}' for t in times)}), "
          f"{wire / MB:.1f} MB on the wire")
    return {"IDs": n, "shared": shared, "repeats": repeats, "seconds": seconds, "wire bytes": wire}


def psi_row(cost):
    return [cost["IDs"], cost["shared"], cost["repeats"], round(cost["seconds"], 2),
            round(cost["wire bytes"] / MB, 1), round(cost["wire bytes"] / (2 * cost["IDs"]), 1)]


def epoch_child(rows, brand_features, media_features):
    """Runs in a fresh process: one epoch, with that process's peak memory and total time."""
    start = time.perf_counter()
    seconds, wire = epoch_speed(rows, brand_features, media_features, BACKEND)
    return {"rows": rows, "brand features": brand_features, "media features": media_features,
            "epoch s": seconds, "wire bytes": wire, "measurement s": time.perf_counter() - start,
            "peak bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * KIB}


def fresh_processes():
    """Processes forked from a server that has imported what an epoch needs.

    Each measurement gets a process of its own, so its peak memory is not a previous
    measurement's, without paying seconds of imports again each time (a fork server,
    not a fork of this process: that one has run PSI threads and held their tables).
    The server preloads by module name, from the installed packages: it does not start
    with this folder on its path.
    """
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(EPOCH_PRELOAD))
    return context


def epoch_cost(rows, brand_features, media_features):
    """Measure one epoch in a fresh process, so that its peak memory is its own."""
    with ProcessPoolExecutor(max_workers=1, mp_context=fresh_processes()) as pool:
        cost = pool.submit(epoch_child, rows, brand_features, media_features).result()
    print(f"epoch {rows:,} rows x {brand_features} + {media_features}: {cost['epoch s']:.1f} s, "
          f"{cost['wire bytes'] / MB:.1f} MB on the wire, peak RSS {cost['peak bytes'] / MIB:,.0f} MiB, "
          f"{cost['measurement s']:.0f} s in all")
    return cost


def projected(costs, rows):
    """Measurement seconds and peak bytes at ``rows``, linear through the two largest measured."""
    (r1, t1, m1), (r2, t2, m2) = sorted((c["rows"], c["measurement s"], c["peak bytes"]) for c in costs)[-2:]
    return t2 + (t2 - t1) / (r2 - r1) * (rows - r2), m2 + (m2 - m1) / (r2 - r1) * (rows - r2)


def row_sweep(row_counts, brand_features, media_features, notes):
    """Epoch costs against rows, smallest first, skipping sizes projected over the budgets."""
    costs = []
    for rows in row_counts:
        if len(costs) >= 2:
            seconds, peak = projected(costs, rows)
            if seconds > TIME_BUDGET_SECONDS or peak > MEMORY_BUDGET_BYTES:
                notes.append(
                    f"Epoch at {rows:,} rows not measured: projected linearly from the two largest measured "
                    f"sizes at {seconds:,.0f} s and {peak / 2**30:.1f} GiB peak memory for one measurement, over "
                    f"the budgets of {TIME_BUDGET_SECONDS:.0f} s and {MEMORY_BUDGET_BYTES / 2**30:.0f} GiB.")
                print(notes[-1])
                continue
        costs.append(epoch_cost(rows, brand_features, media_features))
    return costs


def epoch_row(cost):
    return [cost["rows"], cost["brand features"], cost["media features"], round(cost["epoch s"], 2),
            round(cost["wire bytes"] / MB, 1), round(cost["peak bytes"] / MIB), round(cost["measurement s"], 1)]


def growth_exponent(x, y):
    """Slope of log y against log x, to 2 decimals: 1 means linear growth."""
    return round(float(np.polyfit(np.log(x), np.log(y), 1)[0]), 2) + 0.0  # + 0.0: no "-0.00"


def exponent_note(what, variable, x, seconds, wire):
    if len(x) < 2:
        return f"{what}: fewer than two sizes measured, no growth exponent."
    return (f"{what}: time grows as {variable}^{growth_exponent(x, seconds):.2f}, bytes on the wire as "
            f"{variable}^{growth_exponent(x, wire):.2f} (least-squares slope on log-log axes; 1 is linear).")


def draw_chart(path, psi_costs, row_costs, feature_costs, feature_rows):
    """Log-log chart: seconds and MB against rows (PSI and epoch), and against media features."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(2, 2, figsize=(10, 8))
    psi = {"x": [c["IDs"] for c in psi_costs], "seconds": [c["seconds"] for c in psi_costs],
           "MB": [c["wire bytes"] / MB for c in psi_costs]}
    by_rows = {"x": [c["rows"] for c in row_costs], "seconds": [c["epoch s"] for c in row_costs],
               "MB": [c["wire bytes"] / MB for c in row_costs]}
    by_features = {"x": [c["media features"] for c in feature_costs],
                   "seconds": [c["epoch s"] for c in feature_costs],
                   "MB": [c["wire bytes"] / MB for c in feature_costs]}
    epoch_label = f"LR epoch, {BACKEND.upper()}, {row_costs[0]['brand features']} + {row_costs[0]['media features']}"
    for column, quantity, unit in ((0, "seconds", "seconds"), (1, "MB", "MB on the wire")):
        top, bottom = axes[0][column], axes[1][column]
        top.plot(psi["x"], psi[quantity], "o-", label="PSI, both mode (x = IDs per party)")
        top.plot(by_rows["x"], by_rows[quantity], "s-", label=f"{epoch_label} (x = rows)")
        top.set_xlabel("rows")
        bottom.plot(by_features["x"], by_features[quantity], "s-", color="C1",
                    label=f"LR epoch, {feature_rows:,} rows, brand {feature_costs[0]['brand features']}")
        bottom.set_xlabel("media features")
        for axis in (top, bottom):
            axis.set_xscale("log")
            axis.set_yscale("log")
            axis.set_ylabel(unit)
            axis.grid(True, which="both", alpha=0.3)
            axis.legend(fontsize=8)
    figure.suptitle("fedscore cost growth (local engine, both parties on one machine)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main():
    args = parse_args(__doc__.splitlines()[0])
    if args.smoke:
        psi_sizes, epoch_rows = SMOKE_PSI_SIZES, SMOKE_EPOCH_ROWS
        brand_features, media_features = SMOKE_BRAND_FEATURES, SMOKE_MEDIA_FEATURES
        feature_rows, feature_counts = SMOKE_FEATURE_SWEEP_ROWS, SMOKE_FEATURE_SWEEP_MEDIA_FEATURES
    else:
        psi_sizes, epoch_rows = PSI_SIZES, EPOCH_ROWS
        brand_features, media_features = BRAND_FEATURES, MEDIA_FEATURES
        feature_rows, feature_counts = FEATURE_SWEEP_ROWS, FEATURE_SWEEP_MEDIA_FEATURES
    notes = []
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-growth-") as tmp:
        psi_costs = [psi_cost(n, repeats, Path(tmp)) for n, repeats in psi_sizes]
    row_costs = row_sweep(epoch_rows, brand_features, media_features, notes)
    measured = {(c["rows"], c["media features"]): c for c in row_costs}
    feature_costs = [measured.get((feature_rows, d)) or epoch_cost(feature_rows, brand_features, d)
                     for d in feature_counts]
    notes.append(f"1-minute load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after "
                 "(other work on the machine slows every figure of time).")

    args.out.mkdir(parents=True, exist_ok=True)
    draw_chart(args.out / CHART, psi_costs, row_costs, feature_costs, feature_rows)
    notes += [
        exponent_note("PSI against IDs per party", "IDs", [c["IDs"] for c in psi_costs],
                      [c["seconds"] for c in psi_costs], [c["wire bytes"] for c in psi_costs]),
        exponent_note("LR epoch against rows", "rows", [c["rows"] for c in row_costs],
                      [c["epoch s"] for c in row_costs], [c["wire bytes"] for c in row_costs]),
        exponent_note("LR epoch against media features", "features", [c["media features"] for c in feature_costs],
                      [c["epoch s"] for c in feature_costs], [c["wire bytes"] for c in feature_costs]),
        "PSI: both parties learn the intersection, half of each party's IDs shared, end to end through the psi "
        "job (CSV in, files out); bytes per ID = ledger bytes / IDs of both parties.",
        f"LR epoch: the four calls of one full-batch epoch of the propensity protocol ({BACKEND.upper()}), "
        "synthetic standard-normal features; MB on the wire = ledger bytes of the epoch's messages.",
        "peak RSS: the measuring process's high-water mark (ru_maxrss), both parties, the generated tables and "
        "their CSV files read back as strings included; measurement s: tables, PSI, setup and the epoch.",
        "Local engine: no network latency; a Flower deployment adds 8 hops of 3-6 s per epoch.",
    ]
    tables = [
        {"title": "PSI, both mode: time and bytes against IDs per party (median of repeats)",
         "columns": PSI_COLUMNS, "rows": [psi_row(c) for c in psi_costs]},
        {"title": f"One vertical LR epoch ({BACKEND.upper()}) against rows, "
                  f"brand {brand_features} + media {media_features} features",
         "columns": EPOCH_COLUMNS, "rows": [epoch_row(c) for c in row_costs]},
        {"title": f"One vertical LR epoch ({BACKEND.upper()}) against media features, {feature_rows:,} rows, "
                  f"brand {brand_features} features",
         "columns": EPOCH_COLUMNS, "rows": [epoch_row(c) for c in feature_costs]},
    ]
    figures = [{"title": "Cost growth, log-log: time and bytes on the wire against rows and features",
                "path": CHART}]
    path = write_results("growth", args.out, tables, notes, smoke=args.smoke, figures=figures)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
