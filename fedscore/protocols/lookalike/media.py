"""Hidden-seed lookalike, the media's side: ``protocols/lookalike.md``, steps 1, 2, 4, 6 and 7.

The media holds its audience's features. It computes on the brand's encrypted seed flags
without reading them, trains on the one label aggregate the brand releases to it, and
ends with the model (``model.json``), a score for every user (``scores.csv``) and the
audience files. Its scores come from the model file's own scorer, so that ``fedscore
score`` with that file reproduces them.
"""

import os
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import expit
from scipy.stats import rankdata

from ... import dp
from ...errors import ProtocolError
from ...he import load_context
from ...kit.encoder import FeatureEncoder
from ...kit.inputs import read_inputs
from ...kit.model import ModelFile
from ...wire import Message, ciphertext
from ..psi.party import MediaOrder
from ..vertical_lr import (
    VALUE_SHIFT_BITS,
    encrypted_product,
    fit_from_aggregate,
    hide_slots,
    mask,
    open_values,
    scaled_bound,
    unmask,
    weak_keys_allowed,
)
from .bounds import DP_CLIP_NORM, FLAG_BOUND, holdout_audience, holdout_rows, label_aggregate_bound
from .options import LookalikeOptions

HIDE_MAGNITUDE = 2.0**36
"""Size of the zero-sum slot shares that hide per-row products in CKKS held-out aggregates
(:func:`fedscore.protocols.vertical_lr.hide_slots`): 2^16 above the largest scaled per-row
product (2^20), and small enough that encoding the shares in double precision adds an
error (about 2^-16 per slot) far below the flooding noise."""


@dataclass
class Candidate:
    """One L2 candidate's model, fitted by the media."""

    l2: float
    coef: np.ndarray
    intercept: float
    iterations: int


@dataclass
class MediaState:
    """What the media keeps between its lookalike steps."""

    options: LookalikeOptions
    column: str
    """The ID column, as the media names it."""
    ids: np.ndarray
    """The media's IDs in its PSI order (one per distinct non-empty ID)."""
    encoder: FeatureEncoder
    encoded: np.ndarray
    """The encoded rows, in PSI order: what the model file scores."""
    features: np.ndarray
    """The rows the media trains on: ``encoded``, clipped to :data:`DP_CLIP_NORM` with label DP."""
    holdout: np.ndarray
    """True for a held-out row (drawn before any label was seen)."""
    seed_list_size: int
    """The size of the brand's list (PSI)."""
    context: object = None
    """The brand's public context, and the encrypted flags under it."""
    labels: object = None
    flag_context: object = None
    flags: object = None
    mask: np.ndarray = None
    """The media's mask on the label aggregate, and its scale, until ``lookalike.train`` removes it."""
    shift: int = None
    candidates: list = None
    """One :class:`Candidate` per L2 penalty, after ``lookalike.train``."""
    scores: np.ndarray = None
    selected: np.ndarray = None
    """With seed exclusion: the top users whose flags the media asked for, its mask on them and its scale."""
    flag_mask: np.ndarray = None
    flag_shift: int = None


# --- 1. lookalike.load_features ----------------------------------------------------------------

def load_features(party, msg):
    """Read and encode the media's table in its PSI order; split rows into training and held-out.

    The split is drawn before anything about the labels is known, so it is independent
    of them. With label DP, feature rows are clipped to :data:`DP_CLIP_NORM` for training.
    """
    options = LookalikeOptions.from_dict(msg["options"])
    psi = party.phase("psi")
    if not isinstance(psi, MediaOrder):
        raise ProtocolError("lookalike step out of order: labelled PSI has not run at the media")
    inputs = read_inputs(options, party.role, party.config)
    rows = np.asarray(psi.rows, dtype=np.int64)
    encoder = options.encoder(inputs.table.path)
    encoded = encoder.fit_transform(inputs.table, inputs.feature_columns, rows=rows)
    features = dp.clip_rows(encoded, DP_CLIP_NORM) if options.label_dp_epsilon is not None else encoded
    party.state["lookalike"] = MediaState(
        options=options, column=inputs.id_column, ids=inputs.ids[rows], encoder=encoder, encoded=encoded,
        features=features, holdout=holdout_mask(len(rows), options.holdout_fraction, options.random_state),
        seed_list_size=int(psi.peer_size))
    return Message()


