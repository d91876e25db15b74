"""Chunked scoring: same scores as training's, chunk boundaries, bad input, no partial output."""

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from scipy.special import expit

from fedscore import scoring
from fedscore.cli import main as cli
from fedscore.data import FeatureEncoder
from fedscore.errors import InputError
from fedscore.lookalike import lookalike
from fedscore.scoring import LogisticModel, score_file
from fedscore.scoring_horizontal import HorizontalLogisticRegression, PrivacyWarning

ROOT = Path(__file__).resolve().parents[1]
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


def write_model(frame, path, seed=1):
    """A lookalike ``model.json`` whose encoder is fitted on ``frame`` as the media fits it."""
    text = frame.astype(str)
    encoder = FeatureEncoder().fit(text, [c for c in frame.columns if c != "uid"])
    coef = np.random.default_rng(seed).normal(0.0, 0.5, len(encoder.feature_names_))
    model = {"kind": "lookalike", "feature_names": encoder.feature_names_, "coef": coef.tolist(), "intercept": -0.4,
             "l2": 1e-3, "iterations": 3, "encoder": encoder.to_dict(), "dp_clip_norm": None}
    path.write_text(json.dumps(model))
    return path


def expected_scores(frame, model_path):
    """The direct computation: training's encoder on the whole table, then numpy."""
    model = json.loads(model_path.read_text())
    features = FeatureEncoder.from_dict(model["encoder"]).transform(frame.astype(str))
    return expit(features @ np.array(model["coef"]) + model["intercept"])


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
@pytest.mark.parametrize("chunk_rows", [CHUNK_ROWS, ROWS, scoring.DEFAULT_CHUNK_ROWS])
def test_scores_match_direct_computation(tmp_path, model, table_suffix, out_suffix, chunk_rows):
    frame = audience()
    data = write_table(frame, tmp_path / f"audience{table_suffix}")
    out = tmp_path / f"scores{out_suffix}"
    result = score_file(model, data, id_column="uid", out=out, chunk_rows=chunk_rows)
    assert result.rows == ROWS and result.chunks == -(-ROWS // chunk_rows)
    scores = read_scores(out)
    assert list(scores.columns) == ["uid", "score"]
    assert scores["uid"].tolist() == frame["uid"].tolist()
    np.testing.assert_allclose(scores["score"], expected_scores(frame, model), rtol=0, atol=TOLERANCE)


def test_csv_blocks_smaller_than_a_chunk_are_gathered(tmp_path, model, monkeypatch):
    """Reader blocks of a few rows each, gathered into chunks across block boundaries."""
    monkeypatch.setattr(scoring, "CSV_BLOCK_BYTES", 256)
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


def test_unseen_category_can_be_scored_with_no_category_set(tmp_path, model):
    data = bad_table(tmp_path, ".csv", "device", 41, "tablet")
    score_file(model, data, id_column="uid", out=tmp_path / "scores.csv", unseen="zero")
    spec = json.loads(model.read_text())
    frame = pd.read_csv(data, dtype=str, keep_default_na=False)
    features = FeatureEncoder.from_dict(spec["encoder"]).transform(frame)  # an unknown value sets no column
    assert features[41, [spec["feature_names"].index(f"device={d}") for d in ("android", "ios", "web")]].sum() == 0
    np.testing.assert_allclose(read_scores(tmp_path / "scores.csv")["score"],
                               expit(features @ np.array(spec["coef"]) + spec["intercept"]), rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("content, message", [
    ("{", "model file is not JSON"),
    ('{"kind": "segments"}', "not a lookalike or horizontal logistic regression model file"),
    ('{"kind": "lookalike", "coef": [1.0]}', "model file is incomplete or malformed"),
])
def test_bad_model_file(tmp_path, content, message):
    path = tmp_path / "model.json"
    path.write_text(content)
    with pytest.raises(InputError, match=message):
        LogisticModel.from_file(path)


def test_coefficients_must_match_the_features(tmp_path, model):
    spec = json.loads(model.read_text())
    spec["coef"] = spec["coef"][:-1]
    with pytest.raises(InputError, match="coefficients for"):
        LogisticModel.from_dict(spec, model)


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
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audience.csv", "good.csv", "model.json", "scores.csv"]


def test_existing_output_is_not_replaced_without_overwrite(tmp_path, model):
    data = write_table(audience(), tmp_path / "audience.csv")
    (tmp_path / "scores.csv").write_text("keep me")
    with pytest.raises(InputError, match="already exists"):
        score_file(model, data, id_column="uid", out=tmp_path / "scores.csv")
    assert (tmp_path / "scores.csv").read_text() == "keep me"


# --- the same scores as training's score files ------------------------------------------------------


def test_scores_equal_the_lookalike_score_file(tmp_path):
    """Scoring the media's table with DIR/media/model.json gives DIR/media/scores.csv."""
    media = audience(rows=400, seed=3)
    likeness = media["minutes"].rank(pct=True) + 0.5 * (media["device"] == "ios")
    seed = media.loc[likeness.sort_values(ascending=False).index[:80], ["uid"]]
    media_path = write_table(media, tmp_path / "media.csv")
    run = tmp_path / "run"
    lookalike(seed, media_path, id_column="uid", out=run, min_seed=50, random_state=0)
    score_file(run / "media" / "model.json", media_path, id_column="uid", out=tmp_path / "scores.csv",
               chunk_rows=CHUNK_ROWS)
    ours, theirs = read_scores(tmp_path / "scores.csv"), pd.read_csv(run / "media" / "scores.csv", dtype={"uid": str})
    assert ours["uid"].tolist() == theirs["uid"].tolist()
    np.testing.assert_allclose(ours["score"], theirs["score"], rtol=0, atol=TOLERANCE)


def test_scores_equal_the_horizontal_score_files(tmp_path):
    """Scoring each party's table with DIR/model.json gives DIR/<party>/scores.csv."""
    rng = np.random.default_rng(5)
    parties = []
    for name in ("north", "south", "west"):
        frame = audience(rows=120, seed=len(parties)).drop(columns="region")
        logit = (frame["minutes"] - 30) / 20 + (frame["device"] == "ios")
        frame.insert(1, "y", (rng.random(len(frame)) < expit(logit)).astype(int).astype(str))
        frame["uid"] = [f"{name}-{i}" for i in range(len(frame))]
        frame.loc[:9, "y"] = ""  # rows to score
        parties.append(write_table(frame, tmp_path / f"{name}.csv"))
    run = tmp_path / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PrivacyWarning)  # what the warning says is not under test here
        HorizontalLogisticRegression(rounds=2).fit(parties, id_column="uid", label_column="y", out_dir=run)
    for path in parties:
        score_file(run / "model.json", path, id_column="uid", out=tmp_path / f"{path.stem}_scores.csv",
                   chunk_rows=CHUNK_ROWS)
        ours = read_scores(tmp_path / f"{path.stem}_scores.csv")
        theirs = pd.read_csv(run / path.stem / "scores.csv", dtype={"uid": str})
        assert ours["uid"].tolist() == theirs["uid"].tolist()
        np.testing.assert_allclose(ours["score"], theirs["score"], rtol=0, atol=TOLERANCE)


# --- the command line and the benchmark ----------------------------------------------------------


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


def test_benchmark_smoke(smoke_benchmark):
    table = smoke_benchmark("scoring")["tables"][0]
    assert [row[:4] for row in table["rows"]] == [["parquet", 3000, 0, "fedscore"], ["parquet", 3000, 0, "baseline"],
                                                  ["csv", 3000, 0, "fedscore"], ["csv", 3000, 0, "baseline"]]
    assert all(float(row[-1]) < TOLERANCE for row in table["rows"] if row[3] == "fedscore")
