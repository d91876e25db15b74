"""Vertical segmentation, a party's side: ``protocols/segment_vertical.md``, step for step.

Both parties run these steps; which one a party plays in a round (key owner or masker)
alternates, starting with the media as owner:

1. ``segment.encrypt_distances`` (owner): its partial distances, CKKS-encrypted under
   its own key, one encrypted column per cluster and running restart.
2. ``segment.mask_distances`` (masker): adds its own partial distances, multiplies
   each user's row by a random positive scale, adds a random offset and permutes the
   ``k`` columns with a random per-user permutation, all under encryption.
3. ``segment.argmin`` (owner): decrypts, takes each row's argmin (a position in the
   masker's permutation, meaningless without it) and seals it to the masker.
4. The masker opens the positions and undoes its permutation: that is the assignment.
   It moves its centroid slice and starts the next round as owner
   (``segment.encrypt_distances`` again), sending the assignment sealed to the peer.

Each party's part of the inertia and of the centroid shift travels sealed to the peer,
never to the coordinator: both parties run the same :func:`_decide` on the same joint
values, so they agree, without a further message, on which restarts have converged,
which are dropped and when to stop. Everything a party sends is a ciphertext (CKKS, or
sealed on ``party.channel``), a public context, a size or the masker's ``stop``.

The key owner decides what it decrypts (:func:`_masked_columns`): once per round in
which it encrypted its distances, exactly the columns of the restarts it itself counts
as running, each of ``n`` values and one plaintext multiplication deep, none of them a
ciphertext it sent or, once decrypted, its own partial distances.

The kernels :func:`partial_distances`, :func:`mask_columns`, :func:`decrypt_masked` and
:func:`unpermute` also run the one round of assigning new users to a trained model
(:mod:`fedscore.protocols.segment_assign`).
"""

import hashlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ...errors import ProtocolError
from ...he import create_context, load_context
from ...he.random import gaussian, uniform
from ...kit.encoder import FeatureEncoder
from ...kit.inputs import read_inputs
from ...kit.model import ModelFile
from ...wire import Message, ciphertext, control, public, size
from .options import SegmentOptions

PEER = {"brand": "media", "media": "brand"}

MASK_SCALE_OCTAVES = 16
"""Per-user scale ``a_i = 2^u``, ``u`` uniform in ``[0, MASK_SCALE_OCTAVES)``, fresh every
round. The key owner sees ``a_i`` times the gaps between a user's joint distances; from
``r`` rounds in which those gaps stay the same it can narrow ``log2`` of a gap to an
interval of expected width ``2 * MASK_SCALE_OCTAVES / (r + 1)`` octaves (the range of ``r``
uniform draws), so the range is as wide as the precision allows: with the offset below,
CKKS and double rounding err by about ``MASK_OFFSET_RANGE * 2^-52`` (``2^-16``) on a masked
value, which for ``a_i >= 1`` is a tie tolerance of about ``1.5e-5`` in squared distance,
while ``a_i * d`` stays below ``2^26`` for distances up to ``2^10``."""
MASK_OFFSET_RANGE = 2.0**36
"""Per-user offset ``o_i`` uniform in ``[0, MASK_OFFSET_RANGE)``, fresh every round: hides
the level of the smallest masked distance, so its ratio to the gaps does not reveal how
far the user is from its nearest centroid. ``2^36`` is ``2^10`` times the largest
``a_i * d`` above, so even the least of the offsets of tens of rounds dwarfs it, and far
below the ``2^59`` CKKS message space at the level the mask leaves."""

STATS_FIELDS = {"variance_sum", "features", "inertia", "shift"}
"""What a party's sealed stats hold (:func:`_own_stats`)."""

MASKED_DEPTH = 1
"""Plaintext multiplications in a masked column: the masker's scale-and-permute multipliers."""
ECHO_TOLERANCE = 1e-3
"""A decrypted column within this (times ``1 + `` the largest distance) of one of the owner's own
partial-distance columns is that column sent back: a masked value differs from it by the
offset, uniform on ``[0, 2^36)``; the CKKS error on these values is about ``1e-6``."""


