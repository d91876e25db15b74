"""The reported intervals cover what they claim, and the warnings fire where a figure is weak."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from fedscore import metrics


def _binormal(rng, positives, negatives, separation):
    y = np.r_[np.ones(positives), np.zeros(negatives)]
    return y, rng.normal(size=len(y)) + separation * y


@pytest.mark.parametrize("positives, negatives, separation", [(15, 300, 1.0), (50, 500, 1.0), (200, 2000, 0.5)])
def test_auc_interval_covers_the_true_auc_about_95_percent_of_the_time(positives, negatives, separation):
    """Binormal scores: the true AUC is Φ(separation / √2); 600 draws give coverage within ±2 %."""
    from scipy.stats import norm

    rng = np.random.default_rng(positives)
    true_auc = norm.cdf(separation / np.sqrt(2))
    covered = []
    for _ in range(600):
        y, score = _binormal(rng, positives, negatives, separation)
        low, high = metrics.auc_interval(roc_auc_score(y, score), positives, negatives)
        covered.append(low <= true_auc <= high)
    assert 0.91 <= np.mean(covered) <= 0.99


def test_auc_interval_narrows_with_more_positives():
    wide = np.diff(metrics.auc_interval(0.75, 15, 500))[0]
    narrow = np.diff(metrics.auc_interval(0.75, 500, 500))[0]
    assert narrow < wide / 3
    assert all(np.isnan(metrics.auc_interval(0.75, 0, 500)))


@pytest.mark.parametrize("count, share", [(10, 0.1), (100, 0.02), (1000, 0.3)])
def test_wilson_interval_covers_the_true_share(count, share):
    rng = np.random.default_rng(count)
    hits = rng.binomial(count, share, size=4000)
    covered = [low <= share <= high for low, high in (metrics.proportion_interval(h, count) for h in hits)]
    assert 0.92 <= np.mean(covered) <= 0.99
    assert metrics.proportion_interval(0, count)[0] == pytest.approx(0.0, abs=1e-12)


def test_lift_interval_is_the_precision_interval_over_the_base_rate():
    low, high = metrics.lift_interval(12, 50, 0.1)
    p_low, p_high = metrics.proportion_interval(12, 50)
    assert (low, high) == pytest.approx((p_low / 0.1, p_high / 0.1))
    assert low < 2.4 < high


def test_score_report_carries_the_intervals():
    y, score = _binormal(np.random.default_rng(0), 100, 900, 1.0)
    report = metrics.score_report(y, score)
    low, high = report["auc_interval"]
    assert low < report["auc"] < high
    for audience in report["audiences"]:
        assert audience["precision_interval"][0] <= audience["precision"] <= audience["precision_interval"][1]
        assert audience["lift_interval"][0] <= audience["lift"] <= audience["lift_interval"][1]


def test_warnings_name_few_positives_and_a_lift_below_one():
    assert metrics.reliability_warnings(200, 2.0) == []
    few = metrics.reliability_warnings(15, 2.0)
    assert len(few) == 1 and "15 positives" in few[0]
    worse = metrics.reliability_warnings(200, 0.8)
    assert len(worse) == 1 and "lift 0.80" in worse[0]
    assert len(metrics.reliability_warnings(10, 0.5)) == 2


def test_a_propensity_run_on_few_positives_warns_in_its_report_and_on_the_console(tmp_path):
    """About 40 validation users: the figures rest on fewer than 50 positives, said in all three places."""
    import json

    from click.testing import CliRunner
    from test_propensity import tables

    from fedscore.cli import main

    brand, media = tables(random_state=5)
    brand.to_csv(tmp_path / "brand.csv", index=False)
    media.to_csv(tmp_path / "media.csv", index=False)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, [
        "propensity", "--brand", str(tmp_path / "brand.csv"), "--media", str(tmp_path / "media.csv"),
        "--id-column", "uid", "--label-column", "y", "--out", str(out), "--epochs", "3", "--engine", "local"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "brand" / "report.json").read_text())
    validation = report["validation"]
    low, high = validation["auc_interval"]
    assert low < validation["auc"] < high and high - low > 0.1
    assert validation["positives"] < metrics.MIN_POSITIVES
    assert any(f"{validation['positives']} positives" in text for text in report["warnings"])
    assert f"warning: {report['warnings'][0]}" in result.output
    page = (out / "brand" / "report.html").read_text()
    assert "AUC (95 % interval)" in page and f"{validation['auc']:.3f} ({low:.3f}–{high:.3f})" in page
    assert "class='warn'" in page and "fewer than 50" in page
