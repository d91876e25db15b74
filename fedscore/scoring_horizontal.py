"""Horizontal scoring: federated logistic regression for N parties over HE-aggregated updates.

Implements ``protocols/scoring_horizontal.md``; the party steps and message fields here
carry the names the spec uses. Several parties hold rows with the same tag schema
(a brand's regional stores, several brands on one taxonomy) and train one propensity
model without pooling rows:

1. ``describe``: each party reports its public tag schema and key fingerprint; the
   coordinator checks they agree and merges the category lists.
2. ``sum_columns`` / ``spread_columns``: encrypted column sums, then encrypted squared
   deviations from the global mean, are added up by the coordinator so that every party
   standardises with the same global statistics.
3. ``train_round`` (R times): each party decrypts the previous round's sum, averages it
   into the global model, trains locally (FedAvg, or FedProx with a proximal term; with
   DP, clipped and noised gradient steps) and returns its row-weighted model encrypted.
   The coordinator adds the ciphertexts of the parties that answered.
4. ``finish``: each party decrypts the final sum and writes the model, its own scores and
   its validation report.

The coordinator holds only the public CKKS context: it adds ciphertexts and never sees a
model, a statistic or a row count. Every party holds the secret key and learns the sums,
so with two contributors each can subtract its own share and read the other's: the job
warns unless differential privacy is on.
"""

import contextlib
import hashlib
import json
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import expit, log_expit
from threadpoolctl import threadpool_limits

from . import dp
from .data import MAX_CATEGORIES, FeatureEncoder, parse_labels, read_table, validate_ids
from .errors import FedscoreError, InputError, ProtocolError
from .keys import PUBLIC_FILE, init_keys, load_public_key, load_secret_key, party_key_name, read_manifest
from .metrics import auc, score_report
from .runtime import party_step
from .runtime.runner import run_job
from .wire import Message, ciphertext, control, public

# --- defaults --------------------------------------------------------------------------

DEFAULT_ROUNDS = 10
"""FedAvg rounds. On the benchmark splits the global model is within 0.001 AUC of its final
value after 2-3 rounds; 10 leaves a margin for less even splits."""

LOCAL_STEPS = 20
"""L-BFGS iterations per round without DP: enough to approach each party's optimum from the
global model (FedAvg with several local epochs, McMahan et al., AISTATS 2017)."""

DP_LOCAL_STEPS = 5
"""Noisy gradient steps per round with DP. Each step is one Gaussian release, so rounds x
steps is what the accountant composes."""

DP_LEARNING_RATE = 5.0
"""Step size of the noisy gradient steps. A clipped row gradient has norm at most ``C = 1``,
so the mean clipped gradient is at most 1 and a step moves the weights by at most 5;
tuned on the benchmark splits (default credit, bank marketing)."""

DEFAULT_L2 = 1e-4
"""L2 penalty on the coefficients (not the intercept) of the mean log-loss; the same model
as scikit-learn's ``LogisticRegression(C=1 / (l2 * rows))``."""

VALIDATION_FRACTION = 0.2
"""Share of each party's labelled rows held out, locally, to report validation AUC per round."""

LOCAL_BLAS_THREADS = 1
"""Local training multiplies a (rows x features) matrix by a vector, a few hundred times a
round: too little work to share between threads. Measured on the 2-core benchmark machine
with other processes running (parties run side by side in simulation), two OpenBLAS
threads made each product about 13 times slower than one."""

MIN_PARTIES_WITHOUT_DP = 3
"""Below three contributors a party can subtract its own update from the sum and read the
other's: HE aggregation hides nothing between two parties."""

TWO_PARTY_WARNING = (
    "a round may aggregate only two parties' updates (--min-parties {min_parties}): each of them can "
    "subtract its own update from the decrypted sum and read the other's exactly. Turn on differential "
    "privacy (--dp-epsilon) to bound what it learns about any single row."
)

STEP = "scoring_horizontal."


class PrivacyWarning(UserWarning):
    """A run configuration that gives a party less privacy than it may expect."""


# --- options ---------------------------------------------------------------------------


