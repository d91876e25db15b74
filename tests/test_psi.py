import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import fedscore
from fedscore import parallel
from fedscore.audit import audit_ledger, read_transcript
from fedscore.cli import main
from fedscore.errors import InputError, PartyError, ProtocolError
from fedscore.ids import normalise
from fedscore.ledger import COORDINATOR, Ledger, read_ledger
from fedscore.protocols.psi import engine, group
from fedscore.protocols.psi.coordinator import intersect
from fedscore.protocols.psi.options import MODES, PSIOptions
from fedscore.protocols.psi.party import BrandFlags, MediaOrder
from fedscore.runtime.coordinator import Coordinator
from fedscore.runtime.local import LocalTransport
from fedscore.runtime.runner import run_job

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "protocols" / "psi.md"


def write_ids(path, ids, column="id"):
    pd.DataFrame({column: ids, "value": range(len(ids))}).to_csv(path, index=False)
    return path


class RecordingTransport(LocalTransport):
    """The local transport, keeping every encoded field that crossed a party boundary."""

    def __init__(self, party_configs):
        super().__init__(party_configs)
        self.crossed = []

    def exchange(self, requests, timeout=None):
        replies = super().exchange(requests, timeout)
        for request, reply in zip(requests, replies):
            self.crossed += list(request.fields.values()) + list((reply.fields or {}).values())
        return replies


def run_local(tmp_path, brand_ids, media_ids, **options):
    """Run PSI in this process; return (summary, transport, ledger entries)."""
    configs = {"brand": {"data": str(write_ids(tmp_path / "brand.csv", brand_ids)), "out": str(tmp_path)},
               "media": {"data": str(write_ids(tmp_path / "media.csv", media_ids)), "out": str(tmp_path)}}
    transport = RecordingTransport(configs)
    ledger = Ledger()
    summary = intersect(Coordinator(transport, ledger), PSIOptions.from_dict(options))
    return summary, transport, ledger.entries


def state(transport, role):
    return transport.parties[role].state


def test_both_mode_finds_a_partial_overlap_in_one_shared_order(tmp_path):
    brand = [f"user{i}@example.com" for i in range(0, 300)]
    media = [f"user{i}@example.com" for i in range(200, 600)][::-1]
    summary, transport, _ = run_local(tmp_path, brand, media)
    assert summary["intersection"] == 100
    assert summary["brand"] == {"rows": 300, "unique": 300, "empty": 0, "duplicates": 0}
    b, m = state(transport, "brand")["psi"], state(transport, "media")["psi"]
    assert list(b.ids) == list(m.ids)  # the same IDs, row by row
    assert set(b.ids) == {f"user{i}@example.com" for i in range(200, 300)}
    assert [brand[r] for r in b.rows] == list(b.ids)
    assert [media[r] for r in m.rows] == list(m.ids)
    assert (b.size, b.peer_size, m.size, m.peer_size) == (300, 400, 400, 300)
    # the secret scalars went with the scratch state
    assert "psi.blinding" not in state(transport, "brand") and "psi.blinding" not in state(transport, "media")


def test_duplicates_empty_ids_and_normalisation(tmp_path):
    brand = ["Ana@Mail.com", "", "ana@mail.com ", "+1 (555) 010-9999", "5F4DCC3B5AA765D61D8327DEB882CF99",
             "CUST-1", "bob@x.org"]
    media = ["15550109999", " ANA@MAIL.COM", "5f4dcc3b5aa765d61d8327deb882cf99", "cust-1", "   ", "zed@x.org",
             "15550109999"]
    summary, transport, _ = run_local(tmp_path, brand, media)
    assert summary["brand"] == {"rows": 7, "unique": 5, "empty": 1, "duplicates": 1}
    assert summary["media"] == {"rows": 7, "unique": 5, "empty": 1, "duplicates": 1}
    assert summary["intersection"] == 3  # "CUST-1" and "cust-1" are other text: case matters
    b, m = state(transport, "brand")["psi"], state(transport, "media")["psi"]
    assert list(normalise(b.ids)[0]) == list(normalise(m.ids)[0])
    assert set(b.ids) == {"Ana@Mail.com", "+1 (555) 010-9999", "5F4DCC3B5AA765D61D8327DEB882CF99"}
    assert sorted(b.rows) == [0, 3, 4]  # the first row of a duplicated ID
    assert sorted(m.rows) == [0, 1, 2]


