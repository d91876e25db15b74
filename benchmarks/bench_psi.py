"""PSI speed: fedscore against SecretFlow's PSI on 100k x 100k and 1M x 1M IDs, both modes.

Target (BRIEF.md): 1M x 1M within 1.5x of SecretFlow's ECDH PSI in CPU seconds, measured
in the same run on the same machine. Every run is a fresh process started and timed by
this script, median of 3:

- fedscore: the ``psi`` job on the local engine (both parties in one process, taking
  turns; every message encoded and recorded in the ledger as over Flower), CSV in,
  result files out, in mode ``both`` and mode ``labelled``; on the X25519 engine it
  picks here (IPP-Crypto's multi-buffer X25519 where the CPU has AVX-512 IFMA) and on
  the libsodium fallback (``FEDSCORE_X25519_ENGINE=libsodium``), one run per size;
- SecretFlow (``spu`` from PyPI, ``spu.psi.psi_execute``): two processes, one per party,
  linked by SecretFlow's own brpc link on loopback, CSV in, aligned CSV out: ECDH on
  Curve25519 with both parties learning the result (fedscore's ``both``) and with the
  receiver alone learning it (fedscore's ``labelled``), and RR22 with both learning it.

CPU seconds are user + system time of the run's processes from ``wait4`` (interpreter
start, imports and any child, such as the ``sort`` SecretFlow runs, included); wall
seconds run from starting the processes to the last one's exit. SecretFlow runs in a
virtual environment this script creates (``--secretflow-venv``), never in fedscore's;
when it cannot be installed its rows are left out with a note. The same run measures the
X25519 engines at hand and the other per-ID costs of fedscore's PSI on one core.

Run: ``python benchmarks/bench_psi.py`` (``--smoke``: 200 x 200, fedscore only, for the
test suite).
"""

import argparse
import glob
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _common import parse_args, peak_mib, write_results

OVERLAP = 0.5  # half of each party's IDs are the other's
SIZES = ((100_000, 3), (1_000_000, 3))  # (IDs per party, runs)
SMOKE_SIZES = ((200, 1),)
FALLBACK_RUNS = {100_000: 1, 1_000_000: 1, 200: 1}  # runs of fedscore on the libsodium fallback, by size
FEDSCORE, FALLBACK = "fedscore", "fedscore, libsodium fallback"
TARGET_IDS = 1_000_000
TARGET_RATIO = 1.5  # BRIEF.md, "Targets": fedscore CPU s / SecretFlow ECDH CPU s at 1M x 1M
MODES = ("both", "labelled")

SECRETFLOW_PACKAGE = "spu==0.9.5"  # the peer measured in BRIEF.md; ships github.com/secretflow/psi as spu.psi
SECRETFLOW_VENV = Path.home() / ".cache" / "fedscore" / "bench-spu-0.9.5"
SECRETFLOW_PARTY = Path(__file__).resolve().parent / "_secretflow_psi.py"
SECRETFLOW_RUNS = (  # (name in the table, protocol, curve, receiver only, fedscore mode it compares with)
    ("SecretFlow ECDH Curve25519", "ECDH", "CURVE_25519", False, "both"),
    ("SecretFlow ECDH Curve25519", "ECDH", "CURVE_25519", True, "labelled"),
    ("SecretFlow RR22", "RR22", "", False, "both"),
)
INSTALL_TIMEOUT_SECONDS = 3600
SECRETFLOW_ATTEMPTS = 3  # a SecretFlow run that hangs (its link, now and then, under load) is stopped and rerun


def secretflow_timeout(n):
    """Seconds after which a SecretFlow run of ``n`` x ``n`` IDs counts as hung (about 10x its time here)."""
    return 60 + n / 2_000
RESULT_PREFIX = "RESULT "


# --- data ------------------------------------------------------------------------------------

def make_tables(n, folder, seed=0):
    """Write brand.csv and media.csv with ``n`` e-mail IDs each, ``OVERLAP`` of them shared.

    The media spells shared addresses in upper case with stray spaces, as real exports
    do, so normalisation is part of what fedscore is measured on. SecretFlow, which does
    not normalise, gets the same IDs already normalised (``sf_brand.csv``, ``sf_media.csv``,
    one column ``id``): both find the same intersection.
    """
    from fedscore.ids import prepare_ids

    rng = np.random.default_rng(seed)
    shared = int(n * OVERLAP)
    people = np.array([f"user{i}@example.com" for i in rng.permutation(2 * n - shared)], dtype=object)
    brand = people[:n]
    media = np.concatenate([people[:shared], people[n:]])
    media = np.array([f" {m.upper()} " if i % 2 else m for i, m in enumerate(media)], dtype=object)
    paths = {}
    for role, ids in (("brand", brand), ("media", media[rng.permutation(n)])):
        paths[role] = folder / f"{role}.csv"
        pd.DataFrame({"email": ids}).to_csv(paths[role], index=False)
        pd.DataFrame({"id": prepare_ids(ids).ids}).to_csv(folder / f"sf_{role}.csv", index=False)
    return paths, shared