def check_options(options, parties):
    """Validate the job's public options once, at the boundary; return them completed.

    Parameters
    ----------
    options : dict
        ``id_column``, ``label_column``, ``public_key`` (path of the coordinator's public
        context) and optional hyper-parameters (see :class:`HorizontalLogisticRegression`).
    parties : int
        Number of parties in the run.
    """
    missing = [k for k in ("id_column", "label_column", "public_key") if not options.get(k)]
    if missing:
        raise InputError(f"horizontal_lr options lack {', '.join(missing)}")
    if parties < 2:
        raise InputError(f"horizontal training needs at least 2 parties, got {parties}")
    dp_epsilon = _option(options, "dp_epsilon", None)
    out = {
        "id_column": str(options["id_column"]),
        "label_column": str(options["label_column"]),
        "public_key": str(options["public_key"]),
        "rounds": int(_option(options, "rounds", DEFAULT_ROUNDS)),
        "local_steps": int(_option(options, "local_steps", LOCAL_STEPS if dp_epsilon is None else DP_LOCAL_STEPS)),
        "learning_rate": float(_option(options, "learning_rate", DP_LEARNING_RATE)),
        "l2": float(_option(options, "l2", DEFAULT_L2)),
        "proximal_mu": float(_option(options, "proximal_mu", 0.0)),
        "validation_fraction": float(_option(options, "validation_fraction", VALIDATION_FRACTION)),
        "min_parties": int(_option(options, "min_parties", parties)),
        "dp_epsilon": None if dp_epsilon is None else float(dp_epsilon),
        "dp_delta": float(_option(options, "dp_delta", dp.DEFAULT_DELTA)),
        "clip_norm": float(_option(options, "clip_norm", dp.DEFAULT_CLIP_NORM)),
    }
    if out["rounds"] < 1 or out["local_steps"] < 1:
        raise InputError("rounds and local steps must be at least 1")
    if not 2 <= out["min_parties"] <= parties:
        raise InputError(f"--min-parties must be between 2 and the number of parties ({parties}), "
                         f"not {out['min_parties']}: a sum of one party's update is that update")
    if not 0 <= out["validation_fraction"] < 1:
        raise InputError(f"validation fraction must be in [0, 1), not {out['validation_fraction']}")
    if out["l2"] < 0 or out["proximal_mu"] < 0 or out["learning_rate"] <= 0 or out["clip_norm"] <= 0:
        raise InputError("l2 and proximal mu must be >= 0, learning rate and clip norm > 0")
    releases = out["rounds"] * out["local_steps"]
    out["noise_multiplier"] = (None if dp_epsilon is None
                               else dp.noise_multiplier(out["dp_epsilon"], releases, out["dp_delta"]))
    return out


def _option(options, key, default):
    """``options[key]``, or ``default`` when it is absent or None (0 stays 0, and is then checked)."""
    value = options.get(key)
    return default if value is None else value


def _training_params(opts):
    """The hyper-parameters every party needs (public, sent in each ``train_round``)."""
    keys = ("rounds", "local_steps", "learning_rate", "l2", "proximal_mu", "validation_fraction",
            "dp_epsilon", "dp_delta", "clip_norm", "noise_multiplier")
    return {k: opts[k] for k in keys}


# --- the coordinator's side ------------------------------------------------------------


