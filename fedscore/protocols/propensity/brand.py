"""Joint propensity, the brand's side: ``protocols/propensity.md``, step for step.

The brand holds the labels, its own features and its block of the model, with the
intercept. It encrypts the residual's coefficients under its own key, computes its
gradient under the media's key, decides on early stopping from a validation score only
it can read, and ranks its users to score without seeing the media's partial logits;
those the media does not know it scores with its own model, and it merges both into one
calibrated ranking, locally.
Section numbers are the steps of the spec's message flow.
"""

import json
import os
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import expit, logit
from scipy.stats import rankdata

from ... import dp
from ...errors import InputError, ProtocolError
from ...he import load_context
from ...he.random import uniform
from ...kit.encoder import FeatureEncoder
from ...kit.inputs import read_inputs
from ...kit.model import ModelFile
from ...kit.release import Expected, KeyOwner
from ...metrics import audience_table, auc, auc_interval, gain_curve, ks, lift_at, reliability_warnings
from ...runtime import progress
from ...wire import Message, ciphertext, control, public, size
from ..vertical_lr import (
    BoundOptimizer,
    add_noise,
    create_key,
    encrypt_scaled,
    encrypted_products,
    fit_from_aggregate,
    label_dp_budget,
    mask,
    masked_release_bound,
    media_logit_bound,
    open_release,
    open_values,
    scaled_bound,
    seal_values,
    split_brier,
    split_sigmoid,
    weak_keys_allowed,
)
from .common import (
    BRAND_GRADIENT,
    CONVERGENCE_TOL,
    LABEL_TERM,
    MEDIA_GRADIENT,
    MEDIA_LOGIT_LIMIT,
    QUANTILES,
    RANK_LOGIT_LIMIT,
    RANK_OFFSET_BITS,
    RANK_SCALE_BITS,
    RANKS,
    RELEASE_RESERVE,
    LabelDP,
    Sizes,
    brand_gradient_bound,
    encode_matched,
    kept_weights,
    label_term_bound,
    label_term_product,
    media_gradient_bound,
    media_gradient_product,
    save_model,
    training_rows,
)
from .options import PropensityOptions

EARLY_STOPPING_MIN_DELTA = 1e-5
"""An epoch improves on the best one when its mean validation Brier score is lower by
more than this: above the release noise of the score for a few hundred validation users
under CKKS, and well under the 1e-3 change one epoch makes while the model still learns."""


class EarlyStopping:
    """The brand's patience rule on the validation Brier score, one score per epoch.

    Parameters
    ----------
    patience : int
    validation_users : int
        With none, every epoch counts as the best (the last weights are kept) and only
        the epoch limit and convergence stop training.
    enabled : bool
        When off (label DP), scores are recorded for the report but every epoch counts
        as the best: the validation labels then decide nothing the media learns.

    Attributes
    ----------
    best_epoch_ : int
    history_ : list of float
        Mean validation Brier score of each epoch (at the weights the epoch evaluated).
    """

    def __init__(self, patience, validation_users, enabled=True):
        self.patience = int(patience)
        self.validation_users = int(validation_users)
        self.enabled = bool(enabled)
        self.best_epoch_ = 0
        self.history_ = []

    def update(self, brier_sum):
        """Record an epoch's summed Brier score; return whether it is the best so far."""
        epoch = len(self.history_)
        if self.validation_users == 0:
            self.history_.append(float("nan"))
            self.best_epoch_ = epoch
            return True
        score = float(brier_sum) / self.validation_users
        self.history_.append(score)
        if not self.enabled or epoch == 0 or score < self.history_[self.best_epoch_] - EARLY_STOPPING_MIN_DELTA:
            self.best_epoch_ = epoch
            return True
        return False

    @property
    def stop(self):
        """Whether ``patience`` epochs have passed without improvement."""
        return len(self.history_) - 1 - self.best_epoch_ >= self.patience


