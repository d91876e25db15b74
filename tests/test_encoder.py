"""The feature encoder on typed columns: statistics, one-hot, rare categories, winsorising, round trips."""

import json

import numpy as np
import pandas as pd
import pytest

from fedscore.errors import InputError
from fedscore.kit.encoder import OTHER, FeatureEncoder
from fedscore.kit.table import PartyTable, iter_chunks


def table_of(tmp_path, text, name="t.csv"):
    path = tmp_path / name
    path.write_text(text)
    return PartyTable.read(path, text_columns=["id"])


def test_encoder_round_trips_through_dict(tmp_path):
    table = table_of(tmp_path, "id,a,b\n1,1,x\n2,2,y\n3,4,x\n")
    enc = FeatureEncoder(table.path).fit(table, ["a", "b"])
    again = FeatureEncoder.from_dict(json.loads(json.dumps(enc.to_dict())))
    np.testing.assert_array_equal(enc.transform(table), again.transform(table))
    assert again.feature_names_ == ["a", "b=x", "b=y"]


def test_standardised_by_mean_and_population_std(tmp_path):
    table = table_of(tmp_path, "id,a,b\n1,1,x\n2,2,y\n3,6,x\n")
    enc = FeatureEncoder().fit(table, ["a", "b"])
    assert enc.means_ == {"a": 3.0} and enc.scales_["a"] == pytest.approx(np.std([1, 2, 6]))
    np.testing.assert_allclose(enc.transform(table), [[(1 - 3) / np.std([1, 2, 6]), 1, 0],
                                                      [(2 - 3) / np.std([1, 2, 6]), 0, 1],
                                                      [(6 - 3) / np.std([1, 2, 6]), 1, 0]])


def test_fitting_on_some_rows_names_the_files_rows(tmp_path):
    table = table_of(tmp_path, "id,a\n1,1\n2,abc\n3,3\n4,\n5,5\n")
    rows = np.array([0, 2, 4])
    enc = FeatureEncoder().fit(table, ["a"], rows=rows)
    np.testing.assert_allclose(enc.transform(table, rows)[:, 0], (np.array([1, 3, 5]) - 3) / np.std([1, 3, 5]))
    with pytest.raises(InputError, match="column 'a', row 5: empty value"):
        FeatureEncoder().fit(table, ["a"], rows=[0, 3, 4])
    with pytest.raises(InputError, match="column 'a', row 3: value 'abc' is not a finite number"):
        enc.transform(table)


def test_a_column_numeric_on_the_fitted_rows_is_numeric(tmp_path):
    table = table_of(tmp_path, "id,a\n1,1\n2,x\n3,3\n")
    assert FeatureEncoder().fit(table, ["a"], rows=[0, 2]).feature_names_ == ["a"]
    with pytest.raises(InputError, match="no rows to fit"):
        FeatureEncoder().fit(table, ["a"], rows=[])


def test_unseen_values(tmp_path):
    table = table_of(tmp_path, "id,c\n1,x\n2,y\n3,z\n")
    enc = FeatureEncoder().fit(table, ["c"], rows=[0, 1])
    with pytest.raises(InputError, match=r"column 'c', row 4: value 'z' was not seen in training \(known values: "
                                         r"'x', 'y'\)"):
        enc.transform(table)
    np.testing.assert_array_equal(enc.transform(table, unseen="zero"), [[1, 0], [0, 1], [0, 0]])
    with pytest.raises(InputError, match="unseen must be one of error, zero"):
        enc.transform(table, unseen="ignore")


# --- rare categories ---------------------------------------------------------------------------


CITIES = "id,city,v\n" + "".join(f"{i},{c},{i}\n" for i, c in enumerate(
    ["paris"] * 5 + ["rome"] * 4 + ["oslo"] * 2 + ["bern"]))


def test_rare_categories_are_merged_into_other(tmp_path):
    table = table_of(tmp_path, CITIES)
    enc = FeatureEncoder(min_category_count=3).fit(table, ["city"])
    assert enc.categories_ == {"city": ["paris", "rome", OTHER]}
    assert enc.feature_names_ == ["city=paris", "city=rome", "city=<other>"]
    x = enc.transform(table)
    np.testing.assert_array_equal(x.sum(axis=0), [5, 4, 3])
    assert "oslo" not in json.dumps(enc.to_dict()) and "bern" not in json.dumps(enc.to_dict())


def test_no_other_column_when_no_category_is_rare(tmp_path):
    enc = FeatureEncoder(min_category_count=2).fit(table_of(tmp_path, CITIES), ["city"], rows=np.arange(11))
    assert enc.categories_ == {"city": ["oslo", "paris", "rome"]}


def test_one_frequent_category_left(tmp_path):
    enc = FeatureEncoder(min_category_count=5).fit(table_of(tmp_path, CITIES), ["city"])
    assert enc.feature_names_ == ["city=paris", "city=<other>"]


def test_every_category_rare(tmp_path):
    table = table_of(tmp_path, CITIES)
    enc = FeatureEncoder(min_category_count=50).fit(table, ["city", "v"])
    assert enc.feature_names_ == ["city=<other>", "v"]
    np.testing.assert_array_equal(enc.transform(table)[:, 0], np.ones(table.rows))