@dataclass
class SegmentState:
    """A party's state through the segmentation, after ``segment.setup``."""

    options: SegmentOptions
    peer: str
    id_column: str
    ids: np.ndarray
    """This party's spelling of the shared users' IDs, in PSI's shared order."""
    features: np.ndarray
    """Its encoded features of those users, ``(n, d)``."""
    encoder: FeatureEncoder
    """Fitted on the shared users' rows."""
    he_key: object
    """Its own CKKS key pair: the peer encrypts nothing under it, it decrypts only masked values."""
    peer_he: object = None
    """The peer's public CKKS context (``segment.keys``)."""
    init_rows: np.ndarray = None
    """``(n_init, k)`` row positions of every restart's initial centroids (public)."""
    centers: np.ndarray = None
    """This party's slice of every restart's centroids, ``(n_init, k, d)``."""
    previous: np.ndarray = None
    """The slices before the latest update: a restart that settles goes back to them."""
    running: list = None
    """Restarts still iterated, in message order."""
    candidates: set = None
    """Restarts still in contention (running or settled)."""
    settled: dict = field(default_factory=dict)
    """Restart -> (iterations, converged) once it stops moving."""
    inertia: np.ndarray = None
    """Joint inertia of each restart's latest assignment."""
    labels: np.ndarray = None
    """``(n_init, n)``: each restart's latest assignment."""
    updates: int = 0
    distances: dict = None
    """Restart -> this party's partial distances ``(n, k)`` to its current slice."""
    own_stats: dict = None
    """This party's latest stats, as sealed to the peer."""
    perms: np.ndarray = None
    """The masker's permutations of the round, ``(running, n, k)``."""
    sent: set = field(default_factory=set)
    """Digests of every distance column this party encrypted in the run (refused if sent back)."""
    awaiting: bool = False
    """This party encrypted its distances for the round and has not decrypted the masked ones yet."""
    profile: tuple = None
    """(segment sizes, this party's profile means) of the kept restart."""


# --- 1. segment.setup -------------------------------------------------------------------------

def setup(party, msg):
    """Read and validate this party's table; encode its features on the shared users; make its CKKS key.

    Features are fitted on the shared users' rows (one-hot for text columns) so that
    each party's columns weigh in the joint distance as in a centralised KMeans on the
    same standardised table.
    """
    options = SegmentOptions.from_dict(msg["options"])
    matched = party.phase("psi")
    inputs = read_inputs(options, party.role, party.config)
    encoder = options.encoder(inputs.table.path).fit(inputs.table, inputs.feature_columns, rows=matched.rows)
    features = encoder.transform(inputs.table, rows=matched.rows)
    he_key = create_context("ckks")
    party.state["segment"] = SegmentState(
        options=options, peer=PEER[party.role], id_column=inputs.id_column, ids=np.asarray(matched.ids),
        features=features, encoder=encoder, he_key=he_key)
    return Message(rows=size(len(features)), features=size(features.shape[1]),
                   he_context=public(he_key.public_context().to_bytes()))


# --- 2. segment.keys --------------------------------------------------------------------------

def keys(party, msg):
    """Store the peer's public context and this party's slices of every restart's initial centroids."""
    state = party.phase("segment")
    state.peer_he = load_context(msg["he_context"])
    init_rows = np.asarray(msg["init_rows"], dtype=np.int64)
    n, k = len(state.features), state.options.k
    if init_rows.shape != (state.options.n_init, k) or init_rows.min() < 0 or init_rows.max() >= n:
        raise ProtocolError(f"initial rows of shape {init_rows.shape} do not fit {state.options.n_init} restarts "
                            f"of {k} of the {n} shared users")
    n_init = len(init_rows)
    state.init_rows = init_rows
    state.centers = state.features[init_rows]  # (restarts, k, own features)
    state.running = list(range(n_init))
    state.candidates = set(range(n_init))
    state.inertia = np.full(n_init, np.inf)
    state.labels = np.zeros((n_init, n), dtype=np.int64)
    return Message()


