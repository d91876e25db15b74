"""Model files: the one schema every protocol writes, the one scorer, and chunked scoring.

The last stop on the path of a score. A protocol's party ends its run by saving a
:class:`ModelFile` (``model.json``): its kind, the party that holds it, the
:class:`~fedscore.kit.encoder.FeatureEncoder` that encoded its rows, and what was
learned (logistic coefficients, or KMeans centers). :func:`score_file` reads a table of
any size (CSV or Parquet) a chunk at a time, encodes it with the model's own encoder and
writes one ``ID, score`` (or ``ID, segment``) row per input row, in the input's order.

Decisions of scoring where training has nothing to say:

- A text value the model did not see in training is refused by default
  (``unseen="error"``): it is far more often a spelling drift ("M" for "male") or a new
  export format than a real new category. ``unseen="zero"`` scores such a row with none
  of the column's known categories set. (A column whose rare categories were merged into
  ``<other>`` encodes every other value as ``<other>``.)
- IDs must not be empty (a score nobody can be joined to is useless); duplicated IDs are
  scored like any other row, because finding them would take memory growing with the
  file.
- Columns the model does not use are ignored.
- A model file that holds one party's half of a joint model (propensity, segment) cannot
  score on its own, and is refused.
"""

import contextlib
import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from scipy.special import expit

from ..dp import clip_rows
from ..errors import InputError
from .options import argument
from ..params import DEFAULT_CHUNK_ROWS, UNSEEN_POLICIES
from .encoder import FeatureEncoder
from .table import PARQUET_SUFFIXES, _as_text, iter_chunks

MODEL_FORMAT = "fedscore.model/1"
"""The ``format`` of a model file: its schema's name and version."""

KINDS = ("lookalike", "propensity", "horizontal_lr", "segment", "horizontal_kmeans")
"""What can write a model file."""

LOGISTIC_KINDS = ("lookalike", "propensity", "horizontal_lr")
"""Kinds with coefficients (``coef``; ``intercept`` too but for a propensity half without one)."""

KMEANS_KINDS = ("segment", "horizontal_kmeans")
"""Kinds with centers."""

SCORABLE_KINDS = ("lookalike", "horizontal_lr", "horizontal_kmeans")
"""Kinds whose file scores (or assigns) rows alone; the others are one party's half of a joint model."""

SCORE_COLUMN = "score"
"""Name of the score column, as in the score files the protocols write."""

SEGMENT_COLUMN = "segment"
"""Name of the segment column of a KMeans model's output."""


