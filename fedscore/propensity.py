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
   the gradients the other party will ask it to release.
3. Per epoch (one update of both blocks per epoch: each message carries the whole
   epoch, which is what Flower deployment latency asks for):
   ``propensity.media_logits`` / ``propensity.media_update`` send ``[[u]]_m, [[u²]]_m``
   (the media's centred, clipped partial logit) and the quantiles of ``z_m``;
   ``propensity.brand_round`` sends ``[[c0]]_b, [[c1]]_b, [[c2]]_b`` (the residual's
   coefficients, see :func:`fedscore.vertical_lr.split_sigmoid`) and the brand's
   gradient under the media's key, masked; ``propensity.media_round`` releases it and
   sends the media's gradient under the brand's key, masked;
   ``propensity.brand_update`` unmasks and steps, releases the media's gradient;
   ``propensity.media_update`` unmasks and steps.
4. Ranking: ``propensity.rank_encrypt`` (media) encrypts ``z_m`` per user under a
   Paillier key of its own; ``propensity.rank_mask`` (brand) adds ``z_b``, applies an
   order-preserving random affine map and a random permutation to the users it wants
   ranked (validation users and users to score); ``propensity.rank_reveal`` (media)
   decrypts and ranks; ``propensity.finish`` (brand) undoes the permutation and writes
   scores (percentiles), the top list and the report.
"""

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from .data import FeatureEncoder, parse_labels, read_table, validate_ids
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
    create_key,
    connect_channel,
    encrypt_scaled,
    encrypted_products,
    centred_media_logit,
    media_quantiles,
    split_sigmoid,
    mask,
    message_bound,
    open_channel,
    open_values,
    seal_values,
    unmask,
)
from .wire import Message, aggregate, ciphertext, control, public, size

BRAND, MEDIA = "brand", "media"
BACKENDS = ("ckks", "paillier")

DEFAULT_EPOCHS = 20
"""Full-batch epochs at most. With two-block bounded-Hessian steps and momentum (see
:class:`fedscore.vertical_lr.BoundOptimizer`) 20 epochs came within 0.0005 AUC of the
converged model on bank marketing and default_credit, measured centrally."""

CONVERGENCE_TOL = 1e-4
"""Training stops early when both parties' last steps are shorter than this (L2 norm of
the weight change): each party reports only whether its own step was."""

VALIDATION_FRACTION = 0.2
"""Share of the brand's labelled matched users kept out of training for the report."""

DEFAULT_TOP = "10%"

RELEASE_RESERVE = 64
"""Extra values in a CKKS key's release budget beyond the gradients planned."""

RANK_SCALE_BITS = (4, 16)
"""The order-preserving map ``a z + b`` draws ``a`` uniformly in ``[2^4, 2^16]`` and ``b``
uniformly in ``±2^RANK_OFFSET_BITS``: the media sees the scores' shape, not their scale or
location."""

RANK_OFFSET_BITS = 24


# --- options ------------------------------------------------------------------------------

def check_options(options):
    opts = {"id_column": "id", "label_column": "y", "id_kind": "auto", "backend": "ckks", "epochs": DEFAULT_EPOCHS,
            "l2": DEFAULT_L2, "top": DEFAULT_TOP, "exact_scores": False, "validation_fraction": VALIDATION_FRACTION,
            "min_intersection": PSI_MIN_INTERSECTION, "random_state": None, "paillier_key_bits": None}
    unknown = set(options) - set(opts)
    if unknown:
        raise InputError(f"unknown propensity option(s): {', '.join(sorted(unknown))}")
    opts.update(options)
    if opts["backend"] not in BACKENDS:
        raise InputError(f"backend must be one of {', '.join(BACKENDS)}, not {opts['backend']!r}")
    if int(opts["epochs"]) < 1:
        raise InputError(f"epochs must be at least 1, not {opts['epochs']!r}")
    if not 0 < float(opts["validation_fraction"]) < 1:
        raise InputError("validation_fraction must be in (0, 1)")
    parse_top(opts["top"])
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
    epochs_run = 0
    for epoch in range(int(opts["epochs"])):
        logits, converged = train_epoch(coordinator, logits)
        epochs_run += 1
        if converged:
            break
    ranking = coordinator.call(MEDIA, "propensity.rank_encrypt", Message(
        paillier_key_bits=public(opts["paillier_key_bits"])))
    masked_scores = coordinator.call(BRAND, "propensity.rank_mask", Message(
        public_context=public(ranking["public_context"]), media_logits=ciphertext(ranking["media_logits"]),
        logit_bound=public(ranking["logit_bound"]), exact_scores=public(bool(opts["exact_scores"]))))
    revealed = coordinator.call(MEDIA, "propensity.rank_reveal", Message(
        scores=ciphertext(masked_scores["scores"]), release_bound=public(masked_scores["release_bound"]),
        exact_scores=public(bool(opts["exact_scores"]))))
    coordinator.call(BRAND, "propensity.finish", Message(
        ranks=ciphertext(revealed["ranks"]), top=public(str(opts["top"])),
        exact_scores=public(bool(opts["exact_scores"]))))
    return {"job": "propensity", "psi": psi_summary, "backend": opts["backend"], "epochs_run": epochs_run,
            "epochs": int(opts["epochs"]), "exact_scores": bool(opts["exact_scores"]),
            "ranked_rows": masked_scores["rows"]}


