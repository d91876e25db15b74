"""Horizontal logistic regression, a party's side: ``protocols/scoring_horizontal.md``, step for step.

Every party runs the same steps on its own table and its own copy of the shared secret
key (``key-path`` in its configuration). What it keeps between steps is its
:class:`PartyState`, in ``party.state["horizontal_lr"]``.

A party takes part on its own terms: its privacy options are its own
(:func:`~fedscore.protocols.horizontal.own_options`), it sizes and counts its DP noise
itself (:class:`~fedscore.dp.PrivacyBudget`), it checks every aggregate before it decrypts
it and counts the parties in it
(:func:`~fedscore.protocols.horizontal.decrypt_aggregate`), and it limits rare categories
and outlying values on its own rows (``min_category_count``, ``outlier_quantile``).
"""

import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ...dp import PrivacyBudget
from ...errors import InputError, ProtocolError
from ...keys import load_secret_key
from ...kit.encoder import OTHER, FeatureEncoder
from ...kit.inputs import read_inputs
from ...kit.model import ModelFile
from ...kit.table import PartyTable
from ...metrics import auc, score_report
from ...wire import Message, ciphertext, control, public
from ..horizontal import CONTRIBUTOR, MIN_PARTIES_WITHOUT_DP, decrypt_aggregate, own_options
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
    budget: PrivacyBudget | None
    """This party's own DP budget (None without DP)."""
    parties: int
    """Parties in the run, as the coordinator announced them."""
    least: int
    """The fewest parties' updates this party accepts in a sum: its own ``min_parties``, or all."""
    id_column: str
    ids: np.ndarray
    labels: np.ndarray
    """1.0 / 0.0, NaN for a row to score."""
    held_out: np.ndarray
    """Labelled rows held out for validation (by ID hash)."""
    train: np.ndarray
    """Labelled rows trained on."""
    table: PartyTable | None
    """The party's table, until its rows are encoded (first ``train_round``)."""
    columns: list
    """Its feature columns."""
    numeric_columns: list
    """Those of them that are numeric."""
    categories: dict
    """This party's categories of each text column: with ``min_category_count``, only those
    held by enough of its training rows, then ``<other>`` (what it encodes); without, all it holds
    (it encodes the merged schema's)."""
    bounds: dict
    """This party's winsorising bounds of each numeric column (``outlier_quantile``), else empty."""
    schema: dict = None
    """The merged schema (``sum_columns``)."""
    numeric: np.ndarray = None
    """This party's numeric columns, in the schema's order, winsorised, until its rows are encoded."""
    global_rows: float = None
    """Rows of all parties together (``spread_columns``)."""
    means: np.ndarray = None
    """Global means of the numeric columns (``spread_columns``)."""
    encoder: FeatureEncoder = None
    """Global standardisation, this party's categories and bounds (first ``train_round``)."""
    features: np.ndarray = None
    """This party's rows, encoded with :attr:`encoder` (as its model file encodes them)."""
    positions: np.ndarray = None
    """Where each of :attr:`encoder`'s features sits among the merged schema's features."""
    width: int = None
    """The merged schema's features: the global model has one coefficient for each, and the intercept."""
    last_round: int = 0
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
    """Take the options on this party's terms; read its table; reply with its public schema and key fingerprint.

    The schema lists, per text column, only the categories this party keeps: with
    ``min_category_count``, those held by at least that many of its training rows (a
    value held by fewer is never named outside the party).
    """
    options = own_options(HorizontalLROptions, msg["options"], party.config)
    budget = None if options.dp_epsilon is None else PrivacyBudget(options.dp_epsilon, options.releases,
                                                                   options.dp_delta)
    if budget is not None:
        budget.check_claim(msg.get("noise_multiplier"))
    elif "noise_multiplier" in msg:
        raise ProtocolError("the coordinator announced DP noise, but this party's own options have no dp_epsilon")
    parties = int(msg["parties"])
    least = parties if options.min_parties is None else options.min_parties
    if not 2 <= least <= parties:
        raise ProtocolError(f"this party accepts sums of at least {least} parties' updates, but the run has {parties}")
    inputs = read_inputs(options, party.role, party.config)
    held_out = validation_mask(inputs.ids, inputs.labels, options.validation_fraction)
    train = ~np.isnan(inputs.labels) & ~held_out
    schema = inputs.table.kinds(inputs.feature_columns)
    categories = _own_categories(inputs.table, schema["categories"], train, options.min_category_count)
    bounds = _own_bounds(inputs.table, schema["numeric"], options.outlier_quantile)
    party.state[PHASE] = PartyState(options=options, budget=budget, parties=parties, least=least,
                                    id_column=inputs.id_column, ids=inputs.ids, labels=inputs.labels,
                                    held_out=held_out, train=train, table=inputs.table,
                                    columns=list(schema["columns"]), numeric_columns=list(schema["numeric"]),
                                    categories=categories, bounds=bounds)
    announced = {c: [v for v in values if v != OTHER] for c, values in categories.items()}
    return Message(schema=public({**schema, "categories": announced}),
                   key_fingerprint=public(_secret(party).fingerprint.hex()))


