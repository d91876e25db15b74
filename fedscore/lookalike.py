"""Hidden-seed lookalike: ``protocols/lookalike.md``, step for step.

The brand holds a seed list; the media holds behavioural features for its whole
audience. The media ends with a model and scores for its audience, the brand with an
aggregate report. The media never learns which of its users are seed members (except,
with ``exclude_seed``, the membership of each of its top ``largest audience + seed list
size`` users by score); the brand never sees a media feature, a score of a user, or the
model.

Phases (the coordinator function :func:`run_lookalike`; the party steps carry the
spec's names):

0. ``psi`` (labelled mode): the brand learns which of the media's rows, in the media's
   order, are seed members; the media learns only the size of the seed list.
1. ``lookalike.encrypt_labels`` (brand) / ``lookalike.load_features`` (media): the brand
   encrypts the match flags under a fresh key of its own; the media encodes its
   features and splits its rows into training and held-out rows, independently of
   the labels it cannot see.
2. ``lookalike.label_aggregate`` (media): ``[Xᵀ[[y]], Σ[[y]]]`` over the training rows,
   masked.
3. ``lookalike.release_aggregate`` (brand): flooded decryption of the masked aggregate,
   optional Gaussian label-DP noise.
4. ``lookalike.train`` (media): unmask, fit positive-unlabelled logistic regression for
   each L2 candidate locally with exact gradients, to convergence, and return encrypted
   held-out aggregates (rank sum, hits per audience size) of each candidate's scores:
   choosing the penalty on the held-out part takes the place of early stopping.
5. ``lookalike.evaluate`` (brand): decrypt the held-out aggregates, compute held-out AUC
   and recall/precision per audience size, pick the candidate, write the report.
6. ``lookalike.select`` (media): score the audience with the chosen model; with
   ``exclude_seed``, ask for the seed flags of the top candidates (masked, encrypted)
   and ``lookalike.release_flags`` (brand) decrypts them; ``lookalike.write_audiences``
   (media) writes the audience files.

Positive-unlabelled learning: the model is the "non-traditional" classifier of seed
members against everyone else in the audience (Elkan & Noto, KDD 2008). Under their
selected-completely-at-random assumption it ranks users exactly as the probability of
being like the seed does, which is all an audience selection needs; the class prior
is estimated from held-out scores and reported.
"""

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import expit
from scipy.stats import rankdata

from . import dp
from .data import FeatureEncoder, as_table_file, read_table, validate_ids
from .errors import InputError, ProtocolError
from .he import load_context
from .params import MIN_SEED_SIZE
from .psi import intersect
from .runtime import party_step
from .runtime.runner import run_job
from .vertical_lr import (
    DEFAULT_L2,
    VALUE_SHIFT_BITS,
    connect_channel,
    create_key,
    encoded_column_bound,
    encrypt_scaled,
    encrypted_product,
    fit_from_aggregate,
    hide_slots,
    mask,
    message_bound,
    open_channel,
    open_values,
    release,
    seal_values,
    unmask,
    weak_keys_allowed,
)
from .wire import Message, ciphertext, public, size

BRAND, MEDIA = "brand", "media"
BACKENDS = ("ckks", "paillier")

HOLDOUT_FRACTION = 0.2
"""Share of the media's rows held out (at random, label-blind) to measure the model."""

L2_CANDIDATES = (1e-4, 1e-3, 1e-2)
"""L2 penalties tried; the brand picks the one with the best held-out AUC. Three
candidates cost the brand log2(3) bits of label-dependent information to the media
(the choice); with label DP only :data:`~fedscore.vertical_lr.DEFAULT_L2` is used so that
the epsilon covers everything the media learns."""

DEFAULT_AUDIENCE_SIZES = ("1%", "5%", "10%")

AGGREGATE_RELEASE_BUDGET = 2**10
"""Values the brand's aggregate key releases: the label aggregate (features + 1) and the
held-out aggregates (a few per candidate). CKKS flooding noise grows with the square
root of the budget, so this key is sized to the protocol instead of the backend default
(2^16); wider media tables than about 900 columns need a larger value."""

