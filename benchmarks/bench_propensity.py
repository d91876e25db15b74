"""Joint propensity: quality against central scikit-learn, sigmoid approximations, epoch cost.

Quality: bank marketing (brand = age, job, marital, education, default, balance, housing,
loan; media = contact, day, month, campaign, pdays, previous, poutcome; no ``duration``)
and FATE's default_credit hetero split (brand = guest with the label, media = host). The
federated run (local engine) is scored on the brand's validation users from the private
ranking; scikit-learn's logistic regression is trained centrally on the same training
users with the same L2 penalty on the joined features, and on the brand's features only.

Approximations: central full-batch training with the residual computed as exact
``σ(z) - y``, as the first-order Taylor ``z/4 + 1/2 - y`` and as the split-logit
linearisation the protocol uses.

Speed: one epoch on 100k users, brand 30 + media 300 features (FATE's workload shape),
synthetic, CKKS; Paillier on a subset of the rows, extrapolated linearly in rows (every
Paillier cost of an epoch is per row); and the same epoch in plaintext NumPy, the cost
without any privacy. The private ranking is Paillier with either
training backend; its cost per user (encryption at the media, scalar product and addition
at the brand, decryption at the media) is measured on its own.
"""

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.linear_model import LogisticRegression

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHARED_DATA, parse_args, write_results  # noqa: E402

from fedscore import propensity  # noqa: E402
from fedscore.kit.encoder import FeatureEncoder  # noqa: E402
from fedscore.kit.table import PartyTable  # noqa: E402
from fedscore.ledger import Ledger  # noqa: E402
from fedscore.metrics import auc  # noqa: E402
from fedscore.protocols.propensity.brand import validation_split  # noqa: E402
from fedscore.protocols.propensity.coordinator import setup, train_epoch  # noqa: E402
from fedscore.protocols.propensity.options import PropensityOptions  # noqa: E402
from fedscore.protocols.psi.coordinator import intersect  # noqa: E402
from fedscore.protocols.psi.options import PSIOptions  # noqa: E402
from fedscore.params import DEFAULT_L2  # noqa: E402
from fedscore.protocols.vertical_lr import (  # noqa: E402
    BoundOptimizer, centred_media_logit, create_key, media_quantiles, split_sigmoid,
)
from fedscore.runtime.coordinator import Coordinator  # noqa: E402
from fedscore.runtime.local import LocalTransport  # noqa: E402

RANDOM_STATE = 0
BANK_BRAND = ["age", "job", "marital", "education", "default", "balance", "housing", "loan"]
BANK_MEDIA = ["contact", "day", "month", "campaign", "pdays", "previous", "poutcome"]


def bank(rows=None):
    frame = pd.read_csv(SHARED_DATA / "public" / "bank_marketing_full.csv", dtype=str, keep_default_na=False)
    if rows:
        frame = frame.sample(rows, random_state=RANDOM_STATE)
    return frame[["uid"] + BANK_BRAND + ["y"]], frame[["uid"] + BANK_MEDIA], "uid"


def default_credit(rows=None):
    guest = pd.read_csv(SHARED_DATA / "fate" / "default_credit_hetero_guest.csv", dtype=str, keep_default_na=False)
    host = pd.read_csv(SHARED_DATA / "fate" / "default_credit_hetero_host.csv", dtype=str, keep_default_na=False)
    if rows:
        guest, host = guest.sample(rows, random_state=RANDOM_STATE), host.sample(rows, random_state=RANDOM_STATE)
    return guest, host, "id"


