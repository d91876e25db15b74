import json
import stat

import pytest

from fedscore.errors import CryptoError, InputError
from fedscore.keys import (
    MANIFEST_FILE,
    PUBLIC_FILE,
    init_keys,
    load_public_key,
    load_secret_key,
    party_key_name,
    read_manifest,
)


@pytest.fixture(scope="module")
def ceremony(tmp_path_factory):
    folder = tmp_path_factory.mktemp("keys") / "k"
    manifest = init_keys(folder, 3)
    return folder, manifest


def test_writes_one_secret_per_party_owner_only(ceremony):
    folder, manifest = ceremony
    assert manifest["parties"] == [party_key_name(i) for i in (1, 2, 3)]
    assert read_manifest(folder) == manifest
    for name in manifest["parties"]:
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600
        context = load_secret_key(folder / name, fingerprint=manifest["fingerprint"])
        assert context.has_secret_key
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert json.loads((folder / MANIFEST_FILE).read_text())["scheme"] == "ckks"


def test_coordinator_file_can_add_but_not_decrypt(ceremony):
    folder, manifest = ceremony
    public = load_public_key(folder / PUBLIC_FILE, fingerprint=manifest["fingerprint"])
    assert not public.has_secret_key
    total = public.encrypt([1.0, 2.0]) + public.encrypt([0.5, 0.5])
    with pytest.raises(CryptoError, match="cannot decrypt"):
        public.decrypt(total)
    party = load_secret_key(folder / party_key_name(2))
    assert party.decrypt(party.load_vector(total.to_bytes())) == pytest.approx([1.5, 2.5], abs=1e-6)


def test_refuses_to_overwrite(ceremony):
    folder, _ = ceremony
    before = (folder / party_key_name(1)).read_bytes()
    with pytest.raises(InputError, match="refusing to overwrite"):
        init_keys(folder, 3)
    assert (folder / party_key_name(1)).read_bytes() == before


def test_refuses_a_single_party(tmp_path):
    with pytest.raises(InputError, match="at least 2"):
        init_keys(tmp_path / "k", 1)


def test_secret_readable_by_others_is_refused(ceremony, tmp_path):
    folder, _ = ceremony
    copy = tmp_path / "copy.secret"
    copy.write_bytes((folder / party_key_name(1)).read_bytes())
    copy.chmod(0o644)
    with pytest.raises(CryptoError, match="chmod 600"):
        load_secret_key(copy)


def test_files_are_not_interchangeable(ceremony, tmp_path):
    folder, manifest = ceremony
    with pytest.raises(CryptoError, match="holds no secret key"):
        (tmp_path / "pub").write_bytes((folder / PUBLIC_FILE).read_bytes())
        (tmp_path / "pub").chmod(0o600)
        load_secret_key(tmp_path / "pub")
    with pytest.raises(CryptoError, match="holds a secret key"):
        load_public_key(folder / party_key_name(1))
    other = init_keys(tmp_path / "other", 2)
    with pytest.raises(CryptoError, match="one key ceremony"):
        load_secret_key(tmp_path / "other" / party_key_name(1), fingerprint=manifest["fingerprint"])
    assert other["fingerprint"] != manifest["fingerprint"]


def test_corrupted_key_file_is_refused(ceremony, tmp_path):
    folder, _ = ceremony
    data = bytearray((folder / party_key_name(1)).read_bytes())
    data[len(data) // 2] ^= 0xFF
    broken = tmp_path / "broken.secret"
    broken.write_bytes(bytes(data))
    broken.chmod(0o600)
    with pytest.raises(CryptoError, match="broken.secret"):
        load_secret_key(broken)
