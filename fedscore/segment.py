"""Vertical persona segmentation: two-party KMeans on the brand's and the media's features.

Read this module side by side with ``protocols/segment_vertical.md``: the step names,
message fields and what each party learns are the same there.

After private set intersection (both parties learn the aligned overlap), each party
keeps its own slice of every centroid (its own columns). The squared distance of user
``i`` to centroid ``j`` is the sum of the two partial distances, ``d_ij = b_ij + m_ij``.
One assignment round runs between a *key owner* and a *masker* (the roles alternate
every round so that each round needs three messages, not four):

1. ``segment.encrypt_distances`` (owner): its partial distances, CKKS-encrypted under
   its own key, one encrypted column per cluster.
2. ``segment.mask_distances`` (masker): adds its own partial distances, multiplies
   each user's row by a random positive scale, adds a random offset and permutes the
   ``k`` columns with a random per-user permutation, all under encryption.
3. ``segment.argmin`` (owner): decrypts, takes each row's argmin (a position in the
   masker's permutation, meaningless without it) and seals it to the masker.
4. The masker opens the positions, undoes its permutation: that is the assignment. It
   updates its centroid slice and starts the next round as owner
   (``segment.encrypt_distances`` again), sending the assignment sealed to the peer.

Each party's part of the inertia and of the centroid shift travels sealed to the peer,
never to the coordinator: both parties run the same :func:`_decide` on the same joint
values, so they agree, without a further message, on which restarts have converged,
which are dropped and when to stop. The coordinator only hears the masker's ``stop``
when the run is over. Everything that reaches the coordinator is a ciphertext (CKKS,
or sealed between the parties), a public key, a size or that control decision.
"""

import contextlib
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from .channel import PeerChannel, new_keypair
from .data import FeatureEncoder, as_table_file, read_table
from .errors import InputError, ProtocolError
from .he import load_context
from .he._random import gaussian, uniform
from .he.ckks import CKKSContext
from .params import MIN_SEGMENT_SIZE, PSI_MIN_INTERSECTION
from .psi import intersect
from .runtime import party_step
from .runtime.runner import run_job
from .wire import Message, ciphertext, control, decode_value, encode_value, public, size

ROLES = ("brand", "media")

DEFAULT_N_INIT = 10
"""Restarts from random shared users, run side by side and scored by their joint inertia
(scikit-learn's ``KMeans`` makes 10 restarts with random initialisation). Each restart
multiplies the size of the round messages: lower it for hundreds of thousands of users."""
DEFAULT_MAX_ITER = 100
DEFAULT_TOL = 1e-4
"""Relative tolerance on the squared centroid shift, scaled by the mean feature variance
as scikit-learn's ``KMeans`` does."""
DEFAULT_RESTART_ITER = 10
"""Lloyd iterations every restart runs before only the one of least joint inertia goes on.
Every masked round shows the key owner each user's masked distances once more per
restart (see :data:`MASK_SCALE_OCTAVES`), so restarts that cannot win should stop early.
Measured with plain Lloyd iterations, 30 draws of 10 random restarts each, on wholesale
customers (k = 3, 5), FATE vehicle (k = 4) and 3,000 rows of bank marketing (k = 4): the
restart kept after 10 iterations ends within 0.3 % (mean; 2.6 % worst) of the inertia of
the best restart run to convergence; after 5 iterations, within 1.6 % (mean)."""

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


# --------------------------------------------------------------------------------------
# Coordinator
# --------------------------------------------------------------------------------------

