"""Horizontal logistic regression, a party's side: ``protocols/scoring_horizontal.md``, step for step.

Every party runs the same steps on its own table and its own copy of the shared secret
key (``key-path`` in its configuration). What it keeps between steps is its
:class:`PartyState`, in ``party.state["horizontal_lr"]``.
"""

import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ...errors import InputError, ProtocolError
from ...keys import load_secret_key
from ...kit.encoder import FeatureEncoder
from ...kit.inputs import read_inputs
from ...kit.model import ModelFile
from ...kit.table import PartyTable
from ...metrics import auc, score_report
from ...wire import Message, ciphertext, control, public
from .options import HorizontalLROptions
from .training import local_update, validation_mask, with_intercept

PHASE = "horizontal_lr"

# A column is constant across all parties when its decrypted sum of squared deviations is
# within the CKKS error of that sum, not only when it is exactly zero: a sum of zeros comes
# back as a few 1e-9 per party's ciphertext at scale 2^40 (measured), and as about 1e-16
# times the largest value the ciphertext holds when that is large (1e-7 beside 1e9). The
# bounds are 10 times the error of 50 parties' ciphertexts, 100 times the relative one,
# and refuse only a column whose rows all but agree (rows x variance below them).
SPREAD_ABSOLUTE_ERROR = 1e-6
SPREAD_RELATIVE_ERROR = 1e-14


@dataclass
class PartyState:
    """What a party keeps between the steps of one run (only its own data and what it decrypted)."""

    options: HorizontalLROptions
    noise_multiplier: float | None
    """The DP noise multiplier derived from the options (None without DP)."""
    id_column: str
    ids: np.ndarray
    labels: np.ndarray
    """1.0 / 0.0, NaN for a row to score."""
    table: PartyTable | None
    """The party's table, until its rows are encoded (first ``train_round``)."""
    schema: dict = None
    """The merged schema (``sum_columns``)."""
    numeric: np.ndarray = None
    """This party's numeric columns, in the schema's order, until its rows are encoded."""
    global_rows: float = None
    """Rows of all parties together (``spread_columns``)."""
    means: np.ndarray = None
    """Global means of the numeric columns (``spread_columns``)."""
    encoder: FeatureEncoder = None
    """Global standardisation and categories (first ``train_round``)."""
    features: np.ndarray = None
    """This party's rows, encoded with :attr:`encoder`."""
    held_out: np.ndarray = None
    """Labelled rows held out for validation (by ID hash)."""
    train: np.ndarray = None
    """Labelled rows trained on."""
    history: list = field(default_factory=list)
    """Validation AUC of the global model after each round, on the held-out rows."""


def _secret(party):
    """This party's secret context, loaded (and its file's permissions checked) at each step that uses it."""
    try:
        path = party.config["key-path"]
    except KeyError:
        raise InputError(f"party {party.role!r} has no 'key-path' in its configuration (its secret key file)") \
            from None
    return load_secret_key(path)


# --- 1. horizontal_lr.describe ----------------------------------------------------------------

def describe(party, msg):
    """Read and validate this party's table; reply with its public schema and key fingerprint."""
    options = HorizontalLROptions.from_dict(msg["options"])
    inputs = read_inputs(options, party.role, party.config)
    schema = inputs.table.kinds(inputs.feature_columns)
    party.state[PHASE] = PartyState(options=options, noise_multiplier=options.noise_multiplier(),
                                    id_column=inputs.id_column, ids=inputs.ids, labels=inputs.labels,
                                    table=inputs.table)
    return Message(schema=public(schema), key_fingerprint=public(_secret(party).fingerprint.hex()))


# --- 2. horizontal_lr.sum_columns -------------------------------------------------------------

def sum_columns(party, msg):
    """Encrypt ``[rows, sum of each numeric column]`` over this party's rows."""
    state = party.phase(PHASE)
    state.schema = msg["schema"]
    state.numeric = _numeric_block(state.table, state.schema["numeric"])
    vector = np.concatenate([[len(state.numeric)], state.numeric.sum(axis=0)])
    return Message(sums=ciphertext(_secret(party).encrypt(vector).to_bytes()))


def _numeric_block(table, columns):
    if not columns:
        return np.zeros((table.rows, 0))
    return np.column_stack([table.numeric(c) for c in columns])


# --- 3. horizontal_lr.spread_columns ----------------------------------------------------------