def _own_categories(table, categories, train, min_count):
    """Each text column's categories this party encodes: all, or those of enough training rows then ``<other>``."""
    if min_count is None:
        return {column: list(values) for column, values in categories.items()}
    kept = {}
    for column in categories:
        summary = table.summarise(column, constant=False)
        counts = np.bincount(summary.codes[train], minlength=len(summary.categories))
        kept[column] = [c for c, n in zip(summary.categories, counts) if n >= min_count and c != OTHER] + [OTHER]
    return kept


def _own_bounds(table, columns, quantile):
    """``[low, high]`` of each numeric column: its ``[q, 1 - q]`` quantiles over this party's rows (empty without q)."""
    if quantile is None:
        return {}
    return {c: [float(b) for b in np.quantile(table.numeric(c), [quantile, 1 - quantile])] for c in columns}


# --- 2. horizontal_lr.sum_columns -------------------------------------------------------------

def sum_columns(party, msg):
    """Check the merged schema against this party's own; encrypt ``[rows, sum of each numeric column, 1]``."""
    state = party.phase(PHASE)
    state.schema = _checked_schema(state, msg["schema"])
    state.numeric = _numeric_block(state.table, state.schema["numeric"], state.bounds)
    vector = np.concatenate([[len(state.numeric)], state.numeric.sum(axis=0), [CONTRIBUTOR]])
    return Message(sums=ciphertext(_secret(party).encrypt(vector).to_bytes()))


def _checked_schema(state, schema):
    """The merged schema, refused unless it has this party's columns, of the same kinds, and every category it keeps."""
    if set(schema["columns"]) != set(state.columns) or set(schema["numeric"]) != set(state.numeric_columns):
        raise ProtocolError("the merged schema does not have this party's columns")
    limited = state.options.min_category_count is not None
    for column, values in state.categories.items():
        merged = schema["categories"].get(column, [])
        if not set(values) <= set(merged) or (limited and merged[-1:] != [OTHER]):
            raise ProtocolError(f"the merged schema lacks categories this party holds in column {column!r}")
    return schema


def _numeric_block(table, columns, bounds):
    """This party's numeric columns, in ``columns``' order, winsorised to its own bounds where it has them."""
    if not columns:
        return np.zeros((table.rows, 0))
    block = np.column_stack([table.numeric(c) for c in columns])
    if bounds:
        block = np.clip(block, [bounds[c][0] for c in columns], [bounds[c][1] for c in columns])
    return block


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
    d = state.numeric.shape[1]
    totals, _ = decrypt_aggregate(context, msg["sums"], d + 2, "the sum of column sums", parties=state.parties,
                                  least=state.parties)
    if not totals[0] >= 1:
        raise ProtocolError("the sum of column sums holds no rows")
    state.global_rows, state.means = float(totals[0]), totals[1:] / totals[0]
    spreads = ((state.numeric - state.means) ** 2).sum(axis=0)
    return Message(spreads=ciphertext(context.encrypt(np.concatenate([[0.0], spreads, [CONTRIBUTOR]])).to_bytes()))


# --- 4. horizontal_lr.train_round -------------------------------------------------------------

def train_round(party, msg):
    """Average the previous round's sum into the global model, train locally, encrypt the update.

    Rounds come in increasing order, at most the party's own ``rounds``; a noisy step
    beyond its budget is refused (:class:`~fedscore.dp.PrivacyBudget`).
    """
    state = party.phase(PHASE)
    round_ = int(msg["round"])
    if not state.last_round < round_ <= state.options.rounds:
        raise ProtocolError(f"round {round_} asked after round {state.last_round}: this party takes part in rounds "
                            f"1 to {state.options.rounds}, each once")
    context = _secret(party)
    if "spreads" in set(msg) and state.encoder is None:  # sent again until the coordinator has a reply
        _standardise(party, state, context, msg["spreads"])
    if state.encoder is None:
        raise ProtocolError("train_round before the standardisation statistics arrived")
    x = with_intercept(_merged(state, state.train))
    y = state.labels[state.train]
    if "model_sum" in set(msg):
        weights = _global_weights(state, context, msg["model_sum"])
        _record_validation(state, round_ - 1, weights)
    else:
        weights = np.zeros(x.shape[1])
    state.last_round = round_
    updated = local_update(weights, x, y, state.options, state.budget)
    vector = np.concatenate([len(y) * updated, [len(y), CONTRIBUTOR]])
    return Message(update=ciphertext(context.encrypt(vector).to_bytes()))


