"""Turn a party's typed columns into features: numeric columns standardised, text columns one-hot.

One encoder for training (fitted on a :class:`~fedscore.kit.table.PartyTable`, or built
from pooled statistics by the horizontal protocols) and for scoring (applied to the
chunks :func:`~fedscore.kit.table.iter_chunks` streams), so that a model file scores a
row exactly as training encoded it.

Two options, both off by default, keep an aggregate computed from the features from
singling out a user:

- ``min_category_count=m``: the categories fewer than ``m`` of the fitted rows hold are
  merged into one column, ``col=<other>``;
- ``outlier_quantile=q``: numeric values are winsorised to the ``[q, 1 - q]`` quantiles
  of the fitted rows before they are standardised.

Both are recorded in :meth:`FeatureEncoder.to_dict`, with what they decided (the kept
categories, the bounds), and applied again at transform and scoring time.
"""

import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import InputError
from ..params import UNSEEN_POLICIES
from .table import _codes, _is_number_type, _parse_values

OTHER = "<other>"
"""The category rare values are merged into (``col=<other>``) when ``min_category_count`` is set."""



class FeatureEncoder:
    """Standardise numeric columns and one-hot encode text columns, fitted on one party's rows.

    A column is numeric when every cell parses as a number. The encoder never sees
    another party's data: each party fits its own (or builds it from pooled statistics
    with :meth:`from_statistics`).

    Parameters
    ----------
    path : str or Path, optional
        Named in error messages when the data does not name its own file.
    min_category_count : int, optional
        Categories held by fewer of the fitted rows are merged into ``col=<other>``.
    outlier_quantile : float, optional
        In ``(0, 0.5)``: winsorise numeric values to the ``[q, 1 - q]`` quantiles of the
        fitted rows before standardising.

    Attributes
    ----------
    columns_ : list of str
        The table columns encoded, in order.
    feature_names_ : list of str
        Names of the output columns (``col`` or ``col=value``).
    means_, scales_ : dict
        Standardisation statistics of numeric columns (after winsorising, when it is on).
    categories_ : dict
        The categories of each one-hot encoded column, in output order: sorted, then
        ``<other>`` last when rare categories were merged.
    bounds_ : dict
        ``[low, high]`` winsorising bounds of numeric columns (empty when the option is off).

    Notes
    -----
    *Rare categories.* Only the kept categories are recorded, never the merged ones:
    listing them in a model file would itself reveal that someone holds them. So, in a
    column with an ``<other>`` column, every value outside the kept categories (merged in
    training or never seen) is encoded as ``<other>``; ``unseen`` applies to columns
    without one. A category literally spelled ``<other>`` joins the merged ones. The
    ``col=<other>`` column is omitted when no category is rare. When only one category
    is frequent enough, the column still gets two indicator columns (that category and
    ``<other>``); when none is, it is encoded by ``col=<other>`` alone, which is 1 on
    every fitted row: the column then tells nothing about the fitted users, which is the
    point. The refusal of columns with more than :data:`~fedscore.kit.table.MAX_CATEGORIES`
    distinct values applies before merging: such a column is an identifier or free text.

    *Outliers.* The bounds are the quantiles of the fitted rows (numpy's linear
    interpolation) and the mean and scale are those of the winsorised values. When the
    bounds meet (a column whose values are almost all equal, as a rare flag), the
    winsorised column is constant: it is encoded as zeros (scale 1) rather than refused,
    since it is the option, not the data, that made it so.

    Examples
    --------
    >>> table = PartyTable.read("media.csv", text_columns=["uid"])  # doctest: +SKIP
    >>> encoder = FeatureEncoder(min_category_count=5)  # doctest: +SKIP
    >>> features = encoder.fit_transform(table, table.feature_columns(exclude=["uid"]))  # doctest: +SKIP
    """

    def __init__(self, path=None, *, min_category_count=None, outlier_quantile=None):
        self.path = path
        self.min_category_count = min_category_count
        self.outlier_quantile = outlier_quantile

    # --- fitting --------------------------------------------------------------------------

    def fit(self, table, columns, rows=None):
        """Learn each column's kind and statistics from ``rows`` of ``table`` (default all rows).

        Parameters
        ----------
        table : PartyTable
        columns : sequence of str
        rows : array of int, optional
            The table rows to fit on (a party's matched users, its training rows).

        Returns
        -------
        self

        Raises
        ------
        InputError
            Every error of :meth:`PartyTable.check_features`, over the fitted rows, with
            the row numbers of the file.
        """
        self._check_options()
        if rows is not None and len(rows) == 0:
            raise InputError("no rows to fit the features on", path=table.path)
        self.columns_ = list(columns)
        self.means_, self.scales_, self.categories_, self.bounds_ = {}, {}, {}, {}
        for column in self.columns_:
            summary = table.summarise(column, rows)
            if summary.numeric:
                self._fit_numbers(column, summary.values)
            else:
                self._fit_categories(column, summary.categories, summary.counts)
        self._name_features()
        return self

    def _check_options(self):
        m, q = self.min_category_count, self.outlier_quantile
        if m is not None and (isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 1):
            raise InputError(f"min_category_count must be a whole number of at least 1, not {m!r}")
        if q is not None and not (isinstance(q, (int, float)) and 0 < q < 0.5):
            raise InputError(f"outlier_quantile must lie strictly between 0 and 0.5, not {q!r}")

    def _fit_numbers(self, column, values):
        if self.outlier_quantile is not None:
            low, high = np.quantile(values, [self.outlier_quantile, 1 - self.outlier_quantile])
            self.bounds_[column] = [float(low), float(high)]
            values = np.clip(values, low, high)
        scale = float(values.std())
        self.means_[column] = float(values.mean())
        self.scales_[column] = scale if scale > 0 else 1.0  # only winsorising can make it 0 here

    def _fit_categories(self, column, categories, counts):
        if self.min_category_count is None:
            self.categories_[column] = list(categories)
            return
        kept = [c for c, n in zip(categories, counts) if n >= self.min_category_count and c != OTHER]
        self.categories_[column] = kept + ([OTHER] if len(kept) < len(categories) else [])

    def _name_features(self):
        self.feature_names_ = []
        for column in self.columns_:
            if column in self.categories_:
                self.feature_names_ += [f"{column}={c}" for c in self.categories_[column]]
            else:
                self.feature_names_.append(column)

    # --- encoding -------------------------------------------------------------------------

    @property
    def numeric_columns_(self):
        """The encoded columns that are standardised (the others are one-hot encoded)."""
        return [c for c in self.columns_ if c not in self.categories_]

    def transform(self, table, rows=None, *, unseen="error"):
        """Encode ``rows`` of ``table`` (default all rows) with the fitted statistics.

        Returns
        -------
        numpy.ndarray
            Float64, ``(len(rows), len(feature_names_))``, C-ordered.

        Raises
        ------
        InputError
            "value 'x' is not a finite number" in a numeric column, "empty value" in a
            text column, or a value not seen in training when ``unseen="error"``.
        """
        rows = table._rows(rows)
        count = table.rows if rows is None else len(rows)
        return self._encode(count, lambda column: table.cells(column, rows), table.path, unseen)

    def fit_transform(self, table, columns, rows=None):
        """:meth:`fit`, then :meth:`transform` of the same rows."""
        return self.fit(table, columns, rows).transform(table, rows)

    def transform_chunk(self, chunk, *, unseen="error"):
        """Encode a :class:`~fedscore.kit.table.Chunk` of a streamed table, as :meth:`transform` does.

        Errors name the row within the file.
        """
        return self._encode(chunk.rows, lambda column: (chunk.columns[column], chunk.row_number), chunk.path,
                            unseen)

    def _encode(self, count, cells, path, unseen):
        if unseen not in UNSEEN_POLICIES:
            raise InputError(f"unseen must be one of {', '.join(UNSEEN_POLICIES)}, not {unseen!r}")
        features = np.empty((count, len(self.feature_names_)))
        features.fill(0.0)  # touched in order: twice as fast as letting column writes fault the pages in
        start = 0
        for column in self.columns_:
            array, row_of = cells(column)
            where = dict(path=path if path is not None else self.path, column=column)
            if column in self.categories_:
                width = len(self.categories_[column])
                positions = self._positions(array, column, row_of, unseen, where)
                known = np.flatnonzero(positions >= 0)
                features[known, start + positions[known]] = 1.0
                start += width
            else:
                features[:, start] = self._standardised(array, column, row_of, where)
                start += 1
        return features

    def _standardised(self, array, column, row_of, where):
        values = None
        if _is_number_type(array.type) and not array.null_count:
            values = array.to_numpy(zero_copy_only=False).astype(float, copy=False)
            if not np.isfinite(values).all():
                values = None
        if values is None:
            codes, texts = _codes(array)
            numbers, _ = _parse_values(texts)
            values = numbers[codes]
            bad = np.flatnonzero(~np.isfinite(values))
            if len(bad):
                raise InputError(f"value {texts[int(codes[bad[0]])].as_py()!r} is not a finite number",
                                 row=row_of(bad[0]), **where)
        if column in self.bounds_:
            values = np.clip(values, *self.bounds_[column])
        return (values - self.means_[column]) / self.scales_[column]

    def _positions(self, array, column, row_of, unseen, where):
        """Each row's position among the column's categories, -1 for none."""
        codes, texts = _codes(array)
        categories = self.categories_[column]
        other = self._has_other(column)
        kept = categories[:-1] if other else categories
        index = pc.index_in(texts, value_set=pa.array(kept, type=pa.string()))
        positions = np.asarray(index.to_numpy(zero_copy_only=False), dtype=float)
        empty = texts.to_numpy(zero_copy_only=False) == ""
        if empty.any():
            rows = np.flatnonzero(empty[codes])
            if len(rows):
                raise InputError("empty value", row=row_of(rows[0]), **where)
        outside = np.isnan(positions)
        if outside.any():
            if other:
                positions[outside] = len(categories) - 1
            elif unseen == "error" and outside[codes].any():
                row = int(np.flatnonzero(outside[codes])[0])
                known = ", ".join(map(repr, categories))
                raise InputError(f"value {texts[int(codes[row])].as_py()!r} was not seen in training "
                                 f"(known values: {known}); --unseen zero scores such rows with none of these set",
                                 row=row_of(row), **where)
            else:
                positions[outside] = -1
        return positions.astype(np.int64)[codes]

    def _has_other(self, column):
        return self.min_category_count is not None and bool(self.categories_[column]) \
            and self.categories_[column][-1] == OTHER

    # --- saving and building --------------------------------------------------------------

    def to_dict(self):
        """Everything :meth:`from_dict` needs to encode as this encoder does (JSON-ready)."""
        return {"columns": list(self.columns_), "means": dict(self.means_), "scales": dict(self.scales_),
                "categories": {c: list(v) for c, v in self.categories_.items()},
                "feature_names": list(self.feature_names_), "min_category_count": self.min_category_count,
                "outlier_quantile": self.outlier_quantile,
                "bounds": {c: list(b) for c, b in self.bounds_.items()}}

    @classmethod
    def from_dict(cls, data, path=None):
        """The encoder :meth:`to_dict` described (``path`` is named in errors).

        Raises
        ------
        KeyError, TypeError, ValueError
            When ``data`` is not such a description (a model file reports it as malformed).
        """
        encoder = cls(path, min_category_count=data.get("min_category_count"),
                      outlier_quantile=data.get("outlier_quantile"))
        encoder.columns_ = [str(c) for c in data["columns"]]
        encoder.means_ = {str(c): float(v) for c, v in data["means"].items()}
        encoder.scales_ = {str(c): float(v) for c, v in data["scales"].items()}
        encoder.categories_ = {str(c): [str(v) for v in values] for c, values in data["categories"].items()}
        encoder.bounds_ = {str(c): [float(low), float(high)] for c, (low, high) in (data.get("bounds") or {}).items()}
        encoder._check_statistics()
        encoder._name_features()
        if "feature_names" in data and list(data["feature_names"]) != encoder.feature_names_:
            raise ValueError("feature_names do not match the encoder's columns and categories")
        return encoder

    @classmethod
    def from_statistics(cls, columns, means, scales, categories, path=None, *, bounds=None,
                        min_category_count=None, outlier_quantile=None):
        """An encoder from given statistics: what horizontal protocols pool across parties.

        Parameters
        ----------
        columns : sequence of str
            In output order.
        means, scales : dict
            Per numeric column (scales strictly positive).
        categories : dict
            Per text column, its categories in output order (``<other>`` last for a
            bucket of rare values, with ``min_category_count`` set).
        bounds : dict, optional
            Per numeric column, ``[low, high]`` winsorising bounds.
        min_category_count, outlier_quantile : optional
            Recorded as the options the statistics were pooled under.

        Raises
        ------
        InputError
            When a scale is not strictly positive ("column is constant"), or a column has
            neither statistics nor categories.
        """
        encoder = cls(path, min_category_count=min_category_count, outlier_quantile=outlier_quantile)
        encoder._check_options()
        encoder.columns_ = list(columns)
        encoder.means_ = {c: float(v) for c, v in means.items()}
        encoder.scales_ = {c: float(v) for c, v in scales.items()}
        encoder.categories_ = {c: list(v) for c, v in categories.items()}
        encoder.bounds_ = {c: [float(low), float(high)] for c, (low, high) in (bounds or {}).items()}
        for column, scale in encoder.scales_.items():
            if not scale > 0:
                raise InputError("column is constant: it carries no information", path=path, column=column)
        try:
            encoder._check_statistics()
        except ValueError as exc:
            raise InputError(str(exc), path=path) from None
        encoder._name_features()
        return encoder

    def _check_statistics(self):
        for column in self.columns_:
            if column in self.categories_:
                if not self.categories_[column]:
                    raise ValueError(f"column {column!r} has no categories")
            elif column not in self.means_ or column not in self.scales_:
                raise ValueError(f"column {column!r} has neither statistics nor categories")
            elif not (math.isfinite(self.means_[column]) and math.isfinite(self.scales_[column])
                      and self.scales_[column] > 0):
                raise ValueError(f"column {column!r} has a non-finite mean or a scale that is not positive")
        for column, (low, high) in self.bounds_.items():
            if not (math.isfinite(low) and math.isfinite(high) and low <= high):
                raise ValueError(f"column {column!r} has bounds that are not finite and ordered")

    def __repr__(self):
        fitted = f", features={len(self.feature_names_)}" if hasattr(self, "feature_names_") else ""
        return f"FeatureEncoder(path={self.path!r}{fitted})"
