"""A curious media with rare data: how well it recovers seed membership, labels and training membership.

The issue's scenario. A media table holds, beside its real behavioural columns (bank
marketing's contact and campaign columns), users who are alone in a category of a text
column (a rare store id or postcode), users who share a category with a few others, and
users with an extreme value in one numeric column. The brand's seed (lookalike) or labels
(propensity) are chosen so that half of each set of such users are seed members or
positives. Both protocols run for real, through the library functions and the local
engine, with the options under test; then the media attacks every user of each set from
what it holds at the end of the run, and each attack is scored by AUC against the truth.

What the media holds (read from its own state, never from the brand's, by a white-box
observer that patches nothing the protocol computes):

* lookalike: the released label aggregate ``A ≈ [Xᵀy, Σy]`` over its training rows, as
  its training step receives it; its trained model and its score of every user; with
  seed exclusion, the seed flags of the top users it asked for.
* propensity: its gradient every epoch, as its optimiser receives it; with label DP, the
  noisy label aggregate it received once and the label-free release it subtracts it
  from; its trained weights and partial logits.

Attacks, each a score per user (``X`` the media's rows as it trains on them):

* least squares: the minimum-norm per-user vector consistent with an aggregate ``v = Xᵀr``,
  ``X (XᵀX)⁺ v``. For a user alone in a column it is that user's own value exactly (the
  column's sum has one term); for a user with an outlying value nearly so; for a group
  it is the group's mean. Applied to the release, to each epoch's gradient, to their sum,
  to the noisy label aggregate, and to the trained weights.
* the model's own score of the user (its partial logit in propensity).
* training membership (propensity): the magnitude of the same reconstructions (a user
  whose residual never entered a gradient reconstructs to zero).

The figure reported per set is the strongest attack: the largest ``max(AUC, 1 - AUC)``
over the attacks, chosen with the truth, so an upper bound of what the media could do
with any one of them. Truth: seed membership over the set (all its users are training
rows of the lookalike); propensity labels over the set's training users; training
membership over the whole set (training users against validation users and users to
score). The protocol's own model quality is reported beside each setting.

Settings: (i) the options before this change (no label DP, no limits, seed excluded in
the lookalike); (ii) label DP at candidate epsilons; (iii) rare categories merged
(``min_category_count``) and outliers limited (``outlier_quantile``) at candidate values;
(iv) the current defaults (no options given); (v) opted out (no label DP, no limits).
"""

import contextlib
import math
import pickle
import statistics
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHARED_DATA, parse_args, write_results  # noqa: E402

import fedscore  # noqa: E402
from fedscore.errors import InputError  # noqa: E402
from fedscore.metrics import auc  # noqa: E402
from fedscore.protocols.lookalike import media as lookalike_media  # noqa: E402
from fedscore.protocols.lookalike.media import holdout_mask  # noqa: E402
from fedscore.protocols.lookalike.options import LookalikeOptions  # noqa: E402
from fedscore.protocols.propensity.brand import validation_split  # noqa: E402
from fedscore.protocols.propensity.options import PropensityOptions  # noqa: E402
from fedscore.protocols.vertical_lr import BoundOptimizer  # noqa: E402
from fedscore.runtime.party import PartyContext  # noqa: E402

BRAND, MEDIA = "brand", "media"
BANK = SHARED_DATA / "public" / "bank_marketing_full.csv"
BANK_BRAND = ["age", "job", "marital", "education", "default", "balance", "housing", "loan"]
BANK_MEDIA = ["contact", "day", "month", "campaign", "pdays", "previous", "poutcome"]  # no `duration`
SEED_SHARE = 0.5
"""The lookalike's seed: subscribers among a random half of the clients (as bench_lookalike.py)."""

ALONE = "alone in a category"
OUTLIER = "numeric outlier"


@dataclass(frozen=True)
class TargetSet:
    """Users the media singles out: ``size`` of them, in categories of ``group`` users, or outliers."""

    name: str
    size: int
    group: int | None  # users per category; None: one outlying numeric value each


LOOKALIKE_SETS = (TargetSet(ALONE, 80, 1), TargetSet("category of 2", 80, 2), TargetSet("category of 5", 80, 5),
                  TargetSet("category of 10", 80, 10), TargetSet("category of 20", 160, 20),
                  TargetSet(OUTLIER, 20, None))
"""Per run: users alone in a category, groups of 2 to 20 (to see where merging must start), and users
each with an outlying value in a numeric column of their own. Over the repeats that is the issue's
200 users alone in a category twice over; one column of 80 rare categories per set keeps the media's
table to about 250 columns (more columns mean a larger release budget and more CKKS flooding noise,
which would blur the users the attack is after)."""

PROPENSITY_SETS = (TargetSet(ALONE, 80, 1), TargetSet("category of 20", 80, 20), TargetSet(OUTLIER, 20, None))

