"""The typed table reader: IDs, labels, feature checks and the chunked stream, with their errors."""

import re
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedscore.errors import InputError
from fedscore.kit import table as table_module
from fedscore.kit.encoder import FeatureEncoder
from fedscore.kit.table import MAX_CATEGORIES, PartyTable, iter_chunks


def write(tmp_path, text, name="t.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def load(path, id_column, label_column=None):
    """What a protocol's load step does: read, check IDs and labels, encode every other column."""
    key = [id_column] + ([label_column] if label_column else [])
    table = PartyTable.read(path, required=key, text_columns=key)
    ids = table.ids(id_column)
    labels = table.labels(label_column) if label_column else None
    encoder = FeatureEncoder(path)
    features = encoder.fit_transform(table, table.feature_columns(exclude=key))
    return ids, features, labels, encoder


@pytest.fixture
def small_blocks(monkeypatch):
    """CSV blocks of a few rows each, so that a column's type can change after the first block."""
    monkeypatch.setattr(table_module, "CSV_BLOCK_BYTES", 64)


# --- reading ----------------------------------------------------------------------------------


def test_a_table_is_read_typed(tmp_path):
    path = write(tmp_path, "id, age ,city,y\n001,30,paris,yes\n2, 40 , rome ,no\n3,50,paris,\n")
    table = PartyTable.read(path, required=["id"], text_columns=["id", "y"])
    assert (table.columns, table.rows) == (["id", "age", "city", "y"], 3)
    assert list(table.ids("id")) == ["001", "2", "3"]  # IDs as written, never parsed as numbers
    np.testing.assert_array_equal(table.numeric("age"), [30.0, 40.0, 50.0])
    assert table.numeric("city") is None
    assert table.kinds(["age", "city"]) == {"columns": ["age", "city"], "numeric": ["age"],
                                            "categories": {"city": ["paris", "rome"]}}
    assert table.feature_columns(exclude=["id", "y"]) == ["age", "city"]


def test_an_id_column_not_named_as_text_is_still_read_as_written(tmp_path):
    path = write(tmp_path, "id,v\n00123,1\n7,2\n")
    table = PartyTable.read(path)
    assert list(table.ids("id")) == ["00123", "7"]


def test_typed_parquet_ids_become_their_decimal_text(tmp_path):
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"id": pa.array([123, None, 7], type=pa.int64()), "v": [1.0, 2.0, 3.0]}), path)
    table = PartyTable.read(path, text_columns=["id"])
    assert list(table.ids("id", allow_empty=True)) == ["123", "", "7"]
    with pytest.raises(InputError, match="column 'id', row 3: empty ID"):
        table.ids("id")
    assert list(PartyTable.read(path).ids("id", allow_empty=True)) == ["123", "", "7"]


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        PartyTable.read(tmp_path / "nope.csv")
    with pytest.raises(InputError, match="file is empty"):
        PartyTable.read(write(tmp_path, ""))


@pytest.mark.parametrize("text, match", [
    ("id,a\n", "file has a header but no rows"),
    ("id,a\n\n\n", "file has a header but no rows"),
    ("\n\n", "cannot be read as a table"),
    ("id,a\n1,2,3\n", r"cannot be read as a table \(CSV parse error: .*Expected 2 columns, got 3: 1,2,3\)"),
    ("id,a\n1\n", "cannot be read as a table"),
    ("id, id\n1,2\n", "column 'id': duplicated column name"),
])
def test_unusable_tables(tmp_path, text, match):
    with pytest.raises(InputError, match=match) as info:
        PartyTable.read(write(tmp_path, text))
    assert "\n" not in str(info.value)


def test_missing_column_lists_the_columns(tmp_path):
    with pytest.raises(InputError, match=r"column 'id': missing column \(columns are: x, a\)"):
        PartyTable.read(write(tmp_path, "x,a\n1,2\n"), required=["id"])


