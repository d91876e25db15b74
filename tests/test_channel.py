"""The parties' sealed channel and their identity keys: what a coordinator relaying them can and cannot do."""

import json
import os
import stat

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import fedscore
from fedscore.cli import main
from fedscore.errors import CryptoError, InputError, ProtocolError
from fedscore.kit import channel as channel_module
from fedscore.kit.channel import Channels, offer_header, sealed_header
from fedscore.kit.identity import (
    Identity,
    fingerprint,
    load_identity,
    normalise_fingerprint,
    parse_fingerprints,
    read_parties_file,
    write_identity,
)
from fedscore.runtime.flower import node_config_of, party_of_node_config
from fedscore.runtime.party import PartyContext, party_pins
from fedscore.runtime.runner import identities
from fedscore.wire import Message, control

ROLES = ("brand", "media", "store")


@pytest.fixture(scope="module")
def keys():
    return {role: Identity.generate() for role in ROLES}


def channels(keys, run_id="r1", job="psi", roles=("brand", "media"), pins=None):
    pins = pins if pins is not None else {role: key.fingerprint for role, key in keys.items()}
    return {role: Channels(role, run_id, keys[role], pins, job=job) for role in roles}


def pair(keys, **kwargs):
    ends = channels(keys, **kwargs)
    ends["brand"].connect("media", ends["media"].offer)
    ends["media"].connect("brand", ends["brand"].offer)
    return ends["brand"], ends["media"]


# --- payloads -----------------------------------------------------------------------------------

def test_values_cross_sealed_in_order(keys):
    brand, media = pair(keys)
    first = brand.seal("media", "step.a", np.arange(3.0))
    second = brand.seal("media", "step.b", {"k": [1, 2]}, round=4)
    np.testing.assert_array_equal(media.open("brand", "step.a", first), np.arange(3.0))
    assert media.open("brand", "step.b", second, round=4) == {"k": [1, 2]}
    assert brand.open("media", "reply", media.seal("brand", "reply", b"ok")) == b"ok"
    assert sealed_header(second) == {"run_id": "r1", "job": "psi", "sender": "brand", "receiver": "media",
                                     "step": "step.b", "round": "4", "seq": 1}


@pytest.mark.parametrize("tamper, says", [
    ("step", "it was sealed for step 'epoch', round 0: delivered at the wrong step"),
    ("round", "it was sealed for step 'epoch', round 0: delivered at the wrong step"),
    ("reflected", "it is this party's own payload to the media, sent back to it: reflected"),
    ("misdirected", "it was sealed by the brand for the store, not by the brand for the media: misdirected"),
    ("flipped", "it fails authentication (altered on the way"),
    ("header", "it fails authentication (altered on the way"),
    ("replayed", "it is the brand's payload #0 (step 'epoch', round 0) again, already received: replayed"),
    ("reordered", ("payload #1 (step 'epoch', round 1) arrived where #0 was expected: the brand's payload #0 was "
                   "dropped, or two payloads were reordered")),
    ("other run", "it was sealed in another run ('r2', this is 'r1'): replayed"),
    ("other job", "it was sealed for job 'segment', not this run's job 'psi': replayed"),
    ("garbage", "is not a sealed payload (malformed)"),
])
def test_the_coordinator_can_neither_alter_replay_reorder_nor_drop_a_payload_and_is_told_which(keys, tamper, says):
    ends = channels(keys, roles=ROLES)
    brand, media = ends["brand"], ends["media"]
    for a, b in (("brand", "media"), ("brand", "store")):
        ends[a].connect(b, ends[b].offer)
        ends[b].connect(a, ends[a].offer)
    sealed = [brand.seal("media", "epoch", [float(i)], round=i) for i in range(3)]
    opener, peer, step, round, data = media, "brand", "epoch", 0, sealed[0]
    if tamper == "step":
        step = "another"
    elif tamper == "round":
        round = 5
    elif tamper == "reflected":  # sent back to its own sender, as if the media had sealed it
        opener, peer = brand, "media"
    elif tamper == "misdirected":  # what the brand sealed for the store, given to the media
        data = brand.seal("store", "epoch", [0.0], round=0)
    elif tamper == "flipped":
        data = data[:-1] + bytes([data[-1] ^ 1])
    elif tamper == "header":  # the clear header rewritten: it is the associated data
        at = data.index(b"epoch")
        data = data[:at] + b"epocH" + data[at + 5:]
        step = "epocH"
    elif tamper == "replayed":  # an earlier epoch's payload again, after it was opened
        media.open("brand", "epoch", sealed[0], round=0)
        round = 1
    elif tamper == "reordered":  # the second arrives where the first was expected (or the first was dropped)
        data = sealed[1]
    elif tamper in ("other run", "other job"):
        other = pair(keys, run_id="r2") if tamper == "other run" else pair(keys, job="segment")
        data = other[0].seal("media", "epoch", [0.0], round=0)
    elif tamper == "garbage":
        data = b"\x00" * 40
    with pytest.raises(CryptoError) as info:
        opener.open(peer, step, data, round=round)
    assert says in str(info.value) and str(info.value).startswith(f"sealed payload from the {peer} at step")