def run_horizontal_lr(coordinator, options):
    """Coordinator job ``horizontal_lr``: drive the protocol; return a summary without any value.

    The summary holds the participation per round, dropouts, bytes, the DP parameters and
    epsilon, and the privacy warnings; the model and the validation reports stay with the
    parties (see ``protocols/scoring_horizontal.md``, "What each side learns").
    """
    roles = coordinator.roles
    opts = check_options(options, len(roles))
    context = load_public_key(opts["public_key"])
    summary_warnings = []
    if opts["min_parties"] < MIN_PARTIES_WITHOUT_DP and opts["dp_epsilon"] is None:
        text = TWO_PARTY_WARNING.format(min_parties=opts["min_parties"])
        warnings.warn(text, PrivacyWarning, stacklevel=2)
        summary_warnings.append(text)

    # 1. describe: public schemas and key fingerprints
    request = Message(columns=public({"id_column": opts["id_column"], "label_column": opts["label_column"]}))
    replies = coordinator.exchange({r: (STEP + "describe", request) for r in roles})
    for role, reply in replies.items():
        if reply["key_fingerprint"] != context.fingerprint.hex():
            raise ProtocolError(f"party {role!r} holds a different key than the coordinator's public context: "
                                "every key file must come from one key ceremony")
    schema = merge_schemas({r: replies[r]["schema"] for r in roles})

    # 2. standardisation statistics, aggregated under HE
    replies = coordinator.exchange({r: (STEP + "sum_columns", Message(schema=public(schema))) for r in roles})
    sums = _add_up(context, [replies[r]["sums"] for r in roles])
    request = Message(sums=ciphertext(sums))
    replies = coordinator.exchange({r: (STEP + "spread_columns", request) for r in roles})
    spreads = _add_up(context, [replies[r]["spreads"] for r in roles])

    # 3. rounds
    params = _training_params(opts)
    needs_spreads = set(roles)  # a party standardises when it first receives the spreads
    model_sum = None
    participation = []
    for round_ in range(1, opts["rounds"] + 1):
        requests = {}
        for role in roles:
            fields = {"round": control(round_), "params": public(params)}
            if role in needs_spreads:
                fields["spreads"] = ciphertext(spreads)
            if model_sum is not None:
                fields["model_sum"] = ciphertext(model_sum)
            requests[role] = (STEP + "train_round", Message(**fields))
        replies = coordinator.exchange(requests, allow_missing=True)
        _check_enough(coordinator, roles, replies, opts["min_parties"], f"round {round_}")
        needs_spreads -= set(replies)
        model_sum = _add_up(context, [replies[r]["update"] for r in roles if r in replies])
        participation.append({"round": round_, "parties": [r for r in roles if r in replies]})

    # 4. finish: every party decrypts the final sum and writes its own outputs
    request = Message(round=control(opts["rounds"]), model_sum=ciphertext(model_sum))
    replies = coordinator.exchange({r: (STEP + "finish", request) for r in roles}, allow_missing=True)
    _check_enough(coordinator, roles, replies, opts["min_parties"], "finish")
    releases = opts["rounds"] * opts["local_steps"]
    return {
        "job": "horizontal_lr",
        "parties": roles,
        "rounds": participation,
        "finished": [r for r in roles if r in replies],
        "dropouts": list(coordinator.dropouts),
        "training": {k: params[k] for k in ("rounds", "local_steps", "l2", "proximal_mu", "validation_fraction")},
        "min_parties": opts["min_parties"],
        "dp": None if opts["dp_epsilon"] is None else {
            "epsilon": dp.epsilon_spent(opts["noise_multiplier"], releases, opts["dp_delta"]),
            "target_epsilon": opts["dp_epsilon"],
            "delta": opts["dp_delta"],
            "noise_multiplier": opts["noise_multiplier"],
            "clip_norm": opts["clip_norm"],
            "releases": releases,
            "neighbouring": "replace one row of one party",
            "accountant": "RDP (dp-accounting)",
        },
        "warnings": summary_warnings,
        "traffic": coordinator.ledger.summary(),
    }


def _add_up(context, blobs):
    """Sum ciphertexts under the coordinator's public context (checks key and integrity)."""
    vectors = [context.load_vector(b) for b in blobs]
    total = vectors[0]
    for vector in vectors[1:]:
        total = total + vector
    return total.to_bytes()


def _check_enough(coordinator, asked, replies, min_parties, where):
    """Stop the run, naming the missing parties and why, if fewer than ``min_parties`` answered."""
    if len(replies) >= min_parties:
        return
    reasons = {d["role"]: d["reason"] for d in coordinator.dropouts}  # the latest per party
    failed = "; ".join(f"{r}: {reasons.get(r, 'no answer')}" for r in asked if r not in replies)
    raise FedscoreError(f"{where}: only {len(replies)} of {len(asked)} parties answered, at least {min_parties} "
                        f"needed (--min-parties) [{failed}]")


