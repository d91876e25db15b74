"""Horizontal propensity scoring: three regional branches of a bank train one model together.

The shipped brand table (UCI Bank Marketing, 4,000 customers, 1,000 of them still to score)
is dealt into three branches by customer ID. Each branch keeps its own rows; every round
it sends only an encrypted update, the coordinator adds ciphertexts, and each branch
decrypts the sum. The run is repeated with differential privacy at epsilon = 3.

Run from the repository root:  python examples/horizontal_lr.py [OUT_DIR]
"""

import sys
from pathlib import Path

import pandas as pd

from fedscore import horizontal_lr, init_keys

DATA = Path(__file__).resolve().parents[1] / "fedscore" / "data"
BRANCHES = ("lisbon", "porto", "faro")


def split_into_branches(out):
    """Write one table per branch: the same columns, disjoint customers."""
    frame = pd.read_csv(DATA / "bank_brand.csv", dtype=str, keep_default_na=False)
    files = []
    for i, branch in enumerate(BRANCHES):
        files.append(out / f"{branch}.csv")
        frame[frame["uid"].astype(int) % len(BRANCHES) == i].to_csv(files[-1], index=False)
    return files


def main(out):
    out.mkdir(parents=True, exist_ok=True)
    files = split_into_branches(out)
    keys = out / "keys"
    if not keys.exists():
        init_keys(keys, len(files))  # in a deployment: run once, give each branch its own file

    model = horizontal_lr(files, id_column="uid", label_column="y", rounds=5, out=out / "run", key_dir=keys,
                          overwrite=True)
    for branch, history in model.history.items():
        aucs = ", ".join(f"{h['validation_auc']:.3f}" for h in history)
        print(f"{branch}: validation AUC by round {aucs}")
    top = pd.Series(model.coef, index=model.feature_names).abs().sort_values(ascending=False).head(5)
    print("largest coefficients:", ", ".join(f"{name} {model.coef[model.feature_names.index(name)]:+.2f}"
                                                for name in top.index))
    scores = pd.read_csv(out / "run" / "lisbon" / "scores.csv")
    print(f"lisbon scored its {len(scores)} customers; highest: {scores['score'].max():.3f}")

    private = horizontal_lr(files, id_column="uid", label_column="y", rounds=5, dp_epsilon=3.0, out=out / "run-dp",
                            key_dir=keys, overwrite=True)
    final = {b: h[-1]["validation_auc"] for b, h in private.history.items()}
    print(f"with DP (epsilon spent {private.epsilon:.2f}): final validation AUC "
          + ", ".join(f"{b} {a:.3f}" for b, a in final.items()))
    print(f"coordinator traffic and ledger: {out / 'run' / 'ledger.jsonl'}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("horizontal-lr-demo"))
