"""Propensity: every customer scored, the joint model's ranks and the brand's own model merged into one ranking.

Data: bank marketing (UCI, without ``duration``), split as the demo splits it
(``fedscore/data/README.md``), at three times the demo's size: per draw, 18,000 people at
random, 9,000 in both files, 3,000 in the brand's file only and 6,000 in the media's file
only; brand = demographic and financial columns and the label ``y``, media = contact and
campaign columns (``bench_propensity.py``'s split). The label of a random quarter of the
brand's rows is blanked: these 3,000 test users (about 2,250 matched, 750 not) are the
brand's users to score, whose labels the benchmark keeps to measure the ranking.

Each draw runs ``fedscore propensity`` (local engine, default options) and reads
``brand/scores.csv``: every user to score once, ``score`` a calibrated probability,
``source`` joint or brand only. AUC over the test users:

- **merged**: the merged ranking, over all test users (what the brand now receives);
- **joint only**: the joint model's ranking over the matched test users (what it received
  before: the unmatched were left out);
- **brand only**: the brand's own model over all test users (what it could do without the
  media), and over the matched test users;
- **naive merge**: both sources merged by their own percentile among the test users, no
  calibration (what calibration buys).

The brand-only scores of matched test users are not in ``scores.csv`` (those users are
scored by the joint model); the script refits the same brand-only model as the protocol
(same rows, encoder, penalty and held-out users) and checks that it orders the unmatched
test users exactly as ``scores.csv`` does. Medians over five draws.

Three scenarios: the demo's random split (matched and unmatched customers convert alike); a
shifted one where half the positives are left out of the people in the brand's file only,
so that the customers the media does not know convert about half as often (a ranking that
interleaves the two sources by their own percentiles cannot see that; calibrated
probabilities can); and the random split with label DP off (the default runs with it).

Run: ``python benchmarks/bench_every_customer.py`` (``--smoke`` for a tiny run).
"""

import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHARED_DATA, parse_args, write_results  # noqa: E402

from fedscore import propensity  # noqa: E402
from fedscore.kit.table import PartyTable  # noqa: E402
from fedscore.metrics import auc  # noqa: E402
from fedscore.protocols.propensity.brand import validation_split  # noqa: E402
from fedscore.protocols.propensity.options import PropensityOptions  # noqa: E402
from fedscore.protocols.vertical_lr import BoundOptimizer, fit_from_aggregate  # noqa: E402

BANK_BRAND = ["age", "job", "marital", "education", "default", "balance", "housing", "loan"]
BANK_MEDIA = ["contact", "day", "month", "campaign", "pdays", "previous", "poutcome"]
ID, LABEL = "uid", "y"
SIZES = {"both": 9000, "brand": 3000, "media": 6000}
"""People per draw: in both files, in the brand's only, in the media's only (the demo's shape, times three)."""
SMOKE_SIZES = {"both": 900, "brand": 300, "media": 600}
TEST_SHARE = 0.25
"""Share of the brand's rows whose label is blanked (the demo blanks 25 %)."""
DRAWS = (0, 1, 2, 3, 4)
SCENARIOS = (("random split, default options", 1.0, {}),
             ("shifted: half the positives left out of the brand-only people, default options", 0.5, {}),
             ("random split, label DP off", 1.0, {"label_dp_epsilon": float("inf")}))
"""The demo's random split, where matched and unmatched customers convert alike; one where
the customers the media does not know convert about half as often (there the two sources'
scores must be on one scale to interleave them right); and the random split without label
DP, whose noise costs the joint model a little."""
RANKING_KEY_BITS = 1024
"""The private ranking's Paillier key: exact integer arithmetic, so the ranks (and every AUC
here) are the same with any key length; 1024 bits only makes the runs faster."""


def split(frame, sizes, seed, unmatched_positives=1.0):
    """Brand and media tables of one draw, and the blanked labels of the brand's test users.

    ``unmatched_positives`` < 1 keeps only that share of the positives among the people
    drawn for the brand's file only: the customers the media does not know then convert
    less often than the others (the *shifted* scenario).
    """
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(frame))
    both, rest = order[:sizes["both"]], order[sizes["both"]:]
    positive = (frame[LABEL].str.lower() == "yes").to_numpy()[rest]
    kept = ~positive | (rng.random(len(rest)) < unmatched_positives)
    brand_only = rest[kept][:sizes["brand"]]
    media_only = np.setdiff1d(rest, brand_only, assume_unique=True)[:sizes["media"]]
    brand = frame.iloc[np.r_[both, brand_only]][[ID] + BANK_BRAND + [LABEL]].copy()
    media = frame.iloc[np.r_[both, media_only]][[ID] + BANK_MEDIA]
    test = rng.random(len(brand)) < TEST_SHARE
    truth = pd.Series((brand[LABEL].str.lower() == "yes").to_numpy(float)[test], index=brand[ID].to_numpy()[test])
    brand.loc[test, LABEL] = ""
    return (brand.sample(frac=1, random_state=seed), media.sample(frac=1, random_state=seed),
            truth, set(frame[ID].iloc[both]))


def brand_only_logits(brand, matched, options, tmp):
    """The protocol's brand-only model, refitted here: logit of every brand row, by ID."""
    path = Path(tmp) / "brand.csv"
    brand.to_csv(path, index=False)
    table = PartyTable.read(path, required=[ID, LABEL], text_columns=[ID, LABEL])
    ids = table.ids(ID)
    labels = table.labels(LABEL)
    labelled = ~np.isnan(labels)
    is_matched = np.isin(ids.astype(str), list(matched))
    rows = np.flatnonzero(is_matched)
    joint_validation = np.zeros(len(ids), dtype=bool)
    joint_validation[rows[validation_split(ids[rows], labelled[rows], options.validation_fraction,
                                           options.random_state)]] = True
    held_out = joint_validation | validation_split(ids, labelled & ~is_matched, options.validation_fraction,
                                                   options.random_state)
    train = labelled & ~held_out
    features = options.encoder(path).fit(table, table.feature_columns(exclude=(ID, LABEL))).transform(table)
    y = labels[train]
    weights, _ = fit_from_aggregate(features[train], np.append(features[train].T @ y, y.sum()), options.l2)
    return pd.Series(BoundOptimizer.design(features, True) @ weights, index=ids.astype(str))


