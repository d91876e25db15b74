"""``fedscore propensity``: joint propensity scoring on brand + media features, private ranks out."""

from pathlib import Path

import click

from ..errors import InputError
from ..ids import ID_KINDS
from ..propensity import BACKENDS, DEFAULT_EPOCHS, DEFAULT_PATIENCE, DEFAULT_TOP, propensity as run_propensity
from . import chosen_engine, engine_options, main, run_options


@main.command("propensity")
@click.option("--brand", "brand_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The brand's table: ID, features and the label (1/0, yes/no, true/false; empty = to score).")
@click.option("--media", "media_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The media's table: ID and features.")
@click.option("--id-column", required=True, help="The ID column, in both tables.")
@click.option("--label-column", required=True, help="The label column, in the brand's table.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output folder: brand/ (scores, top list, model, report), media/model.json, ledger.jsonl.")
@click.option("--backend", type=click.Choice(BACKENDS), default="ckks", show_default=True,
              help="Homomorphic encryption for training: ckks (fast, flooded releases) or paillier (exact, slow).")
@click.option("--epochs", default=DEFAULT_EPOCHS, show_default=True, type=int,
              help="Full-batch epochs at most (each is four messages, whatever the number of users).")
@click.option("--patience", default=DEFAULT_PATIENCE, show_default=True, type=int,
              help="Early stopping: stop after this many epochs without a better validation score, keeping the "
                   "best epoch's weights.")
@click.option("--top", default=DEFAULT_TOP, show_default=True,
              help="Size of brand/top.csv: a percentage of the users scored or a count.")
@click.option("--exact-scores", is_flag=True,
              help="Give the brand calibrated probabilities instead of percentiles. This reveals to the brand the "
                   "media's partial score of every ranked user (see protocols/propensity.md).")
@click.option("--label-dp-epsilon", type=float, default=None,
              help="Label differential privacy towards the media: the labels enter training once, with Gaussian "
                   "noise for (epsilon, 1e-6)-DP; rows are clipped and early stopping is off.")
@click.option("--id-kind", type=click.Choice(ID_KINDS), default="auto", show_default=True,
              help="How IDs are normalised before matching.")
@engine_options
@run_options
def propensity(brand_path, media_path, id_column, label_column, out, backend, epochs, patience, top, exact_scores,
               label_dp_epsilon, id_kind, overwrite, engine, deployment, timeout, resume):
    """Joint propensity: vertical logistic regression, labels at the brand, no key at the coordinator.

    Writes DIR/brand/scores.csv (each unlabelled brand user found at the media, with the
    percentile of its score), DIR/brand/top.csv, DIR/brand/model.json and
    DIR/media/model.json (each party's own weights only), DIR/brand/report.json
    (validation AUC, KS, lift at 10 %) and DIR/ledger.jsonl.
    """
    for path in (brand_path, media_path):
        if not path.is_file():
            raise InputError("file not found", path=path)
    result = run_propensity(brand_path, media_path, id_column=id_column, label_column=label_column, out=out,
                            backend=backend, epochs=epochs, patience=patience, top=top, exact_scores=exact_scores,
                            label_dp_epsilon=label_dp_epsilon, id_kind=id_kind,
                            engine=chosen_engine(engine, deployment), overwrite=overwrite,
                            resume=resume, timeout=timeout)
    report = result.report
    validation = report["validation"]
    click.echo(f"propensity: {report['matched_users']:,} matched users, {result.summary['epochs_run']} epochs "
               f"(best {result.summary['best_epoch'] + 1}); "
               f"validation AUC {validation['auc']:.3f}, KS {validation['ks']:.3f}, lift@10% "
               f"{validation['lift_at_10pct']:.2f}; {report['scored_users']:,} users scored -> "
               f"{out / 'brand' / 'scores.csv'}, {out / 'brand' / 'top.csv'}")
    if report.get("label_dp"):
        click.echo(f"label DP: epsilon {report['label_dp']['epsilon']:g}, delta {report['label_dp']['delta']:g}, "
                   f"noise std {report['label_dp']['noise_std']:.3g} on the label aggregate")