def setup(coordinator, opts):
    """Load and encode both tables, make both key pairs; return the media's first ``[[z_m]]`` message."""
    load_request = Message(id_column=public(opts["id_column"]), label_column=public(opts["label_column"]),
                           validation_fraction=public(float(opts["validation_fraction"])),
                           random_state=public(opts["random_state"]), l2=public(float(opts["l2"])))
    loaded = coordinator.exchange({BRAND: ("propensity.load", load_request),
                                   MEDIA: ("propensity.load", load_request)})
    keys = coordinator.exchange({
        role: ("propensity.make_key", Message(
            backend=public(opts["backend"]), paillier_key_bits=public(opts["paillier_key_bits"]),
            peer_features=size(loaded[other]["features"]), epochs=size(int(opts["epochs"])),
            channel_key=public(loaded[other]["channel_key"]), training_rows=size(loaded[BRAND]["training_rows"])))
        for role, other in ((BRAND, MEDIA), (MEDIA, BRAND))
    })
    first = coordinator.exchange({
        MEDIA: ("propensity.media_logits", Message(public_context=public(keys[BRAND]["public_context"]))),
        BRAND: ("propensity.peer_key", Message(public_context=public(keys[MEDIA]["public_context"]))),
    })
    return first[MEDIA]


def train_epoch(coordinator, logits):
    """One full-batch epoch: four calls, each party's block stepped once.

    Returns the media's next ``[[z_m]]`` message and whether both parties converged.
    """
    brand = coordinator.call(BRAND, "propensity.brand_round", Message(
        media_logit=ciphertext(logits["media_logit"]), media_logit_squared=ciphertext(logits["media_logit_squared"]),
        quantiles=aggregate(logits["quantiles"])))
    media = coordinator.call(MEDIA, "propensity.media_round", Message(
        coefficients=ciphertext(brand["coefficients"]),
        brand_gradient=ciphertext(brand["gradient"]), release_bound=public(brand["release_bound"]),
        message_bound=public(brand["message_bound"]), coefficient_bound=public(brand["coefficient_bound"])))
    brand = coordinator.call(BRAND, "propensity.brand_update", Message(
        brand_gradient=ciphertext(media["brand_gradient"]), media_gradient=ciphertext(media["media_gradient"]),
        release_bound=public(media["release_bound"]), message_bound=public(media["message_bound"])))
    logits = coordinator.call(MEDIA, "propensity.media_update", Message(
        media_gradient=ciphertext(brand["media_gradient"])))
    return logits, bool(brand["converged"] and logits["converged"])


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
    state = party.state["propensity"] = {"features": features, "encoder": encoder.to_dict(), "column": column,
                                         "ids": np.asarray(psi["ids"], dtype=object), "l2": float(msg["l2"])}
    reply = {"features": size(features.shape[1]), "channel_key": public(open_channel(party))}
    if party.role == BRAND:
        labels = parse_labels(frame.iloc[rows].reset_index(drop=True), label_column, path)
        validation = validation_split(state["ids"], ~np.isnan(labels), float(msg["validation_fraction"]),
                                      msg["random_state"])
        train = ~np.isnan(labels) & ~validation
        if len(np.unique(labels[train])) < 2:
            raise InputError("the matched, labelled training users hold one class only", path=path,
                             column=label_column)
        state.update(labels=np.nan_to_num(labels), train=train, validation=validation, to_score=np.isnan(labels))
        reply["training_rows"] = size(int(train.sum()))
    return Message(**reply)


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
    """Make this party's key pair; its CKKS release budget covers the peer's gradients for all epochs."""
    state = party.state["propensity"]
    connect_channel(party, msg["channel_key"])
    budget = int(msg["epochs"]) * (int(msg["peer_features"]) + 1) + RELEASE_RESERVE
    key = create_key(msg["backend"], release_budget=budget, paillier_key_bits=msg["paillier_key_bits"])
    features = state["features"]
    state.update(key=key, n_train=int(msg["training_rows"]))
    if party.role == BRAND:
        optimizer = BoundOptimizer(features[state["train"]], state["l2"], intercept=True, blocks=2)
    else:
        optimizer = BoundOptimizer(features, state["l2"], blocks=2)
    state["optimizer"] = optimizer
    return Message(public_context=public(key.public_context().to_bytes()))


