"""Assigning new users to a trained vertical segmentation, a party's side: ``protocols/segment_vertical.md``.

Section *Assigning new users with a trained model*, step for step. Each party holds only
its own half of the model (:data:`~fedscore.protocols.segment_assign.options.MODEL_KEY`
in its config): the encoder of its columns and its slice of the kept centroids. Nothing
is trained; one round of the training's private assignment runs, with its kernels
(:mod:`fedscore.protocols.segment.party`):

1. ``segment_assign.setup`` (both): load and check the own half, encode the shared rows
   with its saved encoder (and saved limits), seal the half's model id to the peer.
2. ``segment_assign.encrypt_distances`` (key owner, the media): check the peer's model
   id; encrypt its partial distances to its slice, one column per segment.
3. ``segment_assign.mask_distances`` (masker, the brand): check the peer's model id; add
   its own partial distances, scale, offset and permute each row
   (:func:`~fedscore.protocols.segment.party.mask_columns`).
4. ``segment_assign.argmin`` (key owner): check and decrypt the masked columns
   (:func:`~fedscore.protocols.segment.party.decrypt_masked`), seal each row's argmin
   position to the masker.
5. ``segment_assign.unmask`` (masker): read the positions through its permutations
   (:func:`~fedscore.protocols.segment.party.unpermute`): the segments; write them, seal
   them to the owner.
6. ``segment_assign.write_segments`` (key owner): write them.
"""

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ...errors import ProtocolError
from ...he import create_context, load_context
from ...kit import halves
from ...kit.halves import PEER, TrainedBy
from ...kit.model import ModelFile
from ...wire import Message, ciphertext, public, size
from ..segment.party import decrypt_masked, digest, mask_columns, partial_distances, unpermute
from .options import SegmentAssignOptions

MODEL_STEP = "segment_assign.model"
"""The channel label of the model id each party seals for the other."""

MODEL_ID_FIELDS = ("run_id", "k", "shared_users", "restart", "init_rows", "n_iter", "converged", "inertia")
"""What both halves of one trained model record alike (``training`` in their model files):
the run that trained them and the public shape of the result. Their digest is the model id."""


@dataclass
class AssignState:
    """A party's state through the assignment, after ``segment_assign.setup``."""

    options: SegmentAssignOptions
    peer: str
    id_column: str
    ids: np.ndarray
    """This party's spelling of the shared users' IDs, in PSI's shared order."""
    model: ModelFile
    """This party's half: its encoder and its slice of the centroids."""
    model_id: str
    distances: np.ndarray
    """This party's partial squared distances ``(n, k)`` of the shared users to its slice."""
    unseen_rows: int
    """Shared users with a text value the model never saw (encoded as the ``unseen`` option says)."""
    he_key: object = None
    """Key owner: its CKKS key for the round."""
    sent: set = None
    """Key owner: digests of the columns it encrypted (refused if sent back)."""
    perms: np.ndarray = None
    """Masker: its permutations of the round, ``(1, n, k)``."""
    done: set = None
    """The round's steps this party ran: each runs once, so the owner sees each user's masked row once."""


# --- the model half, a party's own setting ------------------------------------------------------

TRAINED_BY = TrainedBy("segment", "fedscore segment", MODEL_ID_FIELDS)


def model_id(model):
    """The digest both halves of one trained model share (:data:`MODEL_ID_FIELDS` and ``k``), as hex text."""
    return halves.model_id(model, TRAINED_BY, k=len(model.centers))


def check_inputs(options, role, config, rows=None):
    """:func:`fedscore.kit.halves.checked_half` for this job's halves."""
    return halves.checked_half(options, role, config, TRAINED_BY, rows)


# --- 1. segment_assign.setup -------------------------------------------------------------------

def setup(party, msg):
    """Load this party's half; encode the shared users with its saved encoder; seal its model id to the peer.

    The encoder is the training's, with its saved statistics and limits: a numeric value
    is winsorised to the saved bounds and standardised with the saved mean and scale; a
    text value outside the saved categories is ``<other>`` in a column that has one,
    else refused or encoded with none of the column's values set, as ``unseen`` says.
    """
    options = SegmentAssignOptions.from_dict(msg["options"])
    matched = party.phase("psi")
    inputs, model, features = check_inputs(options, party.role, party.config, rows=matched.rows)
    state = AssignState(options=options, peer=PEER[party.role], id_column=inputs.id_column,
                        ids=np.asarray(matched.ids), model=model, model_id=model_id(model),
                        distances=partial_distances(features, model.centers[None])[0],
                        unseen_rows=_rows_with_unseen_values(model.encoder, features), done=set())
    party.state["segment_assign"] = state
    sealed = halves.seal_model_id(party, MODEL_STEP, state.model_id, k=len(model.centers))
    return Message(rows=size(len(features)), features=size(features.shape[1]), model=ciphertext(sealed))


def _once(state, step):
    """Refuse a step of the one round that this party already ran (a coordinator asking for a second round)."""
    halves.once(state.done, step, "the assignment")