# --- 3. segment.encrypt_distances (key owner) ------------------------------------------------

def encrypt_distances(party, msg):
    """Key owner: (finish the previous round, then) encrypt own partial distances.

    With ``positions`` (sealed argmin positions from the previous round, where this
    party was the masker), undo the permutation to get the assignment, record this
    party's part of its inertia, move its centroid slice and send the assignment and
    its stats (inertia and shift) sealed to the peer.
    """
    state = party.phase("segment")
    inertia = shift = None
    reply = {}
    if "positions" in msg:
        labels = _unpermute(party, state, msg["positions"])
        inertia, shift = _advance(state, labels)
        reply["labels"] = ciphertext(party.channel.seal(state.peer, "segment.labels", labels))
    reply["stats"] = ciphertext(party.channel.seal(state.peer, "segment.stats.owner",
                                                   _own_stats(state, inertia, shift)))
    own = partial_distances(state.features, state.centers[state.running])
    state.distances = dict(zip(state.running, own))
    groups, _, k = own.shape
    columns = [state.he_key.encrypt(own[g, :, j]).to_bytes() for g in range(groups) for j in range(k)]
    state.sent.update(digest(c) for c in columns)
    state.awaiting = True
    reply["distances"] = ciphertext(columns)
    return Message(**reply)


# --- 4. segment.mask_distances (masker) ------------------------------------------------------

def mask_distances(party, msg):
    """Masker: decide which restarts go on; add own partial distances, scale, offset, permute.

    With ``labels`` (the assignment of the previous round), the masker moves its slice
    and, with the owner's sealed stats, decides as :func:`_decide` does. If no restart
    goes on it replies ``stop`` (control) and its own stats, and masks nothing.
    Otherwise, for user ``i`` and masked column ``j`` of each running restart the
    result encrypts ``a_i * d[i, perm_i[j]] + o_i``, with ``a_i > 0``, ``o_i >= 0`` and
    ``perm_i`` fresh for each user, round and restart, drawn from the operating
    system's CSPRNG. The permutation is applied by plaintext 0/``a_i`` multipliers
    (``k^2`` products per restart), so no rotation key is needed.
    """
    state = party.phase("segment")
    inertia = shift = None
    if "labels" in msg:  # sealed before the stats: opened first
        labels = _checked_labels(state, party.channel.open(state.peer, "segment.labels", msg["labels"]))
        inertia, shift = _advance(state, labels)
    peer_stats = _open_stats(party, state, "segment.stats.owner", msg["stats"])
    own_stats = _own_stats(state, inertia, shift)
    reply = {"stats": ciphertext(party.channel.seal(state.peer, "segment.stats.masker", own_stats))}
    columns = msg["distances"]
    k = state.options.k
    if inertia is not None:
        was_running = list(state.running)
        if len(columns) != len(was_running) * k:
            raise ProtocolError(f"expected {len(was_running) * k} encrypted distance columns, got {len(columns)}")
        _decide(state, own_stats, peer_stats)
        if not state.running:
            return Message(stop=control(_stop_reason(state)), **reply)
        columns = [columns[i * k + j] for i, g in enumerate(was_running) if g in state.running for j in range(k)]
    own = partial_distances(state.features, state.centers[state.running])
    state.distances = dict(zip(state.running, own))
    groups = len(own)
    if len(columns) != groups * k:
        raise ProtocolError(f"expected {groups * k} encrypted distance columns, got {len(columns)}")
    masked, state.perms = mask_columns(state.peer_he, columns, own, f"the {state.peer}'s distance column")
    reply["distances"] = ciphertext(masked)
    return Message(**reply)