def run_segment(coordinator, options):
    """Coordinator job ``segment``: PSI, then private Lloyd iterations, then profiles.

    Parameters
    ----------
    coordinator : fedscore.runtime.Coordinator
    options : dict
        ``id_column``, ``k``; optional ``exclude`` (columns to leave out),
        ``n_init``, ``max_iter``, ``tol``, ``restart_iter``, ``min_segment_size``,
        ``profile_noise``, ``random_state`` and the PSI options ``id_kind`` and
        ``min_intersection`` (default :data:`~fedscore.params.PSI_MIN_INTERSECTION`
        matched users).

    Returns
    -------
    dict
        Public summary: sizes, rounds, how the parties stopped, timings. No inertia,
        shift or segment: those stay with the parties.
    """
    missing = [r for r in ROLES if r not in coordinator.roles]
    if missing:
        raise ProtocolError(f"segmentation needs the roles brand and media; missing {', '.join(missing)}")
    k = int(options["k"])
    if k < 2:
        raise InputError(f"k must be at least 2, got {k}")
    n_init = int(options.get("n_init", DEFAULT_N_INIT))
    max_iter = int(options.get("max_iter", DEFAULT_MAX_ITER))
    restart_iter = int(options.get("restart_iter", DEFAULT_RESTART_ITER))
    if n_init < 1 or max_iter < 1 or restart_iter < 1:
        raise InputError("n_init, max_iter and restart_iter must be at least 1")
    started = time.perf_counter()
    psi_summary = intersect(coordinator, mode="both", id_column=options["id_column"],
                            id_kind=options.get("id_kind", "auto"),
                            min_intersection=int(options.get("min_intersection", PSI_MIN_INTERSECTION)))

    setup = coordinator.exchange({role: ("segment.setup", Message(
        id_column=public(options["id_column"]), exclude=public(list(options.get("exclude", []))),
    )) for role in ROLES})
    rows = {role: setup[role]["rows"] for role in ROLES}
    if rows["brand"] != rows["media"]:
        raise ProtocolError(f"parties disagree on the overlap size ({rows['brand']} vs {rows['media']})")
    n = rows["brand"]
    if k > n:
        raise InputError(f"k = {k} segments asked for but only {n} users are in both files")

    seed = options.get("random_state")
    rng = np.random.default_rng(coordinator.random_seed if seed is None else seed)
    init_rows = np.stack([rng.choice(n, size=k, replace=False) for _ in range(n_init)])
    coordinator.exchange({role: ("segment.keys", Message(
        he_context=public(setup[_peer(role)]["he_context"]),
        channel_key=public(setup[_peer(role)]["channel_key"]),
        init_rows=public(init_rows),
        tol=public(float(options.get("tol", DEFAULT_TOL))),
        max_iter=public(max_iter),
        restart_iter=public(restart_iter),
    )) for role in ROLES})

    # Round r: the owner encrypts its partial distances to the centroids of round r,
    # the masker adds its own and masks, the owner finds each row's masked argmin, the
    # masker unmasks it. The masker then moves its slice and opens round r + 1 as owner.
    # Both parties decide alike, from the sealed stats, which restarts go on; the
    # masker says ``stop`` when none does, and the run moves on to the profiles.
    owner, masker = "media", "brand"
    reply = coordinator.call(owner, "segment.encrypt_distances", Message())
    rounds, round_times = 0, []
    while True:
        t0 = time.perf_counter()
        rounds += 1
        fields = {"distances": ciphertext(reply["distances"]), "stats": ciphertext(reply["stats"])}
        if _has(reply, "labels"):
            fields["labels"] = ciphertext(reply["labels"])
        masked = coordinator.call(masker, "segment.mask_distances", Message(**fields))
        if _has(masked, "stop"):
            round_times.append(time.perf_counter() - t0)
            break
        if rounds > max_iter + 1:  # round r computes update r - 1; the parties stop after update max_iter + 1
            raise ProtocolError(f"the parties did not stop within max_iter = {max_iter} iterations")
        positions = coordinator.call(owner, "segment.argmin", Message(
            distances=ciphertext(masked["distances"]), stats=ciphertext(masked["stats"])))
        reply = coordinator.call(masker, "segment.encrypt_distances", Message(
            positions=ciphertext(positions["positions"])))
        owner, masker = masker, owner
        round_times.append(time.perf_counter() - t0)

    min_size = int(options.get("min_segment_size", MIN_SEGMENT_SIZE))
    noise = float(options.get("profile_noise", 0.0))
    common = {"min_segment_size": public(min_size), "profile_noise": public(noise)}
    profiles = coordinator.exchange({
        masker: ("segment.profile", Message(**common)),
        owner: ("segment.profile", Message(stats=ciphertext(masked["stats"]), **common)),
    })
    coordinator.exchange({role: ("segment.write_profiles", Message(profile=ciphertext(profiles[_peer(role)]["profile"])))
                          for role in ROLES})
    return {
        "job": "segment",
        "psi": psi_summary,
        "rows": n,
        "k": k,
        "features": {role: setup[role]["features"] for role in ROLES},
        "n_init": n_init,
        "restart_iter": restart_iter,
        "rounds": rounds,
        "n_iter": rounds - 1,  # Lloyd iterations run (the longest restart's)
        "converged": masked["stop"] == "converged",
        "released_segments": profiles["brand"]["released"],
        "seconds": round(time.perf_counter() - started, 3),
        "seconds_per_iteration": round(float(np.mean(round_times)), 3),
    }