def merge_schemas(schemas):
    """Check that every party has the same columns, of the same kind; merge category lists.

    Parameters
    ----------
    schemas : dict of role to dict
        Each party's ``{"columns": [...], "numeric": [...], "categories": {col: [...]}}``.

    Returns
    -------
    dict
        The common schema, in the first party's column order, categories the sorted union.

    Raises
    ------
    InputError
        Naming the parties and columns that differ.
    """
    first, reference = next(iter(schemas.items()))
    columns = list(reference["columns"])
    numeric = set(reference["numeric"])
    categories = {c: set(v) for c, v in reference["categories"].items()}
    for role, schema in schemas.items():
        extra = sorted(set(schema["columns"]) - set(columns))
        missing = sorted(set(columns) - set(schema["columns"]))
        if extra or missing:
            detail = "; ".join(p for p in (f"missing {missing}" if missing else "",
                                           f"extra {extra}" if extra else "") if p)
            raise InputError(f"party {role!r} has different columns from party {first!r} ({detail}): "
                             "horizontal training needs the same tag schema at every party")
        differ = sorted(numeric.symmetric_difference(schema["numeric"]))
        if differ:
            raise InputError(f"column {differ[0]!r} is numeric at one of parties {first!r}, {role!r} and text at "
                             "the other: every party must encode a column the same way")
        for column, values in schema["categories"].items():
            categories[column].update(values)
    for column, values in categories.items():
        if len(values) > MAX_CATEGORIES:
            raise InputError(f"{len(values)} distinct text values across parties (more than {MAX_CATEGORIES}): "
                             "not a categorical feature", column=column)
    return {
        "columns": columns,
        "numeric": [c for c in columns if c in numeric],
        "categories": {c: sorted(categories[c]) for c in columns if c in categories},
    }


# --- the parties' side: data -------------------------------------------------------------


def _local_schema(frame, columns, path):
    """Which columns are numeric, and the categories of the others, at this party."""
    numeric, categories = [], {}
    for column in columns:
        values = frame[column].astype(str).str.strip()
        empty = np.flatnonzero((values == "").to_numpy())
        if len(empty):
            raise InputError("empty value", path=path, column=column, row=int(empty[0]) + 2)
        parsed = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
        if np.isfinite(parsed).all():
            numeric.append(column)
        else:
            distinct = sorted(values.unique())
            if len(distinct) > MAX_CATEGORIES:
                raise InputError(f"{len(distinct)} distinct text values (more than {MAX_CATEGORIES}): "
                                 "not a categorical feature", path=path, column=column)
            categories[column] = distinct
    return {"columns": list(columns), "numeric": numeric, "categories": categories}


def validation_mask(ids, labels, fraction):
    """Hold out ``fraction`` of the labelled rows, chosen by a hash of the ID.

    Notes
    -----
    A hash rather than a random draw makes the split reproducible from the file alone, so
    a benchmark can train a centralised model on exactly the same training rows.
    """
    if fraction <= 0:
        return np.zeros(len(ids), dtype=bool)
    draws = np.array([int.from_bytes(hashlib.blake2b(str(i).encode(), digest_size=8).digest(), "big")
                      for i in ids], dtype=float) / 2.0**64
    return (draws < fraction) & ~np.isnan(labels)


def _numeric_block(frame, columns):
    if not columns:
        return np.zeros((len(frame), 0))
    return np.column_stack([pd.to_numeric(frame[c].astype(str).str.strip()).to_numpy(dtype=float)
                            for c in columns])


def _secret(party):
    try:
        path = party.config["key-path"]
    except KeyError:
        raise InputError(f"party {party.role!r} has no 'key-path' in its configuration (its secret key file)") \
            from None
    return load_secret_key(path)


# --- the parties' side: steps ------------------------------------------------------------


