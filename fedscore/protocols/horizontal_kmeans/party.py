"""Horizontal segmentation, a party's side: ``protocols/segment_horizontal.md``, step for step.

Every party runs these steps; the leader (the first party of the run's role order) also
makes the shared CKKS key. The rounds are

1. ``horizontal_kmeans.column_stats``: per-column sums and sums of squares and the row
   count, for the pooled standardisation (every party standardises with the same pooled
   mean and standard deviation, as a centralised KMeans on the pooled table would);
2. ``horizontal_kmeans.local_centers``: proposals for the initial centroids, from which
   every party computes the same weighted k-means++ initialisation. Without DP, each
   party's local KMeans centroids (sums and counts of its local clusters of at least
   ``min_proposal_size`` rows); with DP, the sums and counts of every party's rows in
   public random cells, noised like any other release;
3. ``horizontal_kmeans.cluster_sums``, repeated: per-cluster sums and counts of the
   party's rows assigned to the current centroids, from which every party computes the
   next centroids (Lloyd's algorithm);
4. ``horizontal_kmeans.finish``: the sums and counts of the final assignment, whose
   counts are the segment sizes written next to the segments.

Optional differential privacy adds Gaussian noise to every value each party releases
in rounds 2 to 4 (rows clipped in standardised units), calibrated with the Rényi
accountant of :mod:`fedscore.dp` by each party itself from its own options, which the
coordinator's must equal (:func:`~fedscore.protocols.horizontal.own_options`); the party
counts its releases and refuses any beyond them. Every vector it encrypts ends with a 1:
it checks each aggregate's size before decrypting it and the number of parties in it
after (:func:`~fedscore.protocols.horizontal.decrypt_aggregate`). With
``outlier_quantile`` it winsorises its own rows to its own quantiles before anything
is computed from them, and its model file does the same.
"""

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans

from ... import dp
from ...dp import PrivacyBudget
from ...errors import InputError, ProtocolError
from ...he import create_context, load_context
from ...kit.encoder import FeatureEncoder
from ...kit.inputs import read_inputs
from ...kit.model import ModelFile
from ...params import MIN_SEGMENT_SIZE
from ...wire import Message, ciphertext, control, public, size
from ..horizontal import CONTRIBUTOR, decrypt_aggregate, own_options
from .options import HorizontalKMeansOptions

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

CONSTANT_TOLERANCE = 1e-12
"""A pooled standard deviation below this fraction of the column's magnitude is a constant column."""

KEY_LABEL = "horizontal_kmeans.key"
"""The label the leader seals the shared secret key under."""


@dataclass
class KMeansState:
    """A party's state through the horizontal segmentation, after ``horizontal_kmeans.setup``."""

    options: HorizontalKMeansOptions
    roles: list
    """Every party of the run, the leader first."""
    seed: int
    """The public seed every party derives its shared random choices from."""
    id_column: str
    ids: np.ndarray
    columns: list
    values: np.ndarray
    """This party's rows, ``(rows, columns)``, in the columns' own units."""
    path: str
    min_proposal_size: int
    noise_multiplier: float
    """0 without DP; else what this party calibrated from its own options (:attr:`budget`)."""
    budget: PrivacyBudget = None
    """This party's own DP budget: its releases, counted (None without DP)."""
    bounds: dict = None
    """This party's winsorising bounds per column (``outlier_quantile``; empty without it)."""
    he_key: object = None
    """The shared CKKS key, secret part included (every party decrypts aggregates)."""
    encoder: FeatureEncoder = None
    """Standardises with the pooled means and standard deviations (``local_centers``)."""
    features: np.ndarray = None
    """This party's standardised rows."""
    centers: np.ndarray = None
    init_centers: np.ndarray = None
    labels: np.ndarray = None
    n_iter: int = 0
    finished: bool = False


def releases(n_iter):
    """Noised releases of a run of ``n_iter`` updates: the proposals, then ``n_iter + 1`` rounds of sums."""
    return n_iter + 2


def noise_multiplier(options):
    """The Gaussian noise multiplier that spends ``dp_epsilon`` over ``max_iter`` updates (0 without DP).

    What the coordinator announces and reports; each party computes its own
    (:class:`~fedscore.dp.PrivacyBudget`) from its own options and refuses another.
    """
    if options.dp_epsilon is None:
        return 0.0
    return dp.noise_multiplier(options.dp_epsilon, releases(options.max_iter), options.dp_delta)