def spread_columns(party, msg):
    """Decrypt the global sums; encrypt this party's squared deviations from the global means.

    Notes
    -----
    Two passes (means, then squared deviations) instead of sums of squares: the
    one-pass formula loses every significant digit when a column's mean is large next to
    its spread, and CKKS adds an error relative to the largest value in a ciphertext.
    """
    state = party.phase(PHASE)
    if state.numeric is None:
        raise ProtocolError("step out of order: spread_columns before sum_columns")
    context = _secret(party)
    totals = context.decrypt(context.load_vector(msg["sums"]))
    state.global_rows, state.means = float(totals[0]), totals[1:] / totals[0]
    spreads = ((state.numeric - state.means) ** 2).sum(axis=0)
    return Message(spreads=ciphertext(context.encrypt(np.concatenate([[0.0], spreads])).to_bytes()))


# --- 4. horizontal_lr.train_round -------------------------------------------------------------

def train_round(party, msg):
    """Average the previous round's sum into the global model, train locally, encrypt the update."""
    state = party.phase(PHASE)
    context = _secret(party)
    if "spreads" in set(msg) and state.encoder is None:  # sent again until the coordinator has a reply
        _standardise(party, state, context, msg["spreads"])
    if state.encoder is None:
        raise ProtocolError("train_round before the standardisation statistics arrived")
    x = with_intercept(state.features[state.train])
    y = state.labels[state.train]
    if "model_sum" in set(msg):
        weights = _global_weights(context, msg["model_sum"])
        _record_validation(state, msg["round"] - 1, weights)
    else:
        weights = np.zeros(x.shape[1])
    updated = local_update(weights, x, y, state.options, state.noise_multiplier)
    vector = np.concatenate([len(y) * updated, [len(y)]])
    return Message(update=ciphertext(context.encrypt(vector).to_bytes()))


def _standardise(party, state, context, spreads_blob):
    """Build the encoder from the global statistics; encode and split this party's rows."""
    if state.means is None:
        raise ProtocolError("step out of order: train_round before spread_columns")
    schema = state.schema
    spreads = context.decrypt(context.load_vector(spreads_blob))[1:]
    tolerance = SPREAD_ABSOLUTE_ERROR + SPREAD_RELATIVE_ERROR * np.abs(spreads).max(initial=0.0)
    for column, spread in zip(schema["numeric"], spreads):
        if not spread > tolerance:
            raise InputError("column is constant across all parties: it carries no information", column=column)
    scales = np.sqrt(spreads / state.global_rows)
    state.encoder = FeatureEncoder.from_statistics(
        schema["columns"], dict(zip(schema["numeric"], state.means.tolist())),
        dict(zip(schema["numeric"], scales.tolist())), schema["categories"], path=party.config["data"])
    state.features = state.encoder.transform(state.table)
    state.held_out = validation_mask(state.ids, state.labels, state.options.validation_fraction)
    state.train = ~np.isnan(state.labels) & ~state.held_out
    state.table = state.numeric = None  # encoded: the table is no longer needed


def _global_weights(context, blob):
    """Decrypt ``[Σ n_i w_i, Σ n_i]`` and return the global model ``Σ n_i w_i / Σ n_i``."""
    totals = context.decrypt(context.load_vector(blob))
    if not totals[-1] > 0:
        raise ProtocolError("aggregated update holds no rows")
    return totals[:-1] / totals[-1]


def _record_validation(state, round_, weights):
    held_out = state.held_out
    if held_out.any():
        scores = with_intercept(state.features[held_out]) @ weights
        state.history.append({"round": round_, "validation_auc": auc(state.labels[held_out], scores)})


# --- 5. horizontal_lr.finish ------------------------------------------------------------------

def finish(party, msg):
    """Decrypt the final model; write ``model.json``, ``scores.csv`` and ``report.json`` locally."""
    state = party.phase(PHASE)
    if state.encoder is None:
        raise ProtocolError("finish before the standardisation statistics arrived")
    weights = _global_weights(_secret(party), msg["model_sum"])
    _record_validation(state, msg["round"], weights)
    model = ModelFile(kind="horizontal_lr", party=party.role, encoder=state.encoder, coef=weights[:-1],
                      intercept=float(weights[-1]),
                      training={**state.options.training(), "noise_multiplier": state.noise_multiplier})
    model.save(party.out / "model.json")
    scores = model.scores(state.features)
    pd.DataFrame({state.id_column: state.ids, "score": scores}).to_csv(party.out / "scores.csv", index=False)
    held_out, labels = state.held_out, state.labels
    report = {
        "party": party.role,
        "rows": int(len(labels)),
        "train_rows": int(state.train.sum()),
        "validation_rows": int(held_out.sum()),
        "unlabelled_rows": int(np.isnan(labels).sum()),
        "rounds": state.history,
        "validation": score_report(labels[held_out], scores[held_out]) if held_out.any() else None,
    }
    (party.out / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return Message(status=control("written"))
