"""Hidden-seed lookalike, the media's side: ``protocols/lookalike.md``, steps 1, 2, 4, 6 and 7.

The media holds its audience's features. It computes on the brand's encrypted seed flags
without reading them, trains on the one label aggregate the brand releases to it, and
ends with the model (``model.json``), a score for every user (``scores.csv``) and the
audience files. Its scores come from the model file's own scorer, so that ``fedscore
score`` with that file reproduces them.
"""

import os
import secrets
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import expit
from scipy.stats import rankdata

from ... import dp
from ...errors import ProtocolError
from ...he import load_context
from ...he.random import uniform
from ...kit.encoder import FeatureEncoder
from ...kit.inputs import read_inputs
from ...kit.model import ModelFile
from ...wire import Message, ciphertext, size
from ..psi.party import MediaOrder
from ..vertical_lr import (
    encrypted_product,
    fit_from_aggregate,
    hide_slots,
    mask,
    open_release,
    open_values,
    weak_keys_allowed,
)
from .bounds import (
    DP_CLIP_NORM,
    flags_released,
    holdout_audience,
    holdout_rows,
    label_aggregate_bound,
    selection_rows,
)
from .options import LookalikeOptions


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
    selection: np.ndarray
    """True for a held-out row the L2 penalty is chosen on (:func:`~.bounds.selection_rows`), not reported."""
    seed_list_size: int
    """The size of the brand's list (PSI)."""
    context: object = None
    """The brand's public context, and the encrypted flags under it."""
    labels: object = None
    flag_context: object = None
    flags: object = None
    mask: object = None
    """The media's :class:`~fedscore.protocols.vertical_lr.Mask` on the label aggregate, until ``lookalike.train``."""
    candidates: list = None
    """One :class:`Candidate` per L2 penalty, after ``lookalike.train``."""
    scores: np.ndarray = None
    selected: np.ndarray = None
    """With seed exclusion: the top users whose flags the media asked for, in the shuffled order it sent
    them, and the random bit it XOR-ed each flag with."""
    flag_bits: np.ndarray = None


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
    holdout = holdout_mask(len(rows), options.holdout_fraction, options.random_state)
    party.state["lookalike"] = MediaState(
        options=options, column=inputs.id_column, ids=inputs.ids[rows], encoder=encoder, encoded=encoded,
        features=features, holdout=holdout,
        selection=selection_mask(holdout, len(options.candidates), options.random_state),
        seed_list_size=int(psi.peer_size))
    return Message(features=size(encoded.shape[1]))


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


def selection_mask(holdout, candidates, random_state=None):
    """Boolean mask of the held-out rows the L2 penalty is chosen on: :func:`~.bounds.selection_rows` of them."""
    chosen = np.zeros(len(holdout), dtype=bool)
    count = selection_rows(int(holdout.sum()), candidates)
    if count:
        seed = (random_state, 1) if random_state is not None else int.from_bytes(os.urandom(8), "little")
        chosen[np.random.default_rng(seed).permutation(np.flatnonzero(holdout))[:count]] = True
    return chosen


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
        if state.flag_context.scheme != "elgamal":
            raise ProtocolError("the seed flags must come as one ElGamal pair per row, to be selected and shuffled")
        state.flags = state.flag_context.load_vector(msg["flags"])
        if state.flags.size != rows:
            raise ProtocolError(f"received {state.flags.size} encrypted flags for {rows} media rows")
    design = np.hstack([state.features, np.ones((rows, 1))])
    design[state.holdout] = 0.0
    product, shift, bound = encrypted_product(
        state.labels, design, 1.0, bound=label_aggregate_bound(rows, state.options.holdout_fraction))
    masked_product, state.mask = mask(product, bound, shift)
    return Message(aggregate=ciphertext(masked_product.to_bytes()))


# --- 4. lookalike.train ------------------------------------------------------------------------

