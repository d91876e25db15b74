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
from fedscore.scoring_horizontal import PrivacyWarning
from fedscore.segment import VerticalKMeans
from fedscore.segment_horizontal import HorizontalKMeans


def vertical():
    data = demo_data_dir()
    model = VerticalKMeans(3, id_column="uid", exclude=["y"], n_init=4, random_state=0)
    model.fit(data / "bank_brand.csv", data / "bank_media.csv")
    print(f"{len(model.ids_)} shared customers in 3 personas after {model.n_iter_} iterations "
          f"(joint inertia {model.inertia_:.0f})")
    profiles = model.profiles_["brand"].set_index("segment")
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
        model = HorizontalKMeans(3, id_column="uid", random_state=0).fit(branches)
    centroids = pd.DataFrame(model.cluster_centers_ * model.scale_ + model.mean_, columns=model.feature_names_)
    print(f"\n3 branches, {sum(len(b) for b in branches.values())} customers, {model.n_iter_} iterations; "
          "shared centroids (age, balance):")
    print(centroids.round(1))
    for name, labels in model.labels_.items():
        print(f"  {name}: segment sizes {pd.Series(labels).value_counts().sort_index().tolist()}")


if __name__ == "__main__":
    vertical()
    horizontal()
