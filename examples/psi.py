"""Private ID matching on the shipped demo data (UCI Bank Marketing, split brand / media).

The bank (brand) and the ad platform (media) each hold a table keyed by ``uid``. They
learn which people they have in common, in one shared row order, without showing each
other anyone else: IDs are hashed onto Curve25519 and blinded by each party's secret
scalar, and only double-blinded values are compared. Then the labelled mode, which the
hidden-seed lookalike uses: the brand learns which of the media's rows are its own, the
media learns nothing about which of its users matched.

Run from the repository root:  python examples/psi.py [OUT_DIR]
"""

import sys
from pathlib import Path

import fedscore
from fedscore.demo import demo_data_dir


def main(out):
    data = demo_data_dir()
    both = fedscore.psi(data / "bank_brand.csv", data / "bank_media.csv", id_column="uid", out=out / "both",
                        overwrite=True)
    counts = {role: both.summary[role]["unique"] for role in ("brand", "media")}
    print(f"brand {counts['brand']:,} IDs, media {counts['media']:,} IDs: "
          f"{both.summary['intersection']:,} in common, the same order at both parties")
    print("first matched IDs at the brand:", ", ".join(both.brand["uid"].head().tolist()))
    print("first matched IDs at the media:", ", ".join(both.media["uid"].head().tolist()))

    labelled = fedscore.psi(data / "bank_seed.csv", data / "bank_media.csv", id_column="uid",
                            out=out / "labelled", mode="labelled", overwrite=True)
    flags = labelled.brand["matched"]
    print(f"labelled mode: the brand holds {len(flags):,} match flags in the media's row order, "
          f"{int(flags.sum()):,} of them set; the media holds none")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("psi-demo"))