def mask_columns(context, blobs, own, what):
    """The masker's kernel: add its partial distances to the owner's, then scale, offset and permute each row.

    Parameters
    ----------
    context : the owner's public CKKS context
    blobs : list of bytes
        The owner's encrypted partial distances, ``groups x k`` columns of ``n`` users.
    own : numpy.ndarray, shape (groups, n, k)
        The masker's partial distances.
    what : str
        Names a column in errors.

    Returns
    -------
    (list of bytes, numpy.ndarray)
        The masked columns (``[[a_i * d[i, perm_i[j]] + o_i]]``) and the permutations,
        ``(groups, n, k)``, that :func:`unpermute` reads the owner's argmin through.
    """
    groups, n, k = own.shape
    columns = [_loaded(context, b, n, 0, what) for b in blobs]
    scale = np.exp2(MASK_SCALE_OCTAVES * uniform(groups * n)).reshape(groups, n)
    offset = MASK_OFFSET_RANGE * uniform(groups * n).reshape(groups, n)
    perms = np.argsort(uniform(groups * n * k).reshape(groups, n, k), axis=2)
    masked = []
    for g in range(groups):
        joint = [columns[g * k + l] + own[g, :, l] for l in range(k)]
        for j in range(k):
            total = None
            for l in range(k):
                picks = perms[g, :, j] == l
                if not picks.any():
                    continue
                term = joint[l] * np.where(picks, scale[g], 0.0)
                total = term if total is None else total + term
            masked.append((total + offset[g]).to_bytes())
    return masked, perms


# --- 5. segment.argmin (key owner) -----------------------------------------------------------

def argmin(party, msg):
    """Key owner: decide as the masker did; decrypt the masked rows; seal each argmin position.

    Notes
    -----
    The decryption stays with the key owner; only the argmin position leaves, sealed
    to the masker, and it is a random position unless read with the masker's
    permutation. It depends on the CKKS error only when two masked values of a row are
    within that error of each other (a tie, resolved either way).
    """
    state = party.phase("segment")
    if not state.awaiting:
        raise ProtocolError("masked distances to decrypt, but this party encrypted none for this round: refused")
    state.awaiting = False
    peer_stats = _open_stats(party, state, "segment.stats.masker", msg["stats"])
    if peer_stats["inertia"] is not None:
        _decide(state, state.own_stats, peer_stats)
    values = _masked_columns(state, msg["distances"])
    positions = np.argmin(values, axis=1).astype(np.int16)  # (groups, n)
    return Message(positions=ciphertext(party.channel.seal(state.peer, "segment.positions", positions)))


def _masked_columns(state, blobs):
    """Decrypt the masker's columns, ``(groups, k, n)``, if they are what this round's masking makes.

    Checked before decrypting: ``groups x k`` columns, ``groups`` the restarts this party
    itself counts as running; each a packed vector of the ``n`` shared users, one
    plaintext multiplication deep; none a ciphertext this party sent. After: no column
    is one of this party's own partial-distance columns (sent back re-encrypted).

    Raises
    ------
    ProtocolError
        Naming what is wrong; nothing is decrypted when the count or a shape is.
    """
    return decrypt_masked(state.he_key, blobs, [state.distances[g] for g in state.running], sent=state.sent,
                          peer=state.peer, groups_are="running restarts")


def decrypt_masked(key, blobs, own, *, sent, peer, groups_are):
    """The key owner's kernel: check the masker's columns, decrypt them, check them again.

    ``own`` holds this party's partial distances ``(n, k)`` of each group (restart) it
    encrypted, ``sent`` the digests of every column it encrypted in the run; ``groups_are``
    names the groups in errors. Returns the decrypted values, ``(groups, k, n)``; the
    checks are :func:`_masked_columns`'s.
    """
    groups = len(own)
    n, k = own[0].shape if groups else (0, 0)
    if not groups or len(blobs) != groups * k:
        raise ProtocolError(f"expected {groups * k} masked distance columns ({groups} {groups_are} x k = {k}), "
                            f"got {len(blobs)}: refused")
    if any(digest(b) in sent for b in blobs):
        raise ProtocolError(f"the {peer} sent back distance columns this party encrypted: refused")
    vectors = [_loaded(key, b, n, MASKED_DEPTH, "a masked distance column") for b in blobs]
    values = np.stack([key.decrypt(v) for v in vectors]).reshape(groups, k, n)
    for i, distances in enumerate(own):  # (n, k)
        tolerance = ECHO_TOLERANCE * (1.0 + np.abs(distances).max(initial=0.0))
        echoed = np.abs(values[i][:, None, :] - distances.T[None, :, :]).max(axis=2) <= tolerance
        if echoed.any():
            raise ProtocolError(f"the {peer} sent this party's own partial distances back to be decrypted: "
                                "refused")
    return values


