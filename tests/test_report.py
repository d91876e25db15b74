"""Reports: charts and the self-contained HTML page, from synthetic aggregates."""

import base64
import functools
import html
import json
import os
import re
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from fedscore.report import (build_report, charts, ledger_section, persona_section, read_run, save_report,
                             scoring_section, write_report)
from fedscore.report.jobs import job_report

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
                              [700, 300])
    age_average = 0.7 * 35 + 0.3 * 48
    assert section["overall"][0] == pytest.approx(age_average)
    assert section["segments"][1]["vs_average"][0] == pytest.approx((48 - age_average) / age_average)
    share = 0.7 * 0.2 + 0.3 * 0.1
    assert section["segments"][0]["vs_average"][2] == pytest.approx((0.2 - share) / share)
    assert section["kinds"] == ["number", "number", "share"]


def test_persona_colours_keep_a_small_difference_small_next_to_a_large_one():
    """The scale needs no spread over people, so every party computes it, and it is honest about size."""
    features = ["media.day", "media.pdays", "brand.job=student", "brand.job=retired"]
    means = [[14.6, 245.0, 0.00, 0.20], [15.8, 37.6, 0.02, 0.02], [15.5, -1.0, 0.01, 0.05]]
    section = persona_section("p", features, means, [200, 500, 300])
    day, pdays = ([abs(s["vs_average"][j]) for s in section["segments"]] for j in (0, 1))
    assert max(day) < 0.1 < 1.0 < max(pdays)
    # a rare category's full swing counts for less than a common one's among the traits
    weights = [max(s["weight"][j] for s in section["segments"]) for j in (2, 3)]
    assert weights[0] < weights[1]
    # the same released profiles give the same section, whoever builds it
    assert persona_section("p", features, means, [200, 500, 300], held_by="media")["segments"] == section["segments"]


def test_a_centred_column_is_measured_against_its_largest_mean():
    section = persona_section("p", ["score"], [[-2.0], [2.1]], [100, 100])
    assert [s["vs_average"][0] for s in section["segments"]] == pytest.approx([-2.05 / 2.1, 2.05 / 2.1])


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
                                     held_by="brand", min_size=50, suppressed=1)],
        "ledger": [ledger_section(_entries(), "psi")],
        "learned": {"brand": ["The number of matched users."], "coordinator": ["Sizes and encrypted values only."]},
    }
    path = save_report(report, tmp_path, name="brand")
    document = path.read_text(encoding="utf-8")
    checker = check_self_contained(document)
    assert len(checker.images) == 5  # gain, lift, audience, personas, ledger
    pngs = sorted(p.name for p in tmp_path.glob("brand-*.png"))
    assert pngs == ["brand-audience-1.png", "brand-gain-1.png", "brand-ledger.png", "brand-lift-1.png",
                    "brand-personas-1.png"]
    for text in ("Demo &lt;run&gt;", "AUC", "KS", "top 10 %", "Personas", "Privacy ledger",
                 "brand → coordinator", "private ID matching", "psi.blind_own", "What each party learned",
                 "The number of matched users.", "withheld", "encrypted or sealed"):
        assert text in document, text
    assert "ciphertexts" not in document
    # plain words first; the step names only in the detail view
    assert document.index("private ID matching") < document.index("<details><summary>Protocol step names")
    assert "psi.blind_own" not in document[:document.index("<details><summary>Protocol step names")]


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


# --- Charts: no tick label overlaps another, every point drawn ----------------------------------

@pytest.fixture
def drawn_figures(monkeypatch):
    """Every figure the charts module turns into a PNG during the test."""
    figures = []
    original = charts._png

    def keep(fig):
        figures.append(fig)
        return original(fig)

    monkeypatch.setattr(charts, "_png", keep)
    return figures


def test_the_overlap_check_finds_crowded_labels():
    fig = Figure(figsize=(2.0, 1.5), dpi=charts.DPI)
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.set_xlim(0, 80e6)
    ax.set_xticks(np.arange(0, 80e6, 10e6))
    ax.xaxis.set_major_formatter(lambda x, _: charts.human_bytes(x))  # "20.0 MB40.0 MB..."
    assert charts.overlapping_labels(fig)
    charts.declutter(fig)
    assert charts.overlapping_labels(fig)  # fixed ticks are the figure's to size: declutter leaves them