def test_a_payload_that_authenticates_but_does_not_decode_is_a_protocol_error(keys):
    brand, media = pair(keys)
    with pytest.raises(ProtocolError, match="no channel to the coordinator"):
        brand.seal("coordinator", "x", b"")
    with pytest.raises(CryptoError, match="is not bytes"):
        media.open("brand", "x", "text")


# --- channel keys -------------------------------------------------------------------------------

def test_an_unpinned_peer_is_refused_with_how_to_pin_it(keys):
    brand = Channels("brand", "r1", keys["brand"], {}, job="psi")
    media = Channels("media", "r1", keys["media"], {}, job="psi")
    with pytest.raises(CryptoError) as info:
        brand.connect("media", media.offer)
    message = str(info.value)
    assert "no identity fingerprint is pinned for the media" in message
    assert "--peer-fingerprint media=FINGERPRINT" in message and "peer-fingerprints" in message
    assert "fedscore identity show" in message and not brand.connected("media")


def test_a_key_signed_by_another_identity_is_refused(keys):
    ends = channels(keys)
    impostor = Channels("media", "r1", Identity.generate(), {}, job="psi")  # the coordinator's own, well formed
    with pytest.raises(CryptoError, match=r"the media's channel key is signed by identity \S+, not by the media's "
                                          r"pinned identity \S+: refused \(the relay substituted the key"):
        ends["brand"].connect("media", impostor.offer)


@pytest.mark.parametrize("where, says", [
    ("run", "was signed for run 'r0', not this run ('r1'): refused (replayed from another run)"),
    ("job", "was signed for job 'segment', not this run's job 'psi': refused (replayed from another job)"),
    ("role", "was signed as the media's, not the store's: refused (misdirected)"),
    ("signature", "has an invalid signature: refused (altered on the way)"),
    ("same identity", "is signed by this party's own identity: a party cannot be its own peer"),
])
def test_a_key_of_another_run_job_or_role_or_with_a_bad_signature_is_refused(keys, where, says):
    pins = {"brand": keys["brand"].fingerprint, "media": keys["media"].fingerprint,
            "store": keys["media"].fingerprint}  # one identity pinned for two roles
    brand = Channels("brand", "r1", keys["brand"], pins, job="psi")
    peer, offer = "media", Channels("media", "r1", keys["media"], {}, job="psi").offer
    if where == "run":
        offer = Channels("media", "r0", keys["media"], {}, job="psi").offer
    elif where == "job":
        offer = Channels("media", "r1", keys["media"], {}, job="segment").offer
    elif where == "role":
        peer = "store"
    elif where == "signature":
        offer = offer[:-1] + bytes([offer[-1] ^ 1])
    elif where == "same identity":
        brand = Channels("brand", "r1", keys["brand"], {**pins, "media": keys["brand"].fingerprint}, job="psi")
        offer = Channels("media", "r1", keys["brand"], {}, job="psi").offer
    with pytest.raises(CryptoError) as info:
        brand.connect(peer, offer)
    assert says in str(info.value)


def test_keys_are_checked(keys):
    pins = {role: key.fingerprint for role, key in keys.items()}
    brand = Channels("brand", "r1", keys["brand"], pins, job="psi")
    for bad in (b"short", bytes(200), brand.public_key, "text"):
        with pytest.raises(CryptoError, match="the media's channel key is (malformed|not a signed channel key)"):
            brand.connect("media", bad)
    # A small-order channel key, validly signed by the pinned identity: refused all the same.
    body = channel_module._pack(b"r1", b"psi", b"media", keys["media"].public_key, bytes(32))
    small = channel_module.OFFER_MAGIC + body + keys["media"].sign(channel_module._OFFER_DOMAIN + body)
    with pytest.raises(CryptoError, match="small-order"):
        brand.connect("media", small)
    offer = Channels("media", "r1", keys["media"], {}, job="psi").offer
    brand.connect("media", offer)
    brand.connect("media", offer)  # the same key again is fine
    with pytest.raises(CryptoError, match="changed during the run"):
        brand.connect("media", Channels("media", "r1", keys["media"], {}, job="psi").offer)
    assert offer_header(offer) == {"run_id": "r1", "job": "psi", "role": "media",
                                   "fingerprint": keys["media"].fingerprint}


def test_a_wrong_own_pin_is_refused_before_anything_is_signed(keys):
    with pytest.raises(CryptoError, match="this party's identity key has fingerprint .* but the fingerprint pinned "
                                          "for the brand is .*: a wrong key file, or a wrong pin"):
        Channels("brand", "r1", keys["media"], {"brand": keys["brand"].fingerprint})