@party_step("scoring_horizontal.describe")
def describe(party, msg):
    """Read and validate this party's table; reply with its public schema and key fingerprint."""
    names = msg["columns"]
    path = party.config["data"]
    id_column, label_column = names["id_column"], names["label_column"]
    frame = read_table(path, columns=[id_column, label_column])
    ids = validate_ids(frame, id_column, path)
    labels = parse_labels(frame, label_column, path)
    columns = [c for c in frame.columns if c not in (id_column, label_column)]
    if not columns:
        raise InputError("no feature columns besides the ID and label", path=path)
    schema = _local_schema(frame, columns, path)
    party.state.update(ids=ids, labels=labels, frame=frame[columns], id_column=id_column)
    return Message(schema=public(schema), key_fingerprint=public(_secret(party).fingerprint.hex()))


@party_step("scoring_horizontal.sum_columns")
def sum_columns(party, msg):
    """Encrypt ``[rows, sum of each numeric column]`` over this party's rows."""
    schema = msg["schema"]
    party.state["schema"] = schema
    values = _numeric_block(party.state["frame"], schema["numeric"])
    vector = np.concatenate([[len(values)], values.sum(axis=0)])
    return Message(sums=ciphertext(_secret(party).encrypt(vector).to_bytes()))


@party_step("scoring_horizontal.spread_columns")
def spread_columns(party, msg):
    """Decrypt the global sums; encrypt this party's squared deviations from the global means.

    Notes
    -----
    Two passes (means, then squared deviations) instead of sums of squares: the
    one-pass formula loses every significant digit when a column's mean is large next to
    its spread, and CKKS adds an error relative to the largest value in a ciphertext.
    """
    context = _secret(party)
    totals = context.decrypt(context.load_vector(msg["sums"]))
    means = totals[1:] / totals[0]
    values = _numeric_block(party.state["frame"], party.state["schema"]["numeric"])
    party.state["global_rows"], party.state["means"] = float(totals[0]), means
    spreads = ((values - means) ** 2).sum(axis=0)
    return Message(spreads=ciphertext(context.encrypt(np.concatenate([[0.0], spreads])).to_bytes()))


def _standardise(party, context, spreads_blob, params):
    """Build the encoder from the global statistics; encode and split this party's rows."""
    state = party.state
    schema = state["schema"]
    variances = context.decrypt(context.load_vector(spreads_blob))[1:] / state["global_rows"]
    scales = np.sqrt(np.maximum(variances, 0.0))
    for column, scale in zip(schema["numeric"], scales):
        if not scale > 0:
            raise InputError("column is constant across all parties: it carries no information", column=column)
    encoder = FeatureEncoder(party.config["data"])
    encoder.columns_ = list(schema["columns"])
    encoder.means_ = {c: float(m) for c, m in zip(schema["numeric"], state["means"])}
    encoder.scales_ = {c: float(s) for c, s in zip(schema["numeric"], scales)}
    encoder.categories_ = {c: list(v) for c, v in schema["categories"].items()}
    encoder.feature_names_ = [n for c in encoder.columns_
                              for n in ([f"{c}={v}" for v in encoder.categories_[c]]
                                        if c in encoder.categories_ else [c])]
    features = encoder.transform(state.pop("frame"))
    labels = state["labels"]
    held_out = validation_mask(state["ids"], labels, params["validation_fraction"])
    state.update(encoder=encoder.to_dict(), features=features, held_out=held_out,
                 train=~np.isnan(labels) & ~held_out, history=[])


def _with_intercept(features):
    return np.hstack([features, np.ones((len(features), 1))])


def _objective(weights, x, y, anchor, l2, mu):
    """Mean log-loss + (l2/2)|coef|^2 + (mu/2)|w - anchor|^2, and its gradient."""
    z = x @ weights
    loss = -np.mean(y * log_expit(z) + (1 - y) * log_expit(-z))
    grad = x.T @ (expit(z) - y) / len(y)
    coef = weights[:-1]
    loss += 0.5 * l2 * coef @ coef + 0.5 * mu * np.sum((weights - anchor) ** 2)
    grad[:-1] += l2 * coef
    grad += mu * (weights - anchor)
    return loss, grad


