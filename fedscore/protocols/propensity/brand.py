"""Joint propensity, the brand's side: ``protocols/propensity.md``, step for step.

The brand holds the labels, its own features and its block of the model, with the
intercept. It encrypts the residual's coefficients under its own key, computes its
gradient under the media's key, decides on early stopping from a validation score only
it can read, and ranks its users to score without seeing the media's partial logits.
Section numbers are the steps of the spec's message flow.
"""

import json
import os
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import expit
from scipy.stats import rankdata

from ... import dp
from ...errors import InputError, ProtocolError
from ...he import load_context
from ...he.random import uniform
from ...kit.encoder import FeatureEncoder
from ...kit.model import ModelFile
from ...kit.release import Expected, KeyOwner
from ...metrics import audience_table, auc, gain_curve, ks, lift_at
from ...wire import Message, ciphertext, control, public, size
from ..vertical_lr import (
    BoundOptimizer,
    add_noise,
    create_key,
    encrypt_scaled,
    encrypted_products,
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
    validation = validation_split(psi.ids, labelled, options.validation_fraction, options.random_state)
    train = labelled & ~validation
    if len(np.unique(labels[train])) < 2:
        raise InputError("the matched, labelled training users hold one class only", path=inputs.table.path,
                         column=inputs.label_column)
    party.state["propensity"] = BrandState(
        options=options, ids=np.asarray(psi.ids, dtype=object), encoder=encoder, encoded=encoded,
        features=training_rows(encoded, label_dp), table_rows=inputs.table.rows, labels=np.nan_to_num(labels),
        train=train, validation=validation, to_score=~labelled, label_dp=label_dp, budget=budget,
        stopping=EarlyStopping(options.patience, int(validation.sum()), enabled=label_dp is None))
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
    brier = split_brier(z_b, state.labels, quantiles) * state.validation.astype(float)[:, None]
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
    Only the validation users and users to score are sent (not the training users),
    shuffled with a permutation drawn from the OS generator and re-randomised; the media
    learns how many, not which.
    """
    state = party.phase("propensity")
    options, stopping = state.options, state.stopping
    context = load_context(msg["public_context"], allow_weak_key=weak_keys_allowed(party))
    if context.scheme != "paillier":
        raise ProtocolError("the media's partial logits must come one Paillier ciphertext per user, to be shuffled")
    media_logits = context.load_vector(msg["media_logits"])
    if media_logits.size != len(state.features):
        raise ProtocolError(f"received {media_logits.size} encrypted scores for {len(state.features)} matched users")
    weights = kept_weights(state.optimizer, state.best_weights, stopping.best_epoch_)
    state.model = save_model(party, state.encoder, weights[:-1], float(weights[-1]), state.label_dp, {
        "l2": options.l2, "backend": options.backend, "epochs_run": state.optimizer.n_steps_,
        "best_epoch": stopping.best_epoch_, "training_users": state.sizes.training,
        "label_dp": None if state.label_dp is None else state.label_dp.to_dict()})
    state.brand_logits = state.model.logits(state.encoded)
    z_b = np.clip(state.brand_logits, -RANK_LOGIT_LIMIT, RANK_LOGIT_LIMIT)
    rows = np.flatnonzero(state.validation | state.to_score)
    if options.exact_scores:
        scale, offset = 1.0, 0.0
    else:
        low, high = RANK_SCALE_BITS
        scale = 2.0 ** (low + (high - low) * float(uniform(1)[0]))
        offset = (2.0 * float(uniform(1)[0]) - 1.0) * 2.0 ** RANK_OFFSET_BITS
    permutation = np.argsort(uniform(len(rows)), kind="stable")
    shuffled = rows[permutation]
    scores = media_logits.take(shuffled) * scale + (scale * z_b[shuffled] + offset)
    state.ranked_rows = shuffled
    return Message(scores=ciphertext(scores.to_bytes()), rows=size(len(rows)))


# --- 11. propensity.finish -----------------------------------------------------------------

def finish(party, msg):
    """Undo the shuffle; write percentiles for users to score, the top list and the report."""
    state = party.phase("propensity")
    options, stopping = state.options, state.stopping
    values = open_values(party, msg["ranks"], RANKS)
    if len(values) != len(state.ranked_rows):
        raise ProtocolError(f"received {len(values)} ranks for {len(state.ranked_rows)} ranked users")
    order_value = np.empty(len(state.features))
    order_value[state.ranked_rows] = values
    validation, labels = state.validation, state.labels
    scored = np.flatnonzero(state.to_score)
    if options.exact_scores:
        score = expit(order_value[scored])
    else:
        score = rankdata(order_value[scored]) / max(len(scored), 1)
    column = options.local("id_column", party.config)
    frame = pd.DataFrame({column: state.ids[scored], "score": score}).sort_values("score", ascending=False,
                                                                                 kind="stable")
    frame.to_csv(party.out / "scores.csv", index=False)
    count = options.top_size.of(len(frame))
    frame.head(count).to_csv(party.out / "top.csv", index=False)
    y_val, s_val = labels[validation], order_value[validation]
    report = {
        "matched_users": int(len(labels)), "training_users": int(state.train.sum()),
        "validation": {"users": int(validation.sum()), "positives": int(y_val.sum()), "auc": auc(y_val, s_val),
                       "ks": ks(y_val, s_val), "lift_at_10pct": lift_at(y_val, s_val, 0.10),
                       "gain": dict(zip(("fraction", "gain"), (a.round(5).tolist() for a in gain_curve(y_val, s_val)))),
                       "audiences": audience_table(y_val, s_val)},
        "scored_users": int(len(scored)), "top": {"size": options.top, "count": int(count)},
        "score": "calibrated probability (exact scores)" if options.exact_scores else
        "percentile of the joint model's score among the users scored (1 = highest)",
        "epochs_run": int(state.optimizer.n_steps_),
        "early_stopping": {"best_epoch": int(stopping.best_epoch_), "patience": stopping.patience,
                           "validation_brier": [round(v, 6) for v in stopping.history_],
                           "enabled": stopping.enabled,
                           "note": "mean Brier score of the validation users at each epoch's weights, from the "
                                   "split-sigmoid approximation; the ranking uses the best epoch's weights"
                                   + ("" if stopping.enabled else
                                      " (off under label DP: the last epoch's weights are kept)")},
        "label_dp": None if state.label_dp is None else state.label_dp.to_dict(),
    }
    (party.out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return Message()
