"""``fedscore.horizontal_kmeans``: KMeans over the rows of N parties with the same columns, on this machine."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError
from ..kit.model import ModelFile
from ..kit.options import with_options
from ..protocols.horizontal import own_settings
from ..protocols.horizontal_kmeans.options import HorizontalKMeansOptions
from ._run import ENGINE, run
from .segment import run_folder


@dataclass
class HorizontalKMeansResult:
    """What a horizontal segmentation produced, read back from each party's folder.

    Attributes
    ----------
    ids : dict of str to numpy.ndarray
        Each party's IDs, in its file's order.
    labels : dict of str to numpy.ndarray
        Each party's segments, aligned with ``ids``.
    cluster_centers : numpy.ndarray, shape (k, n_features)
        Centroids in standardised units (``(x - mean) / scale``).
    init_centers : numpy.ndarray
        The initial centroids, in the same units.
    mean, scale : numpy.ndarray
        The pooled standardisation statistics.
    feature_names : list of str
    n_iter : int
    models : dict of str to fedscore.kit.model.ModelFile
        Each party's model file (the same centroids and statistics at every party): it
        assigns a table on its own (``fedscore score``).
    summary : dict
        The run's public summary (with the DP epsilon spent and any privacy warning).
    out : pathlib.Path or None
        The run folder; None when the run went to a temporary folder.
    """

    ids: dict
    labels: dict
    cluster_centers: np.ndarray
    init_centers: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    feature_names: list
    n_iter: int
    models: dict
    summary: dict
    out: Path | None


@with_options(HorizontalKMeansOptions)
def horizontal_kmeans(parties, *, out=None, engine=ENGINE, overwrite=False, resume=False, timeout=600.0, options):
    """Cluster the rows of N parties holding the same numeric columns into ``k`` segments.

    Sums and counts travel encrypted under a key the parties share and the coordinator
    does not hold; the coordinator only adds ciphertexts. With two parties each can read
    the other's sums from the aggregate: the run warns (:class:`PrivacyWarning`) unless
    DP noise is on.

    Parameters
    ----------
    parties : dict of str to (path or pandas.DataFrame)
        Party name -> its table; names become the output folder names.
    out : path, optional
        Run folder to keep (``<party>/segments.csv``, ``<party>/centroids.csv``,
        ``<party>/model.json``, ``ledger.jsonl``, ``summary.json``); a temporary one
        otherwise.
    engine, overwrite, resume, timeout
        As for :func:`fedscore.segment`.

    Returns
    -------
    HorizontalKMeansResult

    Examples
    --------
    >>> result = horizontal_kmeans({"north": "n.csv", "south": "s.csv", "west": "w.csv"},  # doctest: +SKIP
    ...                            id_column="id", k=4)
    >>> result.labels["north"][:5]  # doctest: +SKIP
    """
    if not isinstance(parties, dict):
        raise InputError("parties must be a dict of party name to table")
    if len(parties) < 2:
        raise InputError("horizontal segmentation needs at least two parties")
    # Each party's privacy options are its own: pinned in its settings, checked against the run's.
    settings = {name: own_settings(options) for name in parties}
    with run_folder(out) as folder:
        summary = run("horizontal_kmeans", parties, options, out=folder, engine=engine, overwrite=overwrite,
                      resume=resume, timeout=timeout, settings=settings, reports=out is not None)
        return read_result(folder, summary, options, list(parties), kept=out is not None)


def read_result(out, summary, options, names, *, kept=True):
    """Read a horizontal segmentation's run folder into a :class:`HorizontalKMeansResult`."""
    out = Path(out)
    segments = {name: pd.read_csv(out / name / "segments.csv", dtype={options.id_column: str}, keep_default_na=False)
                for name in names}
    models = {name: ModelFile.load(out / name / "model.json") for name in names}
    model = models[names[0]]
    encoder = model.encoder
    return HorizontalKMeansResult(
        ids={name: s[options.id_column].to_numpy(dtype=str) for name, s in segments.items()},
        labels={name: s["segment"].to_numpy() for name, s in segments.items()},
        cluster_centers=np.asarray(model.centers), init_centers=np.asarray(model.training["init_centers"]),
        mean=np.array([encoder.means_[c] for c in encoder.columns_]),
        scale=np.array([encoder.scales_[c] for c in encoder.columns_]),
        feature_names=list(encoder.feature_names_), n_iter=model.training["n_iter"], models=models,
        summary=summary, out=out if kept else None)
