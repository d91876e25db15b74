"""Joint propensity scoring: ``protocols/propensity.md``, step for step.

Vertical logistic regression on the brand's and the media's features for the users
both hold, with the labels at the brand, each party holding its own key pair and the
coordinator none; then a private ranking of the brand's users that are still to be
scored.

Phases (the coordinator function :func:`run_propensity`):

0. ``psi`` (both mode): both parties hold the matched users in one shared row order.
1. ``propensity.load`` (both): encode features; the brand parses labels and splits its
   labelled users into training and validation users. Nothing about that split leaves
   the brand: the media computes over every matched user, and rows that are not
   training rows get zero weight inside the brand's encrypted values.
2. ``propensity.make_key`` (both): a key pair each, with a CKKS release budget sized to
   what the other party will ask it to release.
3. Per epoch (one full-batch update of both blocks: each message carries the whole
   epoch, which is what Flower deployment latency asks for):
   ``propensity.media_logits`` / ``propensity.media_update`` send ``[[u]]_m, [[u²]]_m``
   (the media's centred, clipped partial logit) and the quantiles of ``z_m`` sealed for
   the brand; ``propensity.brand_round`` sends ``[[c0]]_b, [[c1]]_b, [[c2]]_b`` (the
   residual's coefficients, see :func:`fedscore.vertical_lr.split_sigmoid`) and, under
   the media's key and masked, the brand's gradient with the validation Brier score
   appended; ``propensity.media_round`` releases them and sends the media's gradient
   under the brand's key, masked; ``propensity.brand_update`` unmasks, steps, decides
   on early stopping, and releases the media's gradient; ``propensity.media_update``
   unmasks and steps.
4. Ranking with the best epoch's weights: ``propensity.rank_encrypt`` (media) encrypts
   ``z_m`` per user under a Paillier key of its own; ``propensity.rank_mask`` (brand)
   adds ``z_b``, applies an order-preserving random affine map and a random permutation
   to the users it wants ranked (validation users and users to score);
   ``propensity.rank_reveal`` (media) decrypts and ranks; ``propensity.finish`` (brand)
   undoes the permutation and writes scores (percentiles), the top list and the report.

Every bound a key owner needs to release a masked value is computed by both parties from
sizes they exchange and from the quantiles both hold, so no bound crosses in a message.

With label DP (``label_dp_epsilon``) the labels enter training once: both parties clip
their feature rows, the brand sends ``[[w ⊙ y]]`` with its public key, and the label
aggregate ``[X_b, 1, X_m]ᵀ(w ⊙ y)`` is released once with Gaussian noise (the media's part
through the media's masked product in the first epoch). Every epoch's residual is then
label-free and each party subtracts its noisy part of the aggregate from its gradient,
so everything the media sees is post-processing of that one release; early stopping
on validation labels is off.
"""

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from . import dp
from .data import FeatureEncoder, as_table_file, parse_labels, read_table, validate_ids
from .errors import InputError, ProtocolError
from .he import load_context
from .he._random import uniform
from .metrics import audience_table, auc, gain_curve, ks, lift_at
from .params import PSI_MIN_INTERSECTION
from .psi import intersect
from .runtime import party_step
from .runtime.runner import run_job
from .vertical_lr import (
    DEFAULT_L2,
    BoundOptimizer,
    centred_media_logit,
    connect_channel,
    create_key,
    encoded_column_bound,
    encrypt_scaled,
    encrypted_products,
    mask,
    masked_release_bound,
    media_logit_bound,
    media_quantiles,
    message_bound,
    open_channel,
    open_values,
    release,
    scaled_bound,
    seal_values,
    split_brier,
    split_coefficient_bounds,
    split_product_bound,
    split_sigmoid,
    unmask,
    weak_keys_allowed,
)
from .wire import Message, ciphertext, control, public, size

BRAND, MEDIA = "brand", "media"
BACKENDS = ("ckks", "paillier")

DEFAULT_EPOCHS = 20
"""Full-batch epochs at most. With two-block bounded-Hessian steps and momentum (see
:class:`fedscore.vertical_lr.BoundOptimizer`) 20 epochs came within 0.0005 AUC of the
converged model on bank marketing and default_credit, measured centrally."""

CONVERGENCE_TOL = 1e-4
"""Training stops early when both parties' last steps are shorter than this (L2 norm of
the weight change): each party reports only whether its own step was."""

DEFAULT_PATIENCE = 3
"""Early stopping: training stops once the validation Brier score has not improved for
this many epochs, and the weights of the best epoch are kept (Prechelt, "Early stopping
-- but when?", 1998, uses patience criteria of this kind; 3 of at most 20 full-batch
epochs tolerates the short plateaus momentum produces)."""

EARLY_STOPPING_MIN_DELTA = 1e-5
"""An epoch improves on the best one when its mean validation Brier score is lower by
more than this: above the release noise of the score for a few hundred validation users
under CKKS, and well under the 1e-3 change one epoch makes while the model still learns."""

VALIDATION_FRACTION = 0.2
"""Share of the brand's labelled matched users kept out of training, for early stopping
and the report."""

DEFAULT_TOP = "10%"

RELEASE_RESERVE = 64
"""Extra values in a CKKS key's release budget beyond the releases planned."""

RANK_SCALE_BITS = (4, 16)
"""The order-preserving map ``a z + b`` draws ``log2 a`` uniformly in ``[4, 16]`` (``a``
log-uniform in ``[2^4, 2^16]``, so that every octave of scale is as likely and the
spread of the values the media decrypts does not pin the scale down) and ``b`` uniformly
in ``±2^RANK_OFFSET_BITS``."""