def percentile(values):
    return pd.Series(values).rank(pct=True).to_numpy()


def draw(frame, sizes, seed, epochs, unmatched_positives=1.0, extra=None):
    brand, media, truth, matched = split(frame, sizes, seed, unmatched_positives)
    options = {"id_column": ID, "label_column": LABEL, "random_state": seed, "epochs": epochs,
               "paillier_key_bits": RANKING_KEY_BITS, **(extra or {})}
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        result = propensity(brand, media, out=Path(tmp) / "run", **options)
        seconds = time.perf_counter() - start
        own = brand_only_logits(brand, matched, PropensityOptions.from_dict(options), tmp)
    scores = result.scores.set_index(ID)
    if set(scores.index) != set(truth.index) or scores.index.has_duplicates:
        raise AssertionError("scores.csv does not hold every user to score exactly once")
    y = truth.loc[scores.index].to_numpy()
    joint = (scores["source"] == "joint").to_numpy()
    unmatched = scores.index[~joint]
    agreement = spearmanr(scores.loc[unmatched, "score"], own.loc[unmatched]).statistic
    if not agreement > 0.9999:
        raise AssertionError(f"the refitted brand-only model orders the unmatched users differently ({agreement})")
    own_score = own.loc[scores.index].to_numpy()
    naive = np.empty(len(scores))
    naive[joint], naive[~joint] = percentile(scores["score"][joint]), percentile(scores["score"][~joint])
    report = result.report
    mean_score = scores.groupby("source")["score"].mean()
    rate = pd.Series(y, index=scores.index).groupby(scores["source"]).mean()
    return {
        "draw": seed, "test users": len(scores), "matched": int(joint.sum()), "not matched": int((~joint).sum()),
        "positives": int(y.sum()),
        "merged AUC": auc(y, scores["score"].to_numpy()),
        "joint-only AUC (matched)": auc(y[joint], scores["score"][joint].to_numpy()),
        "brand-only AUC (all)": auc(y, own_score),
        "brand-only AUC (matched)": auc(y[joint], own_score[joint]),
        "naive merge AUC (all)": auc(y, naive),
        "joint validation AUC": report["validation"]["auc"],
        "brand-only validation AUC": report["brand_only"]["validation"]["auc"],
        "mean score / rate, joint": f"{mean_score['joint']:.3f} / {rate['joint']:.3f}",
        "mean score / rate, brand only": f"{mean_score['brand only']:.3f} / {rate['brand only']:.3f}",
        "label DP epsilon": "off" if report["label_dp"] is None else report["label_dp"]["epsilon"],
        "seconds": seconds,
    }


def main():
    args = parse_args(__doc__.splitlines()[0])
    source = SHARED_DATA / "public" / "bank_marketing_full.csv"
    if not source.is_file():
        write_results("every_customer", args.out, [], ["shared data not found: nothing measured"], smoke=args.smoke)
        return
    frame = pd.read_csv(source, dtype=str, keep_default_na=False)
    sizes, draws, epochs = (SMOKE_SIZES, DRAWS[:1], 3) if args.smoke else (SIZES, DRAWS, 20)
    tables = []
    for title, share, extra in SCENARIOS:
        rows = [draw(frame, sizes, seed, epochs, share, extra) for seed in draws]
        columns = list(rows[0])
        table = [[round(v, 4) if isinstance(v, float) else v for v in row.values()] for row in rows]
        median = ["median"] + [round(statistics.median(r[c] for r in rows), 4)
                               if all(isinstance(r[c], (int, float)) and not isinstance(r[c], bool) for r in rows)
                               else ""
                               for c in columns[1:]]
        tables.append({"title": f"AUC over the brand's test users (labels blanked, kept by the benchmark): {title}",
                       "columns": columns, "rows": table + ([median] if len(rows) > 1 else [])})
    notes = [
        f"Per draw: {sizes['both']:,} people in both files, {sizes['brand']:,} in the brand's only, "
        f"{sizes['media']:,} in the media's only, drawn at random from bank marketing; the labels of a random "
        f"{TEST_SHARE:.0%} of the brand's rows blanked (the test users); default options, {epochs} epochs at most. "
        "Shifted: among the people drawn for the brand's file only, each positive is kept with probability 1/2.",
        "merged: scores.csv as written, every test user; joint only: the matched test users by their joint score; "
        "brand only: the brand's own model (refitted as the protocol fits it) over all / the matched test users; "
        "naive merge: each source's percentile among the test users, no calibration.",
        "Calibration: Platt scaling of each source's score on held-out labelled users the brand holds (joint: the "
        "joint model's validation users, from their ranks; brand only: its held-out users). 'mean score / rate' "
        "compares each source's mean calibrated probability with the positive rate of its test users.",
        f"Private ranking with {RANKING_KEY_BITS}-bit Paillier keys: the ranks are exact, so the AUCs are those of "
        "3072-bit keys; only the seconds differ.",
        "Measured on a 2-core machine shared with other jobs at the same time: seconds are upper bounds.",
    ]
    path = write_results("every_customer", args.out, tables, notes, smoke=args.smoke)
    print(path.read_text())


if __name__ == "__main__":
    main()
