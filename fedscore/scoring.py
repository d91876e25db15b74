"""Score a party's table with a trained model, chunk by chunk, in bounded memory.

The last stop on the path of a score: a model file (``model.json`` of the lookalike or
of horizontal logistic regression) and a table (CSV or Parquet) become a score file
with one ``ID, score`` row per input row, in the input's order.

The table is streamed: Parquet through :meth:`pyarrow.parquet.ParquetFile.iter_batches`,
CSV through :func:`pyarrow.csv.open_csv`. Each chunk is validated, encoded with the
model's own :class:`~fedscore.data.FeatureEncoder` statistics (numeric columns
standardised, text columns one-hot encoded), scored and appended to a temporary file
beside the destination, which is moved into place only when every row was scored. So
memory holds one chunk at a time, whatever the file's size, and a failed run leaves no
partial score file.

Input is held to the rules training applies (:mod:`fedscore.data`), with errors naming
the file, the column, the row (counting the header as row 1, as a spreadsheet shows it)
and the value. Decisions of this module where training has nothing to say:

- A text value the model did not see in training is refused by default
  (``unseen="error"``): it is far more often a spelling drift ("M" for "male") or a new
  export format than a real new category. ``unseen="zero"`` scores such a row with none
  of the column's known categories set, which is what the one-hot encoding gives a value
  outside its list.
- IDs must not be empty (a score nobody can be joined to is useless); duplicated IDs are
  scored like any other row, because finding them would take memory growing with the
  file.
- Columns the model does not use are ignored.
"""

import contextlib
import csv
import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from scipy.special import expit

from .data import FeatureEncoder
from .dp import clip_rows
from .errors import InputError

DEFAULT_CHUNK_ROWS = 1 << 18
"""Rows scored at a time: about 60 MB of encoded features for 28 model features, and
large enough that per-chunk overheads stay below a few percent of the work (see
``benchmarks/bench_scoring.py``)."""

UNSEEN_POLICIES = ("error", "zero")
"""What to do with a text value the model did not see in training (see the module notes)."""

SCORE_COLUMN = "score"
"""Name of the score column, as in the score files the lookalike and horizontal LR write."""

PARQUET_SUFFIXES = (".parquet", ".pq")
"""File name endings read and written as Parquet (anything else is CSV), as in
:func:`fedscore.data.read_table`."""

FIRST_DATA_ROW = 2
"""Row number of a table's first data row in error messages: the header is row 1."""

PARQUET_BUFFER_BYTES = 1 << 20
"""Bytes of a Parquet column chunk read at a time. Without a buffer pyarrow reads whole
row groups (of any size the writer chose) into memory before decoding a batch; with one
it decodes batch by batch, which measured 4x less memory and no slower."""

CSV_BLOCK_BYTES = 1 << 20
"""Bytes of CSV the reader parses at a time; blocks are gathered into chunks of rows.
Small because pyarrow's streaming reader keeps up to 32 blocks read ahead (Arrow's
background generator queue): with blocks the size of a chunk, that readahead held most
of a 1.3 GB file in memory."""

