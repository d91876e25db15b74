"""Horizontal persona segmentation: N parties with the same columns cluster their users jointly.

Read this module side by side with ``protocols/segment_horizontal.md``: the step names,
message fields and what each party learns are the same there.

Every party holds different users described by the same numeric columns. They share
one CKKS key that the coordinator does not hold: the *leader* (the first party in the
coordinator's role order) makes it and seals the secret key to each other party over a
pairwise :class:`~fedscore.channel.PeerChannel`, relayed unread by the coordinator.
From then on every round is the same: each party encrypts a vector of statistics of
its own rows, the coordinator adds the ciphertexts, and every party decrypts the sum.
The rounds are

1. ``segment_horizontal.column_stats``: per-column sums and sums of squares and the row
   count, for the global standardisation (every party standardises with the same
   global mean and standard deviation, as a centralised KMeans on the pooled table
   would);
2. ``segment_horizontal.local_centers``: proposals for the initial centroids, from
   which every party computes the same weighted k-means++ initialisation. Without DP,
   each party's local KMeans centroids (sums and counts of its local clusters of at
   least ``min_proposal_size`` rows); with DP, the sums and counts of every party's
   rows in public random cells, noised like any other release;
3. ``segment_horizontal.cluster_sums``, repeated: per-cluster sums and counts of the
   party's rows assigned to the current centroids, from which every party computes the
   next centroids (Lloyd's algorithm);
4. ``segment_horizontal.finish``: the sums and counts of the final assignment, whose
   counts are the segment sizes written next to the segments.

Optional differential privacy adds Gaussian noise to every value each party releases
in rounds 2 to 4 (rows clipped in standardised units), calibrated with the Rényi
accountant of :mod:`fedscore.dp`. With two parties, the sum minus one's own share *is*
the other's share: encryption hides nothing between them, and the job warns.
"""

import json
import math
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans

from . import dp
from .channel import PeerChannel, new_keypair
from .data import as_table_file, read_table, validate_ids
from .errors import InputError, ProtocolError
from .he import load_context
from .he.ckks import CKKSContext
from .params import MIN_SEGMENT_SIZE
from .runtime import party_step
from .runtime.runner import run_job
from .scoring_horizontal import PrivacyWarning
from .segment import DEFAULT_MAX_ITER, DEFAULT_TOL, _run_folder
from .wire import Message, ciphertext, control, public, size

TWO_PARTY_WARNING = (
    "only two parties: each can subtract its own share from the aggregate and read the other's "
    "per-cluster sums and counts; use --dp-epsilon to add differential-privacy noise"
)

LOCAL_N_INIT = 4
"""k-means++ restarts of each party's local KMeans (its proposal of initial centroids)."""

PROPOSAL_MIN_ROWS = 10
"""Fewest rows of a local cluster whose centroid a party proposes (without DP the proposal
is that cluster's exact mean, seen by every other party)."""
PROPOSAL_SHARE_OF_CLUSTER = 0.5
"""Default proposal threshold: half a party's average local cluster (``rows / k``), between
:data:`PROPOSAL_MIN_ROWS` and :data:`~fedscore.params.MIN_SEGMENT_SIZE`. A fixed threshold
of 50 rows left parties of 44 rows (wholesale customers over 10 parties) with nothing to
propose; half the average cluster leaves every party of at least ``10 k`` rows at least one
proposal, since its largest local cluster holds at least ``rows / k``."""

DP_INIT_CELLS_PER_CLUSTER = 4
"""With DP, rows are counted in ``4 k`` public random cells (standard normal points in the
standardised space, from the common seed): enough cells for a weighted k-means++ to find
``k`` well-spread ones, few enough that each holds many rows next to the noise."""
DP_INIT_MIN_COUNT = 1.0
"""With DP, cells whose noisy count is below one row, or below the standard deviation of
the noise on an aggregated count, are left out of the initialisation: their means would be
mostly noise (post-processing of the noisy release: no privacy cost)."""

