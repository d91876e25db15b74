"""Hidden-seed lookalike on the shipped demo data (UCI Bank Marketing, split brand / media).

The brand's seed list is the 324 customers who subscribed; the media holds contact and
campaign behaviour for 5,000 people. The media ends with scores for its whole audience
and audiences of 1 %, 5 % and 10 %, without learning who is in the seed; the brand ends
with an aggregate report.

Run from the repository root:  python examples/lookalike.py [OUT_DIR]
"""

import json
import sys
from pathlib import Path

from fedscore import lookalike

DATA = Path(__file__).resolve().parents[1] / "fedscore" / "data"


def main(out):
    result = lookalike(DATA / "bank_seed.csv", DATA / "bank_media.csv", id_column="uid", out=out,
                       audience_sizes="1%,5%,10%", overwrite=True)
    report = result.report
    print(f"seed {report['seed_size']} IDs, {report['matched_seed']} found at the media "
          f"({report['media_rows']} users)")
    print(f"held-out AUC (computed by the brand from encrypted aggregates): {report['holdout']['auc']:.3f}")
    for audience in report["holdout"]["audiences"]:
        print(f"  top {audience['size']:>6}: recall {audience['recall']:.2f}, precision {audience['precision']:.2f}")
    print("media's top of the 1 % audience:")
    print(result.audiences["1pct"].head().to_string(index=False))
    print("public ID counts:", json.dumps({k: v for k, v in result.summary["psi"].items() if k != "mode"}))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("lookalike-demo"))
