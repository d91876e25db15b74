"""PSI, a party's side: ``protocols/psi.md``, step for step. Both parties run these steps.

The modes differ only in who keeps what: in ``both`` mode the parties are symmetric; in
``labelled`` mode the media keeps its set in its own order (the brand's flags must come
back in that order) and stops after blinding the brand's set, and only the brand
matches. What a party holds afterwards, for the phases that follow PSI in a job, is one
of the result types below, in ``party.phase("psi")``.
"""

import json
import logging
from dataclasses import dataclass

import nacl.utils
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ...errors import OptionsError, ProtocolError
from ...ids import prepare_ids
from ...kit.inputs import read_inputs
from ...kit.options import argument
from ...runtime import progress
from ...wire import Message, blinded_ids, ciphertext, public, size
from .engine import default_engine, fallback_reason
from .group import (
    POINT_BYTES,
    SCALAR_BYTES,
    blind_received,
    check_points,
    distinct,
    hash_and_blind,
    hash_domain,
    intersect,
    random_permutation,
)
from .options import PSIOptions

_LOG = logging.getLogger(__name__)

BRAND, MEDIA = "brand", "media"
SEAL_LABEL = "psi.double_blinded"


# --- what a party holds after PSI ----------------------------------------------------------

@dataclass
class Matched:
    """``both`` mode, at either party: the matched users in the shared row order."""

    ids: np.ndarray
    """This party's IDs as written in its table (trimmed), in the shared order."""
    rows: np.ndarray
    """The table row (0-based data row) of each of ``ids``."""
    size: int
    """Distinct non-empty IDs this party matched with."""
    peer_size: int
    """The same count for the other party."""


@dataclass
class MediaOrder:
    """``labelled`` mode, at the media: its PSI order, and nothing about which rows match."""

    rows: np.ndarray
    """The table row of each of its distinct IDs, in order of first appearance."""
    size: int
    peer_size: int


@dataclass
class BrandFlags:
    """``labelled`` mode, at the brand: which of the media's rows (in the media's PSI order) are its own."""

    flags: np.ndarray
    """True where the media's ID is one of the brand's."""
    brand_rows: np.ndarray
    """The brand's table row of that ID, -1 where it is not the brand's."""
    matched: int
    """Number of True flags: the brand learns it, the media and the coordinator do not."""
    size: int
    peer_size: int


@dataclass
class _Blinding:
    """A party's scratch state while PSI runs; its secret scalar is deleted with it."""

    mode: str
    key: bytes
    order: np.ndarray
    column: str
    rows: np.ndarray
    ids: pa.Array
    """The ID of each of ``rows`` as written (trimmed); pyarrow, so that a snapshot pickles it fast."""
    normalised: pa.Array
    """The same IDs normalised: both parties' matched IDs are equal here, so their order is the shared order."""
    report: dict
    min_intersection: int
    minimum_named: str
    write_output: bool
    peer_size: int = 0
    peer_double: np.ndarray = None


def _shown(party, what):
    """A block callback that shows this party's progress on its own console."""
    return lambda done, total: progress.party_pass(party.role, what, done, total)


def _labelled_media(party, blinding):
    return blinding.mode == "labelled" and party.role == MEDIA


# --- 1. psi.blind_own ------------------------------------------------------------------------

def blind_own(party, msg):
    """Normalise this party's IDs, hash them onto the curve and blind them with a fresh key.

    Replies with the blinded set (shuffled, except the media's in ``labelled`` mode,
    which must keep the media's PSI order), its ID counts and this party's channel key.
    """
    options = PSIOptions.from_dict(msg["options"])
    path = party.config["data"]
    inputs = read_inputs(options, party.role, party.config)
    prepared = prepare_ids(inputs.ids, options.id_kind, path=path, column=inputs.id_column)
    key = nacl.utils.random(SCALAR_BYTES)  # fresh per run, from the OS's generator
    points = hash_and_blind(prepared.ids, key, hash_domain(party.run_id), on_block=_shown(party, "hashing block"))
    keep_order = options.mode == "labelled" and party.role == MEDIA
    order = np.arange(len(points)) if keep_order else random_permutation(len(points))
    party.state["psi.blinding"] = _Blinding(
        mode=options.mode, key=key, order=order, column=inputs.id_column, rows=prepared.rows,
        ids=inputs.table.text(inputs.id_column).take(pa.array(prepared.rows)),
        normalised=pa.array(prepared.ids, type=pa.string()), report=prepared.report.to_dict(),
        min_intersection=options.min_intersection, minimum_named=options.minimum_named,
        write_output=bool(msg["write_output"]))
    report = prepared.report
    return Message(points=blinded_ids(points[order]), channel_key=public(party.channel.offer),
                   rows=size(report.rows), unique=size(report.unique), empty=size(report.empty),
                   duplicates=size(report.duplicates))


# --- 2. psi.blind_peer -----------------------------------------------------------------------