def local_update(global_weights, x, y, params):
    """Train from the global model on this party's rows; return the new weights.

    Without DP: ``local_steps`` L-BFGS iterations on the local objective (FedAvg; with
    ``proximal_mu > 0`` the FedProx proximal term of Li et al., MLSys 2020). With DP:
    ``local_steps`` gradient steps whose gradient is the sum of per-row gradients clipped to
    ``clip_norm`` plus Gaussian noise of ``noise_multiplier * 2 * clip_norm`` (DP-SGD of
    Abadi et al., CCS 2016, on the full local batch), so each step is one Gaussian release.
    """
    with threadpool_limits(LOCAL_BLAS_THREADS, user_api="blas"):
        return _local_update(global_weights, x, y, params)


def _local_update(global_weights, x, y, params):
    l2, mu = params["l2"], params["proximal_mu"]
    if params["noise_multiplier"] is None:
        result = minimize(_objective, global_weights, args=(x, y, global_weights, l2, mu), jac=True,
                          method="L-BFGS-B", options={"maxiter": params["local_steps"]})
        return result.x
    clip = params["clip_norm"]
    noise_std = params["noise_multiplier"] * dp.REPLACE_ONE_SENSITIVITY * clip
    weights = global_weights.copy()
    for _ in range(params["local_steps"]):
        rows = x * (expit(x @ weights) - y)[:, None]
        noisy = dp.clip_rows(rows, clip).sum(axis=0) + dp.gaussian_noise(noise_std, x.shape[1])
        grad = noisy / len(y) + mu * (weights - global_weights)
        grad[:-1] += l2 * weights[:-1]
        weights = weights - params["learning_rate"] * grad
    return weights


def _global_weights(context, blob):
    totals = context.decrypt(context.load_vector(blob))
    if not totals[-1] > 0:
        raise ProtocolError("aggregated update holds no rows")
    return totals[:-1] / totals[-1]


def _record_validation(state, round_, weights):
    held_out = state["held_out"]
    if held_out.any():
        scores = _with_intercept(state["features"][held_out]) @ weights
        state["history"].append({"round": round_, "validation_auc": auc(state["labels"][held_out], scores)})


@party_step("scoring_horizontal.train_round")
def train_round(party, msg):
    """Average the previous round's sum into the global model, train locally, encrypt the update."""
    context = _secret(party)
    params, round_ = msg["params"], msg["round"]
    if "spreads" in set(msg):
        _standardise(party, context, msg["spreads"], params)
    state = party.state
    if "encoder" not in state:
        raise ProtocolError("train_round before the standardisation statistics arrived")
    x = _with_intercept(state["features"][state["train"]])
    y = state["labels"][state["train"]]
    if "model_sum" in set(msg):
        weights = _global_weights(context, msg["model_sum"])
        _record_validation(state, round_ - 1, weights)
    else:
        weights = np.zeros(x.shape[1])
    state["params"] = params
    updated = local_update(weights, x, y, params)
    vector = np.concatenate([len(y) * updated, [len(y)]])
    return Message(update=ciphertext(context.encrypt(vector).to_bytes()))


@party_step("scoring_horizontal.finish")
def finish(party, msg):
    """Decrypt the final model; write ``model.json``, ``scores.csv`` and ``report.json`` locally."""
    context = _secret(party)
    state = party.state
    weights = _global_weights(context, msg["model_sum"])
    _record_validation(state, msg["round"], weights)
    model = model_dict(FeatureEncoder.from_dict(state["encoder"]), weights, state["params"])
    scores = expit(_with_intercept(state["features"]) @ weights)
    out = Path(party.config["out"])
    (out / "model.json").write_text(json.dumps(model, indent=2) + "\n", encoding="utf-8")
    pd.DataFrame({state["id_column"]: state["ids"], "score": scores}).to_csv(out / "scores.csv", index=False)
    held_out, labels = state["held_out"], state["labels"]
    report = {
        "party": party.role,
        "rows": int(len(labels)),
        "train_rows": int(state["train"].sum()),
        "validation_rows": int(held_out.sum()),
        "unlabelled_rows": int(np.isnan(labels).sum()),
        "rounds": state["history"],
        "validation": score_report(labels[held_out], scores[held_out]) if held_out.any() else None,
    }
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return Message(status=control("written"))


