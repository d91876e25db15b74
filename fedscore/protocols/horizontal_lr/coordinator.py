"""Horizontal logistic regression, the coordinator's side: ``protocols/scoring_horizontal.md``.

Several parties hold rows with the same tag schema (a brand's regional stores, several
brands on one taxonomy) and train one logistic regression without pooling rows:

1. ``describe``: each party reports its public tag schema and key fingerprint; the
   coordinator checks they agree and merges the category lists.
2. ``sum_columns`` / ``spread_columns``: encrypted column sums, then encrypted squared
   deviations from the global mean, are added up by the coordinator so that every party
   standardises with the same global statistics.
3. ``train_round`` (R times): each party decrypts the previous round's sum, averages it
   into the global model, trains locally and returns its row-weighted model encrypted.
   The coordinator adds the ciphertexts of the parties that answered.
4. ``finish``: each party decrypts the final sum and writes its model file, its own scores
   and its validation report.

The coordinator holds only the public CKKS context: it adds ciphertexts and never sees a
model, a statistic or a row count. Every party holds the secret key and learns the sums,
so with two contributors each can subtract its own share and read the other's: the job
warns unless differential privacy is on.
"""

import warnings

from ...errors import FedscoreError, InputError, ProtocolError
from ...keys import load_public_key
from ...kit.encoder import OTHER
from ...kit.options import argument
from ...kit.table import MAX_CATEGORIES
from ...wire import Message, ciphertext, control, public
from ..horizontal import MIN_PARTIES_WITHOUT_DP, PrivacyWarning, add_ciphertexts

TWO_PARTY_WARNING = (
    "a round may aggregate only two parties' updates ({min_parties}): each of them can subtract its own update "
    "from the decrypted sum and read the other's exactly. Turn on differential privacy ({dp_epsilon}) to bound "
    "what it learns about any single row."
)


def run(coordinator, options):
    """The ``horizontal_lr`` job: drive the protocol; return a summary without any value.

    Parameters
    ----------
    coordinator : fedscore.runtime.coordinator.Coordinator
    options : fedscore.protocols.horizontal_lr.options.HorizontalLROptions

    Returns
    -------
    dict
        Participation per round, dropouts, traffic, the DP parameters and epsilon, and
        the privacy warnings; the model and the validation reports stay with the parties
        (``protocols/scoring_horizontal.md``, "What each side learns").
    """
    roles = coordinator.roles
    min_parties = _min_parties(options, len(roles))
    if not options.public_key:
        raise InputError(f"horizontal_lr needs {argument('public_key')} (the coordinator's public key file, "
                         "coordinator.public from 'fedscore keys init')")
    context = load_public_key(options.public_key)
    noise_multiplier = options.noise_multiplier()
    summary_warnings = []
    if min_parties < MIN_PARTIES_WITHOUT_DP and options.dp_epsilon is None:
        text = TWO_PARTY_WARNING.format(min_parties=argument("min_parties", min_parties),
                                        dp_epsilon=argument("dp_epsilon"))
        warnings.warn(text, PrivacyWarning, stacklevel=2)
        summary_warnings.append(text)

    # 1. describe: the options once (the coordinator's own key file path stays with it), the number of
    # parties and the noise multiplier the coordinator will report (each party checks both against its
    # own); public schemas and key fingerprints back
    fields = {"options": public(options.replace(public_key=None).to_dict()), "parties": public(len(roles))}
    if noise_multiplier is not None:
        fields["noise_multiplier"] = public(noise_multiplier)
    request = Message(**fields)
    replies = coordinator.exchange({r: ("horizontal_lr.describe", request) for r in roles})
    for role, reply in replies.items():
        if reply["key_fingerprint"] != context.fingerprint.hex():
            raise ProtocolError(f"party {role!r} holds a different key than the coordinator's public context: "
                                "every key file must come from one key ceremony")
    schema = merge_schemas({r: replies[r]["schema"] for r in roles}, other=options.min_category_count is not None)

    # 2. sum_columns: the global row count and column sums, added under HE
    request = Message(schema=public(schema))
    replies = coordinator.exchange({r: ("horizontal_lr.sum_columns", request) for r in roles})
    sums = add_ciphertexts(context, [replies[r]["sums"] for r in roles])

    # 3. spread_columns: squared deviations from the global means, added under HE
    request = Message(sums=ciphertext(sums))
    replies = coordinator.exchange({r: ("horizontal_lr.spread_columns", request) for r in roles})
    spreads = add_ciphertexts(context, [replies[r]["spreads"] for r in roles])

    # 4. train_round, t = 1 ... R: the parties that answered make the next global model
    needs_spreads = set(roles)  # a party standardises when it first receives the spreads
    model_sum = None
    participation = []
    for round_ in range(1, options.rounds + 1):
        coordinator.advance("round", round_, options.rounds)
        requests = {}
        for role in roles:
            fields = {"round": control(round_)}
            if role in needs_spreads:
                fields["spreads"] = ciphertext(spreads)
            if model_sum is not None:
                fields["model_sum"] = ciphertext(model_sum)
            requests[role] = ("horizontal_lr.train_round", Message(**fields))
        replies = coordinator.exchange(requests, allow_missing=True)
        _check_enough(coordinator, roles, replies, min_parties, f"round {round_}")
        needs_spreads -= set(replies)
        model_sum = add_ciphertexts(context, [replies[r]["update"] for r in roles if r in replies])
        participation.append({"round": round_, "parties": [r for r in roles if r in replies]})

    # 5. finish: every party decrypts the final sum and writes its own outputs
    request = Message(round=control(options.rounds), model_sum=ciphertext(model_sum))
    replies = coordinator.exchange({r: ("horizontal_lr.finish", request) for r in roles}, allow_missing=True)
    _check_enough(coordinator, roles, replies, min_parties, "finish")
    return {
        "job": "horizontal_lr",
        "parties": roles,
        "rounds": participation,
        "finished": [r for r in roles if r in replies],
        "dropouts": list(coordinator.dropouts),
        "training": {k: v for k, v in options.training().items()
                     if k in ("rounds", "local_steps", "l2", "proximal_mu", "validation_fraction")},
        "min_parties": min_parties,
        "dp": None if noise_multiplier is None else _dp_summary(options, noise_multiplier),
        "warnings": summary_warnings,
        "traffic": coordinator.ledger.summary(),
    }


