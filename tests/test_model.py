"""Model files and chunked scoring: same scores as the direct computation, chunk boundaries, bad input,
no partial output, every kind of model file."""

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from scipy.special import expit

from fedscore.cli import main as cli
from fedscore.errors import InputError
from fedscore.kit import table as table_module
from fedscore.kit.encoder import FeatureEncoder
from fedscore.kit.model import KINDS, MODEL_FORMAT, ModelFile, score_file
from fedscore.kit.table import PartyTable
from fedscore.params import DEFAULT_CHUNK_ROWS

ROWS = 100
CHUNK_ROWS = 7  # does not divide ROWS: the last chunk is short
TOLERANCE = 1e-12


def audience(rows=ROWS, seed=0):
    """A media-like table: an ID, numeric columns on different scales, two text columns."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "uid": [f"user{i:04d}" for i in range(rows)],
        "visits": rng.poisson(5, rows),
        "minutes": np.round(rng.gamma(2.0, 15.0, rows), 2),
        "spend": np.round(rng.normal(50_000, 2_000, rows), 1),
        "device": rng.choice(["android", "ios", "web"], rows),
        "region": rng.choice(["north", "south"], rows),
    })


def read(frame, folder, name="training.csv"):
    """The frame as a party's table file, read as fedscore reads it."""
    path = folder / name
    frame.to_csv(path, index=False)
    return PartyTable.read(path, text_columns=["uid"])


def fitted_encoder(frame, folder, **options):
    return FeatureEncoder(**options).fit(read(frame, folder), [c for c in frame.columns if c != "uid"])


def write_model(frame, path, seed=1, kind="lookalike", **options):
    """A model file whose encoder is fitted on ``frame`` as a party fits it."""
    encoder = fitted_encoder(frame, path.parent, **options)
    rng = np.random.default_rng(seed)
    if kind == "horizontal_kmeans":
        model = ModelFile(kind=kind, party="north", encoder=encoder,
                          centers=rng.normal(0.0, 1.0, (3, len(encoder.feature_names_))))
    else:
        model = ModelFile(kind=kind, party="media", encoder=encoder,
                          coef=rng.normal(0.0, 0.5, len(encoder.feature_names_)), intercept=-0.4,
                          training={"l2": 1e-3, "iterations": 3})
    return model.save(path)


def encoded(frame, model_path, unseen="error"):
    """Training's encoder applied to the whole table at once."""
    model = ModelFile.load(model_path)
    return model, model.encoder.transform(read(frame, model_path.parent, "direct.csv"), unseen=unseen)


def expected_scores(frame, model_path):
    """The direct computation: training's encoder on the whole table, then numpy."""
    model, features = encoded(frame, model_path)
    return expit(features @ model.coef + model.intercept)


def write_table(frame, path):
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
    return path


def read_scores(path):
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    return pd.read_csv(path, dtype={"uid": str})


@pytest.fixture
def model(tmp_path):
    return write_model(audience(), tmp_path / "model.json")


