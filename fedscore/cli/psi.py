"""``fedscore psi``: match the brand's and the media's IDs without revealing the others."""

from pathlib import Path

import click

from ..kit.options import click_options
from ..protocols.psi.options import PSIOptions
from . import chosen_engine, engine_options, main, run_options


@main.command("psi")
@click.option("--brand", "brand_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The brand's table (CSV or Parquet).")
@click.option("--media", "media_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The media's table (CSV or Parquet).")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output folder: brand/ and media/ results, ledger.jsonl, summary.json.")
@click_options(PSIOptions)
@engine_options
@run_options
def psi(brand_path, media_path, out, overwrite, engine, deployment, timeout, resume, **options):
    """Private set intersection of the brand's and the media's ID columns.

    Writes DIR/brand/intersection.csv and DIR/media/intersection.csv (mode both: the
    matched IDs as each party spells them, in the same row order at both), or
    DIR/brand/match_flags.csv (mode labelled), plus each party's psi_report.json (its
    own empty and duplicated IDs), DIR/ledger.jsonl and DIR/summary.json.
    """
    from ..api.psi import psi as run_psi

    result = run_psi(brand_path, media_path, out=out, engine=chosen_engine(engine, deployment), overwrite=overwrite,
                     timeout=timeout, resume=resume, **options)
    click.echo(_one_line(result.summary, out))


def _one_line(summary, out):
    sizes = f"brand {summary['brand']['unique']:,} IDs, media {summary['media']['unique']:,} IDs"
    skipped = "; ".join(
        f"{role}: " + ", ".join(f"{n:,} {what}" for what, n in
                                (("empty", summary[role]["empty"]), ("duplicated", summary[role]["duplicates"])) if n)
        for role in ("brand", "media") if summary[role]["empty"] or summary[role]["duplicates"]
    )
    skipped = f" (skipped {skipped})" if skipped else ""
    if summary["mode"] == "both":
        return (f"psi both: {sizes}{skipped}, {summary['intersection']:,} matched -> "
                f"{out / 'brand' / 'intersection.csv'}, {out / 'media' / 'intersection.csv'}")
    return (f"psi labelled: {sizes}{skipped}; match flags in the media's row order at the brand only -> "
            f"{out / 'brand' / 'match_flags.csv'}")