def test_merged_and_unseen_values_score_as_other(tmp_path):
    table = table_of(tmp_path, CITIES)
    enc = FeatureEncoder(min_category_count=3).fit(table, ["city"])
    scored = table_of(tmp_path, "id,city\n1,bern\n2,lima\n3,rome\n", name="scored.csv")
    restored = FeatureEncoder.from_dict(enc.to_dict())
    np.testing.assert_array_equal(restored.transform(scored), [[0, 0, 1], [0, 0, 1], [0, 1, 0]])
    chunk = next(iter(iter_chunks(scored.path, ["city"], chunk_rows=10)))
    np.testing.assert_array_equal(restored.transform_chunk(chunk), restored.transform(scored))


# --- outliers --------------------------------------------------------------------------------


def test_values_are_winsorised_to_the_fitted_quantiles(tmp_path):
    values = np.r_[np.arange(99.0), 10_000.0]
    table = table_of(tmp_path, "id,v\n" + "".join(f"{i},{v}\n" for i, v in enumerate(values)))
    enc = FeatureEncoder(outlier_quantile=0.01).fit(table, ["v"])
    low, high = np.quantile(values, [0.01, 0.99])
    assert enc.bounds_ == {"v": [low, high]}
    clipped = np.clip(values, low, high)
    assert enc.means_["v"] == pytest.approx(clipped.mean()) and enc.scales_["v"] == pytest.approx(clipped.std())
    np.testing.assert_allclose(enc.transform(table)[:, 0], (clipped - clipped.mean()) / clipped.std())
    scored = table_of(tmp_path, "id,v\n1,-500\n2,1e9\n", name="scored.csv")
    restored = FeatureEncoder.from_dict(json.loads(json.dumps(enc.to_dict())))
    expected = (np.array([low, high]) - clipped.mean()) / clipped.std()
    np.testing.assert_allclose(restored.transform(scored)[:, 0], expected)


def test_a_rare_flag_winsorised_away_encodes_as_zeros(tmp_path):
    table = table_of(tmp_path, "id,flag\n" + "".join(f"{i},{int(i == 7)}\n" for i in range(1000)))
    enc = FeatureEncoder(outlier_quantile=0.005).fit(table, ["flag"])
    np.testing.assert_array_equal(enc.transform(table), np.zeros((1000, 1)))


@pytest.mark.parametrize("options, match", [
    ({"min_category_count": 0}, "min_category_count must be a whole number"),
    ({"min_category_count": 2.5}, "min_category_count must be a whole number"),
    ({"outlier_quantile": 0.5}, "outlier_quantile must lie strictly between 0 and 0.5"),
    ({"outlier_quantile": -0.1}, "outlier_quantile must lie strictly between 0 and 0.5"),
])
def test_option_values_are_checked(tmp_path, options, match):
    with pytest.raises(InputError, match=match):
        FeatureEncoder(**options).fit(table_of(tmp_path, CITIES), ["v"])


# --- built from statistics, read from old dictionaries ------------------------------------------


def test_from_statistics(tmp_path):
    table = table_of(tmp_path, "id,a,c\n1,1,x\n2,3,y\n")
    enc = FeatureEncoder.from_statistics(["a", "c"], {"a": 1.0}, {"a": 2.0}, {"c": ["x", "y", "z"]})
    assert enc.feature_names_ == ["a", "c=x", "c=y", "c=z"]
    np.testing.assert_array_equal(enc.transform(table), [[0, 1, 0, 0], [1, 0, 1, 0]])
    with pytest.raises(InputError, match="column 'a': column is constant"):
        FeatureEncoder.from_statistics(["a"], {"a": 1.0}, {"a": 0.0}, {})
    with pytest.raises(InputError, match="neither statistics nor categories"):
        FeatureEncoder.from_statistics(["a", "b"], {"a": 1.0}, {"a": 1.0}, {})


def test_an_encoder_dictionary_without_the_options_is_read(tmp_path):
    table = table_of(tmp_path, "id,a,b\n1,1,x\n2,2,y\n")
    data = FeatureEncoder().fit(table, ["a", "b"]).to_dict()
    for key in ("min_category_count", "outlier_quantile", "bounds"):
        del data[key]
    np.testing.assert_array_equal(FeatureEncoder.from_dict(data).transform(table),
                                  FeatureEncoder().fit(table, ["a", "b"]).transform(table))


def test_parquet_and_csv_encode_alike(tmp_path):
    frame = pd.DataFrame({"id": ["a", "b", "c", "d"], "n": [1, 5, 2, 9], "f": [0.5, 1.5, -2.0, 3.25],
                          "s": ["x", "y", "x", "z"]})
    frame.to_csv(tmp_path / "t.csv", index=False)
    frame.to_parquet(tmp_path / "t.parquet", index=False)
    csv, parquet = PartyTable.read(tmp_path / "t.csv"), PartyTable.read(tmp_path / "t.parquet")
    columns = ["n", "f", "s"]
    np.testing.assert_array_equal(FeatureEncoder().fit_transform(csv, columns),
                                  FeatureEncoder().fit_transform(parquet, columns))
