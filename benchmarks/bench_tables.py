"""Reading, validating and encoding a party's table: the typed kit against every cell as a string.

Targets (the typed-table brief): reading + validating + encoding a 100k x 330 numeric
table (CSV, and the same as Parquet) and a 1M x 60 CSV with a few text columns peaks at
most at 3x the float64 size of the encoded table, and runs at least 3x faster than the
string path fedscore used before.

- before: a faithful inline copy of that path: pandas ``read_csv(dtype=str,
  keep_default_na=False, skipinitialspace=True)`` (Parquet: ``read_parquet`` turned into
  strings), trailing blank rows dropped, IDs checked, then the string ``FeatureEncoder``'s
  fit and transform (every cell parsed from its text by ``pd.to_numeric``).
- after: :class:`fedscore.kit.table.PartyTable` (``read``, ``ids``) and
  :class:`fedscore.kit.encoder.FeatureEncoder` (``fit_transform``).

Each measurement runs in a fresh Python process, so that its peak resident memory is its
own: ``VmHWM`` of ``/proc/self/status`` at its end (the kernel's high-water mark, not a
sample), with the same figure just after the imports reported as the floor under it.
Seconds are the median of the repeats, from the file name to the encoded float64 array.
Both paths' encoded tables are compared (column sums and the first rows).

A second table times a command on a bad input, from its start to its one-line error: the
lookalike on the shipped demo data with one malformed media cell, on this checkout and on
the commit before the kit (``BEFORE_REV``, checked out into a temporary git worktree and
put first on ``PYTHONPATH``), with the engines each defaulted to; and whether it left a
checkpoint (holding secret keys) behind.

Run: ``python benchmarks/bench_tables.py`` (``--smoke`` for tiny sizes).
"""

import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import parse_args, peak_mib, write_results  # noqa: E402

ID_COLUMN = "uid"
TABLES = (  # (name, rows, numeric columns, text columns, format, repeats)
    ("wide", 100_000, 330, 0, "csv", 3),
    ("wide", 100_000, 330, 0, "parquet", 3),
    ("long", 1_000_000, 56, 4, "csv", 3),
)
SMOKE_TABLES = (("wide", 2_000, 33, 0, "csv", 1), ("wide", 2_000, 33, 0, "parquet", 1), ("long", 5_000, 8, 2, "csv", 1))
TARGET_MEMORY_RATIO = 3.0  # peak RSS at most this many times the float64 size of the encoded table
TARGET_SPEEDUP = 3.0  # the kit at least this many times faster than the string path
CATEGORIES = (3, 5, 8, 12)  # distinct values of the text columns, in turn
GENERATION_ROWS = 200_000  # rows generated and written at a time
COMPARED_ROWS = 1_000  # leading encoded rows compared between the two paths
BEFORE_REV = "3d0e3e0"  # the last commit before the kit: every table read as strings, no input check up front
BAD_INPUT_REPEATS = 3
ROOT = Path(__file__).resolve().parents[1]


# --- the tables -------------------------------------------------------------------------------

def block(start, rows, numeric, text, rng):
    """``rows`` rows: an ID, counts, amounts, rates, signed scores and text columns."""
    columns = {ID_COLUMN: pa.array([f"u{i:08d}" for i in range(start, start + rows)])}
    for j in range(numeric):
        kind = j % 4
        if kind == 0:
            values = rng.poisson(3 + j % 17, rows).astype(np.int64)  # visits, clicks
        elif kind == 1:
            values = np.round(rng.gamma(2.0, 10.0 + j, rows), 2)  # minutes, amounts
        elif kind == 2:
            values = np.round(rng.beta(2.0, 5.0, rows), 4)  # rates
        else:
            values = np.round(rng.normal(0.0, 1.0 + j, rows), 3)  # scores, deltas
        columns[f"n{j:03d}"] = values
    for j in range(text):
        values = np.asarray([f"cat{j}_{k}" for k in range(CATEGORIES[j % len(CATEGORIES)])])
        columns[f"t{j}"] = pa.array(values[rng.integers(0, len(values), rows)])
    return pa.table(columns)