RANK_OFFSET_BITS = 24

RANK_LOGIT_LIMIT = 2.0**6
"""Each partial logit is clipped to ``±64`` before ranking, so that the bound the media
decrypts the masked scores against is a public constant. ``σ(±64)`` is within 1e-27 of
0 or 1: only users whose partial logit is that extreme can change places."""


# --- options ------------------------------------------------------------------------------

def check_options(options):
    opts = {"id_column": "id", "label_column": "y", "id_kind": "auto", "backend": "ckks", "epochs": DEFAULT_EPOCHS,
            "patience": DEFAULT_PATIENCE, "l2": DEFAULT_L2, "top": DEFAULT_TOP, "exact_scores": False,
            "validation_fraction": VALIDATION_FRACTION, "min_intersection": PSI_MIN_INTERSECTION,
            "random_state": None, "paillier_key_bits": None, "label_dp_epsilon": None,
            "label_dp_delta": dp.DEFAULT_DELTA}
    unknown = set(options) - set(opts)
    if unknown:
        raise InputError(f"unknown propensity option(s): {', '.join(sorted(unknown))}")
    opts.update(options)
    if opts["backend"] not in BACKENDS:
        raise InputError(f"backend must be one of {', '.join(BACKENDS)}, not {opts['backend']!r}")
    if int(opts["epochs"]) < 1:
        raise InputError(f"epochs must be at least 1, not {opts['epochs']!r}")
    if int(opts["patience"]) < 1:
        raise InputError(f"patience must be at least 1, not {opts['patience']!r}")
    if not 0 < float(opts["validation_fraction"]) < 1:
        raise InputError("validation_fraction must be in (0, 1)")
    parse_top(opts["top"])
    if opts["label_dp_epsilon"] is not None:
        dp.noise_multiplier(float(opts["label_dp_epsilon"]), 1, float(opts["label_dp_delta"]))  # validates both
    return opts


def parse_top(text):
    """``"10%"`` → ``("fraction", 0.1)``; ``"500"`` → ``("count", 500)``."""
    text = str(text).strip()
    try:
        if text.endswith("%"):
            value = float(text[:-1]) / 100
            if not 0 < value <= 1:
                raise ValueError
            return "fraction", value
        value = int(text)
        if value < 1:
            raise ValueError
        return "count", value
    except ValueError:
        raise InputError(f"--top {text!r} is neither a percentage in (0, 100] nor a positive count") from None


# --- coordinator --------------------------------------------------------------------------

def run_propensity(coordinator, options):
    """The ``propensity`` job. Returns the public summary; the report is the brand's."""
    opts = check_options(options)
    psi_summary = intersect(coordinator, mode="both", id_column=opts["id_column"], id_kind=opts["id_kind"],
                            min_intersection=int(opts["min_intersection"]))
    logits = setup(coordinator, opts)
    epochs_run, stopped_early = 0, False
    for _ in range(int(opts["epochs"])):
        logits, epoch = train_epoch(coordinator, logits)
        epochs_run += 1
        if epoch["stop"] or epoch["converged"]:
            stopped_early = bool(epoch["stop"])
            break
    ranking = coordinator.call(MEDIA, "propensity.rank_encrypt", Message(
        paillier_key_bits=public(opts["paillier_key_bits"]), best_epoch=control(epoch["best_epoch"])))
    masked_scores = coordinator.call(BRAND, "propensity.rank_mask", Message(
        public_context=public(ranking["public_context"]), media_logits=ciphertext(ranking["media_logits"]),
        exact_scores=public(bool(opts["exact_scores"]))))
    revealed = coordinator.call(MEDIA, "propensity.rank_reveal", Message(
        scores=ciphertext(masked_scores["scores"]), exact_scores=public(bool(opts["exact_scores"]))))
    coordinator.call(BRAND, "propensity.finish", Message(
        ranks=ciphertext(revealed["ranks"]), top=public(str(opts["top"])),
        exact_scores=public(bool(opts["exact_scores"]))))
    label_dp = None
    if opts["label_dp_epsilon"] is not None:
        label_dp = {"epsilon": float(opts["label_dp_epsilon"]), "delta": float(opts["label_dp_delta"]),
                    "releases": 1}
    return {"job": "propensity", "psi": psi_summary, "backend": opts["backend"], "epochs_run": epochs_run,
            "epochs": int(opts["epochs"]), "best_epoch": int(epoch["best_epoch"]), "stopped_early": stopped_early,
            "exact_scores": bool(opts["exact_scores"]), "ranked_rows": masked_scores["rows"],
            "label_dp": label_dp}


