"""Each job's part of a party's report, built from that party's own folder and the shared summary.

Every command writes one page per party (:func:`fedscore.api._run.run`) and the demo writes
one page per party over its phases; both take each job's sections from here, so a command's
page shows what the demo's shows for the capabilities it ran. A builder reads only
``<run>/<role>/`` (that party's own outputs) and the run's ``summary.json``, never another
party's folder.

:func:`learned` states in plain words what each role learns from a job. The statements
follow the *What each party learns* (or *Who learns what*) section of the job's spec in
``protocols/`` (:data:`fedscore.protocols.JOBS` names it); a change to that section changes
them here.
"""

from pathlib import Path

import numpy as np
import pandas as pd

from ..kit.sizes import parse_size
from ..ledger import COORDINATOR
from ..params import MIN_SEGMENT_SIZE
from .sections import _read_json, persona_section

TITLES = {
    "ping": "Ping",
    "psi": "Private ID matching",
    "lookalike": "Hidden-seed lookalike",
    "propensity": "Joint propensity",
    "propensity_score": "Propensity scores with a trained model",
    "segment": "Persona segmentation",
    "segment_assign": "New users into trained personas",
    "horizontal_kmeans": "Horizontal segmentation",
    "horizontal_lr": "Horizontal scoring",
}
"""What each job is called on a page."""

EACH_PARTY = "each party"
"""The key of the statements true of every party of a horizontal job (any number of parties)."""


def job_report(job, run_dir, role=None, *, summary=None, compare=()):
    """The part of ``role``'s report that job ``job`` contributes.

    Parameters
    ----------
    job : str
        A job name (:data:`fedscore.protocols.JOBS`).
    run_dir : path
        The job's run folder; only ``<run_dir>/<role>/`` and ``summary.json`` are read.
    role : str, optional
        Whose view; without it, only the statements of what each role learned.
    summary : dict, optional
        The run's ``summary.json``, when already read.
    compare : iterable of dict
        Other models measured on the same rows by ``role`` (``{"label", "auc", "ks",
        "lift_at_10pct"}``), shown beside the job's first model of ``role``.

    Returns
    -------
    dict
        A partial report (see :mod:`fedscore.report.sections`).
    """
    run_dir = Path(run_dir)
    if summary is None:
        summary = _read_json(run_dir / "summary.json") or {}
    part = {"kpis": [], "facts": [], "scoring": [], "personas": [], "notes": [], "learned": learned(job, summary)}
    builder = _BUILDERS.get(job)
    if builder is not None and role is not None and (run_dir / role).is_dir():
        for key, items in builder(run_dir, role, summary).items():
            part[key] = part.get(key, []) + list(items)
    compare = list(compare)
    if compare:
        for section in part["scoring"]:
            if section.get("held_by") == role:
                section["compare"] = list(section.get("compare") or []) + compare
                break
    return part


# --- What each role learns (the specs' "What each party learns") ---------------------------------

def learned(job, summary):
    """Plain statements of what each role learns from ``job``, as its spec states it.

    Parameters
    ----------
    job : str
    summary : dict
        The run's public summary: the statements follow its mode and options (PSI's
        mode, label DP, seed exclusion, exact scores, the number of parties).

    Returns
    -------
    dict of str to list of str
        Role (or :data:`EACH_PARTY`) → statements.
    """
    summary = summary or {}
    writer = _LEARNED.get(job)
    return writer(summary) if writer is not None else {}


def _psi_learned(summary):
    # protocols/psi.md, "What each side learns"
    if summary.get("mode") == "labelled":
        return {
            "brand": ["for each of the media's IDs, in the media's order, whether it is one of the brand's and which "
                      "one (hence how many match); how many distinct IDs the media has."],
            "media": ["how many distinct IDs the brand has; not which of its users matched, nor how many."],
            COORDINATOR: ["both parties' ID counts (rows, distinct, empty, duplicated); blinded IDs it cannot link "
                          "to anyone, sealed payloads it cannot open, and the parties' identity public keys. Not how "
                          "many matched."],
        }
    return {
        "brand": ["which of its customers the media also has (the matched IDs, in an order shared with the "
                  "media), and how many distinct IDs the media has."],
        "media": ["which of its users the brand also has (the matched IDs, in an order shared with the brand), "
                  "and how many distinct IDs the brand has."],
        COORDINATOR: ["both parties' ID counts (rows, distinct, empty, duplicated) and how many matched; blinded "
                      "IDs it cannot link to anyone without a key, sealed payloads it cannot open, and the parties' "
                      "identity public keys."],
    }