def _check_peer_model(party, state, sealed):
    """Refuse a peer whose half is not of the same trained model (a different model id)."""
    halves.check_peer_model(party, MODEL_STEP, state.model_id, sealed, TRAINED_BY, k=len(state.model.centers))


# --- 2. segment_assign.encrypt_distances (key owner) -------------------------------------------

def encrypt_distances(party, msg):
    """Key owner: check the peer's model id; encrypt own partial distances under a fresh key, one column per segment."""
    state = party.phase("segment_assign")
    _once(state, "encrypt_distances")
    _check_peer_model(party, state, msg["model"])
    state.he_key = create_context("ckks")
    columns = [state.he_key.encrypt(state.distances[:, j]).to_bytes() for j in range(state.distances.shape[1])]
    state.sent = {digest(c) for c in columns}
    return Message(he_context=public(state.he_key.public_context().to_bytes()), distances=ciphertext(columns))


# --- 3. segment_assign.mask_distances (masker) -------------------------------------------------

def mask_distances(party, msg):
    """Masker: check the peer's model id; add own partial distances; scale, offset and permute each row.

    The training's masking (:func:`~fedscore.protocols.segment.party.mask_columns`): for
    user ``i`` and masked column ``j`` the result encrypts ``a_i * d[i, perm_i[j]] + o_i``,
    fresh ``a_i``, ``o_i`` and ``perm_i`` for every user, from the OS's CSPRNG.
    """
    state = party.phase("segment_assign")
    _once(state, "mask_distances")
    _check_peer_model(party, state, msg["model"])
    k = state.distances.shape[1]
    if len(msg["distances"]) != k:
        raise ProtocolError(f"expected {k} encrypted distance columns, got {len(msg['distances'])}")
    masked, state.perms = mask_columns(load_context(msg["he_context"]), msg["distances"], state.distances[None],
                                       f"the {state.peer}'s distance column")
    return Message(distances=ciphertext(masked))


# --- 4. segment_assign.argmin (key owner) ------------------------------------------------------

def argmin(party, msg):
    """Key owner: check and decrypt the masked columns (once); seal each row's argmin position to the masker."""
    state = party.phase("segment_assign")
    _once(state, "argmin")
    if state.he_key is None or state.sent is None:
        raise ProtocolError("masked distances to decrypt, but this party encrypted none: refused")
    key, state.he_key = state.he_key, None  # one decryption per run
    values = decrypt_masked(key, msg["distances"], [state.distances], sent=state.sent, peer=state.peer,
                            groups_are="model")
    positions = np.argmin(values, axis=1).astype(np.int16)  # (1, n)
    return Message(positions=ciphertext(party.channel.seal(state.peer, "segment_assign.positions", positions)))


# --- 5. segment_assign.unmask (masker) ---------------------------------------------------------

def unmask(party, msg):
    """Masker: the segments are the owner's positions read through its permutations; write them, seal them."""
    state = party.phase("segment_assign")
    _once(state, "unmask")
    if state.perms is None:
        raise ProtocolError("argmin positions, but this party masked nothing: refused")
    positions = party.channel.open(state.peer, "segment_assign.positions", msg["positions"])
    segments = unpermute(state.perms, positions)[0]
    state.perms = None
    _write(party, state, segments)
    return Message(segments=ciphertext(party.channel.seal(state.peer, "segment_assign.segments", segments)))


# --- 6. segment_assign.write_segments (key owner) ----------------------------------------------

def write_segments(party, msg):
    """Key owner: write the segments the masker sealed, refused unless one in range per shared user."""
    state = party.phase("segment_assign")
    _once(state, "write_segments")
    segments = np.asarray(party.channel.open(state.peer, "segment_assign.segments", msg["segments"]))
    n, k = state.distances.shape
    if segments.shape != (n,) or segments.dtype.kind not in "iu" or segments.min() < 0 or segments.max() >= k:
        raise ProtocolError(f"the {state.peer}'s segments are malformed (shape {segments.shape})")
    _write(party, state, segments.astype(np.int64))
    return Message()


def _write(party, state, segments):
    """``segments.csv`` (this party's IDs, segment) and ``report.json`` (sizes, model id), in its own folder."""
    pd.DataFrame({state.id_column: state.ids, "segment": segments}).to_csv(party.out / "segments.csv", index=False)
    k = state.distances.shape[1]
    training = state.model.training
    report = {"job": "segment_assign", "role": party.role, "model_id": state.model_id,
              "trained_run_id": training.get("run_id"), "k": k, "features": len(state.model.encoder.feature_names_),
              "assigned_users": len(segments), "segment_sizes": np.bincount(segments, minlength=k).tolist(),
              "unseen": state.options.local("unseen", party.config), "rows_with_unseen_values": state.unseen_rows}
    (party.out / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


def _rows_with_unseen_values(encoder, features):
    """Rows with no category set in some one-hot column: a value the model never saw (``unseen="zero"``)."""
    start, unseen = 0, np.zeros(len(features), dtype=bool)
    for column in encoder.columns_:
        width = len(encoder.categories_.get(column, [None]))
        if column in encoder.categories_:
            unseen |= features[:, start:start + width].sum(axis=1) == 0
        start += width
    return int(unseen.sum())