DP_CLIP_NORM = dp.LABEL_DP_CLIP_NORM
"""With label DP the media clips each standardised feature row to this L2 norm (then
appends the intercept's 1), so one label moves the aggregate by at most
``sqrt(DP_CLIP_NORM^2 + 1)`` in L2 norm: the sensitivity of the Gaussian mechanism."""

_HIDE_MAGNITUDE = 2.0**36
"""Size of the zero-sum slot shares that hide per-row products in CKKS held-out aggregates
(:func:`fedscore.vertical_lr.hide_slots`): 2^16 above the largest scaled per-row product
(2^20), and small enough that encoding the shares in double precision adds an error
(about 2^-16 per slot) far below the flooding noise."""


# --- options ------------------------------------------------------------------------------

def parse_audience_sizes(sizes):
    """Parse ``"1%,5%,10%"`` or a list of such items into ``[(label, size), ...]``.

    A percentage becomes a fraction in (0, 1]; an integer is an absolute count.
    """
    items = sizes.split(",") if isinstance(sizes, str) else list(sizes)
    parsed = []
    for item in items:
        text = str(item).strip()
        try:
            if text.endswith("%"):
                value = float(text[:-1]) / 100.0
                if not 0 < value <= 1:
                    raise ValueError
                label = f"{text[:-1].replace('.', '_')}pct"
                parsed.append((label, value))
            else:
                count = int(text)
                if count < 1:
                    raise ValueError
                parsed.append((str(count), count))
        except ValueError:
            raise InputError(f"audience size {text!r} is neither a percentage in (0, 100] "
                             "nor a positive count") from None
    if not parsed:
        raise InputError("no audience size given")
    return parsed


def check_options(options):
    """Fill defaults and validate the public job options."""
    opts = {
        "id_column": "id", "id_kind": "auto", "backend": "ckks", "audience_sizes": list(DEFAULT_AUDIENCE_SIZES),
        "min_seed": MIN_SEED_SIZE, "exclude_seed": True, "label_dp_epsilon": None, "label_dp_delta": dp.DEFAULT_DELTA,
        "holdout_fraction": HOLDOUT_FRACTION, "l2_candidates": list(L2_CANDIDATES), "random_state": None,
        "paillier_key_bits": None,
    }
    unknown = set(options) - set(opts)
    if unknown:
        raise InputError(f"unknown lookalike option(s): {', '.join(sorted(unknown))}")
    opts.update(options)
    if opts["backend"] not in BACKENDS:
        raise InputError(f"backend must be one of {', '.join(BACKENDS)}, not {opts['backend']!r}")
    parse_audience_sizes(opts["audience_sizes"])
    if int(opts["min_seed"]) < 1:
        raise InputError(f"min_seed must be at least 1, not {opts['min_seed']!r}")
    if not 0 < float(opts["holdout_fraction"]) < 1:
        raise InputError(f"holdout_fraction must be in (0, 1), not {opts['holdout_fraction']!r}")
    epsilon = opts["label_dp_epsilon"]
    if epsilon is not None:
        if not (float(epsilon) > 0 and math.isfinite(float(epsilon))):
            raise InputError(f"label DP epsilon must be a positive number, not {epsilon!r}")
        if opts["exclude_seed"]:
            raise InputError("label DP cannot hold while the media learns which of its top candidates are seed "
                             "members to exclude them: use --include-seed with --label-dp-epsilon")
        opts["l2_candidates"] = [DEFAULT_L2]
    if not opts["l2_candidates"] or any(not float(v) >= 0 for v in opts["l2_candidates"]):
        raise InputError("l2_candidates must be non-negative numbers")
    return opts


# --- coordinator --------------------------------------------------------------------------