def setup(coordinator, opts):
    """Load and encode both tables, make both key pairs; return the media's first ``[[u]]`` message.

    With label DP the brand's key reply carries ``[[w ⊙ y]]``, which goes to the media
    with the brand's public key.
    """
    label_dp = {}
    if opts["label_dp_epsilon"] is not None:
        label_dp = {"label_dp_epsilon": public(float(opts["label_dp_epsilon"])),
                    "label_dp_delta": public(float(opts["label_dp_delta"]))}
    load_request = Message(id_column=public(opts["id_column"]), label_column=public(opts["label_column"]),
                           validation_fraction=public(float(opts["validation_fraction"])),
                           random_state=public(opts["random_state"]), l2=public(float(opts["l2"])),
                           patience=public(int(opts["patience"])), **label_dp)
    loaded = coordinator.exchange({BRAND: ("propensity.load", load_request),
                                   MEDIA: ("propensity.load", load_request)})
    keys = coordinator.exchange({
        role: ("propensity.make_key", Message(
            backend=public(opts["backend"]), paillier_key_bits=public(opts["paillier_key_bits"]),
            peer_features=size(loaded[other]["features"]), peer_table_rows=size(loaded[other]["table_rows"]),
            epochs=size(int(opts["epochs"])), channel_key=public(loaded[other]["channel_key"]),
            training_rows=size(loaded[BRAND]["training_rows"])))
        for role, other in ((BRAND, MEDIA), (MEDIA, BRAND))
    })
    labels = {"labels": ciphertext(keys[BRAND]["labels"])} if "labels" in keys[BRAND] else {}
    first = coordinator.exchange({
        MEDIA: ("propensity.media_logits", Message(public_context=public(keys[BRAND]["public_context"]), **labels)),
        BRAND: ("propensity.peer_key", Message(public_context=public(keys[MEDIA]["public_context"]))),
    })
    return first[MEDIA]


def train_epoch(coordinator, logits):
    """One full-batch epoch: four calls, each party's block stepped once.

    Returns the media's next ``[[u]]`` message and ``{"converged", "stop", "best_epoch"}``:
    whether both parties' steps were tiny, whether the brand's early stopping ended
    training, and the epoch whose weights are kept.
    """
    label_term = {"label_term": ciphertext(logits["label_term"])} if "label_term" in logits else {}
    brand = coordinator.call(BRAND, "propensity.brand_round", Message(
        media_logit=ciphertext(logits["media_logit"]), media_logit_squared=ciphertext(logits["media_logit_squared"]),
        quantiles=ciphertext(logits["quantiles"]), **label_term))
    label_term = {"label_term": ciphertext(brand["label_term"])} if "label_term" in brand else {}
    media = coordinator.call(MEDIA, "propensity.media_round", Message(
        coefficients=ciphertext(brand["coefficients"]), brand_gradient=ciphertext(brand["gradient"]), **label_term))
    brand = coordinator.call(BRAND, "propensity.brand_update", Message(
        brand_gradient=ciphertext(media["brand_gradient"]), media_gradient=ciphertext(media["media_gradient"])))
    logits = coordinator.call(MEDIA, "propensity.media_update", Message(
        media_gradient=ciphertext(brand["media_gradient"])))
    return logits, {"converged": bool(brand["converged"] and logits["converged"]), "stop": bool(brand["stop"]),
                    "best_epoch": int(brand["best_epoch"])}


# --- both parties ---------------------------------------------------------------------------

@party_step("propensity.load")
def load(party, msg):
    """Encode this party's features for the matched users (PSI order); the brand also splits labels."""
    psi = party.state.get("psi")
    if not psi or psi.get("mode") != "both":
        raise ProtocolError("propensity step out of order: PSI (both mode) has not run")
    path = party.config["data"]
    column = party.config.get("id_column") or msg["id_column"]
    required = [column]
    label_column = None
    if party.role == BRAND:
        label_column = party.config.get("label_column") or msg["label_column"]
        required.append(label_column)
    frame = read_table(path, columns=required)
    validate_ids(frame, column, path)
    rows = np.asarray(psi["rows"], dtype=np.int64)
    feature_columns = [c for c in frame.columns if c not in required]
    if not feature_columns:
        raise InputError("no feature columns besides the ID" + (" and label" if label_column else ""), path=path)
    encoder = FeatureEncoder(path).fit(frame, feature_columns)
    features = encoder.transform(frame.iloc[rows])
    label_dp = label_dp_settings(msg)
    if label_dp:
        features = dp.clip_rows(features, dp.LABEL_DP_CLIP_NORM)
    state = party.state["propensity"] = {"features": features, "encoder": encoder.to_dict(), "column": column,
                                         "ids": np.asarray(psi["ids"], dtype=object), "l2": float(msg["l2"]),
                                         "table_rows": len(frame), "label_dp": label_dp}
    reply = {"features": size(features.shape[1]), "table_rows": size(len(frame)),
             "channel_key": public(open_channel(party))}
    if party.role == BRAND:
        # Every row's label is checked, matched or not, so an error names the row of the file.
        labels = parse_labels(frame, label_column, path)[rows]
        validation = validation_split(state["ids"], ~np.isnan(labels), float(msg["validation_fraction"]),
                                      msg["random_state"])
        train = ~np.isnan(labels) & ~validation
        if len(np.unique(labels[train])) < 2:
            raise InputError("the matched, labelled training users hold one class only", path=path,
                             column=label_column)
        state.update(labels=np.nan_to_num(labels), train=train, validation=validation, to_score=np.isnan(labels),
                     stopping=EarlyStopping(int(msg["patience"]), int(validation.sum()), enabled=not label_dp))
        reply["training_rows"] = size(int(train.sum()))
    return Message(**reply)


