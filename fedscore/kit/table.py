"""Read a party's table once, typed, and validate it at the boundary.

The one reader behind every protocol's load step, the input checks that run before a
federated step and ``fedscore score``. A CSV or Parquet table becomes a
:class:`PartyTable`: numeric columns as float64 arrays, text columns as Arrow
dictionaries (codes into their distinct values), ID and label columns as text. Nothing
is turned into a Python string per cell except the IDs :meth:`PartyTable.ids` returns
(what PSI hashes). :func:`iter_chunks` streams the same files a chunk of rows at a
time, under the same rules, for scoring tables of any size.

Every error is an :class:`~fedscore.errors.InputError` of one line naming the file and,
where known, the column, the row (1-based, counting the header as row 1, as a
spreadsheet shows it: the first data row is row 2) and the value. The rules, which are
those fedscore has always applied:

- Column names and cell values are stripped of surrounding whitespace. A blank line
  inside a CSV is a row of empty cells (so an ID column reports it as an empty ID);
  wholly empty rows at the end of a file are dropped; Parquet nulls (and NaN in a
  Parquet float column) are empty cells, never the text "nan".
- IDs and labels are read as text as written: an ID "00123" stays "00123", a typed
  Parquet integer ID becomes its decimal text.
- A feature column is numeric when every cell parses as a number; a column where more
  than half the cells are numbers but not all is refused, naming the first cell that is
  not; other columns are text, one-hot encoded by :mod:`fedscore.kit.encoder`.

Notes
-----
CSV files are parsed by pyarrow's streaming reader, with each column's type taken from
the first block: numbers are parsed by the reader itself into float64 arrays that grow
as blocks arrive, so memory holds the typed table plus one block, never a string per
cell. A later cell that is not a number switches that column to text from there on (the
block is read again as text to find which columns), and a column that changed type
half-way is read again as text in full. Cells the rules must report with their spelling
(``nan``, ``inf``) are looked up in the file again when reported, which costs nothing
on valid input.
"""

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from ..errors import InputError

MAX_CATEGORIES = 100
"""A text column with more distinct values than this is refused rather than one-hot encoded:
it is almost always an identifier or free text."""

LABEL_VALUES = {"1": 1.0, "0": 0.0, "yes": 1.0, "no": 0.0, "true": 1.0, "false": 0.0, "1.0": 1.0, "0.0": 0.0}
"""Accepted label spellings (case-insensitive); an empty cell marks a row to score."""

PARQUET_SUFFIXES = (".parquet", ".pq")
"""File name endings read (and written) as Parquet; anything else is CSV."""

FIRST_DATA_ROW = 2
"""Row number of a table's first data row in error messages: the header is row 1."""

CSV_BLOCK_BYTES = 1 << 20
"""Bytes of CSV parsed at a time. Small because pyarrow's streaming reader keeps up to 32
blocks read ahead (Arrow's background generator queue): with blocks of tens of MB that
readahead alone held most of a 1.3 GB file in memory (``benchmarks/bench_scoring.py``)."""

CSV_THREADS = True
"""Let pyarrow parse and convert CSV blocks on its thread pool while Python gathers the
previous ones: on 2 cores, 1.5 s instead of 2.0 s for a 100k x 330 CSV and 3.9 s instead
of 4.8 s for a 1M x 60 one, at the same peak memory (``benchmarks/bench_tables.py``)."""

PARQUET_BUFFER_BYTES = 1 << 20
"""Bytes of a Parquet column chunk read at a time. Without a buffer pyarrow reads whole
row groups (of any size the writer chose) into memory before decoding a batch; with one
it decodes batch by batch, which measured 4x less memory and no slower."""

PARQUET_BATCH_ROWS = 1 << 16
"""Rows of a Parquet file decoded at a time when a whole table is read."""

PARQUET_GROUP_COLUMNS = 32
"""Columns of a Parquet file decoded together when a whole table is read. Decoding all 330
columns of a 100k x 330 table in batches of 64k rows peaked at 1.2 GiB and took 1.7 s;
32 columns at a time, 0.54 GiB and 0.5 s (the 0.25 GiB table and the imports included)."""

GROWTH = 1.5
"""Factor by which a numeric column's buffer grows when a CSV holds more rows than estimated."""

_BLANK_BYTES = b" \t\r\n,"
"""Bytes of a wholly empty CSV row (empty cells, whitespace, separators)."""

_NUMBER_START = r"^[+-]?(?:[0-9]|\.[0-9]|[iInN])"
"""How a cell that may parse as a number starts (digits, ``.5``, ``inf``, ``nan``): cells
that cannot are ruled out at once, and only the others are handed to the parser."""


# --- errors -----------------------------------------------------------------------------------

def _unreadable(path, exc):
    """The error for a file that is not a table: the first line of the parser's message."""
    text = str(exc).strip()
    return InputError(f"cannot be read as a table ({text.splitlines()[0] if text else type(exc).__name__})",
                      path=path)


def _check_file(path):
    if not path.is_file():
        raise InputError("file not found", path=path)
    if path.stat().st_size == 0:
        raise InputError("file is empty", path=path)


