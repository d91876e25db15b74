"""Joint propensity scoring on the shipped demo data (UCI Bank Marketing, split brand / media).

The bank (brand) holds demographics and the outcome of past campaigns for 4,000 clients,
1,000 of them still to score; the media holds contact and campaign behaviour for 5,000
people. They train one logistic regression on both feature sets for the 3,000 people both
know, and the bank gets a ranked list of its unscored clients without ever seeing the
media's features, weights or per-user partial scores.

Run from the repository root:  python examples/propensity.py [OUT_DIR]
"""

import sys
from pathlib import Path

import pandas as pd

from fedscore import propensity, propensity_score

DATA = Path(__file__).resolve().parents[1] / "fedscore" / "data"


def main(out):
    result = propensity(DATA / "bank_brand.csv", DATA / "bank_media.csv", id_column="uid", label_column="y",
                        out=out, top="10%", overwrite=True)
    report = result.report
    validation = report["validation"]
    print(f"{report['matched_users']} users matched; trained on {report['training_users']}, "
          f"{result.summary['epochs_run']} epochs")
    print(f"validation ({validation['users']} users): AUC {validation['auc']:.3f}, KS {validation['ks']:.3f}, "
          f"lift at 10 % {validation['lift_at_10pct']:.2f}")
    split = ", ".join(f"{count} {source}" for source, count in report["scored_by_source"].items())
    print(f"{report['scored_users']} unlabelled clients scored ({split}); the top 10 % (brand/top.csv):")
    print(result.top.head().to_string(index=False))
    print("brand's own weights:", dict(zip(result.brand_model.encoder.feature_names_[:4],
                                           [round(float(w), 3) for w in result.brand_model.coef[:4]])), "...")

    # A month later: score the clients still without an outcome with the model trained above,
    # without labels and without training again (each party reads its own half from `out`).
    brand = pd.read_csv(DATA / "bank_brand.csv")
    next_month = brand[brand["y"].isna()].drop(columns="y")
    later = propensity_score(next_month, DATA / "bank_media.csv", model=out, id_column="uid",
                             out=out.with_name(f"next-month-{out.name}"), overwrite=True)
    print(f"next month: {len(later.scores)} clients scored with the trained model, "
          f"{(later.scores['source'] == 'joint').sum()} of them by the joint model")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("propensity-demo"))
