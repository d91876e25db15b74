"""``fedscore.segment``: personas of the users a brand and a media party share, on both parties' features.

``fedscore.segment_assign``: the users of new tables put into the personas of an earlier
``segment`` run (``fedscore segment --model DIR``), each party with its own half of the model.
"""

import contextlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError
from ..kit.model import ModelFile
from ..kit.options import with_options
from ..protocols.segment.options import SegmentOptions
from ..protocols.segment_assign.options import MODEL_KEY, SegmentAssignOptions
from ._run import ENGINE, _table_file, run

ROLES = ("brand", "media")


@dataclass
class SegmentResult:
    """What a vertical segmentation produced, read back from each party's folder.

    Both parties ran on this machine, so both slices of the centroids are read here; in a
    deployment each party holds only its own.

    Attributes
    ----------
    ids : numpy.ndarray of str
        The shared users, in the protocol's row order (the brand's spelling of each ID).
    labels : numpy.ndarray of int
        Segment of each of ``ids``.
    cluster_centers : numpy.ndarray, shape (k, n_features)
        Centroids in standardised units, brand columns then media columns.
    feature_names : list of str
        ``brand.<column>`` and ``media.<column>`` names of the centroid columns.
    init_rows : list of int
        Positions in ``ids`` of the users whose features were the initial centroids.
    inertia : float
        Joint within-cluster sum of squares (both parties compute it from each other's
        sealed partial inertias; the coordinator never sees it).
    n_iter : int
    converged : bool
        Whether the kept restart's centroid shift fell below ``tol`` (else it stopped at
        ``max_iter``).
    profiles : dict of str to pandas.DataFrame
        Each party's ``profiles.csv``: its own means for every segment, the peer's for
        released segments only.
    models : dict of str to fedscore.kit.model.ModelFile
        Each party's model file: its encoder and its slice of the centroids (one half of
        a joint model: it assigns nothing alone).
    summary : dict
        The run's public summary.
    out : pathlib.Path or None
        The run folder (``brand/``, ``media/``, ``ledger.jsonl``, ``summary.json``); None
        when the run went to a temporary folder.
    """

    ids: np.ndarray
    labels: np.ndarray
    cluster_centers: np.ndarray
    feature_names: list
    init_rows: list
    inertia: float
    n_iter: int
    converged: bool
    profiles: dict
    models: dict
    summary: dict
    out: Path | None


@with_options(SegmentOptions)
def segment(brand, media, *, out=None, engine=ENGINE, overwrite=False, resume=False, timeout=600.0, options):
    """Split the users the brand and the media share into ``k`` personas, on both parties' features.

    Runs the whole ``segment`` protocol (PSI, private Lloyd iterations, profiles) with
    both parties on this machine and reads back what each party wrote. Across
    organisations each party runs its own Flower node instead (``fedscore segment
    --deployment``).

    Parameters
    ----------
    brand, media : path or pandas.DataFrame
        Each party's table.
    out : path, optional
        Run folder to keep (``brand/``, ``media/``, ``ledger.jsonl``, ``summary.json``,
        and each party's ``report.html``), written atomically; a temporary one otherwise.
    engine, overwrite, resume, timeout
        As for every library function (:func:`fedscore.psi`): where the parties run, whether
        an existing ``out`` is replaced, whether to go on from the checkpoint of a failed
        attempt, and how long to wait for a party.

    Returns
    -------
    SegmentResult

    Examples
    --------
    >>> result = segment("brand.csv", "media.csv", id_column="uid", k=3)  # doctest: +SKIP
    >>> result.labels[:5], result.profiles["brand"]  # doctest: +SKIP
    """
    with run_folder(out) as folder:
        summary = run("segment", {"brand": brand, "media": media}, options, out=folder, engine=engine,
                      overwrite=overwrite, resume=resume, timeout=timeout, reports=out is not None)
        return read_result(folder, summary, options, kept=out is not None)


def read_result(out, summary, options, *, kept=True):
    """Read a segmentation's run folder into a :class:`SegmentResult`."""
    out = Path(out)
    segments = pd.read_csv(out / "brand" / "segments.csv", dtype={options.id_column: str}, keep_default_na=False)
    models = {role: ModelFile.load(out / role / "model.json") for role in ROLES}
    names = [f"{role}.{name}" for role in ROLES for name in models[role].encoder.feature_names_]
    training = models["brand"].training
    return SegmentResult(
        ids=segments[options.id_column].to_numpy(dtype=str), labels=segments["segment"].to_numpy(),
        cluster_centers=np.hstack([models[role].centers for role in ROLES]), feature_names=names,
        init_rows=list(training["init_rows"]), inertia=training["inertia"], n_iter=training["n_iter"],
        converged=training["converged"],
        profiles={role: pd.read_csv(out / role / "profiles.csv") for role in ROLES}, models=models,
        summary=summary, out=out if kept else None)