OPTED_OUT_LOOKALIKE = (
    "label DP was off (opted out): the label aggregate it received is exact up to encryption noise, so for a user "
    "whose encoded row stands alone in a column (a category no other training user holds, or an outlying value) "
    "it gives that user's seed membership, and its model and scores carry the same; merging rare categories and "
    "limiting outliers (the default encoding) narrows this to the users who still stand out.")

OPTED_OUT_PROPENSITY = (
    "label DP was off (opted out): each epoch's gradient is an exact aggregate of the training users' residuals, "
    "so for a user whose encoded row stands alone in a column (a category no other user holds, or an outlying "
    "value) it gives that user's label and whether the user is a training user; merging rare categories and "
    "limiting outliers (the default encoding) narrows this to the users who still stand out.")

TRAINING_MEMBERSHIP = (
    "which matched customers are training customers is not protected by label DP: each epoch's gradient, before "
    "the noisy label term is subtracted, sums only over them. Merging rare categories and limiting outliers (the "
    "default encoding) keeps a single customer from standing out in it.")


def _lookalike_learned(summary):
    # protocols/lookalike.md, "What each party learns"
    dp = summary.get("label_dp") or {}
    noisy = f" (with Gaussian noise: label DP, epsilon {dp.get('epsilon', float('nan')):g})" if dp else ""
    media = [f"the size of the seed list; per feature, its sum over the seed members in its training rows, and "
             f"their number{noisy}: what the model needs, and an estimate of how many seed IDs it holds; which "
             "model candidate was chosen."]
    if summary.get("exclude_seed", True):
        media.append("which of its top-scored users are seed members (one bit each, for as many users as the "
                     "largest audience plus the seed list), to leave them out of the audiences.")
    if summary.get("label_dp"):
        media.append("it does not learn any other user's seed membership, the held-out AUC or counts, the brand's "
                     "IDs.")
    else:
        media.append(OPTED_OUT_LOOKALIKE)
        media.append("it does not learn the held-out AUC or counts, the brand's IDs.")
    return {
        "brand": ["which of the media's (pseudonymous) positions match its seed, and how many encoded features "
                  "the media has; over the held-out media users, per model candidate, the AUC, the seed members "
                  "found in each audience size and their mean score.",
                  "it does not learn any media feature, the model, the score of a named user, which users the "
                  "media held out or selected."],
        "media": media,
        COORDINATOR: ["the run's options, public parameters, the media's feature count, the number of media users "
                      "and of seed IDs (hence of held-out users); every label, aggregate and flag it relayed was "
                      "encrypted or sealed. Not how many matched."],
    }


def _propensity_learned(summary):
    # protocols/propensity.md, "What each party learns"
    exact = summary.get("exact_scores")
    brand = ["the customers both parties know, the size of the media's table and its feature count; its own "
             "gradient and weights "
             "each epoch; per epoch 64 quantiles of the media's partial scores (their spread, not anyone's score) "
             "and the summed Brier score of its held-out customers.",
             "the rank of each customer it asked to score" + (
                 "; with exact scores, each one's joint score, hence the media's partial score of each." if exact
                 else "; an order only, no score."),
             "it does not learn any media feature, the media's weights or gradient."]
    media = ["the customers both parties know, the size of the brand's table, how many customers it trains on "
             "and how many it ranks; its own gradient and weights each epoch.",
             "the best epoch and the epoch training stopped: a few bits that depend on the held-out labels"
             + (" (not with label DP)." if summary.get("label_dp") else "."),
             "the ranked customers' " + ("joint scores" if exact else "scores, shuffled and rescaled")
             + ", linked to no one.",
             "it does not learn a brand feature, the brand's weights, partial scores or gradient, the ranks."]
    if summary.get("label_dp"):
        media.append(f"with label DP (epsilon {summary['label_dp'].get('epsilon', float('nan')):g}), everything "
                     "above that depends on the labels comes from one noisy release of the label aggregate: no "
                     "single label can be read from it.")
        media.append(TRAINING_MEMBERSHIP)
    else:
        media.append(OPTED_OUT_PROPENSITY)
    return {
        "brand": brand,
        "media": media,
        COORDINATOR: ["the run's options, public keys and sizes (users per table, matched, features per party, "
                      "training and ranked customers); per epoch the two convergence flags and the brand's stop "
                      "flag and best epoch. Every gradient, quantile and score it relayed was encrypted or sealed."],
    }