def label_dp_settings(msg):
    """The run's label-DP parameters (empty without label DP), the same at both parties.

    One Gaussian release of the label aggregate ``[X_b, 1, X_m]ᵀ(w ⊙ y)``: with both
    parties' rows clipped to ``C`` (:data:`fedscore.dp.LABEL_DP_CLIP_NORM`), changing one
    user's label moves it by at most ``sqrt(C² + 1 + C²)`` in L2 norm, the sensitivity.
    """
    if "label_dp_epsilon" not in msg:
        return {}
    epsilon, delta = float(msg["label_dp_epsilon"]), float(msg["label_dp_delta"])
    sensitivity = math.sqrt(2 * dp.LABEL_DP_CLIP_NORM**2 + 1)
    multiplier = dp.noise_multiplier(epsilon, 1, delta)
    return {"epsilon": epsilon, "delta": delta, "clip_norm": dp.LABEL_DP_CLIP_NORM, "sensitivity": sensitivity,
            "noise_multiplier": multiplier, "noise_std": multiplier * sensitivity, "releases": 1}


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
    mask_ = np.zeros(len(ids), dtype=bool)
    mask_[chosen] = True
    return mask_


@party_step("propensity.make_key")
def make_key(party, msg):
    """Make this party's key pair, sized to what it releases; record the sizes every bound derives from."""
    state = party.state["propensity"]
    connect_channel(party, msg["channel_key"])
    budget = int(msg["epochs"]) * released_per_epoch(party.role, int(msg["peer_features"])) + RELEASE_RESERVE
    label_dp = state["label_dp"]
    if label_dp and party.role == BRAND:
        budget += int(msg["peer_features"])  # the media's part of the label aggregate, released once
    key = create_key(msg["backend"], release_budget=budget, paillier_key_bits=msg["paillier_key_bits"],
                     allow_weak_key=weak_keys_allowed(party))
    features = state["features"]
    tables = {party.role: state["table_rows"], _peer(party.role): int(msg["peer_table_rows"])}
    state.update(key=key, n_train=int(msg["training_rows"]),
                 sizes={"matched": len(features), "training": int(msg["training_rows"]),
                        "brand_table": tables[BRAND], "media_table": tables[MEDIA]})
    reply = {"public_context": public(key.public_context().to_bytes())}
    if party.role == BRAND:
        optimizer = BoundOptimizer(features[state["train"]], state["l2"], intercept=True, blocks=2)
        if label_dp:
            trained_labels = state["train"] * state["labels"]
            own_part = BoundOptimizer.design(features, True).T @ trained_labels
            state["label_term"] = own_part + dp.gaussian_noise(label_dp["noise_std"], own_part.size)
            reply["labels"] = ciphertext(encrypt_scaled(key, trained_labels).to_bytes())
    else:
        optimizer = BoundOptimizer(features, state["l2"], blocks=2)
    state["optimizer"] = optimizer
    return Message(**reply)


def released_per_epoch(role, peer_features):
    """Values this party's key releases per epoch: the media releases the brand's gradient
    (features and intercept) and the validation Brier score; the brand, the media's gradient."""
    return peer_features + 2 if role == MEDIA else peer_features


def brand_gradient_bound(sizes, quantiles):
    """Public bound on the brand's masked release: its gradient and the validation Brier score.

    The gradient's columns are brand features over training users (:func:`
    fedscore.vertical_lr.encoded_column_bound`), the Brier column is at most one per
    matched user; the coefficients and ``u`` are bounded from the quantiles.
    """
    column = max(encoded_column_bound(sizes["training"], sizes["brand_table"]), sizes["matched"])
    return split_product_bound(column, quantiles)


def media_gradient_bound(sizes, quantiles):
    """Public bound on the media's gradient: media features over every matched user."""
    return split_product_bound(encoded_column_bound(sizes["matched"], sizes["media_table"]), quantiles)


def label_term_bound(sizes):
    """Public bound on the media's part of the label aggregate ``X_mᵀ(w ⊙ y)``, with ``w ⊙ y`` in {0, 1}."""
    return encoded_column_bound(sizes["matched"], sizes["media_table"])


def kept_weights(optimizer, evaluated, best_epoch):
    """The weights a party's block of the model keeps after training.

    ``evaluated`` are the look-ahead weights the best epoch's validation score measured.
    When that epoch is the last one trained, the score was still improving and its step
    is kept too (the weights after it, which no score measured); otherwise training went
    on past the best epoch and its evaluated weights are restored. Both parties apply
    the rule to the same best epoch, so their blocks stay from the same model.
    """
    return optimizer.weights_ if best_epoch == optimizer.n_steps_ - 1 else evaluated


def _peer(role):
    return MEDIA if role == BRAND else BRAND


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


# --- media steps ----------------------------------------------------------------------------

@party_step("propensity.media_logits")
def media_logits(party, msg):
    """First epoch: the brand's public key arrives; send ``[[u]]`` at the look-ahead weights.

    With label DP the brand's ``[[w ⊙ y]]`` arrives too, and the media sends its part of
    the label aggregate, ``[[X_mᵀ(w ⊙ y)]]_b`` masked, for the brand's one noisy release.
    """
    state = party.state["propensity"]
    context = state["peer_context"] = load_context(msg["public_context"], allow_weak_key=weak_keys_allowed(party))
    state["snapshots"] = []
    extra = {}
    if bool(state["label_dp"]) != ("labels" in msg):
        raise ProtocolError("the encrypted labels must come exactly when the run has label DP")
    if state["label_dp"]:
        product, shift, bound = encrypted_products([(context.load_vector(msg["labels"]), state["features"], 1.0)],
                                                   bound=label_term_bound(state["sizes"]))
        masked_product, state["label_mask"], _ = mask(product, bound)
        state["label_shift"] = shift
        extra["label_term"] = ciphertext(masked_product.to_bytes())
    return _logits_message(party, **extra)


