"""Joint propensity, the media's side: ``protocols/propensity.md``, step for step.

The media holds its own features and its block of the model (no intercept: the joint
model's one intercept is the brand's). It sends its centred partial logits under its
own key, computes its gradient under the brand's key over every matched user (it never
learns who is labelled, held out or to be scored), and ranks the brand's masked,
shuffled scores under a Paillier key of its own. Section numbers are the steps of the
spec's message flow.
"""

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import rankdata

from ...errors import ProtocolError
from ...he import load_context
from ...kit.encoder import FeatureEncoder
from ...kit.model import ModelFile
from ...kit.release import Expected, KeyOwner
from ...wire import Message, ciphertext, control, public, size
from ..vertical_lr import (
    BoundOptimizer,
    centred_media_logit,
    create_key,
    encrypt_scaled,
    encrypted_products,
    mask,
    masked_release_bound,
    media_logit_bound,
    media_quantiles,
    open_release,
    seal_values,
    split_coefficient_bounds,
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
    RANKS,
    RELEASE_RESERVE,
    LabelDP,
    Sizes,
    brand_gradient_bound,
    brand_gradient_product,
    encode_matched,
    kept_weights,
    label_term_bound,
    media_gradient_bound,
    rank_release_bound,
    save_model,
    training_rows,
)
from .options import PropensityOptions

BRIER_VALUES = 1
"""Values the media releases for the brand each epoch besides the brand's gradient (its
features and intercept): the validation users' summed Brier score."""


@dataclass
class MediaState:
    """What the media keeps between the steps of one run."""

    options: PropensityOptions
    encoder: FeatureEncoder
    encoded: np.ndarray
    """The matched users' encoded rows, in PSI's shared order: what the media's model file scores."""
    features: np.ndarray
    """The rows training uses: ``encoded``, clipped under label DP."""
    table_rows: int
    label_dp: LabelDP | None
    # 2. propensity.make_key
    owner: KeyOwner = None
    """The media's key pair and its release plan: the brand's gradient, once per epoch."""
    sizes: Sizes = None
    optimizer: BoundOptimizer = None
    # 3. propensity.media_logits
    peer_context: object = None
    label_mask: object = None
    label_term: np.ndarray | None = None
    """Label DP: the media's noisy part of the label aggregate, subtracted from every gradient."""
    # each epoch
    snapshots: list = field(default_factory=list)
    """The look-ahead weights of each epoch: the ones its validation score measured."""
    u: np.ndarray = None
    quantiles: np.ndarray = None
    mask: object = None
    # the ranking
    model: ModelFile = None
    media_logits: np.ndarray = None
    """The partial logits of the kept model, before clipping to the rank limit."""
    rank_owner: KeyOwner = None
    """A fresh Paillier key pair for the ranking, which releases the ranked users' order once."""


# --- 1. propensity.load --------------------------------------------------------------------

def load(party, msg):
    """Encode the media's features for the matched users (PSI's shared order)."""
    options = PropensityOptions.from_dict(msg["options"])
    _, inputs, encoder, encoded = encode_matched(party, options)
    label_dp = LabelDP.of(options)
    party.state["propensity"] = MediaState(options=options, encoder=encoder, encoded=encoded,
                                           features=training_rows(encoded, label_dp), table_rows=inputs.table.rows,
                                           label_dp=label_dp)
    return Message(features=size(encoded.shape[1]), table_rows=size(inputs.table.rows))


# --- 2. propensity.make_key ----------------------------------------------------------------

def make_key(party, msg):
    """Make the media's key pair, sized to the brand's gradients and scores it releases; set up its optimiser."""
    state = party.phase("propensity")
    options = state.options
    peer_features = int(msg["peer_features"])
    released_per_epoch = peer_features + 1 + BRIER_VALUES  # the brand's gradient with its intercept
    key = create_key(options.backend, release_budget=options.epochs * released_per_epoch + RELEASE_RESERVE,
                     paillier_key_bits=options.paillier_key_bits, allow_weak_key=weak_keys_allowed(party))
    state.owner = KeyOwner(key, {BRAND_GRADIENT: options.epochs})
    state.sizes = Sizes(matched=len(state.features), training=int(msg["training_rows"]),
                        brand_table=int(msg["peer_table_rows"]), media_table=state.table_rows,
                        brand_features=peer_features, media_features=state.features.shape[1])
    state.optimizer = BoundOptimizer(state.features, options.l2, blocks=2)
    return Message(public_context=public(key.public_context().to_bytes()))


# --- 3. propensity.media_logits ------------------------------------------------------------

