"""``fedscore.propensity``: joint propensity scoring of two tables on this machine."""

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..kit.model import ModelFile
from ..kit.options import with_options
from ..protocols.propensity.options import PropensityOptions
from ._run import ENGINE, run


@dataclass
class PropensityResult:
    """What a propensity run produced, read back from its output folder.

    Attributes
    ----------
    out : Path
    report : dict
        The brand's report (``brand/report.json``): validation AUC, KS, lift at 10 %,
        the early-stopping history and, with label DP, its parameters.
    scores : pandas.DataFrame
        ``brand/scores.csv``: ID and score (a percentile unless exact scores were asked).
    top : pandas.DataFrame
        ``brand/top.csv``: the first rows of ``scores``.
    brand_model, media_model : fedscore.kit.model.ModelFile
        Each party's half of the joint model (``brand/model.json`` with the intercept,
        ``media/model.json`` without). A half scores nothing alone: its ``logits`` are
        that party's partial logits, which only the private ranking adds up.
    summary : dict
        The job's public summary (``summary.json``).
    """

    out: Path
    report: dict
    scores: pd.DataFrame
    top: pd.DataFrame
    brand_model: ModelFile
    media_model: ModelFile
    summary: dict


@with_options(PropensityOptions)
def propensity(brand, media, *, out, engine=ENGINE, overwrite=False, resume=False, timeout=600.0, options):
    """Train a joint propensity model on brand and media features and rank the brand's unlabelled users.

    Parameters
    ----------
    brand : path or pandas.DataFrame
        ID, brand features and the label (1/0, yes/no, true/false; empty = a user to score).
    media : path or pandas.DataFrame
        ID and media features.
    out : path
        Output folder (``brand/``, ``media/``, ``ledger.jsonl``, ``summary.json``),
        written atomically.
    engine : {"local", "simulation", "deployment"}
    overwrite : bool
    resume : bool
        Go on from the checkpoint a failed attempt of the same run left beside ``out``.
    timeout : float
        Seconds to wait for a party's reply before the run stops, naming it.

    Returns
    -------
    PropensityResult

    Notes
    -----
    ``exact_scores`` gives the brand calibrated probabilities instead of percentiles.
    This reveals the joint logit of each ranked user, hence (subtracting its own part)
    the media's partial logit of each: see ``protocols/propensity.md``. With
    ``label_dp_epsilon`` the labels enter training once, as one aggregate with Gaussian
    noise, both parties' feature rows are clipped and early stopping is off.

    Examples
    --------
    >>> result = propensity("brand.csv", "media.csv", id_column="uid", label_column="y", out="run")  # doctest: +SKIP
    >>> result.report["validation"]["auc"]  # doctest: +SKIP
    0.77
    """
    # Both parties run here, for the caller, who asked for the key size: both consent to it.
    consent = {"allow_weak_keys": True} if options.paillier_key_bits else {}
    summary = run("propensity", {"brand": brand, "media": media}, options, out=out, engine=engine,
                  overwrite=overwrite, resume=resume, timeout=timeout, settings={"brand": consent, "media": consent})
    return read_result(out, summary)


def read_result(out, summary=None):
    """Read a propensity output folder into a :class:`PropensityResult`."""
    out = Path(out)
    if summary is None:
        summary = json.loads((out / "summary.json").read_text())
    return PropensityResult(
        out=out, report=json.loads((out / "brand" / "report.json").read_text()),
        scores=pd.read_csv(out / "brand" / "scores.csv", dtype={0: str}, keep_default_na=False),
        top=pd.read_csv(out / "brand" / "top.csv", dtype={0: str}, keep_default_na=False),
        brand_model=ModelFile.load(out / "brand" / "model.json"),
        media_model=ModelFile.load(out / "media" / "model.json"), summary=summary)
