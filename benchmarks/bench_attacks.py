"""Label inference by a semi-honest media: attack AUC from what it receives, with and without label DP.

The protocols run for real on the local engine. A transport that wraps the in-process
one opens, with the media's own channel key and mask, the label-dependent values the
media unmasks in its steps -- exactly what its step code computes, read just before the
step drops the mask -- and the media's final state gives its features, its held-out
split and its model. The brand's state gives the true labels, in the same row order.
No protocol arithmetic is redone here, except the exact (unflooded, noise-free) label
aggregate, computed centrally as an upper-bound reference.

Lookalike (bank marketing as in ``bench_lookalike.py``: media = contact/campaign columns
without ``duration``, seed = subscribers among a random half of the clients). The media
receives one release ``A ≈ [Xᵀy, Σy]`` over its training rows. Attacks, each a score per
media row:

* ``direction``: ``x_i · Xᵀy`` (the released aggregate used as a weight vector);
* ``centred direction``: ``x_i · (Xᵀy / Σy - x̄)``, the seed's mean minus the training mean;
* ``least squares``: the minimum-norm label vector consistent with the release,
  ``D (DᵀD)⁺ A`` for the design ``D = [X, 1]`` -- the linear-probability model;
* ``trained model``: the protocol's own model's scores. Logistic regression matches
  moments, ``Dᵀσ(Dw) = A`` at the optimum, so this is the maximum-entropy reconstruction
  of the labels from the release.

Each is scored by AUC against the true seed flags on the rows the media trained on, and,
the same score, on the held-out rows, whose labels never entered the release: the gap is
what the release gives away about the training rows beyond what the model generalises.

Propensity (bank marketing as in ``bench_propensity.py``, on a subsample). Per epoch the
media opens its own gradient ``g_t = X_mᵀ(r_t)/n``, the residual-weighted sum over the
brand's training users. Attacks: ``-x_i · g_t`` and its least-squares version for the
first epoch, the best single epoch (chosen with the true labels: an upper bound), and the
sum over epochs; and the media's own partial logit ``z_m = x_i · w_m`` with the weights of
the model it keeps (``media/model.json``, the best epoch's). With label DP the gradient the
media uses includes the noisy label aggregate it received once, and the attacks see that.
"""

import copy
import json
import math
import statistics
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from sklearn.linear_model import LogisticRegression

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHARED_DATA, parse_args, write_results  # noqa: E402
from bench_lookalike import bank_split  # noqa: E402

from fedscore import dp  # noqa: E402
from fedscore.kit.model import ModelFile  # noqa: E402
from fedscore.ledger import Ledger  # noqa: E402
from fedscore.metrics import auc  # noqa: E402
from fedscore.protocols import drive  # noqa: E402
from fedscore.protocols.lookalike.bounds import DP_CLIP_NORM  # noqa: E402
from fedscore.protocols.propensity.common import MEDIA_GRADIENT  # noqa: E402
from fedscore.params import DEFAULT_L2  # noqa: E402
from fedscore.protocols.vertical_lr import fit_from_aggregate, open_values, unmask  # noqa: E402
from fedscore.runtime.coordinator import Coordinator  # noqa: E402
from fedscore.runtime.local import LocalTransport  # noqa: E402
from fedscore.wire import Message  # noqa: E402

BRAND, MEDIA = "brand", "media"
NO_DP = "none"
LOOKALIKE_EPSILONS = (10.0, 3.0, 1.0, 0.1, 0.01)
"""Label-DP budgets for the lookalike's one release (delta = 1e-6). The small ones show
where the noise starts to bite on a table of this size."""

PROPENSITY_EPSILONS = (10.0, 3.0, 1.0)
"""Label-DP budgets for propensity's one release of the label aggregate (delta = 1e-6)."""

PROPENSITY_ROWS = 4000
"""Bank clients sampled for the propensity run: the full 45k rows take about 13 minutes per
run on two cores (``bench_propensity.py``), and 4000 rows fit one CKKS ciphertext."""