def test_a_nameless_column_is_named_as_pandas_names_it(tmp_path):
    table = PartyTable.read(write(tmp_path, "id,a,\n1,2,\n2,3,\n"))
    assert table.columns == ["id", "a", "Unnamed: 2"]
    with pytest.raises(InputError, match="column 'Unnamed: 2', row 2: empty value"):
        table.check_features(["a", "Unnamed: 2"])


def test_dates_and_booleans_are_text(tmp_path):
    path = write(tmp_path, "id,day,flag\n1,2024-01-01,true\n2,2024-01-02,false\n")
    table = PartyTable.read(path)
    assert table.kinds(["day", "flag"])["categories"] == {"day": ["2024-01-01", "2024-01-02"],
                                                          "flag": ["false", "true"]}


# --- IDs and labels ---------------------------------------------------------------------------


def test_duplicates_allowed_when_asked(tmp_path):
    path = write(tmp_path, "id\n1\n1\n")
    table = PartyTable.read(path, required=["id"], text_columns=["id"])
    assert list(table.ids("id", allow_duplicates=True)) == ["1", "1"]
    with pytest.raises(InputError, match="column 'id', row 3: duplicated ID '1'"):
        table.ids("id")


def test_blank_lines_inside_a_file_are_empty_ids_and_keep_row_numbers(tmp_path):
    path = write(tmp_path, "id\na\n\nb\n\n\n")
    table = PartyTable.read(path, text_columns=["id"])
    assert list(table.ids("id", allow_empty=True)) == ["a", "", "b"]  # trailing blank lines dropped, inner kept
    with pytest.raises(InputError, match="row 3: empty ID"):
        table.ids("id")


def test_blank_lines_among_numeric_columns(tmp_path):
    path = write(tmp_path, "id,a,b\n1,2,3\n\n2,4,5\n,,\n\n")
    table = PartyTable.read(path, text_columns=["id"])
    assert table.rows == 3
    with pytest.raises(InputError, match="column 'id', row 3: empty ID"):
        table.ids("id")
    with pytest.raises(InputError, match="column 'a', row 3: empty value"):
        table.check_features(["a", "b"])


def test_parquet_nulls_are_empty_cells_not_the_text_nan(tmp_path):
    path = tmp_path / "t.parquet"
    pd.DataFrame({"id": ["x", None, "y"], "v": [1.0, None, 2.0]}).to_parquet(path)
    table = PartyTable.read(path, text_columns=["id"])
    assert list(table.ids("id", allow_empty=True)) == ["x", "", "y"]
    assert table.text("v").to_pylist() == ["1.0", "", "2.0"]
    with pytest.raises(InputError, match="row 3: empty ID"):
        table.ids("id")
    with pytest.raises(InputError, match="column 'v', row 3: empty value"):
        table.numeric("v")


def test_trailing_empty_parquet_rows_are_dropped(tmp_path):
    path = tmp_path / "t.parquet"
    pd.DataFrame({"id": ["x", "y", None, ""], "v": [1.0, 2.0, None, np.nan]}).to_parquet(path)
    assert PartyTable.read(path).rows == 2


@pytest.mark.parametrize("text, match", [
    ("id,y\n1,1\n2,1\n", "only the class 1"),
    ("id,y\n1,\n2,\n", "no labelled rows"),
    ("id,y\n1,1\n2,maybe\n", "row 3: label 'maybe'"),
])
def test_bad_labels(tmp_path, text, match):
    path = write(tmp_path, text)
    table = PartyTable.read(path, required=["id", "y"], text_columns=["id", "y"])
    with pytest.raises(InputError, match=match):
        table.labels("y")


def test_label_spellings(tmp_path):
    path = write(tmp_path, "id,y\n1,YES\n2,no\n3,True\n4,false\n5,1.0\n6,0\n7,\n")
    labels = PartyTable.read(path, text_columns=["y"]).labels("y")
    np.testing.assert_array_equal(labels, [1, 0, 1, 0, 1, 0, np.nan])


