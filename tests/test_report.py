"""Reports: charts and the self-contained HTML page, from synthetic aggregates."""

import base64
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest

from fedscore.report import (build_report, charts, ledger_section, persona_section, read_run, save_report,
                             scoring_section, write_report)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
VOID = {"meta", "img", "br", "hr", "input", "link"}


def _scores(n=2000, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.15).astype(float)
    return y, y + rng.normal(size=n), 0.3 * y + rng.normal(size=n)


def _entries():
    hops = [("psi.blind_own", "brand", "coordinator", "blinded_ids", 64000),
            ("psi.blind_own", "coordinator", "media", "blinded_ids", 64000),
            ("lr.gradient", "media", "coordinator", "ciphertext", 1_500_000),
            ("lr.gradient", "coordinator", "brand", "ciphertext", 1_500_000),
            ("lr.metrics", "brand", "coordinator", "aggregate", 40)]
    return [{"seq": i, "sender": s, "receiver": r, "step": step, "bytes": b,
             "fields": {"x": {"payload": p, "bytes": b}}} for i, (step, s, r, p, b) in enumerate(hops)]


class _Checker(HTMLParser):
    """Collect image sources and links, and check that every opened tag is closed in order."""

    def __init__(self):
        super().__init__()
        self.stack, self.images, self.urls, self.errors = [], [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        for name in ("href", "src", "action"):
            if name in attrs and not str(attrs[name]).startswith("data:"):
                self.urls.append(attrs[name])
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}> (open: {self.stack[-3:]})")
        else:
            self.stack.pop()


def check_self_contained(document):
    """Assert the page parses with balanced tags, embeds its images and loads nothing."""
    assert document.startswith("<!DOCTYPE html>")
    checker = _Checker()
    checker.feed(document)
    checker.close()
    assert not checker.errors, checker.errors[:3]
    assert not checker.stack, f"unclosed tags {checker.stack}"
    assert not checker.urls, f"external references {checker.urls}"
    assert not re.search(r"https?://|<script|<link|@import|url\(", document, re.I)
    for src in checker.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG_MAGIC)
    return checker


def test_charts_are_pngs_and_survive_degenerate_input():
    y, score, _ = _scores()
    section = scoring_section("m", y, score)
    curve = dict(label="m", **section["gain"])
    pngs = [
        charts.gain_chart([curve], base_rate=0.15),
        charts.lift_chart([curve]),
        charts.audience_chart(section["audiences"], curve=section["gain"], rows=2000, positives=int(y.sum())),
        charts.audience_chart(section["audiences"]),
        charts.gain_chart([]),
        charts.persona_chart(["a", "b"], [{"segment": "A", "size": 10, "means": [0.5, None]}]),
        charts.persona_chart([f"f{i}" for i in range(40)],
                             [{"segment": s, "size": 5, "means": list(np.linspace(-1, 1, 40) * (i + 1))}
                              for i, s in enumerate("ABC")]),
        charts.ledger_chart(ledger_section(_entries())["directions"]),
        charts.ledger_chart({}),
    ]
    for png in pngs:
        assert png.startswith(PNG_MAGIC) and len(png) > 2000


def test_persona_chart_keeps_the_features_that_differ_most():
    means = np.zeros((2, 30))
    means[0, [3, 17]] = 2.0
    keep = charts.pick_persona_features([f"f{i}" for i in range(30)], means, limit=2)
    assert keep == [3, 17]


def test_persona_section_measures_each_mean_against_the_average():
    section = persona_section("p", ["age", "balance", "job=admin."], [[35.0, 1200.0, 0.2], [48.0, 800.0, 0.1]],
                              [700, 300], scales=[10.0, None, None])
    age_average = 0.7 * 35 + 0.3 * 48
    assert section["overall"][0] == pytest.approx(age_average)
    assert section["segments"][1]["z"][0] == pytest.approx((48 - age_average) / 10)
    share = 0.7 * 0.2 + 0.3 * 0.1
    assert section["segments"][0]["z"][2] == pytest.approx((0.2 - share) / np.sqrt(share * (1 - share)))
    assert section["relative"] == ["balance"] and section["kinds"] == ["number", "number", "share"]


def test_scoring_section_holds_only_aggregates():
    y, score, base = _scores()
    section = scoring_section("joint", y, score, held_by="brand", compare=[("brand only", base)])
    assert section["auc"] > section["compare"][0]["auc"] > 0.5
    assert len(section["gain"]["fraction"]) == 100 < len(y)
    assert section["rows"] == len(y) and section["positives"] == int(y.sum())
    json.dumps(section)  # plain, serialisable values only