class MediaView(LocalTransport):
    """The in-process transport, also keeping the label-dependent values the media opens.

    Before the media runs ``lookalike.train`` or ``propensity.media_update``, the sealed
    release in the request is opened with a copy of the media's channel (the media must
    still open it itself: each payload opens once, in order) and unmasked with the media's
    mask and scale from its state, as the step itself does next (the step then drops the
    mask). Nothing else is touched.

    Attributes
    ----------
    label_aggregate : numpy.ndarray or None
        Lookalike: the released ``[Xᵀy, Σy]`` over the media's training rows.
    gradients : list of numpy.ndarray
        Propensity: the media's gradient of the mean loss, one per epoch (with label DP,
        including the noisy label aggregate, as the media's step computes it).
    """

    def __init__(self, party_configs):
        super().__init__(party_configs)
        self.label_aggregate = None
        self.gradients = []

    def exchange(self, requests, timeout=None):
        for request in requests:
            if request.role == MEDIA and request.step in ("lookalike.train", "propensity.media_update"):
                self._observe(request)
        return super().exchange(requests, timeout)

    def _observe(self, request):
        media = self.parties[MEDIA]
        peek = SimpleNamespace(role=MEDIA, channel=copy.deepcopy(media.channel))
        message = Message.decode(request.fields, request.payloads)
        if request.step == "lookalike.train":
            state = media.state["lookalike"]
            released = open_values(peek, message["aggregate"], "lookalike.release_aggregate")
            self.label_aggregate = unmask(released, state.mask, state.shift)
        else:
            state = media.state["propensity"]
            released = open_values(peek, message["media_gradient"], MEDIA_GRADIENT)
            label_term = 0.0 if state.label_term is None else state.label_term
            gradient = unmask(released, state.mask, state.shift) - label_term
            self.gradients.append(gradient / state.sizes.training)


def run_observed(job, options, party_configs):
    """Run ``job`` in this process; return the transport (party states and what the media opened)."""
    transport = MediaView(party_configs)
    drive(Coordinator(transport, Ledger()), job, options)
    return transport


def party_configs(folder, tables, **extra):
    """Write each party's table under ``folder`` and return the parties' local configurations."""
    configs = {}
    for role, table in tables.items():
        (folder / role).mkdir()
        path = folder / f"{role}.csv"
        table.to_csv(path, index=False)
        configs[role] = {"data": str(path), "out": str(folder / role), **extra}
    return configs


# --- attacks ------------------------------------------------------------------------------

def aggregate_attacks(features, train, label_aggregate):
    """Scores per row from a label aggregate ``[Xᵀy, Σy]`` over the training rows (see the module docstring)."""
    design = np.hstack([features, np.ones((len(features), 1))])
    feature_sums, positives = label_aggregate[:-1], label_aggregate[-1]
    gram = design[train].T @ design[train]
    return {
        "direction": features @ feature_sums,
        "centred direction": features @ (feature_sums / max(positives, 1.0) - features[train].mean(axis=0)),
        "least squares": design @ (np.linalg.pinv(gram) @ label_aggregate),
    }


def gradient_attacks(features, gradients):
    """Scores per user from the media's per-epoch gradients ``X_mᵀ(p - y)/n`` (positives lie along ``-g``).

    Returns ``{name: [scores per epoch]}`` for the direction and least-squares attacks.
    """
    centred = features - features.mean(axis=0)
    inverse_gram = np.linalg.pinv(centred.T @ centred)
    return {"direction": [-centred @ g for g in gradients],
            "least squares": [-centred @ (inverse_gram @ g) for g in gradients]}


# --- lookalike ----------------------------------------------------------------------------

def lookalike_run(folder, seed, media, epsilon, random_state, min_seed):
    """One lookalike run; return {attack: (training-row AUC, held-out AUC)} and facts."""
    options = {"id_column": "uid", "backend": "ckks", "exclude_seed": False, "min_seed": min_seed,
               "label_dp_epsilon": None if epsilon == NO_DP else epsilon, "l2_candidates": [DEFAULT_L2],
               "random_state": random_state}
    transport = run_observed("lookalike", options, party_configs(folder, {BRAND: seed, MEDIA: media},
                                                                  id_column="uid"))
    media_state = transport.parties[MEDIA].state["lookalike"]
    brand_state = transport.parties[BRAND].state
    flags = brand_state["psi"].flags.astype(float)
    features, held = media_state.features, media_state.holdout  # what the media trains on (clipped with DP)
    train = ~held
    design = np.hstack([features, np.ones((len(features), 1))])
    exact = design[train].T @ flags[train]
    released = transport.label_aggregate
    scores = aggregate_attacks(features, train, released)
    scores["trained model"] = media_state.scores
    exact_scores = aggregate_attacks(features, train, exact)
    weights, _ = fit_from_aggregate(features[train], exact, DEFAULT_L2)
    exact_scores["trained model"] = design @ weights
    scores.update({f"{name} (exact Xᵀy)": value for name, value in exact_scores.items()})
    results = {name: (auc(flags[train], s[train]), auc(flags[held], s[held])) for name, s in scores.items()}
    facts = {"model held-out AUC": auc(flags[held], media_state.scores[held]),
             "max |released - exact|": float(np.max(np.abs(released - exact))),
             "training rows": int(train.sum()), "training seed members": int(flags[train].sum()),
             "noise std": (brand_state["lookalike"].dp or {}).get("noise_std", 0.0)}
    return results, facts


