"""Deployment latency: what one message hop costs on a local Flower deployment, and the demo per phase.

Target (issue "deployment latency"): ``fedscore demo --deployment`` within 1.5x of
``fedscore demo`` (the local engine), measured in the same run.

1. The ``ping`` job carries no data: its two exchanges (every party at once) are the
   per-hop latency of an engine. Measured on the local engine, Flower's simulation, and a
   local deployment (SuperLink + two SuperNodes, TLS, node authentication) with the waits
   fedscore sets (``LocalDeployment(short_waits=True)``: SuperNodes through
   ``fedscore.runtime.supernode``, SuperExecs polling every ``TASK_POLL`` s) and with
   Flower's own waits, one after the other. Also the whole job's wall time: in a
   deployment that adds starting the SuperLink and SuperNodes, submitting the run,
   the ServerApp's start, the role query and the stop.
2. The demo, every phase on the local engine, then in a deployment (and in the
   simulation, unless ``--no-simulation``): seconds per phase, the number of exchanges
   each phase's ledger records, and seconds per exchange beyond the local run's.

``--small`` demo data by default: the full demo takes about a quarter of an hour per
deployment run (``--full`` to measure it).

Run: ``python benchmarks/bench_deployment.py`` (``--smoke``: one ping per engine and the
PSI phase only).
"""

import contextlib
import functools
import os
import statistics
import tempfile
import time
from pathlib import Path

from _common import parse_args, write_results

from fedscore.demo import run_demo
from fedscore.ledger import COORDINATOR, read_ledger
from fedscore.runtime import deployment
from fedscore.runtime.runner import run_job

PING_REPEATS = 3
DEMO_REPEATS = 1
"""A deployment demo on ``--small`` takes minutes; the ratio, not the spread, is the point."""
TARGET_RATIO = 1.5


def _extra(parser):
    parser.add_argument("--full", action="store_true", help="the full demo instead of --small")
    parser.add_argument("--no-simulation", action="store_true", help="leave Flower's simulation out")
    parser.add_argument("--ping-repeats", type=int, default=PING_REPEATS)
    parser.add_argument("--demo-repeats", type=int, default=DEMO_REPEATS)


@contextlib.contextmanager
def flower_waits(short):
    """Deployments started inside use fedscore's short waits, or Flower's own."""
    original = deployment.LocalDeployment.__init__
    deployment.LocalDeployment.__init__ = functools.partialmethod(original, short_waits=short)
    try:
        yield
    finally:
        deployment.LocalDeployment.__init__ = original


def ping(engine, work, short_waits=True):
    """One ping: (seconds per exchange of its two exchanges, wall seconds of the whole job)."""
    with flower_waits(short_waits):
        started = time.perf_counter()
        summary = run_job("ping", {}, {"brand": {}, "media": {}}, Path(tempfile.mkdtemp(dir=work)) / "out",
                          engine=engine)
    return summary["round_trip_seconds"], time.perf_counter() - started


def ping_table(engines, repeats, work):
    rows = []
    for label, engine, short_waits in engines:
        hops, walls = [], []
        for _ in range(repeats):
            round_trips, wall = ping(engine, work, short_waits)
            hops += round_trips
            walls.append(wall)
        rows.append([label, len(walls), round(statistics.median(hops), 3), round(min(hops), 3), round(max(hops), 3),
                     round(statistics.median(walls), 2)])
    return {"title": "ping: seconds per exchange (both parties at once) and per whole job",
            "columns": ["engine", "runs", "exchange s (median)", "min", "max", "job s (median)"], "rows": rows}


def exchanges(ledger_path):
    """Exchanges in a run's ledger: a request from the coordinator after a reply starts one."""
    count, last_was_request = 0, False
    for entry in sorted(read_ledger(ledger_path), key=lambda e: e["seq"]):
        request = entry["sender"] == COORDINATOR
        if request and not last_was_request:
            count += 1
        last_was_request = request
    return count


def demo(engine, small, phases, repeats, work):
    """Median seconds per phase over ``repeats`` demo runs, and each phase's exchanges."""
    seconds, hops = {}, {}
    for _ in range(repeats):
        out = Path(tempfile.mkdtemp(dir=work)) / "demo"
        result = run_demo(out, engine=engine, small=small, phases=phases)
        for name, phase in result["phases"].items():
            if "seconds" in phase:
                seconds.setdefault(name, []).append(phase["seconds"])
                hops[name] = exchanges(out / name / "ledger.jsonl")
    return {name: statistics.median(values) for name, values in seconds.items()}, hops


def demo_table(engines, small, phases, repeats, work):
    times = {}
    for engine in engines:
        times[engine], hops = demo(engine, small, phases, repeats, work)
    local = times["local"]
    rows = []
    for name in local:
        row = [name, hops[name], round(local[name], 1)]
        for engine in engines[1:]:
            extra = (times[engine][name] - local[name]) / hops[name]
            row += [round(times[engine][name], 1), round(times[engine][name] / local[name], 1), round(extra, 2)]
        rows.append(row)
    total = [sum(times[engine].values()) for engine in engines]
    total_row = ["all phases", sum(hops.values()), round(total[0], 1)]
    for engine, seconds in zip(engines[1:], total[1:]):
        total_row += [round(seconds, 1), round(seconds / total[0], 1), round((seconds - total[0]) / sum(hops.values()), 2)]
    rows.append(total_row)
    columns = ["phase", "exchanges", "local s"]
    for engine in engines[1:]:
        columns += [f"{engine} s", f"{engine} / local", f"{engine}: extra s per exchange"]
    return {"title": f"demo{' --small' if small else ''}: seconds per phase, median of {repeats} run(s) per engine",
            "columns": columns, "rows": rows}, total[engines.index("deployment")] / total[0]


def main():
    args = parse_args(__doc__.splitlines()[0], _extra)
    small = not args.full
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-deployment-") as work:
        ping_engines = [("local", "local", True), ("deployment, fedscore's waits", "deployment", True)]
        if not args.smoke:
            ping_engines += [("deployment, Flower's own waits", "deployment", False)]
            if not args.no_simulation:
                ping_engines.insert(1, ("simulation", "simulation", True))
        pings = ping_table(ping_engines, 1 if args.smoke else args.ping_repeats, work)
        demo_engines = ["local", "deployment"] if args.smoke or args.no_simulation else \
            ["local", "simulation", "deployment"]
        demos, ratio = demo_table(demo_engines, small, ["psi"] if args.smoke else None,
                                  1 if args.smoke else args.demo_repeats, work)
    notes = [
        f"1-minute load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after (2 cores, shared).",
        f"Deployment demo / local demo: {ratio:.1f}x (target {TARGET_RATIO}x).",
        "Extra s per exchange: (engine - local) / exchanges, so it includes each phase's own start "
        "(a deployment per phase: SuperLink, SuperNodes, the run's submission, the ServerApp, the role query).",
        f"SuperExec task poll {deployment.TASK_POLL} s with fedscore's waits (Flower's default 1 s); the SuperNode's "
        "idle pull backs off from 0.05 to 0.5 s (Flower's own: 3 s).",
        "Each message still starts a fresh ClientApp process (Flower 1.42 has no long-lived ClientApp): importing "
        "Flower takes about 1.5 s of it on this machine.",
    ]
    write_results("deployment", args.out, [pings, demos], notes, smoke=args.smoke)


if __name__ == "__main__":
    main()