def _propensity_score_learned(summary):
    # protocols/propensity.md, "Scoring with a trained model", "What each party learns"
    return {
        "brand": ["the customers both parties know, and the rank of each under the trained joint model (with a "
                  "model trained with exact scores, each one's joint score, hence the media's partial score of "
                  "each); whether the media's half is of the same trained model.",
                  "it does not learn any media feature, the media's weights or partial scores."],
        "media": ["the customers both parties know, and that the brand ranks all of them (a count it holds): nothing "
                  "about which customers the brand scores; their scores, shuffled and rescaled, linked to no one; "
                  "whether the brand's half is of the same trained model.",
                  "no label (none is read), no rank, no brand feature, weight or partial score."],
        COORDINATOR: ["sizes (rows per table, customers both know, features per party) and the media's public "
                      "ranking key. The model ids, scores and ranks it relayed were sealed or encrypted."],
    }


def _segment_learned(summary):
    # protocols/segment_vertical.md, "What remains visible"
    each = ["the persona of each person both parties know, after every iteration (hence the personas' sizes); in "
            "alternate rounds, each person's distances to the personas, scaled, shifted and shuffled by the other "
            "party.",
            "the other party's sum of feature variances and number of features and, each iteration, its part of "
            "the inertia and of the centroid shift.",
            "per persona of at least the release threshold (min_segment_size, by default "
            f"{MIN_SEGMENT_SIZE} people), the average of each of the other party's columns; nothing for smaller "
            "personas, no value of the other party's for any person."]
    return {
        "brand": each,
        "media": each,
        COORDINATOR: ["sizes (rows per party, people both know, features per party, personas released), the "
                      "initial rows' positions, how many restarts still run each round, the number of rounds and "
                      "whether the kept restart converged. Every distance, assignment and profile it relayed was "
                      "encrypted or sealed."],
    }


def _segment_assign_learned(summary):
    # protocols/segment_vertical.md, "Assigning new users with a trained model"
    return {
        "brand": ["the persona of each new person both parties know; nothing from the masking; whether the media's "
                  "half of the model is of the same trained model."],
        "media": ["the persona of each new person both parties know; per person, one row of its distances to the "
                  "personas, scaled, shifted and shuffled by the brand; whether the brand's half is of the same "
                  "trained model."],
        COORDINATOR: ["sizes (rows per party, people both know, features per party) and the number of personas. "
                      "The model ids, distances and personas it relayed were sealed or encrypted."],
    }


def _horizontal_kmeans_learned(summary):
    # protocols/segment_horizontal.md, "What each side learns"
    dp = bool(summary.get("dp"))
    each = ["its own rows' personas; the pooled column averages and spreads and the total row count; after each "
            "iteration the pooled sums and counts per persona" + (" (with DP noise)" if dp else "")
            + ", hence the personas' centres and sizes.",
            "with DP, the noisy pooled counts and sums of random cells as starting points." if dp else
            "every other party's proposed starting centres and their sizes (its local clusters large enough to be "
            "proposed)."]
    parties = summary.get("parties") or ()
    if len(parties) == 2:
        each.append("with two parties: the other party's column sums and sums of squares, and each iteration's "
                    "sums and counts, exactly" + (" except for DP's noise (not on the column statistics)." if dp
                                                 else "."))
    elif parties:
        each.append("only sums over the other parties; colluding parties can subtract their own.")
    return {
        EACH_PARTY: each,
        COORDINATOR: ["column names, every party's row count, public keys (with the parties' identity public "
                      "keys), hyper-parameters, the number of iterations and each iteration's convergence bit. It "
                      "holds no key and decrypts nothing."],
    }