def _standardise(party, state, context, spreads_blob):
    """Build this party's encoder from the global statistics; encode its rows in the merged features."""
    if state.means is None:
        raise ProtocolError("step out of order: train_round before spread_columns")
    schema = state.schema
    spreads, _ = decrypt_aggregate(context, spreads_blob, len(schema["numeric"]) + 2, "the sum of squared deviations",
                                   parties=state.parties, least=state.parties)
    spreads = spreads[1:]
    tolerance = SPREAD_ABSOLUTE_ERROR + SPREAD_RELATIVE_ERROR * np.abs(spreads).max(initial=0.0)
    constant = ~(spreads > tolerance)
    if constant.any() and not state.bounds:
        raise InputError("column is constant across all parties: it carries no information",
                         column=schema["numeric"][int(np.flatnonzero(constant)[0])])
    # a column made constant by winsorising is encoded as zeros (scale 1), as the encoder does
    scales = np.where(constant, 1.0, np.sqrt(np.maximum(spreads, 0.0) / state.global_rows))
    options = state.options
    # Without min_category_count every party encodes the merged categories (one model file for all);
    # with it, only those it keeps, then <other>.
    categories = schema["categories"] if options.min_category_count is None else state.categories
    state.encoder = FeatureEncoder.from_statistics(
        schema["columns"], dict(zip(schema["numeric"], state.means.tolist())),
        dict(zip(schema["numeric"], scales.tolist())), categories, path=party.config["data"],
        bounds=state.bounds, min_category_count=options.min_category_count, outlier_quantile=options.outlier_quantile)
    names = merged_feature_names(schema)
    index = {name: i for i, name in enumerate(names)}
    state.positions = np.array([index[name] for name in state.encoder.feature_names_], dtype=np.int64)
    state.width = len(names)
    state.features = state.encoder.transform(state.table)
    state.table = state.numeric = None  # encoded: the table is no longer needed


def _merged(state, rows):
    """``rows`` of this party's features laid out as the merged schema's (zeros for categories it does not keep)."""
    own = state.features[rows]
    merged = np.zeros((len(own), state.width))
    merged[:, state.positions] = own
    return merged


def merged_feature_names(schema):
    """The features of the merged schema, in order: every party's model coefficients are laid out so."""
    names = []
    for column in schema["columns"]:
        if column in schema["categories"]:
            names += [f"{column}={value}" for value in schema["categories"][column]]
        else:
            names.append(column)
    return names


def _global_weights(state, context, blob):
    """Decrypt ``[Σ n_i w_i, Σ n_i, parties]`` and return the global model ``Σ n_i w_i / Σ n_i``."""
    totals, _ = decrypt_aggregate(context, blob, state.width + 3, "the sum of updates", parties=state.parties,
                                  least=state.least)
    if not totals[-1] > 0:
        raise ProtocolError("aggregated update holds no rows")
    return totals[:-1] / totals[-1]


def _record_validation(state, round_, weights):
    held_out = state.held_out
    if held_out.any():
        scores = with_intercept(_merged(state, held_out)) @ weights
        state.history.append({"round": round_, "validation_auc": auc(state.labels[held_out], scores)})


# --- 5. horizontal_lr.finish ------------------------------------------------------------------

def finish(party, msg):
    """Decrypt the final model; write ``model.json``, ``scores.csv`` and ``report.json`` locally.

    The model file holds this party's encoder (its categories and bounds) and the global
    model's coefficients of its features: it scores the party's table as the run did.
    """
    state = party.phase(PHASE)
    if state.encoder is None:
        raise ProtocolError("finish before the standardisation statistics arrived")
    if int(msg["round"]) != state.options.rounds:
        raise ProtocolError(f"finish after round {msg['round']}, not this party's last round {state.options.rounds}")
    weights = _global_weights(state, _secret(party), msg["model_sum"])
    _record_validation(state, msg["round"], weights)
    budget = state.budget
    training = {**state.options.training(), "noise_multiplier": None if budget is None else budget.noise_multiplier,
                "dp_releases": None if budget is None else budget.spent}
    model = ModelFile(kind="horizontal_lr", party=party.role, encoder=state.encoder,
                      coef=weights[:-1][state.positions], intercept=float(weights[-1]), training=training)
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
        "privacy": _privacy_report(state),
    }
    (party.out / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return Message(status=control("written"))


def _privacy_report(state):
    """What this party's own options gave it, in its own report: DP spent, fewest contributors, encoding limits."""
    options = state.options
    report = {"dp": None if state.budget is None else state.budget.summary(), "min_parties": state.least,
              "min_category_count": options.min_category_count, "outlier_quantile": options.outlier_quantile}
    if state.budget is None and state.least < MIN_PARTIES_WITHOUT_DP:
        report["warning"] = (f"without DP, a sum of {state.least} parties' updates lets each of them read the "
                             "other's update exactly, and with it what the rows of a rare category or an outlying "
                             "value weigh in it")
    return report