# --- media steps ----------------------------------------------------------------------------

@party_step("propensity.media_logits")
def media_logits(party, msg):
    """First epoch: the brand's public key arrives; send ``[[z_m]]`` at the look-ahead weights."""
    state = party.state["propensity"]
    state["peer_context"] = load_context(msg["public_context"])
    return _logits_message(state)


def _logits_message(state, **extra):
    """``[[u]]`` and ``[[u²]]`` under the media's own key, and the quantiles of ``z_m``.

    ``u`` is the media's partial logit at its look-ahead weights, centred and clipped to
    its quantile range (:func:`fedscore.vertical_lr.centred_media_logit`).
    """
    z = state["features"] @ state["optimizer"].lookahead
    quantiles = media_quantiles(z)
    u = centred_media_logit(z, quantiles)
    state.update(u=u, u_bound=float(max(np.max(np.abs(u)), 1e-12)))
    key = state["key"]
    return Message(media_logit=ciphertext(encrypt_scaled(key, u).to_bytes()),
                   media_logit_squared=ciphertext(encrypt_scaled(key, u * u).to_bytes()),
                   quantiles=aggregate(quantiles), **extra)


@party_step("propensity.media_round")
def media_round(party, msg):
    """Release the brand's masked gradient; send the media's gradient under the brand's key, masked.

    The media's gradient is ``X_mᵀ r`` with ``r = c0 + c1 u + c2 u²`` (zero outside the
    brand's training users), computed as ``X_mᵀ[[c0]] + (X_m ⊙ u)ᵀ[[c1]] + (X_m ⊙ u²)ᵀ[[c2]]``
    with CKKS (each product one plaintext multiplication deep) or from ``[[r]]`` directly
    with Paillier (no depth limit, a third of the products).
    """
    state = party.state["propensity"]
    key = state["key"]
    released = _release(key, key.load_vector(msg["brand_gradient"]), msg["release_bound"], msg["message_bound"])
    context = state["peer_context"]
    blobs = msg["coefficients"]
    if len(blobs) != 3:
        raise ProtocolError(f"expected 3 encrypted coefficient vectors, got {len(blobs)}")
    c0, c1, c2 = (context.load_vector(blob) for blob in blobs)
    features, u = state["features"], state["u"]
    bound = float(msg["coefficient_bound"])
    residual_bound = bound * (1.0 + state["u_bound"] + state["u_bound"] ** 2)
    if context.scheme == "ckks":
        terms = [(c0, features, bound), (c1, features * u[:, None], bound),
                 (c2, features * (u * u)[:, None], bound)]
    else:
        terms = [(c0 + c1 * u + c2 * (u * u), features, residual_bound)]
    product, shift, product_bound = encrypted_products(terms)
    masked_product, state["mask"], release_bound = mask(product, product_bound)
    state["shift"] = shift
    return Message(brand_gradient=ciphertext(seal_values(party, released, "propensity.media_round")),
                   media_gradient=ciphertext(masked_product.to_bytes()), release_bound=public(release_bound),
                   message_bound=public(message_bound(context.scheme, residual_bound)))