_KEY_LABEL = "segment_horizontal.key"


# --------------------------------------------------------------------------------------
# Coordinator
# --------------------------------------------------------------------------------------

def run_horizontal_kmeans(coordinator, options):
    """Coordinator job ``horizontal_kmeans``.

    Parameters
    ----------
    coordinator : fedscore.runtime.Coordinator
    options : dict
        ``id_column``, ``k``; optional ``exclude``, ``max_iter``, ``tol``,
        ``min_proposal_size`` (None: each party's own default, see
        :func:`_proposal_threshold`), ``dp_epsilon``, ``dp_delta``, ``dp_clip``,
        ``random_state``.

    Returns
    -------
    dict
        Public summary: parties, rows per party, iterations, convergence, the DP
        epsilon spent, warnings.
    """
    roles = list(coordinator.roles)
    if len(roles) < 2:
        raise InputError("horizontal segmentation needs at least two parties")
    k = int(options["k"])
    if k < 2:
        raise InputError(f"k must be at least 2, got {k}")
    max_iter = int(options.get("max_iter", DEFAULT_MAX_ITER))
    summary_warnings = []
    if len(roles) == 2:
        warnings.warn(TWO_PARTY_WARNING, PrivacyWarning, stacklevel=2)
        summary_warnings.append(TWO_PARTY_WARNING)
    started = time.perf_counter()

    noise = {"dp_noise_multiplier": public(0.0)}
    epsilon = options.get("dp_epsilon")
    delta = float(options.get("dp_delta", dp.DEFAULT_DELTA))
    if epsilon is not None:
        noise["dp_noise_multiplier"] = public(dp.noise_multiplier(float(epsilon), _releases(max_iter), delta))

    setup = coordinator.exchange({role: ("segment_horizontal.setup", Message(
        id_column=public(options["id_column"]), exclude=public(list(options.get("exclude", []))),
    )) for role in roles})
    columns = setup[roles[0]]["columns"]
    for role in roles[1:]:
        if setup[role]["columns"] != columns:
            raise InputError(f"party {role!r} has columns {setup[role]['columns']}, "
                             f"party {roles[0]!r} has {columns}: horizontal parties need the same columns")
    rows = {role: setup[role]["rows"] for role in roles}
    if k > sum(rows.values()):
        raise InputError(f"k = {k} segments asked for but the parties hold only {sum(rows.values())} users")

    leader = roles[0]
    keys = coordinator.call(leader, "segment_horizontal.make_key", Message(
        roles=public(roles), channel_keys=public([setup[r]["channel_key"] for r in roles])))
    he_public = load_context(keys["he_context"])
    sealed = dict(zip(roles[1:], keys["sealed_keys"]))

    common = {
        "roles": public(roles), "k": public(k), "tol": public(float(options.get("tol", DEFAULT_TOL))),
        "min_proposal_size": public(None if options.get("min_proposal_size") is None
                                    else int(options["min_proposal_size"])),
        # every party seeds the shared k-means++ alike: the seed must be common
        "random_state": public(int(options["random_state"]) if options.get("random_state") is not None
                               else coordinator.random_seed % 2**31),
        "dp_clip": public(options.get("dp_clip")), **noise,
    }
    stats = coordinator.exchange({role: ("segment_horizontal.column_stats", Message(**(
        {} if role == leader else {"sealed_key": ciphertext(sealed[role]),
                                   "leader_channel_key": public(setup[leader]["channel_key"])}), **common))
        for role in roles})
    total = _add(he_public, [stats[r]["stats"] for r in roles])

    local = coordinator.exchange({role: ("segment_horizontal.local_centers", Message(stats=ciphertext(total)))
                                  for role in roles})
    total = _add(he_public, [local[r]["centers"] for r in roles])

    n_iter, converged, phase = 0, False, "init"
    iteration_times = []
    while True:
        t0 = time.perf_counter()
        sums = coordinator.exchange({role: ("segment_horizontal.cluster_sums", Message(
            aggregate=ciphertext(total), phase=control(phase))) for role in roles})
        verdicts = {bool(sums[r]["converged"]) for r in roles}
        if len(verdicts) != 1:
            raise ProtocolError("parties disagree on convergence although they decrypted the same aggregate")
        if phase == "iterate":
            n_iter += 1
            converged = verdicts.pop()
        iteration_times.append(time.perf_counter() - t0)
        total = _add(he_public, [sums[r]["sums"] for r in roles])
        if converged or n_iter >= max_iter:
            break
        phase = "iterate"
    # the last sums hold the sizes of the final assignment, which the parties write out
    coordinator.exchange({role: ("segment_horizontal.finish", Message(aggregate=ciphertext(total)))
                          for role in roles})

    multiplier = noise["dp_noise_multiplier"].value
    return {
        "job": "horizontal_kmeans",
        "parties": roles,
        "rows": rows,
        "k": k,
        "n_iter": n_iter,
        "converged": converged,
        "dp": None if epsilon is None else {
            "epsilon_budget": float(epsilon), "delta": delta, "noise_multiplier": multiplier,
            "epsilon_spent": dp.epsilon_spent(multiplier, _releases(n_iter), delta),
        },
        "warnings": summary_warnings,
        "seconds": round(time.perf_counter() - started, 3),
        "seconds_per_iteration": round(float(np.mean(iteration_times)), 3) if iteration_times else None,
    }


