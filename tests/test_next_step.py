"""An error says what to change, and a run refused for its input leaves nothing to resume."""

import logging

import pandas as pd
from click.testing import CliRunner

from fedscore.cli import main


def _files(tmp_path):
    pd.DataFrame({"uid": [f"c{i}" for i in range(60)]}).to_csv(tmp_path / "seed.csv", index=False)
    pd.DataFrame({"uid": [f"c{i}" for i in range(30, 130)], "visits": range(100),
                  "region": ["north", "south"] * 50}).to_csv(tmp_path / "media.csv", index=False)


def test_a_seed_below_the_minimum_names_the_option_and_the_brand_alone_hears_the_count(tmp_path, caplog):
    _files(tmp_path)
    with caplog.at_level(logging.WARNING, logger="fedscore"):
        result = CliRunner().invoke(main, ["lookalike", "--seed", str(tmp_path / "seed.csv"), "--media",
                                           str(tmp_path / "media.csv"), "--id-column", "uid", "--min-seed", "40",
                                           "--out", str(tmp_path / "out")])
    assert result.exit_code == 1
    error = result.output.strip().splitlines()[-1]
    assert error.startswith("error: party 'brand' failed: fewer IDs matched than the minimum of 40 (--min-seed 40)")
    assert "lower --min-seed" in error and "--resume" not in error
    assert "30" not in error  # the count crosses to the coordinator only in mode both; here it stays in the log
    assert any("30 of the media's IDs are the brand's" in r.getMessage() for r in caplog.records)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["media.csv", "seed.csv"]  # no output, no checkpoint


def test_too_few_matches_in_mode_both_say_how_many(tmp_path):
    _files(tmp_path)
    result = CliRunner().invoke(main, ["psi", "--brand", str(tmp_path / "seed.csv"), "--media",
                                       str(tmp_path / "media.csv"), "--id-column", "uid", "--min-intersection",
                                       "50", "--out", str(tmp_path / "out")])
    assert result.exit_code == 1
    error = result.output.strip().splitlines()[-1]
    assert "only 30 IDs matched; at least 50 are needed (--min-intersection 50)" in error
    assert "--resume" not in error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["media.csv", "seed.csv"]
