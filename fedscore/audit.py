"""Replay a run's ledger against the transcript its protocol's spec allows.

Each spec in ``protocols/`` ends with a *Transcript* table: one row per message field
that may cross a party boundary, with its step, sender, receiver and payload category::

    | step | from | to | field | payload |
    |---|---|---|---|---|
    | psi.blind_own | brand | coordinator | points | blinded_ids |

``party`` in the from/to columns stands for any party role (horizontal protocols have
as many parties as the run has). :func:`audit_ledger` fails on any hop the table does
not list, so the spec and the code cannot drift apart unnoticed, and on any payload
reaching the coordinator outside :data:`COORDINATOR_MAY_RECEIVE`.
"""

import re
from pathlib import Path

from .ledger import COORDINATOR, Payload

COORDINATOR_MAY_RECEIVE = frozenset({
    Payload.CIPHERTEXT, Payload.BLINDED_IDS, Payload.SIZE, Payload.PUBLIC_PARAMETER,
    Payload.CONTROL, Payload.AGGREGATE,
})
"""What the coordinator may ever hold: ciphertexts, blinded IDs, sizes, public
parameters, control messages and the aggregates a spec releases by design. Never a
masked value (its mask holder is a party, and the coordinator relays to that party's
peer), an output row or anything else in plaintext."""

_ROW = re.compile(r"^\|\s*([\w.*]+)\s*\|\s*(\w+)\s*\|\s*(\w+)\s*\|\s*([\w*]+)\s*\|\s*(\w+)\s*\|\s*$")


def read_transcript(spec_path):
    """Parse the Transcript table of a spec into a set of allowed (step, from, to, field, payload)."""
    text = Path(spec_path).read_text(encoding="utf-8")
    _, _, section = text.partition("## Transcript")
    if not section:
        raise ValueError(f"{spec_path}: no '## Transcript' section")
    allowed = set()
    for line in section.splitlines():
        match = _ROW.match(line.strip())
        if match and match.group(1) != "step":
            step, sender, receiver, field, payload = match.groups()
            allowed.add((step, sender, receiver, field, Payload(payload).value))
    if not allowed:
        raise ValueError(f"{spec_path}: the Transcript table has no rows")
    return allowed


def _role_matches(pattern, role):
    return pattern == role or (pattern == "party" and role != COORDINATOR)


def _listed(allowed, step, sender, receiver, field, payload):
    for a_step, a_from, a_to, a_field, a_payload in allowed:
        if (a_step == step and a_payload == payload and a_field in (field, "*")
                and _role_matches(a_from, sender) and _role_matches(a_to, receiver)):
            return True
    return False


def audit_ledger(entries, allowed):
    """Return a list of violations (empty when the transcript matches the spec).

    Parameters
    ----------
    entries : list of dict
        Ledger entries (:func:`fedscore.ledger.read_ledger`).
    allowed : set
        From :func:`read_transcript`.
    """
    violations = []
    for entry in entries:
        for field, info in entry["fields"].items():
            payload = info["payload"]
            where = f"#{entry['seq']} {entry['step']} {entry['sender']} -> {entry['receiver']} field {field!r} ({payload})"
            if entry["receiver"] == COORDINATOR and Payload(payload) not in COORDINATOR_MAY_RECEIVE:
                violations.append(f"{where}: the coordinator may not receive {payload}")
            if not _listed(allowed, entry["step"], entry["sender"], entry["receiver"], field, payload):
                violations.append(f"{where}: not in the spec's transcript")
    return violations