MODEL_KINDS = {("kind", "lookalike"): "lookalike", ("model", "logistic_regression"): "horizontal logistic regression"}
"""How a model file says what wrote it: ``(key, value)`` to a name for messages."""


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
        What wrote the model file (``"lookalike"`` or ``"horizontal logistic regression"``).
    """

    out: Path
    rows: int
    chunks: int
    model_kind: str


class LogisticModel:
    """A trained logistic model as written to ``model.json``: the encoder, coefficients, intercept.

    Parameters
    ----------
    encoder : fedscore.data.FeatureEncoder
        The training party's standardisation statistics and categories.
    coef : numpy.ndarray
        One coefficient per encoded feature, in ``encoder.feature_names_`` order.
    intercept : float
    clip_norm : float, optional
        The L2 norm training clipped each encoded row to (lookalike with label DP);
        scoring clips the same way so that scores rank as in training.
    kind : str
        What wrote the model, for messages.

    Examples
    --------
    >>> model = LogisticModel.from_file("run/media/model.json")  # doctest: +SKIP
    >>> model.scores(features)  # doctest: +SKIP
    """

    def __init__(self, encoder, coef, intercept, clip_norm=None, kind="logistic regression"):
        self.encoder = encoder
        self.coef = np.asarray(coef, dtype=float)
        self.intercept = float(intercept)
        self.clip_norm = clip_norm
        self.kind = kind

    @classmethod
    def from_file(cls, path):
        """Read a lookalike (``DIR/media/model.json``) or horizontal LR (``DIR/model.json``) model.

        Raises
        ------
        InputError
            When the file is missing, is not JSON, or is not a logistic model whose
            coefficients match its encoder's features.
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
        """Build the model from the dictionary a ``model.json`` holds; ``path`` is named in errors."""
        kind = next((name for (key, value), name in MODEL_KINDS.items()
                     if isinstance(data, dict) and data.get(key) == value), None)
        if kind is None:
            raise InputError("not a lookalike or horizontal logistic regression model file", path=path)
        try:
            encoder = FeatureEncoder.from_dict(data["encoder"], path)
            coef, intercept = np.asarray(data["coef"], dtype=float), float(data["intercept"])
            clip_norm = data.get("dp_clip_norm")
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"model file is incomplete or malformed ({type(exc).__name__}: {exc})",
                             path=path) from None
        if coef.shape != (len(encoder.feature_names_),) or not np.isfinite(coef).all() or not math.isfinite(intercept):
            raise InputError(f"model file has {coef.size} coefficients for {len(encoder.feature_names_)} "
                             "features, or non-finite ones", path=path)
        return cls(encoder, coef, intercept, None if clip_norm is None else float(clip_norm), kind)

    @property
    def columns(self):
        """The table columns the model reads, in encoder order."""
        return list(self.encoder.columns_)

    def scores(self, features):
        """Scores in (0, 1) of encoded feature rows: ``expit(x · coef + intercept)``.

        Parameters
        ----------
        features : numpy.ndarray, shape (rows, features)
            Rows encoded with :attr:`encoder`, as training encoded them.

        Notes
        -----
        This is the one place fedscore turns encoded rows into scores, so that a file
        scored later ranks its rows exactly as the training run's own score file did.
        """
        if self.clip_norm is not None:
            features = clip_rows(features, self.clip_norm)
        return expit(features @ self.coef + self.intercept)


# --- reading a table in chunks ---------------------------------------------------------------

@dataclass
class _Chunk:
    """Consecutive rows of a table: the first row's position and the needed columns."""

    offset: int
    """Data rows of the file before this chunk."""
    columns: dict
    """Column name (stripped, as :func:`fedscore.data.read_table` names it) to a pyarrow array."""
    rereadable: bool
    """Numeric columns were parsed by the reader, so their text is gone but can be read again."""

    @property
    def rows(self):
        return len(next(iter(self.columns.values())))

    def slice(self, stop):
        return _Chunk(self.offset, {name: array[:stop] for name, array in self.columns.items()}, self.rereadable)

    def row_number(self, index):
        """The spreadsheet row number of the chunk's row ``index``."""
        return self.offset + int(index) + FIRST_DATA_ROW


class _NeedsText(Exception):
    """A reader-parsed numeric column holds a value to report: the chunk must be read again as text."""


class _ParquetChunks:
    """Record batches of the needed columns of a Parquet file, ``chunk_rows`` rows each."""

    def __init__(self, path, columns, chunk_rows):
        self.path = path
        try:
            self._file = pq.ParquetFile(path, buffer_size=PARQUET_BUFFER_BYTES, pre_buffer=False)
        except (pa.ArrowException, OSError) as exc:
            raise _unreadable(path, exc) from None
        names = {str(name).strip(): name for name in self._file.schema_arrow.names}
        _check_columns(path, columns, list(names))
        self._names = {column: names[column] for column in columns}
        self.chunk_rows = chunk_rows

    def __iter__(self):
        offset = 0
        batches = self._file.iter_batches(batch_size=self.chunk_rows, columns=list(self._names.values()))
        try:
            for batch in batches:
                yield _Chunk(offset, {column: batch.column(name) for column, name in self._names.items()}, False)
                offset += batch.num_rows
        except (pa.ArrowException, OSError) as exc:
            raise _unreadable(self.path, exc) from None