def lookalike_table(rows, epsilons, repeats, min_seed):
    seed, media, _ = bank_split(rows)
    runs = {}
    for epsilon in (NO_DP,) + tuple(epsilons):
        for repeat in range(repeats):
            with tempfile.TemporaryDirectory() as tmp:
                runs.setdefault(epsilon, []).append(
                    lookalike_run(Path(tmp), seed, media, epsilon, random_state=repeat, min_seed=min_seed))
    table_rows = []
    for epsilon, measured in runs.items():
        for attack in measured[0][0]:
            if "exact" in attack and epsilon != NO_DP:
                continue  # the exact reference does not depend on the noise
            train_auc = statistics.median(m[0][attack][0] for m in measured)
            held_auc = statistics.median(m[0][attack][1] for m in measured)
            model_auc = statistics.median(m[1]["model held-out AUC"] for m in measured)
            table_rows.append([attack, epsilon, round(train_auc, 4), round(held_auc, 4),
                               round(train_auc - held_auc, 4), round(model_auc, 4),
                               round(statistics.median(m[1]["noise std"] for m in measured), 2), len(measured)])
    facts = runs[NO_DP][0][1]
    flooding = max(m[1]["max |released - exact|"] for m in runs[NO_DP])
    table = {"title": f"Lookalike: label inference by the media from its one release, bank marketing "
                      f"({len(media):,} media rows, {facts['training rows']:,} training rows, "
                      f"{facts['training seed members']:,} of them seed members)",
             "columns": ["attack", "label-DP epsilon", "attack AUC (training rows)", "same score, held-out rows",
                         "gap", "model held-out AUC", "DP noise std (per coordinate)", "repeats"],
             "rows": table_rows}
    return table, flooding


# --- propensity ---------------------------------------------------------------------------

def propensity_run(folder, brand, media, epsilon, random_state, epochs):
    """One propensity run; return {attack: (training-user AUC, validation-user AUC)} and facts."""
    options = {"id_column": "uid", "label_column": "y", "backend": "ckks", "epochs": epochs,
               "random_state": random_state, "label_dp_epsilon": None if epsilon == NO_DP else epsilon}
    transport = run_observed("propensity", options, party_configs(folder, {BRAND: brand, MEDIA: media}))
    media_state = transport.parties[MEDIA].state["propensity"]
    brand_state = transport.parties[BRAND].state["propensity"]
    labels, train, validation = brand_state.labels, brand_state.train, brand_state.validation
    features = media_state.features
    per_epoch = gradient_attacks(features, transport.gradients)
    scores = {}
    for name, epoch_scores in per_epoch.items():
        train_aucs = [auc(labels[train], s[train]) for s in epoch_scores]
        best = int(np.argmax(train_aucs))
        scores[f"{name}, first epoch"] = epoch_scores[0]
        scores[f"{name}, best epoch (chosen with the labels)"] = epoch_scores[best]
        scores[f"{name}, sum over epochs"] = np.sum(epoch_scores, axis=0)
    media_model = ModelFile.load(Path(folder) / MEDIA / "model.json")
    scores["media's own model z_m = x_i · w_m"] = features @ media_model.coef
    results = {name: (auc(labels[train], s[train]), auc(labels[validation], s[validation]))
               for name, s in scores.items()}
    report_path = Path(folder) / BRAND / "report.json"
    media_only = LogisticRegression(C=1.0 / (DEFAULT_L2 * train.sum()), max_iter=5000).fit(
        features[train], labels[train])
    facts = {"joint validation AUC": json.loads(report_path.read_text())["validation"]["auc"],
             "media-only validation AUC": auc(labels[validation], media_only.decision_function(features[validation])),
             "epochs": len(transport.gradients), "training users": int(train.sum()),
             "training positives": int(labels[train].sum()),
             "noise std": 0.0 if brand_state.label_dp is None else brand_state.label_dp.noise_std}
    return results, facts