@pytest.mark.parametrize("total", [900, 45_000, 3_000_000, 87_000_000, 620_000_000, 4.2e9])
def test_ledger_chart_ticks_never_overlap(drawn_figures, total):
    directions = {f"party{i} -> coordinator": {"bytes": int(total / (i + 1)),
                                               "payloads": {"ciphertext": int(total / (i + 1))}} for i in range(4)}
    charts.ledger_chart(directions)
    fig, = drawn_figures
    assert not charts.overlapping_labels(fig)
    ticks = [t.get_text() for t in fig.axes[0].get_xticklabels() if t.get_text()]
    assert len(ticks) >= 2 and all(".0 " not in t for t in ticks), ticks


def test_every_chart_of_a_full_page_has_room_for_its_labels(drawn_figures):
    y, score, base = _scores(n=5000)
    features = [f"brand.f{i}" for i in range(20)] + [f"media.g{i}=x" for i in range(20)]
    means = np.abs(np.random.default_rng(1).normal(size=(4, 40))) * np.r_[[100.0] * 20, [0.3] * 20]
    build_report({"party": "brand",
                  "scoring": [scoring_section("joint", y, score, held_by="brand", compare=[("brand only", base)])],
                  "personas": [persona_section("p", features, means, [4000, 3000, 1200, 60], held_by="brand")],
                  "ledger": [ledger_section(_entries(), "psi")]})
    assert len(drawn_figures) == 5
    for fig in drawn_figures:
        assert not charts.overlapping_labels(fig), fig.axes[0].get_title()


def test_lift_chart_starts_at_the_top_one_percent_and_flags_small_groups(drawn_figures):
    y, score, _ = _scores(n=300)
    section = scoring_section("m", y, score)
    charts.lift_chart([dict(label="m", **section["gain"])], rows=300)
    fig, = drawn_figures
    model = fig.axes[0].get_lines()[0]
    assert min(model.get_xdata()) == pytest.approx(0.01)
    assert "fewer than 20 people" in " ".join(t.get_text() for t in fig.axes[0].get_legend().get_texts())


# --- The ledger in plain words -----------------------------------------------------------------

def test_released_results_are_named_not_counted_as_encrypted():
    entries = _entries() + [
        {"seq": 9, "sender": "coordinator", "receiver": "brand", "step": "segment.write_profiles", "bytes": 2000,
         "fields": {"profile": {"payload": "ciphertext", "bytes": 2000}}},
        {"seq": 10, "sender": "media", "receiver": "coordinator", "step": "segment.profile", "bytes": 2000,
         "fields": {"profile": {"payload": "ciphertext", "bytes": 2000}}}]
    section = ledger_section(entries, "segment")
    to_brand = section["directions"]["coordinator -> brand"]
    assert to_brand["payloads"]["released"] == 2000
    assert to_brand["released"] == {"the other party's averages per released persona": 2000}
    assert to_brand["phases"]["persona profiles"] == 1 and to_brand["steps"]["segment.write_profiles"] == 1
    # sealed for the brand, the same bytes are unreadable to the coordinator that relays them
    assert "released" not in section["directions"]["media -> coordinator"]["payloads"]
    document, _ = build_report({"party": "brand", "ledger": [section]})
    assert "Released to it by design: the other party&#x27;s averages per released persona" in document


# --- Every job's sections, from the party's own folder ------------------------------------------

def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text if isinstance(text, str) else json.dumps(text))