def _horizontal_lr_learned(summary):
    # protocols/scoring_horizontal.md, "What each side learns"
    dp = bool(summary.get("dp"))
    each = ["the merged schema; the pooled row count, column averages and spreads; after each round the pooled "
            "model and how many parties' updates it holds; its own validation AUC and scores."]
    parties = summary.get("parties") or ()
    if len(parties) == 2:
        each.append("with two parties: the other party's column sums and spreads, its row count and, each round, "
                    "its locally trained model, exactly" + (" (DP bounds what the model reveals about any row)."
                                                            if dp else "."))
    elif parties:
        each.append("only sums over the other parties; colluding parties can subtract their own.")
    return {
        EACH_PARTY: each,
        COORDINATOR: ["the public schema, key fingerprints, hyper-parameters, the number of parties answering each "
                      "round and ciphertext sizes. It holds no key and decrypts nothing."],
    }


def _ping_learned(summary):
    # protocols/ping.md, "Who learns what"
    return {EACH_PARTY: ["the other parties' random tokens, and nothing else."],
            COORDINATOR: ["the tokens and the parties' versions."]}


_LEARNED = {
    "ping": _ping_learned,
    "psi": _psi_learned,
    "lookalike": _lookalike_learned,
    "propensity": _propensity_learned,
    "propensity_score": _propensity_score_learned,
    "segment": _segment_learned,
    "segment_assign": _segment_assign_learned,
    "horizontal_kmeans": _horizontal_kmeans_learned,
    "horizontal_lr": _horizontal_lr_learned,
}


# --- What each role's own folder shows ----------------------------------------------------------

def _psi(run, role, summary):
    own = _read_json(run / role / "psi_report.json") or {}
    ids = own.get("ids") or {}
    peer = _peer(role)
    facts = [[f"IDs in the {role}'s list (distinct)", ids.get("unique")],
             [f"IDs in the {peer}'s list (distinct)", own.get("peer_set_size")]]
    for key, label in (("empty", "empty IDs left out"), ("duplicates", "duplicated IDs")):
        if ids.get(key):
            facts.append([f"{label} in the {role}'s list", ids[key]])
    kpis = []
    if isinstance(own.get("intersection"), int):
        facts.append(["people in both lists", own["intersection"]])
        kpis.append([f"{own['intersection']:,}", "people in both lists"])
    if isinstance(own.get("matched"), int):
        facts.append([f"of the {peer}'s IDs, the {role}'s own (match flags)", own["matched"]])
        kpis.append([f"{own['matched']:,}", f"of the {peer}'s IDs are the {role}'s"])
    notes = []
    if summary.get("mode") == "labelled" and role == "media":
        notes.append("In labelled mode the media learns no match: the brand holds the match flags.")
    return {"facts": _present(facts), "kpis": kpis, "notes": notes}


