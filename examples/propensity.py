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

from fedscore import propensity

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
    print(f"{report['scored_users']} unlabelled clients ranked; the top 10 % (brand/top.csv):")
    print(result.top.head().to_string(index=False))
    print("brand's own weights:", dict(zip(result.brand_model.encoder.feature_names_[:4],
                                           [round(w, 3) for w in result.brand_model.coef[:4]])), "...")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("propensity-demo"))