# --- one timed run: processes started, waited for, their rusage summed ---------------------------

def timed_processes(commands, folder, env=None, timeout=None):
    """Start ``commands`` at once; return (wall s, CPU s of all, each one's ``RESULT`` dict).

    Each process is reaped with ``wait4`` (its rusage is its CPU time), polled every 20 ms.
    With ``timeout``, the processes still running that many seconds after the start are
    killed and :class:`TimeoutError` is raised.
    """
    started, processes = time.perf_counter(), []
    for i, command in enumerate(commands):
        stdout = open(folder / f"process{i}.out", "w")
        stderr = open(folder / f"process{i}.err", "w")
        processes.append((subprocess.Popen(command, stdout=stdout, stderr=stderr, env=env), stdout, stderr))
    cpu, wall, failed, pending = 0.0, 0.0, [], dict(enumerate(processes))
    while pending:
        for i, (process, stdout, stderr) in list(pending.items()):
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if not pid:
                continue
            del pending[i]
            wall = max(wall, time.perf_counter() - started)
            process.returncode = os.waitstatus_to_exitcode(status)
            stdout.close(), stderr.close()
            cpu += usage.ru_utime + usage.ru_stime
            if process.returncode:
                failed.append(f"{' '.join(map(str, commands[i][:4]))}... exited {process.returncode}: "
                              f"{(folder / f'process{i}.err').read_text()[-1500:]}")
        if pending and timeout is not None and time.perf_counter() - started > timeout:
            for process, stdout, stderr in pending.values():
                process.kill()
                process.wait()
                stdout.close(), stderr.close()
            raise TimeoutError(f"still running after {timeout:.0f} s")
        if pending:
            time.sleep(0.02)
    if failed:
        raise RuntimeError("; ".join(failed))
    results = []
    for i in range(len(commands)):
        lines = [line for line in (folder / f"process{i}.out").read_text().splitlines()
                 if line.startswith(RESULT_PREFIX)]
        results.append(json.loads(lines[-1][len(RESULT_PREFIX):]) if lines else {})
    return wall, cpu, results


def run_psi_once(paths, out, mode="both"):
    """The ``psi`` job on the local engine, in this process, on the tables of :func:`make_tables`.

    Returns
    -------
    summary : dict
        The job's summary.
    steps : dict
        Wall seconds of each round trip, from the ledger's first to last entry of the step.
    cpu : float
        CPU seconds (user + system) of this process during the job.
    """
    from fedscore.ledger import read_ledger
    from fedscore.runtime.runner import run_job

    start = os.times()
    summary = run_job("psi", {"mode": mode, "id_column": "email"}, {role: {"data": str(p)} for role, p in paths.items()},
                      out, engine="local", overwrite=True)
    end = os.times()
    spans = {}
    for entry in read_ledger(Path(out) / "ledger.jsonl"):
        first, last = spans.get(entry["step"], (entry["time"], entry["time"]))
        spans[entry["step"]] = (min(first, entry["time"]), max(last, entry["time"]))
    steps = {step: round(last - first, 2) for step, (first, last) in spans.items()}
    return summary, steps, (end.user - start.user) + (end.system - start.system)


def fedscore_run(mode, paths, folder):
    """Child process: the ``psi`` job in this process; prints the ``RESULT`` line."""
    out = Path(folder) / f"out-{mode}"
    summary, steps, cpu = run_psi_once(paths, out, mode)
    report = json.loads((out / "brand" / "psi_report.json").read_text())
    print(RESULT_PREFIX + json.dumps({
        "matched": report.get("intersection", report.get("matched")), "summary": summary, "steps": steps,
        "job_cpu_s": round(cpu, 2), "engine": report.get("x25519_engine"), "peak_mib": round(peak_mib(), 1)}),
        flush=True)


