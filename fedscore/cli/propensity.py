"""``fedscore propensity``: joint propensity scoring on brand + media features, private ranks out."""

from pathlib import Path

import click

from ..kit.options import click_options
from ..protocols.propensity.options import PropensityOptions
from . import chosen_engine, engine_options, interval_text, label_dp_switch, main, run_options


@main.command("propensity")
@click.option("--brand", "brand_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The brand's table: ID, features and the label (1/0, yes/no, true/false; empty = to score).")
@click.option("--media", "media_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The media's table: ID and features.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output folder: brand/ (scores, top list, model, report), media/model.json, ledger.jsonl.")
@click_options(PropensityOptions)
@label_dp_switch
@engine_options
@run_options
def propensity(brand_path, media_path, out, overwrite, engine, deployment, timeout, resume, **options):
    """Joint propensity: vertical logistic regression, labels at the brand, no key at the coordinator.

    Writes DIR/brand/scores.csv (each unlabelled brand user found at the media, with the
    percentile of its score), DIR/brand/top.csv, DIR/brand/model.json and
    DIR/media/model.json (each party's half of the model), DIR/brand/report.json
    (validation AUC, KS, lift at 10 %) and DIR/ledger.jsonl.
    """
    from ..api.propensity import propensity as run_propensity

    result = run_propensity(brand_path, media_path, out=out, engine=chosen_engine(engine, deployment),
                            overwrite=overwrite, resume=resume, timeout=timeout, **options)
    report, summary = result.report, result.summary
    validation = report["validation"]
    click.echo(f"propensity: {report['matched_users']:,} matched users, {summary['epochs_run']} epochs "
               f"(best {summary['best_epoch'] + 1}); "
               f"validation AUC {validation['auc']:.3f} {interval_text(validation.get('auc_interval'))}, KS {validation['ks']:.3f}, lift@10% "
               f"{validation['lift_at_10pct']:.2f}; {report['scored_users']:,} users scored -> "
               f"{out / 'brand' / 'scores.csv'}, {out / 'brand' / 'top.csv'}")
    if report.get("label_dp"):
        click.echo(f"label DP: epsilon {report['label_dp']['epsilon']:g}, delta {report['label_dp']['delta']:g}, "
                   f"noise std {report['label_dp']['noise_std']:.3g} on the label aggregate")
    for text in report.get("warnings") or ():
        click.secho(f"warning: {text}", fg="yellow", err=True)