def _peer(role):
    return "media" if role == "brand" else "brand"


# --------------------------------------------------------------------------------------
# Party steps
# --------------------------------------------------------------------------------------

@party_step("segment.setup")
def setup(party, msg):
    """Load this party's rows of the overlap, encode its features, make its keys.

    Features are standardised on the overlap's rows (one-hot for text columns) so that
    each party's columns weigh in the joint distance as in a centralised KMeans on the
    same standardised table.
    """
    id_column = msg["id_column"]
    path = party.config["data"]
    table = read_table(path, columns=[id_column])
    exclude = set(msg["exclude"]) | {id_column}
    columns = [c for c in table.columns if c not in exclude]
    if not columns:
        raise InputError("no feature columns besides the ID", path=path)
    FeatureEncoder(path).fit_transform(table, columns)  # errors name the file's own rows
    frame = table.iloc[np.asarray(party.state["psi"]["rows"], dtype=np.int64)].reset_index(drop=True)
    encoder = FeatureEncoder(path).fit(frame, columns)
    features = encoder.transform(frame)
    he_key = CKKSContext()
    channel_secret, channel_public = new_keypair()
    party.state["segment"] = {
        "ids": np.asarray(party.state["psi"]["ids"]), "features": features, "encoder": encoder.to_dict(),
        "he_key": he_key, "channel_secret": channel_secret, "id_column": id_column,
    }
    return Message(
        rows=size(len(features)),
        features=size(features.shape[1]),
        he_context=public(he_key.public_context().to_bytes()),
        channel_key=public(channel_public),
    )


@party_step("segment.keys")
def keys(party, msg):
    """Store the peer's public keys, the stopping rules and this party's slices of every restart."""
    state = party.state["segment"]
    state["peer_he"] = load_context(msg["he_context"])
    state["peer_channel"] = msg["channel_key"]
    state["role"], state["peer"] = party.role, _peer(party.role)
    state["run_id"] = party.run_id
    init_rows = np.asarray(msg["init_rows"], dtype=np.int64)
    n_init = len(init_rows)
    state.update(
        init_rows=init_rows, tol=float(msg["tol"]), max_iter=int(msg["max_iter"]),
        restart_iter=int(msg["restart_iter"]),
        centers=state["features"][init_rows],  # (restarts, k, own features)
        running=list(range(n_init)),  # restarts still iterated, in message order
        candidates=set(range(n_init)),  # restarts still in contention (running or settled)
        settled={},  # restart -> (iterations, converged) once it stops moving
        inertia=np.full(n_init, np.inf),  # joint inertia of each restart's latest assignment
        labels=np.zeros((n_init, len(state["features"])), dtype=np.int64),
        updates=0,
    )
    return Message()


@party_step("segment.encrypt_distances")
def encrypt_distances(party, msg):
    """Key owner: (finish the previous round, then) encrypt own partial distances.

    With ``positions`` (sealed argmin positions from the previous round, where this
    party was the masker), undo the permutation to get the assignment, record this
    party's part of its inertia, move its centroid slice and send the assignment and
    its stats (inertia and shift) sealed to the peer.
    """
    state = party.state["segment"]
    inertia = shift = None
    reply = {}
    if _has(msg, "positions"):
        labels = _unpermute(state, msg["positions"])
        inertia, shift = _advance(state, labels)
        reply["labels"] = ciphertext(_seal(state, "labels", labels))
    reply["stats"] = ciphertext(_seal(state, "stats.owner", _own_stats(state, inertia, shift)))
    own = _partial_distances(state["features"], state["centers"][state["running"]])
    state["distances"] = dict(zip(state["running"], own))
    key = state["he_key"]
    groups, _, k = own.shape
    encrypted = [key.encrypt(own[g, :, j]).to_bytes() for g in range(groups) for j in range(k)]
    reply["distances"] = ciphertext(encrypted)
    return Message(**reply)