@dataclass
class BrandState:
    """What the brand keeps between the steps of one run."""

    options: PropensityOptions
    ids: np.ndarray
    """The matched users' IDs as the brand's table writes them, in PSI's shared order."""
    encoder: FeatureEncoder
    encoded: np.ndarray
    """The matched users' encoded rows: what the brand's model file scores."""
    features: np.ndarray
    """The rows training uses: ``encoded``, clipped under label DP."""
    table_rows: int
    labels: np.ndarray
    """1.0 / 0.0 per matched user (0.0 for users to score: they carry no weight)."""
    train: np.ndarray
    validation: np.ndarray
    """The users whose figures the report gives: never the users early stopping chose the epoch on."""
    stopping_users: np.ndarray
    """The users whose Brier score is computed each epoch: with early stopping, the other half of the held-out
    users; without it (label DP), the validation users themselves, whose score then decides nothing."""
    to_score: np.ndarray
    stopping: EarlyStopping
    label_dp: LabelDP | None
    budget: dp.PrivacyBudget | None = None
    """Label DP: the brand's own budget, one Gaussian release (its part and the media's part together)."""
    # 2. propensity.make_key
    owner: KeyOwner = None
    """The brand's key pair and its release plan: the media's gradient each epoch, the label term once."""
    sizes: Sizes = None
    optimizer: BoundOptimizer = None
    label_term: np.ndarray | None = None
    """Label DP: the brand's noisy part of the label aggregate, subtracted from every gradient."""
    media_noise: np.ndarray | None = None
    """Label DP: the Gaussian noise drawn for the media's part, added when that part is released."""
    # 3. propensity.peer_key
    peer_context: object = None
    # each epoch
    quantiles: np.ndarray = None
    mask: object = None
    evaluated: np.ndarray = None
    best_weights: np.ndarray = None
    # the ranking
    model: ModelFile = None
    ranked_rows: np.ndarray = None
    brand_logits: np.ndarray = None
    """The partial logits of the kept model, before clipping to the rank limit."""


def validation_split(ids, labelled, fraction, random_state=None):
    """Boolean mask of validation users: ``round(fraction * labelled)`` labelled users at random.

    The draw orders users by ID first, so that with ``random_state`` the same users are
    drawn whatever the row order (PSI's shared order changes with every run's keys);
    without it, the seed comes from the operating system's generator.
    """
    seed = random_state if random_state is not None else int.from_bytes(os.urandom(8), "little")
    candidates = np.flatnonzero(labelled)
    candidates = candidates[np.argsort(np.asarray(ids, dtype=str)[candidates], kind="stable")]
    chosen = np.random.default_rng(seed).permutation(candidates)[:int(round(fraction * len(candidates)))]
    chosen_mask = np.zeros(len(ids), dtype=bool)
    chosen_mask[chosen] = True
    return chosen_mask


# --- 1. propensity.load --------------------------------------------------------------------

def load(party, msg):
    """Encode the brand's features for the matched users, parse their labels and draw the validation users.

    Nothing about the split leaves the brand but the number of training users: the
    media computes over every matched user, and rows that are not training rows get
    zero weight inside the brand's encrypted values.
    """
    options = PropensityOptions.from_dict(msg["options"])
    budget = label_dp_budget(party, options.label_dp_epsilon, options.label_dp_delta)
    psi, inputs, encoder, encoded = encode_matched(party, options)
    label_dp = LabelDP.of(options, budget)
    labels = inputs.labels[psi.rows]  # every row's label was checked, so an error names its row in the file
    labelled = ~np.isnan(labels)
    held_out = validation_split(psi.ids, labelled, options.validation_fraction, options.random_state)
    train = labelled & ~held_out
    selects = label_dp is None  # early stopping runs with label DP off: it chooses on other users than it reports
    stopping_users = validation_split(psi.ids, held_out, 0.5, options.random_state) if selects else held_out
    validation = held_out & ~stopping_users if selects else held_out
    if len(np.unique(labels[train])) < 2:
        raise InputError("the matched, labelled training users hold one class only", path=inputs.table.path,
                         column=inputs.label_column)
    party.state["propensity"] = BrandState(
        options=options, ids=np.asarray(psi.ids, dtype=object), encoder=encoder, encoded=encoded,
        features=training_rows(encoded, label_dp), table_rows=inputs.table.rows, labels=np.nan_to_num(labels),
        train=train, validation=validation, stopping_users=stopping_users, to_score=~labelled, label_dp=label_dp,
        budget=budget, stopping=EarlyStopping(options.patience, int(stopping_users.sum()), enabled=selects))
    return Message(features=size(encoded.shape[1]), table_rows=size(inputs.table.rows),
                   training_rows=size(int(train.sum())))


# --- 2. propensity.make_key ----------------------------------------------------------------