@dataclass
class ModelFile:
    """A trained model as saved to ``model.json``: its kind, holder, encoder and what was learned.

    Attributes
    ----------
    kind : str
        One of :data:`KINDS`.
    party : str or None
        The role that holds the file ("media", "brand", a horizontal party's name).
    encoder : FeatureEncoder
        The holder's encoding of its rows.
    coef : numpy.ndarray, optional
        One coefficient per encoded feature (logistic kinds; a propensity half's partial logit).
    intercept : float, optional
    centers : numpy.ndarray, optional
        ``(k, features)`` in encoded units (KMeans kinds; a segment file holds this party's slice).
    clip_norm : float, optional
        Encoded rows are clipped to this L2 norm before ``coef`` or ``centers`` apply, as
        training clipped them (label DP, DP KMeans).
    training : dict
        Free-form provenance: hyper-parameters, run id, iterations.

    Examples
    --------
    >>> model = ModelFile.load("run/media/model.json")  # doctest: +SKIP
    >>> model.scores(model.encoder.transform(table))  # doctest: +SKIP
    """

    kind: str
    party: str
    encoder: FeatureEncoder
    coef: np.ndarray = None
    intercept: float = None
    centers: np.ndarray = None
    clip_norm: float = None
    training: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.coef is not None:
            self.coef = np.asarray(self.coef, dtype=float)
        if self.centers is not None:
            self.centers = np.asarray(self.centers, dtype=float)
        if self.intercept is not None:
            self.intercept = float(self.intercept)
        if self.clip_norm is not None:
            self.clip_norm = float(self.clip_norm)

    # --- the file -------------------------------------------------------------------------

    def save(self, path):
        """Write the model as JSON (with ``"format": MODEL_FORMAT`` and ``feature_names`` for readers)."""
        path = Path(path)
        self._check(path)
        data = {"format": MODEL_FORMAT, "kind": self.kind, "party": self.party,
                "feature_names": list(self.encoder.feature_names_),
                "coef": None if self.coef is None else self.coef.tolist(),
                "intercept": self.intercept,
                "centers": None if self.centers is None else self.centers.tolist(),
                "clip_norm": self.clip_norm, "encoder": self.encoder.to_dict(), "training": self.training}
        path.write_text(json.dumps(data, indent=2, default=_json_default) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path):
        """Read a model file.

        Raises
        ------
        InputError
            "model file not found", "model file is not JSON (...)", "not a fedscore model
            file", "model file is incomplete or malformed (...)", a coefficient or center
            count that does not match the features, non-finite values.
        """
        path = Path(path)
        if not path.is_file():
            raise InputError("model file not found", path=path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"model file is not JSON ({exc})", path=path) from None
        return cls.from_dict(data, path)

    @classmethod
    def from_dict(cls, data, path=None):
        """The model a ``model.json`` holds; ``path`` is named in errors (see :meth:`load`)."""
        if not isinstance(data, dict) or not isinstance(data.get("format"), str) \
                or not data["format"].startswith(MODEL_FORMAT.split("/")[0] + "/"):
            raise InputError("not a fedscore model file", path=path)
        if data["format"] != MODEL_FORMAT:
            raise InputError(f"model file format {data['format']!r} is not supported (this fedscore reads "
                             f"{MODEL_FORMAT})", path=path)
        try:
            if data["kind"] not in KINDS:
                raise ValueError(f"unknown kind {data['kind']!r}")
            if data.get("party") is not None and not isinstance(data["party"], str):
                raise TypeError("party is not text")
            training = data.get("training") or {}
            if not isinstance(training, dict):
                raise TypeError("training is not a mapping")
            encoder = FeatureEncoder.from_dict(data["encoder"], path)
            model = cls(kind=data["kind"], party=data.get("party"), encoder=encoder, coef=data.get("coef"),
                        intercept=data.get("intercept"), centers=data.get("centers"),
                        clip_norm=data.get("clip_norm"), training=training)
            if "feature_names" in data and list(data["feature_names"]) != encoder.feature_names_:
                raise ValueError("feature_names do not match the encoder")
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InputError(f"model file is incomplete or malformed ({type(exc).__name__}: {exc})",
                             path=path) from None
        model._check(path)
        return model

    def _check(self, path):
        """Refuse a model whose parts do not fit together (named as a model file's problems)."""
        def malformed(what):
            return InputError(f"model file is incomplete or malformed ({what})", path=path)

        if self.kind not in KINDS:
            raise malformed(f"unknown kind {self.kind!r}")
        if not isinstance(self.encoder, FeatureEncoder) or not hasattr(self.encoder, "feature_names_"):
            raise malformed("no fitted encoder")
        features = len(self.encoder.feature_names_)
        if self.kind in LOGISTIC_KINDS:
            if self.coef is None:
                raise malformed(f"a {self.kind} model needs coef")
            if self.intercept is None and self.kind != "propensity":
                raise malformed(f"a {self.kind} model needs an intercept")
            if self.coef.shape != (features,):
                raise InputError(f"model file has {self.coef.size} coefficients for {features} features", path=path)
        if self.kind in KMEANS_KINDS:
            if self.centers is None:
                raise malformed(f"a {self.kind} model needs centers")
            if self.centers.ndim != 2 or self.centers.shape[1] != features or len(self.centers) < 1:
                raise InputError(f"model file has centers of shape {self.centers.shape} for {features} features",
                                 path=path)
        for name in ("coef", "centers", "intercept"):
            value = getattr(self, name)
            if value is not None and not np.isfinite(value).all():
                raise InputError(f"model file holds non-finite values in {name!r}", path=path)
        if self.clip_norm is not None and not (math.isfinite(self.clip_norm) and self.clip_norm > 0):
            raise InputError(f"model file has clip_norm {self.clip_norm!r}: it must be positive and finite",
                             path=path)

    # --- the scorer -----------------------------------------------------------------------

    @property
    def scorable(self):
        """Whether the file scores (or assigns) rows alone; propensity and segment files are one
        party's half of a joint model."""
        return self.kind in SCORABLE_KINDS

    def _clipped(self, features):
        features = np.asarray(features, dtype=float)
        return clip_rows(features, self.clip_norm) if self.clip_norm is not None else features

    def logits(self, features):
        """``x · coef + intercept`` of encoded rows, clipped first as in training.

        For a propensity half this is the party's partial logit (no intercept on the media side).
        """
        if self.coef is None:
            raise InputError(f"a {self.kind} model has no coefficients")
        return self._clipped(features) @ self.coef + (self.intercept or 0.0)

    def scores(self, features, *, peer_logits=None):
        """Scores in (0, 1) of encoded rows: ``expit(logits)``.

        Parameters
        ----------
        features : numpy.ndarray, shape (rows, features)
            Rows encoded with :attr:`encoder`, as training encoded them.
        peer_logits : numpy.ndarray, optional
            For a propensity half: the other party's partial logits of the same rows,
            added before the sigmoid. Refused for a model that scores alone.

        Notes
        -----
        This is the one place fedscore turns encoded rows into scores, so that a file
        scored later ranks its rows exactly as the training run's own score file did.
        """
        if self.kind not in LOGISTIC_KINDS:
            raise InputError(f"a {self.kind} model assigns segments, it does not score")
        if (peer_logits is None) != self.scorable:
            raise InputError(self._half_message() if peer_logits is None
                             else f"a {self.kind} model scores alone: no peer logits are added")
        logits = self.logits(features)
        return expit(logits if peer_logits is None else logits + np.asarray(peer_logits, dtype=float))

    def distances(self, features):
        """Squared Euclidean distances ``(rows, k)`` of encoded rows (clipped first) to the centers.

        For a segment half these are partial distances over this party's features, which
        the joint assignment adds to the other party's.
        """
        if self.centers is None:
            raise InputError(f"a {self.kind} model has no centers")
        x = self._clipped(features)
        return ((x ** 2).sum(axis=1)[:, None] - 2 * x @ self.centers.T + (self.centers ** 2).sum(axis=1)[None, :])

    def assign(self, features, *, peer_distances=None):
        """The nearest center of each encoded row (clipped first), as an int array.

        ``peer_distances``: for a segment half, the other party's partial squared distances
        of the same rows, added first.
        """
        if self.kind not in KMEANS_KINDS:
            raise InputError(f"a {self.kind} model scores, it does not assign segments")
        if (peer_distances is None) != self.scorable:
            raise InputError(self._half_message() if peer_distances is None
                             else f"a {self.kind} model assigns alone: no peer distances are added")
        distances = self.distances(features)
        if peer_distances is not None:
            distances = distances + np.asarray(peer_distances, dtype=float)
        return np.argmin(distances, axis=1)

    def _half_message(self):
        holder = f" (held by {self.party})" if self.party else ""
        return (f"this {self.kind} model file{holder} is one party's half of a joint model: "
                "it cannot score on its own")


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