def _loaded(context, blob, n, depth, what):
    """A column loaded under ``context``: refused unless ``n`` values, packed, ``depth`` multiplications deep."""
    vector = context.load_vector(blob)
    if vector.size != n or vector.layout != "packed" or vector.depth != depth:
        raise ProtocolError(f"{what} holds {vector.size} values ({vector.layout}, {vector.depth} multiplications), "
                            f"not the {n} shared users' ({depth} multiplications): refused")
    return vector


def digest(blob):
    """A ciphertext's digest, to know it again."""
    return hashlib.blake2b(blob, digest_size=16).digest()


# --- 6. segment.profile ----------------------------------------------------------------------

def profile(party, msg):
    """Write this party's segments and model file; release its profiles of segments large enough.

    The last round's owner first applies the masker's final stats (``stats``), reaching
    the same stopping decision. Both then keep the restart of least joint inertia. The
    released profile holds, for each segment of at least ``min_segment_size`` users,
    the mean of each of this party's features in its own units (the share of each
    category for text columns), optionally with Gaussian noise of ``profile_noise``
    standard deviations of that feature. It is sealed to the peer.
    """
    state = party.phase("segment")
    if "stats" in msg:
        _decide(state, state.own_stats, _open_stats(party, state, "segment.stats.masker", msg["stats"]))
    if state.running:
        raise ProtocolError("asked for profiles while restarts are still running")
    kept = _kept(state)
    n_iter, converged = state.settled[kept]
    labels, centers = state.labels[kept], state.centers[kept]
    k = len(centers)
    names = [f"{party.role}.{name}" for name in state.encoder.feature_names_]
    pd.DataFrame({state.id_column: state.ids, "segment": labels}).to_csv(party.out / "segments.csv", index=False)
    own_centers = pd.DataFrame(centers, columns=names)
    own_centers.insert(0, "segment", np.arange(k))
    own_centers.to_csv(party.out / "centers.csv", index=False)
    training = {"restart": int(kept), "init_rows": [int(r) for r in state.init_rows[kept]], "n_iter": int(n_iter),
                "converged": bool(converged), "inertia": float(state.inertia[kept]), "k": k,
                "shared_users": len(state.ids), "run_id": party.run_id}  # both halves: the model's identity
    ModelFile(kind="segment", party=party.role, encoder=state.encoder, centers=centers,
              training=training).save(party.out / "model.json")

    sizes = np.bincount(labels, minlength=k)
    means = _profile_means(state.features, labels, k, state.encoder)
    state.profile = (sizes, means)
    released = sizes >= state.options.min_segment_size
    shown = means[released]
    if state.options.profile_noise > 0 and shown.size:
        stds = _feature_stds(state.features, state.encoder)
        shown = shown + state.options.profile_noise * stds * gaussian(shown.size).reshape(shown.shape)
    payload = {"role": party.role, "segments": [int(s) for s in np.flatnonzero(released)], "columns": names,
               "means": shown.tolist()}
    return Message(profile=ciphertext(party.channel.seal(state.peer, "segment.profile", payload)),
                   released=size(int(released.sum())))


# --- 7. segment.write_profiles ---------------------------------------------------------------

