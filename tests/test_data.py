import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedscore.data import FeatureEncoder, load_party_table, parse_labels, read_table, validate_ids
from fedscore.errors import InputError


def write(tmp_path, text, name="t.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_load_party_table_encodes_numeric_and_categorical(tmp_path):
    path = write(tmp_path, "id,age,city,y\n1,30,paris,yes\n2,40,rome,no\n3,50,paris,\n")
    ids, x, y, enc = load_party_table(path, "id", label_column="y")
    assert list(ids) == ["1", "2", "3"]
    assert enc.feature_names_ == ["age", "city=paris", "city=rome"]
    np.testing.assert_allclose(x[:, 0].mean(), 0.0, atol=1e-12)
    np.testing.assert_array_equal(x[:, 1], [1, 0, 1])
    assert y[0] == 1 and y[1] == 0 and np.isnan(y[2])


@pytest.mark.parametrize("text, match", [
    ("id,a\n", "no rows"),
    ("x,a\n1,2\n", "column 'id': missing column"),
    ("id,a\n1,2\n1,3\n", "row 3.*duplicated ID '1'"),
    ("id,a\n1,2\n ,3\n", "row 3.*empty ID"),
    ("id,a\n1,2\n2,abc\n3,4\n", "column 'a', row 3: non-numeric value 'abc'"),
    ("id,a\n1,2\n2,inf\n", "column 'a', row 3: value 'inf' is not finite"),
    ("id,a\n1,nan\n2,3\n", "column 'a', row 2: value 'nan' is not finite"),
    ("id,a\n1,5\n2,5\n", "column 'a': column is constant"),
    ("id,a\n1,\n2,5\n", "column 'a', row 2: empty value"),
])
def test_bad_input_names_file_column_and_row(tmp_path, text, match):
    path = write(tmp_path, text)
    with pytest.raises(InputError, match=match) as info:
        load_party_table(path, "id")
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        read_table(tmp_path / "nope.csv")
    with pytest.raises(InputError, match="file is empty"):
        read_table(write(tmp_path, ""))


@pytest.mark.parametrize("text, match", [
    ("id,y\n1,1\n2,1\n", "only the class 1"),
    ("id,y\n1,\n2,\n", "no labelled rows"),
    ("id,y\n1,1\n2,maybe\n", "row 3: label 'maybe'"),
])
def test_bad_labels(tmp_path, text, match):
    path = write(tmp_path, text)
    frame = read_table(path, columns=["id", "y"])
    with pytest.raises(InputError, match=match):
        parse_labels(frame, "y", path)


def test_duplicates_allowed_when_asked(tmp_path):
    path = write(tmp_path, "id\n1\n1\n")
    frame = read_table(path, columns=["id"])
    assert list(validate_ids(frame, "id", path, allow_duplicates=True)) == ["1", "1"]


def test_encoder_round_trips_through_dict(tmp_path):
    path = write(tmp_path, "id,a,b\n1,1,x\n2,2,y\n3,4,x\n")
    frame = read_table(path)
    enc = FeatureEncoder(path).fit(frame, ["a", "b"])
    again = FeatureEncoder.from_dict(enc.to_dict())
    np.testing.assert_array_equal(enc.transform(frame), again.transform(frame))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=300))
def test_loading_arbitrary_text_gives_input_error_or_a_table(tmp_path, text):
    path = tmp_path / "fuzz.csv"
    path.write_text(text, encoding="utf-8")
    try:
        load_party_table(path, "id")
    except InputError as exc:
        assert "\n" not in str(exc)


def test_blank_lines_inside_a_file_are_empty_ids_and_keep_row_numbers(tmp_path):
    path = write(tmp_path, "id\na\n\nb\n\n\n")
    frame = read_table(path)
    assert list(frame["id"]) == ["a", "", "b"]  # trailing blank lines are dropped, inner ones kept
    with pytest.raises(InputError, match="row 3: empty ID"):
        validate_ids(frame, "id", path)


def test_parquet_nulls_are_empty_cells_not_the_text_nan(tmp_path):
    import pandas as pd

    path = tmp_path / "t.parquet"
    pd.DataFrame({"id": ["x", None, "y"], "v": [1.0, None, 2.0]}).to_parquet(path)
    frame = read_table(path)
    assert list(frame["id"]) == ["x", "", "y"] and list(frame["v"]) == ["1.0", "", "2.0"]
    with pytest.raises(InputError, match="row 3: empty ID"):
        validate_ids(frame, "id", path)