def propensity_table(rows, epsilons, repeats, epochs):
    from bench_propensity import bank  # the propensity benchmark's bank tables (imported when measured)

    brand, media, _ = bank(rows)
    table_rows = []
    for epsilon in (NO_DP,) + tuple(epsilons):
        measured = []
        for repeat in range(repeats):
            with tempfile.TemporaryDirectory() as tmp:
                measured.append(propensity_run(Path(tmp), brand, media, epsilon, random_state=repeat, epochs=epochs))
        joint = statistics.median(m[1]["joint validation AUC"] for m in measured)
        media_only = statistics.median(m[1]["media-only validation AUC"] for m in measured)
        epochs_run = statistics.median(m[1]["epochs"] for m in measured)
        for attack in measured[0][0]:
            train_auc = statistics.median(m[0][attack][0] for m in measured)
            validation_auc = statistics.median(m[0][attack][1] for m in measured)
            table_rows.append([attack, epsilon, round(train_auc, 4), round(validation_auc, 4),
                               round(train_auc - validation_auc, 4), round(joint, 4), round(media_only, 4),
                               round(statistics.median(m[1]["noise std"] for m in measured), 2), epochs_run,
                               len(measured)])
        if epsilon == NO_DP:
            facts = measured[0][1]
    return {"title": f"Propensity: label inference by the media from its per-epoch gradients, bank marketing "
                     f"({len(media):,} matched users, {facts['training users']:,} training users, "
                     f"{facts['training positives']:,} positives)",
            "columns": ["attack", "label-DP epsilon", "attack AUC (training users)", "same score, validation users",
                        "gap", "joint model validation AUC", "media-features-only model validation AUC (central)",
                        "DP noise std (per coordinate)", "epochs run", "repeats"],
            "rows": table_rows}


def main():
    args = parse_args(__doc__.splitlines()[0])
    if not (SHARED_DATA / "public" / "bank_marketing_full.csv").is_file():
        write_results("attacks", args.out, [], ["shared data not found: nothing measured"], smoke=args.smoke)
        return
    if args.smoke:
        epsilons, propensity_rows = (1.0,), 600
        lookalike, flooding = lookalike_table(2000, epsilons, repeats=1, min_seed=20)
        propensity = propensity_table(propensity_rows, epsilons, repeats=1, epochs=2)
    else:
        epsilons, propensity_rows = LOOKALIKE_EPSILONS, PROPENSITY_ROWS
        lookalike, flooding = lookalike_table(None, epsilons, repeats=5, min_seed=100)
        propensity = propensity_table(propensity_rows, PROPENSITY_EPSILONS, repeats=3, epochs=20)
    noise = {e: round(dp.noise_multiplier(e, 1) * math.sqrt(DP_CLIP_NORM**2 + 1), 1) for e in epsilons}
    notes = [
        "Values are medians over repeats; each repeat draws another held-out (lookalike) or validation "
        "(propensity) split, and fresh masks, flooding and DP noise.",
        "Attack AUC is against the brand's true labels on the rows whose labels entered what the media "
        "received; 'same score, held-out rows' applies the same score to rows whose labels did not, so the "
        "gap is the leak about the training rows beyond what the model generalises to anyone.",
        "Lookalike runs use --include-seed (seed exclusion tells the media the seed membership of its top "
        "candidates outright, and label DP refuses it) and the single L2 candidate 1e-4 (what label DP uses; "
        "also what the default three-candidate search picks on this data), so every row compares like with like.",
        f"Lookalike flooding: the released aggregate is within {flooding:.3g} label units of the exact Xᵀy "
        "(largest coordinate over the no-DP repeats), so the 'exact Xᵀy' rows match the released ones.",
        f"Lookalike label DP: Gaussian noise of std z·sqrt(10) per coordinate for one release at (epsilon, 1e-6) "
        f"with features clipped to L2 norm {DP_CLIP_NORM:g}; std by epsilon: {noise}.",
        "'best epoch (chosen with the labels)' picks, per repeat, the epoch whose attack AUC on training users "
        "is highest: the media cannot make that choice, so it is an upper bound on a single-epoch attack.",
        "Propensity label DP: the label aggregate [X_b, 1, X_m]ᵀy over the training users is released once "
        "with Gaussian noise of std z·sqrt(19) per coordinate (both parties' rows clipped to L2 norm "
        f"{DP_CLIP_NORM:g}), every epoch's residual is label-free, and early stopping is off, so training runs "
        "all 20 epochs unless both parties' steps converge.",
        f"Propensity runs on {propensity_rows:,} sampled bank clients (the full 45,211 take about 13 minutes "
        "per run on two cores, bench_propensity.py); the attack needs only what the media opens per epoch.",
    ]
    path = write_results("attacks", args.out, [lookalike, propensity], notes, smoke=args.smoke)
    print(path.read_text())


if __name__ == "__main__":
    main()