def make_table(folder, name, rows, numeric, text, fmt, seed=0):
    path = folder / f"{name}_{rows}x{numeric + text}.{fmt}"
    if path.exists():
        return path
    rng = np.random.default_rng(seed)
    writer = None
    try:
        for start in range(0, rows, GENERATION_ROWS):
            part = block(start, min(GENERATION_ROWS, rows - start), numeric, text, rng)
            if writer is None:
                make = pq.ParquetWriter if fmt == "parquet" else pa_csv.CSVWriter
                writer = make(path, part.schema)
            writer.write_table(part)
    finally:
        if writer is not None:
            writer.close()
    return path


# --- before: every cell a string (a faithful copy of the path fedscore replaced) ---------------

def before(path):
    """Read every cell as a string, check the IDs, fit and apply the string encoder."""
    import pandas as pd

    if path.suffix == ".parquet":
        frame = pd.read_parquet(path).astype("string").fillna("").astype(object)
    else:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True, skip_blank_lines=False)
    frame.columns = [str(c).strip() for c in frame.columns]
    filled = np.flatnonzero((frame != "").any(axis=1).to_numpy())
    frame = frame.iloc[: filled[-1] + 1 if len(filled) else 0]
    ids = frame[ID_COLUMN].astype(str).str.strip().to_numpy(dtype=object)
    assert not (ids == "").any() and not pd.Series(ids).duplicated().any()
    columns = [c for c in frame.columns if c != ID_COLUMN]
    stats, blocks = {}, []
    for column in columns:  # fit
        values = frame[column].astype(str).str.strip()
        assert not (values == "").any()
        array = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
        parsed = ~np.isnan(array) | values.str.lower().isin({"nan", "-nan", "+nan"}).to_numpy()
        if parsed.all():
            assert np.isfinite(array).all() and array.std() > 0
            stats[column] = (float(array.mean()), float(array.std()))
        else:
            assert parsed.mean() <= 0.5
            stats[column] = sorted(values.unique())
            assert 2 <= len(stats[column]) <= 100
    for column in columns:  # transform
        values = frame[column].astype(str).str.strip()
        if isinstance(stats[column], list):
            blocks.append(np.stack([(values == c).to_numpy(dtype=float) for c in stats[column]], axis=1))
        else:
            numeric = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
            assert np.isfinite(numeric).all()
            blocks.append(((numeric - stats[column][0]) / stats[column][1])[:, None])
    return ids, np.hstack(blocks)


# --- after: the kit ---------------------------------------------------------------------------

def after(path):
    from fedscore.kit.encoder import FeatureEncoder
    from fedscore.kit.table import PartyTable

    table = PartyTable.read(path, required=[ID_COLUMN], text_columns=[ID_COLUMN])
    ids = table.ids(ID_COLUMN)
    features = FeatureEncoder(path).fit_transform(table, table.feature_columns(exclude=[ID_COLUMN]))
    return ids, features


PATHS = {"before": before, "after": after}


# --- measuring --------------------------------------------------------------------------------



def run_child(which, path, fingerprint):
    import pandas  # noqa: F401  (both paths start from the same imports)

    import fedscore.kit.encoder  # noqa: F401
    import fedscore.kit.table  # noqa: F401

    floor = peak_mib()
    start = time.perf_counter()
    ids, features = PATHS[which](Path(path))
    seconds = time.perf_counter() - start
    np.savez(fingerprint, sums=features.sum(axis=0), head=features[:COMPARED_ROWS],
             ids=np.asarray(ids[:COMPARED_ROWS], dtype=str))
    print(json.dumps({"seconds": seconds, "peak_mib": peak_mib(), "floor_mib": floor, "rows": features.shape[0],
                      "features": features.shape[1]}))


def measure(which, path, repeats, folder):
    runs = []
    for _ in range(repeats):
        fingerprint = folder / f"{which}.npz"
        done = subprocess.run([sys.executable, __file__, "--child", which, str(path), str(fingerprint)],
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"{which} on {path} failed:\n{done.stderr}")
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return runs, np.load(fingerprint)