# --- 1. horizontal_kmeans.setup ---------------------------------------------------------------

def setup(party, msg):
    """Read and validate this party's table; announce its columns, row count and channel key.

    Every feature must be a finite number: text columns are refused rather than one-hot
    encoded, since their categories would have to be pooled across parties, revealing
    each party's set of values. A column constant at one party is fine (a store's
    region): only the pooled statistics count.
    """
    options = own_options(HorizontalKMeansOptions, msg["options"], party.config)
    budget = None
    if options.dp_epsilon is not None:
        budget = PrivacyBudget(options.dp_epsilon, releases(options.max_iter), options.dp_delta)
        budget.check_claim(msg.get("noise_multiplier"))
    elif "noise_multiplier" in msg:
        raise ProtocolError("the coordinator announced DP noise, but this party's own options have no dp_epsilon")
    roles = list(msg["roles"])
    if party.role not in roles or len(set(roles)) != len(roles):
        raise ProtocolError(f"party {party.role!r} is not one of the run's parties {roles}, once each")
    inputs = read_inputs(options, party.role, party.config)
    values = np.column_stack([inputs.table.numeric(column) for column in inputs.feature_columns])
    bounds = {}
    if options.outlier_quantile is not None:
        q = options.outlier_quantile
        bounds = {c: [float(b) for b in np.quantile(values[:, j], [q, 1 - q])]
                  for j, c in enumerate(inputs.feature_columns)}
    party.state["horizontal_kmeans"] = KMeansState(
        options=options, roles=roles, seed=int(msg["seed"]), id_column=inputs.id_column, ids=inputs.ids,
        columns=list(inputs.feature_columns), values=values, path=str(inputs.table.path),
        min_proposal_size=_proposal_threshold(options.min_proposal_size, len(values), options.k),
        noise_multiplier=0.0 if budget is None else budget.noise_multiplier, budget=budget, bounds=bounds)
    return Message(columns=public(list(inputs.feature_columns)), rows=size(len(values)),
                   channel_key=public(party.channel.offer))


# --- 2. horizontal_kmeans.make_key (leader) -----------------------------------------------------

def make_key(party, msg):
    """Leader: make the shared CKKS key and seal its secret part to every other party."""
    state = party.phase("horizontal_kmeans")
    if state.roles[0] != party.role:
        raise ProtocolError(f"party {party.role!r} asked to make the key but {state.roles[0]!r} leads")
    channel_keys = msg["channel_keys"]
    if len(channel_keys) != len(state.roles):
        raise ProtocolError(f"{len(channel_keys)} channel keys for {len(state.roles)} parties")
    state.he_key = create_context("ckks")
    secret = state.he_key.to_bytes(include_secret_key=True)
    sealed = []
    for role, key in zip(state.roles[1:], channel_keys[1:]):
        party.channel.connect(role, key)
        sealed.append(party.channel.seal(role, KEY_LABEL, secret))
    return Message(he_context=public(state.he_key.public_context().to_bytes()), sealed_keys=ciphertext(sealed))


# --- 3. horizontal_kmeans.column_stats ----------------------------------------------------------

def column_stats(party, msg):
    """Receive the shared key (the others) and encrypt per-column sums, sums of squares and the row count."""
    state = party.phase("horizontal_kmeans")
    if "sealed_key" in msg:
        leader = state.roles[0]
        party.channel.connect(leader, msg["leader_channel_key"])
        state.he_key = load_context(party.channel.open(leader, KEY_LABEL, msg["sealed_key"]))
        if not state.he_key.has_secret_key:
            raise ProtocolError(f"the key sealed by {leader!r} holds no secret key")
    if state.he_key is None:
        raise ProtocolError(f"party {party.role!r} holds no shared key: the leader's sealed key did not come")
    values = _limited(state)
    stats = np.concatenate([values.sum(axis=0), (values**2).sum(axis=0), [len(values), CONTRIBUTOR]])
    return Message(stats=ciphertext(state.he_key.encrypt(stats).to_bytes()))