def make_key(party, msg):
    """Make the brand's key pair, sized to the media's gradients it releases; set up its optimiser.

    With label DP the brand also encrypts ``w ⊙ y`` (the training users' labels, 0
    elsewhere) for the media's part of the label aggregate, and adds the Gaussian noise to
    its own part ``[X_b, 1]ᵀ(w ⊙ y)`` now.
    """
    state = party.phase("propensity")
    options, label_dp = state.options, state.label_dp
    peer_features = int(msg["peer_features"])
    values = options.epochs * peer_features + RELEASE_RESERVE  # the media's gradient, each epoch
    plan = {MEDIA_GRADIENT: options.epochs}
    if label_dp is not None:
        values += peer_features  # the media's part of the label aggregate, released once
        plan[LABEL_TERM] = 1
    key = create_key(options.backend, release_budget=values, paillier_key_bits=options.paillier_key_bits,
                     allow_weak_key=weak_keys_allowed(party))
    state.owner = KeyOwner(key, plan)
    state.sizes = Sizes(matched=len(state.features), training=int(state.train.sum()),
                        brand_table=state.table_rows, media_table=int(msg["peer_table_rows"]),
                        brand_features=state.features.shape[1], media_features=peer_features)
    state.optimizer = BoundOptimizer(state.features[state.train], options.l2, intercept=True, blocks=2)
    reply = {"public_context": public(state.owner.public_context.to_bytes())}
    if label_dp is not None:
        trained_labels = state.train * state.labels
        own_part = BoundOptimizer.design(state.features, True).T @ trained_labels
        # One Gaussian release of the whole aggregate: the noise of both parts is drawn now, once.
        state.budget.spend(what="the label aggregate")
        noise = dp.gaussian_noise(label_dp.noise_std, own_part.size + peer_features)
        state.label_term, state.media_noise = own_part + noise[:own_part.size], noise[own_part.size:]
        reply["labels"] = ciphertext(encrypt_scaled(key, trained_labels).to_bytes())
    return Message(**reply)


# --- 3. propensity.peer_key ----------------------------------------------------------------

def peer_key(party, msg):
    """Receive the media's public key."""
    party.phase("propensity").peer_context = load_context(msg["public_context"],
                                                          allow_weak_key=weak_keys_allowed(party))
    return Message()


# --- 4. propensity.brand_round -------------------------------------------------------------

def brand_round(party, msg):
    """Send the residual's coefficients under the brand's key, and its gradient and validation score under the media's.

    With ``z_b`` the brand's partial logit at its look-ahead weights and ``a0, a1, a2``
    from :func:`fedscore.protocols.vertical_lr.split_sigmoid`, the residual of user ``i``
    is ``r_i = c0_i + c1_i u_i + c2_i u_i²`` with ``c0 = w (a0 - y)``, ``c1 = w a1``,
    ``c2 = w a2``, where ``w`` is 1 for training users and 0 for the others (validation
    users, users to score): the media computes over every matched user and never learns
    which are which. The brand's gradient ``X_bᵀ r`` is computed under the media's key
    from ``[[u]]`` and ``[[u²]]``, with one more output: ``Σ v_i (d0_i + d1_i u_i + d2_i
    u_i²)``, the validation users' (``v_i = 1``) Brier score from
    :func:`fedscore.protocols.vertical_lr.split_brier`, at no extra message.

    With label DP, in the first epoch only, the media's masked part of the label
    aggregate arrives too: the brand releases it with the Gaussian noise, sealed for the
    media.
    """
    state = party.phase("propensity")
    context = state.peer_context
    epoch = state.optimizer.n_steps_
    quantiles = open_values(party, msg["quantiles"], QUANTILES, round=epoch)
    if quantiles.ndim != 1 or len(quantiles) < 3 or not np.all(np.isfinite(quantiles)):
        raise ProtocolError("the media's logit quantiles are malformed")
    if np.max(np.abs(quantiles)) > MEDIA_LOGIT_LIMIT:  # every bound below rests on it
        raise ProtocolError(f"the media's logit quantiles exceed the public limit of ±{MEDIA_LOGIT_LIMIT:g}: refused")
    design = BoundOptimizer.design(state.features, True)
    lookahead = state.optimizer.lookahead
    z_b = design @ lookahead
    weight = state.train.astype(float)
    coefficients = split_sigmoid(z_b, quantiles) * weight[:, None]
    if state.label_dp is None:
        coefficients[:, 0] -= weight * state.labels
    reply = {}
    if ("label_term" in msg) != (state.label_dp is not None and epoch == 0):
        raise ProtocolError("the media's label aggregate must come exactly once, in the first epoch of a label-DP run")
    if "label_term" in msg:
        reply["label_term"] = ciphertext(seal_values(party, _release_label_term(state, msg["label_term"]), LABEL_TERM))
    brier = split_brier(z_b, state.labels, quantiles) * state.stopping_users.astype(float)[:, None]
    u_bound = media_logit_bound(quantiles)
    u, u_squared = context.load_vector(msg["media_logit"]), context.load_vector(msg["media_logit_squared"])
    product, shift, bound = encrypted_products(
        [(u, np.column_stack([design * coefficients[:, 1:2], brier[:, 1]]), u_bound),
         (u_squared, np.column_stack([design * coefficients[:, 2:3], brier[:, 2]]), u_bound**2)],
        bound=brand_gradient_bound(state.sizes, quantiles),
        plain=np.append(design.T @ coefficients[:, 0], brier[:, 0].sum()))
    masked_product, state.mask = mask(product, bound, shift)
    state.quantiles, state.evaluated = quantiles, lookahead.copy()
    encrypted = [encrypt_scaled(state.owner.key, coefficients[:, k]).to_bytes() for k in range(3)]
    return Message(coefficients=ciphertext(encrypted), gradient=ciphertext(masked_product.to_bytes()), **reply)