def _job_runs(root):
    """Small run folders of every job, as each job writes them; each media folder holds a secret."""
    runs = {}
    run = runs["psi"] = root / "psi"
    _write(run / "summary.json", {"mode": "both", "intersection": 1234})
    _write(run / "brand" / "psi_report.json", {"ids": {"unique": 4000}, "peer_set_size": 5000, "intersection": 1234})
    _write(run / "media" / "psi_report.json", {"ids": {"unique": 5000, "duplicates": 77777},
                                               "peer_set_size": 4000, "intersection": 1234})
    run = runs["lookalike"] = root / "lookalike"
    _write(run / "summary.json", {"job": "lookalike", "audience_sizes": ["1%", "10%"], "exclude_seed": True})
    _write(run / "brand" / "report.json", {
        "seed_size": 300, "matched_seed": 240, "media_rows": 5000, "chosen_l2": 0.001,
        "holdout": {"rows": 1000, "seed_members": 50, "auc": 0.74, "audiences": [
            {"size": "1pct", "holdout_count": 10, "recall": 0.06, "precision": 0.3},
            {"size": "10pct", "holdout_count": 100, "recall": 0.4, "precision": 0.2}]}})
    (run / "media").mkdir()
    for size, count in (("1pct", 50), ("10pct", 500)):
        pd.DataFrame({"uid": range(count), "score": 0.5}).to_csv(run / "media" / f"audience_{size}.csv", index=False)
    pd.DataFrame({"uid": range(5000), "score": 0.5}).to_csv(run / "media" / "scores.csv", index=False)
    run = runs["propensity"] = root / "propensity"
    y, score, _ = _scores()
    validation = scoring_section("v", y, score)
    _write(run / "summary.json", {"job": "propensity", "psi": {"intersection": 3000}, "ranked_users": 1208,
                                  "epochs_run": 10})
    _write(run / "brand" / "report.json", {
        "matched_users": 3000, "training_users": 1792, "scored_users": 760, "top": {"size": "10%", "count": 76},
        "validation": {"users": 2000, "positives": validation["positives"], "auc": validation["auc"],
                       "ks": validation["ks"], "lift_at_10pct": validation["lift_at_10pct"],
                       "gain": validation["gain"], "audiences": validation["audiences"]}})
    _write(run / "media" / "model.json", {"feature_names": ["day", "MEDIA-SECRET"]})
    run = runs["segment"] = root / "segment"
    _write(run / "summary.json", {"job": "segment", "rows": 3000, "n_iter": 9, "converged": True})
    profiles = pd.DataFrame({"segment": [0, 1, 2], "size": [1500, 1400, 100], "released": ["True", "True", "False"],
                             "brand.age": [35.0, 50.0, 40.0], "media.day": [14.6, 15.8, 15.0],
                             "media.pdays": [245.0, 37.6, 1.0]})
    for role in ("brand", "media"):
        (run / role).mkdir(parents=True)
        profiles.to_csv(run / role / "profiles.csv", index=False)
    run = runs["horizontal_kmeans"] = root / "horizontal_kmeans"
    _write(run / "summary.json", {"job": "horizontal_kmeans", "parties": ["north", "south"],
                                  "rows": {"north": 30, "south": 40}, "n_iter": 5, "converged": True, "dp": None,
                                  "warnings": ["with two parties each can read the other's sums"]})
    for role in ("north", "south"):
        (run / role).mkdir(parents=True)
        pd.DataFrame({"segment": [0, 1], "size": [50, 20], "age": [33.0, 52.0], "balance": [900.0, 2000.0]}).to_csv(
            run / role / "centroids.csv", index=False)
    pd.DataFrame({"uid": range(30), "segment": [0] * 20 + [1] * 10}).to_csv(run / "north" / "segments.csv",
                                                                           index=False)
    run = runs["horizontal_lr"] = root / "horizontal_lr"
    _write(run / "summary.json", {"job": "horizontal_lr", "parties": ["north", "south", "west"], "dp": None})
    _write(run / "north" / "report.json", {
        "rows": 515, "train_rows": 407, "validation_rows": 108, "unlabelled_rows": 0,
        "rounds": [{"round": 1, "validation_auc": 0.58}, {"round": 2, "validation_auc": 0.61}],
        "validation": {"auc": 0.61, "ks": 0.2, "lift_at_10pct": 1.4, "rows": 108, "positives": 14,
                       "audiences": [{"size": 0.01, "count": 1, "precision": 0.0, "recall": 0.0, "lift": 0.0},
                                     {"size": 0.1, "count": 11, "precision": 0.2, "recall": 0.15, "lift": 1.4}]}})
    for run in runs.values():
        (run / "ledger.jsonl").write_text("".join(json.dumps(e) + "\n" for e in _entries()))
    return runs


JOB_PAGES = {
    # job: (party, texts its page must show)
    "psi": ("brand", ["people in both lists", "1,234", "IDs in the media&#x27;s list (distinct)"]),
    "lookalike": ("brand", ["Scoring quality", "held-out media users", "top 1 % = 50 users", "0.740",
                            "seed IDs found among the media&#x27;s users"]),
    "propensity": ("brand", ["Scoring quality", "validation customers", "customers scored (no label yet)"]),
    "segment": ("brand", ["Personas", "media.pdays", "1 persona(s) below that were withheld"]),
    "horizontal_kmeans": ("north", ["Personas", "Of the north&#x27;s 30 rows: A 20, B 10", "with two parties"]),
    "horizontal_lr": ("north", ["Scoring quality", "north&#x27;s validation rows", "0.580, 0.610"]),
}