def test_report_page_is_self_contained_and_complete(tmp_path):
    y, score, base = _scores()
    report = {
        "title": "Demo <run>",
        "party": "brand",
        "facts": [["matched users", 3000], ["AUC", 0.7712]],
        "scoring": [scoring_section("joint", y, score, held_by="brand", compare=[("brand only", base)])],
        "personas": [persona_section("personas", ["age", "balance", "job=admin."],
                                     [[35.0, 1200.0, 0.2], [48.0, 800.0, 0.1]], [700, 300],
                                     scales=[10.0, None, None], held_by="brand", min_size=50, suppressed=1)],
        "ledger": [ledger_section(_entries(), "psi")],
        "learned": {"brand": ["The number of matched users."], "coordinator": ["Sizes and ciphertexts only."]},
    }
    path = save_report(report, tmp_path, name="brand")
    document = path.read_text(encoding="utf-8")
    checker = check_self_contained(document)
    assert len(checker.images) == 5  # gain, lift, audience, personas, ledger
    pngs = sorted(p.name for p in tmp_path.glob("brand-*.png"))
    assert pngs == ["brand-audience-1.png", "brand-gain-1.png", "brand-ledger.png", "brand-lift-1.png",
                    "brand-personas-1.png"]
    for text in ("Demo &lt;run&gt;", "AUC", "KS", "top 10 %", "Personas", "Privacy ledger",
                 "brand → coordinator", "psi.blind_own", "What each party learned", "The number of matched users.",
                 "withheld", "ciphertexts"):
        assert text in document, text


def test_a_party_view_leaves_out_the_other_partys_sections():
    y, score, _ = _scores()
    report = {"party": "brand", "scoring": [scoring_section("MEDIA-ONLY-SECTION", y, score, held_by="media")]}
    document, images = build_report(report)
    assert "MEDIA-ONLY-SECTION" not in document and not images
    assert "held by another party" in document


def test_an_empty_report_is_still_a_valid_page():
    document, images = build_report({})
    check_self_contained(document)
    assert images == {} and "no results" in document


def _fake_run(root, name, secret):
    run = root / name
    for role in ("brand", "media"):
        (run / role).mkdir(parents=True)
    summary = {"job": name, "matched": 1234, "nested": {"rounds": 3}, "big": [1, 2]}
    (run / "summary.json").write_text(json.dumps(summary))
    (run / "ledger.jsonl").write_text("".join(json.dumps(e) + "\n" for e in _entries()))
    y, score, _ = _scores()
    own = {"scoring": [scoring_section(f"{name} brand model", y, score, held_by="brand")],
           "learned": {"brand": "Brand statement."}}
    (run / "brand" / "report_sections.json").write_text(json.dumps(own))
    theirs = {"facts": [[secret, 1]], "learned": {"media": secret}, "notes": secret}
    (run / "media" / "report_sections.json").write_text(json.dumps(theirs))
    return run


def test_write_report_reads_only_the_shared_files_and_the_partys_own_folder(tmp_path):
    run = _fake_run(tmp_path, "propensity", "MEDIA-SECRET")
    part = read_run(run, party="brand")
    assert ["propensity: matched", 1234] in part["details"] and ["propensity: nested rounds", 3] in part["details"]
    path = write_report(run, party="brand", title="t")
    assert path == run / "report" / "brand.html"
    document = path.read_text(encoding="utf-8")
    check_self_contained(document)
    assert "propensity brand model" in document and "Brand statement." in document
    assert "MEDIA-SECRET" not in document
    media = write_report(run, party="media").read_text(encoding="utf-8")
    assert "MEDIA-SECRET" in media and "propensity brand model" not in media


def test_write_report_over_several_runs_and_missing_files(tmp_path):
    first = _fake_run(tmp_path, "psi", "S")
    empty = tmp_path / "segment"
    empty.mkdir()
    path = write_report({"psi": first, "segment": empty}, tmp_path / "out", party="brand")
    check_self_contained(path.read_text(encoding="utf-8"))
    assert (tmp_path / "out" / "brand-ledger.png").is_file()


@pytest.mark.skipif(not any(shutil.which(b) for b in ("chromium", "chromium-browser")), reason="no Chromium")
def test_chromium_renders_the_report_offline(tmp_path):
    y, score, _ = _scores()
    html_path = save_report({"title": "render", "scoring": [scoring_section("m", y, score)]}, tmp_path)
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    png = tmp_path / "shot.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={png}", "--window-size=1000,1400",
                    html_path.as_uri()], check=True, timeout=120, capture_output=True)
    assert png.read_bytes().startswith(PNG_MAGIC) and png.stat().st_size > 20000
