"""Hidden-seed lookalike, the brand's side: ``protocols/lookalike.md``, steps 1, 3, 5 and 7.

The brand holds, from PSI, the seed flags over the media's rows in the media's order. It
encrypts them under fresh keys of its own, and decrypts only what it can check: masked
values for the media, and sums over held-out seed members for its report. The bound of
every release and the scale of the label-DP noise are its own computation from public
counts (:mod:`.bounds`), never a value the media sent.
"""

import json
import math
from dataclasses import dataclass

import numpy as np

from ... import dp
from ...errors import ProtocolError
from ...wire import Message, ciphertext, public
from ..psi.party import BrandFlags
from ..vertical_lr import (
    create_key,
    encrypt_scaled,
    masked_release_bound,
    message_bound,
    release,
    scaled_bound,
    seal_values,
    weak_keys_allowed,
)
from .bounds import (
    DP_CLIP_NORM,
    FLAG_BOUND,
    holdout_audience,
    holdout_columns,
    holdout_rows,
    label_aggregate_bound,
)
from .options import LookalikeOptions

AGGREGATE_RELEASE_BUDGET = 2**10
"""Values the brand's aggregate key releases: the label aggregate (features + 1) and the
held-out aggregates (a few per candidate). CKKS flooding noise grows with the square
root of the budget, so this key is sized to the protocol instead of the backend default
(2^16); wider media tables than about 900 columns need a larger value."""


@dataclass
class BrandState:
    """What the brand keeps between its lookalike steps."""

    options: LookalikeOptions
    key: object
    """The brand's key pair for the label aggregate and the held-out aggregates."""
    seed_size: int
    """Distinct IDs of the seed list (PSI)."""
    matched: int
    """Seed members found among the media's rows: the brand's alone."""
    rows: int
    """The media's rows in its PSI order (public)."""
    flag_key: object = None
    """With seed exclusion: a second key pair, whose budget covers one value per media row."""
    dp: dict = None
    """With label DP: epsilon, delta, the noise and the sensitivity, for the report."""


# --- 1. lookalike.encrypt_labels ---------------------------------------------------------------

def encrypt_labels(party, msg):
    """Encrypt the match flags, in the media's PSI order, under a fresh key of the brand's.

    With ``exclude_seed`` the flags are encrypted a second time under a separate key whose
    release budget covers one value per media row (the exclusion phase releases that
    many), so that the aggregate key keeps a small budget and little flooding noise.

    Notes
    -----
    The seed list's size was checked against ``min_seed`` before the run (the options'
    ``check_inputs``, run by the library and the command); in a deployment PSI's minimum
    intersection, the same number, stops a short list before this step.
    """
    options = LookalikeOptions.from_dict(msg["options"])
    psi = party.phase("psi")
    if not isinstance(psi, BrandFlags):
        raise ProtocolError("lookalike step out of order: labelled PSI has not run at the brand")
    flags = psi.flags.astype(float)
    key = _new_key(party, options, AGGREGATE_RELEASE_BUDGET)
    state = party.state["lookalike"] = BrandState(options=options, key=key, seed_size=int(psi.size),
                                                  matched=int(psi.matched), rows=len(flags))
    reply = {"public_context": public(key.public_context().to_bytes()),
             "labels": ciphertext(encrypt_scaled(key, flags).to_bytes())}
    if options.exclude_seed:
        state.flag_key = _new_key(party, options, len(flags))
        reply.update(flag_context=public(state.flag_key.public_context().to_bytes()),
                     flags=ciphertext(encrypt_scaled(state.flag_key, flags).to_bytes()))
    return Message(**reply)


def _new_key(party, options, budget):
    return create_key(options.backend, release_budget=budget, paillier_key_bits=options.paillier_key_bits,
                      allow_weak_key=weak_keys_allowed(party))


# --- 3. lookalike.release_aggregate ------------------------------------------------------------

def release_aggregate(party, msg):
    """Decrypt the masked label aggregate for the media, flooded, with optional label-DP noise.

    Notes
    -----
    The mask is the media's; the brand sees a uniformly masked value. The Gaussian noise
    is added to the masked value, which is the same as adding it to the aggregate; it is
    drawn at the aggregate's scale, which the brand derives from the public row counts.
    """
    state = party.phase("lookalike")
    options, key = state.options, state.key
    bound = label_aggregate_bound(state.rows, options.holdout_fraction)
    values = release(key, key.load_vector(msg["aggregate"]), masked_release_bound(key.scheme, bound),
                     message_bound(key.scheme, 1.0))
    if options.label_dp_epsilon is not None:
        shift, _ = scaled_bound(key.scheme, bound)
        sensitivity = math.sqrt(DP_CLIP_NORM**2 + 1.0)
        std = dp.noise_multiplier(options.label_dp_epsilon, 1, options.label_dp_delta) * sensitivity
        values = values + dp.gaussian_noise(std * 2.0**shift, values.size)
        state.dp = {"epsilon": options.label_dp_epsilon, "delta": options.label_dp_delta, "noise_std": std,
                    "sensitivity": sensitivity}
    return Message(aggregate=ciphertext(seal_values(party, values, "lookalike.release_aggregate")))


