"""``fedscore.lookalike``: find the media users most like the brand's seed, with the seed hidden from the media."""

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..kit.model import ModelFile
from ..kit.options import with_options
from ..protocols.lookalike.options import LookalikeOptions
from ._run import ENGINE, run


@dataclass
class LookalikeResult:
    """What a lookalike run produced, read back from its output folder.

    Attributes
    ----------
    out : Path
    report : dict
        The brand's aggregate report (``brand/report.json``).
    scores : pandas.DataFrame
        The media's scores (``media/scores.csv``): ID and score.
    audiences : dict of str to pandas.DataFrame
        The media's audience files, by size label (``5pct``, ``2000``).
    model : fedscore.kit.model.ModelFile
        The media's model (``media/model.json``): encoder, coefficients, intercept, the
        clipping norm with label DP, and how it was trained.
    summary : dict
        The job's public summary.
    """

    out: Path
    report: dict
    scores: pd.DataFrame
    audiences: dict
    model: ModelFile
    summary: dict

    @property
    def holdout_auc(self):
        """The chosen model's AUC on the held-out rows, as the brand measured it."""
        return self.report["holdout"]["auc"]


@with_options(LookalikeOptions)
def lookalike(seed, media, *, out, engine=ENGINE, overwrite=False, resume=False, timeout=600.0, options):
    """Find the media users most like the brand's seed, without either side seeing the other's data.

    Parameters
    ----------
    seed : path or pandas.DataFrame
        The brand's seed list: the ID column (other columns are ignored).
    media : path or pandas.DataFrame
        The media's audience: the ID column and feature columns (numeric columns are
        standardised, text columns one-hot encoded, by the media).
    out : path
        Output folder: ``media/`` (scores, audiences, model), ``brand/report.json``,
        ``ledger.jsonl``, ``summary.json``; written atomically.
    engine, overwrite, resume, timeout
        How the run goes, as for every job: :func:`fedscore.api._run.run`.

    Returns
    -------
    LookalikeResult

    Notes
    -----
    Both parties run here, for the caller: a shorter ``paillier_key_bits`` than the
    default is taken as both parties' consent to it.

    Label DP is on by default (``label_dp_epsilon=4``), with seed members left in the
    audiences: excluding them (``exclude_seed=True``) tells the media the seed flags of its
    top users, so it needs ``label_dp_epsilon=float("inf")`` (or None), the explicit opt-out;
    the report then says what the media can learn. The media merges rare categories and
    limits outliers on its own rows by default (``min_category_count``, ``outlier_quantile``).

    Examples
    --------
    >>> result = lookalike("seed.csv", "media.csv", id_column="uid", out="run")  # doctest: +SKIP
    >>> result.report["holdout"]["auc"]  # doctest: +SKIP
    0.74
    """
    consent = {"allow_weak_keys": True} if options.paillier_key_bits else {}
    summary = run("lookalike", {"brand": seed, "media": media}, options, out=out, engine=engine,
                  overwrite=overwrite, resume=resume, timeout=timeout,
                  settings={"brand": consent, "media": consent})
    return read_result(out, summary)


def read_result(out, summary=None):
    """Read a lookalike output folder into a :class:`LookalikeResult`."""
    out = Path(out)
    media = out / "media"
    audiences = {p.stem[len("audience_"):]: pd.read_csv(p, dtype={0: str}, keep_default_na=False)
                 for p in sorted(media.glob("audience_*.csv"))}
    if summary is None:
        summary = json.loads((out / "summary.json").read_text())
    return LookalikeResult(out=out, report=json.loads((out / "brand" / "report.json").read_text()),
                           scores=pd.read_csv(media / "scores.csv", dtype={0: str}, keep_default_na=False),
                           audiences=audiences, model=ModelFile.load(media / "model.json"), summary=summary)