@party_step("propensity.media_update")
def media_update(party, msg):
    """Unmask the media's gradient, step, and send ``[[z_m]]`` for the next epoch."""
    state = party.state["propensity"]
    released = open_values(party, msg["media_gradient"], "propensity.brand_update")
    gradient = unmask(released, state.pop("mask"), state["shift"]) / state["n_train"]
    step = state["optimizer"].step(gradient)
    return _logits_message(state, converged=control(step < CONVERGENCE_TOL))


@party_step("propensity.rank_encrypt")
def rank_encrypt(party, msg):
    """Write the media's model; encrypt each user's final ``z_m`` on its own under a Paillier key.

    One ciphertext per user, so that the brand can shuffle them: CKKS packs thousands of
    users into the slots of one ciphertext, which cannot be permuted without rotation keys.
    """
    state = party.state["propensity"]
    weights = state["optimizer"].weights_
    encoder = state["encoder"]
    model = {"kind": "propensity", "party": "media", "feature_names": encoder["feature_names"],
             "coef": weights.tolist(), "encoder": encoder}
    (Path(party.config["out"]) / "model.json").write_text(json.dumps(model, indent=2) + "\n")
    z = state["features"] @ weights
    key = create_key("paillier", paillier_key_bits=msg["paillier_key_bits"])
    state["rank_key"] = key
    blobs = [key.encrypt([value]).to_bytes() for value in z]
    bound = 2.0 ** math.ceil(math.log2(max(float(np.max(np.abs(z))), 1.0)))
    return Message(public_context=public(key.public_context().to_bytes()), media_logits=ciphertext(blobs),
                   logit_bound=public(bound))


@party_step("propensity.rank_reveal")
def rank_reveal(party, msg):
    """Decrypt the shuffled, affinely masked scores and rank them (or, with exact scores, return them)."""
    key = party.state["propensity"]["rank_key"]
    bound = float(msg["release_bound"])
    values = np.array([key.decrypt_release(key.load_vector(blob), bound)[0] for blob in msg["scores"]])
    result = values if msg["exact_scores"] else rankdata(values)
    return Message(ranks=ciphertext(seal_values(party, result, "propensity.rank_reveal")))


# --- brand steps ----------------------------------------------------------------------------

@party_step("propensity.peer_key")
def peer_key(party, msg):
    """The brand receives the media's public key."""
    party.state["propensity"]["peer_context"] = load_context(msg["public_context"])
    return Message()


@party_step("propensity.brand_round")
def brand_round(party, msg):
    """Send the residual's coefficients under the brand's key and the brand's gradient under the media's.

    With ``z_b`` the brand's partial logit at its look-ahead weights and ``a0, a1, a2``
    from :func:`fedscore.vertical_lr.split_sigmoid`, the residual of user ``i`` is
    ``r_i = c0_i + c1_i u_i + c2_i u_i²`` with ``c0 = w (a0 - y)``, ``c1 = w a1``,
    ``c2 = w a2``, where ``w`` is 1 for training users and 0 for the others (validation
    users, users to score): the media computes over every matched user and never learns
    which are which. The brand's gradient ``X_bᵀ r`` is computed under the media's key from
    ``[[u]]`` and ``[[u²]]``.
    """
    state = party.state["propensity"]
    context = state["peer_context"]
    design = BoundOptimizer.design(state["features"], True)
    z_b = design @ state["optimizer"].lookahead
    quantiles = np.asarray(msg["quantiles"], dtype=float)
    if quantiles.ndim != 1 or len(quantiles) < 3 or not np.all(np.isfinite(quantiles)):
        raise ProtocolError("the media's logit quantiles are malformed")
    weight = state["train"].astype(float)
    coefficients = split_sigmoid(z_b, quantiles) * weight[:, None]
    coefficients[:, 0] -= weight * state["labels"]
    coefficient_bound = float(max(np.max(np.abs(coefficients)), 1e-12))
    u_bound = float(np.max(np.abs(quantiles - quantiles.mean())))
    u, u_squared = context.load_vector(msg["media_logit"]), context.load_vector(msg["media_logit_squared"])
    product, shift, bound = encrypted_products(
        [(u, design * coefficients[:, 1:2], u_bound), (u_squared, design * coefficients[:, 2:3], u_bound**2)],
        plain=design.T @ coefficients[:, 0])
    masked_product, state["mask"], release_bound = mask(product, bound)
    state["shift"] = shift
    key = state["key"]
    encrypted = [encrypt_scaled(key, coefficients[:, k]).to_bytes() for k in range(3)]
    return Message(coefficients=ciphertext(encrypted), gradient=ciphertext(masked_product.to_bytes()),
                   release_bound=public(release_bound),
                   message_bound=public(message_bound(context.scheme, max(u_bound, u_bound**2))),
                   coefficient_bound=public(coefficient_bound))