@party_step("segment.mask_distances")
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
    state = party.state["segment"]
    peer_stats = _open_stats(state, "stats.owner", msg["stats"])
    inertia = shift = None
    if _has(msg, "labels"):
        labels = _checked_labels(state, _open(state, "labels", msg["labels"]))
        inertia, shift = _advance(state, labels)
    own_stats = _own_stats(state, inertia, shift)
    reply = {"stats": ciphertext(_seal(state, "stats.masker", own_stats))}
    columns = msg["distances"]
    if inertia is not None:
        was_running = list(state["running"])
        _decide(state, own_stats, peer_stats)
        if not state["running"]:
            return Message(stop=control(_stop_reason(state)), **reply)
        k = state["centers"].shape[1]
        columns = [columns[i * k + j] for i, g in enumerate(was_running) if g in state["running"] for j in range(k)]
    own = _partial_distances(state["features"], state["centers"][state["running"]])
    state["distances"] = dict(zip(state["running"], own))
    groups, n, k = own.shape
    peer = state["peer_he"]
    if len(columns) != groups * k:
        raise ProtocolError(f"expected {groups * k} encrypted distance columns, got {len(columns)}")
    columns = [peer.load_vector(b) for b in columns]
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
    state["perms"] = perms
    reply["distances"] = ciphertext(masked)
    return Message(**reply)


@party_step("segment.argmin")
def argmin(party, msg):
    """Key owner: decide as the masker did; decrypt the masked rows; seal each argmin position.

    Notes
    -----
    The decryption stays with the key owner; only the argmin position leaves, sealed
    to the masker, and it is a random position unless read with the masker's
    permutation. It depends on the CKKS error only when two masked values of a row are
    within that error of each other (a tie, resolved either way).
    """
    state = party.state["segment"]
    peer_stats = _open_stats(state, "stats.masker", msg["stats"])
    if peer_stats.get("inertia") is not None:
        _decide(state, state["own_stats"], peer_stats)
    key = state["he_key"]
    groups, n, k = len(state["running"]), len(state["features"]), state["centers"].shape[1]
    columns = msg["distances"]
    if not groups or len(columns) != groups * k:
        raise ProtocolError(f"expected {groups * k} masked distance columns, got {len(columns)}")
    values = np.stack([key.decrypt(key.load_vector(b)) for b in columns]).reshape(groups, k, n)
    positions = np.argmin(values, axis=1).astype(np.int16)  # (groups, n)
    return Message(positions=ciphertext(_seal(state, "positions", positions)))


@party_step("segment.profile")
def profile(party, msg):
    """Write this party's segments and model; release its profiles of segments large enough.

    The last round's owner first applies the masker's final stats (``stats``), reaching
    the same stopping decision. Both then keep the restart of least joint inertia. The
    released profile holds, for each segment of at least ``min_segment_size`` users,
    the mean of each of this party's features in its own units (the share of each
    category for text columns), optionally with Gaussian noise of ``profile_noise``
    standard deviations of that feature. It is sealed to the peer.
    """
    state = party.state["segment"]
    if _has(msg, "stats"):
        _decide(state, state["own_stats"], _open_stats(state, "stats.masker", msg["stats"]))
    if state["running"]:
        raise ProtocolError("asked for profiles while restarts are still running")
    kept = min(state["candidates"], key=lambda g: (state["inertia"][g], g))
    n_iter, converged = state["settled"][kept]
    labels = state["labels"][kept]
    centers = state["centers"][kept]
    k = len(centers)
    out = Path(party.config["out"])
    pd.DataFrame({state["id_column"]: state["ids"], "segment": labels}).to_csv(out / "segments.csv", index=False)
    model = {"restart": int(kept), "init_rows": [int(r) for r in state["init_rows"][kept]], "n_iter": int(n_iter),
             "converged": bool(converged), "inertia": float(state["inertia"][kept])}
    (out / "model.json").write_text(json.dumps(model, indent=2) + "\n")
    encoder = FeatureEncoder.from_dict(state["encoder"])
    sizes = np.bincount(labels, minlength=k)
    means = _profile_means(state["features"], labels, k, encoder)
    state["profile"] = (sizes, means)
    min_size = int(msg["min_segment_size"])
    released = sizes >= max(min_size, 1)
    noise = float(msg["profile_noise"])
    shown = means[released]
    if noise > 0 and shown.size:
        stds = _feature_stds(state["features"], encoder)
        shown = shown + noise * stds * gaussian(shown.size).reshape(shown.shape)
    payload = {
        "role": party.role,
        "segments": [int(s) for s in np.flatnonzero(released)],
        "columns": [f"{party.role}.{name}" for name in encoder.feature_names_],
        "means": shown.tolist(),
    }
    state["released_by_me"] = payload["segments"]
    own_centers = pd.DataFrame(centers, columns=[f"{party.role}.{n}" for n in encoder.feature_names_])
    own_centers.insert(0, "segment", np.arange(k))
    own_centers.to_csv(out / "centers.csv", index=False)
    return Message(profile=ciphertext(_seal(state, "profile", payload)), released=size(int(released.sum())))