def run_lookalike(coordinator, options):
    """The ``lookalike`` job: PSI, one masked label aggregate, local training, private evaluation.

    Options: see :func:`check_options`. Returns the public summary (sizes, parameters,
    epsilon); the report with the model's quality is the brand's
    (``brand/report.json``) and never passes through the coordinator.
    """
    opts = check_options(options)
    psi_summary = intersect(coordinator, mode="labelled", id_column=opts["id_column"], id_kind=opts["id_kind"],
                            min_intersection=int(opts["min_seed"]))
    setup = Message(backend=public(opts["backend"]), exclude_seed=public(bool(opts["exclude_seed"])),
                    id_column=public(opts["id_column"]), paillier_key_bits=public(opts["paillier_key_bits"]),
                    holdout_fraction=public(float(opts["holdout_fraction"])),
                    random_state=public(opts["random_state"]),
                    dp=public(opts["label_dp_epsilon"] is not None))
    first = coordinator.exchange({BRAND: ("lookalike.encrypt_labels", setup),
                                  MEDIA: ("lookalike.load_features", setup)})
    labels = first[BRAND]
    request = {"public_context": public(labels["public_context"]), "labels": ciphertext(labels["labels"]),
               "channel_key": public(labels["channel_key"])}
    if opts["exclude_seed"]:
        request.update(flag_context=public(labels["flag_context"]), flags=ciphertext(labels["flags"]))
    agg = coordinator.call(MEDIA, "lookalike.label_aggregate", Message(**request))

    dp_request = {}
    if opts["label_dp_epsilon"] is not None:
        dp_request = {"epsilon": public(float(opts["label_dp_epsilon"])),
                      "delta": public(float(opts["label_dp_delta"])), "clip_norm": public(DP_CLIP_NORM),
                      "scale": public(agg["scale"])}
    released = coordinator.call(BRAND, "lookalike.release_aggregate", Message(
        aggregate=ciphertext(agg["aggregate"]), release_bound=public(agg["release_bound"]),
        message_bound=public(agg["message_bound"]), channel_key=public(first[MEDIA]["channel_key"]), **dp_request))

    sizes = parse_audience_sizes(opts["audience_sizes"])
    trained = coordinator.call(MEDIA, "lookalike.train", Message(
        aggregate=ciphertext(released["aggregate"]), l2_candidates=public([float(v) for v in opts["l2_candidates"]]),
        audience_sizes=public([s for _, s in sizes])))

    evaluated = coordinator.call(BRAND, "lookalike.evaluate", Message(
        holdout=ciphertext(trained["holdout"]), holdout_rows=size(trained["holdout_rows"]),
        scale=public(trained["scale"]), release_bound=public(trained["release_bound"]),
        message_bound=public(trained["message_bound"]), columns=public(trained["columns"]),
        l2_candidates=public([float(v) for v in opts["l2_candidates"]]),
        audience_sizes=public(opts["audience_sizes"]), epsilon=public(released["epsilon"])))

    selected = coordinator.call(MEDIA, "lookalike.select", Message(
        choice=ciphertext(evaluated["choice"]), audience_sizes=public(opts["audience_sizes"])))
    if opts["exclude_seed"]:
        opened = coordinator.call(BRAND, "lookalike.release_flags", Message(
            flags=ciphertext(selected["flags"]), release_bound=public(selected["release_bound"]),
            message_bound=public(selected["message_bound"])))
        coordinator.call(MEDIA, "lookalike.write_audiences", Message(flags=ciphertext(opened["flags"])))
    return {
        "job": "lookalike",
        "psi": psi_summary,
        "backend": opts["backend"],
        "audience_sizes": list(opts["audience_sizes"]),
        "exclude_seed": bool(opts["exclude_seed"]),
        "label_dp": None if released["epsilon"] is None else
        {"epsilon": released["epsilon"], "delta": float(opts["label_dp_delta"]), "releases": 1},
        "candidates": len(opts["l2_candidates"]),
    }


# --- brand steps --------------------------------------------------------------------------

@party_step("lookalike.encrypt_labels")
def encrypt_labels(party, msg):
    """Encrypt the match flags, in the media's PSI order, under a fresh key of the brand's.

    With ``exclude_seed`` the flags are encrypted a second time under a separate key whose
    release budget covers one value per media row (the exclusion phase releases that
    many), so that the aggregate key keeps a small budget and little flooding noise.
    """
    psi = _psi_state(party, "flags")
    flags = psi["flags"].astype(float)
    backend, bits = msg["backend"], msg["paillier_key_bits"]
    key = create_key(backend, release_budget=AGGREGATE_RELEASE_BUDGET, paillier_key_bits=bits,
                     allow_weak_key=weak_keys_allowed(party))
    state = party.state["lookalike"] = {"key": key, "seed_size": int(psi["size"]), "matched": int(psi["matched"]),
                                        "rows": int(len(flags))}
    reply = {"channel_key": public(open_channel(party)), "public_context": public(key.public_context().to_bytes()),
             "labels": ciphertext(encrypt_scaled(key, flags).to_bytes())}
    if msg["exclude_seed"]:
        flag_key = create_key(backend, release_budget=len(flags), paillier_key_bits=bits,
                              allow_weak_key=weak_keys_allowed(party))
        state["flag_key"] = flag_key
        reply.update(flag_context=public(flag_key.public_context().to_bytes()),
                     flags=ciphertext(encrypt_scaled(flag_key, flags).to_bytes()))
    return Message(**reply)