def _releases(n_iter):
    """Noised releases of a run of ``n_iter`` updates: the proposals, ``n_iter + 1`` sums."""
    return n_iter + 2


def _add(context, encrypted):
    """Add the parties' ciphertexts: the coordinator's only computation, with a public key."""
    vectors = [context.load_vector(b) for b in encrypted]
    total = vectors[0]
    for vector in vectors[1:]:
        total = total + vector
    return total.to_bytes()


# --------------------------------------------------------------------------------------
# Party steps
# --------------------------------------------------------------------------------------

@party_step("segment_horizontal.setup")
def setup(party, msg):
    """Read and validate this party's table; announce its columns, row count and channel key."""
    id_column = msg["id_column"]
    path = party.config["data"]
    frame = read_table(path, columns=[id_column])
    ids = validate_ids(frame, id_column, path)
    exclude = set(msg["exclude"]) | {id_column}
    columns = [c for c in frame.columns if c not in exclude]
    if not columns:
        raise InputError("no feature columns besides the ID", path=path)
    values = np.stack([_numeric_column(frame, c, path) for c in columns], axis=1)
    channel_secret, channel_public = new_keypair()
    party.state["segment_horizontal"] = {
        "ids": ids, "id_column": id_column, "columns": columns, "values": values, "channel_secret": channel_secret,
    }
    return Message(columns=public(columns), rows=size(len(ids)), channel_key=public(channel_public))


@party_step("segment_horizontal.make_key")
def make_key(party, msg):
    """Leader: make the shared CKKS key and seal its secret part to every other party."""
    state = party.state["segment_horizontal"]
    key = CKKSContext()
    state["he_key"] = key
    secret = key.to_bytes(include_secret_key=True)
    roles, channel_keys = msg["roles"], msg["channel_keys"]
    if roles[0] != party.role:
        raise ProtocolError(f"party {party.role!r} asked to make the key but {roles[0]!r} leads")
    sealed = [PeerChannel(state["channel_secret"], peer_key, own_role=party.role, peer_role=role,
                          run_id=party.run_id).seal(secret, _KEY_LABEL)
              for role, peer_key in zip(roles[1:], channel_keys[1:])]
    return Message(he_context=public(key.public_context().to_bytes()), sealed_keys=ciphertext(sealed))