def _logits_message(party, **extra):
    """``[[u]]`` and ``[[u²]]`` under the media's own key, and the quantiles of ``z_m`` sealed for the brand.

    ``u`` is the media's partial logit at its look-ahead weights, centred and clipped to
    its quantile range (:func:`fedscore.vertical_lr.centred_media_logit`). The
    look-ahead weights are kept: they are the ones this epoch's validation score
    measures, and the brand may choose them as the best.
    """
    state = party.state["propensity"]
    weights = state["optimizer"].lookahead
    z = state["features"] @ weights
    quantiles = media_quantiles(z)
    state.update(u=centred_media_logit(z, quantiles), quantiles=quantiles)
    epoch = len(state["snapshots"])
    state["snapshots"].append(weights.copy())
    key = state["key"]
    u = state["u"]
    return Message(media_logit=ciphertext(encrypt_scaled(key, u).to_bytes()),
                   media_logit_squared=ciphertext(encrypt_scaled(key, u * u).to_bytes()),
                   quantiles=ciphertext(seal_values(party, quantiles, _quantile_label(epoch))), **extra)


def _quantile_label(epoch):
    """The peer-channel label of an epoch's quantiles: a payload cannot be replayed into another epoch."""
    return f"propensity.quantiles.{epoch}"


@party_step("propensity.media_round")
def media_round(party, msg):
    """Release the brand's masked gradient; send the media's gradient under the brand's key, masked.

    The media's gradient is ``X_mᵀ r`` with ``r = c0 + c1 u + c2 u²`` (zero outside the
    brand's training users), computed as ``X_mᵀ[[c0]] + (X_m ⊙ u)ᵀ[[c1]] + (X_m ⊙ u²)ᵀ[[c2]]``
    with CKKS (each product one plaintext multiplication deep) or from ``[[r]]`` directly
    with Paillier (no depth limit, a third of the products). Both bounds -- the one it
    releases against and the one it masks with -- come from the sizes and its quantiles.
    """
    state = party.state["propensity"]
    if "label_term" in msg:
        if "label_mask" not in state:
            raise ProtocolError("a label aggregate arrived that this party did not ask for")
        released = open_values(party, msg["label_term"], "propensity.label_term")
        state["label_term"] = unmask(released, state.pop("label_mask"), state.pop("label_shift"))
    if state["label_dp"] and "label_term" not in state:
        raise ProtocolError("the noisy label aggregate has not arrived (label DP)")
    key, quantiles, sizes = state["key"], state["quantiles"], state["sizes"]
    u_bound = media_logit_bound(quantiles)
    released = release(key, key.load_vector(msg["brand_gradient"]),
                       masked_release_bound(key.scheme, brand_gradient_bound(sizes, quantiles)),
                       message_bound(key.scheme, max(u_bound, u_bound**2)))
    context = state["peer_context"]
    blobs = msg["coefficients"]
    if len(blobs) != 3:
        raise ProtocolError(f"expected 3 encrypted coefficient vectors, got {len(blobs)}")
    c0, c1, c2 = (context.load_vector(blob) for blob in blobs)
    features, u = state["features"], state["u"]
    b0, b1, b2 = split_coefficient_bounds(quantiles)
    if context.scheme == "ckks":
        terms = [(c0, features, b0), (c1, features * u[:, None], b1), (c2, features * (u * u)[:, None], b2)]
    else:
        terms = [(c0 + c1 * u + c2 * (u * u), features, b0 + b1 * u_bound + b2 * u_bound**2)]
    product, shift, product_bound = encrypted_products(terms, bound=media_gradient_bound(sizes, quantiles))
    masked_product, state["mask"], _ = mask(product, product_bound)
    state["shift"] = shift
    return Message(brand_gradient=ciphertext(seal_values(party, released, "propensity.media_round")),
                   media_gradient=ciphertext(masked_product.to_bytes()))


@party_step("propensity.media_update")
def media_update(party, msg):
    """Unmask the media's gradient, step, and send ``[[u]]`` for the next epoch."""
    state = party.state["propensity"]
    released = open_values(party, msg["media_gradient"], "propensity.brand_update")
    gradient = (unmask(released, state.pop("mask"), state["shift"]) - state.get("label_term", 0.0)) / state["n_train"]
    step = state["optimizer"].step(gradient)
    return _logits_message(party, converged=control(step < CONVERGENCE_TOL))


@party_step("propensity.rank_encrypt")
def rank_encrypt(party, msg):
    """Write the media's model (the best epoch's weights); encrypt each user's ``z_m`` on its own under Paillier.

    One ciphertext per user, so that the brand can shuffle them: CKKS packs thousands of
    users into the slots of one ciphertext, which cannot be permuted without rotation keys.
    """
    state = party.state["propensity"]
    best_epoch = int(msg["best_epoch"])
    if not 0 <= best_epoch < len(state["snapshots"]):
        raise ProtocolError(f"best epoch {best_epoch} out of range")
    weights = kept_weights(state["optimizer"], state["snapshots"][best_epoch], best_epoch)
    encoder = state["encoder"]
    model = {"kind": "propensity", "party": "media", "feature_names": encoder["feature_names"],
             "coef": weights.tolist(), "encoder": encoder, "dp_clip_norm": _clip_norm(state)}
    (Path(party.config["out"]) / "model.json").write_text(json.dumps(model, indent=2) + "\n")
    z = np.clip(state["features"] @ weights, -RANK_LOGIT_LIMIT, RANK_LOGIT_LIMIT)
    key = create_key("paillier", paillier_key_bits=msg["paillier_key_bits"], allow_weak_key=weak_keys_allowed(party))
    state["rank_key"] = key
    blobs = [key.encrypt([value]).to_bytes() for value in z]
    return Message(public_context=public(key.public_context().to_bytes()), media_logits=ciphertext(blobs))


