"""Persona segmentation: federated KMeans against centralised scikit-learn, and its speed.

Target (issue "Persona segmentation", BRIEF.md): adjusted Rand index >= 0.95 between the
federated segments and scikit-learn's ``KMeans`` started from the same initial
centroids, inertia within 1 %, for

- vertical (brand + media): UCI wholesale customers with the data README's suggested
  split (brand ``Region, Fresh, Milk, Grocery``; media ``Frozen, Detergents_Paper,
  Delicassen``; ``Channel`` left out); FATE's ``vehicle_scale``, ``breast`` and
  ``default_credit`` hetero guest/host splits (``y`` left out); UCI bank marketing
  (brand = demographic and financial columns, media = contact and campaign columns);
- horizontal: the same tables' rows (FATE's homo files pooled; bank marketing's numeric
  columns) dealt at random into 3 and 10 parties.

The centralised reference sees the joined table exactly as the parties encode it (each
party standardises its own columns on the shared users, rare values merged and outliers
limited as by default, in the vertical case; pooled statistics in the horizontal case, whose
runs here opt out of the outlier limits: each party winsorises at its own quantiles, which
a pooled reference cannot reproduce, and bench_quality compares the defaults on the same
encoding) and starts from the centroids the federated run
started from: ``KMeans(init=..., n_init=1)``.

Speed: seconds per Lloyd iteration with all parties in one process (the compute and
encryption cost; a deployment adds three message hops per vertical iteration and one
per horizontal iteration, 3-6 s each on Flower's SuperLink), and on the 45,211 users of
UCI bank marketing for the vertical protocol.

Run: ``python benchmarks/bench_segment.py`` (``--smoke`` for a tiny run).
"""

import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from _common import SHARED_DATA, parse_args, write_results
from bench_propensity import BANK_BRAND, BANK_MEDIA
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

from fedscore import horizontal_kmeans, segment
from fedscore.kit.encoder import FeatureEncoder
from fedscore.kit.options import MIN_CATEGORY_COUNT, OUTLIER_QUANTILE
from fedscore.kit.table import PartyTable
from fedscore.protocols.horizontal import PrivacyWarning

BANK_NUMERIC = ["age", "balance", "day", "campaign", "pdays", "previous"]
"""Bank marketing's numeric columns (no ``duration``): horizontal KMeans takes numbers only."""
ARI_TARGET = 0.95
INERTIA_TOLERANCE = 0.01


def _vertical_cases(smoke):
    """(name, brand, media, ID column, k, excluded columns, restarts) per data set."""
    public, fate = SHARED_DATA / "public", SHARED_DATA / "fate"
    wholesale = pd.read_csv(public / "wholesale_customers.csv", dtype=str)
    cases = [("wholesale customers", wholesale[["uid", "Region", "Fresh", "Milk", "Grocery"]],
              wholesale[["uid", "Frozen", "Detergents_Paper", "Delicassen"]], "uid", 3, [], 2 if smoke else 10)]
    if not smoke:
        for name, data, k, restarts in (("FATE vehicle (hetero)", "vehicle_scale", 4, 10),
                                        ("FATE breast (hetero)", "breast", 2, 10),
                                        ("FATE default_credit (hetero)", "default_credit", 4, 3)):
            guest = pd.read_csv(fate / f"{data}_hetero_guest.csv", dtype=str)
            host = pd.read_csv(fate / f"{data}_hetero_host.csv", dtype=str)
            cases.append((name, guest, host, "id", k, ["y"], restarts))
        bank = pd.read_csv(public / "bank_marketing_full.csv", dtype=str)
        cases.append(("bank marketing", bank[["uid"] + BANK_BRAND], bank[["uid"] + BANK_MEDIA], "uid", 4, [], 3))
    return cases


def _joint_features(brand, media, id_column, ids, exclude, work):
    """Each party's columns of the shared users ``ids``, encoded as the party encodes them, side by side."""
    blocks = []
    for name, frame in (("brand", brand), ("media", media)):
        frame.to_csv(work / f"{name}.csv", index=False)
        table = PartyTable.read(work / f"{name}.csv", required=[id_column], text_columns=[id_column])
        position = {uid: row for row, uid in enumerate(table.ids(id_column))}
        rows = np.array([position[uid] for uid in ids])
        columns = table.feature_columns(exclude=[id_column, *exclude])
        encoder = FeatureEncoder(min_category_count=MIN_CATEGORY_COUNT, outlier_quantile=OUTLIER_QUANTILE)
        blocks.append(encoder.fit_transform(table, columns, rows=rows))
    return np.hstack(blocks)


def _compare(X, init, labels, inertia, k):
    reference = KMeans(k, init=init, n_init=1, max_iter=300).fit(X)
    ari = adjusted_rand_score(reference.labels_, labels)
    gap = abs(inertia - reference.inertia_) / reference.inertia_
    return ari, gap, reference


def vertical(smoke, work):
    rows = []
    for name, brand, media, id_column, k, exclude, restarts in _vertical_cases(smoke):
        started = time.perf_counter()
        result = segment(brand, media, id_column=id_column, k=k, exclude=exclude, n_init=restarts, random_state=0)
        seconds = time.perf_counter() - started
        X = _joint_features(brand, media, id_column, result.ids, exclude, work)
        ari, gap, reference = _compare(X, X[result.init_rows], result.labels, result.inertia, k)
        rows.append([name, len(result.ids), X.shape[1], k, result.n_iter, reference.n_iter_, round(ari, 4),
                     round(100 * gap, 5), bool(ari >= ARI_TARGET and gap <= INERTIA_TOLERANCE),
                     result.summary["seconds_per_iteration"], round(seconds, 2)])
    return rows