def test_empty_intersection(tmp_path):
    summary, transport, _ = run_local(tmp_path, ["a@x.com", "b@x.com"], ["c@x.com"])
    assert summary["intersection"] == 0
    for role in ("brand", "media"):
        assert len(state(transport, role)["psi"].ids) == 0


def test_labelled_mode_gives_the_brand_flags_in_the_media_row_order(tmp_path):
    media = ["m1", "B2", "m3", "", "b4", "m5", "B2"]
    brand = ["b4", "x9", "b2", "B2"]
    summary, transport, entries = run_local(tmp_path, brand, media, mode="labelled")
    assert "intersection" not in summary
    b, m = state(transport, "brand")["psi"], state(transport, "media")["psi"]
    assert isinstance(b, BrandFlags) and isinstance(m, MediaOrder)  # the media holds no flag
    # media PSI order: its distinct non-empty IDs in order of first appearance
    assert list(m.rows) == [0, 1, 2, 4, 5]
    assert list(b.flags) == [False, True, False, True, False]
    assert list(b.brand_rows) == [-1, 3, -1, 0, -1]  # "b2" is other text than "B2"
    assert (b.matched, b.size, b.peer_size) == (2, 4, 5)
    assert m.peer_size == 4
    # the media gets no double-blinded value of its own IDs and no count: nothing after psi.blind_peer
    to_media = [e for e in entries if e["receiver"] == "media"]
    assert [e["step"] for e in to_media] == ["psi.blind_own", "psi.blind_peer"]
    replies = [e for e in entries if e["receiver"] == COORDINATOR]
    assert all("matched" not in e["fields"] for e in replies)


def test_nothing_that_crosses_a_party_boundary_holds_an_id(tmp_path):
    brand = [f"Person{i}@Example.com" for i in range(50)] + ["+44 20 7946 0958"]
    media = [f"person{i}@example.com" for i in range(25, 80)] + ["442079460958"]
    for mode in MODES:
        _, transport, entries = run_local(tmp_path, brand, media, mode=mode)
        crossed, ledger = b"".join(transport.crossed), json.dumps(entries)
        for value in {*brand, *media, *normalise(brand)[0], *normalise(media)[0]}:
            assert value.encode() not in crossed and value not in ledger
        assert audit_ledger(entries, read_transcript(SPEC)) == []
        # the double-blinded sets reach the coordinator only sealed
        payloads = {(e["step"], name): f["payload"] for e in entries for name, f in e["fields"].items()}
        assert payloads[("psi.blind_peer", "sealed")] == "ciphertext"
        assert payloads[("psi.match", "sealed")] == "ciphertext"


def test_psi_job_writes_files_ledger_and_summary(tmp_path):
    brand = write_ids(tmp_path / "b.csv", ["Ana@Mail.com", "bob@x.org", "eve@x.org"], column="ID")
    media = write_ids(tmp_path / "m.csv", ["EVE@x.org", "ana@mail.com", "zed@x.org"], column="ID")
    out = tmp_path / "out"
    summary = run_job("psi", {"id_column": "ID"}, {"brand": {"data": str(brand)}, "media": {"data": str(media)}}, out)
    assert summary["intersection"] == 2
    b = pd.read_csv(out / "brand" / "intersection.csv")
    m = pd.read_csv(out / "media" / "intersection.csv")
    assert list(b.columns) == ["ID"] and len(b) == 2
    assert list(normalise(b["ID"])[0]) == list(normalise(m["ID"])[0])
    report = json.loads((out / "brand" / "psi_report.json").read_text())
    assert report["ids"]["kinds"] == {"email": 3}
    assert report["x25519_engine"] == engine.default_engine().detail
    assert audit_ledger(read_ledger(out / "ledger.jsonl"), read_transcript(SPEC)) == []
    assert json.loads((out / "summary.json").read_text()) == summary


def test_minimum_intersection_stops_the_run(tmp_path):
    with pytest.raises(PartyError, match="only 1 IDs matched; at least 5 are needed"):
        run_local(tmp_path, ["a", "b"], ["a", "c"], min_intersection=5)
    with pytest.raises(PartyError, match="fewer IDs matched than the minimum of 5") as info:
        run_local(tmp_path, ["a", "b"], ["a", "c"], mode="labelled", min_intersection=5)
    assert "1" not in str(info.value).split("minimum")[1].split("at least")[0]


