"""The benchmarks cannot rot: bench_growth runs at smoke sizes, run_all renders results.

The figures themselves are measured by ``benchmarks/run_all.py``, never in tests.
"""

import importlib.util
import json
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

MACHINE = {"cpu": "Test CPU", "cores": 2, "memory_gib": 8.0, "python": "3.11.7", "system": "Linux"}
PSI_TABLE = {"title": "PSI, both parties learn the intersection (seconds, median)",
             "columns": ["brand IDs", "media IDs", "shared", "PSI s"],
             "rows": [[100_000, 100_000, 50_000, 8.33], [1_000_000, 1_000_000, 500_000, 55.5]]}
SEGMENT_TABLE = {"title": "Vertical KMeans vs scikit-learn", "columns": ["data", "k", "ARI", "target met"],
                 "rows": [["wholesale customers", 3, 0.97, True], ["vehicle", 4, 0.93, False]]}
SMOKE_TABLE_TITLE = "A smoke-size lookalike table that must not be rendered"


def load_module(name):
    """A benchmark script as a module (the scripts live outside the package)."""
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def result(name, tables, notes=(), smoke=False):
    return {"benchmark": name, "date": "2026-01-02", "smoke": smoke, "machine": MACHINE, "tables": tables,
            "notes": list(notes)}


@pytest.fixture
def results_dir(tmp_path):
    folder = tmp_path / "results"
    folder.mkdir()
    for name, payload in {
        "psi": result("psi", [PSI_TABLE], ["Overlap 50%, media IDs upper-cased."]),
        "segment": result("segment", [SEGMENT_TABLE]),
        "lookalike": result("lookalike", [{"title": SMOKE_TABLE_TITLE, "columns": ["backend"], "rows": [["ckks"]]}],
                            smoke=True),
    }.items():
        (folder / f"{name}.json").write_text(json.dumps(payload))
    return folder


@pytest.mark.integration
def test_growth_smoke_writes_tables_and_chart(tmp_path, smoke_benchmark):
    growth = smoke_benchmark("growth")
    assert growth["smoke"] is True
    psi, by_rows, by_features = growth["tables"]
    assert psi["columns"] == ["IDs per party", "shared", "repeats", "seconds", "MB on the wire", "bytes per ID"]
    epoch_columns = ["rows", "brand features", "media features", "epoch s", "MB on the wire", "peak RSS MiB",
                     "measurement s"]
    assert by_rows["columns"] == epoch_columns and by_features["columns"] == epoch_columns
    for table in (psi, by_rows, by_features):
        assert len(table["rows"]) >= 2 and all(len(row) == len(table["columns"]) for row in table["rows"])
    assert all(row[4] > 0 for row in psi["rows"] + by_rows["rows"] + by_features["rows"])  # bytes from the ledger
    assert [figure["path"] for figure in growth["figures"]] == ["growth.png"]
    assert (tmp_path / "growth.png").read_bytes()[:len(PNG_SIGNATURE)] == PNG_SIGNATURE


def test_render_shows_tables_and_targets_and_skips_smoke(results_dir, tmp_path, capsys):
    run_all = load_module("run_all")
    markdown = tmp_path / "RESULTS.md"
    run_all.main(["--render-only", "--out", str(results_dir), "--markdown", str(markdown)])
    text = markdown.read_text(encoding="utf-8")

    assert "## Targets" in text
    assert "| PSI 1,000,000 × 1,000,000 IDs: ≤ 60 s | psi.json | 55.5 s | met |" in text
    assert "| segment.json | lowest ARI 0.93 over 2 runs, on vehicle | missed |" in text
    assert "| scoring.json | no result yet (bench_scoring.py) | not measured |" in text
    assert "| lookalike.json | no result | not measured |" in text

    psi_table = "| brand IDs | media IDs | shared | PSI s |\n|---:|---:|---:|---:|\n| 100000 | 100000 | 50000 | 8.33 |"
    assert psi_table in text
    assert "| wholesale customers | 3 | 0.97 | yes |" in text
    assert "- Overlap 50%, media IDs upper-cased." in text
    assert "Test CPU, 2 cores, 8.0 GiB, Python 3.11.7, Linux" in text
    assert "| psi.json | 2026-01-02 |" in text

    assert SMOKE_TABLE_TITLE not in text
    assert "skipped lookalike.json: written with --smoke" in capsys.readouterr().err