def central(brand, media, id_column, l2=DEFAULT_L2):
    """Central references on the protocol's own training / validation users."""
    brand, media = brand.reset_index(drop=True), media.reset_index(drop=True)
    rows = (brand[[id_column]].reset_index().merge(media[[id_column]].reset_index(), on=id_column,
                                                   suffixes=("_brand", "_media")))
    brand_columns = [c for c in brand.columns if c not in (id_column, "y")]
    media_columns = [c for c in media.columns if c != id_column]
    with tempfile.TemporaryDirectory() as tmp:
        # each party's encoder is fitted on its whole table, as in the protocol
        encoded = []
        for name, frame, columns in (("brand", brand, brand_columns), ("media", media, media_columns)):
            frame.to_csv(Path(tmp) / f"{name}.csv", index=False)
            table = PartyTable.read(Path(tmp) / f"{name}.csv", text_columns=[id_column])
            encoded.append(FeatureEncoder().fit(table, columns).transform(table, rows=rows[f"index_{name}"].to_numpy()))
    xb, xm = encoded
    joined = brand.loc[rows["index_brand"]].reset_index(drop=True)
    y = joined["y"].str.lower().isin(["1", "yes", "true", "1.0"]).to_numpy(float)
    validation = validation_split(joined[id_column].to_numpy(dtype=object), np.ones(len(y), bool), 0.2, RANDOM_STATE)
    train = ~validation
    out = {}
    for name, x in (("joint", np.hstack([xb, xm])), ("brand only", xb)):
        model = LogisticRegression(C=1.0 / (l2 * train.sum()), max_iter=5000, tol=1e-10).fit(x[train], y[train])
        out[name] = auc(y[validation], model.decision_function(x[validation]))
    out["approximations"] = approximations(xb[train], xm[train], y[train], xb[validation], xm[validation],
                                           y[validation], l2)
    return out


def approximations(xb, xm, y, vb, vm, vy, l2, epochs=100):
    """Central full-batch training (two blocks, as in the protocol) with each residual rule."""
    def exact(zb, zm):
        return expit(zb + zm)

    def taylor(zb, zm):
        return 0.25 * (zb + zm) + 0.5

    def split(zb, zm):
        quantiles = media_quantiles(zm)
        u = centred_media_logit(zm, quantiles)
        c = split_sigmoid(zb, quantiles)
        return c[:, 0] + c[:, 1] * u + c[:, 2] * u * u

    results = {}
    for name, rule in (("exact sigmoid", exact), ("Taylor z/4 + 1/2", taylor), ("split sigmoid (protocol)", split)):
        brand_opt = BoundOptimizer(xb, l2, intercept=True, blocks=2)
        media_opt = BoundOptimizer(xm, l2, blocks=2)
        design = BoundOptimizer.design(xb, True)
        for _ in range(epochs):
            zb, zm = design @ brand_opt.lookahead, xm @ media_opt.lookahead
            r = rule(zb, zm) - y
            brand_opt.step(design.T @ r / len(y))
            media_opt.step(xm.T @ r / len(y))
        score = BoundOptimizer.design(vb, True) @ brand_opt.weights_ + vm @ media_opt.weights_
        results[name] = auc(vy, score)
    return results


def quality(name, loader, rows=None, backend="ckks", paillier_key_bits=None, epochs=20):
    brand, media, id_column = loader(rows)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = propensity(brand, media, id_column=id_column, label_column="y", out=Path(tmp) / "run",
                            backend=backend, epochs=epochs, random_state=RANDOM_STATE,
                            paillier_key_bits=paillier_key_bits, min_intersection=10)
        seconds = time.perf_counter() - start
    reference = central(brand, media, id_column)
    federated = result.report["validation"]["auc"]
    return {"data": name, "backend": backend, "users": len(brand), "epochs run": result.summary["epochs_run"],
            "best epoch": result.summary["best_epoch"] + 1,
            "federated AUC": round(federated, 4), "central joint AUC": round(reference["joint"], 4),
            "difference": round(federated - reference["joint"], 4),
            "central brand-only AUC": round(reference["brand only"], 4), "seconds": round(seconds, 1)}, \
        {"data": name, **{k: round(v, 4) for k, v in reference["approximations"].items()}}