def _lookalike(run, role, summary):
    if role == "media":
        return _lookalike_media(run, summary)
    report = _read_json(run / role / "report.json")
    if not report or "holdout" not in report:
        return {}
    holdout = report["holdout"]
    rows, seeds = holdout["rows"], holdout["seed_members"]
    rate = seeds / rows if rows else float("nan")
    audiences = [{"size": _size_text(a["size"]), "count": a["holdout_count"], "precision": a["precision"],
                  "recall": a["recall"], "lift": a["precision"] / rate if rate else float("nan")}
                 for a in holdout["audiences"]]
    fractions = [a["holdout_count"] / rows for a in holdout["audiences"]] if rows else []
    media_rows = report.get("media_rows")
    files = _audience_files(summary.get("audience_sizes"), media_rows)
    note = (f"Measured on the {rows:,} held-out media users only, the brand's one way to see how well the model "
            "finds seed members it never trained on: the audiences in this table are cut from those held-out "
            "users. ")
    if files:
        kept = "seed members left out" if summary.get("exclude_seed") else "seed members included"
        note += f"The media's audience files are cut from all {media_rows:,} of its users, {kept} ({files}). "
    note += report.get("notes", "")
    section = {
        "name": "Lookalike quality: seed members found among held-out media users",
        "held_by": role, "short": "lookalike, held-out users", "label": "lookalike model", "auc": holdout["auc"],
        "rows": rows, "positives": seeds, "population": "held-out media users",
        "positives_label": "seed members among them",
        "lift_at_10pct": next((a["lift"] for a, f in zip(audiences, fractions) if abs(f - 0.1) < 0.005), None),
        "gain": {"fraction": fractions, "gain": [a["recall"] for a in audiences]},
        "audiences": audiences, "note": note.strip(),
    }
    facts = [["seed list (the brand's best customers)", report.get("seed_size")],
             ["seed IDs found among the media's users", report.get("matched_seed")],
             ["media users (the whole audience scored)", media_rows],
             ["held-out media users (to measure the model)", rows],
             ["seed members among the held-out users", seeds]]
    if report.get("chosen_l2") is not None:
        candidates = len(report.get("model_selection") or ())
        label = f"model chosen (L2 penalty, of {candidates} candidates)" if candidates > 1 else "L2 penalty"
        facts.append([label, f"{report['chosen_l2']:g}"])
    selection = report.get("selection") or {}
    if selection.get("rows"):
        facts.append(["other held-out media users the model was chosen on (not measured above)",
                      f"{selection['rows']:,} ({selection.get('seed_members', 0):,} seed members)"])
    facts += _label_dp_facts(report.get("label_dp"))
    kpis = []
    if isinstance(report.get("matched_seed"), int) and isinstance(report.get("seed_size"), int):
        kpis.append([f"{report['matched_seed']:,} of {report['seed_size']:,}", "seed IDs found among the media's users"])
    return {"scoring": [section], "facts": _present(facts), "kpis": kpis}


def _lookalike_media(run, summary):
    folder = run / "media"
    scores = _read_csv(folder / "scores.csv")
    users = len(scores) if scores is not None else None
    facts = [["media users scored (its whole audience)", users]]
    files = sorted(folder.glob("audience_*.csv"), key=lambda p: _size_order(p.stem))
    for path in files:
        size = path.stem[len("audience_"):]
        audience = _read_csv(path)
        count = len(audience) if audience is not None else None
        if count is None:
            continue
        share = f" ({count / users:.1%} of them)".replace(".0%", "%") if users else ""
        kept = "seed members left out" if summary.get("exclude_seed") else "seed members included"
        facts.append([f"audience top {_size_text(size)} ({path.name})",
                      f"{count:,} of its {users:,} users{share}, {kept}" if users else f"{count:,}"])
    model = _read_json(folder / "model.json") or {}
    training = model.get("training") or {}
    if training.get("l2") is not None:
        candidates = training.get("l2_candidates") or []
        facts.append(["model chosen (L2 penalty" + (f", of {len(candidates)} candidates)" if candidates else ")"),
                      f"{training['l2']:g}"])
    facts += _label_dp_facts(training.get("label_dp"))
    kpis = [[f"{len(files)}", "audiences written"]] if files else []
    notes = ["The media selects its audiences itself; how well they find seed members is measured by the brand, on "
             "held-out users, and is not shown to the media."]
    return {"facts": _present(facts), "kpis": kpis, "notes": notes}