class _CsvChunks:
    """Chunks of ``chunk_rows`` rows of a CSV file (the last one fewer), from pyarrow's streaming reader.

    Notes
    -----
    Numeric columns are first parsed by the reader itself (several times faster than
    parsing text afterwards). When a value does not parse, or parses to something that
    must be reported (NaN, infinity), the file is read again from the start of that
    chunk with every column as text, so the value is reported as written and under the
    same rules as in training. The rows already scored stay scored: the text reader
    skips them.
    """

    def __init__(self, path, columns, chunk_rows, numeric_columns):
        self.path = path
        try:
            with open(path, newline="", encoding="utf-8-sig") as stream:
                header = next(csv.reader(stream), None)
        except (UnicodeDecodeError, csv.Error, OSError) as exc:
            raise _unreadable(path, exc) from None
        if not header:
            raise InputError("file has no header", path=path)
        self._names = [name.strip() for name in header]
        _check_columns(path, columns, self._names)
        self.columns = list(columns)
        numeric = set(numeric_columns)
        self.numeric_columns = [c for c in columns if c in numeric]
        self.chunk_rows = chunk_rows
        self._restart = None

    def read_again_as_text(self, offset):
        """Make the next chunk the one starting at data row ``offset``, every column read as text."""
        self._restart = offset

    def __iter__(self):
        offset, typed = 0, bool(self.numeric_columns)
        while True:
            try:
                for chunk in self._read(offset, typed):
                    yield chunk
                    if self._restart is not None:
                        break
                    offset += chunk.rows
                else:
                    return
            except _NeedsText:
                pass  # the typed reader met a value it cannot parse: go on as text from ``offset``
            if self._restart is not None:
                offset, self._restart = self._restart, None
            typed = False

    def _read(self, offset, typed):
        """Chunks from data row ``offset`` on; numeric columns parsed by the reader when ``typed``."""
        reader, typed = self._open(offset, typed)
        for batch in _rechunk(_batches(reader, self.path, typed), self.chunk_rows):
            yield _Chunk(offset, {c: batch.column(c) for c in self.columns}, typed)
            offset += batch.num_rows

    def _open(self, offset, typed):
        """A streaming reader from data row ``offset``, and whether it parses numeric columns itself."""
        types = {c: pa.string() for c in self.columns}
        if typed:
            types.update({c: pa.float64() for c in self.numeric_columns})
        try:
            reader = pa_csv.open_csv(
                self.path,
                read_options=pa_csv.ReadOptions(column_names=self._names, skip_rows=1, skip_rows_after_names=offset,
                                                block_size=CSV_BLOCK_BYTES),
                # Blank lines are rows (of empty cells) and quoted newlines stay in their value,
                # as fedscore.data.read_table reads a CSV, so row numbers agree with training's.
                parse_options=pa_csv.ParseOptions(ignore_empty_lines=False, newlines_in_values=True),
                convert_options=pa_csv.ConvertOptions(include_columns=self.columns, column_types=types,
                                                      null_values=[], strings_can_be_null=False,
                                                      quoted_strings_can_be_null=False))
        except pa.ArrowInvalid as exc:
            if typed and _is_conversion_error(exc):
                return self._open(offset, typed=False)
            raise _unreadable(self.path, exc) from None
        return reader, typed


def _batches(reader, path, typed):
    """The reader's batches; a value the typed reader cannot parse ends them with :class:`_NeedsText`."""
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            return
        except pa.ArrowInvalid as exc:
            if typed and _is_conversion_error(exc):
                raise _NeedsText from None
            raise _unreadable(path, exc) from None
        yield batch


