"""Exceptions that reach the user as one line.

Every error a user can cause or meet (bad input, a failed party, a wrong key) is a
:class:`FedscoreError`; the command line prints ``str(error)`` and exits non-zero.
"""


class FedscoreError(Exception):
    """Base class: the message is a complete, one-line explanation."""


class InputError(FedscoreError, ValueError):
    """A user-supplied file, column or value is unusable.

    The message names the file and, where known, the column, row and value.
    """

    def __init__(self, message, *, path=None, column=None, row=None):
        where = []
        if path is not None:
            where.append(str(path))
        if column is not None:
            where.append(f"column {column!r}")
        if row is not None:
            where.append(f"row {row}")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)
        self.path, self.column, self.row = path, column, row


class CryptoError(FedscoreError):
    """A key, ciphertext or parameter set is wrong, corrupted or insecure."""


class ProtocolError(FedscoreError):
    """A message is malformed, out of order, from another run, or a party broke the protocol."""


class PartyError(FedscoreError):
    """A party failed or did not answer; the message names the party."""

    def __init__(self, role, message):
        super().__init__(f"party {role!r} failed: {message}")
        self.role = role


class OptionsError(InputError):
    """The run's options do not fit its inputs (fewer matches than the minimum asked, say).

    Changing an option needs a new run: resuming replays the run with the options it began
    with, so a party that raises this leaves nothing to resume.
    """


class PartyOptionsError(PartyError, OptionsError):
    """A party refused the run's options (:class:`OptionsError`): fixed by a new run, not by resuming."""