def _release_label_term(state, blob):
    """Release the media's masked part of the label aggregate with the label-DP Gaussian noise.

    The brand expects the media's feature count of values, each a product of its
    encrypted ``w ⊙ y`` by clipped feature rows (:func:`~.common.label_term_product`).
    The noise, drawn with the brand's own part in ``propensity.make_key``, is added to
    the masked value, which is the same as adding it to the aggregate; it carries the
    aggregate's scale, which the brand recomputes from the public bound.
    """
    owner = state.owner
    scheme = owner.key.scheme
    bound = label_term_bound(state.sizes)
    values = owner.release(blob, Expected(LABEL_TERM, count=len(state.media_noise),
                                          bound=masked_release_bound(scheme, bound),
                                          product=label_term_product(scheme, state.sizes, state.label_dp)))
    shift, _ = scaled_bound(scheme, bound)
    return add_noise(values, state.media_noise, shift, None if scheme == "ckks" else 2 * owner.key.precision_bits)


# --- 6. propensity.brand_update ------------------------------------------------------------

def brand_update(party, msg):
    """Unmask the brand's gradient and validation score, step, decide on early stopping; release the media's."""
    state = party.phase("propensity")
    if state.mask is None:
        raise ProtocolError("propensity.brand_update without a gradient of this epoch to open: refused")
    epoch = state.optimizer.n_steps_
    values = open_release(party, msg["brand_gradient"], BRAND_GRADIENT, state.mask, round=epoch)
    state.mask = None
    if state.stopping.update(values[-1]):
        state.best_weights = state.evaluated
    if state.stopping.validation_users:
        best = f" (best: epoch {state.stopping.best_epoch_ + 1})" if state.stopping.enabled else ""
        progress.party_figure(party.role, f"validation Brier {state.stopping.history_[-1]:.4f}{best}")
    label_term = 0.0 if state.label_term is None else state.label_term
    step = state.optimizer.step((values[:-1] - label_term) / state.sizes.training)
    owner, quantiles, sizes = state.owner, state.quantiles, state.sizes
    scheme = owner.key.scheme
    media_gradient = owner.release(msg["media_gradient"], Expected(
        MEDIA_GRADIENT, count=sizes.media_features, bound=masked_release_bound(scheme, media_gradient_bound(sizes, quantiles)),
        product=media_gradient_product(scheme, sizes, quantiles, state.label_dp)))
    return Message(media_gradient=ciphertext(seal_values(party, media_gradient, MEDIA_GRADIENT, round=epoch)),
                   converged=control(step < CONVERGENCE_TOL), stop=control(state.stopping.stop),
                   best_epoch=control(state.stopping.best_epoch_))


# --- 9. propensity.rank_mask ---------------------------------------------------------------

