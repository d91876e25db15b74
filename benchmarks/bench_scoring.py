"""Scoring at scale: 10M rows of Parquet and CSV scored in chunks, against loading the whole file.

Target (BRIEF.md): a party scores 10M rows per minute or better, with bounded memory.
A media-like audience table (an ID, 20 numeric behaviour columns, 2 text columns) is
generated at 1M and 10M rows, as Parquet and as CSV, with a lookalike model over its
columns. Each measurement runs in a fresh Python process, so that its peak resident
memory is its own:

- fedscore: ``fedscore score`` (the command line, called in-process after the imports)
  streams the table in chunks and writes ``ID, score`` as CSV;
- baseline: what scoring looks like without a streaming path, in the same run: pandas
  reads the whole file, numpy standardises, one-hot encodes and takes the dot product,
  pandas writes the same CSV.

Rows per minute use the median wall time of the repeats, from the command's start to
the score file in place (interpreter start-up and imports excluded). Peak memory is the
measuring process's ``VmHWM`` (``/proc/self/status``) at its end: the kernel's
high-water mark of resident memory, not a sample; the same figure just after the
imports is reported as the floor under it.

Run: ``python benchmarks/bench_scoring.py`` (``--smoke`` for tiny sizes).
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import parse_args, peak_mib, write_results  # noqa: E402

from fedscore.kit.encoder import FeatureEncoder  # noqa: E402
from fedscore.kit.model import ModelFile  # noqa: E402
from fedscore.kit.table import PartyTable  # noqa: E402
from fedscore.params import DEFAULT_CHUNK_ROWS  # noqa: E402

SIZES = ((1_000_000, 3, 3), (10_000_000, 3, 1))  # (rows, fedscore repeats, baseline repeats)
SMOKE_SIZES = ((3_000, 1, 1),)
SMOKE_CHUNK_ROWS = 1_000  # several chunks, the last one short, even at smoke size
TARGET_ROWS_PER_MINUTE = 10_000_000  # BRIEF.md, "Targets"
GENERATION_ROWS = 1_000_000  # rows generated and written at a time (one Parquet row group each)
COMPARED_ROWS = 100_000  # leading rows of each score file checked against the baseline's
NUMERIC_FEATURES = 20
DEVICES = ("android", "ios", "web")
REGIONS = tuple(f"region_{i}" for i in range(8))
ID_COLUMN = "uid"
FORMATS = ("parquet", "csv")


def feature_block(start, rows, rng):
    """``rows`` audience rows from ``start`` on: counts, durations, rates, scores, two text columns."""
    columns = {ID_COLUMN: pc.binary_join_element_wise("u", pc.cast(pa.array(np.arange(start, start + rows)),
                                                                   pa.string()), "")}
    for j in range(NUMERIC_FEATURES):
        kind = j % 4
        if kind == 0:
            values = rng.poisson(3 + j, rows).astype(float)  # visits, clicks
        elif kind == 1:
            values = np.round(rng.gamma(2.0, 10.0 + j, rows), 1)  # minutes, seconds
        elif kind == 2:
            values = np.round(rng.beta(2.0, 5.0, rows), 4)  # rates
        else:
            values = np.round(rng.normal(0.0, 1.0 + j, rows), 3)  # model scores, deltas
        columns[f"f{j:02d}"] = values
    columns["device"] = pa.array(np.asarray(DEVICES)[rng.integers(0, len(DEVICES), rows)])
    columns["region"] = pa.array(np.asarray(REGIONS)[rng.integers(0, len(REGIONS), rows)])
    return pa.table(columns)


def make_tables(rows, folder, seed=0):
    """Write ``audience.parquet`` and ``audience.csv`` with the same ``rows`` rows, a block at a time."""
    rng = np.random.default_rng(seed)
    paths = {"parquet": folder / "audience.parquet", "csv": folder / "audience.csv"}
    parquet = csv = None
    try:
        for start in range(0, rows, GENERATION_ROWS):
            block = feature_block(start, min(GENERATION_ROWS, rows - start), rng)
            if parquet is None:
                parquet = pq.ParquetWriter(paths["parquet"], block.schema)
                csv = pa_csv.CSVWriter(paths["csv"], block.schema)
            parquet.write_table(block)
            csv.write_table(block)
    finally:
        for writer in (parquet, csv):
            if writer is not None:
                writer.close()
    return paths


def make_model(folder, seed=1):
    """A lookalike ``model.json`` over the generated columns, its encoder fitted on a sample as training would."""
    sample_path = folder / "training-sample.csv"
    feature_block(0, 10_000, np.random.default_rng(seed)).to_pandas().to_csv(sample_path, index=False)
    sample = PartyTable.read(sample_path, text_columns=[ID_COLUMN])
    encoder = FeatureEncoder().fit(sample, sample.feature_columns(exclude=[ID_COLUMN]))
    coef = np.random.default_rng(seed).normal(0.0, 0.3, len(encoder.feature_names_))
    model = ModelFile(kind="lookalike", party="media", encoder=encoder, coef=coef, intercept=-2.0)
    return model.save(folder / "model.json")




def fedscore_child(data, model, out, chunk_rows):
    """Score through the command line, in this process, after the imports."""
    from fedscore.cli import main as cli

    floor = peak_mib()
    start = time.perf_counter()
    arguments = ["score", "--model", model, "--data", data, "--id-column", ID_COLUMN, "--out", out, "--overwrite"]
    cli.main(arguments + ([] if chunk_rows is None else ["--chunk-rows", str(chunk_rows)]), standalone_mode=False)
    return time.perf_counter() - start, floor


def baseline_child(data, model, out, chunk_rows):
    """Load the whole table with pandas, score it with numpy, write it with pandas."""
    from scipy.special import expit

    floor = peak_mib()
    start = time.perf_counter()
    spec = json.loads(Path(model).read_text())
    encoder = spec["encoder"]
    frame = pd.read_parquet(data) if data.endswith(".parquet") else pd.read_csv(data)
    blocks = []
    for column in encoder["columns"]:
        if column in encoder["categories"]:
            values = frame[column].to_numpy()
            blocks += [(values == category).astype(float) for category in encoder["categories"][column]]
        else:
            blocks.append((frame[column].to_numpy(dtype=float) - encoder["means"][column]) / encoder["scales"][column])
    scores = expit(np.column_stack(blocks) @ np.asarray(spec["coef"]) + spec["intercept"])
    pd.DataFrame({ID_COLUMN: frame[ID_COLUMN], "score": scores}).to_csv(out, index=False)
    return time.perf_counter() - start, floor


CHILDREN = {"fedscore": fedscore_child, "baseline": baseline_child}


def measure(which, data, model, out, chunk_rows, repeats):
    """Run ``which`` ``repeats`` times, each in a fresh process; (seconds, peak MiB, floor MiB, import s) lists."""
    runs = []
    for _ in range(repeats):
        command = [sys.executable, __file__, "--child", which, str(data), str(model), str(out),
                   str(chunk_rows or 0)]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise SystemExit(f"{which} on {data} failed:\n{result.stderr}")
        runs.append(json.loads(result.stdout.strip().splitlines()[-1]))
    return runs


def compared(first, second):
    """Largest score difference over the leading rows of two score files, with the IDs checked to agree."""
    a, b = (pd.read_csv(p, nrows=COMPARED_ROWS, dtype={ID_COLUMN: str}) for p in (first, second))
    if not a[ID_COLUMN].equals(b[ID_COLUMN]):
        raise SystemExit(f"{first} and {second} list different IDs")
    return float(np.abs(a["score"].to_numpy() - b["score"].to_numpy()).max())


def run_child(arguments):
    which, data, model, out, chunk_rows = arguments
    seconds, floor = CHILDREN[which](data, model, out, int(chunk_rows) or None)
    print(json.dumps({"seconds": seconds, "peak_mib": peak_mib(), "floor_mib": floor}))


def main():
    if sys.argv[1:2] == ["--child"]:
        run_child(sys.argv[2:])
        return
    args = parse_args(__doc__.splitlines()[0])
    chunk_rows = SMOKE_CHUNK_ROWS if args.smoke else None
    rows_out, notes = [], []
    with tempfile.TemporaryDirectory(prefix="bench-scoring-") as tmp:
        folder = Path(tmp)
        model = make_model(folder)
        for n, repeats, baseline_repeats in SMOKE_SIZES if args.smoke else SIZES:
            start = time.perf_counter()
            paths = make_tables(n, folder)
            sizes = {f: paths[f].stat().st_size / 2**20 for f in FORMATS}
            print(f"{n:,} rows written in {time.perf_counter() - start:.0f} s "
                  f"({', '.join(f'{f} {s:,.0f} MiB' for f, s in sizes.items())})")
            load_before = os.getloadavg()[0]
            for fmt in FORMATS:
                outs = {which: folder / f"scores_{which}_{fmt}.csv" for which in CHILDREN}
                results = {which: measure(which, paths[fmt], model, outs[which], chunk_rows,
                                          repeats if which == "fedscore" else baseline_repeats)
                           for which in CHILDREN}
                difference = compared(outs["fedscore"], outs["baseline"])
                for which, runs in results.items():
                    seconds = statistics.median(r["seconds"] for r in runs)
                    peak = max(r["peak_mib"] for r in runs)
                    floor = max(r["floor_mib"] for r in runs)
                    rows_out.append([fmt, n, round(sizes[fmt]), which, len(runs), round(seconds, 2),
                                     round(n / seconds * 60 / 1e6, 1), round(peak), round(peak - floor),
                                     f"{difference:.1e}" if which == "fedscore" else ""])
                    times = ", ".join(f"{r['seconds']:.2f}" for r in runs)
                    print(f"{fmt} {n:,} rows, {which}: {seconds:.2f} s ({n / seconds * 60 / 1e6:.1f}M rows/min; "
                          f"runs {times}), peak RSS {peak:.0f} MiB")
                if n == max(s[0] for s in SIZES) and not args.smoke:
                    rate = n / statistics.median(r["seconds"] for r in results["fedscore"]) * 60
                    verdict = "meets" if rate >= TARGET_ROWS_PER_MINUTE else "misses"
                    notes.append(f"{fmt}, {n:,} rows: {rate / 1e6:.1f}M rows per minute {verdict} the "
                                 f"{TARGET_ROWS_PER_MINUTE / 1e6:.0f}M rows per minute target.")
            notes.append(f"{n:,} rows: 1-minute load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} "
                         "after (other work on this shared machine slows every figure).")
            for path in paths.values():
                path.unlink()
    notes += [
        "Wall time from the command's start to the score file moved into place; interpreter start-up and "
        "imports are excluded.",
        "Peak RSS: VmHWM from /proc/self/status of a fresh process per run (the kernel's high-water mark of "
        "resident memory, not a sample; max over repeats); 'above imports' subtracts the same figure taken just "
        "after the imports (fedscore's import pulls in its HE and Flower dependencies).",
        f"fedscore: chunks of {chunk_rows or DEFAULT_CHUNK_ROWS:,} rows"
        f"{'' if chunk_rows else ' (the default, fedscore.params.DEFAULT_CHUNK_ROWS)'}; Parquet written in row "
        f"groups of {GENERATION_ROWS:,} rows.",
        "Baseline: pandas read_csv / read_parquet of the whole file, numpy standardisation, one-hot and dot "
        "product, pandas to_csv: the same output without validation or streaming.",
        f"max |score diff|: fedscore's scores against the baseline's over the first {COMPARED_ROWS:,} rows "
        "(IDs checked to agree).",
        f"Table: an ID, {NUMERIC_FEATURES} numeric columns (counts, durations, rates, signed scores) and 2 text "
        f"columns ({len(DEVICES)} and {len(REGIONS)} values), {NUMERIC_FEATURES + len(DEVICES) + len(REGIONS)} "
        "model features.",
    ]
    table = {
        "title": "Scoring throughput and peak memory (median of repeats)",
        "columns": ["format", "rows", "file MiB", "scorer", "repeats", "seconds", "M rows / min", "peak RSS MiB",
                    "above imports MiB", "max |score diff|"],
        "rows": rows_out,
    }
    path = write_results("scoring", args.out, [table], notes, smoke=args.smoke)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