def rank_release_bound(exact_scores):
    """Public bound on ``|a (z_b + z_m) + b|`` with both partial logits clipped to :data:`RANK_LOGIT_LIMIT`."""
    if exact_scores:
        return 2 * RANK_LOGIT_LIMIT
    return 2.0 ** RANK_SCALE_BITS[1] * 2 * RANK_LOGIT_LIMIT + 2.0 ** RANK_OFFSET_BITS


@party_step("propensity.rank_reveal")
def rank_reveal(party, msg):
    """Decrypt the shuffled, affinely masked scores and rank them (or, with exact scores, return them)."""
    key = party.state["propensity"]["rank_key"]
    bound = rank_release_bound(bool(msg["exact_scores"]))
    values = np.array([key.decrypt_release(key.load_vector(blob), bound)[0] for blob in msg["scores"]])
    result = values if msg["exact_scores"] else rankdata(values)
    return Message(ranks=ciphertext(seal_values(party, result, "propensity.rank_reveal")))


# --- brand steps ----------------------------------------------------------------------------

@party_step("propensity.peer_key")
def peer_key(party, msg):
    """The brand receives the media's public key."""
    party.state["propensity"]["peer_context"] = load_context(msg["public_context"],
                                                            allow_weak_key=weak_keys_allowed(party))
    return Message()


@party_step("propensity.brand_round")
def brand_round(party, msg):
    """Send the residual's coefficients under the brand's key, and its gradient and validation score under the media's.

    With ``z_b`` the brand's partial logit at its look-ahead weights and ``a0, a1, a2``
    from :func:`fedscore.vertical_lr.split_sigmoid`, the residual of user ``i`` is
    ``r_i = c0_i + c1_i u_i + c2_i u_i²`` with ``c0 = w (a0 - y)``, ``c1 = w a1``,
    ``c2 = w a2``, where ``w`` is 1 for training users and 0 for the others (validation
    users, users to score): the media computes over every matched user and never learns
    which are which. The brand's gradient ``X_bᵀ r`` is computed under the media's key from
    ``[[u]]`` and ``[[u²]]``, with one more output: ``Σ v_i (d0_i + d1_i u_i + d2_i u_i²)``,
    the validation users' (``v_i = 1``) Brier score from
    :func:`fedscore.vertical_lr.split_brier`, at no extra message.
    """
    state = party.state["propensity"]
    context = state["peer_context"]
    epoch = state["optimizer"].n_steps_
    quantiles = open_values(party, msg["quantiles"], _quantile_label(epoch))
    if quantiles.ndim != 1 or len(quantiles) < 3 or not np.all(np.isfinite(quantiles)):
        raise ProtocolError("the media's logit quantiles are malformed")
    design = BoundOptimizer.design(state["features"], True)
    lookahead = state["optimizer"].lookahead
    z_b = design @ lookahead
    weight = state["train"].astype(float)
    coefficients = split_sigmoid(z_b, quantiles) * weight[:, None]
    label_dp = state["label_dp"]
    if not label_dp:
        coefficients[:, 0] -= weight * state["labels"]
    reply = {}
    if ("label_term" in msg) != (bool(label_dp) and epoch == 0):
        raise ProtocolError("the media's label aggregate must come exactly once, in the first epoch of a label-DP run")
    if "label_term" in msg:
        reply["label_term"] = ciphertext(seal_values(party, _release_label_term(state, msg["label_term"]),
                                                     "propensity.label_term"))
    brier = split_brier(z_b, state["labels"], quantiles) * state["validation"].astype(float)[:, None]
    u_bound = media_logit_bound(quantiles)
    b0, b1, b2 = split_coefficient_bounds(quantiles)
    u, u_squared = context.load_vector(msg["media_logit"]), context.load_vector(msg["media_logit_squared"])
    product, shift, bound = encrypted_products(
        [(u, np.column_stack([design * coefficients[:, 1:2], brier[:, 1]]), u_bound),
         (u_squared, np.column_stack([design * coefficients[:, 2:3], brier[:, 2]]), u_bound**2)],
        bound=brand_gradient_bound(state["sizes"], quantiles),
        plain=np.append(design.T @ coefficients[:, 0], brier[:, 0].sum()))
    masked_product, state["mask"], _ = mask(product, bound)
    state.update(shift=shift, quantiles=quantiles, evaluated=lookahead.copy())
    key = state["key"]
    encrypted = [encrypt_scaled(key, coefficients[:, k]).to_bytes() for k in range(3)]
    return Message(coefficients=ciphertext(encrypted), gradient=ciphertext(masked_product.to_bytes()), **reply)


def _release_label_term(state, blob):
    """Release the media's masked part of the label aggregate with the label-DP Gaussian noise.

    The noise is added to the masked value, which is the same as adding it to the
    aggregate; it carries the aggregate's scale ``2^shift``, which the brand recomputes
    from the public bound.
    """
    key, label_dp = state["key"], state["label_dp"]
    bound = label_term_bound(state["sizes"])
    values = release(key, key.load_vector(blob), masked_release_bound(key.scheme, bound),
                     message_bound(key.scheme, 1.0))
    shift, _ = scaled_bound(key.scheme, bound)
    return values + dp.gaussian_noise(label_dp["noise_std"] * 2.0**shift, values.size)