def test_unknown_mode_is_refused(tmp_path):
    with pytest.raises(InputError, match="mode= must be one of both, labelled, not 'all'"):
        run_local(tmp_path, ["a"], ["a"], mode="all")


# --- the group ----------------------------------------------------------------------------

def on_curve(point):
    u = int.from_bytes(point, "little")
    return pow(u * (u * (u + group.MONTGOMERY_A) + 1), (group.FIELD_PRIME - 1) // 2, group.FIELD_PRIME) == 1


def test_blinding_commutes_and_stays_on_the_curve():
    ids = np.array(["a@x.com", "b@x.com", "555"], dtype=object)
    a, b = os.urandom(32), os.urandom(32)
    by_a = group.hash_and_blind(ids, a, group.hash_domain("run"))
    by_b = group.hash_and_blind(ids, b, group.hash_domain("run"))
    assert all(on_curve(p.tobytes()) for p in by_a)
    np.testing.assert_array_equal(group.blind_received(by_a, b), group.blind_received(by_b, a))
    assert len({p.tobytes() for p in by_a}) == 3


def test_parallel_blinding_matches_sequential(monkeypatch):
    ids = np.array([f"id{i}" for i in range(parallel.PARALLEL_MIN_ITEMS + 10)], dtype=object)
    key, domain = os.urandom(32), group.hash_domain("run")
    spread = group.hash_and_blind(ids, key, domain)
    monkeypatch.setattr(parallel, "WORKERS", 1)
    np.testing.assert_array_equal(spread, group.hash_and_blind(ids, key, domain))


def test_the_hash_is_separated_per_run():
    ids, key = np.array(["a@x.com"], dtype=object), os.urandom(32)
    assert not np.array_equal(group.hash_and_blind(ids, key, group.hash_domain("run-1")),
                              group.hash_and_blind(ids, key, group.hash_domain("run-2")))


def point(u):
    return np.frombuffer(u.to_bytes(32, "little"), dtype=np.uint8).reshape(1, 32)


def test_received_values_are_validated():
    good = group.hash_and_blind(np.array(["x"], dtype=object), os.urandom(32), b"d")
    group.check_points(good, "points", expected=1)
    for bad, match in [(point(0), "not a canonical"), (point(group.FIELD_PRIME), "not a canonical"),
                       (point(2**255 - 1), "not a canonical"), (np.zeros((1, 31), np.uint8), r"\(n, 32\) array"),
                       (good.astype(np.int16), r"\(n, 32\) array"), ([1, 2], r"\(n, 32\) array")]:
        with pytest.raises(ProtocolError, match=match):
            group.check_points(bad, "points")
    with pytest.raises(ProtocolError, match="holds 1 values, expected 2"):
        group.check_points(good, "points", expected=2)
    twist = next(u for u in range(2, 100) if not on_curve(u.to_bytes(32, "little")))
    with pytest.raises(ProtocolError, match="not a point of the curve"):
        group.blind_received(point(twist), os.urandom(32))
    small_order = next(u for u in (1, group.FIELD_PRIME - 1) if on_curve(u.to_bytes(32, "little")))
    with pytest.raises(ProtocolError, match="small order"):
        group.blind_received(point(small_order), os.urandom(32))


# --- the X25519 engines ------------------------------------------------------------------

MULTI_BUFFER, MULTI_BUFFER_MISSING = engine.load_multi_buffer()
needs_multi_buffer = pytest.mark.skipif(MULTI_BUFFER is None, reason=f"no multi-buffer X25519 here: "
                                                                      f"{MULTI_BUFFER_MISSING}")


def random_points(n, seed=0):
    """``n`` canonical u-coordinates, about half of them on the twist."""
    rng = np.random.default_rng(seed)
    points = rng.integers(0, 256, size=(n, 32), dtype=np.uint8)
    points[:, -1] &= 0x7F
    return points


@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 100])
def test_both_engines_give_the_same_bytes_as_rfc_7748(n):
    scalar, point, expected = engine.KNOWN_ANSWER
    known = np.frombuffer(point, dtype=np.uint8).reshape(1, 32)
    sodium = engine.SodiumEngine()
    assert sodium.multiply(known, scalar).tobytes() == expected
    points = np.concatenate([known, random_points(n)])[:n] if n else random_points(0)
    key = os.urandom(32)
    by_sodium = sodium.multiply(points, key)
    assert by_sodium.shape == (n, 32)
    if MULTI_BUFFER is not None:
        assert MULTI_BUFFER.multiply(known, scalar).tobytes() == expected
        np.testing.assert_array_equal(MULTI_BUFFER.multiply(points, key), by_sodium)