def epoch_speed(rows, brand_features, media_features, backend, paillier_key_bits=None):
    """Time one epoch (the four calls) on synthetic tables of the workload's shape."""
    rng = np.random.default_rng(RANDOM_STATE)
    ids = [f"u{i}" for i in range(rows)]
    xb = rng.standard_normal((rows, brand_features))
    xm = rng.standard_normal((rows, media_features))
    y = (rng.random(rows) < expit(xb[:, :3].sum(1) * 0.3 + xm[:, :3].sum(1) * 0.3 - 1.5)).astype(int)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        brand = pd.DataFrame(xb, columns=[f"b{j}" for j in range(brand_features)]).assign(uid=ids, y=y)
        media = pd.DataFrame(xm, columns=[f"m{j}" for j in range(media_features)]).assign(uid=ids)
        brand.to_csv(tmp / "brand.csv", index=False)
        media.to_csv(tmp / "media.csv", index=False)
        consent = {"allow_weak_keys": True} if paillier_key_bits else {}  # both parties run here
        configs = {"brand": {"data": str(tmp / "brand.csv"), "out": str(tmp), **consent},
                   "media": {"data": str(tmp / "media.csv"), "out": str(tmp), **consent}}
        coordinator = Coordinator(LocalTransport(configs), Ledger())
        options = PropensityOptions.from_dict({"id_column": "uid", "label_column": "y", "backend": backend,
                                               "paillier_key_bits": paillier_key_bits, "epochs": 2,
                                               "random_state": RANDOM_STATE})
        intersect(coordinator, PSIOptions.from_dict({"id_column": "uid", "mode": "both"}))
        logits = setup(coordinator, options)
        start = time.perf_counter()
        train_epoch(coordinator, logits)
        seconds = time.perf_counter() - start
        wire = sum(e["bytes"] for e in coordinator.ledger.entries[-8:])
    return seconds, wire


def plaintext_epoch_speed(rows, brand_features, media_features):
    """Time the same epoch in plaintext NumPy, both blocks in one place: the baseline for the encrypted epoch.

    It computes what the four calls compute, without encryption: both partial logits at
    the look-ahead weights, the media's quantiles and centred logit, the split-sigmoid
    coefficients, the residual, both gradients and both steps.
    """
    rng = np.random.default_rng(RANDOM_STATE)
    xb = rng.standard_normal((rows, brand_features))
    xm = rng.standard_normal((rows, media_features))
    y = (rng.random(rows) < expit(xb[:, :3].sum(1) * 0.3 + xm[:, :3].sum(1) * 0.3 - 1.5)).astype(float)
    brand_opt = BoundOptimizer(xb, DEFAULT_L2, intercept=True, blocks=2)
    media_opt = BoundOptimizer(xm, DEFAULT_L2, blocks=2)
    design = BoundOptimizer.design(xb, True)
    start = time.perf_counter()
    zb, zm = design @ brand_opt.lookahead, xm @ media_opt.lookahead
    quantiles = media_quantiles(zm)
    u = centred_media_logit(zm, quantiles)
    c = split_sigmoid(zb, quantiles)
    r = c[:, 0] + c[:, 1] * u + c[:, 2] * u * u - y
    brand_opt.step(design.T @ r / rows)
    media_opt.step(xm.T @ r / rows)
    return time.perf_counter() - start


def ranking_speed(users, key_bits=None):
    """Seconds per user of the private ranking's Paillier work, as the three ranking steps do it.

    One vector of ``users`` ciphertexts each way, as in the protocol: the media encrypts,
    the brand shuffles, maps ``z -> a z + b`` and re-randomises, the media releases.
    """
    rng = np.random.default_rng(RANDOM_STATE)
    media_logits, brand_logits = rng.normal(size=users), rng.normal(size=users)
    key = create_key("paillier", paillier_key_bits=key_bits, allow_weak_key=key_bits is not None)
    key.encrypt([0.0])  # the key's fixed-base table, built once per key, is not a per-user cost
    start = time.perf_counter()
    blob = key.encrypt(media_logits).to_bytes()
    order = rng.permutation(users)
    masked = (key.load_vector(blob).take(order) * 1000.0 + (1000.0 * brand_logits[order] + 12345.0)).to_bytes()
    key.decrypt_release(key.load_vector(masked), 2.0**25)
    return (time.perf_counter() - start) / users


QUALITY_TITLES = ("Validation AUC: federated vs central scikit-learn on the same users",
                  "Residual rule, central full-batch training (validation AUC)")