# --- 4. horizontal_kmeans.local_centers ---------------------------------------------------------

def local_centers(party, msg):
    """Standardise with the pooled statistics; propose initial centroids.

    Without DP, the party's block of the vector (one block per party, zeros elsewhere)
    holds the sums and counts of its local KMeans clusters of at least
    ``min_proposal_size`` rows; smaller clusters are left out, so no centroid of a
    handful of users is revealed. A local KMeans has no bounded sensitivity, so with DP
    the proposal is instead every party's sums and counts in the same public random
    cells (:func:`_dp_cells`): one row moves one cell's sum and count, the sensitivity
    of every other release, and every value is noised.
    """
    state = party.phase("horizontal_kmeans")
    if state.he_key is None or state.features is not None:
        raise ProtocolError("step out of order: local_centers before column_stats, or twice")
    d, k, roles = len(state.columns), state.options.k, state.roles
    stats = _decrypt(state, msg["stats"], 2 * d + 1, "the pooled column statistics")
    n = stats[2 * d]
    mean = stats[:d] / n
    std = np.sqrt(np.maximum(stats[d:2 * d] / n - mean**2, 0.0))
    constant = std <= CONSTANT_TOLERANCE * np.maximum(np.abs(mean), 1.0)
    if constant.any() and not state.bounds:
        column = state.columns[int(np.flatnonzero(constant)[0])]
        raise InputError("column is constant over all parties: it carries no information", column=column)
    std = np.where(constant, 1.0, std)  # made constant by winsorising: encoded as zeros, as the encoder does
    options = state.options
    state.encoder = FeatureEncoder.from_statistics(
        state.columns, dict(zip(state.columns, mean)), dict(zip(state.columns, std)), {}, path=state.path,
        bounds=state.bounds, min_category_count=options.min_category_count, outlier_quantile=options.outlier_quantile)
    state.features = x = _standardised(state)
    if state.noise_multiplier > 0:
        cells = _dp_cells(state)
        labels = np.argmin(((x[:, None, :] - cells[None]) ** 2).sum(axis=2), axis=1)
        sums, counts = _cluster_sums(state, labels, len(cells))
        table = np.column_stack([sums, counts])
        vector = table + _noise(state, table.shape, "the initial proposals")
    else:
        block = np.zeros((k, d + 1))
        local_k = min(k, len(x))
        model = KMeans(local_k, n_init=LOCAL_N_INIT, random_state=_seed(state, roles.index(party.role))).fit(x)
        sums, counts = _cluster_sums(state, model.labels_, local_k)
        large = counts >= state.min_proposal_size
        block[:local_k][large] = np.column_stack([sums, counts])[large]
        vector = np.zeros((len(roles), k, d + 1))
        vector[roles.index(party.role)] = block
    vector = np.append(vector.ravel(), CONTRIBUTOR)
    return Message(centers=ciphertext(state.he_key.encrypt(vector).to_bytes()))


# --- 5. horizontal_kmeans.cluster_sums ----------------------------------------------------------