def model_dict(encoder, weights, params):
    """The global model as JSON: coefficients by feature name, intercept, encoder, training settings."""
    return {
        "model": "logistic_regression",
        "feature_names": list(encoder.feature_names_),
        "coef": [float(w) for w in weights[:-1]],
        "intercept": float(weights[-1]),
        "encoder": encoder.to_dict(),
        "training": {k: params[k] for k in ("rounds", "local_steps", "l2", "proximal_mu",
                                            "dp_epsilon", "dp_delta", "clip_norm", "noise_multiplier")},
    }


# --- the library API -----------------------------------------------------------------------


class HorizontalLogisticRegression:
    """Federated logistic regression over N parties' files with the same tag schema.

    Runs every party on this machine (one process, or Flower's simulation) and writes
    what each party would write on its own machine. In a deployment each party runs its
    own SuperNode with its data and secret key file in its node config instead.

    Parameters
    ----------
    rounds : int
        FedAvg rounds.
    local_steps : int, optional
        Local iterations per round (default 20 L-BFGS iterations, or 5 noisy gradient
        steps with DP).
    l2 : float
        L2 penalty of the mean log-loss (intercept excluded).
    proximal_mu : float
        FedProx proximal term; 0 is plain FedAvg.
    dp_epsilon : float, optional
        Turn on differential privacy with this total epsilon: per-row DP-SGD at each
        party (each local gradient step clips every row's gradient and adds Gaussian
        noise before the update is encrypted), protecting any one row of any party. Not
        party-level DP: see ``protocols/scoring_horizontal.md`` for why.
    dp_delta : float
    clip_norm : float
        Per-row gradient clipping norm under DP.
    learning_rate : float
        Step size of the noisy gradient steps under DP.
    min_parties : int, optional
        A round proceeds when at least this many parties answered (default: all).
    validation_fraction : float
        Share of each party's labelled rows held out for the per-round validation AUC.

    Attributes
    ----------
    coef_ : numpy.ndarray
        Coefficients on the standardised, one-hot encoded features.
    intercept_ : float
    feature_names_ : list of str
    encoder_ : fedscore.data.FeatureEncoder
        Global standardisation and categories, as every party encodes its rows.
    history_ : dict of party to list of dict
        Each party's validation AUC per round, on its own held-out rows.
    epsilon_ : float or None
        The epsilon the accountant reports for the run (None without DP).
    summary_ : dict
        The coordinator's summary (participation, dropouts, traffic, warnings).

    Notes
    -----
    The coordinator never sees the model: each party decrypts it from the encrypted sum.
    Run locally, all party outputs land in ``out_dir``, so the model is read from the
    first party that finished and copied to ``out_dir/model.json``.

    Examples
    --------
    >>> model = HorizontalLogisticRegression(rounds=5).fit(  # doctest: +SKIP
    ...     ["north.csv", "south.csv", "west.csv"], id_column="id", label_column="y", out_dir="run")
    >>> model.predict_proba(frame)[:, 1]  # doctest: +SKIP
    """

    def __init__(self, rounds=DEFAULT_ROUNDS, local_steps=None, l2=DEFAULT_L2, proximal_mu=0.0, dp_epsilon=None,
                 dp_delta=dp.DEFAULT_DELTA, clip_norm=dp.DEFAULT_CLIP_NORM, learning_rate=DP_LEARNING_RATE,
                 min_parties=None, validation_fraction=VALIDATION_FRACTION):
        self.rounds = rounds
        self.local_steps = local_steps
        self.l2 = l2
        self.proximal_mu = proximal_mu
        self.dp_epsilon = dp_epsilon
        self.dp_delta = dp_delta
        self.clip_norm = clip_norm
        self.learning_rate = learning_rate
        self.min_parties = min_parties
        self.validation_fraction = validation_fraction

    def fit(self, parties, *, id_column, label_column, out_dir, key_dir=None, engine="local", overwrite=False,
            resume=False, timeout=600.0):
        """Train on the parties' files; write every party's outputs under ``out_dir``.

        Parameters
        ----------
        parties : sequence of path
            One table per party; a party is named after its file (without extension).
        id_column, label_column : str
            A row with an empty label is not trained on, and is scored.
        out_dir : path
            Receives ``model.json``, ``report.json``, ``ledger.jsonl``, ``summary.json``
            and ``<party>/{model.json, scores.csv, report.json}``.
        key_dir : path, optional
            A folder from :func:`fedscore.keys.init_keys` with at least one secret file per
            party (the i-th party gets ``party-i.secret``). Without it a fresh key is made
            for this run in a private temporary folder and deleted afterwards.
        engine : {"local", "simulation", "deployment"}
        overwrite : bool
        resume : bool
            Go on from the checkpoint a failed attempt of the same run left beside
            ``out_dir`` (:mod:`fedscore.runtime.checkpoint`).
        timeout : float
            Seconds to wait for a party's answer before the run stops, naming it.
            Needs ``key_dir``: a run with a fresh key of its own cannot be resumed.

        Returns
        -------
        self
        """
        paths = [Path(p) for p in parties]
        roles = [p.stem for p in paths]
        if len(set(roles)) != len(roles):
            raise InputError(f"party files must have distinct names (without extension): {roles}")
        with _run_keys(key_dir, len(roles)) as folder:
            manifest = read_manifest(folder)
            if len(manifest["parties"]) < len(roles):
                raise InputError(f"the key folder holds keys for {len(manifest['parties'])} parties, "
                                 f"not {len(roles)}", path=folder)
            configs = {role: {"data": str(path), "key-path": str(Path(folder) / party_key_name(i + 1))}
                       for i, (role, path) in enumerate(zip(roles, paths))}
            options = {
                "id_column": id_column, "label_column": label_column, "public_key": str(Path(folder) / PUBLIC_FILE),
                "rounds": self.rounds, "local_steps": self.local_steps, "l2": self.l2,
                "proximal_mu": self.proximal_mu, "dp_epsilon": self.dp_epsilon, "dp_delta": self.dp_delta,
                "clip_norm": self.clip_norm, "learning_rate": self.learning_rate, "min_parties": self.min_parties,
                "validation_fraction": self.validation_fraction,
            }
            self.summary_ = run_job("horizontal_lr", options, configs, out_dir, engine=engine, overwrite=overwrite,
                                    resume=resume, timeout=timeout)
        self._collect(Path(out_dir))
        return self

    def _collect(self, out_dir):
        """Read the parties' outputs back (all local here) and write the run's model and report."""
        finished = self.summary_["finished"]
        if not finished:
            raise FedscoreError("no party finished the run: no model was written")
        model = json.loads((out_dir / finished[0] / "model.json").read_text(encoding="utf-8"))
        self.feature_names_ = model["feature_names"]
        self.coef_ = np.array(model["coef"])
        self.intercept_ = model["intercept"]
        self.encoder_ = FeatureEncoder.from_dict(model["encoder"])
        reports = {r: json.loads((out_dir / r / "report.json").read_text(encoding="utf-8")) for r in finished}
        self.history_ = {r: rep["rounds"] for r, rep in reports.items()}
        self.epsilon_ = self.summary_["dp"]["epsilon"] if self.summary_["dp"] else None
        (out_dir / "model.json").write_text(json.dumps(model, indent=2) + "\n", encoding="utf-8")
        report = {"summary": self.summary_, "parties": reports}
        (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")

    def decision_function(self, frame):
        """Return the logit of each row of ``frame`` (a table with the training columns, as strings)."""
        return self.encoder_.transform(frame) @ self.coef_ + self.intercept_

    def predict_proba(self, frame):
        """Return ``(rows, 2)`` probabilities of class 0 and 1, as scikit-learn does."""
        p = expit(self.decision_function(frame))
        return np.column_stack([1 - p, p])


@contextlib.contextmanager
def _run_keys(key_dir, parties):
    """Yield ``key_dir``, or a fresh ceremony's folder inside a private (0700) temporary folder."""
    if key_dir is not None:
        yield Path(key_dir)
        return
    with tempfile.TemporaryDirectory(prefix="fedscore-keys-") as tmp:
        folder = Path(tmp) / "keys"
        init_keys(folder, parties)
        yield folder
