"""Identifier normalisation: make the same person's ID spell the same at both parties.

Private set intersection matches byte strings, so ``Ana@Mail.com`` at the brand and
``ana@mail.com`` at the media would never meet. Each party normalises its own IDs here,
before anything is hashed, with rules that depend on the value alone:

``email``
    trimmed and lower-cased. No provider-specific rewriting (Gmail dots, ``+tags``):
    those rules are not universal and would merge distinct mailboxes elsewhere.
``phone``
    digits only (``+44 (20) 7946-0958`` → ``442079460958``). No country code is guessed:
    both parties should store numbers in the same convention, ideally E.164.
``hashed``
    an already-hashed ID (MD5, SHA-1 or SHA-256 in hex), lower-cased: hex is
    case-insensitive, nothing else changes.
``text``
    any other identifier (customer numbers, ONE-IDs), trimmed and otherwise untouched.

With ``kind="auto"`` (the default) each value gets the rule its own shape calls for,
so a column that mixes e-mails and phone numbers still normalises consistently at both
parties, whatever the other rows of either table look like. An explicit kind applies
that rule to every value and refuses values that do not fit it.

Empty IDs are skipped and duplicated IDs (after normalisation) are kept once, at their
first row; :class:`IdReport` counts both so that the user is told.
"""

import re
from collections import Counter
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from .errors import InputError
from .params import ID_KINDS

HASHED_HEX_LENGTHS = (32, 40, 64)
"""Hex digest lengths recognised as already-hashed IDs: MD5, SHA-1, SHA-256."""

PHONE_MIN_DIGITS = 7
"""Fewer digits than this is a local extension or a counter, not a phone number."""

PHONE_MAX_DIGITS = 15
"""ITU-T E.164: an international number has at most 15 digits."""

_HEX = re.compile(r"[0-9A-Fa-f]+")
_PHONE_SHAPE = re.compile(r"\+?[0-9][0-9 ().\-]*")
_PHONE_PUNCTUATION = str.maketrans("", "", "+ ().-")
_ANY_NON_DIGIT = re.compile(r"[^0-9]")


def _auto(value):
    """Return ``(normalised, kind)`` for one stripped, non-empty value."""
    if "@" in value:
        return value.lower(), "email"
    if len(value) in HASHED_HEX_LENGTHS and _HEX.fullmatch(value):
        return value.lower(), "hashed"
    if _PHONE_SHAPE.fullmatch(value):
        digits = value.translate(_PHONE_PUNCTUATION)
        if PHONE_MIN_DIGITS <= len(digits) <= PHONE_MAX_DIGITS:
            return digits, "phone"
    return value, "text"


def _email(value):
    return (value.lower(), "email") if "@" in value else None


def _hashed(value):
    return (value.lower(), "hashed") if len(value) in HASHED_HEX_LENGTHS and _HEX.fullmatch(value) else None


def _phone(value):
    digits = _ANY_NON_DIGIT.sub("", value)
    return (digits, "phone") if PHONE_MIN_DIGITS <= len(digits) <= PHONE_MAX_DIGITS else None


def _text(value):
    return value, "text"


_RULES = {"auto": _auto, "email": _email, "phone": _phone, "hashed": _hashed, "text": _text}
_EXPECTED = {"email": "an e-mail address", "hashed": "a hex MD5, SHA-1 or SHA-256 hash",
             "phone": f"a phone number ({PHONE_MIN_DIGITS} to {PHONE_MAX_DIGITS} digits)"}


@dataclass(frozen=True)
class IdReport:
    """What normalisation found in one party's ID column.

    Attributes
    ----------
    rows : int
        Rows in the table.
    empty : int
        Rows whose ID is empty after normalisation; they take no part in matching.
    duplicates : int
        Rows whose normalised ID already appeared on an earlier row; only the first
        row of each ID takes part in matching.
    unique : int
        Distinct non-empty IDs: the size of the set that is matched.
    kinds : dict of str to int
        How many non-empty rows were normalised by each rule.
    """

    rows: int
    empty: int
    duplicates: int
    unique: int
    kinds: dict

    def to_dict(self):
        return asdict(self)


@dataclass(frozen=True)
class PreparedIds:
    """A party's distinct normalised IDs, ready for matching.

    Attributes
    ----------
    ids : numpy.ndarray of str
        Distinct non-empty normalised IDs, in the order of their first row.
    rows : numpy.ndarray of int64
        For each of ``ids``, its first row in the table (0-based, data rows only).
    report : IdReport
    """

    ids: np.ndarray
    rows: np.ndarray
    report: IdReport


def normalise(values, kind="auto", *, path=None, column=None):
    """Normalise identifiers.

    Parameters
    ----------
    values : sequence of str
    kind : {"auto", "email", "phone", "hashed", "text"}
    path, column : optional
        Named in the error raised for a value that does not fit an explicit ``kind``.

    Returns
    -------
    ids : numpy.ndarray of str
        The normalised IDs, ``""`` where a value was empty.
    kinds : numpy.ndarray of str
        The rule applied to each value (``""`` for empty values).

    Raises
    ------
    InputError
        With an explicit ``kind``, for the first value that does not fit it.

    Examples
    --------
    >>> ids, kinds = normalise([" Ana@Mail.COM", "+1 (555) 010-9999", "C-123", ""])
    >>> list(ids)
    ['ana@mail.com', '15550109999', 'C-123', '']
    >>> list(kinds)
    ['email', 'phone', 'text', '']
    """
    if kind not in ID_KINDS:
        raise InputError(f"unknown ID kind {kind!r} (choose from {', '.join(ID_KINDS)})")
    rule = _RULES[kind]
    ids, kinds = [], []
    for row, value in enumerate(values):
        value = str(value).strip()
        result = rule(value) if value else ("", "")
        if result is None:
            raise InputError(f"ID {value!r} is not {_EXPECTED[kind]} (with --id-kind auto each value is "
                             "normalised by its own shape)", path=path, column=column, row=row + 2)
        ids.append(result[0])
        kinds.append(result[1])
    return np.array(ids, dtype=object), np.array(kinds, dtype=object)


def prepare_ids(values, kind="auto", *, path=None, column=None):
    """Normalise, drop empty IDs and keep the first row of each distinct ID.

    Parameters
    ----------
    values : sequence of str
        The ID column, in table order.
    kind : {"auto", "email", "phone", "hashed", "text"}
    path, column : optional
        Named in error messages.

    Returns
    -------
    PreparedIds

    Raises
    ------
    InputError
        When no row has a usable ID, or a value does not fit an explicit ``kind``.
    """
    ids, kinds = normalise(values, kind, path=path, column=column)
    nonempty = ids != ""
    first = ~pd.Series(ids).duplicated(keep="first").to_numpy() & nonempty
    rows = np.flatnonzero(first).astype(np.int64)
    if len(rows) == 0:
        raise InputError("no row has a non-empty ID", path=path, column=column)
    counted = Counter(kinds[nonempty].tolist())
    report = IdReport(
        rows=len(ids),
        empty=int((~nonempty).sum()),
        duplicates=int(nonempty.sum() - len(rows)),
        unique=len(rows),
        kinds={k: counted[k] for k in ID_KINDS if k in counted},
    )
    return PreparedIds(ids=ids[rows], rows=rows, report=report)