def _rechunk(batches, rows):
    """Record batches of exactly ``rows`` rows (the last one fewer) from batches of any size."""
    pending = []
    for batch in batches:
        pending.append(batch)
        if sum(b.num_rows for b in pending) < rows:
            continue
        whole = _concatenated(pending)
        full = whole.num_rows - whole.num_rows % rows
        for start in range(0, full, rows):
            yield whole.slice(start, rows)
        pending = [whole.slice(full)]
    if pending:
        rest = _concatenated(pending)
        if rest.num_rows:
            yield rest


def _concatenated(batches):
    table = pa.Table.from_batches(batches).combine_chunks()
    return table.to_batches()[0] if table.num_rows else batches[0].slice(0, 0)


def _is_conversion_error(exc):
    return "conversion error" in str(exc)


def _unreadable(path, exc):
    """The error :func:`fedscore.data.read_table` gives for a file that is not a table."""
    text = str(exc).strip()
    return InputError(f"cannot be read as a table ({text.splitlines()[0] if text else type(exc).__name__})", path=path)


def _check_columns(path, columns, names):
    for column in columns:
        if column not in names:
            raise InputError(f"missing column (columns are: {', '.join(names)})", path=path, column=column)


def _open_chunks(path, columns, chunk_rows=DEFAULT_CHUNK_ROWS, numeric_columns=()):
    """Stream ``columns`` of a CSV or Parquet table in chunks of at most ``chunk_rows`` rows.

    Parameters
    ----------
    path : Path
    columns : list of str
        Columns to read (names compared after stripping spaces, as in training).
    chunk_rows : int
    numeric_columns : sequence of str
        Columns a CSV reader may parse as numbers directly.

    Returns
    -------
    iterable of chunks
        Each chunk holds its position in the file and one pyarrow array per column.
    """
    if not path.is_file():
        raise InputError("file not found", path=path)
    if path.stat().st_size == 0:
        raise InputError("file is empty", path=path)
    if path.suffix.lower() in PARQUET_SUFFIXES:
        return _ParquetChunks(path, columns, chunk_rows)
    return _CsvChunks(path, columns, chunk_rows, numeric_columns)


# --- encoding a chunk as training did ---------------------------------------------------------

def _as_text(array):
    """The column's cells as stripped strings, as :func:`fedscore.data.read_table` turns them into text."""
    if pa.types.is_dictionary(array.type):
        array = array.cast(array.type.value_type)
    if not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
        # Numbers, booleans, dates: pandas' spelling, which is what training compared and parsed.
        text = array.to_pandas().astype("string").fillna("").astype(object)
        array = pa.array(text.to_numpy(), type=pa.string())
    return pc.utf8_trim_whitespace(pc.fill_null(array, ""))


def _fast_numbers(array):
    """Floats of a numeric or text column when every cell is a finite number, else None."""
    if pa.types.is_integer(array.type) or pa.types.is_floating(array.type):
        if array.null_count:
            return None
        values = array.to_numpy(zero_copy_only=False).astype(float, copy=False)
    elif pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
        try:
            values = pc.cast(pc.utf8_trim_whitespace(array), pa.float64()).to_numpy(zero_copy_only=False)
        except pa.ArrowInvalid:
            return None
    else:
        return None
    return values if np.isfinite(values).all() else None