def _min_parties(options, parties):
    """``min_parties`` for this run (default: every party), checked against the number of parties."""
    if parties < 2:
        raise InputError(f"horizontal training needs at least 2 parties, got {parties}")
    min_parties = parties if options.min_parties is None else options.min_parties
    if not 2 <= min_parties <= parties:
        raise InputError(f"{argument('min_parties')} must be between 2 and the number of parties ({parties}), "
                         f"not {min_parties}: a sum of one party's update is that update")
    return min_parties


def _dp_summary(options, noise_multiplier):
    from ... import dp

    return {
        "epsilon": dp.epsilon_spent(noise_multiplier, options.releases, options.dp_delta),
        "target_epsilon": options.dp_epsilon,
        "delta": options.dp_delta,
        "noise_multiplier": noise_multiplier,
        "clip_norm": options.clip_norm,
        "releases": options.releases,
        "neighbouring": "replace one row of one party",
        "accountant": "RDP (dp-accounting)",
    }


def _check_enough(coordinator, asked, replies, min_parties, where):
    """Stop the run, naming the missing parties and why, if fewer than ``min_parties`` answered."""
    if len(replies) >= min_parties:
        return
    reasons = {d["role"]: d["reason"] for d in coordinator.dropouts}  # the latest per party
    failed = "; ".join(f"{r}: {reasons.get(r, 'no answer')}" for r in asked if r not in replies)
    raise FedscoreError(f"{where}: only {len(replies)} of {len(asked)} parties answered, at least {min_parties} "
                        f"needed ({argument('min_parties')}) [{failed}]")


def merge_schemas(schemas, other=False):
    """Check that every party has the same columns, of the same kind; merge category lists.

    Parameters
    ----------
    schemas : dict of role to dict
        Each party's ``{"columns": [...], "numeric": [...], "categories": {col: [...]}}``:
        with ``min_category_count``, only the categories it keeps.
    other : bool
        Rare categories are merged (``min_category_count``): every text column ends with
        ``<other>``, whether or not a party has merged any (which is not said).

    Returns
    -------
    dict
        The common schema, in the first party's column order, categories the sorted union
        (then ``<other>``).

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
        "categories": {c: sorted(categories[c] - {OTHER}) + [OTHER] if other else sorted(categories[c])
                       for c in columns if c in categories},
    }
