"""``fedscore horizontal lr``: federated logistic regression for N parties."""

import math
import warnings

import click

from ..scoring_horizontal import DEFAULT_ROUNDS, HorizontalLogisticRegression, PrivacyWarning
from . import chosen_engine, engine_options, run_options
from .horizontal import horizontal


@horizontal.command("lr")
@click.option("--party", "parties", multiple=True, required=True, type=click.Path(dir_okay=False),
              help="A party's table (CSV or Parquet); repeat for each party. The party is named after the file.")
@click.option("--id-column", required=True, help="Column holding each row's ID.")
@click.option("--label-column", required=True,
              help="Label column: 1/0, yes/no or true/false; an empty cell marks a row to score, not train on.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True, help="Output folder.")
@click.option("--rounds", type=click.IntRange(min=1), default=DEFAULT_ROUNDS, show_default=True, help="FedAvg rounds.")
@click.option("--dp-epsilon", type=click.FloatRange(min=0, min_open=True),
              help="Differential privacy per row (DP-SGD): each party clips every row's gradient and adds Gaussian "
                   "noise in each local step before encrypting its update, so the whole run spends this epsilon for "
                   "any one row of any party. Not party-level DP (a party's whole table is not hidden).")
@click.option("--min-parties", type=click.IntRange(min=2),
              help="A round goes on when at least this many parties answered (default: all of them).")
@click.option("--proximal-mu", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="FedProx proximal term (0: plain FedAvg).")
@click.option("--keys", "key_dir", type=click.Path(file_okay=False, exists=True),
              help="Key folder from 'fedscore keys init' (the i-th --party gets party-i.secret). "
                   "Default: a fresh key for this run, deleted afterwards.")
@engine_options
@run_options
def lr(parties, id_column, label_column, out_dir, rounds, dp_epsilon, min_parties, proximal_mu, key_dir, engine,
       deployment, overwrite, timeout, resume):
    """Train one logistic regression on N parties' rows without pooling them.

    Each round every party trains on its own rows and sends its update encrypted; the
    coordinator only adds ciphertexts. Writes OUT/model.json, OUT/<party>/scores.csv
    (ID, score for each of the party's rows), OUT/report.json (validation AUC per round
    for each party) and OUT/ledger.jsonl.
    """
    model = HorizontalLogisticRegression(rounds=rounds, dp_epsilon=dp_epsilon, min_parties=min_parties,
                                         proximal_mu=proximal_mu)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PrivacyWarning)  # printed below, from the summary
        model.fit(list(parties), id_column=id_column, label_column=label_column, out_dir=out_dir, key_dir=key_dir,
                  engine=chosen_engine(engine, deployment), overwrite=overwrite, resume=resume, timeout=timeout)
    summary = model.summary_
    for text in summary["warnings"]:
        click.secho(f"warning: {text}", fg="yellow", err=True)
    for dropout in summary["dropouts"]:
        click.secho(f"party {dropout['role']!r} dropped out at {dropout['step']}: {dropout['reason']}", fg="yellow",
                    err=True)
    for role, history in model.history_.items():
        final = history[-1]["validation_auc"] if history else math.nan
        click.echo(f"{role}: validation AUC {final:.4f} after {len(summary['rounds'])} rounds")
    if summary["dp"]:
        dp = summary["dp"]
        click.echo(f"differential privacy: epsilon {dp['epsilon']:.3g}, delta {dp['delta']:g} per party and row "
                   f"(noise multiplier {dp['noise_multiplier']:.3g}, clip {dp['clip_norm']:g})")
    click.echo(f"model: {out_dir}/model.json; scores: {out_dir}/<party>/scores.csv; ledger: {out_dir}/ledger.jsonl")