def media_logits(party, msg):
    """First epoch: the brand's public key arrives; send ``[[u]]`` at the look-ahead weights.

    With label DP the brand's ``[[w ⊙ y]]`` arrives too, and the media sends its part of
    the label aggregate, ``[[X_mᵀ(w ⊙ y)]]_b`` masked, for the brand's one noisy release.
    """
    state = party.phase("propensity")
    state.peer_context = context = load_context(msg["public_context"], allow_weak_key=weak_keys_allowed(party))
    if (state.label_dp is not None) != ("labels" in msg):
        raise ProtocolError("the encrypted labels must come exactly when the run has label DP")
    extra = {}
    if state.label_dp is not None:
        product, shift, bound = encrypted_products(
            [(context.load_vector(msg["labels"]), state.features, 1.0)], bound=label_term_bound(state.sizes))
        masked_product, state.label_mask = mask(product, bound, shift)
        extra["label_term"] = ciphertext(masked_product.to_bytes())
    return Message(**_open_epoch(party, state), **extra)


def _open_epoch(party, state):
    """``[[u]]`` and ``[[u²]]`` under the media's own key, and the quantiles of ``z_m`` sealed for the brand.

    ``u`` is the media's partial logit at its look-ahead weights, clipped to the public
    :data:`~.common.MEDIA_LOGIT_LIMIT`, then centred and clipped to its quantile range
    (:func:`fedscore.protocols.vertical_lr.centred_media_logit`). The
    look-ahead weights are kept: they are the ones this epoch's validation score
    measures, and the brand may choose them as the best.
    """
    weights = state.optimizer.lookahead
    z = np.clip(state.features @ weights, -MEDIA_LOGIT_LIMIT, MEDIA_LOGIT_LIMIT)
    state.quantiles = quantiles = media_quantiles(z)
    state.u = u = centred_media_logit(z, quantiles)
    epoch = len(state.snapshots)
    state.snapshots.append(weights.copy())
    key = state.owner.key
    return {"media_logit": ciphertext(encrypt_scaled(key, u).to_bytes()),
            "media_logit_squared": ciphertext(encrypt_scaled(key, u * u).to_bytes()),
            "quantiles": ciphertext(seal_values(party, quantiles, QUANTILES, round=epoch))}


# --- 5. propensity.media_round -------------------------------------------------------------

def media_round(party, msg):
    """Release the brand's masked gradient; send the media's gradient under the brand's key, masked.

    The media's gradient is ``X_mᵀ r`` with ``r = c0 + c1 u + c2 u²`` (zero outside the
    brand's training users), computed as ``X_mᵀ[[c0]] + (X_m ⊙ u)ᵀ[[c1]] + (X_m ⊙ u²)ᵀ[[c2]]``
    with CKKS (each product one plaintext multiplication deep) or from ``[[r]]`` directly
    with Paillier (no depth limit, a third of the products). Both bounds -- the one it
    releases against and the one it masks with -- come from the sizes and its quantiles.

    With label DP, in the first epoch, the brand's noisy release of the media's part of
    the label aggregate arrives: the media unmasks it and keeps it for every epoch.
    """
    state = party.phase("propensity")
    if "label_term" in msg:
        if state.label_mask is None:
            raise ProtocolError("a label aggregate arrived that this party did not ask for")
        state.label_term = open_release(party, msg["label_term"], LABEL_TERM, state.label_mask)
        state.label_mask = None
    if state.label_dp is not None and state.label_term is None:
        raise ProtocolError("the noisy label aggregate has not arrived (label DP)")
    owner, quantiles, sizes = state.owner, state.quantiles, state.sizes
    epoch = len(state.snapshots) - 1
    u_bound = media_logit_bound(quantiles)
    scheme = owner.key.scheme
    released = owner.release(msg["brand_gradient"], Expected(
        BRAND_GRADIENT, count=sizes.brand_features + 1 + BRIER_VALUES,
        bound=masked_release_bound(scheme, brand_gradient_bound(sizes, quantiles)),
        product=brand_gradient_product(scheme, sizes, quantiles, state.label_dp)))
    blobs = msg["coefficients"]
    if len(blobs) != 3:
        raise ProtocolError(f"expected 3 encrypted coefficient vectors, got {len(blobs)}")
    c0, c1, c2 = (state.peer_context.load_vector(blob) for blob in blobs)
    features, u = state.features, state.u
    b0, b1, b2 = split_coefficient_bounds(quantiles)
    if state.peer_context.scheme == "ckks":
        terms = [(c0, features, b0), (c1, features * u[:, None], b1), (c2, features * (u * u)[:, None], b2)]
    else:
        terms = [(c0 + c1 * u + c2 * (u * u), features, b0 + b1 * u_bound + b2 * u_bound**2)]
    product, shift, product_bound = encrypted_products(terms, bound=media_gradient_bound(sizes, quantiles))
    masked_product, state.mask = mask(product, product_bound, shift)
    return Message(brand_gradient=ciphertext(seal_values(party, released, BRAND_GRADIENT, round=epoch)),
                   media_gradient=ciphertext(masked_product.to_bytes()))