@party_step("lookalike.release_aggregate")
def release_aggregate(party, msg):
    """Decrypt the masked label aggregate for the media, flooded, with optional label-DP noise.

    Notes
    -----
    The mask is the media's; the brand sees a uniformly masked value. The Gaussian noise
    is added to the masked value, which is the same as adding it to the aggregate.
    """
    state = party.state["lookalike"]
    key = state["key"]
    connect_channel(party, msg["channel_key"])
    vector = key.load_vector(msg["aggregate"])
    values = release(key, vector, msg["release_bound"], msg["message_bound"])
    epsilon = None
    if "epsilon" in msg:
        epsilon = float(msg["epsilon"])
        sensitivity = math.sqrt(float(msg["clip_norm"]) ** 2 + 1.0)
        std = dp.noise_multiplier(epsilon, 1, float(msg["delta"])) * sensitivity
        values = values + dp.gaussian_noise(std * float(msg["scale"]), values.size)
        state["dp"] = {"epsilon": epsilon, "delta": float(msg["delta"]), "noise_std": std,
                       "sensitivity": sensitivity}
    return Message(aggregate=ciphertext(seal_values(party, values, "lookalike.release_aggregate")),
                   epsilon=public(epsilon))


@party_step("lookalike.evaluate")
def evaluate(party, msg):
    """Turn the held-out aggregates into AUC and audience recall/precision; pick a candidate.

    The aggregates are, per candidate, ``Σ y_i u_i`` (``u_i`` the rank of user i's score
    among held-out users, divided by their number), ``Σ y_i [i in top s]`` per audience
    size ``s``, ``Σ y_i p_i`` (``p_i`` the score) and, once, ``Σ y_i`` -- sums over the
    held-out rows only, so the brand learns no user's score.
    """
    state = party.state["lookalike"]
    key = state["key"]
    values = release(key, key.load_vector(msg["holdout"]), msg["release_bound"], msg["message_bound"])
    values = values / float(msg["scale"])
    n = int(msg["holdout_rows"])
    columns = int(msg["columns"])
    candidates = [float(v) for v in msg["l2_candidates"]]
    positives = float(round(values[-1]))  # a count: rounding removes the flooding noise
    results = []
    for k, l2 in enumerate(candidates):
        block = values[k * columns:(k + 1) * columns]
        rank_sum, hits, score_sum = block[0], block[1:-1], block[-1]
        negatives = n - positives
        auc = (n * rank_sum - positives * (positives + 1) / 2) / (positives * negatives) \
            if positives >= 1 and negatives >= 1 else float("nan")
        results.append({"l2": l2, "auc": float(auc), "hits": hits, "score_sum": float(score_sum)})
    choice = int(np.nanargmax([r["auc"] for r in results])) if any(np.isfinite(r["auc"]) for r in results) else 0
    best = results[choice]
    audiences = []
    for (label, value), hits in zip(parse_audience_sizes(msg["audience_sizes"]), best["hits"]):
        count = _holdout_count(value, n, state["rows"])
        hits = min(max(round(float(hits)), 0), count)  # a count as well
        audiences.append({
            "size": label, "holdout_count": count, "seed_members_found": hits,
            "recall": hits / positives if positives > 0 else float("nan"),
            "precision": hits / count,
        })
    label_frequency = best["score_sum"] / positives if positives > 0 else float("nan")
    report = {
        "seed_size": state["seed_size"],
        "matched_seed": state["matched"],
        "media_rows": state["rows"],
        "holdout": {"rows": n, "seed_members": int(positives), "auc": best["auc"], "audiences": audiences},
        "model_selection": [{"l2": r["l2"], "holdout_auc": r["auc"]} for r in results],
        "chosen_l2": best["l2"],
        "positive_unlabelled": {
            "method": "seed vs. rest of audience (Elkan & Noto 2008), ranking-equivalent under SCAR",
            "label_frequency_estimate": float(label_frequency),
            "estimated_lookalike_share": float(state["matched"] / state["rows"] / label_frequency)
            if label_frequency > 0 else float("nan"),
        },
        "label_dp": state.get("dp"),
        "notes": "Held-out figures count seed members only: unlabelled users who are like the seed count as "
                 "misses, so precision is a lower bound.",
    }
    (Path(party.config["out"]) / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return Message(choice=ciphertext(seal_values(party, [choice], "lookalike.evaluate")))


@party_step("lookalike.release_flags")
def release_flags(party, msg):
    """Decrypt the media's masked selection of seed flags (flooded); the brand sees only masked values."""
    key = party.state["lookalike"]["flag_key"]
    values = release(key, key.load_vector(msg["flags"]), msg["release_bound"], msg["message_bound"])
    return Message(flags=ciphertext(seal_values(party, values, "lookalike.release_flags")))


def _holdout_count(value, holdout_rows, media_rows):
    """Number of held-out users in an audience of ``value`` (a fraction, or a count of all users)."""
    fraction = value if isinstance(value, float) else value / media_rows
    return int(min(holdout_rows, max(1, round(fraction * holdout_rows))))


# --- media steps --------------------------------------------------------------------------

@party_step("lookalike.load_features")
def load_features(party, msg):
    """Read and encode the media's table in its PSI order; split rows into training and held-out.

    The split is drawn before anything about the labels is known, so it is independent
    of them. With label DP, feature rows are clipped to :data:`DP_CLIP_NORM`.
    """
    psi = _psi_state(party, "rows")
    path = party.config["data"]
    column = party.config.get("id_column") or msg["id_column"]
    frame = read_table(path, columns=[column])
    ids = validate_ids(frame, column, path, allow_duplicates=True, allow_empty=True)
    rows = np.asarray(psi["rows"], dtype=np.int64)
    feature_columns = [c for c in frame.columns if c != column]
    if not feature_columns:
        raise InputError("no feature columns besides the ID", path=path)
    encoder = FeatureEncoder(path)
    features = encoder.fit_transform(frame.iloc[rows], feature_columns)
    if msg["dp"]:
        features = dp.clip_rows(features, DP_CLIP_NORM)
    holdout = holdout_mask(len(rows), float(msg["holdout_fraction"]), msg["random_state"])
    party.state["lookalike"] = {"ids": ids[rows], "features": features, "encoder": encoder.to_dict(),
                                "holdout": holdout, "column": column, "seed_list_size": int(psi["peer_size"])}
    return Message(rows=size(len(rows)), channel_key=public(open_channel(party)))


def holdout_mask(rows, fraction, random_state=None):
    """Boolean mask of held-out rows: ``round(fraction * rows)`` of them, drawn at random.

    ``random_state`` makes the split reproducible (benchmarks compare with a central
    model on the same rows); without it the draw uses the operating system's generator.
    """
    seed = random_state if random_state is not None else int.from_bytes(os.urandom(8), "little")
    order = np.random.default_rng(seed).permutation(rows)
    mask_ = np.zeros(rows, dtype=bool)
    mask_[order[:int(round(fraction * rows))]] = True
    return mask_


@party_step("lookalike.label_aggregate")
def label_aggregate(party, msg):
    """``[Xᵀ[[y]], Σ[[y]]]`` over the training rows, under the brand's key, masked.

    Held-out rows get zero rows in the matrix, so their labels do not enter the
    aggregate. The aggregate's bound, hence the scale and the release bound sent with
    it, comes from the row counts alone
    (:func:`fedscore.vertical_lr.encoded_column_bound`).
    """
    state = party.state["lookalike"]
    connect_channel(party, msg["channel_key"])
    context = load_context(msg["public_context"], allow_weak_key=weak_keys_allowed(party))
    labels = context.load_vector(msg["labels"])
    features = state["features"]
    if labels.size != len(features):
        raise ProtocolError(f"received {labels.size} encrypted labels for {len(features)} media rows")
    design = np.hstack([features, np.ones((len(features), 1))])
    design[state["holdout"]] = 0.0
    training_rows = int(np.sum(~state["holdout"]))
    product, shift, bound = encrypted_product(labels, design, 1.0,
                                              bound=encoded_column_bound(training_rows, len(features)))
    masked_product, mask_values, release_bound = mask(product, bound)
    state.update(context=context, labels=labels, mask=mask_values, shift=shift)
    if "flags" in msg:
        flag_context = load_context(msg["flag_context"], allow_weak_key=weak_keys_allowed(party))
        state.update(flag_context=flag_context, flags=flag_context.load_vector(msg["flags"]))
    return Message(aggregate=ciphertext(masked_product.to_bytes()), release_bound=public(release_bound),
                   message_bound=public(message_bound(context.scheme, 1.0)), scale=public(2.0 ** shift))


@party_step("lookalike.train")
def train(party, msg):
    """Unmask the label aggregate, fit each L2 candidate, and aggregate held-out results under encryption.

    For candidate ``k`` the held-out matrix has the columns ``u`` (normalised average
    rank of the score among held-out users), one top-of-audience indicator per audience
    size, and the score; a last column of ones gives ``Σ y`` over held-out rows.
    """
    state = party.state["lookalike"]
    released = open_values(party, msg["aggregate"], "lookalike.release_aggregate")
    label_aggregate_ = unmask(released, state.pop("mask"), state["shift"])
    features, holdout = state["features"], state["holdout"]
    train_rows = ~holdout
    held = np.flatnonzero(holdout)
    n_held = len(held)
    sizes = msg["audience_sizes"]
    total = len(features)
    models, blocks = [], []
    for l2 in msg["l2_candidates"]:
        weights, n_iter = fit_from_aggregate(features[train_rows], label_aggregate_, float(l2))
        models.append({"l2": float(l2), "coef": weights[:-1], "intercept": float(weights[-1]), "n_iter": n_iter})
        logits = features[held] @ weights[:-1] + weights[-1]
        ranks = rankdata(logits) / n_held
        order = np.argsort(-logits, kind="stable")
        columns = [ranks]
        for value in sizes:
            top = np.zeros(n_held)
            top[order[:_holdout_count(value if isinstance(value, float) else int(value), n_held, total)]] = 1.0
            columns.append(top)
        columns.append(expit(logits))
        blocks.append(np.column_stack(columns))
    matrix = np.zeros((total, sum(b.shape[1] for b in blocks) + 1))
    matrix[held] = np.hstack(blocks + [np.ones((n_held, 1))])
    product, shift, bound = encrypted_product(state["labels"], matrix, 1.0, bound=n_held)  # every column in [0, 1]
    product = hide_slots(product, _HIDE_MAGNITUDE)
    state["models"] = models
    return Message(holdout=ciphertext(product.to_bytes()), holdout_rows=size(n_held), scale=public(2.0 ** shift),
                   release_bound=public(bound), message_bound=public(message_bound(state["context"].scheme, 1.0)),
                   columns=public(blocks[0].shape[1]))


@party_step("lookalike.select")
def select(party, msg):
    """Score the whole audience with the chosen model; write scores and the model.

    Without seed exclusion the audience files are written here. With it, the top
    ``largest audience + seed list size`` users (enough to fill the largest audience
    whatever the seed members among them) get their seed flags asked for: the media
    multiplies the encrypted flags by a 0/1 selection and masks every entry, so the
    brand, who decrypts, sees neither the flags nor which users were selected. The
    media learns the seed membership of every selected user, including those ranked
    below the largest audience's eventual cutoff (see the spec for the price of revealing
    only up to the cutoff).
    """
    state = party.state["lookalike"]
    choice = int(open_values(party, msg["choice"], "lookalike.evaluate")[0])
    if not 0 <= choice < len(state["models"]):
        raise ProtocolError(f"model choice {choice} out of range")
    model = state["models"][choice]
    features = state["features"]
    scores = expit(features @ model["coef"] + model["intercept"])
    state.update(scores=scores, sizes=parse_audience_sizes(msg["audience_sizes"]))
    out = Path(party.config["out"])
    pd.DataFrame({state["column"]: state["ids"], "score": scores}).to_csv(out / "scores.csv", index=False)
    encoder = state["encoder"]
    model_file = {"kind": "lookalike", "feature_names": encoder["feature_names"], "coef": model["coef"].tolist(),
                  "intercept": model["intercept"], "l2": model["l2"], "iterations": model["n_iter"],
                  "encoder": encoder, "dp_clip_norm": None}
    (out / "model.json").write_text(json.dumps(model_file, indent=2) + "\n")
    if "flags" not in state:
        _write_audiences(out, state, np.zeros(len(scores), dtype=bool))
        return Message()
    largest = max(_audience_count(value, len(scores)) for _, value in state["sizes"])
    candidates = np.argsort(-scores, kind="stable")[:min(len(scores), largest + state["seed_list_size"])]
    selection = np.zeros(len(scores))
    selection[candidates] = 1.0
    selected = state["flags"] * selection
    masked_flags, mask_values, release_bound = mask(selected, 2.0 ** _value_shift(state["flag_context"]))
    state.update(flag_mask=mask_values, candidates=candidates)
    return Message(flags=ciphertext(masked_flags.to_bytes()), release_bound=public(release_bound),
                   message_bound=public(message_bound(state["flag_context"].scheme, 1.0)))


@party_step("lookalike.write_audiences")
def write_audiences(party, msg):
    """Unmask the seed flags of the top candidates and write the audiences without seed members."""
    state = party.state["lookalike"]
    released = open_values(party, msg["flags"], "lookalike.release_flags")
    flags = unmask(released, state.pop("flag_mask"), _value_shift(state["flag_context"]))
    seed = np.zeros(len(state["scores"]), dtype=bool)
    candidates = state["candidates"]
    seed[candidates] = np.round(flags[candidates]) >= 1
    _write_audiences(Path(party.config["out"]), state, seed)
    return Message()


def _value_shift(context):
    return VALUE_SHIFT_BITS[context.scheme]


def _audience_count(value, rows):
    return int(min(rows, value if isinstance(value, int) else max(1, round(value * rows))))


def _write_audiences(out, state, seed):
    """Write ``audience_<size>.csv``: the top users by score, seed members left out."""
    scores = state["scores"]
    order = np.argsort(-scores, kind="stable")
    order = order[~seed[order]]
    for label, value in state["sizes"]:
        top = order[:_audience_count(value, len(scores))]
        pd.DataFrame({state["column"]: state["ids"][top], "score": scores[top]}).to_csv(
            out / f"audience_{label}.csv", index=False)


def _psi_state(party, key):
    psi = party.state.get("psi")
    if not psi or psi.get("mode") != "labelled" or key not in psi:
        raise ProtocolError("lookalike step out of order: labelled PSI has not run")
    return psi


# --- library API ----------------------------------------------------------------------------

@dataclass
class LookalikeResult:
    """What a lookalike run produced, read back from its output folder.

    Attributes
    ----------
    out : Path
    report : dict
        The brand's aggregate report (``brand/report.json``).
    scores : pandas.DataFrame
        The media's scores (``media/scores.csv``): ID and score.
    audiences : dict of str to pandas.DataFrame
        The media's audience files, by size label.
    model : dict
        The media's model (``media/model.json``).
    summary : dict
        The job's public summary.
    """

    out: Path
    report: dict
    scores: pd.DataFrame
    audiences: dict
    model: dict
    summary: dict

    @property
    def holdout_auc(self):
        return self.report["holdout"]["auc"]


def lookalike(seed, media, *, id_column, out, backend="ckks", audience_sizes=DEFAULT_AUDIENCE_SIZES,
              min_seed=MIN_SEED_SIZE, exclude_seed=True, label_dp_epsilon=None, id_kind="auto",
              holdout_fraction=HOLDOUT_FRACTION, l2_candidates=L2_CANDIDATES, random_state=None,
              paillier_key_bits=None, engine="local", overwrite=False, resume=False, timeout=600.0):
    """Find the media users most like the brand's seed, without either side seeing the other's data.

    Parameters
    ----------
    seed : path or pandas.DataFrame
        The brand's seed list: the ID column (other columns are ignored).
    media : path or pandas.DataFrame
        The media's audience: the ID column and feature columns (numeric columns are
        standardised, text columns one-hot encoded, by the media).
    id_column : str
    out : path
        Output folder (``brand/``, ``media/``, ``ledger.jsonl``, ``summary.json``).
    backend : {"ckks", "paillier"}
    audience_sizes : str or sequence
        ``"1%,5%,10%"`` or items such as ``"5%"`` or ``50000``.
    min_seed : int
        Fewer matched seed members than this stops the run (the brand raises it).
    exclude_seed : bool
        Leave seed members out of the audiences. The media then learns which of its top
        candidates are seed members (see the spec).
    label_dp_epsilon : float, optional
        Add Gaussian noise to the one label aggregate the media receives, for
        ``(epsilon, 1e-6)`` label differential privacy; needs ``exclude_seed=False``.
    id_kind : str
        ID normalisation (:mod:`fedscore.ids`).
    holdout_fraction : float
    l2_candidates : sequence of float
    random_state : int, optional
        Makes the media's held-out split reproducible.
    paillier_key_bits : int, optional
        Shorter Paillier keys than 3072 bits, for tests only (warns).
    engine : {"local", "simulation", "deployment"}
    overwrite : bool
    resume : bool
        Go on from the checkpoint a failed attempt of the same run left beside ``out``.
    timeout : float
        Seconds to wait for a party's reply before the run stops, naming it.

    Returns
    -------
    LookalikeResult

    Examples
    --------
    >>> result = lookalike("seed.csv", "media.csv", id_column="uid", out="run")  # doctest: +SKIP
    >>> result.report["holdout"]["auc"]  # doctest: +SKIP
    0.74
    """
    import tempfile

    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="fedscore-lookalike-") as tmp:
        seed_path = as_table_file(seed, Path(tmp) / "seed.csv")
        media_path = as_table_file(media, Path(tmp) / "media.csv")
        _check_seed(seed_path, id_column, int(min_seed))
        options = {"id_column": id_column, "id_kind": id_kind, "backend": backend,
                   "audience_sizes": list(audience_sizes) if not isinstance(audience_sizes, str)
                   else audience_sizes.split(","),
                   "min_seed": int(min_seed), "exclude_seed": bool(exclude_seed),
                   "label_dp_epsilon": label_dp_epsilon, "holdout_fraction": float(holdout_fraction),
                   "l2_candidates": [float(v) for v in l2_candidates], "random_state": random_state,
                   "paillier_key_bits": paillier_key_bits}
        check_options(options)
        # Both parties run here, for the caller, who asked for the key size: both consent to it.
        consent = {"allow_weak_keys": True} if paillier_key_bits else {}
        parties = {BRAND: {"data": str(seed_path), "id_column": id_column, **consent},
                   MEDIA: {"data": str(media_path), "id_column": id_column, **consent}}
        summary = run_job("lookalike", options, parties, out, engine=engine, overwrite=overwrite, resume=resume,
                          timeout=timeout)
    return read_result(out, summary)


def read_result(out, summary=None):
    """Read a lookalike output folder into a :class:`LookalikeResult`."""
    out = Path(out)
    audiences = {p.stem[len("audience_"):]: pd.read_csv(p, dtype={0: str})
                 for p in sorted((out / "media").glob("audience_*.csv"))}
    if summary is None:
        summary = json.loads((out / "summary.json").read_text())
    return LookalikeResult(out=out, report=json.loads((out / "brand" / "report.json").read_text()),
                           scores=pd.read_csv(out / "media" / "scores.csv", dtype={0: str}), audiences=audiences,
                           model=json.loads((out / "media" / "model.json").read_text()), summary=summary)


def _check_seed(path, id_column, min_seed):
    """Refuse a seed list shorter than ``min_seed`` before anything is sent (the brand's own check)."""
    frame = read_table(path, columns=[id_column])
    ids = frame[id_column].astype(str).str.strip()
    distinct = ids[ids != ""].nunique()
    if distinct < min_seed:
        raise InputError(f"the seed list has {distinct} distinct IDs; at least {min_seed} are needed "
                         f"(clean-room minimum seed size)", path=path, column=id_column)
