"""``fedscore horizontal lr``: federated logistic regression for N parties."""

import math
import warnings
from pathlib import Path

import click

from ..kit.options import click_options
from ..protocols.horizontal_lr.options import HorizontalLROptions
from . import chosen_engine, engine_options, run_options
from .horizontal import horizontal


@horizontal.command("lr")
@click.option("--party", "parties", multiple=True, required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="A party's table (CSV or Parquet); repeat for each party. The party is named after the file.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Output folder.")
@click.option("--keys", "key_dir", type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="Key folder from 'fedscore keys init' (the i-th --party gets party-i.secret). "
                   "Default: a fresh key for this run, deleted afterwards.")
@click_options(HorizontalLROptions)
@engine_options
@run_options
def lr(parties, out, key_dir, overwrite, engine, deployment, timeout, resume, **options):
    """Train one logistic regression on N parties' rows without pooling them.

    Each round every party trains on its own rows and sends its update encrypted; the
    coordinator only adds ciphertexts. Writes OUT/model.json, OUT/<party>/scores.csv
    (ID, score for each of the party's rows), OUT/report.json (validation AUC per round
    for each party) and OUT/ledger.jsonl.
    """
    from ..api.horizontal_lr import horizontal_lr
    from ..protocols.horizontal import PrivacyWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PrivacyWarning)  # printed below, from the summary
        result = horizontal_lr(list(parties), out=out, key_dir=key_dir, engine=chosen_engine(engine, deployment),
                               overwrite=overwrite, resume=resume, timeout=timeout, **options)
    summary = result.summary
    for text in summary["warnings"]:
        click.secho(f"warning: {text}", fg="yellow", err=True)
    for dropout in summary["dropouts"]:
        click.secho(f"party {dropout['role']!r} dropped out at {dropout['step']}: {dropout['reason']}", fg="yellow",
                    err=True)
    for role, history in result.history.items():
        final = history[-1]["validation_auc"] if history else math.nan
        click.echo(f"{role}: validation AUC {final:.4f} after {len(summary['rounds'])} rounds")
    if summary["dp"]:
        dp = summary["dp"]
        click.echo(f"differential privacy: epsilon {dp['epsilon']:.3g}, delta {dp['delta']:g} per party and row "
                   f"(noise multiplier {dp['noise_multiplier']:.3g}, clip {dp['clip_norm']:g})")
    click.echo(f"model: {out}/model.json; scores: {out}/<party>/scores.csv; ledger: {out}/ledger.jsonl")