SMOKE_LOOKALIKE_SETS = (TargetSet(ALONE, 20, 1), TargetSet("category of 5", 20, 5), TargetSet(OUTLIER, 10, None))
SMOKE_PROPENSITY_SETS = (TargetSet(ALONE, 40, 1), TargetSet(OUTLIER, 20, None))

LOOKALIKE_ROWS = 10_000
"""Bank clients sampled as the media's audience (a fresh sample each repeat)."""

PROPENSITY_ROWS = 4000
"""Bank clients sampled for propensity (a fresh sample each repeat): the full table takes about
13 minutes per run on two cores (bench_propensity.py)."""

TO_SCORE_SHARE = 0.15
"""Share of the brand's matched users left unlabelled (to be scored) in propensity."""

RARE_PER_COLUMN = 80
COMMON_VALUES = 10
"""A rare-category column holds at most 80 rare categories and 10 common ones, below the
encoder's 100 distinct values a column may have (more is refused as an identifier)."""

OUTLIER_FACTOR = 50.0
"""An outlying user's value: 50 times the column's largest other value (lognormal columns)."""

EPSILONS = (1.0, 2.0, 4.0, 8.0)
CANDIDATE_EPSILONS = (2.0, 4.0)
"""Label-DP epsilons measured with the default encoding limits, beside the default one: the choice."""
MIN_COUNTS = (5, 10, 20)
OUTLIER_QUANTILES = (0.001, 0.005, 0.01)
REPEATS = {"lookalike": 5, "propensity": 3}
PROPENSITY_LIMITS = ("rare categories merged below 20 rows alone", "outliers limited to the [0.005, 0.995] quantiles alone")
"""Propensity runs cost minutes each: of the limit settings it measures these two (the lookalike measures all)."""

AUC_TARGET = 0.6
"""BRIEF.md: with default options no party recovers another's labels, seed membership or
training membership better than AUC 0.6."""


# --- what the media holds: a white-box observer ------------------------------------------------

@dataclass
class Observation:
    """Party contexts of the last run, the lookalike's released aggregate, every optimiser step."""

    parties: dict = field(default_factory=dict)
    aggregates: list = field(default_factory=list)
    steps: list = field(default_factory=list)

    def media_gradients(self, optimizer):
        """The data gradients (mean loss, without the L2 term) ``optimizer`` was stepped with, in order."""
        return [gradient for owner, gradient in self.steps if owner is optimizer]


@contextlib.contextmanager
def observe():
    """Record, while a run goes on in this process, what the parties hold.

    Wraps three functions around the protocol without changing what they compute:
    ``PartyContext.handle`` (to keep each role's context, and so its state, after the
    run), the lookalike media's ``fit_from_aggregate`` (the release its training
    receives), and ``BoundOptimizer.step`` (every gradient an optimiser is stepped
    with; the media's are told apart by their optimiser).
    """
    seen = Observation()
    handle, fit, step = PartyContext.handle, lookalike_media.fit_from_aggregate, BoundOptimizer.step

    def handle_and_keep(self, *args, **kwargs):
        seen.parties[self.role] = self
        return handle(self, *args, **kwargs)

    def fit_and_keep(features, label_aggregate, *args, **kwargs):
        seen.aggregates.append(np.array(label_aggregate, dtype=float))
        return fit(features, label_aggregate, *args, **kwargs)

    def step_and_keep(self, data_gradient):
        seen.steps.append((self, np.array(data_gradient, dtype=float)))
        return step(self, data_gradient)

    PartyContext.handle, lookalike_media.fit_from_aggregate, BoundOptimizer.step = \
        handle_and_keep, fit_and_keep, step_and_keep
    try:
        yield seen
    finally:
        PartyContext.handle, lookalike_media.fit_from_aggregate, BoundOptimizer.step = handle, fit, step


# --- options --------------------------------------------------------------------------------------

def label_dp_off():
    """The value of ``label_dp_epsilon`` that turns label DP off: ``inf`` where accepted, else None."""
    try:
        PropensityOptions.from_dict({"id_column": "uid", "label_column": "y", "label_dp_epsilon": math.inf})
        return math.inf
    except InputError:
        return None


@dataclass(frozen=True)
class Setting:
    name: str
    kind: str  # before / label DP / limits / defaults / opted out
    options: dict