def blind_peer(party, msg):
    """Blind the peer's set with this party's key.

    The double-blinded peer set goes back to the peer, sealed, except in ``labelled``
    mode at the brand, which keeps it to look up the media's IDs and sends nothing.
    """
    blinding = party.phase("psi.blinding")
    peer = MEDIA if party.role == BRAND else BRAND
    peer_points = check_points(msg["points"], "peer's blinded IDs")
    party.channel.connect(peer, msg["channel_key"])
    double = blind_received(peer_points, blinding.key, on_block=_shown(party, "blinding the peer's block"))
    blinding.peer_size = len(peer_points)
    if _labelled_media(party, blinding):  # its part ends here, knowing only the brand's set size
        party.state["psi"] = MediaOrder(rows=blinding.rows, size=len(blinding.rows), peer_size=len(peer_points))
        _write_outputs(party, blinding, {})
        del party.state["psi.blinding"]
    else:
        blinding.peer_double = double
    if blinding.mode == "labelled" and party.role == BRAND:
        return Message()
    return Message(sealed=ciphertext(party.channel.seal(peer, SEAL_LABEL, double.tobytes())))


# --- 3. psi.match ----------------------------------------------------------------------------

def match(party, msg):
    """Open this party's own set, double-blinded by the peer, and compare it with the peer's.

    ``both`` mode: keeps the intersection in the shared order and replies with its size.
    ``labelled`` mode (brand only): keeps the match flags in the media's PSI order and
    replies with nothing.
    """
    blinding = party.phase("psi.blinding")
    if _labelled_media(party, blinding):
        raise ProtocolError("in labelled mode only the brand matches")
    peer = MEDIA if party.role == BRAND else BRAND
    opened = party.channel.open(peer, SEAL_LABEL, msg["sealed"])
    if not isinstance(opened, bytes) or len(opened) % POINT_BYTES:
        raise ProtocolError("double-blinded IDs are not a whole number of points")
    returned = check_points(np.frombuffer(opened, dtype=np.uint8).reshape(-1, POINT_BYTES),
                            "own double-blinded IDs", expected=len(blinding.order))
    own_double = np.empty_like(returned)
    own_double[blinding.order] = returned  # undo this party's shuffle: row i is own ID i again
    if not distinct(own_double):
        raise ProtocolError("the peer returned repeated double-blinded values")
    own_index, peer_index = intersect(own_double, blinding.peer_double)
    # The shared order is that of the normalised IDs, which both parties hold alike for every
    # match: the same files for the same inputs, run after run (the double-blinded values
    # change with every run's keys), and no party's own row order shown to the other.
    shared = pc.array_sort_indices(blinding.normalised.take(pa.array(own_index, type=pa.int64()))).to_numpy()
    own_index, peer_index = own_index[shared], peer_index[shared]
    matched = len(own_index)
    if matched < blinding.min_intersection:
        _too_few(blinding, matched)
    if blinding.mode == "both":
        result = Matched(ids=_take(blinding.ids, own_index), rows=blinding.rows[own_index],
                         size=len(own_double), peer_size=blinding.peer_size)
        _write_outputs(party, blinding, {"intersection": matched},
                       {"intersection.csv": pd.DataFrame({blinding.column: result.ids})})
        reply = Message(matched=size(matched))
    else:
        flags = np.zeros(blinding.peer_size, dtype=bool)
        flags[peer_index] = True
        brand_rows = np.full(blinding.peer_size, -1, dtype=np.int64)
        brand_rows[peer_index] = blinding.rows[own_index]
        result = BrandFlags(flags=flags, brand_rows=brand_rows, matched=matched, size=len(own_double),
                            peer_size=blinding.peer_size)
        ids = np.full(blinding.peer_size, "", dtype=object)
        ids[peer_index] = _take(blinding.ids, own_index)
        _write_outputs(party, blinding, {"matched": matched},
                       {"match_flags.csv": pd.DataFrame({"matched": flags.astype(int), blinding.column: ids})})
        reply = Message()
    party.state["psi"] = result
    del party.state["psi.blinding"]
    return reply


def _too_few(blinding, matched):
    """Stop: fewer matches than the minimum. The error says what to change; the count, where it may."""
    named = argument(blinding.minimum_named, blinding.min_intersection)
    advice = f"lower {argument(blinding.minimum_named).rstrip('=')} or check that both files hold the same kind of ID"
    if blinding.mode == "both":
        raise OptionsError(f"only {matched} IDs matched; at least {blinding.min_intersection} are needed ({named}): "
                         f"{advice}")
    # In labelled mode the count is the brand's alone: the error crosses to the coordinator without it, and
    # the brand's own log (its console, when every party runs here) says it.
    _LOG.warning("psi: %d of the media's IDs are the brand's; %s asks for at least %d", matched, named,
                 blinding.min_intersection)
    raise OptionsError(f"fewer IDs matched than the minimum of {blinding.min_intersection} ({named}); the brand's "
                     f"log says how many: {advice}")


def _take(ids, index):
    """The IDs at ``index`` of a party's pyarrow ID column, as a numpy array of str."""
    return ids.take(pa.array(index, type=pa.int64())).to_numpy(zero_copy_only=False)


def _write_outputs(party, blinding, result, tables=None):
    """Write this party's result files into its own output folder, when the job asks."""
    if not blinding.write_output:
        return
    for name, table in (tables or {}).items():
        table.to_csv(party.out / name, index=False)
    report = {"ids": blinding.report, "peer_set_size": blinding.peer_size, "x25519_engine": default_engine().detail,
              **result}
    if fallback_reason() is not None:  # the one-point-at-a-time engine, several times slower: say why
        report["x25519_fallback_reason"] = fallback_reason()
    (party.out / "psi_report.json").write_text(json.dumps(report, indent=2) + "\n")
