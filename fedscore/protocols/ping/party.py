"""The ``ping`` job, a party's side: confirm its role and files, and relay tokens."""

import os
import secrets
from pathlib import Path

from ..._version import __version__
from ...errors import InputError, ProtocolError
from ...wire import Message, control

TOKEN_BYTES = 16
"""Size of the random token each party contributes to the relay check."""


def ready(party, message):
    """Party side: confirm the addressed role and the local files, then contribute a token."""
    if message["role"] != party.role:
        raise ProtocolError(f"addressed as {message['role']!r} but this node is {party.role!r}")
    data = party.config.get("data")
    if data is not None and not Path(data).is_file():
        raise InputError("data file not found", path=data)
    out = party.config.get("out")
    if out is not None and not os.access(out, os.W_OK):
        raise InputError("output folder is not writable", path=out)
    party.state["token"] = token = secrets.token_hex(TOKEN_BYTES)
    return Message(token=control(token), version=control(__version__))


def echo(party, message):
    """Party side: send back the peer's token and this party's own token from its state."""
    return Message(token=control(message["token"]), own=control(party.state["token"]))