def agree(first, second):
    """Whether two paths encoded the same table: IDs, column sums and leading rows."""
    return bool((first["ids"] == second["ids"]).all()
                and np.allclose(first["sums"], second["sums"], rtol=1e-9, atol=1e-6)
                and np.allclose(first["head"], second["head"], rtol=0, atol=1e-12))


# --- a bad input: how long until the user hears of it -------------------------------------------

@contextlib.contextmanager
def source_tree(rev):
    """``None`` for this checkout, else a temporary git worktree of ``rev`` (removed afterwards)."""
    if rev is None:
        yield None
        return
    folder = Path(tempfile.mkdtemp(prefix="bench-tables-before-"))
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(folder / "tree"), rev],
                   check=True, capture_output=True)
    try:
        yield folder / "tree"
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(folder / "tree")],
                       capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def bad_input_files(folder):
    """The shipped seed list, and the shipped media table with one malformed cell (row 12 of the file)."""
    import pandas as pd

    data = ROOT / "fedscore" / "data"
    media = pd.read_csv(data / "bank_media.csv", dtype=str, keep_default_na=False)
    media.loc[10, "campaign"] = "n/a"
    media.to_csv(folder / "media.csv", index=False)
    shutil.copyfile(data / "bank_seed.csv", folder / "seed.csv")
    return folder / "seed.csv", folder / "media.csv"


def time_bad_input(tree, seed, media, engine, folder, repeats):
    """Median seconds from starting ``fedscore lookalike`` to its error, the error and whether a checkpoint stayed."""
    env = {**os.environ, "FLWR_TELEMETRY_ENABLED": "0"}
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    command = [sys.executable, "-c", "import sys; from fedscore.cli import main; sys.argv[0] = 'fedscore'; main()",
               "lookalike", "--seed", str(seed), "--media", str(media), "--id-column", "uid", "--out",
               str(folder / "out"), "--engine", engine]
    seconds, error, left = [], "", False
    for _ in range(repeats):
        shutil.rmtree(folder / "out", ignore_errors=True)
        shutil.rmtree(folder / "out.checkpoint", ignore_errors=True)
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=folder, timeout=600)
        seconds.append(time.perf_counter() - start)
        error = (done.stderr.strip().splitlines() or [""])[-1]
        left = left or (folder / "out.checkpoint").exists()
        if done.returncode == 0:
            raise SystemExit("the bad input was accepted")
    return statistics.median(seconds), error, left


def bad_input_table(smoke):
    rows = []
    runs = [("this checkout", None, "local"), ("this checkout", None, "simulation")]
    if not smoke:
        runs += [(f"before the kit ({BEFORE_REV})", BEFORE_REV, "local"),
                 (f"before the kit ({BEFORE_REV})", BEFORE_REV, "simulation")]
    repeats = 1 if smoke else BAD_INPUT_REPEATS
    with tempfile.TemporaryDirectory(prefix="bench-bad-input-") as tmp:
        folder = Path(tmp)
        seed, media = bad_input_files(folder)
        for label, rev, engine in runs:
            with source_tree(rev) as tree:
                seconds, error, left = time_bad_input(tree, seed, media, engine, folder, repeats)
            print(f"bad input, {label}, {engine}: {seconds:.2f} s, checkpoint left: {left}")
            rows.append([label, engine, repeats, round(seconds, 2), "yes" if left else "no",
                         "--resume" in error, error.split(": ", 1)[-1][:90]])
    return {"title": "A bad input: seconds from the command's start to its one-line error (lookalike, demo data, "
                     "one malformed media cell)",
            "columns": ["code", "engine", "repeats", "seconds", "checkpoint left", "advises --resume", "error"],
            "rows": rows}


