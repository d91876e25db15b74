"""``fedscore lookalike``: find media users like the brand's seed, with the seed hidden from the media."""

from pathlib import Path

import click

from ..kit.options import click_options
from ..protocols.lookalike.options import LookalikeOptions
from . import chosen_engine, echo_label_dp, engine_options, interval_text, label_dp_switch, main, run_options


@main.command("lookalike")
@click.option("--seed", "seed_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The brand's seed list: a table with the ID column (other columns are ignored).")
@click.option("--media", "media_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The media's audience: the ID column and feature columns.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output folder: media/ (scores, audiences, model), brand/report.json, ledger.jsonl.")
@click_options(LookalikeOptions)
@label_dp_switch
@engine_options
@run_options
def lookalike(seed_path, media_path, out, overwrite, engine, deployment, timeout, resume, **options):
    """Hidden-seed lookalike: score the media's audience by likeness to the brand's seed.

    The media trains on labels it cannot read and ends with DIR/media/scores.csv,
    DIR/media/audience_<size>.csv and DIR/media/model.json; the brand ends with
    DIR/brand/report.json (held-out AUC, recall and precision per audience size),
    aggregates only.
    """
    from ..api.lookalike import lookalike as run_lookalike

    result = run_lookalike(seed_path, media_path, out=out, engine=chosen_engine(engine, deployment),
                           overwrite=overwrite, resume=resume, timeout=timeout, **options)
    report = result.report
    sizes = ", ".join(f"{a['size']}: recall {a['recall']:.2f}" for a in report["holdout"]["audiences"])
    click.echo(f"lookalike: {report['matched_seed']:,} of {report['seed_size']:,} seed IDs matched among "
               f"{report['media_rows']:,} media users; held-out AUC {report['holdout']['auc']:.3f} "
               f"{interval_text(report['holdout'].get('auc_interval'))} ({sizes}) -> "
               f"{out / 'media'}, {out / 'brand' / 'report.json'}")
    echo_label_dp(report, "the seed membership")
    for text in report.get("warnings") or ():
        click.secho(f"warning: {text}", fg="yellow", err=True)