def holdout_mask(rows, fraction, random_state=None):
    """Boolean mask of held-out rows: :func:`~.bounds.holdout_rows` of them, drawn at random.

    ``random_state`` makes the split reproducible (benchmarks compare with a central
    model on the same rows); without it the draw uses the operating system's generator.
    """
    seed = random_state if random_state is not None else int.from_bytes(os.urandom(8), "little")
    order = np.random.default_rng(seed).permutation(rows)
    held = np.zeros(rows, dtype=bool)
    held[order[:holdout_rows(rows, fraction)]] = True
    return held


# --- 2. lookalike.label_aggregate --------------------------------------------------------------

def label_aggregate(party, msg):
    """``[Xᵀ[[y]], Σ[[y]]]`` over the training rows, under the brand's key, masked.

    Held-out rows get zero rows in the matrix, so their labels do not enter the
    aggregate. The aggregate's bound comes from the row counts alone
    (:func:`~.bounds.label_aggregate_bound`); the brand derives the same.
    """
    state = party.phase("lookalike")
    allow_weak = weak_keys_allowed(party)
    state.context = load_context(msg["public_context"], allow_weak_key=allow_weak)
    state.labels = state.context.load_vector(msg["labels"])
    rows = len(state.features)
    if state.labels.size != rows:
        raise ProtocolError(f"received {state.labels.size} encrypted labels for {rows} media rows")
    if state.options.exclude_seed:
        state.flag_context = load_context(msg["flag_context"], allow_weak_key=allow_weak)
        state.flags = state.flag_context.load_vector(msg["flags"])
        if state.flags.size != rows:
            raise ProtocolError(f"received {state.flags.size} encrypted flags for {rows} media rows")
    design = np.hstack([state.features, np.ones((rows, 1))])
    design[state.holdout] = 0.0
    product, state.shift, bound = encrypted_product(
        state.labels, design, 1.0, bound=label_aggregate_bound(rows, state.options.holdout_fraction))
    masked_product, state.mask, _ = mask(product, bound)
    return Message(aggregate=ciphertext(masked_product.to_bytes()))


# --- 4. lookalike.train ------------------------------------------------------------------------

def train(party, msg):
    """Unmask the label aggregate, fit each L2 candidate, and aggregate held-out results under encryption.

    For candidate ``k`` the held-out matrix has the columns ``u`` (normalised average
    rank of the score among held-out users), one top-of-audience indicator per audience
    size, and the score; a last column of ones gives ``Σ y`` over held-out rows.
    """
    state = party.phase("lookalike")
    options = state.options
    released = open_values(party, msg["aggregate"], "lookalike.release_aggregate")
    aggregate = unmask(released, state.mask, state.shift)
    state.mask = None
    held = np.flatnonzero(state.holdout)
    n_held, rows = len(held), len(state.features)
    state.candidates, blocks = [], []
    for l2 in options.candidates:
        weights, iterations = fit_from_aggregate(state.features[~state.holdout], aggregate, float(l2))
        candidate = Candidate(l2=float(l2), coef=weights[:-1], intercept=float(weights[-1]), iterations=iterations)
        state.candidates.append(candidate)
        logits = _model(state, candidate).logits(state.encoded[held])
        order = np.argsort(-logits, kind="stable")
        columns = [rankdata(logits) / n_held]
        for size in options.sizes:
            top = np.zeros(n_held)
            top[order[:holdout_audience(size, n_held, rows)]] = 1.0
            columns.append(top)
        columns.append(expit(logits))
        blocks.append(np.column_stack(columns))
    matrix = np.zeros((rows, sum(b.shape[1] for b in blocks) + 1))
    matrix[held] = np.hstack(blocks + [np.ones((n_held, 1))])
    bound = holdout_rows(rows, options.holdout_fraction)  # every column lies in [0, 1]
    product, _, _ = encrypted_product(state.labels, matrix, 1.0, bound=bound)
    return Message(holdout=ciphertext(hide_slots(product, HIDE_MAGNITUDE).to_bytes()))