@contextlib.contextmanager
def run_folder(out):
    """Yield the run folder: ``out``, or one inside a temporary folder removed afterwards."""
    if out is not None:
        yield Path(out)
        return
    with tempfile.TemporaryDirectory(prefix="fedscore-") as scratch:
        yield Path(scratch) / "run"


@dataclass
class SegmentAssignResult:
    """What an assignment with a trained vertical segmentation produced, read back from each party's folder.

    Attributes
    ----------
    ids : numpy.ndarray of str
        The users both new tables hold, in the protocol's row order (the brand's spelling).
    labels : numpy.ndarray of int
        Segment of each of ``ids``, numbered as in the trained model.
    model_id : str
        The trained model's id, which both halves share (a digest of its run and shape).
    reports : dict of str to dict
        Each party's ``report.json``: segment sizes, its feature count, the rows holding a
        text value the model never saw.
    summary : dict
        The run's public summary.
    out : pathlib.Path or None
        The run folder (``brand/``, ``media/``, ``ledger.jsonl``, ``summary.json``); None
        when the run went to a temporary folder.
    """

    ids: np.ndarray
    labels: np.ndarray
    model_id: str
    reports: dict
    summary: dict
    out: Path | None


@with_options(SegmentAssignOptions)
def segment_assign(brand, media, model, *, out=None, engine=ENGINE, overwrite=False, resume=False, timeout=600.0,
                   options):
    """Put the users of new brand and media tables into the personas of an earlier ``segment`` run.

    No training: private ID matching on the new tables, then each party encodes its shared
    rows with its own half's saved encoder and the two run one private assignment round
    (the training's masked argmin), so that each user joins its nearest trained centroid
    on both parties' features together. Each party reads only its own half.

    Parameters
    ----------
    brand, media : path or pandas.DataFrame
        Each party's new table: the ID column and the columns its half was trained on
        (others are ignored).
    model : path or dict of str to path
        The folder of the ``segment`` run (each party reads ``<model>/<role>/model.json``),
        or each role's own half (its ``model.json`` or the folder holding it). A party's
        path is its own setting: it is never sent to the other party or the coordinator.
    out : path, optional
        Run folder to keep (``brand/`` and ``media/`` with ``segments.csv``, ``report.json``
        and ``report.html``; ``ledger.jsonl``, ``summary.json``); a temporary one otherwise.
    engine, overwrite, resume, timeout
        As for every library function (:func:`fedscore.psi`).

    Returns
    -------
    SegmentAssignResult

    Raises
    ------
    InputError
        A half that is missing, of another kind or of the other party, or a table without
        a column the half needs, a cell its encoder cannot encode, two halves of different
        trained models: all before the run starts. (Across organisations the parties refuse
        the last themselves, before anything but their model ids is exchanged.)

    Examples
    --------
    >>> trained = segment("brand.csv", "media.csv", id_column="uid", k=3, out="personas")  # doctest: +SKIP
    >>> result = segment_assign("brand-june.csv", "media-june.csv", model="personas", id_column="uid")  # doctest: +SKIP
    >>> result.labels[:5]  # doctest: +SKIP
    """
    from ..protocols.segment_assign.party import check_inputs, model_id  # the parties' own checks (heavy import)

    halves = model if isinstance(model, dict) else {role: model for role in ROLES}
    missing = [role for role in ROLES if not halves.get(role)]
    if missing:
        raise InputError(f"model: no half given for the {', '.join(missing)}")
    settings = {role: {MODEL_KEY: str(Path(halves[role]).absolute())} for role in ROLES}
    with tempfile.TemporaryDirectory(prefix="fedscore-segment_assign-") as scratch:
        tables = {role: _table_file(table, Path(scratch) / f"{role}.csv") for role, table in zip(ROLES, (brand, media))}
        ids = {}
        for role in ROLES:  # every row encoded with the half's encoder: a bad cell or an unseen value fails here
            ids[role] = model_id(check_inputs(options, role, {**settings[role], "data": str(tables[role])})[1])
        if ids["brand"] != ids["media"]:  # what the parties check in the run, checked here before it starts
            raise InputError(f"the brand's and the media's halves of the model are not from the same segmentation "
                             f"run (model ids {ids['brand']} and {ids['media']}): give each party its own half of "
                             "the same run")
        with run_folder(out) as folder:
            summary = run("segment_assign", tables, options, out=folder, engine=engine, overwrite=overwrite,
                          resume=resume, timeout=timeout, settings=settings, reports=out is not None)
            segments = pd.read_csv(folder / "brand" / "segments.csv", dtype={options.id_column: str},
                                   keep_default_na=False)
            reports = {role: json.loads((folder / role / "report.json").read_text(encoding="utf-8"))
                       for role in ROLES}
    return SegmentAssignResult(ids=segments[options.id_column].to_numpy(dtype=str),
                               labels=segments["segment"].to_numpy(), model_id=reports["brand"]["model_id"],
                               reports=reports, summary=summary, out=Path(out) if out is not None else None)