# --- scoring a file in chunks -----------------------------------------------------------------

@dataclass
class ScoringResult:
    """What :func:`score_file` wrote.

    Attributes
    ----------
    out : Path
        The score file.
    rows : int
        Rows scored (one output row per input row).
    chunks : int
        Chunks the table was read in.
    model_kind : str
        The model's kind (one of :data:`KINDS`).
    """

    out: Path
    rows: int
    chunks: int
    model_kind: str


def score_file(model, data, *, id_column, out, chunk_rows=DEFAULT_CHUNK_ROWS, unseen="error", overwrite=False):
    """Score every row of a CSV or Parquet table with a model file, in bounded memory.

    Parameters
    ----------
    model : path or ModelFile
        A model file that scores alone: lookalike, horizontal logistic regression
        (``id_column, score``) or horizontal KMeans (``id_column, segment``).
    data : path
        The table: the ID column and the model's feature columns (others are ignored).
        Parquet for a ``.parquet`` or ``.pq`` name, CSV otherwise.
    id_column : str
    out : path
        The output, one row per input row in input order; Parquet for a ``.parquet`` or
        ``.pq`` name, CSV otherwise.
    chunk_rows : int
        Rows encoded and scored at a time.
    unseen : {"error", "zero"}
        A text value the model did not see in training: refuse it, or score the row
        with none of that column's categories set.
    overwrite : bool
        Replace ``out`` if it exists.

    Returns
    -------
    ScoringResult

    Raises
    ------
    InputError
        Naming the file, column, row and value of the first cell training would refuse
        (or an unseen text value); a model file that is one party's half of a joint
        model. Nothing is written then.

    Notes
    -----
    Memory holds one chunk (its cells, its encoded features and its scores), so the peak
    does not grow with the file. Scores come from :meth:`ModelFile.scores` on rows
    encoded with the training statistics, the same arithmetic as the training run's own
    score file.

    Examples
    --------
    >>> score_file("run/media/model.json", "audience.parquet", id_column="uid",  # doctest: +SKIP
    ...            out="scores.csv").rows
    10000000
    """
    if unseen not in UNSEEN_POLICIES:
        raise InputError(f"unseen must be one of {', '.join(UNSEEN_POLICIES)}, not {unseen!r}")
    if int(chunk_rows) < 1:
        raise InputError(f"chunk rows must be at least 1, not {chunk_rows!r}")
    model_path = None
    if not isinstance(model, ModelFile):
        model_path = Path(model)
        model = ModelFile.load(model_path)
    if not model.scorable:
        raise InputError(model._half_message(), path=model_path)
    data, out = Path(data), Path(out)
    if data.resolve() == out.resolve():
        raise InputError("the score file would replace the table being scored", path=out)
    encoder = model.encoder
    if id_column in encoder.columns_:
        raise InputError("the ID column is one of the model's features", column=id_column)
    chunks = iter_chunks(data, [id_column] + list(encoder.columns_), chunk_rows=int(chunk_rows),
                         numeric_columns=encoder.numeric_columns_)
    logistic = model.kind in LOGISTIC_KINDS
    rows = count = 0
    with _staged_file(out, overwrite) as staging, \
            _output_writer(staging, out.suffix.lower() in PARQUET_SUFFIXES, id_column, logistic) as write:
        for chunk in chunks:
            ids = _as_text(chunk.columns[id_column])
            empty = np.flatnonzero(pc.equal(ids, "").to_numpy(zero_copy_only=False))
            if len(empty):
                raise InputError("empty ID", path=data, column=id_column, row=chunk.row_number(empty[0]))
            features = encoder.transform_chunk(chunk, unseen=unseen)
            write(ids, model.scores(features) if logistic else model.assign(features))
            rows, count = rows + chunk.rows, count + 1
    return ScoringResult(out=out, rows=rows, chunks=count, model_kind=model.kind)