@party_step("propensity.brand_update")
def brand_update(party, msg):
    """Unmask the brand's gradient and validation score, step, decide on early stopping; release the media's gradient."""
    state = party.state["propensity"]
    released = open_values(party, msg["brand_gradient"], "propensity.media_round")
    values = unmask(released, state.pop("mask"), state["shift"])
    stopping = state["stopping"]
    if stopping.update(values[-1]):
        state["best_weights"] = state.pop("evaluated")
    step = state["optimizer"].step((values[:-1] - state.get("label_term", 0.0)) / state["n_train"])
    key, quantiles = state["key"], state["quantiles"]
    media_gradient = release(key, key.load_vector(msg["media_gradient"]),
                             masked_release_bound(key.scheme, media_gradient_bound(state["sizes"], quantiles)),
                             message_bound(key.scheme, max(split_coefficient_bounds(quantiles))))
    return Message(media_gradient=ciphertext(seal_values(party, media_gradient, "propensity.brand_update")),
                   converged=control(step < CONVERGENCE_TOL), stop=control(stopping.stop),
                   best_epoch=control(stopping.best_epoch_))


@party_step("propensity.rank_mask")
def rank_mask(party, msg):
    """Add ``z_b``, map ``z → a z + b`` (``a > 0``) and shuffle, for the validation users and users to score.

    Both partial logits are those of the best epoch, each clipped to
    :data:`RANK_LOGIT_LIMIT`. Only the validation users and users to score are sent
    (not the training users), shuffled with a permutation drawn from the OS generator;
    the media learns how many, not which.
    """
    state = party.state["propensity"]
    context = load_context(msg["public_context"], allow_weak_key=weak_keys_allowed(party))
    blobs = msg["media_logits"]
    if len(blobs) != len(state["features"]):
        raise ProtocolError(f"received {len(blobs)} encrypted scores for {len(state['features'])} matched users")
    weights = kept_weights(state["optimizer"], state["best_weights"], state["stopping"].best_epoch_)
    z_b = np.clip(BoundOptimizer.design(state["features"], True) @ weights, -RANK_LOGIT_LIMIT, RANK_LOGIT_LIMIT)
    rows = np.flatnonzero(state["validation"] | state["to_score"])
    if msg["exact_scores"]:
        scale, offset = 1.0, 0.0
    else:
        low, high = RANK_SCALE_BITS
        scale = 2.0 ** (low + (high - low) * float(uniform(1)[0]))
        offset = (2.0 * float(uniform(1)[0]) - 1.0) * 2.0 ** RANK_OFFSET_BITS
    permutation = np.argsort(uniform(len(rows)), kind="stable")
    shuffled = rows[permutation]
    scores = [(context.load_vector(blobs[i]) * scale + (scale * z_b[i] + offset)).to_bytes() for i in shuffled]
    state.update(ranked_rows=shuffled, brand_logits=z_b)
    _write_brand_model(party, state, weights)
    return Message(scores=ciphertext(scores), rows=size(len(rows)))


@party_step("propensity.finish")
def finish(party, msg):
    """Undo the shuffle; write percentiles for users to score, the top list and the report."""
    state = party.state["propensity"]
    values = open_values(party, msg["ranks"], "propensity.rank_reveal")
    rows = state.pop("ranked_rows")
    order_value = np.empty(len(state["features"]))
    order_value[rows] = values
    validation, to_score, labels = state["validation"], state["to_score"], state["labels"]
    out = Path(party.config["out"])
    column, ids = state["column"], state["ids"]
    scored = np.flatnonzero(to_score)
    if msg["exact_scores"]:
        score = 1.0 / (1.0 + np.exp(-order_value[scored]))
    else:
        score = rankdata(order_value[scored]) / max(len(scored), 1)
    frame = pd.DataFrame({column: ids[scored], "score": score}).sort_values("score", ascending=False, kind="stable")
    frame.to_csv(out / "scores.csv", index=False)
    kind, value = parse_top(msg["top"])
    count = min(len(frame), value if kind == "count" else max(1, round(value * len(frame))))
    frame.head(count).to_csv(out / "top.csv", index=False)
    y_val, s_val = labels[validation], order_value[validation]
    stopping = state["stopping"]
    report = {
        "matched_users": int(len(labels)), "training_users": int(state["train"].sum()),
        "validation": {"users": int(validation.sum()), "positives": int(y_val.sum()), "auc": auc(y_val, s_val),
                       "ks": ks(y_val, s_val), "lift_at_10pct": lift_at(y_val, s_val, 0.10),
                       "gain": dict(zip(("fraction", "gain"), (a.round(5).tolist() for a in gain_curve(y_val, s_val)))),
                       "audiences": audience_table(y_val, s_val)},
        "scored_users": int(len(scored)), "top": {"size": str(msg["top"]), "count": int(count)},
        "score": "calibrated probability (exact scores)" if msg["exact_scores"] else
        "percentile of the joint model's score among the users scored (1 = highest)",
        "epochs_run": int(state["optimizer"].n_steps_),
        "early_stopping": {"best_epoch": int(stopping.best_epoch_), "patience": stopping.patience,
                           "validation_brier": [round(v, 6) for v in stopping.history_],
                           "enabled": stopping.enabled,
                           "note": "mean Brier score of the validation users at each epoch's weights, from the "
                                   "split-sigmoid approximation; the ranking uses the best epoch's weights"
                                   + ("" if stopping.enabled else
                                      " (off under label DP: the last epoch's weights are kept)")},
        "label_dp": state["label_dp"] or None,
    }
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return Message()