# --- 5. lookalike.evaluate ---------------------------------------------------------------------

def evaluate(party, msg):
    """Turn the held-out aggregates into AUC and audience recall/precision; pick a candidate.

    The aggregates are, per candidate, ``Σ y_i u_i`` (``u_i`` the rank of user i's score
    among held-out users, divided by their number), ``Σ y_i [i in top s]`` per audience
    size ``s``, ``Σ y_i p_i`` (``p_i`` the score) and, once, ``Σ y_i`` -- sums over the
    held-out rows only, so the brand learns no user's score.
    """
    state = party.phase("lookalike")
    options, key = state.options, state.key
    n = holdout_rows(state.rows, options.holdout_fraction)
    sizes, candidates = options.sizes, options.candidates
    columns = holdout_columns(len(sizes))
    shift, bound = scaled_bound(key.scheme, n)  # every held-out column lies in [0, 1]
    values = release(key, key.load_vector(msg["holdout"]), bound, message_bound(key.scheme, 1.0)) / 2.0**shift
    if values.size != columns * len(candidates) + 1:
        raise ProtocolError(f"received {values.size} held-out aggregates, expected {columns * len(candidates) + 1}")
    positives = float(round(values[-1]))  # a count: rounding removes the flooding noise
    negatives = n - positives
    results = []
    for k, l2 in enumerate(candidates):
        block = values[k * columns:(k + 1) * columns]
        rank_sum, hits, score_sum = block[0], block[1:-1], block[-1]
        auc = (n * rank_sum - positives * (positives + 1) / 2) / (positives * negatives) \
            if positives >= 1 and negatives >= 1 else float("nan")
        results.append({"l2": float(l2), "auc": float(auc), "hits": hits, "score_sum": float(score_sum)})
    choice = int(np.nanargmax([r["auc"] for r in results])) if any(np.isfinite(r["auc"]) for r in results) else 0
    best = results[choice]
    audiences = []
    for size, hits in zip(sizes, best["hits"]):
        count = holdout_audience(size, n, state.rows)
        hits = min(max(round(float(hits)), 0), count)  # a count as well
        audiences.append({
            "size": size.label, "holdout_count": count, "seed_members_found": hits,
            "recall": hits / positives if positives > 0 else float("nan"),
            "precision": hits / count,
        })
    label_frequency = best["score_sum"] / positives if positives > 0 else float("nan")
    report = {
        "seed_size": state.seed_size,
        "matched_seed": state.matched,
        "media_rows": state.rows,
        "holdout": {"rows": n, "seed_members": int(positives), "auc": best["auc"], "audiences": audiences},
        "model_selection": [{"l2": r["l2"], "holdout_auc": r["auc"]} for r in results],
        "chosen_l2": best["l2"],
        "positive_unlabelled": {
            "method": "seed vs. rest of audience (Elkan & Noto 2008), ranking-equivalent under SCAR",
            "label_frequency_estimate": float(label_frequency),
            "estimated_lookalike_share": float(state.matched / state.rows / label_frequency)
            if label_frequency > 0 else float("nan"),
        },
        "label_dp": state.dp,
        "notes": "Held-out figures count seed members only: unlabelled users who are like the seed count as "
                 "misses, so precision is a lower bound.",
    }
    (party.out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return Message(choice=ciphertext(seal_values(party, [choice], "lookalike.evaluate")))


# --- 7. lookalike.release_flags ----------------------------------------------------------------

def release_flags(party, msg):
    """Decrypt the media's masked selection of seed flags (flooded); the brand sees only masked values."""
    state = party.phase("lookalike")
    key = state.flag_key
    if key is None:
        raise ProtocolError("lookalike.release_flags without seed exclusion: the brand holds no flag key")
    values = release(key, key.load_vector(msg["flags"]), masked_release_bound(key.scheme, FLAG_BOUND),
                     message_bound(key.scheme, 1.0))
    if values.size != state.rows:
        raise ProtocolError(f"received {values.size} masked flags for {state.rows} media rows")
    return Message(flags=ciphertext(seal_values(party, values, "lookalike.release_flags")))