@party_step("segment.write_profiles")
def write_profiles(party, msg):
    """Write ``profiles.csv``: own profile for every segment, the peer's where released."""
    state = party.state["segment"]
    sizes, means = state["profile"]
    encoder = FeatureEncoder.from_dict(state["encoder"])
    own = pd.DataFrame(means, columns=[f"{party.role}.{n}" for n in encoder.feature_names_])
    peer = _open(state, "profile", msg["profile"])
    theirs = pd.DataFrame(np.full((len(sizes), len(peer["columns"])), np.nan), columns=peer["columns"])
    if peer["segments"]:
        theirs.iloc[peer["segments"]] = np.asarray(peer["means"])
    head = pd.DataFrame({"segment": np.arange(len(sizes)), "size": sizes,
                         "released": np.isin(np.arange(len(sizes)), peer["segments"])})
    blocks = {party.role: own, peer["role"]: theirs}
    table = pd.concat([head, blocks["brand"], blocks["media"]], axis=1)
    table.to_csv(Path(party.config["out"]) / "profiles.csv", index=False)
    return Message()


# --------------------------------------------------------------------------------------
# Party-side helpers: plaintext work on this party's own data only
# --------------------------------------------------------------------------------------

def _partial_distances(features, centers):
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
    running = state["running"]
    n, k = labels.shape[1], state["centers"].shape[1]
    rows = np.arange(n)
    features = state["features"]
    state["previous"] = state["centers"].copy()
    inertia, shift = [], []
    for i, g in enumerate(running):
        inertia.append(float(state["distances"][g][rows, labels[i]].sum()))
        counts = np.bincount(labels[i], minlength=k)
        sums = np.zeros((k, features.shape[1]))
        np.add.at(sums, labels[i], features)
        filled = counts > 0
        moved = state["centers"][g].copy()
        moved[filled] = sums[filled] / counts[filled, None]
        shift.append(float(((moved - state["centers"][g]) ** 2).sum()))
        state["centers"][g] = moved
        state["labels"][g] = labels[i]
    state["updates"] += 1
    return inertia, shift


def _own_stats(state, inertia, shift):
    """This party's sealed stats for the peer (kept for its own decision too).

    ``variance_sum`` and ``features`` give the peer scikit-learn's tolerance
    (``tol`` times the mean variance of the joint features); ``inertia`` and ``shift``
    are this party's parts, per running restart, of the latest update.
    """
    stats = {"variance_sum": float(state["features"].var(axis=0).sum()), "features": int(state["features"].shape[1]),
             "inertia": inertia, "shift": shift}
    state["own_stats"] = stats
    return stats


def _open_stats(state, label, sealed):
    """The peer's stats, refused unless they cover exactly the running restarts."""
    stats = _open(state, label, sealed)
    if not isinstance(stats, dict) or not {"variance_sum", "features", "inertia", "shift"} <= set(stats):
        raise ProtocolError(f"the {state['peer']}'s stats are malformed")
    if stats["inertia"] is not None and not (len(stats["inertia"]) == len(stats["shift"]) == len(state["running"])):
        raise ProtocolError(f"the {state['peer']}'s stats cover {len(stats['inertia'])} restarts, "
                            f"not the {len(state['running'])} running")
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
    updates = state["updates"]
    features = own["features"] + peer["features"]
    tol = state["tol"] * (own["variance_sum"] + peer["variance_sum"]) / features
    running = []
    for i, g in enumerate(state["running"]):
        state["inertia"][g] = own["inertia"][i] + peer["inertia"][i]
        shift = own["shift"][i] + peer["shift"][i]
        if shift <= tol or updates > state["max_iter"]:
            state["centers"][g] = state["previous"][g]
            state["settled"][g] = (min(updates, state["max_iter"]), shift <= tol)
        else:
            running.append(g)
    seen = {_partition(state["labels"][g]) for g in sorted(state["candidates"]) if g not in running}
    for g in running:  # a restart whose assignment another one already made would repeat its rounds
        partition = _partition(state["labels"][g])
        if partition in seen:
            state["candidates"].discard(g)
        seen.add(partition)
    if updates == state["restart_iter"] and len(state["candidates"]) > 1:
        state["candidates"] = {min(state["candidates"], key=lambda g: (state["inertia"][g], g))}
    state["running"] = [g for g in running if g in state["candidates"]]