def train(party, msg):
    """Unmask the label aggregate, fit each L2 candidate, and aggregate held-out results under encryption.

    For candidate ``k`` the held-out matrix has, over the reported held-out rows, the
    columns ``u`` (normalised average rank of the score among them), one top-of-audience
    indicator per audience size, and the score; with several candidates, one more column:
    ``u`` over the selection rows, ranked among them. Last, columns of ones give ``Σ y``
    over the reported rows and over the selection rows (:func:`~.bounds.holdout_values`).
    """
    state = party.phase("lookalike")
    options = state.options
    aggregate = open_release(party, msg["aggregate"], "lookalike.release_aggregate", state.mask)
    state.mask = None
    reported, selection = np.flatnonzero(state.holdout & ~state.selection), np.flatnonzero(state.selection)
    n_reported, rows, selecting = len(reported), len(state.features), len(selection) > 0
    state.candidates, columns = [], []
    for l2 in options.candidates:
        weights, iterations = fit_from_aggregate(state.features[~state.holdout], aggregate, float(l2))
        candidate = Candidate(l2=float(l2), coef=weights[:-1], intercept=float(weights[-1]), iterations=iterations)
        state.candidates.append(candidate)
        model = _model(state, candidate)
        logits = model.logits(state.encoded[reported])
        order = np.argsort(-logits, kind="stable")
        columns.append((reported, rankdata(logits) / n_reported))
        for audience in options.sizes:
            top = np.zeros(n_reported)
            top[order[:holdout_audience(audience, n_reported, rows)]] = 1.0
            columns.append((reported, top))
        columns.append((reported, expit(logits)))
        if selecting:
            columns.append((selection, rankdata(model.logits(state.encoded[selection])) / len(selection)))
    columns.append((reported, np.ones(n_reported)))
    if selecting:
        columns.append((selection, np.ones(len(selection))))
    matrix = np.zeros((rows, len(columns)))
    for k, (where, values) in enumerate(columns):
        matrix[where, k] = values
    bound = holdout_rows(rows, options.holdout_fraction)  # every column lies in [0, 1]
    product, shift, _ = encrypted_product(state.labels, matrix, 1.0, bound=bound)
    # a per-row product is a flag times a value in [0, 1], at the product's scale
    return Message(holdout=ciphertext(hide_slots(product, 2.0**shift).to_bytes()))


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
    ``K = largest audience + seed list size`` users (enough to fill the largest audience
    whatever the seed members among them; :func:`~.bounds.flags_released`) get their
    seed flags asked for: the media takes their encrypted flags (one ElGamal pair each),
    shuffles and re-randomises them and XORs each with a random bit of its own, so the
    brand, who releases them as bits, sees neither the flags nor which users were
    selected. The media learns the seed membership of every
    selected user, including those ranked below the largest audience's eventual cutoff
    (see the spec for the price of revealing only up to the cutoff).
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
    count = flags_released(state.options.sizes, len(scores), state.seed_list_size)
    top = np.argsort(-scores, kind="stable")[:count]
    state.selected = top[np.argsort(uniform(count), kind="stable")]  # a permutation from the OS generator
    state.flag_bits = np.array([secrets.randbits(1) for _ in range(count)], dtype=np.int8)
    return Message(flags=ciphertext(state.flags.take(state.selected).flip(state.flag_bits).to_bytes()))


# --- 7. lookalike.write_audiences --------------------------------------------------------------

def write_audiences(party, msg):
    """Remove the XOR masks from the released bits and write the audiences without seed members."""
    state = party.phase("lookalike")
    if state.flag_bits is None:
        raise ProtocolError("lookalike.write_audiences before lookalike.select asked for seed flags")
    bits = open_values(party, msg["flags"], "lookalike.release_flags")
    if bits.shape != state.flag_bits.shape or not np.all(np.isin(bits, (0, 1))):
        raise ProtocolError(f"expected {len(state.flag_bits)} released bits from the brand")
    seed = np.zeros(len(state.scores), dtype=bool)
    seed[state.selected] = bits.astype(np.int8) != state.flag_bits
    state.flag_bits = None
    _write_audiences(party, state, seed)
    return Message()


def _write_audiences(party, state, seed):
    """Write ``audience_<size>.csv``: the top users by score, seed members left out."""
    scores = state.scores
    order = np.argsort(-scores, kind="stable")
    order = order[~seed[order]]
    for audience in state.options.sizes:
        top = order[:audience.of(len(scores))]
        pd.DataFrame({state.column: state.ids[top], "score": scores[top]}).to_csv(
            party.out / f"audience_{audience.label}.csv", index=False)