@pytest.mark.parametrize("table_suffix", [".csv", ".parquet"])
@pytest.mark.parametrize("out_suffix", [".csv", ".parquet"])
@pytest.mark.parametrize("chunk_rows", [CHUNK_ROWS, ROWS, DEFAULT_CHUNK_ROWS])
def test_scores_match_direct_computation(tmp_path, model, table_suffix, out_suffix, chunk_rows):
    frame = audience()
    data = write_table(frame, tmp_path / f"audience{table_suffix}")
    out = tmp_path / f"scores{out_suffix}"
    result = score_file(model, data, id_column="uid", out=out, chunk_rows=chunk_rows)
    assert result.rows == ROWS and result.chunks == -(-ROWS // chunk_rows) and result.model_kind == "lookalike"
    scores = read_scores(out)
    assert list(scores.columns) == ["uid", "score"]
    assert scores["uid"].tolist() == frame["uid"].tolist()
    np.testing.assert_allclose(scores["score"], expected_scores(frame, model), rtol=0, atol=TOLERANCE)


def test_csv_blocks_smaller_than_a_chunk_are_gathered(tmp_path, model, monkeypatch):
    """Reader blocks of a few rows each, gathered into chunks across block boundaries."""
    monkeypatch.setattr(table_module, "CSV_BLOCK_BYTES", 256)
    frame = audience(rows=500)
    data = write_table(frame, tmp_path / "audience.csv")
    result = score_file(model, data, id_column="uid", out=tmp_path / "scores.csv", chunk_rows=33)
    assert (result.rows, result.chunks) == (500, 16)
    np.testing.assert_allclose(read_scores(tmp_path / "scores.csv")["score"], expected_scores(frame, model),
                               rtol=0, atol=TOLERANCE)


def test_extra_columns_reordered_columns_and_spaces_are_accepted(tmp_path, model):
    frame = audience()
    padded = frame.astype(str).map(lambda v: f" {v} ")
    padded.columns = [f" {c}" for c in frame.columns]
    padded.insert(2, "note", "ignored")
    data = write_table(padded[padded.columns[::-1]], tmp_path / "audience.csv")
    score_file(model, data, id_column="uid", out=tmp_path / "scores.csv")
    scores = read_scores(tmp_path / "scores.csv")
    assert scores["uid"].tolist() == frame["uid"].tolist()
    np.testing.assert_allclose(scores["score"], expected_scores(frame, model), rtol=0, atol=TOLERANCE)


def test_trailing_blank_lines_are_dropped(tmp_path, model):
    data = write_table(audience(), tmp_path / "audience.csv")
    data.write_text(data.read_text() + "\n\n\n")
    assert score_file(model, data, id_column="uid", out=tmp_path / "scores.csv", chunk_rows=CHUNK_ROWS).rows == ROWS


def test_a_value_to_report_among_reader_parsed_numbers_is_read_again_as_text(tmp_path, model):
    """The CSV reader parses numbers itself; a NaN it accepts is reported as written, with its row."""
    frame = audience().astype(str)
    frame.loc[60, "minutes"] = "NaN"
    data = write_table(frame, tmp_path / "audience.csv")
    with pytest.raises(InputError) as error:
        score_file(model, data, id_column="uid", out=tmp_path / "scores.csv", chunk_rows=CHUNK_ROWS)
    assert str(error.value) == f"{data}, column 'minutes', row 62: value 'NaN' is not a finite number"


# --- bad input ------------------------------------------------------------------------------------


def bad_table(tmp_path, suffix, column, row, value):
    """The audience with one cell replaced: a text cell, or None for a missing number (a Parquet null)."""
    frame = audience() if value is None else audience().astype(str)
    frame.loc[row, column] = np.nan if value is None else value
    return write_table(frame, tmp_path / f"audience{suffix}")


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
@pytest.mark.parametrize("column, row, value, message", [
    ("spend", 52, "n/a", "value 'n/a' is not a finite number"),
    ("visits", 99, "", "value '' is not a finite number"),
    ("minutes", 17, None, "value '' is not a finite number"),
    ("device", 8, "", "empty value"),
    ("uid", 30, " ", "empty ID"),
    ("device", 41, "tablet", "value 'tablet' was not seen in training (known values: 'android', 'ios', 'web')"),
])
def test_bad_cells_are_named_by_file_column_row_and_value(tmp_path, model, suffix, column, row, value, message):
    data = bad_table(tmp_path, suffix, column, row, value)
    with pytest.raises(InputError) as error:
        score_file(model, data, id_column="uid", out=tmp_path / "scores.csv", chunk_rows=CHUNK_ROWS)
    assert str(error.value).startswith(f"{data}, column '{column}', row {row + 2}: {message}")
    assert "\n" not in str(error.value)


def test_missing_column(tmp_path, model):
    data = write_table(audience().drop(columns="minutes"), tmp_path / "audience.csv")
    with pytest.raises(InputError, match=r"column 'minutes': missing column \(columns are: uid, visits"):
        score_file(model, data, id_column="uid", out=tmp_path / "scores.csv")


def test_blank_line_inside_the_file(tmp_path, model):
    data = write_table(audience(), tmp_path / "audience.csv")
    lines = data.read_text().splitlines()
    data.write_text("\n".join(lines[:11] + [""] + lines[11:]) + "\n")
    with pytest.raises(InputError, match=r"column 'uid', row 12: empty ID"):
        score_file(model, data, id_column="uid", out=tmp_path / "scores.csv", chunk_rows=CHUNK_ROWS)


@pytest.mark.parametrize("content, message", [
    ("", "file is empty"),
    ("uid,visits,minutes,spend,device,region\n", "file has a header but no rows"),
    ("uid,visits,minutes,spend,device,region\nu1,1,2,3,ios\n", "cannot be read as a table"),
])
def test_unusable_files(tmp_path, model, content, message):
    data = tmp_path / "audience.csv"
    data.write_text(content)
    with pytest.raises(InputError, match=message):
        score_file(model, data, id_column="uid", out=tmp_path / "scores.csv")
    assert not (tmp_path / "scores.csv").exists()


def test_unseen_category_can_be_scored_with_no_category_set(tmp_path, model):
    data = bad_table(tmp_path, ".csv", "device", 41, "tablet")
    score_file(model, data, id_column="uid", out=tmp_path / "scores.csv", unseen="zero")
    spec, features = encoded(pd.read_csv(data, dtype=str, keep_default_na=False), model, unseen="zero")
    names = spec.encoder.feature_names_
    assert features[41, [names.index(f"device={d}") for d in ("android", "ios", "web")]].sum() == 0
    np.testing.assert_allclose(read_scores(tmp_path / "scores.csv")["score"],
                               expit(features @ spec.coef + spec.intercept), rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("content, message", [
    ("{", "model file is not JSON"),
    ('{"kind": "segments"}', "not a fedscore model file"),
    ('{"kind": "lookalike", "coef": [1.0]}', "not a fedscore model file"),
    (json.dumps({"format": MODEL_FORMAT, "kind": "lookalike", "coef": [1.0]}), "model file is incomplete or malformed"),
    (json.dumps({"format": "fedscore.model/9", "kind": "lookalike"}), "format 'fedscore.model/9' is not supported"),
])
def test_bad_model_file(tmp_path, content, message):
    path = tmp_path / "model.json"
    path.write_text(content)
    with pytest.raises(InputError, match=message) as error:
        ModelFile.load(path)
    assert "\n" not in str(error.value)
    with pytest.raises(InputError, match="model file not found"):
        ModelFile.load(tmp_path / "nope.json")


def test_coefficients_must_match_the_features(tmp_path, model):
    spec = json.loads(model.read_text())
    spec["coef"] = spec["coef"][:-1]
    with pytest.raises(InputError, match="coefficients for"):
        ModelFile.from_dict(spec, model)


@pytest.mark.parametrize("field, value, message", [
    ("coef", "nan", "non-finite values in 'coef'"),
    ("intercept", "inf", "non-finite values in 'intercept'"),
    ("clip_norm", -1.0, "clip_norm -1.0"),
    ("kind", "forest", "unknown kind 'forest'"),
    ("feature_names", ["x"], "feature_names do not match"),
])
def test_model_file_values_are_checked(tmp_path, model, field, value, message):
    spec = json.loads(model.read_text())
    if field == "coef":
        spec["coef"][0] = float(value)
    elif field == "intercept":
        spec["intercept"] = float(value)
    else:
        spec[field] = value
    with pytest.raises(InputError, match=message):
        ModelFile.from_dict(spec, model)


# --- no partial output ------------------------------------------------------------------------------


def test_failure_leaves_no_file_and_keeps_the_previous_one(tmp_path, model):
    good = write_table(audience(), tmp_path / "good.csv")
    out = tmp_path / "scores.csv"
    score_file(model, good, id_column="uid", out=out)
    before = out.read_bytes()
    bad = bad_table(tmp_path, ".csv", "spend", ROWS - 1, "oops")  # the last row: every chunk before it written
    with pytest.raises(InputError, match="row 101"):
        score_file(model, bad, id_column="uid", out=out, chunk_rows=CHUNK_ROWS, overwrite=True)
    assert out.read_bytes() == before
    with pytest.raises(InputError):
        score_file(model, bad, id_column="uid", out=tmp_path / "new.csv", chunk_rows=CHUNK_ROWS)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audience.csv", "good.csv", "model.json", "scores.csv",
                                                          "training.csv"]


def test_existing_output_is_not_replaced_without_overwrite(tmp_path, model):
    data = write_table(audience(), tmp_path / "audience.csv")
    (tmp_path / "scores.csv").write_text("keep me")
    with pytest.raises(InputError, match="already exists"):
        score_file(model, data, id_column="uid", out=tmp_path / "scores.csv")
    assert (tmp_path / "scores.csv").read_text() == "keep me"


# --- model files of every kind ----------------------------------------------------------------------


def test_model_files_of_every_kind_round_trip(tmp_path):
    encoder = fitted_encoder(audience(), tmp_path)
    width = len(encoder.feature_names_)
    rng = np.random.default_rng(0)
    for kind in KINDS:
        logistic = kind in ("lookalike", "propensity", "horizontal_lr")
        model = ModelFile(kind=kind, party="brand", encoder=encoder,
                          coef=rng.normal(size=width) if logistic else None,
                          intercept=None if kind == "propensity" or not logistic else 0.25,
                          centers=None if logistic else rng.normal(size=(4, width)),
                          clip_norm=3.0, training={"run": "r1", "rounds": 5})
        path = model.save(tmp_path / f"{kind}.json")
        data = json.loads(path.read_text())
        assert data["format"] == MODEL_FORMAT and data["feature_names"] == encoder.feature_names_
        again = ModelFile.load(path)
        assert (again.kind, again.party, again.clip_norm, again.training) == (kind, "brand", 3.0, model.training)
        assert again.scorable == (kind in ("lookalike", "horizontal_lr", "horizontal_kmeans"))
        for name in ("coef", "centers"):
            if getattr(model, name) is not None:
                np.testing.assert_array_equal(getattr(again, name), getattr(model, name))


def test_the_scorer_clips_as_training_did(tmp_path):
    encoder = fitted_encoder(audience(), tmp_path)
    x = np.random.default_rng(1).normal(0, 3, (20, len(encoder.feature_names_)))
    coef = np.linspace(-1, 1, x.shape[1])
    model = ModelFile(kind="lookalike", party="media", encoder=encoder, coef=coef, intercept=0.5, clip_norm=1.5)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    clipped = x * np.minimum(1.0, 1.5 / norms)
    np.testing.assert_allclose(model.scores(x), expit(clipped @ coef + 0.5), rtol=0, atol=TOLERANCE)
    centers = np.random.default_rng(2).normal(size=(3, x.shape[1]))
    kmeans = ModelFile(kind="horizontal_kmeans", party="north", encoder=encoder, centers=centers)
    np.testing.assert_array_equal(kmeans.assign(x), ((x[:, None, :] - centers[None]) ** 2).sum(axis=2).argmin(axis=1))


def test_halves_of_joint_models_score_only_with_the_peers_part(tmp_path):
    encoder = fitted_encoder(audience(), tmp_path)
    x = np.random.default_rng(1).normal(size=(5, len(encoder.feature_names_)))
    half = ModelFile(kind="propensity", party="media", encoder=encoder, coef=np.ones(x.shape[1]))
    with pytest.raises(InputError, match="one party's half of a joint model: it cannot score on its own"):
        half.scores(x)
    peer = np.arange(5.0)
    np.testing.assert_allclose(half.scores(x, peer_logits=peer), expit(x.sum(axis=1) + peer))
    segment = ModelFile(kind="segment", party="brand", encoder=encoder, centers=np.zeros((2, x.shape[1])))
    with pytest.raises(InputError, match="one party's half"):
        segment.assign(x)
    assert list(segment.assign(x, peer_distances=np.c_[np.zeros(5), np.full(5, -1e9)])) == [1] * 5


@pytest.mark.parametrize("kind", ["propensity", "segment"])
def test_a_half_is_refused_by_the_scorer(tmp_path, kind):
    encoder = fitted_encoder(audience(), tmp_path)
    width = len(encoder.feature_names_)
    model = ModelFile(kind=kind, party="media", encoder=encoder, coef=np.ones(width) if kind == "propensity" else None,
                      centers=np.zeros((2, width)) if kind == "segment" else None).save(tmp_path / "model.json")
    data = write_table(audience(), tmp_path / "audience.csv")
    with pytest.raises(InputError, match=f"model.json: this {kind} model file \\(held by media\\) is one party's "
                                         "half of a joint model: it cannot score on its own"):
        score_file(model, data, id_column="uid", out=tmp_path / "scores.csv")
    assert not (tmp_path / "scores.csv").exists()


@pytest.mark.parametrize("out_suffix", [".csv", ".parquet"])
def test_a_kmeans_model_writes_segments(tmp_path, out_suffix):
    frame = audience()
    model = write_model(frame, tmp_path / "model.json", kind="horizontal_kmeans")
    data = write_table(frame, tmp_path / "audience.parquet")
    out = tmp_path / f"segments{out_suffix}"
    result = score_file(model, data, id_column="uid", out=out, chunk_rows=CHUNK_ROWS)
    assert result.model_kind == "horizontal_kmeans"
    segments = read_scores(out)
    assert list(segments.columns) == ["uid", "segment"]
    spec, features = encoded(frame, model)
    np.testing.assert_array_equal(segments["segment"], spec.assign(features))


def test_scoring_with_rare_categories_and_winsorising(tmp_path):
    frame = audience(rows=300)
    frame.loc[:3, "device"] = "tv"  # 4 rows: rare
    model = write_model(frame, tmp_path / "model.json", min_category_count=10, outlier_quantile=0.02)
    spec = ModelFile.load(model)
    assert spec.encoder.categories_["device"][-1] == "<other>" and "tv" not in model.read_text()
    scored = audience(rows=50, seed=9)
    scored.loc[0, "device"], scored.loc[1, "minutes"] = "tv", 1e6
    data = write_table(scored, tmp_path / "audience.csv")
    score_file(model, data, id_column="uid", out=tmp_path / "scores.csv", chunk_rows=CHUNK_ROWS)
    np.testing.assert_allclose(read_scores(tmp_path / "scores.csv")["score"], expected_scores(scored, model),
                               rtol=0, atol=TOLERANCE)


def test_benchmark_smoke(smoke_benchmark):
    result = smoke_benchmark("tables")
    table = result["tables"][0]
    assert result["smoke"] is True
    assert [row[:3] for row in table["rows"]] == [[name, path, fmt] for name, fmt in
                                                  (("wide", "csv"), ("wide", "parquet"), ("long", "csv"))
                                                  for path in ("before", "after")]
    assert all(len(row) == len(table["columns"]) for row in table["rows"])
    assert all(row[table["columns"].index("agree")] is True for row in table["rows"])


def test_command_line(tmp_path, model):
    data = write_table(audience(), tmp_path / "audience.parquet")
    out = tmp_path / "scores.csv"
    arguments = ["score", "--model", str(model), "--data", str(data), "--id-column", "uid", "--out", str(out),
                 "--chunk-rows", str(CHUNK_ROWS)]
    result = CliRunner().invoke(cli, arguments)
    assert result.exit_code == 0, result.output
    assert f"scored {ROWS} rows" in result.output
    np.testing.assert_allclose(read_scores(out)["score"], expected_scores(audience(), model), rtol=0, atol=TOLERANCE)
    again = CliRunner().invoke(cli, arguments)
    assert again.exit_code == 1
    assert again.output.strip() == f"error: {out}: output file already exists (use --overwrite to replace it)"


def test_scoring_benchmark_smoke(smoke_benchmark):
    table = smoke_benchmark("scoring")["tables"][0]
    assert [row[:4] for row in table["rows"]] == [["parquet", 3000, 0, "fedscore"], ["parquet", 3000, 0, "baseline"],
                                                  ["csv", 3000, 0, "fedscore"], ["csv", 3000, 0, "baseline"]]
    assert all(float(row[-1]) < TOLERANCE for row in table["rows"] if row[3] == "fedscore")