def cluster_sums(party, msg):
    """Decrypt the aggregate into centroids, assign own rows, encrypt per-cluster sums and counts.

    In the ``init`` phase the aggregate holds every party's proposed local centroids and
    every party runs the same weighted k-means++ on them (same values, same seed, so
    the same initial centroids everywhere). In the ``iterate`` phase it holds the
    per-cluster sums and counts of the previous assignment.
    """
    state = party.phase("horizontal_kmeans")
    k, d = state.options.k, len(state.columns)
    converged = False
    if state.features is None or state.finished:
        raise ProtocolError("step out of order: cluster_sums before local_centers or after finish")
    if msg["phase"] == "init" and state.centers is not None:
        raise ProtocolError("the shared initialisation was asked for twice")
    if msg["phase"] == "iterate" and state.centers is None:
        raise ProtocolError("an iteration was asked for before the shared initialisation")
    if msg["phase"] == "iterate" and state.n_iter >= state.options.max_iter:
        raise ProtocolError(f"update {state.n_iter + 1} asked for, beyond this party's own max_iter = "
                            f"{state.options.max_iter}: refused")
    if msg["phase"] == "init":
        dp_on = state.noise_multiplier > 0
        cells = DP_INIT_CELLS_PER_CLUSTER * k if dp_on else len(state.roles) * k
        proposals = _decrypt(state, msg["aggregate"], cells * (d + 1), "the pooled proposals").reshape(-1, d + 1)
        proposals = proposals[proposals[:, -1] >= (_dp_init_min_count(state) if dp_on else 0.5)]
        if len(proposals) < k:
            what = ("random cells with at least one (noisy) row" if dp_on else
                    "proposed local clusters (each party proposes clusters of at least its --min-proposal-size rows)")
            raise InputError(f"only {len(proposals)} {what} across the parties, fewer than k = {k}"
                             + ("" if dp_on else ": lower --min-proposal-size"))
        points, weights = proposals[:, :d] / proposals[:, -1:], proposals[:, -1]
        if dp_on:  # a true cell mean of clipped rows lies in the clipping ball; a noisy one may not
            points = dp.clip_rows(points, _clip(state))
        seeding = KMeans(k, n_init=LOCAL_N_INIT, random_state=_seed(state, len(state.roles)))
        state.centers = seeding.fit(points, sample_weight=weights).cluster_centers_
        state.init_centers = state.centers.copy()
        state.n_iter = 0
    elif msg["phase"] == "iterate":
        table = _decrypt(state, msg["aggregate"], k * (d + 1), "the pooled cluster sums").reshape(k, d + 1)
        counts = table[:, -1]
        new = state.centers.copy()
        filled = counts >= 0.5
        new[filled] = table[filled, :d] / counts[filled, None]
        shift = float(((new - state.centers) ** 2).sum())
        state.centers = new
        state.n_iter += 1
        converged = shift <= state.options.tol  # standardised features: mean variance 1
    else:
        raise ProtocolError(f"unknown phase {msg['phase']!r}")
    state.labels = labels = _model(party, state).assign(state.features)
    sums, counts = _cluster_sums(state, labels, k)
    table = np.column_stack([sums, counts])
    table = table + _noise(state, table.shape, "a round of cluster sums")
    vector = np.append(table.ravel(), CONTRIBUTOR)
    return Message(sums=ciphertext(state.he_key.encrypt(vector).to_bytes()), converged=control(bool(converged)))


# --- 6. horizontal_kmeans.finish ----------------------------------------------------------------

def finish(party, msg):
    """Write this party's segments, the pooled centroids (the same at every party) and its model file.

    The sizes come from ``aggregate``, the pooled counts of the assignment this party
    writes to ``segments.csv`` (the last one, made with the final centroids): without
    DP they are exactly the numbers of rows of each segment over all parties' files.
    The model file assigns a table on its own (``fedscore score``), as this party's
    rows were assigned here.
    """
    state = party.phase("horizontal_kmeans")
    if state.labels is None or state.finished:
        raise ProtocolError("step out of order: finish before the rounds of cluster sums, or twice")
    state.finished = True
    k, d = state.options.k, len(state.columns)
    counts = _decrypt(state, msg["aggregate"], k * (d + 1), "the last pooled cluster sums").reshape(k, d + 1)[:, -1]
    pd.DataFrame({state.id_column: state.ids, "segment": state.labels}).to_csv(party.out / "segments.csv",
                                                                              index=False)
    means, scales = _statistics(state)
    raw = state.centers * scales + means
    centroids = pd.DataFrame(raw, columns=state.columns)
    centroids.insert(0, "size", np.maximum(np.round(counts), 0).astype(int))
    centroids.insert(0, "segment", np.arange(k))
    centroids.to_csv(party.out / "centroids.csv", index=False)
    model = _model(party, state)
    model.training["dp"] = None if state.budget is None else state.budget.summary()  # its releases, as it counted
    model.save(party.out / "model.json")
    return Message()


# --- this party's own work ----------------------------------------------------------------------

def _model(party, state):
    """The model of the current centroids: what assigns this party's rows, and what it writes."""
    training = {"k": state.options.k, "n_iter": state.n_iter, "init_centers": state.init_centers.tolist(),
                "parties": len(state.roles), "tol": state.options.tol, "dp_epsilon": state.options.dp_epsilon}
    return ModelFile(kind="horizontal_kmeans", party=party.role, encoder=state.encoder, centers=state.centers,
                     training=training)