def settings(smoke, sweep=False):
    """The option sets measured, (i) to (v) of the module docstring (the sweeps (ii) and (iii) with ``sweep``)."""
    off = label_dp_off()
    unlimited = {"min_category_count": None, "outlier_quantile": None}
    epsilons, counts, quantiles = ((2.0,), (20,), (0.01,)) if smoke else (EPSILONS, MIN_COUNTS, OUTLIER_QUANTILES)
    rows = [Setting("before this change: no label DP, no limits, seed excluded", "before",
                    {"label_dp_epsilon": off, "exclude_seed": True, **unlimited})]
    if sweep:
        rows += [Setting(f"label DP ε = {e:g} alone", "label DP",
                         {"label_dp_epsilon": e, "exclude_seed": False, **unlimited}) for e in epsilons]
        rows += [Setting(f"rare categories merged below {m} rows alone", "limits",
                         {"label_dp_epsilon": off, "exclude_seed": False, "min_category_count": m,
                          "outlier_quantile": None}) for m in counts]
        rows += [Setting(f"outliers limited to the [{q:g}, {1 - q:g}] quantiles alone", "limits",
                         {"label_dp_epsilon": off, "exclude_seed": False, "min_category_count": None,
                          "outlier_quantile": q}) for q in quantiles]
    rows += [Setting(f"label DP ε = {e:g} with the default limits", "candidate", {"label_dp_epsilon": e})
             for e in CANDIDATE_EPSILONS if e != _default_epsilon()]
    rows += [Setting(f"defaults ({describe_defaults()})", "defaults", {}),
             Setting("opted out: no label DP, no limits", "opted out", {"label_dp_epsilon": off, **unlimited})]
    return rows


def _default_epsilon():
    return PropensityOptions.from_dict({"id_column": "uid", "label_column": "y"}).label_dp_epsilon


def describe_defaults():
    """The defaults the code has now, in words."""
    lookalike, propensity = LookalikeOptions.from_dict({"id_column": "uid"}), \
        PropensityOptions.from_dict({"id_column": "uid", "label_column": "y"})
    parts = []
    for name, options in (("lookalike", lookalike), ("propensity", propensity)):
        epsilon = options.label_dp_epsilon
        parts.append(f"{name} label DP " + ("off" if epsilon is None or not math.isfinite(epsilon) else f"ε = {epsilon:g}"))
    parts.append(f"min_category_count {propensity.min_category_count}, outlier_quantile {propensity.outlier_quantile}")
    parts.append("seed excluded" if lookalike.exclude_seed else "seed included")
    return "; ".join(parts)


def options_for(schema, setting, base):
    """``base`` and the setting's options that ``schema`` has (``exclude_seed`` is the lookalike's alone)."""
    names = {f.name for f in schema.__dataclass_fields__.values()}
    return {**base, **{k: v for k, v in setting.options.items() if k in names}}


# --- the scenario -----------------------------------------------------------------------------------

def draw_targets(pools, sizes, rng):
    """Draw disjoint users from ``pools`` (name -> rows): ``sizes`` maps each pool to how many."""
    chosen = {}
    for pool, count in sizes.items():
        available = pools[pool]
        if count > len(available):
            raise SystemExit(f"the scenario needs {count} users from the pool {pool!r}, which has {len(available)}")
        picked = rng.choice(available, size=count, replace=False)
        pools[pool] = np.setdiff1d(available, picked)
        chosen[pool] = picked
    return chosen


def rare_columns(media, target_set, members, rng, number):
    """Add ``target_set``'s columns to ``media`` (in place): its members' rare categories, or outliers.

    A categorical set becomes text columns in which the members, shuffled, are dealt into
    categories of ``group`` users each (at most :data:`RARE_PER_COLUMN` of them per column),
    and every other user holds one of :data:`COMMON_VALUES` common categories. An outlier set
    becomes one lognormal numeric column per member, in which that member's value is
    :data:`OUTLIER_FACTOR` times the largest other value.
    """
    rows = len(media)
    members = rng.permutation(members)
    if target_set.group is None:
        for k, row in enumerate(members):
            values = rng.lognormal(0.0, 1.0, rows)
            values[row] = OUTLIER_FACTOR * values.max()
            media[f"spend{number}_{k:03d}"] = values.round(4)
        return
    groups = [members[i:i + target_set.group] for i in range(0, len(members), target_set.group)]
    for c, start in enumerate(range(0, len(groups), RARE_PER_COLUMN)):
        column = np.array([f"common{v:02d}" for v in rng.integers(COMMON_VALUES, size=rows)], dtype=object)
        for k, group in enumerate(groups[start:start + RARE_PER_COLUMN]):
            column[group] = f"r{number}-{c}-{k:03d}"
        media[f"store{number}_{c}"] = column


def bank_frame(rows, random_state):
    frame = pd.read_csv(BANK, dtype=str, keep_default_na=False)
    if rows:
        frame = frame.sample(rows, random_state=random_state)
    return frame.reset_index(drop=True)


# --- attacks ----------------------------------------------------------------------------------------

def least_squares(features, vector, gram_inverse=None):
    """``X (XᵀX)⁺ v``: the minimum-norm per-row vector whose aggregate ``Xᵀr`` is ``v``."""
    if gram_inverse is None:
        gram_inverse = np.linalg.pinv(features.T @ features, rcond=1e-10, hermitian=True)
    return features @ (gram_inverse @ vector)


def symmetric_auc(truth, score):
    """``max(AUC, 1 - AUC)``: an attacker who has the direction wrong turns the score round."""
    value = auc(truth, score)
    return value if math.isnan(value) else max(value, 1.0 - value)


