"""The same inputs (and, where a job draws, the same random state) give the same files."""

import filecmp

import numpy as np
import pandas as pd

import fedscore


def _tables(tmp_path, rng):
    ids = np.array([f"user{i}@example.com" for i in range(400)])
    brand = pd.DataFrame({"email": ids[:300], "spend": rng.normal(size=300).round(3),
                          "tier": rng.choice(["a", "b", "c"], size=300)})
    media = pd.DataFrame({"email": [s.upper() for s in ids[100:]], "visits": rng.poisson(3, size=300),
                          "minutes": rng.normal(size=300).round(3)})
    brand.sample(frac=1, random_state=1).to_csv(tmp_path / "brand.csv", index=False)
    media.sample(frac=1, random_state=2).to_csv(tmp_path / "media.csv", index=False)
    return tmp_path / "brand.csv", tmp_path / "media.csv"


def test_psi_writes_the_same_intersection_in_the_same_order_every_run(tmp_path):
    brand, media = _tables(tmp_path, np.random.default_rng(0))
    for run in ("first", "second"):
        fedscore.psi(brand, media, id_column="email", out=tmp_path / run)
    for role in ("brand", "media"):
        assert filecmp.cmp(tmp_path / "first" / role / "intersection.csv",
                           tmp_path / "second" / role / "intersection.csv", shallow=False)
    brand_ids = pd.read_csv(tmp_path / "first" / "brand" / "intersection.csv")["email"]
    media_ids = pd.read_csv(tmp_path / "first" / "media" / "intersection.csv")["email"]
    assert list(brand_ids.str.lower()) == list(media_ids.str.lower()) == sorted(brand_ids.str.lower())


def test_segmentation_with_a_random_state_gives_the_same_personas(tmp_path):
    brand, media = _tables(tmp_path, np.random.default_rng(1))
    for run in ("first", "second"):
        fedscore.segment(brand, media, id_column="email", k=3, n_init=2, random_state=7, out=tmp_path / run)
    for name in ("brand/segments.csv", "media/segments.csv", "brand/profiles.csv", "media/profiles.csv"):
        assert filecmp.cmp(tmp_path / "first" / name, tmp_path / "second" / name, shallow=False), name
