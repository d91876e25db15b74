"""Hidden-seed lookalike, the brand's side: ``protocols/lookalike.md``, steps 1, 3, 5 and 7.

The brand holds, from PSI, the seed flags over the media's rows in the media's order. It
encrypts them under fresh keys of its own, and decrypts only what it can check, through
its :class:`~fedscore.kit.release.KeyOwner`: masked values for the media, sums over
held-out seed members for its report, and, with seed exclusion, single 0/1 flags. The
count, shape and bound of every release, the error its flooding covers, how many
releases each key makes and the label-DP noise are its own computation from public
counts (:mod:`.bounds`), never a value the media or the coordinator sent.
"""

import json
import math
from dataclasses import dataclass

import numpy as np

from ... import dp
from ...errors import ProtocolError
from ...he import create_context
from ...kit.release import Expected, KeyOwner
from ...metrics import auc_interval, proportion_interval, reliability_warnings
from ...wire import Message, ciphertext, public
from ..psi.party import BrandFlags
from ..vertical_lr import (
    add_noise,
    create_key,
    encrypt_scaled,
    label_dp_budget,
    masked_release_bound,
    product,
    scaled_bound,
    seal_values,
    weak_keys_allowed,
)
from .bounds import (
    DP_CLIP_NORM,
    aggregate_terms,
    flags_released,
    holdout_audience,
    holdout_columns,
    holdout_rows,
    holdout_values,
    label_aggregate_bound,
    selection_rows,
)
from .options import LookalikeOptions

AGGREGATE_RELEASE_BUDGET = 2**10
"""Values the brand's aggregate key releases: the label aggregate (features + 1) and the
held-out aggregates (a few per candidate). CKKS flooding noise grows with the square
root of the budget, so this key is sized to the protocol instead of the backend default
(2^16); a media that declares more features than the budget leaves room for is refused."""

RELEASE_AGGREGATE, EVALUATE, RELEASE_FLAGS = "lookalike.release_aggregate", "lookalike.evaluate", "lookalike.release_flags"


@dataclass
class BrandState:
    """What the brand keeps between its lookalike steps."""

    options: LookalikeOptions
    owner: KeyOwner
    """The brand's key pair for the label aggregate and the held-out aggregates, and its release plan."""
    seed_size: int
    """Distinct IDs of the seed list (PSI)."""
    matched: int
    """Seed members found among the media's rows: the brand's alone."""
    rows: int
    """The media's rows in its PSI order (public)."""
    budget: object = None
    """With label DP: the brand's own :class:`fedscore.dp.PrivacyBudget` (one Gaussian release)."""
    flag_owner: KeyOwner = None
    """With seed exclusion: a bit key pair for the flags, one ElGamal pair per media row."""
    features: int = None
    """The media's encoded feature count (a size, from the media)."""
    dp: dict = None
    """With label DP: epsilon, delta, the noise and the sensitivity, for the report."""


# --- 1. lookalike.encrypt_labels ---------------------------------------------------------------

def encrypt_labels(party, msg):
    """Encrypt the match flags, in the media's PSI order, under a fresh key of the brand's.

    With ``exclude_seed`` the flags are encrypted a second time, one exponential-ElGamal
    pair per media row under a bit key of their own (:class:`fedscore.he.elgamal.BitKey`):
    the media picks, masks and shuffles those of its top users, and the brand releases
    each as a single bit (step 7).

    Notes
    -----
    The seed list's size was checked against ``min_seed`` before the run (the options'
    ``check_inputs``, run by the library and the command); in a deployment PSI's minimum
    intersection, the same number, stops a short list before this step. The label-DP
    budget is the brand's own (:func:`~fedscore.protocols.vertical_lr.label_dp_budget`):
    a run weaker than its own limit stops here, before a label is encrypted.
    """
    options = LookalikeOptions.from_dict(msg["options"])
    psi = party.phase("psi")
    if not isinstance(psi, BrandFlags):
        raise ProtocolError("lookalike step out of order: labelled PSI has not run at the brand")
    budget = label_dp_budget(party, options.label_dp_epsilon, options.label_dp_delta)
    flags = psi.flags.astype(float)
    key = create_key(options.backend, release_budget=AGGREGATE_RELEASE_BUDGET,
                     paillier_key_bits=options.paillier_key_bits, allow_weak_key=weak_keys_allowed(party))
    owner = KeyOwner(key, {RELEASE_AGGREGATE: 1, EVALUATE: 1})
    state = party.state["lookalike"] = BrandState(options=options, owner=owner, seed_size=int(psi.size),
                                                  matched=int(psi.matched), rows=len(flags), budget=budget)
    reply = {"public_context": public(owner.public_context.to_bytes()),
             "labels": ciphertext(encrypt_scaled(key, flags).to_bytes())}
    if options.exclude_seed:
        flag_key = create_context("elgamal")
        state.flag_owner = KeyOwner(flag_key, {RELEASE_FLAGS: 1})
        reply.update(flag_context=public(state.flag_owner.public_context.to_bytes()),
                     flags=ciphertext(flag_key.encrypt_bits(psi.flags.astype(np.int8)).to_bytes()))
    return Message(**reply)


