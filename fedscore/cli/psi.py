"""``fedscore psi``: match the brand's and the media's IDs without revealing the others."""

from pathlib import Path

import click

from ..errors import InputError
from ..ids import ID_KINDS
from ..psi import MODES, psi as run_psi
from . import chosen_engine, engine_options, main, run_options


@main.command("psi")
@click.option("--brand", "brand_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The brand's table (CSV or Parquet).")
@click.option("--media", "media_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The media's table (CSV or Parquet).")
@click.option("--id-column", default="id", show_default=True, help="The ID column, in both tables.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output folder: brand/ and media/ results, ledger.jsonl, summary.json.")
@click.option("--mode", type=click.Choice(MODES), default="both", show_default=True,
              help="both: each party gets the matched IDs in one shared row order. labelled: only the brand "
                   "learns which of the media's rows match (match_flags.csv, in the media's row order); the "
                   "media learns only the size of the brand's list.")
@click.option("--id-kind", type=click.Choice(ID_KINDS), default="auto", show_default=True,
              help="How IDs are normalised: e-mails trimmed and lower-cased, phone numbers to digits, hex hashes "
                   "lower-cased, other text trimmed. auto picks the rule by each value's shape.")
@click.option("--min-intersection", type=click.IntRange(min=0), default=0, show_default=True,
              help="Stop with an error when fewer IDs than this match (clean rooms commonly ask for 100 or more).")
@engine_options
@run_options
def psi(brand_path, media_path, id_column, out, mode, id_kind, min_intersection, overwrite, engine, deployment,
        timeout, resume):
    """Private set intersection of the brand's and the media's ID columns.

    Writes DIR/brand/intersection.csv and DIR/media/intersection.csv (mode both: the
    matched IDs as each party spells them, in the same row order at both), or
    DIR/brand/match_flags.csv (mode labelled), plus each party's psi_report.json (its
    own empty and duplicated IDs), DIR/ledger.jsonl and DIR/summary.json.
    """
    for path in (brand_path, media_path):
        if not path.is_file():
            raise InputError("file not found", path=path)
    result = run_psi(brand_path, media_path, id_column=id_column, out=out, mode=mode, id_kind=id_kind,
                     min_intersection=min_intersection, engine=chosen_engine(engine, deployment),
                     overwrite=overwrite, timeout=timeout, resume=resume)
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