@needs_multi_buffer
def test_batched_blinding_equals_the_fallback_on_every_core():
    ids = np.array([f"id{i}" for i in range(parallel.PARALLEL_MIN_ITEMS + 13)], dtype=object)
    key, domain = os.urandom(32), group.hash_domain("run")
    fast = group.hash_and_blind(ids, key, domain, MULTI_BUFFER)
    np.testing.assert_array_equal(fast, group.hash_and_blind(ids, key, domain, engine.SodiumEngine()))
    other = os.urandom(32)
    np.testing.assert_array_equal(group.blind_received(fast, other, MULTI_BUFFER),
                                  group.blind_received(fast, other, engine.SodiumEngine()))


def test_the_engine_falls_back_to_libsodium(monkeypatch):
    monkeypatch.setattr(engine, "_SELECTED", {})
    monkeypatch.setenv(engine.ENGINE_VARIABLE, "libsodium")
    assert isinstance(engine.default_engine(), engine.SodiumEngine)
    assert engine.ENGINE_VARIABLE in engine.fallback_reason()
    monkeypatch.setattr(engine, "_SELECTED", {})
    monkeypatch.delenv(engine.ENGINE_VARIABLE)
    monkeypatch.setattr(engine, "_library_file", lambda distribution, names: None)
    assert isinstance(engine.default_engine(), engine.SodiumEngine)
    assert engine.fallback_reason() == "the ipp-crypto package is not installed"
    assert engine.load_multi_buffer() == (None, "the ipp-crypto package is not installed")


@needs_multi_buffer
def test_a_cpu_without_avx512_ifma_falls_back_to_libsodium(monkeypatch):
    import ctypes

    library = ctypes.CDLL(engine._library_file("ipp-crypto", engine._MB_LIBRARY))
    library.mbx_get_cpu_features.restype = ctypes.c_uint64
    library.mbx_set_cpu_features.argtypes = [ctypes.c_uint64]
    features = library.mbx_get_cpu_features()
    library.mbx_set_cpu_features(features & 0xFFFF)  # IPP's feature bits up to AVX2: no AVX-512 at all
    try:
        found, reason = engine.load_multi_buffer()
        assert found is None and reason == "this CPU lacks the AVX-512 IFMA instructions mbx_x25519_mb8 needs"
        monkeypatch.setattr(engine, "_SELECTED", {})
        monkeypatch.delenv(engine.ENGINE_VARIABLE, raising=False)
        assert isinstance(engine.default_engine(), engine.SodiumEngine)
        assert "AVX-512 IFMA" in engine.fallback_reason()
    finally:
        library.mbx_set_cpu_features(features)
    assert engine.load_multi_buffer()[0] is not None


def test_the_psi_report_names_the_fallback_and_why(tmp_path, monkeypatch):
    brand = write_ids(tmp_path / "b.csv", ["a@x.org", "b@x.org", "c@x.org"])
    media = write_ids(tmp_path / "m.csv", ["c@x.org", "a@x.org", "d@x.org"])
    runs = {}
    for name in ("default", "libsodium"):
        monkeypatch.setattr(engine, "_SELECTED", {})
        if name == "libsodium":
            monkeypatch.setenv(engine.ENGINE_VARIABLE, "libsodium")
        out = tmp_path / name
        run_job("psi", {}, {"brand": {"data": str(brand)}, "media": {"data": str(media)}}, out)
        runs[name] = (json.loads((out / "brand" / "psi_report.json").read_text()),
                      pd.read_csv(out / "brand" / "intersection.csv"))
    report, found = runs["libsodium"]
    assert report["x25519_engine"].startswith("libsodium through PyNaCl")
    assert report["x25519_fallback_reason"] == f"{engine.ENGINE_VARIABLE}=libsodium"
    default_report, default_found = runs["default"]
    assert ("x25519_fallback_reason" in default_report) == (MULTI_BUFFER is None)
    assert sorted(found["id"]) == sorted(default_found["id"]) == ["a@x.org", "c@x.org"]