def write_profiles(party, msg):
    """Write ``profiles.csv``: own profile for every segment, the peer's where released."""
    state = party.phase("segment")
    sizes, means = state.profile
    k = len(sizes)
    own = pd.DataFrame(means, columns=[f"{party.role}.{n}" for n in state.encoder.feature_names_])
    peer = party.channel.open(state.peer, "segment.profile", msg["profile"])
    if (not isinstance(peer, dict) or peer.get("role") != state.peer
            or not {"segments", "columns", "means"} <= set(peer)):
        raise ProtocolError(f"the {state.peer}'s profile is malformed")
    released = np.asarray(peer["segments"], dtype=np.int64)
    if released.size and (released.min() < 0 or released.max() >= k):
        raise ProtocolError(f"the {state.peer}'s profile names segments out of range")
    theirs = pd.DataFrame(np.full((k, len(peer["columns"])), np.nan), columns=peer["columns"])
    if released.size:
        theirs.iloc[released] = np.asarray(peer["means"], dtype=float)
    head = pd.DataFrame({"segment": np.arange(k), "size": sizes, "released": np.isin(np.arange(k), released)})
    blocks = {party.role: own, state.peer: theirs}
    pd.concat([head, blocks["brand"], blocks["media"]], axis=1).to_csv(party.out / "profiles.csv", index=False)
    return Message()


# --- plaintext work on this party's own data ---------------------------------------------------

def partial_distances(features, centers):
    """Squared distances over this party's columns: ``(groups, users, k)``."""
    squared = np.einsum("nd,nd->n", features, features)
    cross = np.einsum("nd,gkd->gnk", features, centers)
    center_sq = np.einsum("gkd,gkd->gk", centers, centers)
    return np.maximum(squared[None, :, None] - 2 * cross + center_sq[:, None, :], 0.0)


def _advance(state, labels):
    """One Lloyd update of every running restart from its assignment ``labels``.

    Records this party's part of the inertia of ``labels`` on the current slice, keeps
    the slice as ``previous`` (a restart that settles goes back to it, the slice its
    assignment was made with), and moves the slice to the means; an empty cluster keeps
    its centroid. Returns this party's inertia and squared shift per running restart:
    the two numbers per restart that go, sealed, to the peer.
    """
    n, k = labels.shape[1], state.options.k
    rows = np.arange(n)
    features = state.features
    state.previous = state.centers.copy()
    inertia, shift = [], []
    for i, g in enumerate(state.running):
        inertia.append(float(state.distances[g][rows, labels[i]].sum()))
        counts = np.bincount(labels[i], minlength=k)
        sums = np.zeros((k, features.shape[1]))
        np.add.at(sums, labels[i], features)
        filled = counts > 0
        moved = state.centers[g].copy()
        moved[filled] = sums[filled] / counts[filled, None]
        shift.append(float(((moved - state.centers[g]) ** 2).sum()))
        state.centers[g] = moved
        state.labels[g] = labels[i]
    state.updates += 1
    return inertia, shift


def _own_stats(state, inertia, shift):
    """This party's sealed stats for the peer (kept for its own decision too).

    ``variance_sum`` and ``features`` give the peer scikit-learn's tolerance
    (``tol`` times the mean variance of the joint features); ``inertia`` and ``shift``
    are this party's parts, per running restart, of the latest update.
    """
    stats = {"variance_sum": float(state.features.var(axis=0).sum()), "features": int(state.features.shape[1]),
             "inertia": inertia, "shift": shift}
    state.own_stats = stats
    return stats


def _open_stats(party, state, label, sealed):
    """The peer's stats, refused unless they cover exactly the running restarts."""
    stats = party.channel.open(state.peer, label, sealed)
    if not isinstance(stats, dict) or not STATS_FIELDS <= set(stats):
        raise ProtocolError(f"the {state.peer}'s stats are malformed")
    if stats["inertia"] is not None and not (len(stats["inertia"]) == len(stats["shift"]) == len(state.running)):
        raise ProtocolError(f"the {state.peer}'s stats cover {len(stats['inertia'])} restarts, "
                            f"not the {len(state.running)} running")
    return stats