class _ChunkEncoder:
    """Encode chunks with a model's encoder, checking every cell as training does."""

    def __init__(self, model, path, id_column, unseen):
        self.model, self.path, self.id_column, self.unseen = model, path, id_column, unseen
        encoder = model.encoder
        self.width = len(encoder.feature_names_)
        self.starts, start = {}, 0
        for column in encoder.columns_:
            self.starts[column] = start
            start += len(encoder.categories_[column]) if column in encoder.categories_ else 1
        self.category_sets = {c: pa.array(v, type=pa.string()) for c, v in encoder.categories_.items()}

    def check_ids(self, ids, chunk):
        """Refuse an empty ID among the chunk's ``ids`` (stripped strings)."""
        empty = np.flatnonzero(pc.equal(ids, "").to_numpy(zero_copy_only=False))
        if len(empty):
            raise InputError("empty ID", path=self.path, column=self.id_column, row=chunk.row_number(empty[0]))

    def encode(self, chunk):
        """The chunk's ``(rows, features)`` matrix, as :meth:`FeatureEncoder.transform` builds it.

        Raises
        ------
        _NeedsText
            When a numeric column parsed by the CSV reader holds a value to report.
        """
        features = np.zeros((chunk.rows, self.width), order="F")  # filled column by column
        for column in self.model.encoder.columns_:
            start = self.starts[column]
            if column in self.category_sets:
                self._one_hot(chunk, column, features[:, start:start + len(self.category_sets[column])])
            else:
                features[:, start] = self._standardised(chunk, column)
        return features

    def _one_hot(self, chunk, column, block):
        values = _as_text(chunk.columns[column])
        index = pc.index_in(values, value_set=self.category_sets[column]).to_numpy(zero_copy_only=False)
        unseen = np.isnan(index)
        if unseen.any():
            empty = np.flatnonzero(unseen & pc.equal(values, "").to_numpy(zero_copy_only=False))
            if len(empty):  # training refuses empty values whatever the policy on unseen ones
                raise InputError("empty value", path=self.path, column=column, row=chunk.row_number(empty[0]))
            if self.unseen == "error":
                row = int(np.flatnonzero(unseen)[0])
                known = ", ".join(map(repr, self.model.encoder.categories_[column]))
                raise InputError(f"value {values[row].as_py()!r} was not seen in training (known values: {known}); "
                                 "--unseen zero scores such rows with none of these set",
                                 path=self.path, column=column, row=chunk.row_number(row))
        seen = np.flatnonzero(~unseen)
        block[seen, index[seen].astype(np.intp)] = 1.0

    def _standardised(self, chunk, column):
        encoder = self.model.encoder
        values = _fast_numbers(chunk.columns[column])
        if values is not None:
            return (values - encoder.means_[column]) / encoder.scales_[column]
        if chunk.rereadable:
            raise _NeedsText
        return self._standardised_by_training_rules(chunk, column)

    def _standardised_by_training_rules(self, chunk, column):
        """Encode one column with :meth:`FeatureEncoder.transform` itself: its parsing, its errors.

        Only chunks the fast path could not take come here; the error it raises names
        the row within the chunk, shifted here to the row within the file.
        """
        encoder = self.model.encoder
        single = FeatureEncoder.from_dict({"columns": [column], "means": {column: encoder.means_[column]},
                                           "scales": {column: encoder.scales_[column]}, "categories": {},
                                           "feature_names": [column]}, self.path)
        frame = pd.DataFrame({column: _as_text(chunk.columns[column]).to_numpy(zero_copy_only=False)})
        try:
            return single.transform(frame)[:, 0]
        except InputError as exc:
            raise _in_file(exc, chunk) from None


def _in_file(exc, chunk):
    """``exc`` (an :class:`InputError` about a row of ``chunk``) about the same row of the whole file."""
    where = InputError("", path=exc.path, column=exc.column, row=exc.row)
    message = str(exc)[len(str(where)):]
    row = None if exc.row is None else exc.row + chunk.offset
    return InputError(message, path=exc.path, column=exc.column, row=row)


def _blank_tail(chunk, ids):
    """Where the chunk's trailing wholly empty rows start (``chunk.rows`` if there are none).

    ``fedscore.data.read_table`` drops empty rows at the end of a file (stray newlines);
    an empty row followed by data is an error.
    """
    empty_id = pc.equal(ids, "").to_numpy(zero_copy_only=False)
    if not empty_id[-1]:
        return chunk.rows
    blank = empty_id.copy()
    for name, array in chunk.columns.items():
        if pa.types.is_string(array.type) or pa.types.is_large_string(array.type) or array.null_count:
            blank &= pc.equal(_as_text(array), "").to_numpy(zero_copy_only=False)
        else:
            blank[:] = False
    filled = np.flatnonzero(~blank)
    return int(filled[-1]) + 1 if len(filled) else 0