def test_a_party_without_an_identity_says_how_to_get_one():
    party = PartyContext("brand", {}, run_id="r1")
    with pytest.raises(InputError, match=r"the brand has no identity key .* `fedscore identity init --out PATH`"):
        _ = party.channel


def test_a_message_of_another_job_is_refused(register_step):
    register_step("tests.channel.nothing", lambda party, msg: Message(ok=control(True)))
    party = PartyContext("brand", {})
    party.handle("tests.channel.nothing", "r1", 0, Message(), "psi")
    with pytest.raises(ProtocolError, match="message of another job \\('segment', this run is 'psi'\\)"):
        party.handle("tests.channel.nothing", "r1", 1, Message(), "segment")


def test_parties_built_directly_connect_with_the_fixture(pinned):
    configs = pinned({"brand": {}, "media": {}})
    brand, media = (PartyContext(role, config, run_id="r1") for role, config in configs.items())
    brand.channel.connect("media", media.channel.offer)
    media.channel.connect("brand", brand.channel.offer)
    assert media.channel.open("brand", "s", brand.channel.seal("media", "s", b"x")) == b"x"


# --- identity files and fingerprints ------------------------------------------------------------

def test_an_identity_file_is_owner_only_never_overwritten_and_its_fingerprint_stable(tmp_path):
    path = tmp_path / "new" / "brand.key"
    key = Identity.generate()
    write_identity(key, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert load_identity(path).fingerprint == key.fingerprint == load_identity(path).fingerprint
    assert key._seed.hex() not in repr(key)
    before = path.read_bytes()
    with pytest.raises(InputError, match="already there: refusing to overwrite it"):
        write_identity(Identity.generate(), path)
    assert path.read_bytes() == before
    # The fingerprint is a function of the public key alone, the same on every machine and release.
    assert Identity(bytes(range(32))).fingerprint == fingerprint(Identity(bytes(range(32))).public_key)
    assert Identity(bytes(range(32))).fingerprint == "UF74-4MUT-M2HU-RT7K-R7UJ-6B6Z-JM64-6V3S"


def test_an_identity_file_readable_by_others_or_corrupted_is_refused(tmp_path):
    path = write_identity(Identity.generate(), tmp_path / "brand.key")
    os.chmod(path, 0o644)
    with pytest.raises(InputError, match="readable by others \\(mode 644\\).*chmod 600"):
        load_identity(path)
    os.chmod(path, 0o600)
    document = json.loads(path.read_text())
    path.write_text(json.dumps({**document, "fingerprint": "AAAA"}))
    with pytest.raises(InputError, match="corrupted"):
        load_identity(path)
    path.write_text("{}")
    with pytest.raises(InputError, match="not a fedscore identity key file"):
        load_identity(path)
    with pytest.raises(InputError, match="identity key file not found .*fedscore identity init"):
        load_identity(tmp_path / "missing.key")


def test_fingerprints_are_read_as_people_write_them(tmp_path, keys):
    fp = keys["brand"].fingerprint
    assert normalise_fingerprint(fp.lower().replace("-", " ")) == fp
    assert parse_fingerprints(f"brand={fp}, media={keys['media'].fingerprint}") == {
        "brand": fp, "media": keys["media"].fingerprint}
    assert parse_fingerprints([f"brand={fp}"]) == parse_fingerprints({"brand": fp}) == {"brand": fp}
    with pytest.raises(InputError, match="is not ROLE=FINGERPRINT"):
        parse_fingerprints(["brand"])
    with pytest.raises(InputError, match="the media's fingerprint 'ABCD' is not a fedscore identity fingerprint"):
        parse_fingerprints("media=ABCD")
    with pytest.raises(InputError, match="two different fingerprints for the brand"):
        parse_fingerprints([f"brand={fp}", f"brand={keys['media'].fingerprint}"])
    (tmp_path / "parties.json").write_text(json.dumps({"parties": {"brand": fp}}))
    (tmp_path / "parties.toml").write_text(f'brand = "{fp}"\n')
    assert read_parties_file(tmp_path / "parties.json") == read_parties_file(tmp_path / "parties.toml") == {"brand": fp}
    (tmp_path / "bad.json").write_text(json.dumps({"brand": 3}))
    with pytest.raises(InputError, match="must map each role to its fingerprint"):
        read_parties_file(tmp_path / "bad.json")
    config = {"peer_fingerprints": f"media={keys['media'].fingerprint}", "parties_file": str(tmp_path / "parties.json")}
    assert party_pins(config) == {"brand": fp, "media": keys["media"].fingerprint}
    with pytest.raises(InputError, match="pin two fingerprints for the brand"):
        party_pins({**config, "peer_fingerprints": f"brand={keys['media'].fingerprint}"})


def test_a_supernode_is_told_its_key_and_pins_in_its_node_config(keys):
    config = {"data": "/d/brand.csv", "identity": "/k/brand.key",
              "peer_fingerprints": {"media": keys["media"].fingerprint}, "parties_file": "/k/parties.json"}
    node = node_config_of("brand", config)
    assert node == {"role": "brand", "data-path": "/d/brand.csv", "identity-key": "/k/brand.key",
                    "peer-fingerprints": f"media={keys['media'].fingerprint}", "parties-file": "/k/parties.json"}
    role, back = party_of_node_config(node)
    assert role == "brand" and party_pins({**back, "parties_file": None}) == config["peer_fingerprints"]


# --- where a user meets it: the command line and the library ------------------------------------

def _tables(tmp_path):
    ids = [f"u{i}@example.com" for i in range(120)]
    pd.DataFrame({"email": ids[:100]}).to_csv(tmp_path / "brand.csv", index=False)
    pd.DataFrame({"email": ids[20:]}).to_csv(tmp_path / "media.csv", index=False)
    return ["--brand", str(tmp_path / "brand.csv"), "--media", str(tmp_path / "media.csv"), "--id-column", "email"]


def test_the_command_line_makes_keys_and_runs_with_them_pinned_or_refuses(tmp_path):
    runner = CliRunner()
    made = {}
    for role in ("brand", "media"):
        done = runner.invoke(main, ["identity", "init", "--out", str(tmp_path / "keys" / f"{role}.key")])
        assert done.exit_code == 0, done.output
        made[role] = done.stdout.strip()
        assert runner.invoke(main, ["identity", "show", str(tmp_path / "keys" / f"{role}.key")]).stdout.strip() \
            == made[role]
    again = runner.invoke(main, ["identity", "init", "--out", str(tmp_path / "keys" / "brand.key")])
    assert again.exit_code == 1 and "refusing to overwrite" in again.output
    args = _tables(tmp_path) + [f"--identity=brand={tmp_path / 'keys' / 'brand.key'}",
                                f"--identity=media={tmp_path / 'keys' / 'media.key'}"]

    unpinned = runner.invoke(main, ["psi", *args, "--out", str(tmp_path / "a")])
    assert unpinned.exit_code == 1 and not (tmp_path / "a").exists() and not (tmp_path / "a.checkpoint").exists()
    assert "the brand has no fingerprint pinned for the media" in unpinned.output
    assert "--peer-fingerprint media=FINGERPRINT" in unpinned.output

    wrong = runner.invoke(main, ["psi", *args, "--out", str(tmp_path / "b"), f"--peer-fingerprint=brand={made['brand']}",
                                 f"--peer-fingerprint=media={made['brand']}"])
    assert wrong.exit_code == 1 and f"the media's identity key has fingerprint {made['media']}" in wrong.output

    (tmp_path / "parties.json").write_text(json.dumps(made))
    pinned = runner.invoke(main, ["psi", *args, "--out", str(tmp_path / "c"), "--parties-file",
                                  str(tmp_path / "parties.json")])
    assert pinned.exit_code == 0, pinned.output
    assert len(pd.read_csv(tmp_path / "c" / "brand" / "intersection.csv")) == 80


def test_the_library_runs_with_its_own_keys_or_refuses_a_missing_pin(tmp_path):
    _tables(tmp_path)
    paths = {role: write_identity(Identity.generate(), tmp_path / f"{role}.key") for role in ("brand", "media")}
    fingerprints = {role: load_identity(path).fingerprint for role, path in paths.items()}
    with (identities(keys=paths, fingerprints={"brand": fingerprints["brand"]}),
          pytest.raises(InputError, match="the brand has no fingerprint pinned for the media")):
        fedscore.psi(tmp_path / "brand.csv", tmp_path / "media.csv", id_column="email", out=tmp_path / "a")
    with (identities(keys={"brand": paths["brand"]}, fingerprints=fingerprints),
          pytest.raises(InputError, match="the media has no identity key")):
        fedscore.psi(tmp_path / "brand.csv", tmp_path / "media.csv", id_column="email", out=tmp_path / "b")
    with identities(keys=[f"brand={paths['brand']}", f"media={paths['media']}"],
                    fingerprints=[f"{r}={load_identity(p).fingerprint}" for r, p in paths.items()]):
        result = fedscore.psi(tmp_path / "brand.csv", tmp_path / "media.csv", id_column="email", out=tmp_path / "c")
    assert result.summary["intersection"] == 80
    with (identities(keys={"brnad": paths["brand"]}),
          pytest.raises(InputError, match="--identity names brnad, not a party of this job")):
        fedscore.psi(tmp_path / "brand.csv", tmp_path / "media.csv", id_column="email", out=tmp_path / "d")
