"""The demo end to end on the shipped data, with small settings, and its shipped files."""

import hashlib
import json
import re

import pandas as pd
import pytest
from click.testing import CliRunner

from fedscore.demo import DATA_FILES, PHASES, demo_data_dir, prepare_data, run_demo
from test_report import PNG_MAGIC, check_rendered, check_self_contained, chromium, render  # noqa: F401 (a fixture)

AVAILABLE = [p.name for p in PHASES if p.available]
needs_a_protocol = pytest.mark.skipif(not AVAILABLE, reason="no demo protocol in this installation")


def test_shipped_data_has_a_partial_overlap_and_a_seed_list():
    brand = pd.read_csv(demo_data_dir() / DATA_FILES["brand"], dtype=str, keep_default_na=False)
    media = pd.read_csv(demo_data_dir() / DATA_FILES["media"], dtype=str, keep_default_na=False)
    seed = pd.read_csv(demo_data_dir() / DATA_FILES["seed"], dtype=str, keep_default_na=False)
    assert list(brand.columns) == ["uid", "age", "job", "marital", "education", "default", "balance", "housing",
                                   "loan", "y"]
    assert list(media.columns) == ["uid", "contact", "day", "month", "campaign", "pdays", "previous", "poutcome"]
    common = set(brand.uid) & set(media.uid)
    assert 0 < len(common) < min(len(brand), len(media))
    assert set(brand.y) == {"yes", "no", ""}
    assert set(seed.uid) == set(brand.uid[brand.y == "yes"])
    assert (demo_data_dir() / "README.md").read_text().count("CC BY 4.0")


def test_small_subset_keeps_the_overlap(tmp_path):
    data = prepare_data(tmp_path, small=True)
    brand, media = (pd.read_csv(p, dtype=str) for p in (data.brand, data.media))
    assert 1000 < len(brand) < 2500 and 1000 < len(media) < 3000
    assert len(set(brand.uid) & set(media.uid)) > 500
    assert pd.read_csv(data.seed, dtype=str).uid.isin(brand.uid).all()


def _check_demo_folder(out):
    summary = json.loads((out / "summary.json").read_text())
    for name in AVAILABLE:
        if name in summary["phases"]:
            assert (out / name / "ledger.jsonl").is_file() and (out / name / "summary.json").is_file()
    for role in ("brand", "media"):
        document = (out / "report" / f"{role}.html").read_text(encoding="utf-8")
        checker = check_self_contained(document)
        assert checker.images and "Privacy ledger" in document and "What each party learned" in document
        pngs = list((out / "report").glob(f"{role}-*.png"))
        assert len(pngs) == len(checker.images)
        assert all(p.read_bytes().startswith(PNG_MAGIC) for p in pngs)
    return summary


QUICK = {"propensity": {"epochs": 3, "paillier_key_bits": 1024}, "segment": {"n_init": 1, "max_iter": 8}}
"""Lighter settings than --small, for a test: short Paillier keys (the library warns), few iterations."""


PHASE_SECTIONS = {
    # phase: (role, a section its command's page shows that role)
    "psi": ("brand", "people in both lists"),
    "lookalike": ("brand", "Scoring quality"),
    "propensity": ("brand", "Scoring quality"),
    "segment": ("media", "Personas"),
}


@needs_a_protocol
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_demo_end_to_end_in_process(tmp_path, chromium):  # noqa: F811
    out = tmp_path / "demo"
    result = run_demo(out, engine="local", small=True, options={k: v for k, v in QUICK.items() if k in AVAILABLE})
    summary = _check_demo_folder(out)
    assert {n for n, p in summary["phases"].items() if "skipped" not in p} == set(AVAILABLE)
    assert result["reports"]["brand"] == out / "report" / "brand.html"
    brand_report = (out / "report" / "brand.html").read_text(encoding="utf-8")
    if "psi" in AVAILABLE:
        common = summary["phases"]["psi"]["summary"]["intersection"]
        assert f"{common:,}" in brand_report
    if "segment" in AVAILABLE:
        assert "Personas" in brand_report and (out / "report" / "brand-personas-1.png").is_file()
        media_report = (out / "report" / "media.html").read_text(encoding="utf-8")
        persona_table = re.compile(r"<h3>Personas of the people both parties know.*?(<table>.*?</table>)", re.S)
        # the same personas, the same story on both parties' pages
        assert persona_table.search(brand_report).group(1) == persona_table.search(media_report).group(1)
        assert (out / "report" / "brand-personas-1.png").read_bytes() == \
            (out / "report" / "media-personas-1.png").read_bytes()
    # each phase's own page, as its command writes it, names the phase's folder, not a staging folder
    for name in AVAILABLE:
        role, section = PHASE_SECTIONS[name]
        page = (out / name / role / "report.html").read_text(encoding="utf-8")
        check_self_contained(page)
        assert section in page and "What each party learned" in page and "staging" not in page
        assert f"<td>{name}</td>" in page
    sections = ["Summary", "Privacy ledger", "What each party learned", "Messages by direction"]
    sections += ["Scoring quality"] if {"lookalike", "propensity"} & set(AVAILABLE) else []
    sections += ["Personas"] if "segment" in AVAILABLE else []
    brand_pngs = len(list((out / "report").glob("brand-*.png")))
    check_rendered(render(chromium, out / "report" / "brand.html", height=3000), sections, brand_pngs)


@needs_a_protocol
@pytest.mark.integration
def test_demo_command_in_simulation_refuses_to_overwrite(tmp_path):
    from fedscore.cli import main

    out = tmp_path / "demo"
    runner = CliRunner()
    first = AVAILABLE[0]
    result = runner.invoke(main, ["demo", "--out", str(out), "--small", "--phase", first, "--engine", "simulation"])
    assert result.exit_code == 0, result.output
    assert "brand report" in result.output and first in json.loads((out / "summary.json").read_text())["phases"]
    assert json.loads((out / "summary.json").read_text())["engine"] == "simulation"
    _check_demo_folder(out)
    again = runner.invoke(main, ["demo", "--out", str(out), "--small", "--phase", first, "--engine", "local"])
    assert again.exit_code == 1 and "already exists" in again.output and "Traceback" not in again.output


def test_make_demo_data_reproduces_the_shipped_files(tmp_path):
    """The generator's output is byte for byte the shipped files (needs the UCI source)."""
    import importlib.util
    import os
    from pathlib import Path

    source = os.environ.get("FEDSCORE_BANK_FULL_CSV")
    if not source or not Path(source).is_file():
        pytest.skip("set FEDSCORE_BANK_FULL_CSV to the UCI bank-full CSV with a uid column")
    spec = importlib.util.spec_from_file_location("make_demo_data", Path(__file__).parents[1] / "examples" /
                                                  "make_demo_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    brand, media, seed = module.make_demo_data(source)
    for name, frame in (("bank_brand.csv", brand), ("bank_media.csv", media), ("bank_seed.csv", seed)):
        frame.to_csv(tmp_path / name, index=False, lineterminator="\n")
        digest = hashlib.sha256((tmp_path / name).read_bytes()).hexdigest()
        assert digest == hashlib.sha256((demo_data_dir() / name).read_bytes()).hexdigest(), name