def _horizontal_cases(smoke):
    public, fate = SHARED_DATA / "public", SHARED_DATA / "fate"
    wholesale = pd.read_csv(public / "wholesale_customers.csv").drop(columns=["Channel", "Region"])
    cases = [("wholesale customers", wholesale, "uid", 3)]
    if not smoke:
        for name, parts, k in (("FATE vehicle (homo guest + host)", ("vehicle_scale", "guest", "host"), 4),
                               ("FATE breast (homo guest + host)", ("breast", "guest", "host"), 2),
                               ("FATE default_credit (homo guest + hosts)",
                                ("default_credit", "guest", "host_1", "host_2"), 4)):
            data, *files = parts
            table = pd.concat([pd.read_csv(fate / f"{data}_homo_{part}.csv") for part in files])
            cases.append((name, table.drop(columns=["y"]), "id", k))
        bank = pd.read_csv(public / "bank_marketing_full.csv")
        cases.append(("bank marketing (numeric columns)", bank[["uid"] + BANK_NUMERIC], "uid", 4))
    return cases


def horizontal(smoke, work):
    rows = []
    for name, table, id_column, k in _horizontal_cases(smoke):
        for n_parties in ((3,) if smoke else (3, 10)):
            shuffled = table.sample(frac=1, random_state=0)
            parties = {f"party{p}": shuffled.iloc[p::n_parties] for p in range(n_parties)}
            # default settings (each party's proposal threshold scales with its row count), but for the
            # outlier limits: each party winsorises at its own quantiles, which the pooled reference
            # below cannot reproduce; bench_quality compares the defaults on the same encoding
            started = time.perf_counter()
            result = horizontal_kmeans(parties, id_column=id_column, k=k, random_state=0, outlier_quantile=None,
                                       min_category_count=None)
            seconds = time.perf_counter() - started
            pooled = pd.concat(parties.values())
            X = (pooled.drop(columns=[id_column]).to_numpy(dtype=float) - result.mean) / result.scale
            labels = np.concatenate([result.labels[p] for p in parties])
            inertia = float(((X - result.cluster_centers[labels]) ** 2).sum())
            ari, gap, reference = _compare(X, result.init_centers, labels, inertia, k)
            rows.append([name, n_parties, len(X), X.shape[1], k, result.n_iter, reference.n_iter_, round(ari, 4),
                         round(100 * gap, 5), bool(ari >= ARI_TARGET and gap <= INERTIA_TOLERANCE),
                         result.summary["seconds_per_iteration"], round(seconds, 2)])
    return rows


def scale(smoke, work):
    """Seconds per vertical iteration on the 45,211 users of bank marketing (k = 4, one restart)."""
    bank = pd.read_csv(SHARED_DATA / "public" / "bank_marketing_full.csv", dtype=str)
    if smoke:
        bank = bank.sample(2000, random_state=0)
    brand, media = bank[["uid"] + BANK_BRAND], bank[["uid"] + BANK_MEDIA]
    started = time.perf_counter()
    result = segment(brand, media, id_column="uid", k=4, n_init=1, max_iter=3 if smoke else 5, random_state=0)
    return [[len(result.ids), len(result.feature_names), 4, result.n_iter,
             result.summary["seconds_per_iteration"], round(time.perf_counter() - started, 1)]]


def main():
    args = parse_args("Federated KMeans (vertical and horizontal) against centralised scikit-learn.")
    if not SHARED_DATA.is_dir():
        raise SystemExit(f"benchmark data not found at {SHARED_DATA}: nothing to measure")
    with tempfile.TemporaryDirectory() as work, warnings.catch_warnings():
        warnings.simplefilter("ignore", PrivacyWarning)
        work = Path(work)
        vertical_rows = vertical(args.smoke, work)
        horizontal_rows = horizontal(args.smoke, work)
        scale_rows = scale(args.smoke, work)
    tables = [
        {"title": "Vertical KMeans (brand + media) vs scikit-learn from the same initial centroids",
         "columns": ["data", "shared users", "features", "k", "iterations", "sklearn iterations", "ARI",
                     "inertia gap %", "target met", "s / iteration", "total s"],
         "rows": vertical_rows},
        {"title": "Horizontal KMeans (N parties) vs scikit-learn on the pooled rows from the same initial centroids",
         "columns": ["data", "parties", "rows", "features", "k", "iterations", "sklearn iterations", "ARI",
                     "inertia gap %", "target met", "s / iteration", "total s"],
         "rows": horizontal_rows},
        {"title": "Vertical KMeans at scale: UCI bank marketing, one restart",
         "columns": ["shared users", "features", "k", "iterations", "s / iteration", "total s (incl. PSI)"],
         "rows": scale_rows},
    ]
    notes = [
        f"Target: ARI >= {ARI_TARGET} and inertia within {100 * INERTIA_TOLERANCE:g} % of scikit-learn's KMeans "
        "started from the federated run's initial centroids (n_init = 1).",
        "Vertical: n_init = 10 restarts from random shared users run side by side for restart_iter = 10 "
        "iterations, then only the one of least joint inertia goes on; that restart is compared. Horizontal: "
        "initial centroids from a weighted k-means++ over the parties' local cluster centroids (default "
        "threshold: local clusters of at least rows / 2k rows, between 10 and 50).",
        "s / iteration: all parties in one process (local engine): CKKS encryption, masking, decryption and "
        "sealing. A Flower deployment adds 3 hops per vertical iteration and 1 per horizontal iteration.",
    ]
    print(write_results("segment", args.out, tables, notes, smoke=args.smoke))
    for table in tables:
        print(table["title"])
        print("  " + " | ".join(table["columns"]))
        for row in table["rows"]:
            print("  " + " | ".join(str(v) for v in row))


if __name__ == "__main__":
    main()