def strongest(truth, attacks):
    """(AUC, attack): the largest :func:`symmetric_auc` over ``attacks`` (name -> score), with its name."""
    best = (float("nan"), "")
    for name, score in attacks.items():
        value = symmetric_auc(truth, score)
        if not math.isnan(value) and (math.isnan(best[0]) or value > best[0]):
            best = (value, name)
    return best


def hanley_mcneil(value, positives, negatives):
    """Standard error of an AUC estimate (Hanley & McNeil, Radiology 1982)."""
    if math.isnan(value) or positives < 1 or negatives < 1:
        return float("nan")
    q1, q2 = value / (2 - value), 2 * value**2 / (1 + value)
    variance = (value * (1 - value) + (positives - 1) * (q1 - value**2)
                + (negatives - 1) * (q2 - value**2)) / (positives * negatives)
    return math.sqrt(max(variance, 0.0))


def per_epoch(residuals):
    """Attacks on the per-epoch reconstructions ``r̂_t``: (label scores, membership scores) by name."""
    total = np.sum(residuals, axis=0)
    label = {"first epoch": -residuals[0], "sum over epochs": -total}
    label.update({f"epoch {t + 1}": -r for t, r in enumerate(residuals[1:], 1)})
    membership = {"first epoch": np.abs(residuals[0]), "sum over epochs": np.abs(total),
                  "sum of magnitudes over epochs": np.sum(np.abs(residuals), axis=0)}
    membership.update({f"epoch {t + 1}": np.abs(r) for t, r in enumerate(residuals[1:], 1)})
    return label, membership


# --- lookalike ----------------------------------------------------------------------------------------

def lookalike_scenario(rows, sets, random_state, holdout_fraction):
    """Seed list, media table and, per target set, the media rows (table order = PSI order) of its users.

    The seed is the subscribers among a random half of the clients, except for the target
    users: drawn at random among the media's training rows, exactly half of each set are
    made seed members at random. Their membership is then independent of their features,
    so an attack that beats chance on them has learnt it from the user's own contribution,
    not from what the model generalises to anyone who looks like them.
    """
    rng = np.random.default_rng(random_state)
    frame = bank_frame(rows, random_state)
    seed_flags = (rng.random(len(frame)) < SEED_SHARE) & (frame["y"] == "yes").to_numpy()
    training = ~holdout_mask(len(frame), holdout_fraction, random_state)
    pools = {"training": np.flatnonzero(training)}
    media = frame[["uid"] + BANK_MEDIA].copy()
    targets = {}
    for number, target_set in enumerate(sets):
        members = draw_targets(pools, {"training": target_set.size}, rng)["training"]
        seed_flags[members] = np.arange(len(members)) < len(members) // 2  # members come in random order
        targets[target_set.name] = members
        rare_columns(media, target_set, members, rng, number)
    return frame.loc[seed_flags, ["uid"]], media, targets


def lookalike_attacks(seen, options):
    """Per attack, a score of every media row (PSI order) from what the media holds; and the exact Xᵀy reference."""
    state = seen.parties[MEDIA].state["lookalike"]
    flags = seen.parties[BRAND].state["psi"].flags.astype(float)
    train = ~state.holdout
    design = np.hstack([state.features, np.ones((len(state.features), 1))])
    gram_inverse = np.linalg.pinv(design[train].T @ design[train], rcond=1e-10, hermitian=True)
    release = seen.aggregates[0]
    exact = design[train].T @ flags[train]
    score = state.scores
    attacks = {"release, least squares": least_squares(design, release, gram_inverse),
               "its model's score": score}
    selected = getattr(state, "selected", None)
    if options.exclude_seed and selected is not None:
        known = np.zeros(len(score))
        known[selected] = 2.0 * flags[selected] - 1.0  # the flags it asked for: +1 seed, -1 not
        attacks["its model's score and the seed flags of its top users"] = score + 10.0 * known
    reference = {"exact Xᵀy (unflooded), least squares": least_squares(design, exact, gram_inverse)}
    return attacks, reference, float(np.max(np.abs(release - exact)))


def lookalike_run(folder, rows, sets, setting, random_state):
    base = {"id_column": "uid", "random_state": random_state, "min_seed": 20}
    given = options_for(LookalikeOptions, setting, base)
    options = LookalikeOptions.from_dict(given)
    seed, media, targets = lookalike_scenario(rows, sets, random_state, options.holdout_fraction)
    with observe() as seen:
        result = fedscore.lookalike(seed, media, out=folder / "run", **given)
    state = seen.parties[MEDIA].state["lookalike"]
    flags = seen.parties[BRAND].state["psi"].flags.astype(float)
    attacks, reference, error = lookalike_attacks(seen, options)
    measured = {}
    for name, members in targets.items():
        if state.holdout[members].any():
            raise SystemExit("a target landed in the media's held-out rows: the split is not the one expected")
        measured[name] = {"seed membership": (flags[members], {a: s[members] for a, s in attacks.items()}),
                          "reference": (flags[members], {a: s[members] for a, s in reference.items()})}
    return {"sets": measured, "model auc": result.report["holdout"]["auc"], "release error": error,
            "noise std": (result.report.get("label_dp") or {}).get("noise_std", 0.0)}