def _statistics(state):
    """The pooled means and scales of the columns, as arrays in column order."""
    encoder = state.encoder
    return (np.array([encoder.means_[c] for c in state.columns]), np.array([encoder.scales_[c] for c in state.columns]))


def _standardised(state):
    """This party's rows encoded as its encoder encodes a table (``(x - mean) / scale`` per column).

    The same arithmetic on the same float64 values as :meth:`FeatureEncoder.transform` of
    the table (winsorised first, with ``outlier_quantile``), so that the model file assigns
    a re-read table exactly as the run assigned these rows; the table itself is not kept
    between steps (a party's state is saved after every step), only its values.
    """
    means, scales = _statistics(state)
    return (_limited(state) - means) / scales


def _limited(state):
    """This party's values, winsorised to its own bounds when it has them."""
    if not state.bounds:
        return state.values
    lows, highs = np.array([state.bounds[c] for c in state.columns]).T
    return np.clip(state.values, lows, highs)


def _decrypt(state, blob, length, what="the aggregate"):
    """Decrypt an aggregate of every party's vector, refused unless it holds ``length`` values and every party's.

    The size is checked before decrypting, the count of parties added after
    (:func:`~fedscore.protocols.horizontal.decrypt_aggregate`): every step needs every party.
    """
    parties = len(state.roles)
    values, _ = decrypt_aggregate(state.he_key, blob, length + 1, what, parties=parties, least=parties)
    return values


def _seed(state, index):
    """A seed every party derives alike from the public seed."""
    return (int(state.seed) * 1009 + index) % 2**32


def _proposal_threshold(option, rows, k):
    """Fewest rows of a local cluster this party proposes: the option, or a share of its clusters."""
    if option is not None:
        return int(option)
    share = math.ceil(PROPOSAL_SHARE_OF_CLUSTER * rows / k)
    return min(max(share, PROPOSAL_MIN_ROWS), MIN_SEGMENT_SIZE)


def _dp_cells(state):
    """The public random cells of the DP initialisation, the same at every party (common seed)."""
    rng = np.random.default_rng(_seed(state, len(state.roles) + 1))
    return rng.standard_normal((DP_INIT_CELLS_PER_CLUSTER * state.options.k, len(state.columns)))


def _cluster_sums(state, labels, k):
    """Per-cluster sums (rows clipped in standardised units when DP is on) and counts."""
    x = state.features
    if state.noise_multiplier > 0:
        x = dp.clip_rows(x, _clip(state))
    sums = np.zeros((k, x.shape[1]))
    np.add.at(sums, labels, x)
    return sums, np.bincount(labels, minlength=k).astype(float)


def _dp_init_min_count(state):
    """Smallest noisy cell count the DP initialisation uses (:data:`DP_INIT_MIN_COUNT`).

    Every party adds the full noise to its own share, so an aggregated count carries the
    noise of all parties: standard deviation ``sqrt(parties) * multiplier * sensitivity``.
    """
    spread = math.sqrt(len(state.roles)) * state.noise_multiplier * _sensitivity(state)
    return max(DP_INIT_MIN_COUNT, spread)


def _clip(state):
    """Row clipping norm: the option, or sqrt(d), the typical norm of a standardised row."""
    clip = state.options.dp_clip
    return float(clip) if clip is not None else math.sqrt(len(state.columns))


def _sensitivity(state):
    """L2 sensitivity of one release of sums and counts when one row is replaced.

    Replacing one row moves the clipped sums by at most ``2 C`` (same cluster) or
    ``sqrt(2) C`` (two clusters) and the counts by at most ``sqrt(2)``: ``sqrt(4 C^2 + 2)``.
    """
    return math.sqrt(4 * _clip(state) ** 2 + 2)


def _noise(state, shape, what):
    """Gaussian noise for one release of sums and counts, counted against the budget; zeros without DP.

    Each party adds the full noise to its own share, so its guarantee holds against
    every other party whatever they add.
    """
    if state.budget is None:
        return np.zeros(shape)
    state.budget.spend(what=what)
    return dp.gaussian_noise(state.noise_multiplier * _sensitivity(state), int(np.prod(shape))).reshape(shape)