def _decide(state, own, peer):
    """Settle, drop or continue each running restart, from the joint inertia and shift.

    Both parties call this with the same two stats (their own and the peer's), so they
    reach the same decision without telling each other or the coordinator. A restart
    whose joint squared shift is at most ``tol`` times the mean feature variance, or
    that has had ``max_iter`` updates, *settles*: it goes back to the slice its last
    assignment was made with (that assignment is then exactly its nearest-centroid
    assignment) and is no longer masked. A running restart whose assignment (up to the
    cluster numbering) equals that of another candidate is dropped: from there on it
    would show the key owner the same distances again. After ``restart_iter`` updates
    only the candidate of least joint inertia stays in contention.
    """
    options, updates = state.options, state.updates
    tol = options.tol * (own["variance_sum"] + peer["variance_sum"]) / (own["features"] + peer["features"])
    running = []
    for i, g in enumerate(state.running):
        state.inertia[g] = own["inertia"][i] + peer["inertia"][i]
        shift = own["shift"][i] + peer["shift"][i]
        if shift <= tol or updates > options.max_iter:
            state.centers[g] = state.previous[g]
            state.settled[g] = (min(updates, options.max_iter), shift <= tol)
        else:
            running.append(g)
    seen = {_partition(state.labels[g]) for g in sorted(state.candidates) if g not in running}
    for g in running:  # a restart whose assignment another one already made would repeat its rounds
        partition = _partition(state.labels[g])
        if partition in seen:
            state.candidates.discard(g)
        seen.add(partition)
    if updates == options.restart_iter and len(state.candidates) > 1:
        state.candidates = {_kept(state)}
    state.running = [g for g in running if g in state.candidates]


def _kept(state):
    """The candidate of least joint inertia (the lowest index among equals)."""
    return min(state.candidates, key=lambda g: (state.inertia[g], g))


def _partition(labels):
    """An assignment up to the numbering of its clusters (renumbered by first appearance)."""
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    return np.argsort(np.argsort(first))[inverse].tobytes()


def _stop_reason(state):
    """The one control value the coordinator hears: whether the kept restart converged."""
    return "converged" if state.settled[_kept(state)][1] else "max_iter"


def _checked_labels(state, labels):
    """The peer's assignment, refused unless it has one segment in range per user and restart."""
    groups, n, k = len(state.running), len(state.features), state.options.k
    labels = np.asarray(labels)
    if labels.shape != (groups, n) or labels.dtype.kind not in "iu" or labels.min() < 0 or labels.max() >= k:
        raise ProtocolError(f"the {state.peer}'s assignment is malformed (shape {labels.shape})")
    return labels.astype(np.int64)


def _unpermute(party, state, sealed_positions):
    """The assignment: the owner's argmin positions read through this party's permutations."""
    return unpermute(state.perms, party.channel.open(state.peer, "segment.positions", sealed_positions))


def unpermute(perms, positions):
    """The masker's kernel: the owner's argmin positions ``(groups, n)`` read through its permutations."""
    positions = np.asarray(positions, dtype=np.int64)
    if positions.shape != perms.shape[:2]:
        raise ProtocolError(f"argmin positions of shape {positions.shape} do not match {perms.shape[:2]}")
    if positions.min() < 0 or positions.max() >= perms.shape[2]:
        raise ProtocolError("argmin position out of range")
    return np.take_along_axis(perms, positions[..., None], axis=2)[..., 0]


def _profile_means(features, labels, k, encoder):
    """Per-segment means in the feature's own units (shares for one-hot columns)."""
    counts = np.bincount(labels, minlength=k)
    sums = np.zeros((k, features.shape[1]))
    np.add.at(sums, labels, features)
    means = sums / np.maximum(counts, 1)[:, None]
    means[counts == 0] = np.nan
    for j, name in enumerate(encoder.feature_names_):
        if name in encoder.means_:
            means[:, j] = means[:, j] * encoder.scales_[name] + encoder.means_[name]
    return means


def _feature_stds(features, encoder):
    """Standard deviation of each feature in its own units (for profile noise)."""
    stds = features.std(axis=0)
    for j, name in enumerate(encoder.feature_names_):
        if name in encoder.scales_:
            stds[j] = encoder.scales_[name]
    return stds