def rank_mask(party, msg):
    """Write the brand's half of the model; add ``z_b``, map ``z → a z + b`` (``a > 0``) and shuffle.

    The brand's partial logits are those of its kept weights (:func:`~fedscore.protocols.
    propensity.common.kept_weights`), computed by the model file it writes, and clipped
    to :data:`~fedscore.protocols.propensity.common.RANK_LOGIT_LIMIT` like the media's.
    Only the users not trained on are sent (held-out users and users to score),
    shuffled with a permutation drawn from the OS generator and re-randomised; the media
    learns how many, not which.
    """
    state = party.phase("propensity")
    options, stopping = state.options, state.stopping
    media_logits = ranking_ciphertexts(party, msg, len(state.features))
    weights = kept_weights(state.optimizer, state.best_weights, stopping.best_epoch_)
    state.model = save_model(party, state.encoder, weights[:-1], float(weights[-1]), state.label_dp, {
        "l2": options.l2, "backend": options.backend, "epochs_run": state.optimizer.n_steps_,
        "best_epoch": stopping.best_epoch_, "training_users": state.sizes.training,
        "label_dp": None if state.label_dp is None else state.label_dp.to_dict(),
        # what both halves record alike: the model's identity when a later run scores with it
        "run_id": party.run_id, "matched_users": len(state.features), "exact_scores": options.exact_scores})
    state.brand_logits = state.model.logits(state.encoded)
    rows = np.flatnonzero(~state.train)
    scores, state.ranked_rows = mask_for_ranking(media_logits, state.brand_logits, rows, options.exact_scores)
    return Message(scores=ciphertext(scores.to_bytes()), rows=size(len(rows)))


def ranking_ciphertexts(party, msg, matched):
    """The media's ranking key and its per-user Paillier ciphertexts of ``z_m``, refused unless one per matched user."""
    context = load_context(msg["public_context"], allow_weak_key=weak_keys_allowed(party))
    if context.scheme != "paillier":
        raise ProtocolError("the media's partial logits must come one Paillier ciphertext per user, to be shuffled")
    media_logits = context.load_vector(msg["media_logits"])
    if media_logits.size != matched:
        raise ProtocolError(f"received {media_logits.size} encrypted scores for {matched} matched users")
    return media_logits


def mask_for_ranking(media_logits, brand_logits, rows, exact_scores):
    """Step 9 for any job that ranks: ``[[a (z_b + z_m) + b]]`` of ``rows``, shuffled and re-randomised.

    ``z_b`` is clipped to :data:`~.common.RANK_LOGIT_LIMIT` like the media's; ``a`` is
    log-uniform in ``2^RANK_SCALE_BITS`` and ``b`` uniform in ``±2^RANK_OFFSET_BITS``
    (``a = 1``, ``b = 0`` with exact scores). Returns the masked vector and the rows in
    the order sent.
    """
    z_b = np.clip(brand_logits, -RANK_LOGIT_LIMIT, RANK_LOGIT_LIMIT)
    if exact_scores:
        scale, offset = 1.0, 0.0
    else:
        low, high = RANK_SCALE_BITS
        scale = 2.0 ** (low + (high - low) * float(uniform(1)[0]))
        offset = (2.0 * float(uniform(1)[0]) - 1.0) * 2.0 ** RANK_OFFSET_BITS
    shuffled = rows[np.argsort(uniform(len(rows)), kind="stable")]
    return media_logits.take(shuffled) * scale + (scale * z_b[shuffled] + offset), shuffled


def opened_ranks(party, blob, ranked):
    """Step 11 for any job that ranks: the media's ranks (or exact logits), refused unless one per ranked user."""
    values = open_values(party, blob, RANKS)
    if len(values) != ranked:
        raise ProtocolError(f"received {len(values)} ranks for {ranked} ranked users")
    return values


# --- the brand's own model and one ranking of every user to score (local: nothing crosses) ---

JOINT, BRAND_ONLY = "joint", "brand only"
"""The ``source`` of a row of ``scores.csv``: the joint model's rank (users the media knows)
or the brand's own model (users it does not)."""

MIN_CALIBRATION_CLASS = 10
"""The brand-only scores are calibrated on the held-out users PSI did not match (the users
they score are unmatched too, and may convert at another rate than the matched) when these
hold at least this many positives and this many negatives, else on all its held-out users:
the rule of about ten events per fitted variable (Peduzzi et al., J. Clin. Epidemiol. 49,
1996), for Platt scaling's one variable."""