def kept_quality(out):
    """The quality tables of the result file at hand and a note saying when they were measured (``--speed-only``)."""
    path = Path(out) / "propensity.json"
    if not path.is_file():
        return [], ["quality tables: no earlier result to keep (--speed-only)"]
    earlier = json.loads(path.read_text())
    kept = [table for table in earlier["tables"] if table["title"] in QUALITY_TITLES]
    return kept, [f"Quality tables: measured on {earlier['date']} and kept (this run re-measured speed only, "
                  "--speed-only); bench_quality.py measures every capability's quality at today's defaults."]


def main():
    def extra(parser):
        parser.add_argument("--speed-only", action="store_true",
                            help="re-measure the epoch and ranking speed; keep the quality tables of the result "
                                 "file at hand")

    args = parse_args(__doc__.splitlines()[0], extra=extra)
    tables, notes = [], []
    if args.speed_only and not args.smoke:
        tables, notes = kept_quality(args.out)
    elif (SHARED_DATA / "public").is_dir() and (SHARED_DATA / "fate").is_dir():
        if args.smoke:
            runs = [quality("bank marketing", bank, 1500, epochs=5),
                    quality("bank marketing", bank, 400, backend="paillier", paillier_key_bits=1024, epochs=3)]
        else:
            runs = [quality("bank marketing", bank), quality("default_credit", default_credit)]
        rows = [r for r, _ in runs]
        tables.append({"title": QUALITY_TITLES[0],
                       "columns": list(rows[0]), "rows": [list(r.values()) for r in rows]})
        approx = [a for _, a in runs]
        tables.append({"title": QUALITY_TITLES[1],
                       "columns": list(approx[0]), "rows": [list(a.values()) for a in approx]})
    else:
        notes.append("shared data not found: quality tables skipped")
    if args.smoke:
        speed = [("ckks", 2000, 5, 20, None, 1), ("paillier", 100, 5, 20, 1024, 1)]
    else:
        speed = [("ckks", 100_000, 30, 300, None, 1), ("paillier", 500, 30, 300, None, 200)]
    rows = []
    for backend, n, db, dm, bits, factor in speed:
        seconds, wire = epoch_speed(n, db, dm, backend, bits)
        rows.append([backend, n, f"{db} + {dm}", round(seconds, 1), round(seconds * factor, 1),
                     round(wire * factor / 1e6, 1)])
    n, db, dm = speed[0][1:4]
    plain = statistics.median(plaintext_epoch_speed(n, db, dm) for _ in range(3))
    rows.append(["numpy (plaintext, no privacy)", n, f"{db} + {dm}", round(plain, 3), round(plain * 100_000 / n, 3),
                 0.0])
    tables.append({"title": "One epoch (seconds), synthetic, brand + media features",
                   "columns": ["backend", "rows measured", "features", "seconds measured",
                               "seconds for 100k rows", "MB on the wire for 100k rows"], "rows": rows})
    users, bits = (20, 1024) if args.smoke else (2000, None)
    per_user = ranking_speed(users, bits)
    tables.append({"title": "Private ranking (Paillier, either training backend)",
                   "columns": ["key bits", "users measured", "ms per user", "minutes for 100k users"],
                   "rows": [[bits or 3072, users, round(per_user * 1e3, 1), round(per_user * 1e5 / 60, 1)]]})
    notes += [
        "Paillier: measured on a subset of rows and extrapolated linearly to 100k; 3072-bit keys in the full run. "
        "Encryptions and decryptions cost the same per row at any size, products less as rows grow (the bucket "
        "method's windows widen), so the 100k figure is an upper bound.",
        "Measured on a 2-core machine shared with other jobs at the same time: wall-clock times are upper bounds.",
        "Local engine: no network latency; in a Flower deployment an epoch adds 4 exchanges of 3.5-5.5 s each "
        "(bench_deployment.py).",
        "Private ranking: one encryption, one scalar multiplication and addition, one re-randomisation and one "
        "decryption per user, each a vector of all users as in the protocol (encryption and decryption on every "
        "core).",
        "Training stops at the epoch limit, when both parties' steps are tiny, or by early stopping on the "
        "validation Brier score (patience 3); 'epochs run' counts the epochs trained.",
    ]
    path = write_results("propensity", args.out, tables, notes, smoke=args.smoke)
    print(path.read_text())


if __name__ == "__main__":
    main()
