"""Persona segmentation on the bank marketing demo data shipped with fedscore.

The bank (brand) knows its customers' demographics and products; the ad platform
(media) knows how and when it reached the same people. Together they split the shared
customers into three personas without either seeing the other's columns, then each
reads the persona profiles: its own columns for every persona, the other party's only
for personas of at least 50 people. Later, customers of newer files are put into the same
personas with the saved model halves, without training again.

Then the same idea horizontally: three regional branches with the same columns cluster
their customers jointly, the coordinator only adding encrypted sums.

Run: ``python examples/segment.py`` (about a minute on two cores).
"""

import tempfile
import warnings
from pathlib import Path

import pandas as pd

from fedscore.demo import demo_data_dir
from fedscore import horizontal_kmeans, segment, segment_assign
from fedscore.protocols.horizontal import PrivacyWarning


def vertical(folder):
    data = demo_data_dir()
    result = segment(data / "bank_brand.csv", data / "bank_media.csv", id_column="uid", k=3, exclude=["y"],
                     n_init=4, random_state=0, out=folder / "personas")
    print(f"{len(result.ids)} shared customers in 3 personas after {result.n_iter} iterations "
          f"(joint inertia {result.inertia:.0f})")
    profiles = result.profiles["brand"].set_index("segment")
    columns = ["size", "released", "brand.age", "brand.balance", "brand.housing=yes", "media.campaign",
               "media.contact=cellular", "media.poutcome=success"]
    with pd.option_context("display.width", 200, "display.max_columns", None, "display.precision", 2):
        print("What the bank sees:")
        print(profiles[columns])
    return result


def later(trained):
    """A later export (here: half of the bank's customers) into the trained personas; each party reads its own half."""
    data = demo_data_dir()
    brand = pd.read_csv(data / "bank_brand.csv", dtype={"uid": str}).sample(frac=0.5, random_state=1)
    assigned = segment_assign(brand, data / "bank_media.csv", model=trained.out, id_column="uid")
    same = pd.Series(trained.labels, index=trained.ids).loc[assigned.ids].to_numpy() == assigned.labels
    print(f"\nLater: {len(assigned.ids)} customers put into the 3 personas without training; "
          f"{same.mean():.0%} in the persona training gave them")


def horizontal():
    brand = pd.read_csv(demo_data_dir() / "bank_brand.csv")
    numeric = brand[["uid", "age", "balance"]]
    branches = {name: numeric.iloc[i::3] for i, name in enumerate(("north", "centre", "south"))}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PrivacyWarning)
        result = horizontal_kmeans(branches, id_column="uid", k=3, random_state=0)
    centroids = pd.DataFrame(result.cluster_centers * result.scale + result.mean, columns=result.feature_names)
    print(f"\n3 branches, {sum(len(b) for b in branches.values())} customers, {result.n_iter} iterations; "
          "shared centroids (age, balance):")
    print(centroids.round(1))
    for name, labels in result.labels.items():
        print(f"  {name}: segment sizes {pd.Series(labels).value_counts().sort_index().tolist()}")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as scratch:
        later(vertical(Path(scratch)))
    horizontal()