class PlattCalibration:
    """A score turned into a probability, ``σ(slope · x + intercept)``, fitted on held-out labelled users.

    Attributes
    ----------
    slope_, intercept_ : float
    users_, positives_ : int
        The held-out users it was fitted on.
    warning_ : str or None
        Why the map is flat, if it is.

    Notes
    -----
    Platt scaling (J. Platt, "Probabilistic outputs for support vector machines", 1999):
    a one-feature logistic regression of the label on the score, with Platt's targets
    ``(N₊ + 1) / (N₊ + 2)`` for positives and ``1 / (N₋ + 2)`` for negatives instead of 1
    and 0, so that a few hundred held-out users (or a single class) give a finite,
    smooth map. Two parameters, increasing in the score: the order within a source is
    kept, only the two sources' scales are put on one (probability) scale. A fitted
    slope at or below zero (a score without signal on the held-out users) is replaced by
    a flat map at the held-out users' rate.
    """

    def fit(self, x, y):
        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        self.users_, self.positives_ = len(y), int(y.sum())
        self.warning_ = None
        if not len(y):
            self.slope_, self.intercept_ = 0.0, 0.0
            self.warning_ = "no held-out labelled users: every score of this source is 0.5"
            return self
        negatives = len(y) - self.positives_
        target = np.where(y > 0, (self.positives_ + 1) / (self.positives_ + 2), 1 / (negatives + 2))
        centre, spread = float(x.mean()), float(x.std()) or 1.0
        scaled = ((x - centre) / spread)[:, None]
        weights, _ = fit_from_aggregate(scaled, np.append(scaled.T @ target, target.sum()), 0.0)
        self.slope_ = float(weights[0]) / spread
        self.intercept_ = float(weights[1]) - self.slope_ * centre
        if self.slope_ <= 0:
            self.slope_, self.intercept_ = 0.0, float(logit(target.mean()))
            self.warning_ = "the score does not rise with the label on the held-out users: one probability for all"
        return self

    def predict(self, x):
        """Probabilities of a positive label for scores ``x``."""
        return expit(self.slope_ * np.asarray(x, dtype=float) + self.intercept_)

    def to_dict(self):
        return {"slope": self.slope_, "intercept": self.intercept_, "users": self.users_,
                "positives": self.positives_, "warning": self.warning_}

    @classmethod
    def from_dict(cls, data):
        """A map saved with :meth:`to_dict` (in a model file), for scoring later."""
        calibration = cls()
        calibration.slope_, calibration.intercept_ = float(data["slope"]), float(data["intercept"])
        calibration.users_, calibration.positives_ = int(data["users"]), int(data["positives"])
        calibration.warning_ = data.get("warning")
        return calibration


def rank_logit(order):
    """``logit`` of each user's mid-rank percentile ``(rank - ½) / n``: the joint model's ranks as a score.

    Logistic-regression scores are close to logistic in distribution, so the label's
    log-odds are close to linear in this value, which Platt scaling then fits.
    """
    percentile = (rankdata(order) - 0.5) / max(len(order), 1)
    return logit(percentile)


@dataclass
class BrandOnly:
    """The brand's own model on its own columns, and its scores of the users the media does not know.

    Attributes
    ----------
    ids : numpy.ndarray
        The users to score that PSI did not match, in table order.
    logits : numpy.ndarray
        The brand-only model's logit of each of them.
    calibration : PlattCalibration
    report : dict
    """

    ids: np.ndarray
    logits: np.ndarray
    calibration: PlattCalibration
    report: dict
    model: ModelFile = None
    """The brand-only model itself (the brand's encoder, no clipping), saved for later scoring."""