def test_parquet_boolean_labels(tmp_path):
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"id": ["a", "b", "c"], "y": pa.array([True, None, False])}), path)
    np.testing.assert_array_equal(PartyTable.read(path, text_columns=["y"]).labels("y"), [1, np.nan, 0])


# --- features ---------------------------------------------------------------------------------


def test_load_encodes_numeric_and_categorical(tmp_path):
    path = write(tmp_path, "id,age,city,y\n1,30,paris,yes\n2,40,rome,no\n3,50,paris,\n")
    ids, x, y, enc = load(path, "id", label_column="y")
    assert list(ids) == ["1", "2", "3"]
    assert enc.feature_names_ == ["age", "city=paris", "city=rome"]
    np.testing.assert_allclose(x[:, 0].mean(), 0.0, atol=1e-12)
    np.testing.assert_array_equal(x[:, 1], [1, 0, 1])
    assert y[0] == 1 and y[1] == 0 and np.isnan(y[2])


BAD_INPUT = [
    ("id,a\n", "no rows"),
    ("x,a\n1,2\n", "column 'id': missing column"),
    ("id,a\n1,2\n1,3\n", "row 3.*duplicated ID '1'"),
    ("id,a\n1,2\n ,3\n", "row 3.*empty ID"),
    ("id,a\n1,2\n2,abc\n3,4\n", "column 'a', row 3: non-numeric value 'abc'"),
    ("id,a\n1,2\n2,inf\n", "column 'a', row 3: value 'inf' is not finite"),
    ("id,a\n1,nan\n2,3\n", "column 'a', row 2: value 'nan' is not finite"),
    ("id,a\n1,5\n2,5\n", "column 'a': column is constant"),
    ("id,a\n1,\n2,5\n", "column 'a', row 2: empty value"),
]


@pytest.mark.parametrize("text, match", BAD_INPUT)
def test_bad_input_names_file_column_and_row(tmp_path, text, match):
    path = write(tmp_path, text)
    with pytest.raises(InputError, match=match) as info:
        load(path, "id")
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("text, match", BAD_INPUT[4:])
def test_check_features_gives_the_encoders_errors(tmp_path, text, match):
    table = PartyTable.read(write(tmp_path, text), text_columns=["id"])
    with pytest.raises(InputError, match=match):
        table.check_features(["a"])


def test_too_many_categories(tmp_path):
    values = "".join(f"{i},v{i}\n" for i in range(MAX_CATEGORIES + 1))
    table = PartyTable.read(write(tmp_path, "id,a\n" + values))
    message = f"column 'a': {MAX_CATEGORIES + 1} distinct text values (more than {MAX_CATEGORIES})"
    with pytest.raises(InputError, match=re.escape(message)):
        table.kinds(["a"])
    assert table.numeric("a") is None  # only its kind is asked: not numeric


def test_kinds_accept_a_column_constant_at_this_party(tmp_path):
    table = PartyTable.read(write(tmp_path, "id,a,b\n1,5,x\n2,5,x\n"))
    assert table.kinds(["a", "b"]) == {"columns": ["a", "b"], "numeric": ["a"], "categories": {"b": ["x"]}}
    with pytest.raises(InputError, match="column 'a': column is constant"):
        table.check_features(["a", "b"])


def test_a_number_late_in_the_file_turns_a_column_to_text(tmp_path, small_blocks):
    rows = "".join(f"{i},{i % 7}\n" for i in range(60))
    table = PartyTable.read(write(tmp_path, "id,a\n" + rows + "60,abc\n61,0\n"))
    with pytest.raises(InputError, match="column 'a', row 62: non-numeric value 'abc' in a numeric column"):
        table.check_features(["a"])


def test_a_column_of_numbers_then_text_keeps_the_numbers_as_written(tmp_path, small_blocks):
    rows = "".join(f"{i},0{i % 2}\n" for i in range(40)) + "".join(f"{i},t{i % 3}\n" for i in range(40, 100))
    table = PartyTable.read(write(tmp_path, "id,a\n" + rows))
    assert table.kinds(["a"])["categories"]["a"] == ["00", "01", "t0", "t1", "t2"]