@party_step("segment_horizontal.column_stats")
def column_stats(party, msg):
    """Receive the shared key (non-leaders) and encrypt per-column sums, sums of squares, count."""
    state = party.state["segment_horizontal"]
    state.update(roles=msg["roles"], k=int(msg["k"]), tol=float(msg["tol"]),
                 min_proposal_size=_proposal_threshold(msg["min_proposal_size"], len(state["values"]), int(msg["k"])),
                 random_state=msg["random_state"],
                 dp_clip=msg["dp_clip"], dp_noise_multiplier=float(msg["dp_noise_multiplier"]))
    if _has(msg, "sealed_key"):
        leader = state["roles"][0]
        channel = PeerChannel(state["channel_secret"], msg["leader_channel_key"], own_role=party.role,
                              peer_role=leader, run_id=party.run_id)
        state["he_key"] = load_context(channel.open(msg["sealed_key"], _KEY_LABEL))
        if not state["he_key"].has_secret_key:
            raise ProtocolError(f"the key sealed by {leader!r} holds no secret key")
    values = state["values"]
    stats = np.concatenate([values.sum(axis=0), (values**2).sum(axis=0), [len(values)]])
    return Message(stats=ciphertext(state["he_key"].encrypt(stats).to_bytes()))


@party_step("segment_horizontal.local_centers")
def local_centers(party, msg):
    """Standardise with the global statistics; propose initial centroids.

    Without DP, the party's block of the vector (one block per party, zeros elsewhere)
    holds the sums and counts of its local KMeans clusters of at least
    ``min_proposal_size`` rows; smaller clusters are left out, so no centroid of a
    handful of users is revealed. A local KMeans has no bounded sensitivity, so with DP
    the proposal is instead every party's sums and counts in the same public random
    cells (:func:`_dp_cells`): one row moves one cell's sum and count, the sensitivity
    of every other release, and every value is noised.
    """
    state = party.state["segment_horizontal"]
    d = len(state["columns"])
    stats = state["he_key"].decrypt(state["he_key"].load_vector(msg["stats"]))
    n = stats[2 * d]
    mean = stats[:d] / n
    std = np.sqrt(np.maximum(stats[d:2 * d] / n - mean**2, 0.0))
    if np.any(std <= 1e-12 * np.maximum(np.abs(mean), 1.0)):
        column = state["columns"][int(np.argmin(std))]
        raise InputError("column is constant over all parties: it carries no information", column=column)
    state["mean"], state["scale"] = mean, std
    state["features"] = x = (state["values"] - mean) / std
    k, roles = state["k"], state["roles"]
    if state["dp_noise_multiplier"] > 0:
        cells = _dp_cells(state)
        labels = np.argmin(((x[:, None, :] - cells[None]) ** 2).sum(axis=2), axis=1)
        sums, counts = _cluster_sums(state, labels, len(cells))
        table = np.column_stack([sums, counts])
        vector = table + _noise(state, table.shape)
    else:
        block = np.zeros((k, d + 1))
        local_k = min(k, len(x))
        model = KMeans(local_k, n_init=LOCAL_N_INIT, random_state=_seed(state, roles.index(party.role))).fit(x)
        sums, counts = _cluster_sums(state, model.labels_, local_k)
        large = counts >= state["min_proposal_size"]
        block[:local_k][large] = np.column_stack([sums, counts])[large]
        vector = np.zeros((len(roles), k, d + 1))
        vector[roles.index(party.role)] = block
    return Message(centers=ciphertext(state["he_key"].encrypt(vector.ravel()).to_bytes()))