def main():
    if sys.argv[1:2] == ["--child"]:
        run_child(*sys.argv[2:5])
        return
    args = parse_args(__doc__.splitlines()[0])
    rows_out, notes, verdicts = [], [], []
    with tempfile.TemporaryDirectory(prefix="bench-tables-") as tmp:
        folder = Path(tmp)
        for name, rows, numeric, text, fmt, repeats in SMOKE_TABLES if args.smoke else TABLES:
            start = time.perf_counter()
            path = make_table(folder, name, rows, numeric, text, fmt)
            size = path.stat().st_size / 2**20
            print(f"{path.name}: {size:,.0f} MiB written in {time.perf_counter() - start:.0f} s")
            load_before = os.getloadavg()[0]
            results = {which: measure(which, path, repeats, folder) for which in PATHS}
            same = agree(results["before"][1], results["after"][1])
            seconds = {which: statistics.median(r["seconds"] for r in runs) for which, (runs, _) in results.items()}
            for which, (runs, _) in results.items():
                features = runs[0]["features"]
                float64_mib = rows * features * 8 / 2**20
                peak = max(r["peak_mib"] for r in runs)
                floor = max(r["floor_mib"] for r in runs)
                speedup = seconds["before"] / seconds[which]
                rows_out.append([name, which, fmt, rows, numeric + text, features, round(size), round(float64_mib, 1),
                                 len(runs), round(seconds[which], 2), round(peak), round(peak - floor),
                                 round(peak / float64_mib, 2), round(speedup, 1), same])
                times = ", ".join(f"{r['seconds']:.2f}" for r in runs)
                print(f"  {which}: {seconds[which]:.2f} s (runs {times}), peak RSS {peak:.0f} MiB "
                      f"({peak / float64_mib:.2f}x the {float64_mib:.0f} MiB float64 table), {speedup:.1f}x")
                if which == "after" and not args.smoke:
                    ratio = peak / float64_mib
                    memory = "meets" if ratio <= TARGET_MEMORY_RATIO else "misses"
                    speed = "meets" if speedup >= TARGET_SPEEDUP else "misses"
                    verdicts.append(f"{name} {fmt} ({rows:,} x {numeric + text}): peak {ratio:.2f}x the float64 "
                                    f"table {memory} the {TARGET_MEMORY_RATIO:.0f}x target; {speedup:.1f}x faster "
                                    f"{speed} the {TARGET_SPEEDUP:.0f}x target.")
            notes.append(f"{name} {fmt}: 1-minute load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} "
                         "after (other work on this shared machine slows every figure).")
    notes = verdicts + notes + [
        "Seconds: median of the repeats, from the file name to the encoded float64 array (read, IDs checked, "
        "every feature column validated, fitted and encoded); interpreter start-up and imports excluded.",
        "Peak RSS: VmHWM from /proc/self/status of a fresh process per run (max over repeats), total and above "
        "the same figure taken after the imports (numpy, pandas, pyarrow, fedscore.kit).",
        "float64 MiB: rows x encoded features x 8 bytes, the encoded table itself; 'peak / float64' divides the "
        "total peak by it.",
        "speed-up: the string path's median seconds over this path's.",
        f"agree: both paths give the same IDs, the same column sums and the same first {COMPARED_ROWS:,} encoded "
        "rows (to 1e-12).",
        "Tables: an ID and numeric columns (counts, amounts, rates, signed scores); 'long' adds text columns of "
        f"{', '.join(map(str, CATEGORIES))} values. CSV written by pyarrow, Parquet in row groups of "
        f"{GENERATION_ROWS:,} rows.",
    ]
    notes.append("Bad input: wall seconds of the whole command (interpreter start and imports included), median of "
                 "the repeats; before the kit the command's default engine was simulation, now it is local.")
    table = {
        "title": "Reading, validating and encoding a party's table: strings (before) and the typed kit (after)",
        "columns": ["table", "path", "format", "rows", "columns", "features", "file MiB", "float64 MiB", "repeats",
                    "seconds", "peak RSS MiB", "above imports MiB", "peak / float64", "speed-up", "agree"],
        "rows": rows_out,
    }
    path = write_results("tables", args.out, [table, bad_input_table(args.smoke)], notes, smoke=args.smoke)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