def _check_columns(path, wanted, names):
    for column in wanted:
        if column not in names:
            raise InputError(f"missing column (columns are: {', '.join(names)})", path=path, column=column)


def _column_names(path, raw):
    """Stripped column names; a nameless column is ``Unnamed: i``, as pandas names it."""
    names = [str(name).strip() or f"Unnamed: {i}" for i, name in enumerate(raw)]
    seen = set()
    for name in names:
        if name in seen:
            raise InputError(f"duplicated column name (columns are: {', '.join(names)})", path=path, column=name)
        seen.add(name)
    return names


def _is_parquet(path):
    return path.suffix.lower() in PARQUET_SUFFIXES


# --- cells as text and as numbers -------------------------------------------------------------

def _is_number_type(type_):
    return pa.types.is_integer(type_) or pa.types.is_floating(type_) or pa.types.is_decimal(type_)


def _is_text_type(type_):
    return pa.types.is_string(type_) or pa.types.is_large_string(type_)


def _as_text(array):
    """The cells of any Arrow array as stripped strings; nulls (and NaN in a float column) are empty.

    Integers are written in decimal; other non-text types (floats, booleans, dates) as
    pandas spells them, which is what fedscore compared and parsed before it read typed
    columns.
    """
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks() if array.num_chunks != 1 else array.chunk(0)
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    if pa.types.is_null(array.type):
        return pa.array([""] * len(array), type=pa.string())
    if pa.types.is_integer(array.type):
        array = pc.cast(array, pa.string())
    elif not _is_text_type(array.type):
        text = array.to_pandas().astype("string").fillna("").astype(object)
        array = pa.array(text.to_numpy(), type=pa.string())
    return pc.utf8_trim_whitespace(pc.fill_null(array, ""))


def _codes(array):
    """``(codes, values)``: each cell's index into the column's distinct stripped texts.

    Dictionary arrays keep their codes (only the dictionary is stripped and re-encoded),
    so a text column never becomes one string per cell here.
    """
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks() if array.num_chunks != 1 else array.chunk(0)
    if pa.types.is_dictionary(array.type):
        values, indices = _as_text(array.dictionary), array.indices
        if indices.null_count:
            values = pa.concat_arrays([values, pa.array([""], type=values.type)])
            indices = pc.fill_null(indices, len(values) - 1)
        encoded = pc.dictionary_encode(values)
        codes = encoded.indices.to_numpy(zero_copy_only=False)[indices.to_numpy(zero_copy_only=False)]
        return codes, encoded.dictionary
    encoded = pc.dictionary_encode(_as_text(array))
    return encoded.indices.to_numpy(zero_copy_only=False), encoded.dictionary