def _propensity(run, role, summary):
    if role != "brand":
        return _propensity_media(run, summary)
    report = _read_json(run / role / "report.json")
    if not report or "validation" not in report:
        return {}
    validation = report["validation"]
    section = _validation_section(
        validation, name="Joint propensity: brand and media columns, measured on held-back validation customers",
        short="joint propensity, validation", held_by=role, label="joint model (brand + media)",
        population="validation customers", positives_label="of them positive",
        note=(f"Trained on {report.get('training_users', 0):,} of the {report.get('matched_users', 0):,} customers "
              "both parties know, without either seeing the other's columns; the media received no label, the "
              "brand never saw a media value or partial score."))
    top = report.get("top") or {}
    by_source = report.get("scored_by_source") or {}
    facts = [["customers both parties know", report.get("matched_users")],
             ["training customers (labelled)", report.get("training_users")],
             ["validation customers (labelled, held back)", validation.get("users")],
             ["customers scored (no label yet)", report.get("scored_users")],
             *[[f"of them scored by the {model}", by_source.get(source)] for source, model in (
                 ("joint", "joint model (known to the media)"),
                 ("brand only", "brand's own model (unknown to the media)"))],
             [f"top {top.get('size', '')} of the customers scored (top.csv)", top.get("count")],
             ["epochs run", report.get("epochs_run")]]
    own_auc = (report.get("brand_only") or {}).get("validation", {}).get("auc")
    if _finite(own_auc):
        facts.append(["brand's own model, AUC on the same validation customers",
                      f"{own_auc:.3f} (joint model {validation['auc']:.3f})" if _finite(validation.get("auc"))
                      else f"{own_auc:.3f}"])
    stopping = report.get("early_stopping") or {}
    if stopping.get("enabled") and stopping.get("best_epoch") is not None:
        facts.append(["best epoch (Brier score of other held-out customers than the validation customers; its "
                      "weights rank)", stopping["best_epoch"] + 1])
        if stopping.get("stopping_users") is not None:
            facts.append(["held-out customers early stopping chose the epoch on (not measured above)",
                          stopping["stopping_users"]])
    facts += _dp_facts(report.get("label_dp"), "label DP")
    notes = [report["score"]] if isinstance(report.get("score"), str) else []
    return {"scoring": [section], "facts": _present(facts), "notes": [f"scores.csv: {n}." for n in notes]}


def _propensity_media(run, summary):
    psi = summary.get("psi") or {}
    model = _read_json(run / "media" / "model.json") or {}
    facts = [["customers both parties know", psi.get("intersection")],
             ["customers both know that were ranked (validation customers and customers to score)",
              summary.get("ranked_users")],
             ["epochs run", summary.get("epochs_run")],
             ["media columns in the model (encoded)", len(model.get("feature_names") or []) or None]]
    notes = ["The media holds its half of the model (model.json): it scores nothing alone, and it receives no "
             "label, no score of a named customer and no rank (what its gradients tell: see what it learned)."]
    return {"facts": _present(facts), "notes": notes}


def _propensity_score(run, role, summary):
    report = _read_json(run / role / "report.json")
    if not report:
        return {}
    trained = report.get("trained_run_id") or "unknown"
    if role != "brand":
        facts = [["customers both parties know (ranked)", report.get("ranked_users")],
                 ["media columns in the model (encoded)", report.get("features")], ["model id", report.get("model_id")]]
        notes = [f"The media ranked the brand's masked, shuffled scores with its half of the trained model (its run: "
                 f"{trained}); it received no label and no score of a named customer. Nothing was trained."]
        return {"facts": _present(facts), "notes": notes}
    top = report.get("top") or {}
    by_source = report.get("scored_by_source") or {}
    facts = [["customers in the brand's table (every one scored)", report.get("scored_users")],
             ["customers both parties know (ranked privately)", report.get("ranked_users")],
             *[[f"of them scored by the {model}", by_source.get(source)] for source, model in (
                 ("joint", "joint model (known to the media)"),
                 ("brand only", "brand's own model (unknown to the media)"))],
             [f"top {top.get('size', '')} of the customers scored (top.csv)", top.get("count")],
             ["model id", report.get("model_id")]]
    notes = [f"Scored with the trained model of run {trained}: no label read, nothing trained."]
    if isinstance(report.get("score"), str):
        notes.append(f"scores.csv: {report['score']}.")
    return {"facts": _present(facts), "kpis": [[f"{report.get('scored_users', 0):,}", "customers scored"]],
            "notes": notes}