# --- writing scores ---------------------------------------------------------------------------

@contextlib.contextmanager
def _staged_file(out, overwrite):
    """Yield a temporary path beside ``out``; on success it replaces ``out``, on error it is removed."""
    if out.exists() and not overwrite:
        raise InputError("output file already exists (use --overwrite to replace it)", path=out)
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
def _score_writer(path, parquet, id_column):
    """Yield ``write(ids, scores)`` appending to a CSV or Parquet file with ``id_column, score``."""
    schema = pa.schema([(id_column, pa.string()), (SCORE_COLUMN, pa.float64())])
    writer = pq.ParquetWriter(path, schema) if parquet else pa_csv.CSVWriter(path, schema)
    try:
        yield lambda ids, scores: writer.write_batch(pa.record_batch([ids, pa.array(scores)], schema=schema))
    finally:
        writer.close()


# --- the scorer -------------------------------------------------------------------------------

def score_file(model, data, *, id_column, out, chunk_rows=DEFAULT_CHUNK_ROWS, unseen="error", overwrite=False):
    """Score every row of a CSV or Parquet table with a trained model, in bounded memory.

    Parameters
    ----------
    model : path or LogisticModel
        A ``model.json`` written by the lookalike (``DIR/media/model.json``) or by
        horizontal logistic regression (``DIR/model.json``).
    data : path
        The table to score: the ID column and the model's feature columns (others are
        ignored). Parquet for a ``.parquet`` or ``.pq`` name, CSV otherwise.
    id_column : str
    out : path
        The score file: ``id_column, score`` per input row, in input order; Parquet for a
        ``.parquet`` or ``.pq`` name, CSV otherwise.
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
        (or an unseen text value). Nothing is written then.

    Notes
    -----
    Memory holds one chunk (its cells, its encoded features and its scores), so the peak
    does not grow with the file. Scores are computed by :meth:`LogisticModel.scores` on
    rows encoded with the training statistics, the same arithmetic as the training
    run's own score file.

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
    if not isinstance(model, LogisticModel):
        model = LogisticModel.from_file(model)
    data, out = Path(data), Path(out)
    if data.resolve() == out.resolve():
        raise InputError("the score file would replace the table being scored", path=out)
    feature_columns = [c for c in model.columns if c != id_column]
    if len(feature_columns) < len(model.columns):
        raise InputError("the ID column is one of the model's features", column=id_column)
    numeric_columns = [c for c in feature_columns if c not in model.encoder.categories_]
    chunks = _open_chunks(data, [id_column] + feature_columns, int(chunk_rows), numeric_columns)
    encoder = _ChunkEncoder(model, data, id_column, unseen)
    rows = count = 0
    blank_row = None  # first row of empty rows not yet known to be the file's last
    with _staged_file(out, overwrite) as staging, \
            _score_writer(staging, out.suffix.lower() in PARQUET_SUFFIXES, id_column) as write:
        for chunk in chunks:
            if chunk.rows == 0:
                continue
            ids = _as_text(chunk.columns[id_column])
            stop = _blank_tail(chunk, ids)
            if blank_row is not None and stop:
                raise InputError("empty ID", path=data, column=id_column, row=blank_row)
            if stop:
                encoder.check_ids(ids[:stop], chunk)
                try:
                    scores = model.scores(encoder.encode(chunk.slice(stop)))
                except _NeedsText:
                    chunks.read_again_as_text(chunk.offset)
                    continue
                write(ids[:stop], scores)
                rows, count = rows + stop, count + 1
            if stop < chunk.rows and blank_row is None:
                blank_row = chunk.row_number(stop)
        if rows == 0:
            raise InputError("file has a header but no rows", path=data)
    return ScoringResult(out=out, rows=rows, chunks=count, model_kind=model.kind)
