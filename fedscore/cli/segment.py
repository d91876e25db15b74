"""``fedscore segment`` (brand + media personas) and ``fedscore horizontal kmeans`` (N parties)."""

import warnings
from pathlib import Path

import click

from ..errors import InputError
from ..params import MIN_SEGMENT_SIZE
from ..segment import DEFAULT_MAX_ITER, DEFAULT_N_INIT, DEFAULT_RESTART_ITER, VerticalKMeans
from ..scoring_horizontal import PrivacyWarning
from ..segment_horizontal import HorizontalKMeans
from . import chosen_engine, engine_options, main, run_options
from .horizontal import horizontal


@main.command()
@click.option("--brand", required=True, type=click.Path(dir_okay=False), help="The brand's table (CSV or Parquet).")
@click.option("--media", required=True, type=click.Path(dir_okay=False), help="The media party's table.")
@click.option("--id-column", required=True, help="Column holding each user's ID, in both tables.")
@click.option("--k", "k", required=True, type=click.IntRange(min=2), help="Number of segments (personas).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--exclude", multiple=True, help="A column to leave out of the features (repeatable), e.g. a label.")
@click.option("--min-segment-size", type=click.IntRange(min=1), default=MIN_SEGMENT_SIZE, show_default=True,
              help="Segments smaller than this are not profiled to the other party.")
@click.option("--profile-noise", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Gaussian noise on released profile means, in standard deviations of each feature.")
@click.option("--n-init", type=click.IntRange(min=1), default=DEFAULT_N_INIT, show_default=True,
              help="Candidate initial centroid sets, scored by their privately computed joint inertia.")
@click.option("--restart-iter", type=click.IntRange(min=1), default=DEFAULT_RESTART_ITER, show_default=True,
              help="Iterations after which only the candidate of least joint inertia goes on.")
@click.option("--max-iter", type=click.IntRange(min=1), default=DEFAULT_MAX_ITER, show_default=True,
              help="Stop after this many iterations even if the centroids still move (the output says so).")
@click.option("--seed", type=int, help="Seed for the choice of initial users (masks always use the OS generator).")
@engine_options
@run_options
def segment(brand, media, id_column, k, out_dir, exclude, min_segment_size, profile_noise, n_init, restart_iter,
            max_iter, seed, engine, deployment, overwrite, timeout, resume):
    """Split the users both parties hold into K personas, on the brand's and the media's features.

    Matches the users privately, then runs KMeans with each party keeping its own slice
    of every centroid; no partial distance or feature value leaves its party. Writes
    OUT/<party>/segments.csv (ID, segment), OUT/<party>/profiles.csv (size and feature
    means per segment: the party's own, plus the other party's for segments of at
    least --min-segment-size users) and OUT/ledger.jsonl.
    """
    model = VerticalKMeans(k, id_column=id_column, exclude=exclude, n_init=n_init, restart_iter=restart_iter,
                           max_iter=max_iter, min_segment_size=min_segment_size, profile_noise=profile_noise,
                           random_state=seed,
                           engine=chosen_engine(engine, deployment))
    model.fit(brand, media, out_dir, overwrite=overwrite, resume=resume, timeout=timeout)
    summary = model.summary_
    sizes = ", ".join(str(int(s)) for s in model.profiles_["brand"]["size"])
    state = "converged" if model.converged_ else "stopped at --max-iter"
    click.echo(f"{summary['rows']} shared users in {k} segments ({sizes}); {state} after {model.n_iter_} "
               f"iterations; {summary['released_segments']} of {k} segments profiled to the other party")
    click.echo(f"segments: {out_dir}/<party>/segments.csv; profiles: {out_dir}/<party>/profiles.csv; "
               f"ledger: {out_dir}/ledger.jsonl")


@horizontal.command("kmeans")
@click.option("--party", "parties", multiple=True, required=True, type=click.Path(dir_okay=False),
              help="A party's table (CSV or Parquet); repeat for each party. The party is named after the file.")
@click.option("--id-column", required=True, help="Column holding each row's ID.")
@click.option("--k", "k", required=True, type=click.IntRange(min=2), help="Number of segments.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--exclude", multiple=True, help="A column to leave out (repeatable); text columns must be.")
@click.option("--dp-epsilon", type=click.FloatRange(min=0, min_open=True),
              help="Differential privacy (per row): noise every party's sums and counts, the initialisation's "
                   "included, so the run spends this epsilon.")
@click.option("--min-proposal-size", type=click.IntRange(min=1),
              help="Without DP, a party proposes as initial centroids only local clusters of at least this many "
                   "rows. Default: half the party's average local cluster (rows / 2K), between 10 and 50.")
@click.option("--max-iter", type=click.IntRange(min=1), default=DEFAULT_MAX_ITER, show_default=True,
              help="Stop after this many iterations even if the centroids still move (the output says so).")
@click.option("--seed", type=int, help="Seed of the shared initialisation.")
@engine_options
@run_options
def kmeans(parties, id_column, k, out_dir, exclude, dp_epsilon, min_proposal_size, max_iter, seed, engine, deployment,
           overwrite, timeout, resume):
    """Cluster the rows of N parties with the same columns into K segments.

    Sums and counts travel encrypted under a key the coordinator does not hold; the
    coordinator only adds ciphertexts. Writes OUT/<party>/segments.csv (ID, segment),
    OUT/<party>/centroids.csv (the aggregate centroids, in the columns' units) and
    OUT/ledger.jsonl.
    """
    names = [Path(p).stem for p in parties]
    if len(set(names)) != len(names):
        raise InputError("two --party files have the same name; parties are named after their files")
    model = HorizontalKMeans(k, id_column=id_column, exclude=exclude, max_iter=max_iter,
                             min_proposal_size=min_proposal_size, dp_epsilon=dp_epsilon, random_state=seed,
                             engine=chosen_engine(engine, deployment))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PrivacyWarning)  # printed below, from the summary
        model.fit(dict(zip(names, parties)), out_dir, overwrite=overwrite, resume=resume, timeout=timeout)
    summary = model.summary_
    for text in summary["warnings"]:
        click.secho(f"warning: {text}", fg="yellow", err=True)
    state = "converged" if summary["converged"] else "stopped at --max-iter"
    click.echo(f"{sum(summary['rows'].values())} rows of {len(names)} parties in {k} segments; {state} after "
               f"{summary['n_iter']} iterations")
    if summary["dp"]:
        dp = summary["dp"]
        click.echo(f"differential privacy: epsilon {dp['epsilon_spent']:.3g} spent of {dp['epsilon_budget']:g}, "
                   f"delta {dp['delta']:g} per party (noise multiplier {dp['noise_multiplier']:.3g})")
    click.echo(f"segments: {out_dir}/<party>/segments.csv; centroids: {out_dir}/<party>/centroids.csv; "
               f"ledger: {out_dir}/ledger.jsonl")