def _partition(labels):
    """An assignment up to the numbering of its clusters (renumbered by first appearance)."""
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    return np.argsort(np.argsort(first))[inverse].tobytes()


def _stop_reason(state):
    """The one control value the coordinator hears: whether the kept restart converged."""
    kept = min(state["candidates"], key=lambda g: (state["inertia"][g], g))
    return "converged" if state["settled"][kept][1] else "max_iter"


def _has(msg, name):
    """Whether ``msg`` carries field ``name`` (optional fields of a step)."""
    return name in set(msg)


def _checked_labels(state, labels):
    """The peer's assignment, refused unless it has one segment in range per user and restart."""
    groups, n, k = len(state["running"]), len(state["features"]), state["centers"].shape[1]
    labels = np.asarray(labels)
    if labels.shape != (groups, n) or labels.dtype.kind not in "iu" or labels.min() < 0 or labels.max() >= k:
        raise ProtocolError(f"the {state['peer']}'s assignment is malformed (shape {labels.shape})")
    return labels.astype(np.int64)


def _unpermute(state, sealed_positions):
    positions = np.asarray(_open(state, "positions", sealed_positions), dtype=np.int64)
    perms = state["perms"]
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


def _channel(state):
    return PeerChannel(state["channel_secret"], state["peer_channel"], own_role=state["role"],
                       peer_role=state["peer"], run_id=state["run_id"])


def _seal(state, label, value):
    """Seal an array or a JSON-able value for the peer: the coordinator relays it unread."""
    return _channel(state).seal(encode_value(value), f"segment.{label}")


def _open(state, label, data):
    try:
        return decode_value(_channel(state).open(data, f"segment.{label}"))
    except ValueError as exc:
        raise ProtocolError(f"sealed {label} from the {state['peer']} is malformed: {exc}") from None


# --------------------------------------------------------------------------------------
# Library API
# --------------------------------------------------------------------------------------

