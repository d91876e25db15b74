"""``fedscore.propensity``: joint propensity scoring of two tables on this machine.

``fedscore.propensity_score``: every customer of a new brand table scored with an earlier
``propensity`` run's model (``fedscore propensity --model DIR``), each party with its own half.
"""

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..errors import InputError
from ..kit.model import ModelFile
from ..kit.options import with_options
from ..protocols.propensity.options import PropensityOptions
from ..protocols.propensity_score.options import MODEL_KEY, PropensityScoreOptions
from ._run import ENGINE, _table_file, run

ROLES = ("brand", "media")


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
        ``brand/scores.csv``: every brand user to score, with a calibrated probability and its
        ``source``: ``joint`` (known to the media, ranked by the joint model) or ``brand only``
        (ranked by the brand's own model).
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
    the media's partial logit of each: see ``protocols/propensity.md``. Label DP is on by
    default (``label_dp_epsilon=4``): the labels enter training once, as one aggregate with
    Gaussian noise, both parties' feature rows are clipped and early stopping is off.
    ``label_dp_epsilon=float("inf")`` (or None) opts out, and the report says what the media
    can then learn. Each party merges rare categories and limits outliers on its own rows
    by default (``min_category_count``, ``outlier_quantile``).

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


@dataclass
class PropensityScoreResult:
    """What scoring with a trained joint propensity model produced, read back from the run folder.

    Attributes
    ----------
    out : Path
    scores : pandas.DataFrame
        ``brand/scores.csv``: every row of the brand's new table once, with a calibrated
        probability (the trained run's maps) and its ``source``: ``joint`` (known to the
        media, ranked by the joint model) or ``brand only`` (the brand's own model).
    top : pandas.DataFrame
        ``brand/top.csv``: the first rows of ``scores``.
    model_id : str
        The trained model's id, which both halves share (a digest of its run and shape).
    reports : dict of str to dict
        Each party's ``report.json``.
    summary : dict
        The run's public summary (``summary.json``).
    """

    out: Path
    scores: pd.DataFrame
    top: pd.DataFrame
    model_id: str
    reports: dict
    summary: dict


@with_options(PropensityScoreOptions)
def propensity_score(brand, media, model, *, out, engine=ENGINE, overwrite=False, resume=False, timeout=600.0,
                     options):
    """Score every customer of a new brand table with the model of an earlier ``propensity`` run.

    No label is read and nothing is trained: private ID matching on the new tables, then
    each party encodes its rows with its own half's saved encoder and the two run the
    training's private ranking over every matched customer. The brand calibrates the
    ranks with the map the training run fitted, scores the customers the media does not
    know with its own saved model and map, and writes one ranking of its whole table.

    Parameters
    ----------
    brand : path or pandas.DataFrame
        The brand's new table: the ID column and the columns its half was trained on
        (others, a label column too, are ignored).
    media : path or pandas.DataFrame
        The media's new table: the ID column and the columns its half was trained on.
    model : path or dict of str to path
        The folder of the ``propensity`` run (each party reads ``<model>/<role>/``), or
        each role's own folder of it. A party's path is its own setting: it is never
        sent to the other party or the coordinator.
    out : path
        Output folder (``brand/`` with ``scores.csv``, ``top.csv``, ``report.json``;
        ``media/report.json``; ``ledger.jsonl``, ``summary.json``), written atomically.
    engine, overwrite, resume, timeout
        As for :func:`propensity`.

    Returns
    -------
    PropensityScoreResult

    Raises
    ------
    InputError
        A half that is missing, of another kind or of the other party, a brand half
        without its saved calibration, a table without a column the half needs, a cell
        its encoder cannot encode, two halves of different trained models: all before the
        run starts. (Across organisations the parties refuse the last themselves, before
        anything but their model ids is exchanged.)

    Examples
    --------
    >>> propensity("brand.csv", "media.csv", id_column="uid", label_column="y", out="may")  # doctest: +SKIP
    >>> june = propensity_score("brand-june.csv", "media-june.csv", model="may", id_column="uid",
    ...                         out="june")  # doctest: +SKIP
    >>> june.scores.head()  # doctest: +SKIP
    """
    from ..protocols.propensity_score.brand import load_scoring  # the parties' own checks (heavy import)
    from ..protocols.propensity_score.common import check_inputs, model_id

    halves = model if isinstance(model, dict) else {role: model for role in ROLES}
    missing = [role for role in ROLES if not halves.get(role)]
    if missing:
        raise InputError(f"model: no half given for the {', '.join(missing)}")
    settings = {role: {MODEL_KEY: str(Path(halves[role]).absolute())} for role in ROLES}
    # Both parties run here, for the caller, who asked for the key size: both consent to it.
    if options.paillier_key_bits:
        settings = {role: {**config, "allow_weak_keys": True} for role, config in settings.items()}
    with tempfile.TemporaryDirectory(prefix="fedscore-propensity_score-") as scratch:
        tables = {role: _table_file(table, Path(scratch) / f"{role}.csv") for role, table in zip(ROLES, (brand, media))}
        ids = {}
        for role in ROLES:  # every row encoded with the half's encoder: a bad cell or an unseen value fails here
            config = {**settings[role], "data": str(tables[role])}
            half = check_inputs(options, role, config)[1]
            if role == "brand":
                load_scoring(config, half)
            ids[role] = model_id(half)
        if ids["brand"] != ids["media"]:  # what the parties check in the run, checked here before it starts
            raise InputError(f"the brand's and the media's halves of the model are not from the same propensity "
                             f"run (model ids {ids['brand']} and {ids['media']}): give each party its own half of "
                             "the same run")
        summary = run("propensity_score", tables, options, out=out, engine=engine, overwrite=overwrite,
                      resume=resume, timeout=timeout, settings=settings)
    out = Path(out)
    reports = {role: json.loads((out / role / "report.json").read_text(encoding="utf-8")) for role in ROLES}
    return PropensityScoreResult(
        out=out, scores=pd.read_csv(out / "brand" / "scores.csv", dtype={0: str}, keep_default_na=False),
        top=pd.read_csv(out / "brand" / "top.csv", dtype={0: str}, keep_default_na=False),
        model_id=reports["brand"]["model_id"], reports=reports, summary=summary)