# --- 3. lookalike.release_aggregate ------------------------------------------------------------

def release_aggregate(party, msg):
    """Decrypt the masked label aggregate for the media, flooded, with the label-DP noise by default.

    Notes
    -----
    The mask is the media's; the brand sees a uniformly masked value. It expects
    ``features + 1`` partial sums (the media's feature count is a size it sent), each a
    product of its encrypted flags by a matrix whose entries and column sums it bounds
    from the row counts (:func:`~.bounds.aggregate_terms`). The Gaussian noise is added
    to the masked value, which is the same as adding it to the aggregate; it is drawn
    at the aggregate's scale, which the brand derives from the public row counts.
    """
    state = party.phase("lookalike")
    options, owner = state.options, state.owner
    state.features = features = int(msg["features"])
    held = holdout_values(len(options.sizes), len(options.candidates),
                          holdout_rows(state.rows, options.holdout_fraction))
    if owner.key.scheme == "ckks" and features + 1 + held > owner.key.release_budget:
        raise ProtocolError(f"the media declares {features} features: with the held-out aggregates that is more "
                            f"values than this key releases ({owner.key.release_budget}): refused")
    bound = label_aggregate_bound(state.rows, options.holdout_fraction)
    dp_on = state.budget is not None
    expected = Expected(RELEASE_AGGREGATE, count=features + 1, bound=masked_release_bound(owner.key.scheme, bound),
                        product=product(owner.key.scheme, bound, state.rows,
                                        aggregate_terms(state.rows, DP_CLIP_NORM if dp_on else None)))
    values = owner.release(msg["aggregate"], expected)
    if dp_on:
        shift, _ = scaled_bound(owner.key.scheme, bound)
        sensitivity = math.sqrt(DP_CLIP_NORM**2 + 1.0)
        std = state.budget.noise_multiplier * sensitivity
        state.budget.spend(what="the label aggregate")
        values = add_noise(values, dp.gaussian_noise(std, features + 1), shift,
                           None if owner.key.scheme == "ckks" else 2 * owner.key.precision_bits)
        state.dp = {"epsilon": state.budget.epsilon, "delta": state.budget.delta, "noise_std": std,
                    "sensitivity": sensitivity, "noise_multiplier": state.budget.noise_multiplier,
                    "releases": state.budget.spent}
    return Message(aggregate=ciphertext(seal_values(party, values, RELEASE_AGGREGATE)))


# --- 5. lookalike.evaluate ---------------------------------------------------------------------

