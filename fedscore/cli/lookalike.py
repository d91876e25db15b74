"""``fedscore lookalike``: find media users like the brand's seed, with the seed hidden from the media."""

from pathlib import Path

import click

from ..errors import InputError
from ..ids import ID_KINDS
from ..lookalike import BACKENDS, DEFAULT_AUDIENCE_SIZES, lookalike as run_lookalike
from ..params import MIN_SEED_SIZE
from . import chosen_engine, engine_options, main, run_options


@main.command("lookalike")
@click.option("--seed", "seed_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The brand's seed list: a table with the ID column (other columns are ignored).")
@click.option("--media", "media_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The media's audience: the ID column and feature columns.")
@click.option("--id-column", required=True, help="The ID column, in both tables.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output folder: media/ (scores, audiences, model), brand/report.json, ledger.jsonl.")
@click.option("--backend", type=click.Choice(BACKENDS), default="ckks", show_default=True,
              help="Homomorphic encryption: ckks (fast, approximate, flooded releases) or paillier (exact, slow).")
@click.option("--audience-size", "audience_sizes", default=",".join(DEFAULT_AUDIENCE_SIZES), show_default=True,
              help="Audience sizes, comma-separated: percentages of the audience or absolute counts.")
@click.option("--min-seed", default=MIN_SEED_SIZE, show_default=True, type=int,
              help="Refuse the run when fewer seed members than this are found at the media.")
@click.option("--exclude-seed/--include-seed", default=True, show_default=True,
              help="Leave seed members out of the audiences. Excluding them tells the media which of its top "
                   "candidates are seed members.")
@click.option("--label-dp-epsilon", type=float, default=None,
              help="Gaussian label differential privacy on the one label aggregate the media receives "
                   "(needs --include-seed); the epsilon is reported.")
@click.option("--id-kind", type=click.Choice(ID_KINDS), default="auto", show_default=True,
              help="How IDs are normalised before matching.")
@engine_options
@run_options
def lookalike(seed_path, media_path, id_column, out, backend, audience_sizes, min_seed, exclude_seed,
              label_dp_epsilon, id_kind, overwrite, engine, deployment, timeout, resume):
    """Hidden-seed lookalike: score the media's audience by likeness to the brand's seed.

    The media trains on labels it cannot read and ends with DIR/media/scores.csv,
    DIR/media/audience_<size>.csv and DIR/media/model.json; the brand ends with
    DIR/brand/report.json (held-out AUC, recall and precision per audience size),
    aggregates only.
    """
    for path in (seed_path, media_path):
        if not path.is_file():
            raise InputError("file not found", path=path)
    result = run_lookalike(seed_path, media_path, id_column=id_column, out=out, backend=backend,
                           audience_sizes=audience_sizes, min_seed=min_seed, exclude_seed=exclude_seed,
                           label_dp_epsilon=label_dp_epsilon, id_kind=id_kind,
                           engine=chosen_engine(engine, deployment), overwrite=overwrite, resume=resume,
                           timeout=timeout)
    report = result.report
    sizes = ", ".join(f"{a['size']}: recall {a['recall']:.2f}" for a in report["holdout"]["audiences"])
    click.echo(f"lookalike: {report['matched_seed']:,} of {report['seed_size']:,} seed IDs matched among "
               f"{report['media_rows']:,} media users; held-out AUC {report['holdout']['auc']:.3f} ({sizes}) -> "
               f"{out / 'media'}, {out / 'brand' / 'report.json'}")