def measure_fedscore(mode, folder, runs, fallback=False):
    """``runs`` runs of the ``psi`` job, each in a fresh process; on the libsodium engine when ``fallback``."""
    from fedscore.protocols.psi.engine import ENGINE_VARIABLE

    command = [sys.executable, str(Path(__file__).resolve()), "--fedscore-run", mode, str(folder)]
    env = dict(os.environ)
    env.pop(ENGINE_VARIABLE, None)
    if fallback:
        env[ENGINE_VARIABLE] = "libsodium"
    return [(os.getloadavg()[0], *timed_processes([command], folder, env)) for _ in range(runs)]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure_secretflow(python, protocol, curve, receiver_only, folder, runs, n, notes):
    results = []
    for _ in range(runs):
        for attempt in range(1, SECRETFLOW_ATTEMPTS + 1):
            try:
                results.append(secretflow_run(python, protocol, curve, receiver_only, folder, n))
                break
            except TimeoutError as error:
                notes.append(f"{n:,} x {n:,} SecretFlow {protocol}{' receiver only' if receiver_only else ''}: "
                             f"a run hung and was stopped and rerun ({error}).")
                print(notes[-1], flush=True)
                if attempt == SECRETFLOW_ATTEMPTS:
                    raise
    return results


def secretflow_run(python, protocol, curve, receiver_only, folder, n):
    """One SecretFlow run, both parties: (load1 before, wall s, CPU s, each party's ``RESULT`` dict)."""
    ports = [str(free_port()), str(free_port())]
    commands = [[str(python), str(SECRETFLOW_PARTY), str(rank), protocol, curve or "CURVE_25519",
                 "1" if receiver_only else "0", str(folder / f"sf_{role}.csv"),
                 str(folder / f"sf_{role}_out.csv"), *ports]
                for rank, role in enumerate(("brand", "media"))]
    started, load = time.time(), os.getloadavg()[0]
    try:
        return (load, *timed_processes(commands, folder, timeout=secretflow_timeout(n)))
    finally:
        for trace in glob.glob(os.path.join(tempfile.gettempdir(), "psi_*.trace")):  # a trace per run
            if os.path.getmtime(trace) >= started:
                os.remove(trace)


# --- SecretFlow's environment ------------------------------------------------------------------

def secretflow_python(venv):
    """The Python of a venv holding ``spu``, made on first use: ``(path, version, None)`` or ``(None, None, why)``."""
    python = Path(venv) / "bin" / "python"
    probe = [str(python), "-c", "import importlib.metadata, spu.psi; print(importlib.metadata.version('spu'))"]
    if python.exists():
        found = subprocess.run(probe, capture_output=True, text=True)
        if found.returncode == 0:
            return python, found.stdout.strip(), None
    print(f"installing {SECRETFLOW_PACKAGE} into {venv} (about 1 GB) ...", flush=True)
    steps = [[sys.executable, "-m", "venv", "--clear", str(venv)],
             [str(python), "-m", "pip", "install", "--quiet", SECRETFLOW_PACKAGE]]
    for step in steps:
        try:
            done = subprocess.run(step, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_SECONDS)
        except (OSError, subprocess.TimeoutExpired) as error:
            return None, None, f"{' '.join(step[:4])}: {error}"
        if done.returncode:
            return None, None, f"{' '.join(step[:5])} failed: {(done.stderr or done.stdout).strip()[-300:]}"
    found = subprocess.run(probe, capture_output=True, text=True)
    if found.returncode:
        return None, None, f"spu does not import: {found.stderr.strip()[-300:]}"
    return python, found.stdout.strip(), None


# --- per-operation costs on one core ------------------------------------------------------------

def cpu_per_item(function, items, repeats=3):
    """Median CPU microseconds per item of ``function()`` (this thread's CPU time)."""
    times = []
    for _ in range(repeats):
        start = time.thread_time()
        function()
        times.append((time.thread_time() - start) / items * 1e6)
    return round(statistics.median(times), 2)


