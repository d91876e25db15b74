"""``fedscore demo``: the whole story on the shipped bank marketing data."""

import warnings

import click

from ..params import DEMO_OUT
from . import chosen_engine, engine_options, main

RAY_GPU_NOTICE = ".*Ray will no longer override accelerator visible devices.*"
"""A notice Ray prints on start about GPUs, which the demo does not use."""


@main.command()
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=DEMO_OUT, show_default=True,
              help="Folder for the demo's data, run folders and reports (created; refused if it exists "
                   "unless --overwrite).")
@click.option("--small", is_flag=True,
              help="Use about half of the people and lighter settings: a quicker look, noisier numbers.")
@click.option("--phase", "phases", multiple=True,
              help="Run only this phase: psi, lookalike, propensity or segment (repeat to pick several). "
                   "Default: all of them.")
@engine_options
def demo(out_dir, small, phases, engine, deployment, overwrite):
    """Run the whole story on bank marketing data shipped with fedscore.

    A bank (the brand) and an ad platform (the media party) each hold part of the
    UCI Bank Marketing data. The demo matches their customers privately, finds
    lookalikes of the bank's best customers in the platform's audience without the
    platform learning who they are, scores the bank's customers with a joint model,
    and splits them into personas. It prints a summary and writes one HTML report
    per party (with PNG charts) into the output folder.
    """
    from rich.console import Console
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from ..demo import run_demo
    from ..runtime import progress as steps
    from ..report.charts import human_bytes

    engine = chosen_engine(engine, deployment)
    console = Console(stderr=True)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                  TextColumn("{task.fields[result]}"), console=console) as bars:
        tasks = {}

        def progress(event, phase, info):
            if event == "start":
                tasks[phase.name] = bars.add_task(phase.title, total=None, result="")
                tasks["current"] = tasks[phase.name]
            elif event == "done":
                bars.update(tasks[phase.name], total=1, completed=1, result=info.get("headline") or "done")

        def show_step(text):  # the step a phase is at, beside its bar
            if "current" in tasks:
                bars.update(tasks["current"], result=f"[dim]{text.split(': ', 1)[-1]}")

        with warnings.catch_warnings(), steps.on_console(show=show_step):
            warnings.filterwarnings("ignore", message=RAY_GPU_NOTICE)
            result = run_demo(out_dir, engine=engine, small=small, overwrite=overwrite, phases=phases or None,
                              progress=progress)

    table = Table(title="fedscore demo", title_justify="left")
    table.add_column("phase")
    table.add_column("result")
    table.add_column("time", justify="right")
    table.add_column("crossed parties", justify="right")
    for name, info in result["phases"].items():
        if "skipped" in info:
            table.add_row(f"[dim]{info['title']}", f"[dim]skipped ({info['skipped']})", "", "")
            continue
        crossed = human_bytes(info["bytes"]) if info.get("bytes") is not None else ""
        table.add_row(info["title"], info.get("headline") or "done", f"{info['seconds']:.1f} s", crossed)
    out = Console()
    out.print(table)
    for role, path in result["reports"].items():
        out.print(f"{role} report: {path}")