@party_step("segment_horizontal.cluster_sums")
def cluster_sums(party, msg):
    """Decrypt the aggregate into centroids, assign own rows, encrypt per-cluster sums and counts.

    In the ``init`` phase the aggregate holds every party's proposed local centroids and
    every party runs the same weighted k-means++ on them (same values, same seed, so
    the same initial centroids everywhere). In the ``iterate`` phase it holds the
    per-cluster sums and counts of the previous assignment.
    """
    state = party.state["segment_horizontal"]
    k, d = state["k"], len(state["columns"])
    total = state["he_key"].decrypt(state["he_key"].load_vector(msg["aggregate"]))
    converged = False
    if msg["phase"] == "init":
        proposals = total.reshape(-1, d + 1)
        dp_on = state["dp_noise_multiplier"] > 0
        proposals = proposals[proposals[:, -1] >= (_dp_init_min_count(state) if dp_on else 0.5)]
        if len(proposals) < k:
            what = ("random cells with at least one (noisy) row" if dp_on else
                    "proposed local clusters (each party proposes clusters of at least its --min-proposal-size rows)")
            raise InputError(f"only {len(proposals)} {what} across the parties, fewer than k = {k}"
                             + ("" if dp_on else ": lower --min-proposal-size"))
        points, weights = proposals[:, :d] / proposals[:, -1:], proposals[:, -1]
        if dp_on:  # a true cell mean of clipped rows lies in the clipping ball; a noisy one may not
            points = dp.clip_rows(points, _clip(state))
        seeding = KMeans(k, n_init=LOCAL_N_INIT, random_state=_seed(state, len(state["roles"])))
        state["centers"] = seeding.fit(points, sample_weight=weights).cluster_centers_
        state["init_centers"] = state["centers"].copy()
        state["n_iter"] = 0
    else:
        table = total.reshape(k, d + 1)
        counts = table[:, -1]
        new = state["centers"].copy()
        filled = counts >= 0.5
        new[filled] = table[filled, :d] / counts[filled, None]
        shift = float(((new - state["centers"]) ** 2).sum())
        state["centers"] = new
        state["n_iter"] += 1
        converged = shift <= state["tol"]  # standardised features: mean variance 1
    x, centers = state["features"], state["centers"]
    distances = ((x[:, None, :] - centers[None]) ** 2).sum(axis=2)
    state["labels"] = labels = np.argmin(distances, axis=1)
    sums, counts = _cluster_sums(state, labels, k)
    table = np.column_stack([sums, counts])
    table = table + _noise(state, table.shape)
    return Message(sums=ciphertext(state["he_key"].encrypt(table.ravel()).to_bytes()),
                   converged=control(bool(converged)))


@party_step("segment_horizontal.finish")
def finish(party, msg):
    """Write this party's segments and the aggregate centroids (identical at every party).

    The sizes come from ``aggregate``, the pooled counts of the assignment this party
    writes to ``segments.csv`` (the last one, made with the final centroids): without
    DP they are exactly the numbers of rows of each segment over all parties' files.
    """
    state = party.state["segment_horizontal"]
    k, d = state["k"], len(state["columns"])
    counts = state["he_key"].decrypt(state["he_key"].load_vector(msg["aggregate"])).reshape(k, d + 1)[:, -1]
    out = Path(party.config["out"])
    pd.DataFrame({state["id_column"]: state["ids"], "segment": state["labels"]}).to_csv(
        out / "segments.csv", index=False)
    raw = state["centers"] * state["scale"] + state["mean"]
    centroids = pd.DataFrame(raw, columns=state["columns"])
    centroids.insert(0, "size", np.maximum(np.round(counts), 0).astype(int))
    centroids.insert(0, "segment", np.arange(k))
    centroids.to_csv(out / "centroids.csv", index=False)
    model = {
        "columns": state["columns"], "mean": state["mean"].tolist(), "scale": state["scale"].tolist(),
        "init_centers": state["init_centers"].tolist(), "centers": state["centers"].tolist(),
        "n_iter": state["n_iter"],
    }
    (out / "model.json").write_text(json.dumps(model, indent=2) + "\n")
    return Message()


# --------------------------------------------------------------------------------------
# Party-side helpers
# --------------------------------------------------------------------------------------

