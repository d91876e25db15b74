"""What each party's table must hold for a job, checked once at the party's boundary.

A job's options schema states, per role, a :class:`~fedscore.kit.options.TableSpec`:
which option names the ID column, whether there is a label column, which columns are
features. :func:`read_inputs`
reads a party's table with :class:`~fedscore.kit.table.PartyTable` and validates all of
it: IDs, labels, every feature column. It runs twice, with the same code: before a run
starts, at every party (so that bad input fails in about a second, writes nothing and
leaves no checkpoint), and as the first thing a party's load step does (a party of a
deployment across machines is not checked by anyone else).
"""

import math
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from .options import ANY_PARTY, argument
from .table import FIRST_DATA_ROW, PartyTable


@dataclass
class PartyInputs:
    """A party's validated table and what the job reads of it."""

    table: PartyTable
    id_column: str
    ids: np.ndarray
    labels: np.ndarray
    label_column: str
    feature_columns: list


def read_inputs(options, role, config):
    """Read and validate a party's table for a job; every error names the file, column, row and value.

    Parameters
    ----------
    options : fedscore.kit.options.Options
        The job's options: its ``tables`` say what the role's table must hold;
        ``id_column`` and the label option may be set by the party's own ``config``
        (:meth:`Options.local`); its :meth:`~fedscore.kit.options.Options.check_inputs`
        adds the job's own rules (a minimum seed size, say).
    role : str
        The party's role.
    config : dict
        The party's local configuration; ``config["data"]`` is its table.

    Returns
    -------
    PartyInputs
    """
    spec = options.tables.get(role, options.tables.get(ANY_PARTY))
    path = config["data"]
    id_column = options.local("id_column", config)
    label_column = options.local(spec.label, config) if spec.label else None
    key_columns = [id_column] + ([label_column] if label_column else [])
    table = PartyTable.read(path, required=key_columns, text_columns=key_columns)
    ids = table.ids(id_column, allow_empty=not spec.unique_ids, allow_duplicates=not spec.unique_ids)
    labels = table.labels(label_column) if label_column else None
    features = []
    if spec.features:
        exclude = set(key_columns) | set(getattr(options, "exclude", ()))
        features = table.feature_columns(exclude=exclude)
        if not features:
            besides = "the ID" + (" and label" if label_column else "")
            raise InputError(f"no feature columns besides {besides}", path=path)
        if spec.numeric_only:
            _check_numeric(table, features)
        elif spec.constant_ok:
            table.kinds(features)
        else:
            table.check_features(features)
    inputs = PartyInputs(table, id_column, ids, labels, label_column, features)
    options.check_inputs(role, inputs)
    return inputs


def _check_numeric(table, columns):
    """Refuse a text column where only numbers are allowed, naming its first cell that is not a number."""
    for column in columns:
        if table.numeric(column) is not None:
            continue
        for row, value in enumerate(table.text(column).to_pylist()):
            try:
                if math.isfinite(float(value)):
                    continue
            except ValueError:
                pass
            raise InputError(f"value {value!r} is not a finite number (this protocol needs numeric columns; leave a "
                             f"text column out with {argument('exclude')})", path=table.path, column=column,
                             row=row + FIRST_DATA_ROW)
