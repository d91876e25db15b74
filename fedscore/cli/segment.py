"""``fedscore segment`` (brand + media personas) and ``fedscore horizontal kmeans`` (N parties)."""

import dataclasses
import warnings
from pathlib import Path

import click

from ..errors import InputError
from ..kit.options import click_options
from ..params import UNSEEN_POLICIES
from ..protocols.horizontal import PrivacyWarning
from ..protocols.horizontal_kmeans.options import HorizontalKMeansOptions
from ..protocols.segment.options import SegmentOptions
from ..protocols.segment_assign.options import SegmentAssignOptions
from . import chosen_engine, engine_options, main, run_options
from .horizontal import horizontal


def _help(schema, name):
    """The help of option ``name`` of ``schema``, stated once there."""
    return next(f for f in dataclasses.fields(schema) if f.name == name).metadata["help"]


@main.command()
@click.option("--brand", "brand_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The brand's table (CSV or Parquet).")
@click.option("--media", "media_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The media party's table (CSV or Parquet).")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Output folder.")
@click.option("--model", "model_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Train nothing: put the users of the new tables into the segments of this earlier run's folder "
                   "(each party reads only its own half, DIR/<party>/model.json). Only --id-column, --id-kind, "
                   "--min-intersection and --unseen apply then.")
@click.option("--unseen", type=click.Choice(UNSEEN_POLICIES), default="error", show_default=True,
              help=_help(SegmentAssignOptions, "unseen") + " With --model only.")
@click_options(SegmentOptions)
@engine_options
@run_options
def segment(brand_path, media_path, out, model_dir, unseen, engine, deployment, overwrite, timeout, resume,
            **options):
    """Split the users both parties hold into K personas, on the brand's and the media's features.

    Matches the users privately, then runs KMeans with each party keeping its own slice
    of every centroid; no partial distance or feature value leaves its party. Writes
    OUT/<party>/segments.csv (ID, segment), OUT/<party>/profiles.csv (size and feature
    means per segment: the party's own, plus the other party's for segments of at
    least --min-segment-size users), OUT/<party>/model.json and OUT/ledger.jsonl.

    With --model DIR, trains nothing: matches the users of the new tables privately and
    puts each into its nearest segment of DIR's model in one private round, each party
    with its own half. Writes OUT/<party>/segments.csv and OUT/<party>/report.json.
    """
    source = click.get_current_context().get_parameter_source
    if model_dir is not None:
        return _assign(brand_path, media_path, out, model_dir, unseen, chosen_engine(engine, deployment), overwrite,
                       timeout, resume, options, source)
    if source("unseen") == click.core.ParameterSource.COMMANDLINE:
        raise click.UsageError("--unseen applies to assigning with --model only")
    from ..api.segment import segment as run_segment

    result = run_segment(brand_path, media_path, out=out, engine=chosen_engine(engine, deployment),
                         overwrite=overwrite, timeout=timeout, resume=resume, **options)
    summary, k = result.summary, result.summary["k"]
    sizes = ", ".join(str(int(s)) for s in result.profiles["brand"]["size"])
    state = "converged" if result.converged else "stopped at --max-iter"
    click.echo(f"{summary['rows']} shared users in {k} segments ({sizes}); {state} after {result.n_iter} "
               f"iterations; {summary['released_segments']} of {k} segments profiled to the other party")
    click.echo(f"segments: {out}/<party>/segments.csv; profiles: {out}/<party>/profiles.csv; "
               f"ledger: {out}/ledger.jsonl")


_K_PARAM = next(p for p in segment.params if p.name == "k")
_K_PARAM.required = False  # not with --model; without it, the options schema says that --k is required


def _assign(brand_path, media_path, out, model_dir, unseen, engine, overwrite, timeout, resume, options, source):
    """``fedscore segment --model DIR``: the new tables' users into DIR's segments."""
    from ..api.segment import segment_assign

    shared = {f.name for f in dataclasses.fields(SegmentAssignOptions)}
    given = [name for name in options if source(name) == click.core.ParameterSource.COMMANDLINE]
    training = [name for name in given if name not in shared]
    if training:
        flags = ", ".join("--" + name.replace("_", "-") for name in training)
        raise click.UsageError(f"{flags}: training option(s), but --model trains nothing (the model's own apply)")
    result = segment_assign(brand_path, media_path, model=model_dir, out=out, engine=engine, overwrite=overwrite,
                            timeout=timeout, resume=resume, unseen=unseen,
                            **{name: value for name, value in options.items() if name in shared})
    sizes = ", ".join(str(s) for s in result.reports["brand"]["segment_sizes"])
    k = result.summary["k"]
    click.echo(f"{result.summary['rows']} shared users put into the {k} segments of {model_dir} ({sizes}); nothing "
               f"trained")
    click.echo(f"segments: {out}/<party>/segments.csv; reports: {out}/<party>/report.json; ledger: {out}/ledger.jsonl")


@horizontal.command("kmeans")
@click.option("--party", "parties", multiple=True, required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="A party's table (CSV or Parquet); repeat for each party. The party is named after the file.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Output folder.")
@click_options(HorizontalKMeansOptions)
@engine_options
@run_options
def kmeans(parties, out, engine, deployment, overwrite, timeout, resume, **options):
    """Cluster the rows of N parties with the same columns into K segments.

    Sums and counts travel encrypted under a key the coordinator does not hold; the
    coordinator only adds ciphertexts. Writes OUT/<party>/segments.csv (ID, segment),
    OUT/<party>/centroids.csv (the aggregate centroids, in the columns' units),
    OUT/<party>/model.json (assigns new rows with 'fedscore score') and OUT/ledger.jsonl.
    """
    from ..api.horizontal_kmeans import horizontal_kmeans

    names = [path.stem for path in parties]
    if len(set(names)) != len(names):
        raise InputError("two --party files have the same name; parties are named after their files")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PrivacyWarning)  # printed below, from the summary
        result = horizontal_kmeans(dict(zip(names, parties)), out=out, engine=chosen_engine(engine, deployment),
                                   overwrite=overwrite, timeout=timeout, resume=resume, **options)
    summary = result.summary
    for text in summary["warnings"]:
        click.secho(f"warning: {text}", fg="yellow", err=True)
    state = "converged" if summary["converged"] else "stopped at --max-iter"
    click.echo(f"{sum(summary['rows'].values())} rows of {len(names)} parties in {summary['k']} segments; {state} "
               f"after {summary['n_iter']} iterations")
    if summary["dp"]:
        dp = summary["dp"]
        click.echo(f"differential privacy: epsilon {dp['epsilon_spent']:.3g} spent of {dp['epsilon_budget']:g}, "
                   f"delta {dp['delta']:g} per party (noise multiplier {dp['noise_multiplier']:.3g})")
    click.echo(f"segments: {out}/<party>/segments.csv; centroids: {out}/<party>/centroids.csv; "
               f"ledger: {out}/ledger.jsonl")