@contextlib.contextmanager
def _staged_file(out, overwrite):
    """Yield a temporary path beside ``out``; on success it replaces ``out``, on error it is removed."""
    if out.exists() and not overwrite:
        raise InputError(f"output file already exists (use {argument('overwrite', True)} to replace it)", path=out)
    if out.is_dir():
        raise InputError("output is a folder, not a file", path=out)
    out.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent)
    os.close(handle)
    staging = Path(name)
    try:
        yield staging
    except BaseException:
        staging.unlink(missing_ok=True)
        raise
    os.chmod(staging, 0o644)
    os.replace(staging, out)


@contextlib.contextmanager
def _output_writer(path, parquet, id_column, logistic):
    """Yield ``write(ids, values)`` appending to a CSV or Parquet file of ``id_column, score|segment``."""
    value = (SCORE_COLUMN, pa.float64()) if logistic else (SEGMENT_COLUMN, pa.int64())
    schema = pa.schema([(id_column, pa.string()), value])
    writer = pq.ParquetWriter(path, schema) if parquet else pa_csv.CSVWriter(path, schema)
    try:
        yield lambda ids, values: writer.write_batch(
            pa.record_batch([ids.cast(pa.string()), pa.array(values, type=value[1])], schema=schema))
    finally:
        writer.close()