def _segment(run, role, summary):
    profiles = _read_csv(run / role / "profiles.csv")
    if profiles is None or "released" not in profiles:
        return {}
    released = profiles[profiles["released"].astype(str).str.lower() == "true"]
    released = released.iloc[np.argsort(-released["size"].astype(int).to_numpy(), kind="stable")]
    features = [c for c in profiles.columns if c not in ("segment", "size", "released")]
    means = released[features].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    section = persona_section(
        "Personas of the people both parties know", features, means, released["size"].astype(int).tolist(),
        held_by=role, labels=_letters(len(released)), min_size=summary.get("min_segment_size"),
        suppressed=len(profiles) - len(released),
        note=f"KMeans on both parties' columns. The {role} knows each shared person's persona and, per released "
             f"persona, the {_peer(role)}'s column averages; the {_peer(role)}'s page shows the same personas, "
             "coloured the same way.")
    facts = [["people both parties know (segmented)", summary.get("rows")],
             ["personas released", f"{len(released)} of {len(profiles)}"],
             ["iterations", summary.get("n_iter")], ["converged", summary.get("converged")]]
    return {"personas": [section], "kpis": [[f"{len(released)}", "personas released"]], "facts": _present(facts)}


def _segment_assign(run, role, summary):
    report = _read_json(run / role / "report.json")
    if not report:
        return {}
    sizes = report.get("segment_sizes") or []
    facts = [["new people both parties know (assigned)", report.get("assigned_users")],
             ["personas of the trained model", report.get("k")],
             ["people per persona (segment 0, 1, ...)", ", ".join(f"{s:,}" for s in sizes) or None],
             ["rows with a value the trained encoder had not seen", report.get("rows_with_unseen_values")]]
    notes = [f"Each person in segments.csv is in the persona of the trained model (its run: "
             f"{report.get('trained_run_id') or 'unknown'}) nearest on both parties' columns; nothing was trained."]
    return {"facts": _present(facts), "kpis": [[f"{report.get('assigned_users', 0):,}", "people assigned"]],
            "notes": notes}


def _horizontal_kmeans(run, role, summary):
    centroids = _read_csv(run / role / "centroids.csv")
    if centroids is None or "size" not in centroids:
        return {}
    order = np.argsort(-centroids["size"].astype(float).to_numpy(), kind="stable")
    centroids = centroids.iloc[order]
    labels = _letters(len(centroids))
    features = [c for c in centroids.columns if c not in ("segment", "size")]
    own = _read_csv(run / role / "segments.csv")
    counts = own["segment"].astype(str).value_counts() if own is not None and "segment" in own else None
    mine = ""
    if counts is not None:
        parts = [f"{label} {int(counts.get(str(segment), 0)):,}" for label, segment in zip(labels, centroids["segment"])]
        mine = f" Of the {role}'s {len(own):,} rows: {', '.join(parts)}."
    section = persona_section(
        "Personas over every party's rows", features,
        centroids[features].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float),
        centroids["size"].astype(float).round().astype(int).tolist(), held_by=role, labels=labels,
        note="Each persona's centre over all parties' rows, in the columns' own units; every party holds the same "
             "centres." + mine)
    rows = summary.get("rows") or {}
    facts = [[f"{role}'s rows", rows.get(role, len(own) if own is not None else None)],
             ["rows of all parties", sum(rows.values()) if rows else None],
             ["parties", len(summary.get("parties") or rows) or None],
             ["iterations", summary.get("n_iter")], ["converged", summary.get("converged")]]
    facts += _dp_facts(summary.get("dp"), "DP")
    return {"personas": [section], "kpis": [[f"{len(centroids)}", "personas"]], "facts": _present(facts),
            "notes": list(summary.get("warnings") or [])}