# --- propensity -------------------------------------------------------------------------------------

def propensity_scenario(rows, sets, random_state, validation_fraction):
    """Brand and media tables and, per target set, its users' IDs.

    Each set is drawn at random: half training users, a quarter validation users and a
    quarter users to score (unlabelled). The labelled ones are given labels at random, half
    positive, so that their labels are independent of their features (see
    :func:`lookalike_scenario`); every other user keeps its own label.
    """
    rng = np.random.default_rng(random_state)
    frame = bank_frame(rows, random_state)
    to_score = rng.random(len(frame)) < TO_SCORE_SHARE
    ids = frame["uid"].to_numpy(dtype=object)
    validation = validation_split(ids, ~to_score, validation_fraction, random_state)  # depends on IDs only
    pools = {"training": np.flatnonzero(~to_score & ~validation), "validation": np.flatnonzero(validation),
             "score": np.flatnonzero(to_score)}
    labels = frame["y"].to_numpy(dtype=object)
    media = frame[["uid"] + BANK_MEDIA].copy()
    targets = {}
    for number, target_set in enumerate(sets):
        quarter = target_set.size // 4
        drawn = draw_targets(pools, {"training": 2 * quarter, "validation": quarter,
                                     "score": target_set.size - 3 * quarter}, rng)
        for role in ("training", "validation"):
            labels[drawn[role]] = np.where(np.arange(len(drawn[role])) < len(drawn[role]) // 2, "yes", "no")
        members = np.concatenate(list(drawn.values()))
        targets[target_set.name] = ids[members]
        rare_columns(media, target_set, members, rng, number)
    brand = frame[["uid"] + BANK_BRAND].assign(y=np.where(to_score, "", labels))
    return brand, media, targets


def propensity_attacks(seen):
    """Label scores and membership scores of every matched user (PSI order), by attack, from what the media holds."""
    state = seen.parties[MEDIA].state["propensity"]
    features = state.features
    gram_inverse = np.linalg.pinv(features.T @ features, rcond=1e-10, hermitian=True)
    n = state.sizes.training
    gradients = [n * g for g in seen.media_gradients(state.optimizer)]
    residuals = [least_squares(features, g, gram_inverse) for g in gradients]
    label, membership = ({f"gradient, {k}": v for k, v in d.items()} for d in per_epoch(residuals))
    if state.label_term is not None:
        noisy = least_squares(features, state.label_term, gram_inverse)
        label["noisy label aggregate"] = noisy
        membership["noisy label aggregate"] = np.abs(noisy)
        # the release before the noisy label term is subtracted: label-free, but zero for users outside training
        _, free = per_epoch([r + noisy for r in residuals])
        membership.update({f"label-free release, {k}": v for k, v in free.items()})
    from_weights = least_squares(features, state.model.coef, gram_inverse)
    label["its trained weights"] = from_weights
    membership["its trained weights"] = np.abs(from_weights)
    label["its partial logit"] = state.model.logits(state.encoded)
    return label, membership, len(gradients)


def propensity_run(folder, rows, sets, setting, random_state, epochs):
    base = {"id_column": "uid", "label_column": "y", "random_state": random_state, "epochs": epochs,
            "min_intersection": 10}
    given = options_for(PropensityOptions, setting, base)
    options = PropensityOptions.from_dict(given)
    brand, media, targets = propensity_scenario(rows, sets, random_state, options.validation_fraction)
    with observe() as seen:
        result = fedscore.propensity(brand, media, out=folder / "run", **given)
    truth = seen.parties[BRAND].state["propensity"]
    order = {uid: i for i, uid in enumerate(seen.parties[BRAND].state["psi"].ids)}
    label, membership, epochs_run = propensity_attacks(seen)
    measured = {}
    for name, ids in targets.items():
        members = np.array([order[uid] for uid in ids])
        trained = members[truth.train[members]]
        measured[name] = {"label": (truth.labels[trained], {a: s[trained] for a, s in label.items()}),
                          "training membership": (truth.train[members].astype(float),
                                                  {a: s[members] for a, s in membership.items()})}
    report = result.report
    return {"sets": measured, "model auc": report["validation"]["auc"], "epochs": epochs_run,
            "noise std": (report.get("label_dp") or {}).get("noise_std", 0.0)}


CHANCE_SHUFFLES = 21
"""Shuffles of the truth for the chance level of the strongest-attack selection (its median is reported)."""


# --- pooling repeats ------------------------------------------------------------------------------------

@dataclass
class Pooled:
    """One quantity of one target set under one setting, over every repeat."""

    auc: float
    attack: str
    se: float
    spread: float
    median: float
    """The median over the repeats of each repeat's own strongest-attack AUC."""
    users: int
    per_attack: dict
    chance: float
    """The same selection of the strongest attack with the truth shuffled: what it reaches by chance alone."""


def pool(measured, target, quantity):
    """Concatenate the truth and each attack's scores over the repeats; the strongest attack's pooled AUC.

    Every attack's scores are in units that do not change between repeats (labels or
    residuals in label units, probabilities, partial logits), so the pooled AUC ranks
    users of different repeats together, as an attacker holding all of them would.
    """
    truths = [m["sets"][target][quantity][0] for m in measured]
    names = list(measured[0]["sets"][target][quantity][1])
    truth = np.concatenate(truths)
    scores = {a: np.concatenate([m["sets"][target][quantity][1][a] for m in measured]) for a in names
              if all(a in m["sets"][target][quantity][1] for m in measured)}
    value, attack = strongest(truth, scores)
    runs = [strongest(*m["sets"][target][quantity])[0] for m in measured]
    positives = int(truth.sum())
    shuffles = np.random.default_rng(0)
    chance = statistics.median(strongest(shuffles.permutation(truth), scores)[0] for _ in range(CHANCE_SHUFFLES))
    return Pooled(auc=round(value, 3), attack=attack, se=round(hanley_mcneil(value, positives, len(truth) - positives), 3),
                  spread=round(max(runs) - min(runs), 3), median=round(statistics.median(runs), 3), users=len(truth),
                  per_attack={a: round(symmetric_auc(truth, s), 3) for a, s in scores.items()}, chance=round(chance, 3))


# --- tables -------------------------------------------------------------------------------------------

def median(values):
    values = [v for v in values if not (isinstance(v, float) and math.isnan(v))]
    return round(statistics.median(values), 4) if values else float("nan")


def lookalike_table(runs, sets, note):
    columns = ["setting", *[f"{s.name}: seed membership AUC" for s in sets], "standard error (alone)",
               "spread over repeats (alone)", "strongest attack (alone)", "model held-out AUC",
               "label-DP noise std", "repeats"]
    rows = []
    for setting, measured in runs:
        pooled = [pool(measured, s.name, "seed membership") for s in sets]
        alone = pooled[0]
        rows.append([setting.name, *[p.auc for p in pooled], alone.se, alone.spread, alone.attack,
                     median([m["model auc"] for m in measured]),
                     round(statistics.median(m["noise std"] for m in measured), 2), len(measured)])
    return {"title": f"Lookalike: seed membership recovered by the media, bank marketing with rare users ({note})",
            "columns": columns, "rows": rows}


def propensity_table(runs, sets, note):
    columns = ["setting"]
    for s in sets:
        columns += [f"{s.name}: label AUC", f"{s.name}: training membership AUC"]
    columns += ["standard error (alone, labels)", "standard error (alone, membership)",
                "strongest attack (alone, labels)", "strongest attack (alone, membership)",
                "joint model validation AUC", "label-DP noise std", "epochs run", "repeats"]
    rows = []
    for setting, measured in runs:
        row, alone = [setting.name], None
        for s in sets:
            label, member = pool(measured, s.name, "label"), pool(measured, s.name, "training membership")
            alone = alone or (label, member)
            row += [label.auc, member.auc]
        row += [alone[0].se, alone[1].se, alone[0].attack, alone[1].attack,
                median([m["model auc"] for m in measured]),
                round(statistics.median(m["noise std"] for m in measured), 2),
                statistics.median(m["epochs"] for m in measured), len(measured)]
        rows.append(row)
    return {"title": f"Propensity: labels and training membership recovered by the media, bank marketing with rare "
                     f"users ({note})",
            "columns": columns, "rows": rows}


HEADLINE_KINDS = ("defaults", "candidate", "opted out", "before")


def headline_table(lookalike_runs, propensity_runs):
    """The issue's figures: users alone in a category and outliers, at the defaults, opted out and before."""
    rows = []
    for kind in HEADLINE_KINDS:
        for job, runs, quantities in (("lookalike", lookalike_runs, ("seed membership",)),
                                      ("propensity", propensity_runs, ("label", "training membership"))):
            for setting, measured in runs:
                if setting.kind != kind:
                    continue
                for quantity in quantities:
                    alone, outlier = pool(measured, ALONE, quantity), pool(measured, OUTLIER, quantity)
                    corrected = [round(0.5 + max(0.0, p.auc - p.chance), 3) for p in (alone, outlier)]
                    rows.append([job, quantity, setting.name, alone.auc, alone.se, alone.chance, corrected[0],
                                 alone.median, alone.users, outlier.auc, outlier.se, outlier.chance, corrected[1],
                                 outlier.median, outlier.users, len(measured),
                                 "yes" if max(corrected) <= AUC_TARGET else "no"])
    return {"title": f"Users alone in a category and users with an outlying value: the strongest attack's AUC "
                     f"(target: at most {AUC_TARGET} with default options)",
            "columns": ["job", "recovered", "setting", "alone in a category: attack AUC (pooled)", "standard error",
                        "chance level", "alone in a category: above chance", "median over repeats", "users",
                        "numeric outlier: attack AUC (pooled)", "standard error (outliers)", "chance level (outliers)",
                        "numeric outlier: above chance", "median over repeats (outliers)", "outlier users",
                        "repeats", f"within {AUC_TARGET} above chance"],
            "rows": rows}


def attacks_table(lookalike_runs, propensity_runs):
    """Every attack's pooled AUC on the users alone in a category, at the headline settings."""
    rows = []
    for kind in HEADLINE_KINDS:
        for job, runs, quantities in (("lookalike", lookalike_runs, ("seed membership", "reference")),
                                      ("propensity", propensity_runs, ("label", "training membership"))):
            for setting, measured in runs:
                if setting.kind != kind:
                    continue
                for quantity in quantities:
                    for target in (ALONE, OUTLIER):
                        pooled = pool(measured, target, quantity)
                        shown = {a: v for a, v in pooled.per_attack.items() if not a.startswith(("gradient, epoch",
                                                                                                   "label-free release, epoch"))}
                        for attack, value in shown.items():
                            rows.append([job, setting.name, target, "seed membership" if quantity == "reference"
                                         else quantity, attack, value])
    return {"title": "Each attack's AUC (pooled over repeats) at the headline settings ('epoch t' attacks are left out "
                     "here; the strongest attack of each table includes them)",
            "columns": ["job", "setting", "users", "recovered", "attack", "AUC"], "rows": rows}


# --- main ---------------------------------------------------------------------------------------------

def measure(job, run, settings_list, repeats, **kwargs):
    runs = []
    for setting in settings_list:
        measured = []
        for repeat in range(repeats):
            with tempfile.TemporaryDirectory(prefix=f"bench-attacks-{job}-") as tmp:
                measured.append(run(Path(tmp), setting=setting, random_state=repeat, **kwargs))
        quantities = list(measured[0]["sets"][ALONE])
        print(f"{job}: {setting.name}: " + ", ".join(
            f"{name} {quantity} {pool(measured, name, quantity).auc}" for name in measured[0]["sets"]
            for quantity in quantities if quantity != "reference"), flush=True)
        runs.append((setting, measured))
    return runs


def main():
    def extra(parser):
        parser.add_argument("--only", choices=("lookalike", "propensity"), help="measure one job only")
        parser.add_argument("--sweep", action="store_true",
                            help="also each protection alone at candidate values (settings ii and iii)")
        parser.add_argument("--repeats", type=int, help="repeats per setting (default: 5 lookalike, 3 propensity)")
        parser.add_argument("--raw", type=Path, help="also keep every measured score here (a pickle)")
        parser.add_argument("--from-raw", type=Path, nargs="+", metavar="PICKLE",
                            help="measure nothing: build the tables from runs kept with --raw (e.g. one per job)")
        parser.add_argument("--note", action="append", default=[], help="a note to add (conditions of the run)")

    args = parse_args(__doc__.splitlines()[0], extra=extra)
    if not BANK.is_file():
        write_results("attacks", args.out, [], ["shared data not found: nothing measured"], smoke=args.smoke)
        return
    if args.from_raw:
        kept = [pickle.loads(path.read_bytes()) for path in args.from_raw]
        lookalike_runs = [run for k in kept for run in k["lookalike"]]
        propensity_runs = [run for k in kept for run in k["propensity"]]
        repeats = {job: next(k["repeats"][job] for k in kept if k[job]) if any(k[job] for k in kept) else 0
                   for job in ("lookalike", "propensity")}
        report(args, lookalike_runs, propensity_runs, LOOKALIKE_SETS, PROPENSITY_SETS, LOOKALIKE_ROWS,
               PROPENSITY_ROWS, repeats)
        return
    chosen = settings(args.smoke, args.sweep)
    if args.smoke:
        lookalike_sets, propensity_sets = SMOKE_LOOKALIKE_SETS, SMOKE_PROPENSITY_SETS
        lookalike_rows, propensity_rows, repeats, epochs = 3000, 800, {"lookalike": 1, "propensity": 1}, 2
        chosen = [s for s in chosen if s.kind in ("defaults", "opted out")]
    else:
        lookalike_sets, propensity_sets = LOOKALIKE_SETS, PROPENSITY_SETS
        lookalike_rows, propensity_rows, repeats, epochs = LOOKALIKE_ROWS, PROPENSITY_ROWS, dict(REPEATS), None
        if args.repeats:
            repeats = {job: args.repeats for job in repeats}
    lookalike_runs, propensity_runs = [], []
    if args.only in (None, "lookalike"):
        lookalike_runs = measure("lookalike", lookalike_run, chosen, repeats["lookalike"], rows=lookalike_rows,
                                 sets=lookalike_sets)
    if args.only in (None, "propensity"):
        # propensity has no seed exclusion: its options before this change are the opted-out ones
        propensity_runs = measure("propensity", propensity_run, [s for s in chosen if s.kind != "before" and (
                                      s.kind != "limits" or s.name in PROPENSITY_LIMITS)],
                                  repeats["propensity"], rows=propensity_rows, sets=propensity_sets,
                                  epochs=epochs or PropensityOptions.epochs)
    if args.raw:
        with open(args.raw, "wb") as raw:
            pickle.dump({"lookalike": lookalike_runs, "propensity": propensity_runs, "repeats": repeats}, raw)
    report(args, lookalike_runs, propensity_runs, lookalike_sets, propensity_sets, lookalike_rows, propensity_rows,
           repeats)


def report(args, lookalike_runs, propensity_runs, lookalike_sets, propensity_sets, lookalike_rows, propensity_rows,
           repeats):
    """Write the tables and notes of the runs measured."""
    tables = [headline_table(lookalike_runs, propensity_runs)]
    if lookalike_runs:
        tables.append(lookalike_table(lookalike_runs, lookalike_sets,
                                      f"{lookalike_rows:,} media rows per repeat, every target a training row"))
    if propensity_runs:
        tables.append(propensity_table(propensity_runs, propensity_sets,
                                       f"{propensity_rows:,} matched users per repeat, {TO_SCORE_SHARE:.0%} to score"))
    tables.append(attacks_table(lookalike_runs, propensity_runs))
    notes = notes_for(lookalike_runs, lookalike_sets, propensity_sets, repeats) + args.note
    path = write_results("attacks", args.out, tables, notes, smoke=args.smoke)
    print(path.read_text())


def notes_for(lookalike_runs, lookalike_sets, propensity_sets, repeats):
    notes = [
        "Attack AUC: the strongest attack's max(AUC, 1 - AUC) over the users of a set pooled over the repeats, the "
        "attack chosen with the truth: an upper bound of what the media achieves with any one attack. Choosing the "
        "best of several attacks with the truth lifts chance above 0.5: 'chance level' is the same choice made "
        "with the truth shuffled (median of 21 shuffles), what the figure would be if the media learnt nothing. "
        "'Above chance' is 0.5 plus the attack AUC's excess over that chance level (0.5 when it is below it): "
        "the figure the target of at most 0.6 is read against, since the raw maximum over some 60 attacks (the "
        "propensity's per-epoch ones) on 30-120 users exceeds 0.6 by chance alone. "
        "Standard error: Hanley & McNeil for the pooled users; 'spread' is the largest minus the smallest single "
        "repeat's strongest AUC.",
        f"Repeats: {repeats['lookalike']} (lookalike) and {repeats['propensity']} (propensity); each draws another "
        "sample of bank clients, other target users, another held-out (lookalike) or validation (propensity) split, "
        "and fresh masks, flooding and DP noise.",
        "Target sets per repeat: " + "; ".join(f"{s.name}: {s.size} users" for s in lookalike_sets) + " (lookalike: "
        "half of each set seed members, all of them training rows); " + "; ".join(
            f"{s.name}: {s.size} users" for s in propensity_sets) + " (propensity: half of each set training users, "
        "a quarter validation users, a quarter users to score; half of the labelled ones positive). The target "
        "users' seed membership or labels are drawn at random, independent of their features, so that chance "
        "(0.5) is what a media achieves without learning anything about the user itself: what the model "
        "generalises to everyone who looks like a user is not counted as a leak. Labels are recovered over the "
        "training users of a set; training membership over the whole set.",
        f"A set's rare categories sit in one text column of at most {RARE_PER_COLUMN} rare and {COMMON_VALUES} common "
        "values (each common value held by a tenth of the other users); an outlying user's value is "
        f"{OUTLIER_FACTOR:g} times the largest other value of a lognormal column of its own.",
        "'label DP ε = e alone' and the limit rows keep the other protections off, and the lookalike's seed "
        "exclusion off (--include-seed): seed exclusion tells the media the seed flags of its top users outright "
        "(the row 'before this change').",
        "Propensity 'epoch t' attacks use one epoch's reconstruction: the best of them is chosen with the truth like "
        "every other attack. 'label-free release' (label DP only) is what the media unmasks before it subtracts the "
        "noisy label aggregate: it carries no label, but it is zero for users outside training.",
    ]
    opted = [m for setting, measured in lookalike_runs if setting.kind == "opted out" for m in measured]
    if opted:
        notes.append(f"Lookalike opted out: the released aggregate is within {max(m['release error'] for m in opted):.3g} "
                     "label units of the exact Xᵀy (largest coordinate over the repeats): CKKS flooding noise blurs, "
                     "but does not hide, what one user's label adds; the 'exact Xᵀy' attack rows show what an exact "
                     "release (Paillier) gives.")
    return notes


if __name__ == "__main__":
    main()