@pytest.mark.parametrize("which", ["sodium", "multi-buffer"])
def test_small_order_points_are_refused_whatever_the_engine(which):
    if which == "multi-buffer" and MULTI_BUFFER is None:
        pytest.skip(f"no multi-buffer X25519 here: {MULTI_BUFFER_MISSING}")
    chosen = MULTI_BUFFER if which == "multi-buffer" else engine.SodiumEngine()
    good = group.hash_and_blind(np.array([f"x{i}" for i in range(20)], dtype=object), os.urandom(32), b"d")
    for u in sorted(group.SMALL_ORDER_POINTS):
        points = np.concatenate([good[:10], point(u), good[10:]])
        group.check_points(points, "points")  # canonical and non-zero: only the group check refuses them
        with pytest.raises(ProtocolError, match="small order"):
            group.blind_received(points, os.urandom(32), chosen)
    # X25519 maps those of the curve to zero (libsodium refuses them): either engine leaves zero rows.
    # For p - 1, of the twist, the multi-buffer engine returns a non-zero value: why they are refused first.
    curve_points = [u for u in group.SMALL_ORDER_POINTS if u != group.FIELD_PRIME - 1]
    zero = chosen.multiply(np.concatenate([good[:3]] + [point(u) for u in curve_points]), os.urandom(32))
    assert zero[:3].any(axis=1).all() and not zero[3:].any()


def test_a_set_partly_on_the_twist_is_refused_by_the_sampled_curve_check():
    key = os.urandom(32)
    mixed = random_points(1000, seed=1)  # a hash onto both the curve and its twist, as SecretFlow's
    assert 300 < (~group.on_curve(mixed)).sum() < 700
    with pytest.raises(ProtocolError, match="not a point of the curve"):
        group.blind_received(mixed, key)
    # a set no larger than the sample is checked point by point
    twist = next(u for u in range(2, 100) if not on_curve(u.to_bytes(32, "little")))
    good = group.hash_and_blind(np.array([f"x{i}" for i in range(group.RECEIVED_CURVE_SAMPLE - 1)], dtype=object),
                                key, b"d")
    with pytest.raises(ProtocolError, match="not a point of the curve"):
        group.blind_received(np.concatenate([good, point(twist)]), key)
    assert len(group.random_sample(10**6, group.RECEIVED_CURVE_SAMPLE)) == group.RECEIVED_CURVE_SAMPLE


def test_matching_on_prefixes_agrees_with_matching_whole_values():
    rng = np.random.default_rng(3)
    own = rng.integers(0, 256, size=(500, 32), dtype=np.uint8)
    peer = np.concatenate([own[100:300], rng.integers(0, 256, size=(300, 32), dtype=np.uint8)])[rng.permutation(500)]
    decoy = own[400].copy()
    decoy[20] ^= 1  # same 8-byte prefix as own[400], another value
    for peer_set in (peer, np.concatenate([peer, decoy[None]])):
        own_index, peer_index = group.intersect(own, peer_set)
        _, expected_own, expected_peer = np.intersect1d(group.as_keys(own), group.as_keys(peer_set),
                                                        return_indices=True)
        np.testing.assert_array_equal(own_index, expected_own)
        np.testing.assert_array_equal(peer_index, expected_peer)
        assert len(own_index) == 200
    twin = own.copy()
    twin[1, :8] = twin[0, :8]  # a shared prefix: distinct values all the same
    assert group.distinct(own) and group.distinct(twin)
    assert not group.distinct(np.concatenate([own, own[:1]]))


# --- command line, simulation and benchmark -----------------------------------------------

def test_cli_writes_both_intersections(tmp_path):
    brand = write_ids(tmp_path / "a.csv", ["Ana@Mail.com", "", "bob@x.org", "bob@x.org"], column="ID")
    media = write_ids(tmp_path / "b.csv", ["ana@mail.com", "carl@x.org"], column="ID")
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["psi", "--brand", str(brand), "--media", str(media), "--id-column", "ID",
                                       "--out", str(out), "--engine", "local"])
    assert result.exit_code == 0, result.output
    assert "1 matched" in result.output and "brand: 1 empty, 1 duplicated" in result.output
    assert pd.read_csv(out / "brand" / "intersection.csv")["ID"].tolist() == ["Ana@Mail.com"]
    assert pd.read_csv(out / "media" / "intersection.csv")["ID"].tolist() == ["ana@mail.com"]
    assert (out / "ledger.jsonl").is_file()