def test_a_value_to_report_late_in_the_file_is_reported_as_written(tmp_path, small_blocks):
    rows = "".join(f"{i},{i % 7}\n" for i in range(60))
    table = PartyTable.read(write(tmp_path, "id,a\n" + rows + "60, -Infinity \n"))
    with pytest.raises(InputError, match="column 'a', row 62: value '-Infinity' is not finite"):
        table.numeric("a")


def test_quoted_cells_and_newlines_in_values(tmp_path):
    path = write(tmp_path, 'id,note,a\n1,"x, y",1\n2,"two\nlines",2\n')
    table = PartyTable.read(path)
    assert table.rows == 2 and table.text("note").to_pylist() == ["x, y", "two\nlines"]


def test_parquet_types(tmp_path):
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"i": pa.array([1, 2, 3], pa.int32()), "f": pa.array([0.5, 1.5, 2.0], pa.float32()),
                             "s": ["1.5", " 2", "3"], "c": pa.array(["a", "b", "a"]).dictionary_encode(),
                             "b": [True, False, True]}), path)
    table = PartyTable.read(path)
    assert table.kinds(table.columns) == {"columns": ["i", "f", "s", "c", "b"], "numeric": ["i", "f", "s"],
                                          "categories": {"c": ["a", "b"], "b": ["False", "True"]}}
    np.testing.assert_array_equal(table.numeric("s"), [1.5, 2.0, 3.0])


def test_parquet_infinity_is_reported(tmp_path):
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"id": ["a", "b"], "v": [1.0, float("inf")]}), path)
    with pytest.raises(InputError, match="column 'v', row 3: value 'inf' is not finite"):
        PartyTable.read(path).check_features(["v"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=300))
def test_loading_arbitrary_text_gives_input_error_or_a_table(tmp_path, text):
    path = tmp_path / "fuzz.csv"
    path.write_text(text, encoding="utf-8")
    try:
        load(path, "id")
    except InputError as exc:
        assert "\n" not in str(exc)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(min_size=1, max_size=300), st.sampled_from(["t.parquet", "t.csv"]))
def test_a_corrupted_table_file_is_an_input_error(tmp_path_factory, data, name):
    path = tmp_path_factory.mktemp("fuzz") / name
    path.write_bytes(b"PAR1" + data + b"PAR1" if name.endswith(".parquet") else data)
    try:
        PartyTable.read(path, required=["id"])
    except InputError:
        pass


# --- chunks -----------------------------------------------------------------------------------


def test_chunks_are_numbered_within_the_file(tmp_path):
    path = write(tmp_path, "id,a,b\n" + "".join(f"{i},{i},x{i % 2}\n" for i in range(10)) + "\n\n")
    chunks = list(iter_chunks(path, ["b", "id"], chunk_rows=4, numeric_columns=["a"]))
    assert [(c.offset, c.rows) for c in chunks] == [(0, 4), (4, 4), (8, 2)]
    assert chunks[1].row_number(0) == 6 and list(chunks[0].columns) == ["b", "id"]


def test_empty_rows_followed_by_data_are_chunk_rows(tmp_path):
    path = tmp_path / "t.parquet"
    pd.DataFrame({"id": ["a", None, "b", None], "v": [1.0, None, 2.0, None]}).to_parquet(path)
    chunks = list(iter_chunks(path, ["id", "v"], chunk_rows=2))
    assert [(c.offset, c.rows) for c in chunks] == [(0, 1), (1, 1), (2, 1)]  # the trailing null row dropped
    assert [c.columns["id"][0].as_py() for c in chunks] == ["a", None, "b"]


def test_chunks_of_an_empty_table(tmp_path):
    path = write(tmp_path, "id,a\n\n\n")
    with pytest.raises(InputError, match="file has a header but no rows"):
        list(iter_chunks(path, ["id"], chunk_rows=4))
    with pytest.raises(InputError, match="missing column"):
        iter_chunks(path, ["nope"], chunk_rows=4)