@pytest.mark.parametrize("job", sorted(JOB_PAGES))
def test_each_jobs_page_shows_what_the_party_holds(tmp_path, job):
    runs = _job_runs(tmp_path)
    party, texts = JOB_PAGES[job]
    document = write_report(runs[job], tmp_path / "out", party=party, job=job, label="my-run").read_text()
    check_self_contained(document)
    for text in texts + ["What each party learned", "Privacy ledger", "Summary"]:
        assert text in document, text
    assert "MEDIA-SECRET" not in document and "77,777" not in document
    assert "<td>my-run</td>" in document


def test_the_statements_follow_the_runs_mode_and_options():
    labelled = job_report("psi", "missing", summary={"mode": "labelled"})["learned"]
    assert "not which of its users matched" in labelled["media"][0]
    both = job_report("psi", "missing", summary={"mode": "both"})["learned"]
    assert "which of its users the brand also has" in both["media"][0]
    exact = job_report("propensity", "missing", summary={"exact_scores": True})["learned"]
    assert any("media's partial score of each" in s for s in exact["brand"])
    two = job_report("horizontal_lr", "missing", summary={"parties": ["a", "b"]})["learned"]
    assert any("with two parties" in s for s in two["each party"])


def test_the_demo_and_a_command_show_a_job_the_same_way(tmp_path):
    runs = _job_runs(tmp_path)
    alone = write_report(runs["lookalike"], tmp_path / "one", party="brand", job="lookalike").read_text()
    demo = write_report({"psi": runs["psi"], "lookalike": runs["lookalike"]}, tmp_path / "demo",
                        party="brand").read_text()
    for text in ("Lookalike quality: seed members found among held-out media users", "top 1 % = 50 users",
                 "Audiences of held-out media users"):
        assert text in alone and text in demo
    assert "Hidden-seed lookalike: which of the media" in demo


def test_a_commands_pages_name_the_folder_asked_for(tmp_path):
    import fedscore

    brand = pd.DataFrame({"uid": [f"u{i}" for i in range(60)], "x": range(60)})
    media = pd.DataFrame({"uid": [f"u{i}" for i in range(30, 120)], "z": range(90)})
    fedscore.psi(brand, media, id_column="uid", out=tmp_path / "run_psi")
    for role in ("brand", "media"):
        document = (tmp_path / "run_psi" / role / "report.html").read_text()
        check_self_contained(document)
        assert "staging" not in document and "<td>run_psi</td>" in document
        assert "people in both lists" in document and "What each party learned" in document
        assert "private ID matching" in document


# --- A real browser ------------------------------------------------------------------------------

BROWSER_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--hide-scrollbars")

PROBE = """<script>window.addEventListener('load', () => {
  const out = {
    images: [...document.images].map(i => ({alt: i.alt, width: i.naturalWidth, height: i.naturalHeight,
                                             complete: i.complete, box: i.getBoundingClientRect().toJSON()})),
    headings: [...document.querySelectorAll('h1, h2, h3')].map(h => h.textContent),
    scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth};
  const pre = document.createElement('pre'); pre.id = 'probe'; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});</script>"""
"""Added to a copy of a page (the page itself holds no script): what the browser laid out."""


@functools.lru_cache(maxsize=None)
def _chromium():
    """(path, None), or (None, why not): the system's Chromium, installed once per session where missing."""
    for name in ("chromium", "chromium-browser"):
        if shutil.which(name):
            return shutil.which(name), None
    if not shutil.which("apt-get") or os.geteuid() != 0:
        return None, "no Chromium, and no apt-get run as root to install it"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=1200, env=env)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return None, f"Chromium could not be installed: {' '.join(command)}: {exc}"
        if done.returncode:
            return None, f"Chromium could not be installed: {' '.join(command)}: {done.stderr.strip()[-300:]}"
    path = shutil.which("chromium")
    return (path, None) if path else (None, "apt-get installed chromium but no chromium binary is on PATH")