def brand_only(party, state):
    """Train the brand's own logistic regression on its own columns and score its unmatched users to score.

    The brand reads its table again (it was validated in ``propensity.load``; every row
    of it is the brand's own): the same encoder as its half of the joint model, fitted on
    the whole table, encodes every row. Held out of training: the joint model's
    held-out users (its validation users, so that the two models are compared on the same
    users, and its stopping users) and, drawn the same way, ``validation_fraction`` of the labelled users PSI did not match. Trained on
    every other labelled user, matched or not, with the run's L2 penalty. Calibrated on
    the unmatched held-out users, like the users it scores, when they are enough
    (:data:`MIN_CALIBRATION_CLASS`), else on every held-out user. Nothing is sent: this is
    the brand's own data only.
    """
    options = state.options
    psi = party.phase("psi")
    inputs = read_inputs(options, party.role, party.config)
    if not np.array_equal(inputs.ids[psi.rows].astype(str), state.ids.astype(str)):
        raise ProtocolError("the brand's table changed during the run: its matched IDs differ from the first read")
    labels = inputs.labels
    labelled = ~np.isnan(labels)
    matched = np.zeros(len(labels), dtype=bool)
    matched[psi.rows] = True
    joint_validation, joint_held_out = np.zeros(len(labels), dtype=bool), np.zeros(len(labels), dtype=bool)
    joint_validation[psi.rows[state.validation]] = True
    joint_held_out[psi.rows[~state.train & ~state.to_score]] = True  # its validation and stopping users
    held_out = joint_held_out | validation_split(inputs.ids, labelled & ~matched, options.validation_fraction,
                                                   options.random_state)
    train = labelled & ~held_out
    features = state.encoder.transform(inputs.table)
    design = BoundOptimizer.design(features, True)
    y = labels[train]
    weights, iterations = fit_from_aggregate(features[train], np.append(features[train].T @ y, y.sum()), options.l2)
    logits = design @ weights
    unmatched_held_out = held_out & ~matched
    positives = int(labels[unmatched_held_out].sum())
    enough = min(positives, int(unmatched_held_out.sum()) - positives) >= MIN_CALIBRATION_CLASS
    calibrated_on = unmatched_held_out if enough else held_out
    calibration = PlattCalibration().fit(logits[calibrated_on], labels[calibrated_on])
    to_score = ~labelled & ~matched

    def measured(rows):
        y_rows = labels[rows]
        return {"users": int(rows.sum()), "positives": int(y_rows.sum()), "auc": auc(y_rows, logits[rows])}

    report = {
        "features": int(features.shape[1]), "training_users": int(train.sum()),
        "matched_training_users": int((train & matched).sum()), "iterations": int(iterations),
        "validation": measured(joint_validation), "held_out": measured(held_out),
        "unmatched_held_out": measured(unmatched_held_out),
        "calibrated_on": "unmatched_held_out" if enough else "held_out",
        "note": "logistic regression on the brand's own encoded columns, trained locally on its labelled users, "
                "matched and unmatched, except those held out: the joint model's held-out users (among them its "
                "validation users: validation, the same users as the joint model's AUC) and a share of the unmatched labelled users (held_out "
                "counts both); calibrated on the unmatched held-out users when they hold at least "
                f"{MIN_CALIBRATION_CLASS} positives and {MIN_CALIBRATION_CLASS} negatives, else on all held-out users"}
    model = ModelFile(kind="propensity", party=party.role, encoder=state.encoder, coef=weights[:-1],
                      intercept=float(weights[-1]), training={
                          "source": BRAND_ONLY, "l2": options.l2, "run_id": party.run_id,
                          "training_users": int(train.sum()), "calibration": calibration.to_dict()})
    return BrandOnly(ids=inputs.ids[to_score], logits=logits[to_score], calibration=calibration, report=report,
                     model=model)


BRAND_ONLY_FILE = "brand_only.json"
"""The brand-only model and its calibration, beside the brand's half (``model.json``): a
model file only the brand reads, for scoring later (``protocols/propensity.md``, *Scoring
with a trained model*)."""


def save_scoring(party, model, joint_calibration, own, exact_scores):
    """Keep in the brand's folder what scoring with this model later needs: both calibration maps and its own model.

    The joint map goes into the brand's half (``model.json``, ``training.calibration``,
    with the score it maps: the joint logit with exact scores, else the logit of a rank
    percentile); the brand-only model and its map into :data:`BRAND_ONLY_FILE`. Neither
    is sent to anyone.
    """
    model.training["calibration"] = {"score": "logit" if exact_scores else "rank_logit",
                                     **joint_calibration.to_dict()}
    model.save(party.out / "model.json")
    own.model.save(party.out / BRAND_ONLY_FILE)


def merged_ranking(id_column, sources):
    """One ranking of every user to score: each source's calibrated probability, highest first.

    Parameters
    ----------
    sources : list of (name, ids, score, calibration)
        ``score`` increases with the source's own ranking.

    Equal probabilities (a flat or saturated map) keep each source's own order: the
    merged ranking restricted to one source is that source's ranking.
    """
    names, ids, scores, probabilities = [], [], [], []
    for name, source_ids, score, calibration in sources:
        names.append(np.full(len(source_ids), name, dtype=object))
        ids.append(np.asarray(source_ids, dtype=object))
        scores.append(np.asarray(score, dtype=float))
        probabilities.append(calibration.predict(score))
    score, probability = np.concatenate(scores), np.concatenate(probabilities)
    order = np.lexsort((-score, -probability))
    return pd.DataFrame({id_column: np.concatenate(ids)[order], "score": probability[order],
                         "source": np.concatenate(names)[order]})


# --- 11. propensity.finish -----------------------------------------------------------------

