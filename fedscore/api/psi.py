"""``fedscore.psi``: private set intersection of two tables on this machine."""

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..kit.options import with_options
from ..protocols.psi.options import PSIOptions
from ._run import ENGINE, run


@dataclass
class PSIResult:
    """What a PSI run produced, read back from its output folder.

    Attributes
    ----------
    out : Path
    summary : dict
        The job's public summary: mode, each party's ID counts and, in ``both`` mode,
        the intersection size.
    brand : pandas.DataFrame
        ``both``: the matched IDs as the brand spells them, in the shared order.
        ``labelled``: the brand's match flags over the media's PSI order.
    media : pandas.DataFrame or None
        ``both``: the matched IDs as the media spells them, in the same order.
        ``labelled``: None (the media learns no match).
    """

    out: Path
    summary: dict
    brand: pd.DataFrame
    media: pd.DataFrame | None


@with_options(PSIOptions)
def psi(brand, media, *, out, engine=ENGINE, overwrite=False, resume=False, timeout=600.0, options):
    """Match the brand's and the media's IDs without either seeing the other's other IDs.

    Parameters
    ----------
    brand, media : path or pandas.DataFrame
        Each party's table; only the ID column is read.
    out : path
        Output folder (``brand/``, ``media/``, ``ledger.jsonl``, ``summary.json``),
        written atomically.
    engine : {"local", "simulation", "deployment"}
    overwrite : bool
    resume : bool
        Go on from the checkpoint a failed attempt of the same run left beside ``out``.
    timeout : float
        Seconds to wait for a party's reply before the run stops naming it.

    Returns
    -------
    PSIResult

    Examples
    --------
    >>> result = psi("brand.csv", "media.csv", id_column="email", out="run")  # doctest: +SKIP
    >>> result.summary["intersection"]  # doctest: +SKIP
    3000
    """
    summary = run("psi", {"brand": brand, "media": media}, options, out=out, engine=engine, overwrite=overwrite,
                  resume=resume, timeout=timeout)
    return read_result(out, summary, options)


def read_result(out, summary, options):
    """Read a PSI output folder into a :class:`PSIResult`."""
    out = Path(out)
    if options.mode == "both":
        brand_ids, media_ids = (pd.read_csv(out / role / "intersection.csv", dtype=str, keep_default_na=False)
                                for role in ("brand", "media"))
        return PSIResult(out=out, summary=summary, brand=brand_ids, media=media_ids)
    flags = pd.read_csv(out / "brand" / "match_flags.csv", dtype={options.id_column: str}, keep_default_na=False)
    return PSIResult(out=out, summary=summary, brand=flags, media=None)