def _clip_norm(state):
    """The L2 norm encoded rows were clipped to in training (label DP), for whoever scores with the weights."""
    return state["label_dp"]["clip_norm"] if state["label_dp"] else None


def _write_brand_model(party, state, weights):
    encoder = state["encoder"]
    model = {"kind": "propensity", "party": "brand", "feature_names": encoder["feature_names"],
             "coef": weights[:-1].tolist(), "intercept": float(weights[-1]), "l2": state["l2"], "encoder": encoder,
             "dp_clip_norm": _clip_norm(state)}
    (Path(party.config["out"]) / "model.json").write_text(json.dumps(model, indent=2) + "\n")


# --- library API ----------------------------------------------------------------------------

@dataclass
class PropensityResult:
    """What a propensity run produced, read back from its output folder.

    Attributes
    ----------
    out : Path
    report : dict
        The brand's report (``brand/report.json``): validation AUC, KS, lift at 10 %.
    scores : pandas.DataFrame
        ``brand/scores.csv``: ID and score (a percentile unless exact scores were asked).
    top : pandas.DataFrame
    brand_model, media_model : dict
        Each party's own weights (``brand/model.json``, ``media/model.json``).
    summary : dict
    """

    out: Path
    report: dict
    scores: pd.DataFrame
    top: pd.DataFrame
    brand_model: dict
    media_model: dict
    summary: dict


def propensity(brand, media, *, id_column, label_column, out, backend="ckks", epochs=DEFAULT_EPOCHS,
               patience=DEFAULT_PATIENCE, top=DEFAULT_TOP, exact_scores=False, l2=DEFAULT_L2, id_kind="auto",
               validation_fraction=VALIDATION_FRACTION, min_intersection=PSI_MIN_INTERSECTION, random_state=None,
               paillier_key_bits=None, label_dp_epsilon=None, engine="local", overwrite=False, resume=False,
               timeout=600.0):
    """Train a joint propensity model on brand and media features and rank the brand's unlabelled users.

    Parameters
    ----------
    brand : path or pandas.DataFrame
        ID, brand features and the label (1/0, yes/no, true/false; empty = a user to score).
    media : path or pandas.DataFrame
        ID and media features.
    id_column, label_column : str
    out : path
    backend : {"ckks", "paillier"}
    epochs : int
        Full-batch epochs at most (training stops earlier once both parties' steps are
        tiny, or by early stopping).
    patience : int
        Early stopping: stop after this many epochs without a better validation Brier
        score; the best epoch's weights are kept.
    top : str
        Size of ``brand/top.csv``: a percentage (``"10%"``) or a count.
    exact_scores : bool
        Give the brand calibrated probabilities instead of percentiles. This reveals the
        joint logit of each ranked user, hence (subtracting its own part) the media's
        partial logit of each: see the spec.
    l2, validation_fraction, min_intersection, id_kind
    random_state : int, optional
        Makes the brand's validation split reproducible.
    paillier_key_bits : int, optional
        Shorter Paillier keys for tests only (warns).
    label_dp_epsilon : float, optional
        ``(epsilon, 1e-6)`` label differential privacy towards the media: the labels
        enter training once, as one aggregate with Gaussian noise, both parties' feature
        rows are clipped and early stopping is off (see the spec).
    engine : {"local", "simulation", "deployment"}
    overwrite : bool
    resume : bool
        Go on from the checkpoint a failed attempt of the same run left beside ``out``.
    timeout : float
        Seconds to wait for a party's reply before the run stops, naming it.

    Returns
    -------
    PropensityResult

    Examples
    --------
    >>> result = propensity("brand.csv", "media.csv", id_column="uid", label_column="y", out="run")  # doctest: +SKIP
    >>> result.report["validation"]["auc"]  # doctest: +SKIP
    0.77
    """
    import tempfile

    out = Path(out)
    options = {"id_column": id_column, "label_column": label_column, "id_kind": id_kind, "backend": backend,
               "epochs": int(epochs), "patience": int(patience), "l2": float(l2), "top": str(top),
               "exact_scores": bool(exact_scores),
               "validation_fraction": float(validation_fraction), "min_intersection": int(min_intersection),
               "random_state": random_state, "paillier_key_bits": paillier_key_bits,
               "label_dp_epsilon": None if label_dp_epsilon is None else float(label_dp_epsilon)}
    check_options(options)
    with tempfile.TemporaryDirectory(prefix="fedscore-propensity-") as tmp:
        # Both parties run here, for the caller, who asked for the key size: both consent to it.
        consent = {"allow_weak_keys": True} if paillier_key_bits else {}
        parties = {role: {"data": str(as_table_file(table, Path(tmp) / f"{role}.csv")), **consent}
                   for role, table in ((BRAND, brand), (MEDIA, media))}
        summary = run_job("propensity", options, parties, out, engine=engine, overwrite=overwrite, resume=resume,
                          timeout=timeout)
    return read_result(out, summary)


def read_result(out, summary=None):
    """Read a propensity output folder into a :class:`PropensityResult`."""
    out = Path(out)
    if summary is None:
        summary = json.loads((out / "summary.json").read_text())
    return PropensityResult(
        out=out, report=json.loads((out / "brand" / "report.json").read_text()),
        scores=pd.read_csv(out / "brand" / "scores.csv", dtype={0: str}),
        top=pd.read_csv(out / "brand" / "top.csv", dtype={0: str}),
        brand_model=json.loads((out / "brand" / "model.json").read_text()),
        media_model=json.loads((out / "media" / "model.json").read_text()), summary=summary)