def test_render_twice_gives_the_same_bytes(results_dir, tmp_path):
    run_all = load_module("run_all")
    first, second = tmp_path / "first.md", tmp_path / "second.md"
    run_all.write_markdown(results_dir, first)
    run_all.write_markdown(results_dir, second)
    assert first.read_bytes() == second.read_bytes()


def test_render_fails_loudly_on_a_renamed_column(results_dir, tmp_path):
    run_all = load_module("run_all")
    renamed = dict(PSI_TABLE, columns=["brand IDs", "media IDs", "shared", "PSI seconds"])
    (results_dir / "psi.json").write_text(json.dumps(result("psi", [renamed])))
    with pytest.raises(SystemExit, match="psi.json: no table has the column.*PSI s"):
        run_all.main(["--render-only", "--out", str(results_dir), "--markdown", str(tmp_path / "RESULTS.md")])


def test_smoke_run_needs_its_own_results_folder():
    run_all = load_module("run_all")
    with pytest.raises(SystemExit):
        run_all.parse_args(["--smoke"])


def test_growth_skips_row_counts_projected_over_budget(monkeypatch):
    growth = load_module("bench_growth")
    gib = 2**30

    def fake_epoch_cost(rows, brand_features, media_features):
        """1 GiB and 10 s of fixed cost, plus 2 GiB and 10 s per 100k rows."""
        return {"rows": rows, "brand features": brand_features, "media features": media_features, "epoch s": 1.0,
                "wire bytes": 1, "measurement s": 10 + rows / 10_000, "peak bytes": gib + rows * gib // 50_000}

    monkeypatch.setattr(growth, "epoch_cost", fake_epoch_cost)
    notes = []
    costs = growth.row_sweep((10_000, 100_000, 300_000, 1_000_000), 30, 300, notes)
    assert [c["rows"] for c in costs] == [10_000, 100_000, 300_000]  # 1M: 21 GiB projected, over 16 GiB
    assert len(notes) == 1 and "1,000,000 rows not measured" in notes[0] and "21.0 GiB" in notes[0]


SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.mark.integration
@pytest.mark.skipif(not (SHARED_DATA / "fate").is_dir(), reason="shared data not available")
def test_quality_smoke_covers_every_capability_on_every_data_set(smoke_benchmark):
    quality = smoke_benchmark("quality")
    assert [table["rows"][0][0] for table in quality["tables"]][:5] == [
        "lookalike", "propensity", "propensity, label DP", "horizontal LR", "segment"]
    private, kmeans = quality["tables"][2], quality["tables"][4]
    assert private["rows"][0][2] == 1.0 and private["rows"][0][3] > 0  # epsilon, noise std
    assert {row[0] for row in kmeans["rows"]} == {"segment", "horizontal KMeans"}
    for row in kmeans["rows"]:
        record = dict(zip(kmeans["columns"], row))
        assert record["ARI vs scikit-learn (same encoding, same start)"] >= 0.95
        assert (record["min_category_count"], record["outlier_quantile"]) == (20, 0.005)  # at the defaults
    for table in (quality["tables"][i] for i in (0, 1, 3)):
        assert {"federated AUC", "federated KS", "federated lift@10%", "central AUC", "central KS",
                "central lift@10%"} <= set(table["columns"])
        data = [row[1] for row in table["rows"]]
        assert [name.split()[0] for name in data] == ["bank", "default_credit", "breast", "wholesale"]
        for row in table["rows"]:
            record = dict(zip(table["columns"], row))
            # at smoke sizes (1,000-1,500 users) label DP's noise can take the defaults' model to chance:
            # the protocol's own arithmetic is the opted-out run's
            assert 0.5 < record.get("federated AUC, opted out", record["federated AUC"]) <= 1
            assert 0 <= record["federated AUC"] <= 1 and 0.5 < record["central AUC"] <= 1
            assert record["federated lift@10%"] >= 1 or "federated AUC, opted out" in record