@party_step("propensity.brand_update")
def brand_update(party, msg):
    """Unmask the brand's gradient and step; release the media's masked gradient."""
    state = party.state["propensity"]
    released = open_values(party, msg["brand_gradient"], "propensity.media_round")
    gradient = unmask(released, state.pop("mask"), state["shift"]) / state["n_train"]
    step = state["optimizer"].step(gradient)
    key = state["key"]
    media_gradient = _release(key, key.load_vector(msg["media_gradient"]), msg["release_bound"],
                              msg["message_bound"])
    return Message(media_gradient=ciphertext(seal_values(party, media_gradient, "propensity.brand_update")),
                   converged=control(step < CONVERGENCE_TOL))


@party_step("propensity.rank_mask")
def rank_mask(party, msg):
    """Add ``z_b``, map ``z → a z + b`` (``a > 0``) and shuffle, for the validation users and users to score.

    Only those users are sent (not the training users), shuffled with a permutation
    drawn from the OS generator; the media learns how many, not which.
    """
    state = party.state["propensity"]
    context = load_context(msg["public_context"])
    blobs = msg["media_logits"]
    if len(blobs) != len(state["features"]):
        raise ProtocolError(f"received {len(blobs)} encrypted scores for {len(state['features'])} matched users")
    weights = state["optimizer"].weights_
    z_b = BoundOptimizer.design(state["features"], True) @ weights
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
    bound = scale * (float(msg["logit_bound"]) + float(np.max(np.abs(z_b)))) + abs(offset)
    _write_brand_model(party, state, weights)
    return Message(scores=ciphertext(scores), release_bound=public(2 * bound), rows=size(len(rows)))


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
    }
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return Message()


def _write_brand_model(party, state, weights):
    encoder = state["encoder"]
    model = {"kind": "propensity", "party": "brand", "feature_names": encoder["feature_names"],
             "coef": weights[:-1].tolist(), "intercept": float(weights[-1]), "l2": state["l2"], "encoder": encoder}
    (Path(party.config["out"]) / "model.json").write_text(json.dumps(model, indent=2) + "\n")


def _release(key, vector, release_bound, bound_of_messages):
    if key.scheme == "ckks":
        return key.decrypt_release(vector, float(release_bound), float(bound_of_messages))
    return key.decrypt_release(vector, float(release_bound))


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


def propensity(brand, media, *, id_column, label_column, out, backend="ckks", epochs=DEFAULT_EPOCHS, top=DEFAULT_TOP,
               exact_scores=False, l2=DEFAULT_L2, id_kind="auto", validation_fraction=VALIDATION_FRACTION,
               min_intersection=PSI_MIN_INTERSECTION, random_state=None, paillier_key_bits=None, engine="local",
               overwrite=False):
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
        Full-batch epochs at most (training stops earlier once both parties' steps are tiny).
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
    engine : {"local", "simulation", "deployment"}
    overwrite : bool

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
               "epochs": int(epochs), "l2": float(l2), "top": str(top), "exact_scores": bool(exact_scores),
               "validation_fraction": float(validation_fraction), "min_intersection": int(min_intersection),
               "random_state": random_state, "paillier_key_bits": paillier_key_bits}
    check_options(options)
    with tempfile.TemporaryDirectory(prefix="fedscore-propensity-") as tmp:
        paths = {}
        for role, table in ((BRAND, brand), (MEDIA, media)):
            if isinstance(table, pd.DataFrame):
                paths[role] = Path(tmp) / f"{role}.csv"
                table.to_csv(paths[role], index=False)
            else:
                paths[role] = Path(table).resolve()
        parties = {role: {"data": str(path)} for role, path in paths.items()}
        summary = run_job("propensity", options, parties, out, engine=engine, overwrite=overwrite)
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