def finish(party, msg):
    """Undo the shuffle; rank every user to score (joint or brand only, calibrated); write the top list and the report."""
    state = party.phase("propensity")
    options, stopping = state.options, state.stopping
    values = opened_ranks(party, msg["ranks"], len(state.ranked_rows))
    order_value = np.empty(len(state.features))
    order_value[state.ranked_rows] = values
    validation, labels = state.validation, state.labels
    scored = np.flatnonzero(state.to_score)
    # The joint score of a ranked user: its rank among the ranked users as a log-odds (exact scores: its logit).
    joint_score = np.full(len(state.features), np.nan)
    joint_score[state.ranked_rows] = values if options.exact_scores else rank_logit(values)
    joint_calibration = PlattCalibration().fit(joint_score[validation], labels[validation])
    own = brand_only(party, state)
    save_scoring(party, state.model, joint_calibration, own, options.exact_scores)
    column = options.local("id_column", party.config)
    frame = merged_ranking(column, [(JOINT, state.ids[scored], joint_score[scored], joint_calibration),
                                    (BRAND_ONLY, own.ids, own.logits, own.calibration)])
    frame.to_csv(party.out / "scores.csv", index=False)
    count = options.top_size.of(len(frame))
    frame.head(count).to_csv(party.out / "top.csv", index=False)
    y_val, s_val = labels[validation], order_value[validation]
    positives, validation_auc, lift = int(y_val.sum()), auc(y_val, s_val), lift_at(y_val, s_val, 0.10)
    calibration_warnings = [f"{name} calibration: {c.warning_}" for name, c in
                            ((JOINT, joint_calibration), (BRAND_ONLY, own.calibration)) if c.warning_]
    report = {
        "matched_users": int(len(labels)), "training_users": int(state.train.sum()),
        "validation": {"users": int(validation.sum()), "positives": positives, "auc": validation_auc,
                       "auc_interval": list(auc_interval(validation_auc, positives, len(y_val) - positives)),
                       "ks": ks(y_val, s_val), "lift_at_10pct": lift,
                       "gain": dict(zip(("fraction", "gain"), (a.round(5).tolist() for a in gain_curve(y_val, s_val)))),
                       "audiences": audience_table(y_val, s_val)},
        "ranked_users": int(len(state.ranked_rows)), "scored_users": int(len(frame)),
        "scored_by_source": {JOINT: int(len(scored)), BRAND_ONLY: int(len(own.ids))},
        "counts": "ranked_users: the matched users the private ranking ordered, validation users and matched users "
                  "to score (the summary's ranked_users); scored_users: every user to score (no label), one row "
                  "each in scores.csv, by source in scored_by_source: joint (matched: the joint model's rank) and "
                  "brand only (not matched: the brand's own model)",
        "top": {"size": options.top, "count": int(count)},
        "score": "calibrated probability of a positive label, comparable across sources (Platt scaling on held-out "
                 "labelled users): joint from the joint model's "
                 + ("logit (exact scores)" if options.exact_scores else "rank among the ranked users")
                 + ", brand only from the brand's own model",
        "calibration": {"method": "Platt scaling, targets (N+ + 1)/(N+ + 2) and 1/(N- + 2)",
                        JOINT: {"score": "logit" if options.exact_scores else "logit of the mid-rank percentile",
                                "fitted_on": "the joint model's validation users", **joint_calibration.to_dict()},
                        BRAND_ONLY: {"score": "the brand-only model's logit",
                                     "fitted_on": "the brand-only model's held-out users"
                                     + (" PSI did not match" if own.report["calibrated_on"] == "unmatched_held_out"
                                        else ""),
                                     **own.calibration.to_dict()}},
        "brand_only": own.report,
        "epochs_run": int(state.optimizer.n_steps_),
        "early_stopping": {"best_epoch": int(stopping.best_epoch_), "patience": stopping.patience,
                           "validation_brier": [round(v, 6) for v in stopping.history_],
                           "enabled": stopping.enabled, "stopping_users": int(state.stopping_users.sum()),
                           "note": ("mean Brier score, at each epoch's weights, of held-out users kept apart from "
                                    "the validation users (the held-out users split in two halves), from the "
                                    "split-sigmoid approximation; the ranking uses the best epoch's weights, and the "
                                    "validation figures come from the other half, which chose nothing"
                                    if stopping.enabled else
                                    "mean Brier score of the validation users at each epoch's weights, from the "
                                    "split-sigmoid approximation, for the record only: early stopping is off under "
                                    "label DP and the last epoch's weights are kept")},
        "label_dp": None if state.label_dp is None else state.label_dp.to_dict(),
        "warnings": reliability_warnings(positives, lift, "the validation figures") + calibration_warnings,
    }
    (party.out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return Message()
