"""``fedscore propensity``: joint propensity scoring on brand + media features, private ranks out.

With ``--model DIR``: every customer of new tables scored with DIR's trained model, nothing trained.
"""

import dataclasses
from pathlib import Path

import click

from ..kit.options import click_options
from ..params import UNSEEN_POLICIES
from ..protocols.propensity.options import PropensityOptions
from ..protocols.propensity_score.options import PropensityScoreOptions
from . import chosen_engine, echo_label_dp, engine_options, interval_text, label_dp_switch, main, run_options


@main.command("propensity")
@click.option("--brand", "brand_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The brand's table: ID, features and the label (1/0, yes/no, true/false; empty = to score).")
@click.option("--media", "media_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The media's table: ID and features.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output folder: brand/ (scores, top list, model, report), media/model.json, ledger.jsonl.")
@click.option("--model", "model_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Train nothing and read no label: score every customer of the new --brand table with this earlier "
                   "run's model (each party reads only its own half, DIR/<party>/). Only --id-column, --id-kind, "
                   "--min-intersection, --top and --unseen apply then.")
@click.option("--unseen", type=click.Choice(UNSEEN_POLICIES), default="error", show_default=True,
              help=next(f for f in dataclasses.fields(PropensityScoreOptions) if f.name == "unseen").metadata["help"]
              + " With --model only.")
@click_options(PropensityOptions)
@label_dp_switch
@engine_options
@run_options
def propensity(brand_path, media_path, out, model_dir, unseen, overwrite, engine, deployment, timeout, resume,
               **options):
    """Joint propensity: vertical logistic regression, labels at the brand, no key at the coordinator.

    Writes DIR/brand/scores.csv (every unlabelled brand user, with a calibrated probability
    and its source: the joint model for users the media knows, the brand's own model for
    the others), DIR/brand/top.csv, DIR/brand/model.json and
    DIR/media/model.json (each party's half of the model), DIR/brand/report.json
    (validation AUC, KS, lift at 10 %) and DIR/ledger.jsonl.

    With --model DIR, trains nothing and reads no label: matches the new tables' customers
    privately, ranks the matched ones with DIR's joint model in the training's private
    ranking, scores the others with the brand's own saved model, and writes
    OUT/brand/scores.csv (every row of the brand's table), OUT/brand/top.csv and
    OUT/<party>/report.json.
    """
    source = click.get_current_context().get_parameter_source
    if model_dir is not None:
        return _score(brand_path, media_path, out, model_dir, unseen, chosen_engine(engine, deployment), overwrite,
                      timeout, resume, options, source)
    if source("unseen") == click.core.ParameterSource.COMMANDLINE:
        raise click.UsageError("--unseen applies to scoring with --model only")
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
    echo_label_dp(report, "the label, and whether it is a training user,")
    for text in report.get("warnings") or ():
        click.secho(f"warning: {text}", fg="yellow", err=True)


_LABEL_PARAM = next(p for p in propensity.params if p.name == "label_column")
_LABEL_PARAM.required = False  # not with --model; without it, the options schema says that --label-column is required


def _score(brand_path, media_path, out, model_dir, unseen, engine, overwrite, timeout, resume, options, source):
    """``fedscore propensity --model DIR``: every customer of the new brand table scored with DIR's model."""
    from ..api.propensity import propensity_score

    shared = {f.name for f in dataclasses.fields(PropensityScoreOptions)}
    given = [name for name in options if source(name) == click.core.ParameterSource.COMMANDLINE]
    training = [name for name in given if name not in shared]
    if options.get("label_dp_epsilon") == "inf" and "label_dp_epsilon" not in given:
        training.append("no_label_dp")  # --no-label-dp, which sets it
    if training:
        flags = ", ".join("--" + name.replace("_", "-") for name in training)
        raise click.UsageError(f"{flags}: training option(s), but --model trains nothing (the model's own apply)")
    result = propensity_score(brand_path, media_path, model=model_dir, out=out, engine=engine, overwrite=overwrite,
                              timeout=timeout, resume=resume, unseen=unseen,
                              **{name: value for name, value in options.items()
                                 if name in shared and value is not None})
    report, summary = result.reports["brand"], result.summary
    by_source = report["scored_by_source"]
    click.echo(f"propensity --model: {report['scored_users']:,} customers scored with the model of {model_dir} "
               f"({by_source['joint']:,} by the joint model, {summary['ranked_users']:,} ranked privately; "
               f"{by_source['brand only']:,} by the brand's own model); nothing trained, no label read -> "
               f"{out / 'brand' / 'scores.csv'}, {out / 'brand' / 'top.csv'}")