def operation_costs(count):
    """CPU microseconds per operation of fedscore's PSI and of the X25519 candidates at hand, one core."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

    from fedscore.protocols.psi import engine, group

    ids = np.array([f"user{i}@example.com" for i in range(count)], dtype=object)
    domain = group.hash_domain("bench")
    points = group.hash_to_curve(ids, domain)
    key = os.urandom(32)
    rows = []
    multi_buffer, reason = engine.load_multi_buffer()
    if multi_buffer is not None:
        rows.append(["X25519", multi_buffer.detail, "mbx_x25519_mb8, 8 points per call, releases the GIL",
                     cpu_per_item(lambda: multi_buffer.multiply(points, key), count)])
    else:
        rows.append(["X25519", "IPP-Crypto crypto_mb", f"not available here: {reason}", None])
    sodium, few = engine.SodiumEngine(), max(count // 10, 10)
    rows.append(["X25519", sodium.detail, "crypto_scalarmult, 1 point per call, releases the GIL",
                 cpu_per_item(lambda: sodium.multiply(points[:few], key), few)])
    private = X25519PrivateKey.from_private_bytes(key)
    encoded = [p.tobytes() for p in points[:few]]
    rows.append(["X25519", "OpenSSL through cryptography", "X25519PrivateKey.exchange, 1 point per call, holds the GIL",
                 cpu_per_item(lambda: [private.exchange(X25519PublicKey.from_public_bytes(p)) for p in encoded], few)])
    rows.append(["hash onto the curve", "SHA-512 + GMP Jacobi symbol (gmpy2)",
                 "try and increment, about 2 Legendre symbols per ID, holds the GIL",
                 cpu_per_item(lambda: group.hash_to_curve(ids, domain), count)])
    rows.append(["curve check of a received point", "GMP Jacobi symbol (gmpy2)",
                 f"done on {group.RECEIVED_CURVE_SAMPLE} random points per set, not on every point",
                 cpu_per_item(lambda: group.on_curve(points), count)])
    own, peer = points, np.concatenate([points[count // 2:], group.hash_to_curve(ids[:count // 2], b"other")])
    rows.append(["match (per ID of each set)", "NumPy sort of 8-byte prefixes", "intersect two sets of n points",
                 cpu_per_item(lambda: group.intersect(own, peer), count)])
    return rows


# --- the benchmark ------------------------------------------------------------------------------

def median(values):
    return round(statistics.median(values), 2)


def loads(measured):
    return ", ".join(f"{load:.1f}" for load, *_ in measured)


def main():
    def extra(parser):
        parser.add_argument("--secretflow-venv", type=Path, default=SECRETFLOW_VENV,
                            help="virtual environment for SecretFlow's spu (created when missing)")
        parser.add_argument("--no-secretflow", action="store_true", help="measure fedscore only")
        parser.add_argument("--fedscore-run", nargs=2, metavar=("MODE", "FOLDER"), help=argparse.SUPPRESS)

    args = parse_args(__doc__.splitlines()[0], extra)
    if args.fedscore_run:
        mode, folder = args.fedscore_run
        fedscore_run(mode, {role: Path(folder) / f"{role}.csv" for role in ("brand", "media")}, folder)
        return
    python = version = None
    notes = []
    if args.smoke or args.no_secretflow:
        notes.append("SecretFlow not measured (--smoke or --no-secretflow).")
    else:
        python, version, why = secretflow_python(args.secretflow_venv)
        if python is None:
            notes.append(f"SecretFlow not measured: {SECRETFLOW_PACKAGE} could not be installed here ({why}).")
    rows, step_rows = [], []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for n, runs in SMOKE_SIZES if args.smoke else SIZES:
            paths, shared = make_tables(n, folder)
            measured = {}
            for name, fallback, count in ((FEDSCORE, False, runs), (FALLBACK, True, FALLBACK_RUNS.get(n, 1))):
                for mode in MODES:
                    measured[(name, mode)] = measure_fedscore(mode, folder, count, fallback)
                    print(f"{n} x {n} {name} {mode}: " + ", ".join(f"{wall:.1f} s / {cpu:.1f} CPU s"
                                                                   for _, wall, cpu, _ in measured[(name, mode)]),
                          flush=True)
            if python is not None:
                for name, protocol, curve, receiver_only, mode in SECRETFLOW_RUNS:
                    measured[(name, mode)] = measure_secretflow(python, protocol, curve, receiver_only, folder, runs, n, notes)
                    print(f"{n} x {n} {name} {mode}: " + ", ".join(f"{wall:.1f} s / {cpu:.1f} CPU s"
                                                                   for _, wall, cpu, _ in measured[(name, mode)]),
                          flush=True)
            reference = {mode: median([cpu for _, _, cpu, _ in measured[(SECRETFLOW_RUNS[0][0], mode)]])
                         for mode in MODES if (SECRETFLOW_RUNS[0][0], mode) in measured}
            for (name, mode), runs_measured in measured.items():
                walls = [wall for _, wall, _, _ in runs_measured]
                cpus = [cpu for _, _, cpu, _ in runs_measured]
                results = [result for *_, result in runs_measured]
                if name in (FEDSCORE, FALLBACK):
                    found = [r[0]["matched"] for r in results]
                    learns = "both parties" if mode == "both" else "brand only (labelled)"
                    engines = sorted({r[0]["engine"] for r in results})
                    if name == FALLBACK and not all(e.startswith("libsodium") for e in engines):
                        raise SystemExit(f"the fallback runs used {engines}")
                    engine = "; ".join(engines)
                else:
                    found = [r[0]["intersection"] for r in results]
                    learns = "both parties" if mode == "both" else "receiver only"
                    engine = "SecretFlow's own (IPP-Crypto mb8 where the CPU has it)" if "ECDH" in name else "none"
                if any(count != shared for count in found):
                    raise SystemExit(f"{name} {mode} found {found} shared IDs, expected {shared}")
                peak = max(result.get("peak_mib", 0) for r in results for result in r)
                ratio = round(median(cpus) / reference[mode], 2) if mode in reference else None
                rows.append([n, n, shared, name, engine, learns, len(runs_measured), median(walls), median(cpus),
                             round(peak), ratio, loads(runs_measured)])
                if name == FEDSCORE:
                    middle = sorted(range(len(cpus)), key=cpus.__getitem__)[len(cpus) // 2]
                    step_rows.append([n, mode, *(results[middle][0]["steps"].get(step) for step in
                                                 ("psi.blind_own", "psi.blind_peer", "psi.match"))])
            if n == TARGET_IDS:
                for mode in MODES:
                    fedscore = next(r for r in rows if r[0] == n and r[3] == FEDSCORE
                                    and r[5].startswith("both" if mode == "both" else "brand"))
                    if fedscore[10] is None:
                        notes.append(f"1M x 1M, {mode}: no SecretFlow ECDH run to compare with.")
                        continue
                    verdict = "meets" if fedscore[10] <= TARGET_RATIO else "misses"
                    notes.append(f"1M x 1M, mode {mode}: fedscore {fedscore[8]} CPU s = {fedscore[10]} x SecretFlow "
                                 f"ECDH's {reference[mode]} CPU s: {verdict} the {TARGET_RATIO} x target.")
    operations = operation_costs(2_000 if args.smoke else 100_000)
    load = os.getloadavg()
    notes += [
        "CPU s: user + system seconds of every process of a run (wait4), interpreter start and imports included; "
        "PSI s: wall seconds from starting the run's processes to the last one's exit. Medians of the runs.",
        "load1 before runs: the machine's 1-minute load average before each run (2 cores; other work on the "
        f"machine slows every wall figure, CPU seconds much less); {load[0]:.1f} at the end.",
        "fedscore: one process, both parties on the local engine taking turns (every message encoded and "
        "ledgered as over Flower), on the X25519 engine it picks here and, for comparison, on the libsodium "
        "fallback it takes on a CPU without AVX-512 IFMA (one run per size). SecretFlow: one process per party, "
        "linked by its own brpc link on loopback, running at the same time, aligned (sorted) output.",
        "CPU / SecretFlow ECDH: the run's median CPU seconds over SecretFlow's ECDH run where the same parties "
        "learn the result (both parties for mode both, the receiver for mode labelled), same size, same run.",
        f"Overlap {OVERLAP:.0%}; the media's shared IDs upper-cased with stray spaces on every other row "
        "(fedscore normalises them); SecretFlow gets the same IDs normalised.",
    ]
    if version:
        notes.append(f"SecretFlow: spu {version} from PyPI in its own virtual environment ({SECRETFLOW_PACKAGE}).")
    tables = [
        {"title": "PSI end to end, CSV in, result files out (seconds, medians)",
         "columns": ["brand IDs", "media IDs", "shared", "implementation", "X25519 engine", "who learns the result",
                     "runs", "PSI s",
                     "CPU s", "peak RSS MiB per process", "CPU / SecretFlow ECDH", "load1 before runs"],
         "rows": rows},
        {"title": "fedscore round trips (wall seconds of each step, both parties, median run)",
         "columns": ["IDs per party", "mode", "psi.blind_own s", "psi.blind_peer s", "psi.match s"],
         "rows": step_rows},
        {"title": "Per-operation CPU cost on one core (microseconds, median of 3)",
         "columns": ["operation", "implementation", "how", "CPU us"],
         "rows": operations},
    ]
    path = write_results("psi", args.out, tables, notes, smoke=args.smoke)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