def evaluate(party, msg):
    """Turn the held-out aggregates into AUC and audience recall/precision; pick a candidate.

    The aggregates are, per candidate, ``Σ y_i u_i`` (``u_i`` the rank of user i's score
    among the reported held-out users, divided by their number), ``Σ y_i [i in top s]``
    per audience size ``s``, ``Σ y_i p_i`` (``p_i`` the score), and with several
    candidates the same rank sum over the selection rows; then ``Σ y_i`` over each
    (:func:`~.bounds.holdout_values`) -- sums over held-out rows only, so the brand
    learns no user's score. The candidate is chosen on the selection rows' AUC and
    reported on the others'. Every column lies in ``[0, 1]`` over the held-out rows: the
    brand bounds the values and the error of their products from the held-out count alone.
    """
    state = party.phase("lookalike")
    options, owner = state.options, state.owner
    held = holdout_rows(state.rows, options.holdout_fraction)
    sizes, candidates = options.sizes, options.candidates
    n_selection = selection_rows(held, len(candidates))
    n = held - n_selection  # the reported held-out rows
    reported_columns = holdout_columns(len(sizes))
    columns = reported_columns + (n_selection > 0)
    scheme = owner.key.scheme
    shift, bound = scaled_bound(scheme, held)
    expected = Expected(EVALUATE, count=holdout_values(len(sizes), len(candidates), held), bound=bound,
                        product=product(scheme, held, state.rows, [(held, 1.0)], additions=2))
    released = owner.release(msg["holdout"], expected)
    if scheme == "ckks":
        values = np.asarray(released) / 2.0**shift
    else:
        values = np.array([math.ldexp(float(v), -(2 * owner.key.precision_bits + shift)) for v in released])
    counts = values[len(candidates) * columns:]  # Σ y over the reported rows, then over the selection rows
    positives = float(round(counts[0]))  # a count: rounding removes the flooding noise
    negatives = n - positives
    selection_positives = float(round(counts[1])) if n_selection else 0.0
    results = []
    for k, l2 in enumerate(candidates):
        block = values[k * columns:(k + 1) * columns]
        rank_sum, hits, score_sum = block[0], block[1:reported_columns - 1], block[reported_columns - 1]
        result = {"l2": float(l2), "auc": _auc(rank_sum, n, positives), "hits": hits, "score_sum": float(score_sum)}
        if n_selection:
            result["selection_auc"] = _auc(block[-1], n_selection, selection_positives)
        results.append(result)
    chosen_on = [r["selection_auc"] for r in results] if n_selection else [0.0]
    choice = int(np.nanargmax(chosen_on)) if np.isfinite(chosen_on).any() else 0
    best = results[choice]
    audiences = []
    for size, hits in zip(sizes, best["hits"]):
        count = holdout_audience(size, n, state.rows)
        hits = min(max(round(float(hits)), 0), count)  # a count as well
        audiences.append({
            "size": size.label, "holdout_count": count, "seed_members_found": hits,
            "recall": hits / positives if positives > 0 else float("nan"),
            "precision": hits / count,
            "precision_interval": list(proportion_interval(hits, count)),
            "recall_interval": list(proportion_interval(hits, int(positives))),
        })
    label_frequency = best["score_sum"] / positives if positives > 0 else float("nan")
    report = {
        "seed_size": state.seed_size,
        "matched_seed": state.matched,
        "media_rows": state.rows,
        "holdout": {"rows": n, "seed_members": int(positives), "auc": best["auc"],
                    "auc_interval": list(auc_interval(best["auc"], positives, negatives)), "audiences": audiences},
        "model_selection": [{"l2": r["l2"], "selection_auc": r["selection_auc"],
                             "selection_auc_interval": list(auc_interval(
                                 r["selection_auc"], selection_positives, n_selection - selection_positives))}
                            for r in results] if n_selection else [{"l2": best["l2"]}],
        "selection": {"rows": n_selection, "seed_members": int(selection_positives)} if n_selection else None,
        "chosen_l2": best["l2"],
        "positive_unlabelled": {
            "method": "seed vs. rest of audience (Elkan & Noto 2008), ranking-equivalent under SCAR",
            "label_frequency_estimate": float(label_frequency),
            "estimated_lookalike_share": float(state.matched / state.rows / label_frequency)
            if label_frequency > 0 else float("nan"),
        },
        "label_dp": state.dp,
        "notes": "Held-out figures count seed members only: unlabelled users who are like the seed count as "
                 "misses, so precision is a lower bound." + (
                     f" The L2 penalty was chosen among {len(results)} candidates on {n_selection:,} other held-out "
                     "users (half of them): the figures here come from users who chose nothing." if n_selection
                     else ""),
        "warnings": reliability_warnings(int(positives), None, "the held-out figures"),
    }
    (party.out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return Message(choice=ciphertext(seal_values(party, np.array([choice]), EVALUATE)))


def _auc(rank_sum, rows, positives):
    """AUC from ``Σ y_i u_i`` (``u_i`` a user's rank among ``rows`` users over ``rows``) and the positives' count."""
    negatives = rows - positives
    if positives < 1 or negatives < 1:
        return float("nan")
    return float((rows * rank_sum - positives * (positives + 1) / 2) / (positives * negatives))


# --- 7. lookalike.release_flags ----------------------------------------------------------------

def release_flags(party, msg):
    """Release the media's masked, shuffled selection of seed flags: exactly ``K`` values, each one bit.

    ``K`` is the brand's own count (:func:`~.bounds.flags_released`): the largest
    audience plus the seed list's size, from the options and its own list. Each value
    must decrypt to exactly 0 or 1: a selection of everyone is refused by the count, a
    sum or a multiple of several flags by the bit check. The media XOR-masked each bit
    with a random bit of its own and shuffled them, so the brand sees uniform bits and
    not even how many seed members the media picked.
    """
    state = party.phase("lookalike")
    if state.flag_owner is None:
        raise ProtocolError("lookalike.release_flags without seed exclusion: the brand holds no flag key")
    count = flags_released(state.options.sizes, state.rows, state.seed_size)
    bits = state.flag_owner.release_bits(msg["flags"], Expected(RELEASE_FLAGS, count=count, bound=1.0))
    return Message(flags=ciphertext(seal_values(party, bits, RELEASE_FLAGS)))