def _model(state, candidate):
    """The model file of ``candidate``: the one scorer of encoded rows (clipped as training clipped them)."""
    options = state.options
    label_dp = None if options.label_dp_epsilon is None else {"epsilon": options.label_dp_epsilon,
                                                              "delta": options.label_dp_delta}
    return ModelFile(kind="lookalike", party="media", encoder=state.encoder, coef=candidate.coef,
                     intercept=candidate.intercept, clip_norm=None if label_dp is None else DP_CLIP_NORM,
                     training={"l2": candidate.l2, "iterations": candidate.iterations, "backend": options.backend,
                               "l2_candidates": list(options.candidates),
                               "holdout_fraction": options.holdout_fraction, "label_dp": label_dp})


# --- 6. lookalike.select -----------------------------------------------------------------------

def select(party, msg):
    """Score the whole audience with the chosen model; write the model and the scores.

    Without seed exclusion the audience files are written here. With it, the top
    ``largest audience + seed list size`` users (enough to fill the largest audience
    whatever the seed members among them) get their seed flags asked for: the media
    multiplies the encrypted flags by a 0/1 selection and masks every entry, so the
    brand, who decrypts, sees neither the flags nor which users were selected. The
    media learns the seed membership of every selected user, including those ranked
    below the largest audience's eventual cutoff (see the spec for the price of revealing
    only up to the cutoff).
    """
    state = party.phase("lookalike")
    choice = int(open_values(party, msg["choice"], "lookalike.evaluate")[0])
    if not 0 <= choice < len(state.candidates):
        raise ProtocolError(f"model choice {choice} out of range")
    model = _model(state, state.candidates[choice])
    model.save(party.out / "model.json")
    state.scores = scores = model.scores(state.encoded)
    pd.DataFrame({state.column: state.ids, "score": scores}).to_csv(party.out / "scores.csv", index=False)
    if not state.options.exclude_seed:
        _write_audiences(party, state, np.zeros(len(scores), dtype=bool))
        return Message()
    largest = max(size.of(len(scores)) for size in state.options.sizes)
    state.selected = np.argsort(-scores, kind="stable")[:min(len(scores), largest + state.seed_list_size)]
    # The 0/1 selection is a plaintext matrix like any other: scaled as vertical_lr scales them, so that
    # the brand's release bound is the one it computes for a masked aggregate of bound FLAG_BOUND.
    scheme = state.flag_context.scheme
    state.flag_shift, bound = scaled_bound(scheme, FLAG_BOUND)
    selection = np.zeros(len(scores))
    selection[state.selected] = 2.0 ** (state.flag_shift - VALUE_SHIFT_BITS[scheme])
    masked_flags, state.flag_mask, _ = mask(state.flags * selection, bound)
    return Message(flags=ciphertext(masked_flags.to_bytes()))


# --- 7. lookalike.write_audiences --------------------------------------------------------------

def write_audiences(party, msg):
    """Unmask the seed flags of the top candidates and write the audiences without seed members."""
    state = party.phase("lookalike")
    if state.flag_mask is None:
        raise ProtocolError("lookalike.write_audiences before lookalike.select asked for seed flags")
    released = open_values(party, msg["flags"], "lookalike.release_flags")
    flags = unmask(released, state.flag_mask, state.flag_shift)
    state.flag_mask = None
    seed = np.zeros(len(state.scores), dtype=bool)
    seed[state.selected] = np.round(flags[state.selected]) >= 1
    _write_audiences(party, state, seed)
    return Message()


def _write_audiences(party, state, seed):
    """Write ``audience_<size>.csv``: the top users by score, seed members left out."""
    scores = state.scores
    order = np.argsort(-scores, kind="stable")
    order = order[~seed[order]]
    for size in state.options.sizes:
        top = order[:size.of(len(scores))]
        pd.DataFrame({state.column: state.ids[top], "score": scores[top]}).to_csv(
            party.out / f"audience_{size.label}.csv", index=False)
