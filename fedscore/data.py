"""Read a party's table, validate it once at the boundary, and turn it into features.

Everything inside fedscore trusts what comes out of here: IDs are non-empty unique
strings, features are finite floats, labels are 0/1 (NaN for rows still to be scored).
Every error names the file, the column and, where it helps, the row (1-based, counting
the header as row 1, as a spreadsheet shows it) and the value.
"""

from pathlib import Path

import numpy as np
import pandas as pd

from .errors import InputError

LABEL_VALUES = {"1": 1.0, "0": 0.0, "yes": 1.0, "no": 0.0, "true": 1.0, "false": 0.0, "1.0": 1.0, "0.0": 0.0}
"""Accepted label spellings (case-insensitive); an empty cell marks a row to score."""

MAX_CATEGORIES = 100
"""A string column with more distinct values than this is refused rather than one-hot encoded:
it is almost always an identifier or free text."""


def read_table(path, *, columns=None):
    """Read a CSV or Parquet file with every cell as a string.

    Parameters
    ----------
    path : str or Path
    columns : list of str, optional
        Columns that must be present.

    Returns
    -------
    pandas.DataFrame
        All columns as strings (empty cells as ``""``), the file's row order kept.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("file not found", path=path)
    if path.stat().st_size == 0:
        raise InputError("file is empty", path=path)
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            # Nulls become empty cells, as in a CSV, so they are reported as empty, never matched as "nan".
            frame = pd.read_parquet(path).astype("string").fillna("").astype(object)
        else:
            # Blank lines are kept: in a one-column file they are empty IDs to report, and
            # dropping them would shift every later row number in error messages.
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True,
                                skip_blank_lines=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError, ValueError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cannot be read as a table ({first_line})", path=path) from None
    frame.columns = [str(c).strip() for c in frame.columns]
    frame = _drop_trailing_blank_rows(frame)
    if len(frame) == 0:
        raise InputError("file has a header but no rows", path=path)
    for column in columns or ():
        if column not in frame.columns:
            raise InputError(f"missing column (columns are: {', '.join(frame.columns)})", path=path, column=column)
    return frame


def as_table_file(table, path):
    """Return a path for ``table``: itself if it is one, else the data frame written as CSV to ``path``.

    The Python API accepts data frames as well as files; parties read files, so a frame
    is written once to a folder of the caller's (never shared) before the run.
    """
    if isinstance(table, pd.DataFrame):
        table.to_csv(path, index=False)
        return Path(path)
    return Path(table).resolve()


def _drop_trailing_blank_rows(frame):
    """Drop wholly empty rows at the end of a file (stray newlines); blank rows inside it stay."""
    filled = (frame != "").any(axis=1).to_numpy()
    last = np.flatnonzero(filled)
    return frame.iloc[: last[-1] + 1 if len(last) else 0]


def validate_ids(frame, id_column, path, *, allow_duplicates=False, allow_empty=False):
    """Return the ID column as an array of stripped strings, refusing empty or duplicated IDs."""
    ids = frame[id_column].astype(str).str.strip().to_numpy(dtype=object)
    empty = np.flatnonzero(ids == "")
    if len(empty) and not allow_empty:
        raise InputError("empty ID", path=path, column=id_column, row=int(empty[0]) + 2)
    if not allow_duplicates:
        duplicated = pd.Series(ids).duplicated(keep="first").to_numpy()
        if duplicated.any():
            row = int(np.flatnonzero(duplicated)[0])
            raise InputError(f"duplicated ID {ids[row]!r}", path=path, column=id_column, row=row + 2)
    return ids


def parse_labels(frame, label_column, path):
    """Parse a label column into 1.0 / 0.0, with NaN for empty cells (rows to score).

    Raises
    ------
    InputError
        For a value outside :data:`LABEL_VALUES` or when the labelled rows hold one class only.
    """
    raw = frame[label_column].astype(str).str.strip().str.lower()
    labels = np.full(len(raw), np.nan)
    for i, value in enumerate(raw.to_numpy()):
        if value == "":
            continue
        try:
            labels[i] = LABEL_VALUES[value]
        except KeyError:
            raise InputError(
                f"label {frame[label_column].iloc[i]!r} is not one of 1/0, yes/no, true/false (or empty to score)",
                path=path, column=label_column, row=i + 2,
            ) from None
    known = labels[~np.isnan(labels)]
    if len(np.unique(known)) < 2:
        which = "no labelled rows" if len(known) == 0 else f"only the class {int(known[0])}"
        raise InputError(f"labels hold {which}: need both 1 and 0", path=path, column=label_column)
    return labels


_NAN_SPELLINGS = frozenset({"nan", "-nan", "+nan"})


def _parse_numbers(values):
    """Parse strings as floats: NaN where a cell is not a number, ±inf kept as such."""
    return pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)


class FeatureEncoder:
    """Standardise numeric columns and one-hot encode string columns, fitted on one party's rows.

    A column is numeric when every cell parses as a number. The encoder never sees
    another party's data: each party fits its own.

    Parameters
    ----------
    path : str or Path, optional
        Named in error messages.

    Attributes
    ----------
    feature_names_ : list of str
        Names of the output columns (``col`` or ``col=value``).
    means_, scales_ : dict
        Standardisation statistics of numeric columns.
    categories_ : dict
        The categories of each one-hot encoded column, in output order.
    """

    def __init__(self, path=None):
        self.path = path

    def fit(self, frame, columns):
        self.columns_ = list(columns)
        self.means_, self.scales_, self.categories_ = {}, {}, {}
        for column in self.columns_:
            values = frame[column].astype(str).str.strip()
            empty = values == ""
            if empty.any():
                raise InputError("empty value", path=self.path, column=column, row=int(np.flatnonzero(empty)[0]) + 2)
            array = _parse_numbers(values)
            parsed = ~np.isnan(array) | values.str.lower().isin(_NAN_SPELLINGS).to_numpy()
            if parsed.all():
                bad = ~np.isfinite(array)
                if bad.any():
                    row = int(np.flatnonzero(bad)[0])
                    raise InputError(f"value {values.iloc[row]!r} is not finite", path=self.path, column=column, row=row + 2)
                scale = array.std()
                if scale == 0:
                    raise InputError("column is constant: it carries no information", path=self.path, column=column)
                self.means_[column], self.scales_[column] = float(array.mean()), float(scale)
            else:
                if parsed.mean() > 0.5:
                    row = int(np.flatnonzero(~parsed)[0])
                    raise InputError(f"non-numeric value {values.iloc[row]!r} in a numeric column",
                                     path=self.path, column=column, row=row + 2)
                categories = sorted(values.unique())
                if len(categories) > MAX_CATEGORIES:
                    raise InputError(f"{len(categories)} distinct text values (more than {MAX_CATEGORIES}): "
                                     "not a categorical feature", path=self.path, column=column)
                if len(categories) < 2:
                    raise InputError("column is constant: it carries no information", path=self.path, column=column)
                self.categories_[column] = categories
        self.feature_names_ = []
        for column in self.columns_:
            if column in self.categories_:
                self.feature_names_ += [f"{column}={c}" for c in self.categories_[column]]
            else:
                self.feature_names_.append(column)
        return self

    def transform(self, frame):
        """Return a float64 ``(rows, len(feature_names_))`` array."""
        blocks = []
        for column in self.columns_:
            values = frame[column].astype(str).str.strip()
            if column in self.categories_:
                blocks.append(np.stack([(values == c).to_numpy(dtype=float) for c in self.categories_[column]], axis=1))
            else:
                numeric = _parse_numbers(values)
                bad = ~np.isfinite(numeric)
                if bad.any():
                    row = int(np.flatnonzero(bad)[0])
                    raise InputError(f"value {values.iloc[row]!r} is not a finite number",
                                     path=self.path, column=column, row=row + 2)
                blocks.append(((numeric - self.means_[column]) / self.scales_[column])[:, None])
        return np.hstack(blocks) if blocks else np.zeros((len(frame), 0))

    def fit_transform(self, frame, columns):
        return self.fit(frame, columns).transform(frame)

    def to_dict(self):
        return {"columns": self.columns_, "means": self.means_, "scales": self.scales_,
                "categories": self.categories_, "feature_names": self.feature_names_}

    @classmethod
    def from_dict(cls, data, path=None):
        encoder = cls(path)
        encoder.columns_, encoder.means_ = data["columns"], data["means"]
        encoder.scales_, encoder.categories_ = data["scales"], data["categories"]
        encoder.feature_names_ = data["feature_names"]
        return encoder


def load_party_table(path, id_column, *, label_column=None, exclude=()):
    """Read, validate and encode one party's table.

    Returns
    -------
    ids : numpy.ndarray of str
    features : numpy.ndarray of float, shape (rows, features)
    labels : numpy.ndarray or None
        1.0 / 0.0 / NaN (to score), when ``label_column`` is given.
    encoder : FeatureEncoder
    """
    required = [id_column] + ([label_column] if label_column else [])
    frame = read_table(path, columns=required)
    ids = validate_ids(frame, id_column, path)
    labels = parse_labels(frame, label_column, path) if label_column else None
    feature_columns = [c for c in frame.columns if c not in required and c not in set(exclude)]
    if not feature_columns:
        raise InputError("no feature columns besides the ID" + (" and label" if label_column else ""), path=path)
    encoder = FeatureEncoder(path)
    features = encoder.fit_transform(frame, feature_columns)
    return ids, features, labels, encoder