def _numeric_column(frame, column, path):
    """Parse one column as finite floats; a text or empty cell is an error naming its row.

    Text columns are refused rather than one-hot encoded: their categories would have
    to be pooled across parties, revealing each party's set of values. A column that is
    constant at one party is fine (a store's region): only the pooled statistics count.
    """
    text = frame[column].astype(str).str.strip()
    values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(values)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InputError(f"value {text.iloc[row]!r} is not a finite number (horizontal segmentation needs "
                         "numeric columns; leave a text column out with --exclude)",
                         path=path, column=column, row=row + 2)
    return values


def _has(msg, name):
    return name in set(msg)


def _seed(state, index):
    """A seed every party derives alike from the public ``random_state``."""
    base = state["random_state"]
    return (int(base) * 1009 + index) % 2**32


def _proposal_threshold(option, rows, k):
    """Fewest rows of a local cluster this party proposes: the option, or a share of its clusters."""
    if option is not None:
        return int(option)
    share = math.ceil(PROPOSAL_SHARE_OF_CLUSTER * rows / k)
    return min(max(share, PROPOSAL_MIN_ROWS), MIN_SEGMENT_SIZE)


def _dp_cells(state):
    """The public random cells of the DP initialisation, the same at every party (common seed)."""
    rng = np.random.default_rng(_seed(state, len(state["roles"]) + 1))
    return rng.standard_normal((DP_INIT_CELLS_PER_CLUSTER * state["k"], len(state["columns"])))


def _cluster_sums(state, labels, k):
    """Per-cluster sums (rows clipped in standardised units when DP is on) and counts."""
    x = state["features"]
    if state["dp_noise_multiplier"] > 0:
        x = dp.clip_rows(x, _clip(state))
    sums = np.zeros((k, x.shape[1]))
    np.add.at(sums, labels, x)
    return sums, np.bincount(labels, minlength=k).astype(float)


def _dp_init_min_count(state):
    """Smallest noisy cell count the DP initialisation uses (:data:`DP_INIT_MIN_COUNT`).

    Every party adds the full noise to its own share, so an aggregated count carries the
    noise of all parties: standard deviation ``sqrt(parties) * multiplier * sensitivity``.
    """
    sensitivity = math.sqrt(4 * _clip(state) ** 2 + 2)
    spread = math.sqrt(len(state["roles"])) * state["dp_noise_multiplier"] * sensitivity
    return max(DP_INIT_MIN_COUNT, spread)


def _clip(state):
    """Row clipping norm: the option, or sqrt(d), the typical norm of a standardised row."""
    clip = state["dp_clip"]
    return float(clip) if clip is not None else math.sqrt(len(state["columns"]))


def _noise(state, shape):
    """Gaussian noise for one release of sums and counts, or zeros without DP.

    Replacing one row moves the clipped sums by at most ``2 C`` (same cluster) or
    ``sqrt(2) C`` (two clusters) and the counts by at most ``sqrt(2)`` in L2 norm:
    sensitivity ``sqrt(4 C^2 + 2)``. Each party adds the full noise to its own share,
    so its guarantee holds against every other party whatever they add.
    """
    multiplier = state["dp_noise_multiplier"]
    if multiplier <= 0:
        return np.zeros(shape)
    sensitivity = math.sqrt(4 * _clip(state) ** 2 + 2)
    return dp.gaussian_noise(multiplier * sensitivity, int(np.prod(shape))).reshape(shape)


# --------------------------------------------------------------------------------------
# Library API
# --------------------------------------------------------------------------------------