class VerticalKMeans:
    """Persona segmentation of the users a brand and a media party share, on their joint features.

    Runs the whole ``segment`` protocol (PSI, private Lloyd iterations, profiles) with
    both parties on this machine and reads back what each party wrote. Use it when both
    tables are at hand (tests, evaluation, a single-tenant clean room); across
    organisations each party runs its own Flower node instead (``fedscore segment
    --deployment``).

    Parameters
    ----------
    n_clusters : int
        Number of segments (personas).
    id_column : str
        The identifier column both tables share.
    exclude : sequence of str
        Columns to leave out of the features (labels, free text), at either party.
    n_init : int
        Restarts, each from ``k`` random shared users as centroids, iterated side by
        side; the one of least joint inertia (computed privately) is kept. Message
        sizes grow with it.
    restart_iter : int
        After this many iterations only the restart of least joint inertia goes on
        (fewer masked rounds for the key owner to see; see the spec).
    max_iter : int
    tol : float
        Stop when the squared centroid shift falls below ``tol`` times the mean
        feature variance (scikit-learn's convention).
    min_segment_size : int
        Segments smaller than this are not profiled to the other party.
    profile_noise : float
        Standard deviation of the Gaussian noise added to each released profile mean,
        in units of that feature's standard deviation.
    random_state : int, optional
        Seeds the choice of initial row positions (masks always come from the OS). The
        row order comes from PSI's fresh keys, so two runs still start from different
        users.
    engine : {"local", "simulation", "deployment"}

    Attributes
    ----------
    ids_ : numpy.ndarray of str
        The shared users, in the protocol's row order (the brand's spelling of each ID).
    labels_ : numpy.ndarray of int
        Segment of each of ``ids_``.
    cluster_centers_ : numpy.ndarray, shape (n_clusters, n_features)
        Centroids in standardised units, brand columns then media columns (each party
        holds only its own slice; both are read here because both ran here).
    feature_names_ : list of str
        ``brand.<column>`` and ``media.<column>`` names of the centroid columns.
    init_rows_ : list of int
        Positions in ``ids_`` of the users whose features were the initial centroids.
    inertia_ : float
        Joint within-cluster sum of squares (both parties compute it from each other's
        sealed partial inertias; the coordinator never sees it).
    n_iter_ : int
    converged_ : bool
        Whether the kept restart's centroid shift fell below ``tol`` (else it stopped at
        ``max_iter``).
    profiles_ : dict of str to pandas.DataFrame
        Each party's ``profiles.csv``: its own means for every segment, the peer's
        for released segments only.
    summary_ : dict
        The run's public summary.
    out_ : pathlib.Path
        The run folder (``brand/``, ``media/``, ``ledger.jsonl``, ``summary.json``).

    Examples
    --------
    >>> model = VerticalKMeans(3, id_column="uid").fit("brand.csv", "media.csv")  # doctest: +SKIP
    >>> model.labels_[:5], model.profiles_["brand"]  # doctest: +SKIP
    """

    def __init__(self, n_clusters=3, *, id_column="id", exclude=(), n_init=DEFAULT_N_INIT,
                 restart_iter=DEFAULT_RESTART_ITER, max_iter=DEFAULT_MAX_ITER, tol=DEFAULT_TOL, min_segment_size=MIN_SEGMENT_SIZE, profile_noise=0.0,
                 random_state=None, engine="local"):
        self.n_clusters = n_clusters
        self.id_column = id_column
        self.exclude = exclude
        self.n_init = n_init
        self.restart_iter = restart_iter
        self.max_iter = max_iter
        self.tol = tol
        self.min_segment_size = min_segment_size
        self.profile_noise = profile_noise
        self.random_state = random_state
        self.engine = engine

    def fit(self, brand, media, out=None, *, overwrite=False, resume=False, timeout=600.0):
        """Run the protocol on the brand's and the media's tables (paths or DataFrames).

        Parameters
        ----------
        brand, media : str, Path or pandas.DataFrame
        out : str or Path, optional
            Run folder to keep; a temporary one otherwise.
        overwrite : bool
        resume : bool
            Go on from the checkpoint a failed attempt of the same run left beside
            ``out`` (:mod:`fedscore.runtime.checkpoint`).
        timeout : float
            Seconds to wait for a party's answer before the run stops, naming it.

        Returns
        -------
        self
        """
        options = {
            "id_column": self.id_column, "k": int(self.n_clusters), "exclude": list(self.exclude),
            "n_init": int(self.n_init), "restart_iter": int(self.restart_iter), "max_iter": int(self.max_iter), "tol": float(self.tol),
            "min_segment_size": int(self.min_segment_size), "profile_noise": float(self.profile_noise),
            "random_state": self.random_state,
        }
        with _run_folder(out) as (work, out_dir):
            parties = {"brand": {"data": str(as_table_file(brand, work / "brand.csv"))},
                       "media": {"data": str(as_table_file(media, work / "media.csv"))}}
            self.summary_ = run_job("segment", options, parties, out_dir, engine=self.engine, overwrite=overwrite,
                                    resume=resume, timeout=timeout)
            segments = pd.read_csv(out_dir / "brand" / "segments.csv", dtype={self.id_column: str})
            centers = [pd.read_csv(out_dir / role / "centers.csv").set_index("segment") for role in ROLES]
            self.profiles_ = {role: pd.read_csv(out_dir / role / "profiles.csv") for role in ROLES}
            model = json.loads((out_dir / "brand" / "model.json").read_text())
        self.out_ = out_dir if out is not None else None
        self.ids_ = segments[self.id_column].to_numpy(dtype=str)
        self.labels_ = segments["segment"].to_numpy()
        joint = pd.concat(centers, axis=1)
        self.cluster_centers_ = joint.to_numpy()
        self.feature_names_ = list(joint.columns)
        self.init_rows_ = model["init_rows"]
        self.inertia_ = model["inertia"]
        self.n_iter_ = model["n_iter"]
        self.converged_ = model["converged"]
        return self

    def fit_predict(self, brand, media, out=None, **kwargs):
        return self.fit(brand, media, out, **kwargs).labels_


@contextlib.contextmanager
def _run_folder(out):
    """Yield ``(scratch folder, run folder)``; both temporary unless ``out`` is given."""
    with tempfile.TemporaryDirectory(prefix="fedscore-") as scratch:
        scratch = Path(scratch)
        yield scratch, Path(out) if out is not None else scratch / "run"
