"""Rebuild the demo data shipped in ``fedscore/data/`` from the UCI Bank Marketing file.

The demo tells the story of a bank (the *brand*) and an ad platform (the *media*
party) that both know some of the same people. The source is the UCI ``bank-full.csv``
with a ``uid`` column added in front (the row number, 0-based, in UCI order); pass its
path with ``--source``. The output is the same, byte for byte, on every run.

How the files are made (see ``fedscore/data/README.md``):

1. Draw :data:`UNIVERSE` people at random (seed :data:`SEED`) from the 45,211 rows.
2. The first :data:`OVERLAP` of them are known to both parties, the next
   :data:`BRAND_ONLY` only to the brand, the last :data:`MEDIA_ONLY` only to the media.
3. The brand keeps ``age, job, marital, education, default, balance, housing, loan``
   and the label ``y``; for :data:`TO_SCORE_SHARE` of its rows, drawn at random, ``y``
   is blanked: these are the customers still to score.
4. The media keeps ``contact, day, month, campaign, pdays, previous, poutcome``.
   ``duration`` (the length of the last call) is left out: it is only known after the
   outcome (UCI's own warning).
5. The seed list is the ``uid`` of every brand row whose ``y`` is ``yes``.
6. Each file's rows are shuffled on their own, so row order says nothing about
   who is in the other file.

Usage::

    python examples/make_demo_data.py --source bank_marketing_full.csv --out fedscore/data
"""

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

SEED = 20140601
"""Fixed seed: the shipped files must be reproducible."""

OVERLAP = 3000
BRAND_ONLY = 1000
MEDIA_ONLY = 2000
UNIVERSE = OVERLAP + BRAND_ONLY + MEDIA_ONLY

TO_SCORE_SHARE = 0.25
"""Share of brand rows whose label is blanked ("customers to score")."""

BRAND_COLUMNS = ["uid", "age", "job", "marital", "education", "default", "balance", "housing", "loan", "y"]
MEDIA_COLUMNS = ["uid", "contact", "day", "month", "campaign", "pdays", "previous", "poutcome"]
SOURCE_COLUMNS = ["uid", "age", "job", "marital", "education", "default", "balance", "housing", "loan",
                  "contact", "day", "month", "duration", "campaign", "pdays", "previous", "poutcome", "y"]
SOURCE_ROWS = 45211


def make_demo_data(source):
    """Return ``(brand, media, seed)`` data frames built from the UCI file at ``source``."""
    bank = pd.read_csv(source, dtype=str, keep_default_na=False)
    if list(bank.columns) != SOURCE_COLUMNS or len(bank) != SOURCE_ROWS:
        raise SystemExit(f"{source}: expected the {SOURCE_ROWS}-row UCI bank-full file with a leading uid column")
    rng = np.random.default_rng(SEED)
    people = bank.iloc[rng.choice(len(bank), size=UNIVERSE, replace=False)].reset_index(drop=True)
    overlap = people.iloc[:OVERLAP]
    brand_only = people.iloc[OVERLAP:OVERLAP + BRAND_ONLY]
    media_only = people.iloc[OVERLAP + BRAND_ONLY:]

    brand = pd.concat([overlap, brand_only])[BRAND_COLUMNS].reset_index(drop=True)
    to_score = rng.choice(len(brand), size=int(round(TO_SCORE_SHARE * len(brand))), replace=False)
    brand.loc[to_score, "y"] = ""
    brand = brand.iloc[rng.permutation(len(brand))].reset_index(drop=True)

    media = pd.concat([overlap, media_only])[MEDIA_COLUMNS]
    media = media.iloc[rng.permutation(len(media))].reset_index(drop=True)

    seed = brand.loc[brand["y"] == "yes", ["uid"]].reset_index(drop=True)
    return brand, media, seed


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True, help="the UCI bank-full CSV with a leading uid column")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "fedscore" / "data"),
                        help="folder to write bank_brand.csv, bank_media.csv and bank_seed.csv into")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    brand, media, seed = make_demo_data(args.source)
    for name, frame in (("bank_brand.csv", brand), ("bank_media.csv", media), ("bank_seed.csv", seed)):
        frame.to_csv(out / name, index=False, lineterminator="\n")
    labelled = brand["y"] != ""
    print(f"brand: {len(brand)} rows ({labelled.sum()} labelled, {(~labelled).sum()} to score)")
    print(f"media: {len(media)} rows; both files: {len(set(brand['uid']) & set(media['uid']))} people")
    print(f"seed:  {len(seed)} brand customers who subscribed")


if __name__ == "__main__":
    main()
