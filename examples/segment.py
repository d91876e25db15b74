"""Persona segmentation on the bank marketing demo data shipped with fedscore.

The bank (brand) knows its customers' demographics and products; the ad platform
(media) knows how and when it reached the same people. Together they split the shared
customers into three personas without either seeing the other's columns, then each
reads the persona profiles: its own columns for every persona, the other party's only
for personas of at least 50 people.

Then the same idea horizontally: three regional branches with the same columns cluster
their customers jointly, the coordinator only adding encrypted sums.

Run: ``python examples/segment.py`` (about a minute on two cores).
"""

import warnings

import pandas as pd

from fedscore.demo import demo_data_dir
from fedscore import horizontal_kmeans, segment
from fedscore.protocols.horizontal import PrivacyWarning


def vertical():
    data = demo_data_dir()
    result = segment(data / "bank_brand.csv", data / "bank_media.csv", id_column="uid", k=3, exclude=["y"],
                     n_init=4, random_state=0)
    print(f"{len(result.ids)} shared customers in 3 personas after {result.n_iter} iterations "
          f"(joint inertia {result.inertia:.0f})")
    profiles = result.profiles["brand"].set_index("segment")
    columns = ["size", "released", "brand.age", "brand.balance", "brand.housing=yes", "media.campaign",
               "media.contact=cellular", "media.poutcome=success"]
    with pd.option_context("display.width", 200, "display.max_columns", None, "display.precision", 2):
        print("What the bank sees:")
        print(profiles[columns])


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
    vertical()
    horizontal()