def _parse_values(values):
    """``(numbers, parsed)`` for an array of distinct stripped texts: which of them are numbers.

    Arrow's own parser decides (the one that parses CSV columns), texts that cannot start a
    number are ruled out first, and the rest are parsed in halves until each failure is
    isolated, so a column of a few distinct values costs a few calls.
    """
    numbers = np.full(len(values), np.nan)
    parsed = np.zeros(len(values), dtype=bool)
    if not len(values):
        return numbers, parsed
    candidates = pc.match_substring_regex(values, _NUMBER_START).to_numpy(zero_copy_only=False)
    pending = [np.flatnonzero(candidates)]
    while pending:
        index = pending.pop()
        if not len(index):
            continue
        try:
            numbers[index] = pc.cast(values.take(pa.array(index)), pa.float64()).to_numpy(zero_copy_only=False)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            if len(index) > 1:
                pending += [index[: len(index) // 2], index[len(index) // 2:]]
            continue
        parsed[index] = True
    return numbers, parsed


def _cast_numbers(text):
    """Float64 values of a stripped text array when every cell parses as a number, else None."""
    try:
        return pc.cast(text, pa.float64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def _numbers_of_text(text):
    """Float64 values of a stripped text array when every cell is a finite number, else None."""
    values = _cast_numbers(text)
    return values if values is not None and np.isfinite(values).all() else None


def _concat_text(chunks, type_=pa.string()):
    """One text array from a column's chunks (large strings past 2 GiB of text)."""
    chunks = [c if _is_text_type(c.type) else _as_text(c) for c in chunks]
    if not chunks:
        return pa.array([], type=type_)
    if sum(c.nbytes for c in chunks) >= 2**31 - 1:
        chunks = [c.cast(pa.large_string()) for c in chunks]
    else:
        chunks = [c.cast(pa.string()) if pa.types.is_large_string(c.type) else c for c in chunks]
    return pa.concat_arrays(chunks)


@dataclass
class Summary:
    """What a feature column holds over some rows, once its cells have passed the rules.

    Attributes
    ----------
    values : numpy.ndarray or None
        Float64 values, one per row, for a numeric column.
    categories : list of str or None
        The distinct texts of a text column, sorted.
    counts : numpy.ndarray or None
        How many of the rows hold each category.
    codes : numpy.ndarray or None
        Each row's index into ``categories``.
    """

    values: np.ndarray = None
    categories: list = None
    counts: np.ndarray = None
    codes: np.ndarray = None

    @property
    def numeric(self):
        return self.values is not None


def summarise(array, *, path, column, row_of, constant=True, categorical=True):
    """Check a feature column's cells and say whether it is numeric or text.

    Parameters
    ----------
    array : pyarrow.Array
        The column's cells over the rows to check. In a numeric Arrow type a null or a
        NaN is an empty cell (a CSV reader-parsed NaN is handed over as its text instead).
    path, column : named in errors.
    row_of : callable
        The spreadsheet row number of the array's position ``i``.
    constant : bool
        Refuse a column holding a single value (it carries no information).
    categorical : bool
        Check a text column as a categorical feature (its number of distinct values);
        when false its categories are not listed either.

    Returns
    -------
    Summary

    Raises
    ------
    InputError
        "empty value", "value 'inf' is not finite", "non-numeric value 'abc' in a numeric
        column", "<n> distinct text values (more than 100)", "column is constant".
    """
    def fail(message, index=None):
        return InputError(message, path=path, column=column, row=None if index is None else row_of(int(index)))

    if _is_number_type(array.type):
        values = pc.cast(array, pa.float64()).to_numpy(zero_copy_only=False) \
            if not pa.types.is_float64(array.type) or array.null_count else array.to_numpy()
        finite = np.isfinite(values)
        if not finite.all():
            empty = np.flatnonzero(np.isnan(values))
            if len(empty):
                raise fail("empty value", empty[0])
            bad = int(np.flatnonzero(~finite)[0])
            raise fail(f"value {_as_text(array.slice(bad, 1))[0].as_py()!r} is not finite", bad)
        if constant and len(values) and values.std() == 0:
            raise fail("column is constant: it carries no information")
        return Summary(values=values)
    codes, texts = _codes(array)
    empty = np.flatnonzero(codes == _position(texts, ""))
    if len(empty):
        raise fail("empty value", empty[0])
    counts = np.bincount(codes, minlength=len(texts))
    present = counts > 0
    numbers, parsed = _parse_values(texts)
    if parsed[present].all():
        values = numbers[codes]
        bad = np.flatnonzero(~np.isfinite(values))
        if len(bad):
            raise fail(f"value {texts[int(codes[bad[0]])].as_py()!r} is not finite", bad[0])
        if constant and len(values) and values.std() == 0:
            raise fail("column is constant: it carries no information")
        return Summary(values=values)
    if counts[parsed].sum() > 0.5 * len(codes):
        first = int(np.flatnonzero(~parsed[codes])[0])
        raise fail(f"non-numeric value {texts[int(codes[first])].as_py()!r} in a numeric column", first)
    if not categorical:
        return Summary()
    distinct = int(present.sum())
    if distinct > MAX_CATEGORIES:
        raise fail(f"{distinct} distinct text values (more than {MAX_CATEGORIES}): not a categorical feature")
    if constant and distinct < 2:
        raise fail("column is constant: it carries no information")
    kept = np.flatnonzero(present)
    names = texts.take(pa.array(kept)).to_pylist()
    order = sorted(range(len(kept)), key=names.__getitem__)
    rank = np.empty(len(texts), dtype=np.int64)
    rank[kept[order]] = np.arange(len(kept))
    return Summary(categories=[names[i] for i in order], counts=counts[kept[order]], codes=rank[codes])


def _position(texts, value):
    """Index of ``value`` among distinct ``texts``, or -1."""
    found = pc.index(texts, pa.scalar(value, type=texts.type)).as_py()
    return -1 if found is None else found


# --- reading a CSV ----------------------------------------------------------------------------

_PARSE = pa_csv.ParseOptions(ignore_empty_lines=False, newlines_in_values=True)
"""Blank lines are rows (of empty cells); quoted newlines stay in their value."""


def _convert(column_types=None, include=None):
    """Conversion as fedscore reads cells: no text is null, no text is a boolean."""
    return pa_csv.ConvertOptions(column_types=column_types or {}, include_columns=include or [], null_values=[],
                                 strings_can_be_null=False, quoted_strings_can_be_null=False,
                                 true_values=[], false_values=[])


def _content_end(path, size):
    """Bytes of the file up to the end of its last line that holds anything but blanks and commas.

    What follows are wholly empty rows (stray newlines), which are dropped: cut off before
    the reader sees them, they cannot turn a numeric column into text.
    """
    step = 1 << 16
    with open(path, "rb") as stream:
        stop, last = size, None
        while stop > 0 and last is None:
            start = max(0, stop - step)
            stream.seek(start)
            kept = stream.read(stop - start).rstrip(_BLANK_BYTES)
            if kept:
                last = start + len(kept)
            stop = start
        if last is None:
            return 0
        stream.seek(last)
        while True:
            block = stream.read(step)
            if not block:
                return size
            ends = [i for i in (block.find(b"\n"), block.find(b"\r")) if i >= 0]
            if ends:
                end = last + min(ends) + 1
                if block[min(ends):min(ends) + 2] == b"\r\n":
                    end += 1
                return min(end, size)
            last += len(block)


class _Head(io.RawIOBase):
    """The first ``size`` bytes of a file, for the CSV reader."""

    def __init__(self, path, size):
        self._stream, self._left = open(path, "rb"), size

    def readable(self):
        return True

    def readinto(self, buffer):
        count = self._stream.readinto(memoryview(buffer)[: self._left]) if self._left else 0
        self._left -= count
        return count

    def close(self):
        self._stream.close()
        super().close()


class _CsvFile:
    """A CSV file's header, first-block column types and readers from any data row on."""

    def __init__(self, path):
        self.path = path
        size = path.stat().st_size
        self.end = _content_end(path, size)
        self.truncated = self.end < size
        if self.end == 0:
            raise InputError("cannot be read as a table (no header row)", path=path)
        try:
            reader = pa_csv.open_csv(self._source(), read_options=pa_csv.ReadOptions(block_size=CSV_BLOCK_BYTES,
                                                                                     use_threads=False),
                                     parse_options=_PARSE, convert_options=_convert())
            schema = reader.schema
            reader.close()
            raw = schema.names
        except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:
            raise _unreadable(path, exc) from None
        self.names = _column_names(path, raw)
        self.keys = [f"c{i}" for i in range(len(self.names))]  # the reader's names: unique whatever the header
        self.first_types = dict(zip(self.names, schema.types))

    def _source(self):
        return _Head(self.path, self.end) if self.truncated else str(self.path)

    def batches(self, offset, types, columns=None):
        """Record batches of ``columns`` (default all) from data row ``offset``; ``types``: name -> type.

        A cell the reader could not convert to a type asked for raises
        :class:`_Unconverted`; anything else it cannot read is an :class:`InputError`.
        """
        columns = self.names if columns is None else columns
        key = dict(zip(self.names, self.keys))
        typed = any(not pa.types.is_string(t) for t in types.values())
        try:
            reader = pa_csv.open_csv(
                self._source(),
                read_options=pa_csv.ReadOptions(column_names=self.keys, skip_rows_after_names=1 + offset,
                                                block_size=CSV_BLOCK_BYTES, use_threads=CSV_THREADS),
                parse_options=_PARSE,
                convert_options=_convert({key[c]: types.get(c, pa.string()) for c in columns},
                                         [key[c] for c in columns]))
            while True:
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    return
                yield batch
        except pa.ArrowInvalid as exc:
            if typed and "conversion error" in str(exc):
                raise _Unconverted from None
            raise _unreadable(self.path, exc) from None
        except (pa.ArrowException, OSError) as exc:
            raise _unreadable(self.path, exc) from None

    def read_text(self, columns):
        """Whole ``columns`` as stripped text (the cells as written), name -> string array."""
        chunks = {c: [] for c in columns}
        for batch in self.batches(0, {}, columns):
            for i, column in enumerate(columns):
                chunks[column].append(batch.column(i))
        return {c: pc.utf8_trim_whitespace(_concat_text(chunks[c])) for c in columns}


class _Unconverted(Exception):
    """A block holds a cell the CSV reader could not convert to its column's type."""


class _Numbers:
    """A float64 column filled block by block, in a buffer that grows as rows arrive."""

    def __init__(self, capacity):
        self.data, self.size = np.empty(max(int(capacity), 1)), 0

    def append(self, values):
        stop = self.size + len(values)
        if stop > len(self.data):
            grown = np.empty(max(stop, int(len(self.data) * GROWTH)))
            grown[: self.size] = self.data[: self.size]
            self.data = grown
        self.data[self.size:stop] = values
        self.size = stop

    def result(self):
        return self.data[: self.size]


def _read_csv(path, required, text_columns):
    """Column name -> float64 array (numeric) or stripped string array, and the names in file order."""
    source = _CsvFile(path)
    names = source.names
    _check_columns(path, required, names)
    text = set(text_columns)
    numeric = {c for c in names if c not in text and _is_number_type(source.first_types[c])}
    numbers, chunks, mixed = {}, {c: [] for c in names}, set()
    offset, estimate = 0, None

    def append(batch, converted=None):
        nonlocal estimate
        if estimate is None and batch.num_rows:
            # Rows the file holds, judged from the first block; a buffer only fills the pages it uses.
            estimate = 1.25 * source.end * batch.num_rows / max(min(source.end, CSV_BLOCK_BYTES), 1) + batch.num_rows
        for i, column in enumerate(names):
            if column in numeric:
                if column not in numbers:
                    numbers[column] = _Numbers(estimate or batch.num_rows)
                values = converted[column] if converted is not None else batch.column(i).to_numpy(
                    zero_copy_only=False)
                numbers[column].append(values)
            else:
                chunks[column].append(batch.column(i))

    while True:
        try:
            for batch in source.batches(offset, {c: pa.float64() for c in numeric}):
                append(batch)
                offset += batch.num_rows
            break
        except _Unconverted:
            pass
        # A cell did not convert: read the next block as text and see which columns hold text from here on.
        probe = next(source.batches(offset, {}), None)
        if probe is None or probe.num_rows == 0:
            break
        converted = {}
        for i, column in enumerate(names):
            if column in numeric:
                values = _cast_numbers(pc.utf8_trim_whitespace(probe.column(i)))
                if values is None:
                    numeric.discard(column)
                    if column in numbers:
                        mixed.add(column)
                else:
                    converted[column] = values
        append(probe, converted)
        offset += probe.num_rows

    columns = {c: numbers[c].result() if c in numbers else np.empty(0) for c in numeric}
    if mixed:
        # Numbers first, text later: the numbers' spelling matters (as categories, in messages).
        columns.update(source.read_text(sorted(mixed)))
        for column in mixed:
            chunks[column] = []
    for column in names:
        if column not in columns:
            columns[column] = pc.utf8_trim_whitespace(_concat_text(chunks.pop(column)))
    return names, columns, source


# --- reading a Parquet file -------------------------------------------------------------------

def _open_parquet(path):
    """The Parquet file and its column names as written."""
    try:
        file = pq.ParquetFile(path, buffer_size=PARQUET_BUFFER_BYTES, pre_buffer=False)
        return file, file.schema_arrow.names
    except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:
        raise _unreadable(path, exc) from None


def _read_parquet(path, required, text_columns):
    """Column name -> float64 array (numeric, NaN for an empty cell) or stripped string array."""
    file, raw = _open_parquet(path)
    schema = file.schema_arrow
    names = _column_names(path, raw)
    _check_columns(path, required, names)
    text = set(text_columns)
    numeric = [i for i, (c, f) in enumerate(zip(names, schema)) if c not in text and _is_number_type(f.type)]
    rows = file.metadata.num_rows
    numbers = {i: np.empty(rows) for i in numeric}
    chunks = {i: [] for i in range(len(names)) if i not in numbers}
    offset = 0
    try:
        for first in range(0, len(names), PARQUET_GROUP_COLUMNS):
            group = list(range(first, min(first + PARQUET_GROUP_COLUMNS, len(names))))
            offset = 0
            for batch in file.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=[raw[i] for i in group],
                                           use_threads=True):
                for i, array in zip(group, batch.columns):
                    if i in numbers:
                        values = array if pa.types.is_float64(array.type) else pc.cast(array, pa.float64())
                        numbers[i][offset:offset + batch.num_rows] = values.to_numpy(zero_copy_only=False)
                    else:
                        chunks[i].append(array)
                offset += batch.num_rows
    except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:
        raise _unreadable(path, exc) from None
    columns = {}
    for i, column in enumerate(names):
        columns[column] = numbers[i][:offset] if i in numbers else _concat_text([_as_text(c) for c in chunks[i]])
    return names, columns, file


# --- the table --------------------------------------------------------------------------------

class PartyTable:
    """One party's table, read once: numeric columns as float64 arrays, text columns as Arrow
    dictionaries, ID and label columns as text.

    Build it with :meth:`read`. Every method that checks cells raises
    :class:`~fedscore.errors.InputError` naming the file, column, row and value.

    Attributes
    ----------
    path : Path
        The file, named in every error.
    columns : list of str
        Column names (stripped), in file order.
    rows : int
        Data rows (wholly empty rows at the end of the file dropped).

    Examples
    --------
    >>> table = PartyTable.read("brand.csv", required=["uid", "y"], text_columns=["uid", "y"])  # doctest: +SKIP
    >>> ids, labels = table.ids("uid"), table.labels("y")  # doctest: +SKIP
    >>> table.check_features(table.feature_columns(exclude=["uid", "y"]))  # doctest: +SKIP
    """

    def __init__(self, path, columns, rows, numbers, texts, source):
        self.path, self.columns, self.rows = path, columns, rows
        self._numbers = numbers    # name -> float64 array
        self._texts = texts        # name -> stripped string array (text columns) or (codes, values)
        self._source = source      # the _CsvFile or ParquetFile, to read a column again as written

    @classmethod
    def read(cls, path, *, required=(), text_columns=()):
        """Read a CSV or Parquet table (Parquet for a ``.parquet`` or ``.pq`` name).

        Parameters
        ----------
        path : str or Path
        required : sequence of str
            Columns that must exist.
        text_columns : sequence of str
            Columns read as text whatever they look like: the ID and label columns.
            Every other column is read too, typed.

        Returns
        -------
        PartyTable

        Raises
        ------
        InputError
            "file not found", "file is empty", "cannot be read as a table (...)",
            "missing column (columns are: ...)", "file has a header but no rows".
        """
        path = Path(path)
        _check_file(path)
        reader = _read_parquet if _is_parquet(path) else _read_csv
        names, columns, source = reader(path, list(required), list(text_columns))
        # Blocks the reader decoded and dropped stay with Arrow's allocator unless handed back:
        # the encoded table, allocated next by numpy, could not reuse them.
        pa.default_memory_pool().release_unused()
        rows = _filled_rows(columns, nan_is_empty=not isinstance(source, _CsvFile))
        if rows == 0:
            raise InputError("file has a header but no rows", path=path)
        numbers, texts, keep_text = {}, {}, set(text_columns)
        for name in names:
            data = columns.pop(name)[:rows]
            if isinstance(data, np.ndarray):
                numbers[name] = data
                continue
            if name in keep_text:
                texts[name] = data
                continue
            codes, values = _codes(data)
            parsed = _numbers_of_text(values)  # a text column whose every distinct value is a number
            if parsed is not None:
                numbers[name] = parsed[codes]
            else:
                texts[name] = (codes, values)
        return cls(path, names, rows, numbers, texts, source)

    def __repr__(self):
        return f"PartyTable({str(self.path)!r}, rows={self.rows}, columns={len(self.columns)})"

    # --- IDs and labels -------------------------------------------------------------------

    def ids(self, column, *, allow_empty=False, allow_duplicates=False):
        """The column's cells as stripped Python strings, refusing empty or duplicated IDs.

        Returns
        -------
        numpy.ndarray of object (str)

        Raises
        ------
        InputError
            "empty ID" at its row (unless ``allow_empty``); "duplicated ID 'x'" at the row
            of its second occurrence (unless ``allow_duplicates``).
        """
        text = self.text(column)
        if not allow_empty:
            empty = np.flatnonzero(pc.equal(text, "").to_numpy(zero_copy_only=False))
            if len(empty):
                raise InputError("empty ID", path=self.path, column=column, row=int(empty[0]) + FIRST_DATA_ROW)
        ids = text.to_numpy(zero_copy_only=False)
        if not allow_duplicates:
            codes = pc.dictionary_encode(text).indices.to_numpy(zero_copy_only=False)
            _, first = np.unique(codes, return_index=True)
            if len(first) < len(codes):
                repeated = np.ones(len(codes), dtype=bool)
                repeated[first] = False
                row = int(np.flatnonzero(repeated)[0])
                raise InputError(f"duplicated ID {ids[row]!r}", path=self.path, column=column,
                                 row=row + FIRST_DATA_ROW)
        return ids

    def labels(self, column):
        """Parse a label column into 1.0 / 0.0, with NaN for empty cells (rows to score).

        Raises
        ------
        InputError
            For a value outside :data:`LABEL_VALUES` (case-insensitive), or when the
            labelled rows hold one class only.
        """
        codes, texts = _codes(self.text(column))
        spelled = [value.lower() for value in texts.to_pylist()]
        known = np.array([LABEL_VALUES.get(value, np.nan) for value in spelled])
        bad = np.array([value not in LABEL_VALUES and value != "" for value in spelled], dtype=bool)
        if bad[codes].any():
            row = int(np.flatnonzero(bad[codes])[0])
            raise InputError(f"label {texts[int(codes[row])].as_py()!r} is not one of 1/0, yes/no, true/false "
                             "(or empty to score)", path=self.path, column=column, row=row + FIRST_DATA_ROW)
        labels = known[codes]
        classes = np.unique(labels[~np.isnan(labels)])
        if len(classes) < 2:
            which = "no labelled rows" if len(classes) == 0 else f"only the class {int(classes[0])}"
            raise InputError(f"labels hold {which}: need both 1 and 0", path=self.path, column=column)
        return labels

    def text(self, column):
        """The column's cells as written, stripped: a pyarrow string array (no Python strings)."""
        self._check(column)
        data = self._texts.get(column)
        if isinstance(data, tuple):
            codes, values = data
            return values.take(pa.array(codes))
        if data is not None:
            return data
        return self._read_again(column)

    # --- features -------------------------------------------------------------------------

    def feature_columns(self, exclude=()):
        """Every column not in ``exclude``, in file order."""
        exclude = set(exclude)
        return [c for c in self.columns if c not in exclude]

    def numeric(self, column):
        """The column as validated float64 values if it is numeric, else None (a text column).

        Raises
        ------
        InputError
            "empty value", "value 'inf' is not finite", "non-numeric value 'abc' in a
            numeric column".
        """
        self._check(column)
        if column in self._numbers and np.isfinite(self._numbers[column]).all():
            values = self._numbers[column].view()
            values.flags.writeable = False  # the table's own column: read it, copy it to change it
            return values
        summary = self.summarise(column, constant=False, categorical=False)
        return summary.values if summary.numeric else None

    def kinds(self, columns):
        """Which feature columns are numeric, and the sorted categories of the others.

        Returns
        -------
        dict
            ``{"columns": [...], "numeric": [...], "categories": {column: [values]}}``.

        Raises
        ------
        InputError
            Every error of :meth:`check_features` but a constant column (a column constant
            at one party may vary across parties).
        """
        numeric, categories = [], {}
        for column in columns:
            summary = self.summarise(column, constant=False)
            if summary.numeric:
                numeric.append(column)
            else:
                categories[column] = summary.categories
        return {"columns": list(columns), "numeric": numeric, "categories": categories}

    def check_features(self, columns):
        """Validate every feature column, in order: the first bad cell or column raises.

        Raises
        ------
        InputError
            "empty value", "value 'inf' is not finite", "non-numeric value 'abc' in a
            numeric column", "<n> distinct text values (more than 100): not a categorical
            feature", "column is constant: it carries no information".
        """
        for column in columns:
            self.summarise(column)

    def summarise(self, column, rows=None, *, constant=True, categorical=True):
        """Check one feature column over ``rows`` (default all) and say what it holds: a :class:`Summary`."""
        array, row_of = self.cells(column, rows)
        return summarise(array, path=self.path, column=column, row_of=row_of, constant=constant,
                         categorical=categorical)

    def cells(self, column, rows=None):
        """``(array, row_of)``: the column over ``rows`` as an Arrow array, and each position's row number.

        Numeric columns come as float64 (NaN for an empty Parquet cell); a CSV number the
        reader parsed to NaN or infinity comes as the column's text, so that it is
        reported as written.
        """
        self._check(column)
        rows = self._rows(rows)
        if rows is None:
            row_of = _row_of_position
        else:
            def row_of(i):
                return int(rows[i]) + FIRST_DATA_ROW
        if column in self._numbers:
            values = self._numbers[column] if rows is None else self._numbers[column][rows]
            if isinstance(self._source, _CsvFile) and not np.isfinite(values).all():
                text = self._read_again(column)
                return (text if rows is None else text.take(pa.array(rows))), row_of
            return pa.array(values, type=pa.float64()), row_of
        data = self._texts[column]
        if isinstance(data, tuple):
            codes, values = data
            codes = codes if rows is None else codes[rows]
            return pa.DictionaryArray.from_arrays(pa.array(codes, type=pa.int32()), values), row_of
        return (data if rows is None else data.take(pa.array(rows))), row_of

    # --- helpers --------------------------------------------------------------------------

    def _check(self, column):
        if column not in self._numbers and column not in self._texts:
            raise InputError(f"missing column (columns are: {', '.join(self.columns)})", path=self.path,
                             column=column)

    def _rows(self, rows):
        if rows is None:
            return None
        rows = np.asarray(rows)
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
        rows = rows.astype(np.int64, copy=False)
        if len(rows) and (rows.min() < 0 or rows.max() >= self.rows):
            raise IndexError(f"rows out of range for a table of {self.rows} rows")
        return rows

    def _read_again(self, column):
        """The column's cells as written (stripped text), read from the file again."""
        if isinstance(self._source, _CsvFile):
            return self._source.read_text([column])[column][: self.rows]
        index = self.columns.index(column)
        try:
            array = self._source.read(columns=[self._source.schema_arrow.names[index]]).column(0)
        except (pa.ArrowException, OSError) as exc:
            raise _unreadable(self.path, exc) from None
        return _as_text(array)[: self.rows]


def _row_of_position(i):
    return int(i) + FIRST_DATA_ROW


def _filled_rows(columns, nan_is_empty):
    """Rows up to the last one holding a cell that is not empty (wholly empty trailing rows dropped).

    A NaN is an empty cell in a Parquet float column; in a CSV it was written ``nan``.
    """
    lengths = {len(data) for data in columns.values()}
    rows = max(lengths) if lengths else 0
    if rows == 0:
        return 0

    def filled(data, start):
        part = data[start:]
        if isinstance(part, np.ndarray):
            return ~np.isnan(part) if nan_is_empty else np.ones(len(part), dtype=bool)
        return pc.not_equal(part, "").to_numpy(zero_copy_only=False)

    if any(filled(data, rows - 1).any() for data in columns.values()):
        return rows
    last = -1
    for data in columns.values():
        found = np.flatnonzero(filled(data, 0))
        if len(found):
            last = max(last, int(found[-1]))
    return last + 1


# --- reading in chunks ------------------------------------------------------------------------

@dataclass
class Chunk:
    """Consecutive rows of a table: where they start and the columns asked for.

    Attributes
    ----------
    path : Path
    offset : int
        Data rows of the file before this chunk.
    columns : dict
        Column name (stripped) to a pyarrow array of the chunk's cells. A column the CSV
        reader parsed as numbers holds finite float64 values only; any other value comes
        as text, so that it is reported as written.
    """

    path: Path
    offset: int
    columns: dict

    @property
    def rows(self):
        return len(next(iter(self.columns.values()))) if self.columns else 0

    def slice(self, start, stop=None):
        stop = self.rows if stop is None else stop
        return Chunk(self.path, self.offset + start,
                     {name: array.slice(start, stop - start) for name, array in self.columns.items()})

    def row_number(self, index):
        """The spreadsheet row number of the chunk's row ``index``."""
        return self.offset + int(index) + FIRST_DATA_ROW


def iter_chunks(path, columns, *, chunk_rows, numeric_columns=()):
    """Stream ``columns`` of a CSV or Parquet table, ``chunk_rows`` rows at a time.

    Parameters
    ----------
    path : str or Path
    columns : sequence of str
        Columns to read (stripped names, as :class:`PartyTable` names them); others are
        skipped.
    chunk_rows : int
        Rows per chunk (the last one fewer).
    numeric_columns : sequence of str
        Columns a CSV reader may parse as numbers itself (several times faster than
        parsing text afterwards).

    Returns
    -------
    iterable of Chunk
        In file order. Wholly empty rows at the end of the file are dropped; empty rows
        followed by data are rows like any other.

    Raises
    ------
    InputError
        "file not found", "file is empty", "cannot be read as a table (...)", "missing
        column (...)" when called; "file has a header but no rows" once the file is read.

    Notes
    -----
    A numeric column the CSV reader parsed holds a value the rules must report with its
    spelling (``NaN``, ``inf``) or a cell that is not a number: the file is then read
    again from the start of that chunk with every column as text, and from there on as
    text; rows already yielded are not yielded again.
    """
    path = Path(path)
    _check_file(path)
    if int(chunk_rows) < 1:
        raise InputError(f"chunk rows must be at least 1, not {chunk_rows!r}")
    columns = list(columns)
    if _is_parquet(path):
        chunks = _ParquetChunks(path, columns, int(chunk_rows))
    else:
        chunks = _CsvChunks(path, columns, int(chunk_rows), numeric_columns)
    return _ChunkStream(path, chunks)


class _ChunkStream:
    """Chunks with the file's trailing empty rows held back and dropped."""

    def __init__(self, path, chunks):
        self.path, self._chunks = path, chunks

    def __iter__(self):
        held, rows = [], 0
        for chunk in self._chunks:
            if chunk.rows == 0:
                continue
            stop = _filled_prefix(chunk)
            if stop:
                yield from held  # empty rows followed by data are rows
                held = []
                yield chunk.slice(0, stop)
                rows += stop
            if stop < chunk.rows:
                held.append(chunk.slice(stop))
        if rows == 0:
            raise InputError("file has a header but no rows", path=self.path)


def _filled_prefix(chunk):
    """Where the chunk's trailing wholly empty rows start (``chunk.rows`` if there are none)."""
    if not all(_blank(array.slice(chunk.rows - 1, 1))[0] for array in chunk.columns.values()):
        return chunk.rows
    blank = np.ones(chunk.rows, dtype=bool)
    for array in chunk.columns.values():
        blank &= _blank(array)
    filled = np.flatnonzero(~blank)
    return int(filled[-1]) + 1 if len(filled) else 0


def _blank(array):
    if _is_number_type(array.type):
        values = pc.cast(array, pa.float64()).to_numpy(zero_copy_only=False)
        return np.isnan(values)
    return pc.equal(_as_text(array), "").to_numpy(zero_copy_only=False)


class _ParquetChunks:
    """Record batches of the needed columns of a Parquet file, ``chunk_rows`` rows each."""

    def __init__(self, path, columns, chunk_rows):
        self.path, self.chunk_rows = path, chunk_rows
        self._file, raw = _open_parquet(path)
        names = _column_names(path, raw)
        _check_columns(path, columns, names)
        self._raw = {c: raw[names.index(c)] for c in columns}

    def __iter__(self):
        offset = 0
        batches = self._file.iter_batches(batch_size=self.chunk_rows, columns=list(self._raw.values()))
        try:
            for batch in batches:
                yield Chunk(self.path, offset, {c: batch.column(i) for i, c in enumerate(self._raw)})
                offset += batch.num_rows
        except (pa.ArrowException, OSError) as exc:
            raise _unreadable(self.path, exc) from None


class _CsvChunks:
    """Chunks of ``chunk_rows`` rows of a CSV file (the last one fewer), from pyarrow's streaming reader."""

    def __init__(self, path, columns, chunk_rows, numeric_columns):
        self.path, self.chunk_rows = path, chunk_rows
        self._file = _CsvFile(path)
        _check_columns(path, columns, self._file.names)
        self.columns = columns
        numeric = set(numeric_columns)
        self.numeric_columns = [c for c in columns if c in numeric]

    def __iter__(self):
        offset, typed = 0, bool(self.numeric_columns)
        while True:
            try:
                for chunk in self._read(offset, typed):
                    if typed and not self._finite(chunk):
                        break  # a value to report: read this chunk again as text
                    yield chunk
                    offset += chunk.rows
                else:
                    return
            except _Unconverted:
                pass  # the typed reader met a cell it cannot parse: go on as text from ``offset``
            typed = False

    def _finite(self, chunk):
        return all(np.isfinite(chunk.columns[c].to_numpy(zero_copy_only=False)).all() for c in self.numeric_columns)

    def _read(self, offset, typed):
        """Chunks from data row ``offset`` on; numeric columns parsed by the reader when ``typed``."""
        types = {c: pa.float64() for c in self.numeric_columns} if typed else {}
        for batch in _rechunk(self._file.batches(offset, types, self.columns), self.chunk_rows):
            yield Chunk(self.path, offset, {c: batch.column(i) for i, c in enumerate(self.columns)})
            offset += batch.num_rows


def _rechunk(batches, rows):
    """Record batches of exactly ``rows`` rows (the last one fewer) from batches of any size."""
    pending, count = [], 0
    for batch in batches:
        pending.append(batch)
        count += batch.num_rows
        if count < rows:
            continue
        whole = _concatenated(pending)
        full = whole.num_rows - whole.num_rows % rows
        for start in range(0, full, rows):
            yield whole.slice(start, rows)
        pending = [whole.slice(full)]
        count = whole.num_rows - full
    if pending:
        rest = _concatenated(pending)
        if rest.num_rows:
            yield rest


def _concatenated(batches):
    table = pa.Table.from_batches(batches).combine_chunks()
    return table.to_batches()[0] if table.num_rows else batches[0].slice(0, 0)