def test_cli_labelled_mode_and_errors(tmp_path):
    brand = write_ids(tmp_path / "a.csv", ["b4", "x9"])
    media = write_ids(tmp_path / "b.csv", ["m1", "b4", "m3"])
    out = tmp_path / "out"
    args = ["psi", "--brand", str(brand), "--media", str(media), "--out", str(out), "--engine", "local"]
    result = CliRunner().invoke(main, args + ["--mode", "labelled"])
    assert result.exit_code == 0, result.output
    flags = pd.read_csv(out / "brand" / "match_flags.csv", keep_default_na=False)
    assert flags["matched"].tolist() == [0, 1, 0] and flags["id"].tolist() == ["", "b4", ""]
    assert not (out / "media" / "intersection.csv").exists()
    result = CliRunner().invoke(main, args + ["--overwrite", "--id-column", "email"])
    assert result.exit_code == 1 and "column 'email': missing column" in result.output
    result = CliRunner().invoke(main, ["psi", "--brand", str(tmp_path / "nope.csv"), "--media", str(media),
                                       "--out", str(tmp_path / "other")])
    assert result.exit_code == 1 and "nope.csv: file not found" in result.output


def test_python_api_takes_frames_and_mirrors_the_command(tmp_path):
    brand = pd.DataFrame({"email": ["Ana@Mail.com", "bob@x.org", "eve@x.org"]})
    media = pd.DataFrame({"email": ["eve@x.org ", "ana@mail.com", "zed@x.org"], "clicks": [1, 2, 3]})
    result = fedscore.psi(brand, media, id_column="email", out=tmp_path / "both")
    assert result.summary["intersection"] == 2
    assert result.brand["email"].str.lower().tolist() == result.media["email"].str.strip().str.lower().tolist()
    labelled = fedscore.psi(brand, media, id_column="email", out=tmp_path / "labelled", mode="labelled")
    assert labelled.media is None and labelled.brand["matched"].tolist() == [1, 1, 0]
    with pytest.raises(PartyError, match="only 2 IDs matched; at least 3 are needed"):
        fedscore.psi(brand, media, id_column="email", out=tmp_path / "small", min_intersection=3)
    assert not (tmp_path / "small").exists()


def test_cli_minimum_intersection_refuses_and_writes_nothing(tmp_path):
    brand = write_ids(tmp_path / "a.csv", ["a", "b", "c"])
    media = write_ids(tmp_path / "b.csv", ["c", "d"])
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["psi", "--brand", str(brand), "--media", str(media), "--out", str(out),
                                       "--engine", "local", "--min-intersection", "2"])
    assert result.exit_code == 1 and "only 1 IDs matched; at least 2 are needed" in result.output
    assert not out.exists()


@pytest.mark.integration
def test_psi_over_flower_simulation(tmp_path):
    brand = write_ids(tmp_path / "a.csv", [f"u{i}@x.com" for i in range(40)])
    media = write_ids(tmp_path / "b.csv", [f"U{i}@X.COM" for i in range(30, 90)])
    out = tmp_path / "out"
    summary = run_job("psi", {}, {"brand": {"data": str(brand)}, "media": {"data": str(media)}}, out,
                      engine="simulation")
    assert summary["intersection"] == 10
    b = pd.read_csv(out / "brand" / "intersection.csv")["id"]
    m = pd.read_csv(out / "media" / "intersection.csv")["id"]
    assert list(b.str.lower()) == list(m.str.lower())
    assert audit_ledger(read_ledger(out / "ledger.jsonl"), read_transcript(SPEC)) == []


@pytest.mark.integration
def test_benchmark_smoke(smoke_benchmark):
    table = smoke_benchmark("psi")["tables"][0]
    assert table["rows"][0][:3] == [200, 200, 100]


@pytest.mark.integration
def test_cli_psi_over_a_real_superlink_with_tls_and_node_authentication(tmp_path, monkeypatch):
    """``fedscore psi --deployment``: a real SuperLink and two SuperNodes on loopback."""
    monkeypatch.setenv("FLWR_TELEMETRY_ENABLED", "0")
    brand = write_ids(tmp_path / "a.csv", [f"u{i}@x.com" for i in range(40)])
    media = write_ids(tmp_path / "b.csv", [f"U{i}@X.COM" for i in range(30, 90)])
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["psi", "--brand", str(brand), "--media", str(media), "--out", str(out),
                                       "--deployment", "--timeout", "120"])
    assert result.exit_code == 0, result.output
    assert "10 matched" in result.output
    assert len(pd.read_csv(out / "media" / "intersection.csv")) == 10
    assert audit_ledger(read_ledger(out / "ledger.jsonl"), read_transcript(SPEC)) == []