@pytest.fixture(scope="session")
def chromium():
    """The path of a headless-capable Chromium (installed by apt where missing); skips only where it cannot be."""
    path, reason = _chromium()
    if path is None:
        pytest.skip(reason)
    return path


def render(browser, html_path, *, width=1280, height=2000):
    """Open a report in headless Chromium: what it laid out, and a screenshot of the page's top."""
    html_path = Path(html_path)
    with tempfile.TemporaryDirectory(prefix="fedscore-render-") as scratch:
        scratch = Path(scratch)
        probe = scratch / "probe.html"
        probe.write_text(html_path.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"),
                         encoding="utf-8")
        flags = [browser, *BROWSER_FLAGS, f"--window-size={width},{height}"]
        dom = subprocess.run([*flags, f"--user-data-dir={scratch / 'a'}", "--virtual-time-budget=10000",
                              "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=180)
        assert dom.returncode == 0, dom.stderr[-2000:]
        found = re.search(r'<pre id="probe">(.*?)</pre>', dom.stdout, re.S)
        assert found, "the page did not finish loading in Chromium"
        layout = json.loads(html.unescape(found.group(1)))
        shot = scratch / "shot.png"
        subprocess.run([*flags, f"--user-data-dir={scratch / 'b'}", f"--screenshot={shot}", html_path.as_uri()],
                       capture_output=True, timeout=180, check=True)
        layout["screenshot"] = shot.read_bytes()
    return layout


def check_rendered(layout, sections, charts_expected):
    """Every chart loaded and laid out without overlapping another; every section present."""
    images = layout["images"]
    assert len(images) == charts_expected
    for image in images:
        assert image["complete"] and image["width"] > 0 and image["height"] > 0, image["alt"]
        assert image["box"]["width"] > 200, image["alt"]
    for i, a in enumerate(images):
        for b in images[i + 1:]:
            a_box, b_box = a["box"], b["box"]
            apart = (a_box["right"] <= b_box["left"] or b_box["right"] <= a_box["left"]
                     or a_box["bottom"] <= b_box["top"] or b_box["bottom"] <= a_box["top"])
            assert apart, (a["alt"], b["alt"])
    assert layout["scrollWidth"] <= layout["innerWidth"], "the page is wider than the window"
    headings = [h.strip() for h in layout["headings"]]
    for section in sections:
        assert any(h.startswith(section) for h in headings), (section, headings)
    png = layout["screenshot"]
    assert png.startswith(PNG_MAGIC) and len(png) > 20000


def test_chromium_renders_every_chart_of_a_report(tmp_path, chromium):
    y, score, _ = _scores()
    page = save_report({"title": "render", "party": "brand",
                        "scoring": [scoring_section("m", y, score, held_by="brand")],
                        "personas": [persona_section("p", ["age", "job=admin."], [[35.0, 0.2], [48.0, 0.1]],
                                                     [700, 300], held_by="brand")],
                        "ledger": [ledger_section(_entries(), "psi")]}, tmp_path)
    check_rendered(render(chromium, page), ["Summary", "Scoring quality", "Personas", "Privacy ledger",
                                            "What each party learned"], charts_expected=5)


def test_the_browser_check_fails_on_a_broken_chart(tmp_path, chromium):
    page = save_report({"title": "render", "ledger": [ledger_section(_entries(), "psi")]}, tmp_path)
    document = page.read_text(encoding="utf-8")
    page.write_text(re.sub(r"data:image/png;base64,[^']+", "data:image/png;base64,AAAA", document))
    with pytest.raises(AssertionError):
        check_rendered(render(chromium, page), ["Privacy ledger"], charts_expected=1)


def test_every_step_has_plain_words_and_every_release_is_in_its_spec():
    """The ledger's vocabulary follows the table of steps and the specs' transcripts."""
    from fedscore.audit import read_transcript
    from fedscore.protocols import JOBS, STEPS
    from fedscore.report import steps

    specs = Path(__file__).resolve().parents[1] / "protocols"
    for step in STEPS:
        assert step in steps.STEP_WORDS or step.partition(".")[0] in steps.PHASES, step
    allowed = set().union(*(read_transcript(specs / job.spec) for job in JOBS.values()))
    for step, field in steps.RELEASED:
        assert any(a[0] == step and a[1] == "coordinator" and a[2] != "coordinator" and a[3] == field
                   for a in allowed), (step, field)
