"""``fedscore segment`` (brand + media personas) and ``fedscore horizontal kmeans`` (N parties)."""

import warnings
from pathlib import Path

import click

from ..errors import InputError
from ..kit.options import click_options
from ..protocols.horizontal import PrivacyWarning
from ..protocols.horizontal_kmeans.options import HorizontalKMeansOptions
from ..protocols.segment.options import SegmentOptions
from . import chosen_engine, engine_options, main, run_options
from .horizontal import horizontal


@main.command()
@click.option("--brand", "brand_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The brand's table (CSV or Parquet).")
@click.option("--media", "media_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The media party's table (CSV or Parquet).")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Output folder.")
@click_options(SegmentOptions)
@engine_options
@run_options
def segment(brand_path, media_path, out, engine, deployment, overwrite, timeout, resume, **options):
    """Split the users both parties hold into K personas, on the brand's and the media's features.

    Matches the users privately, then runs KMeans with each party keeping its own slice
    of every centroid; no partial distance or feature value leaves its party. Writes
    OUT/<party>/segments.csv (ID, segment), OUT/<party>/profiles.csv (size and feature
    means per segment: the party's own, plus the other party's for segments of at
    least --min-segment-size users), OUT/<party>/model.json and OUT/ledger.jsonl.
    """
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