def _horizontal_lr(run, role, summary):
    report = _read_json(run / role / "report.json")
    if not report:
        return {}
    part = {"facts": [], "scoring": [], "notes": list(summary.get("warnings") or [])}
    validation = report.get("validation") or {}
    if validation.get("rows"):
        part["scoring"].append(_validation_section(
            validation, name=f"Pooled model, measured on the {role}'s held-out rows", short="pooled model, validation",
            held_by=role, label="pooled model", population=f"{role}'s validation rows",
            positives_label="of them positive",
            note="One model trained on every party's rows without pooling them; measured here on this party's "
                 "own labelled rows held out of training."))
    rounds = report.get("rounds") or []
    history = ", ".join(f"{r['validation_auc']:.3f}" for r in rounds if _finite(r.get("validation_auc")))
    facts = [[f"{role}'s rows", report.get("rows")], ["training rows", report.get("train_rows")],
             ["validation rows (held out)", report.get("validation_rows")],
             ["rows without a label (scored only)", report.get("unlabelled_rows")],
             ["parties", len(summary.get("parties") or []) or None],
             ["rounds", len(rounds) or None], ["validation AUC by round", history or None]]
    facts += _dp_facts(summary.get("dp"), "DP")
    part["facts"] = _present(facts)
    return part


_BUILDERS = {
    "psi": _psi,
    "lookalike": _lookalike,
    "propensity": _propensity,
    "propensity_score": _propensity_score,
    "segment": _segment,
    "segment_assign": _segment_assign,
    "horizontal_kmeans": _horizontal_kmeans,
    "horizontal_lr": _horizontal_lr,
}


def _validation_section(validation, *, name, short, held_by, label, population, positives_label, note):
    """A scoring section from a ``validation`` block (AUC, KS, lift, gain or audience table)."""
    rows = validation.get("rows", validation.get("users"))
    audiences = validation.get("audiences") or []
    gain = validation.get("gain")
    if not gain and rows and audiences:
        gain = {"fraction": [a["count"] / rows for a in audiences], "gain": [a["recall"] for a in audiences]}
    return {
        "name": name, "short": short, "held_by": held_by, "label": label,
        "auc": validation.get("auc"), "ks": validation.get("ks"), "lift_at_10pct": validation.get("lift_at_10pct"),
        "rows": rows, "positives": validation.get("positives"), "population": population,
        "positives_label": positives_label, "gain": gain, "audiences": audiences, "note": note,
    }


def _audience_files(sizes, users):
    """``"top 1 % = 25 users, ..."``: the media's audience file sizes, from the public sizes and its user count."""
    if not sizes or not isinstance(users, int):
        return ""
    try:
        parsed = [parse_size(size) for size in sizes]
    except ValueError:
        return ""
    return ", ".join(f"top {_size_text(size.text)} = {size.of(users):,} users" for size in parsed)


def _label_dp_facts(dp):
    """The label-DP epsilon and delta of a run, or a line saying it was turned off: every report states it."""
    return _dp_facts(dp, "label DP") or [["label DP", "off (opted out): see what the media learned"]]


def _dp_facts(dp, what):
    if not isinstance(dp, dict):
        return []
    facts = []
    for key in ("epsilon", "epsilon_spent", "epsilon_budget", "delta"):
        if _finite(dp.get(key)):
            facts.append([f"{what} {key.replace('_', ' ')}", f"{dp[key]:g}"])
    return facts


def _size_text(size):
    """``1pct`` or ``1%`` → ``1 %``; ``0_5pct`` → ``0.5 %``; a count stays a count."""
    text = str(size).replace("pct", "%").replace("_", ".")
    return text.replace("%", " %") if text.endswith("%") and not text.endswith(" %") else text


def _size_order(stem):
    label = stem.split("_", 1)[-1]
    try:
        return float(label.replace("pct", "").replace("_", "."))
    except ValueError:
        return float("inf")


def _letters(n):
    return [chr(ord("A") + i) if i < 26 else f"P{i + 1}" for i in range(n)]


def _peer(role):
    return {"brand": "media", "media": "brand"}.get(role, "other party")


def _present(facts):
    return [f for f in facts if f[1] is not None and f[1] != ""]


def _finite(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)


def _read_csv(path):
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError):
        return None