# --- 7. propensity.media_update ------------------------------------------------------------

def media_update(party, msg):
    """Unmask the media's gradient and step; unless this epoch was the last, open the next one."""
    state = party.phase("propensity")
    if state.mask is None:
        raise ProtocolError("propensity.media_update without a gradient of this epoch to open: refused")
    epoch = len(state.snapshots) - 1
    label_term = 0.0 if state.label_term is None else state.label_term
    gradient = (open_release(party, msg["media_gradient"], MEDIA_GRADIENT, state.mask, round=epoch)
                - label_term) / state.sizes.training
    state.mask = None
    step = state.optimizer.step(gradient)
    reply = {"converged": control(step < CONVERGENCE_TOL)}
    if not msg["last"]:
        reply.update(_open_epoch(party, state))
    return Message(**reply)


# --- 8. propensity.rank_encrypt ------------------------------------------------------------

def rank_encrypt(party, msg):
    """Write the media's half of the model (its kept weights); encrypt each user's ``z_m`` on its own under Paillier.

    One ciphertext per matched user, so that the brand can shuffle them and choose which
    to rank unseen: CKKS packs thousands of users into the slots of one ciphertext, which
    cannot be permuted without rotation keys.
    """
    state = party.phase("propensity")
    options = state.options
    best_epoch = int(msg["best_epoch"])
    if not 0 <= best_epoch < len(state.snapshots):
        raise ProtocolError(f"best epoch {best_epoch} out of range")
    weights = kept_weights(state.optimizer, state.snapshots[best_epoch], best_epoch)
    state.model = save_model(party, state.encoder, weights, None, state.label_dp, {
        "l2": options.l2, "backend": options.backend, "epochs_run": state.optimizer.n_steps_,
        "best_epoch": best_epoch, "label_dp": None if state.label_dp is None else state.label_dp.to_dict(),
        # what both halves record alike: the model's identity when a later run scores with it
        "run_id": party.run_id, "matched_users": len(state.encoded), "exact_scores": options.exact_scores})
    state.media_logits = state.model.logits(state.encoded)
    state.rank_owner, reply = encrypt_for_ranking(party, state.media_logits, options.paillier_key_bits)
    return reply


def encrypt_for_ranking(party, media_logits, paillier_key_bits=None):
    """Step 8 for any job that ranks with the media's half: a fresh Paillier key, each ``z_m`` encrypted on its own.

    Each partial logit is clipped to :data:`~.common.RANK_LOGIT_LIMIT` first; the key's
    plan is one release (:data:`~.common.RANKS`). Returns the key owner and the reply.
    """
    z = np.clip(media_logits, -RANK_LOGIT_LIMIT, RANK_LOGIT_LIMIT)
    key = create_key("paillier", paillier_key_bits=paillier_key_bits, allow_weak_key=weak_keys_allowed(party))
    return KeyOwner(key, {RANKS: 1}), Message(public_context=public(key.public_context().to_bytes()),
                                              media_logits=ciphertext(key.encrypt(z).to_bytes()))


# --- 10. propensity.rank_reveal ------------------------------------------------------------

def rank_reveal(party, msg):
    """Decrypt the shuffled, affinely masked scores and rank them (or, with exact scores, return them)."""
    state = party.phase("propensity")
    sizes = state.sizes
    ranked = sizes.matched - sizes.training  # the validation users and the users to score
    return Message(ranks=ciphertext(reveal_ranks(party, state.rank_owner, msg["scores"], ranked,
                                                 state.options.exact_scores)))


def reveal_ranks(party, owner, scores, count, exact_scores):
    """Step 10 for any job that ranks: release exactly ``count`` masked scores through the ranking key's check.

    Returns the ranks (with exact scores, the decrypted values) sealed for the brand.
    """
    released = owner.release(scores, Expected(RANKS, count=count, bound=rank_release_bound(exact_scores)))
    values = np.array([math.ldexp(float(v), -2 * owner.key.precision_bits) for v in released])
    return seal_values(party, values if exact_scores else rankdata(values), RANKS)