class HorizontalKMeans:
    """KMeans over the users of N parties with the same columns, on a key the coordinator lacks.

    Runs the ``horizontal_kmeans`` protocol with every party on this machine and reads
    back what each party wrote.

    Parameters
    ----------
    n_clusters : int
    id_column : str
    exclude : sequence of str
        Columns to leave out (text columns must be left out).
    max_iter : int
    tol : float
        Stop when the squared centroid shift (standardised units) falls below it.
    min_proposal_size : int, optional
        Without DP, a party proposes as initial centroids only its local clusters of at
        least this many rows. By default each party uses half its average local cluster
        (``rows / (2 k)``), clipped to ``[10, 50]``.
    dp_epsilon : float, optional
        Total (epsilon, ``dp_delta``) budget of each party's released sums and counts;
        None for no noise.
    dp_delta : float
    dp_clip : float, optional
        L2 norm each standardised row is clipped to in the released sums (DP only);
        ``sqrt(n_features)`` by default.
    random_state : int, optional
    engine : {"local", "simulation", "deployment"}

    Attributes
    ----------
    ids_ : dict of str to numpy.ndarray
        Each party's IDs, in its file's order.
    labels_ : dict of str to numpy.ndarray
        Each party's segments, aligned with ``ids_``.
    cluster_centers_ : numpy.ndarray, shape (n_clusters, n_features)
        Centroids in standardised units (``(x - mean_) / scale_``).
    init_centers_ : numpy.ndarray
        The initial centroids, in the same units.
    mean_, scale_ : numpy.ndarray
        The pooled standardisation statistics.
    feature_names_ : list of str
    n_iter_ : int
    summary_ : dict

    Examples
    --------
    >>> model = HorizontalKMeans(4, id_column="id").fit({"north": "n.csv", "south": "s.csv", "west": "w.csv"})  # doctest: +SKIP
    >>> model.labels_["north"][:5]  # doctest: +SKIP
    """

    def __init__(self, n_clusters=3, *, id_column="id", exclude=(), max_iter=DEFAULT_MAX_ITER, tol=DEFAULT_TOL,
                 min_proposal_size=None, dp_epsilon=None, dp_delta=dp.DEFAULT_DELTA, dp_clip=None,
                 random_state=None, engine="local"):
        self.n_clusters = n_clusters
        self.id_column = id_column
        self.exclude = exclude
        self.max_iter = max_iter
        self.tol = tol
        self.min_proposal_size = min_proposal_size
        self.dp_epsilon = dp_epsilon
        self.dp_delta = dp_delta
        self.dp_clip = dp_clip
        self.random_state = random_state
        self.engine = engine

    def fit(self, parties, out=None, *, overwrite=False, resume=False, timeout=600.0):
        """Run the protocol on each party's table.

        Parameters
        ----------
        parties : dict of str to (path or DataFrame)
            Party name → its table; names become the output folder names.
        out : str or Path, optional
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
        if len(parties) < 2:
            raise InputError("horizontal segmentation needs at least two parties")
        options = {
            "id_column": self.id_column, "k": int(self.n_clusters), "exclude": list(self.exclude),
            "max_iter": int(self.max_iter), "tol": float(self.tol),
            "min_proposal_size": None if self.min_proposal_size is None else int(self.min_proposal_size),
            "dp_epsilon": self.dp_epsilon, "dp_delta": float(self.dp_delta), "dp_clip": self.dp_clip,
            "random_state": self.random_state,
        }
        with _run_folder(out) as (work, out_dir):
            configs = {name: {"data": str(as_table_file(table, work / f"{name}.csv"))}
                       for name, table in parties.items()}
            self.summary_ = run_job("horizontal_kmeans", options, configs, out_dir, engine=self.engine,
                                    overwrite=overwrite, resume=resume, timeout=timeout)
            segments = {name: pd.read_csv(out_dir / name / "segments.csv", dtype={self.id_column: str})
                        for name in parties}
            model = json.loads((out_dir / next(iter(parties)) / "model.json").read_text())
        self.ids_ = {name: s[self.id_column].to_numpy(dtype=str) for name, s in segments.items()}
        self.labels_ = {name: s["segment"].to_numpy() for name, s in segments.items()}
        self.cluster_centers_ = np.asarray(model["centers"])
        self.init_centers_ = np.asarray(model["init_centers"])
        self.mean_, self.scale_ = np.asarray(model["mean"]), np.asarray(model["scale"])
        self.feature_names_ = model["columns"]
        self.n_iter_ = model["n_iter"]
        return self
