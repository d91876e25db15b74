"""The parties' sealed channel: what the coordinator relaying it can and cannot do."""

import numpy as np
import pytest

from fedscore.errors import CryptoError, ProtocolError
from fedscore.kit.channel import Channels


def pair(run_id="r1"):
    brand, media = Channels("brand", run_id), Channels("media", run_id)
    brand.connect("media", media.public_key)
    media.connect("brand", brand.public_key)
    return brand, media


def test_values_cross_sealed_in_order():
    brand, media = pair()
    first = brand.seal("media", "step.a", np.arange(3.0))
    second = brand.seal("media", "step.b", {"k": [1, 2]})
    np.testing.assert_array_equal(media.open("brand", "step.a", first), np.arange(3.0))
    assert media.open("brand", "step.b", second) == {"k": [1, 2]}
    assert brand.open("media", "reply", media.seal("brand", "reply", b"ok")) == b"ok"


@pytest.mark.parametrize("tamper", ["label", "run", "reflected", "flipped", "replayed", "reordered", "dropped"])
def test_the_coordinator_can_neither_alter_replay_reorder_nor_drop_a_payload(tamper):
    brand, media = pair()
    sealed = [brand.seal("media", f"epoch.{i}", [float(i)]) for i in range(3)]
    opener, peer, label, data = media, "brand", "epoch.0", sealed[0]
    if tamper == "label":
        label = "epoch.9"
    elif tamper == "run":
        opener = Channels("media", "r2")
        opener.connect("brand", brand.public_key)
    elif tamper == "reflected":  # sent back to its own sender, as if the media had sealed it
        opener, peer = brand, "media"
    elif tamper == "flipped":
        data = data[:-1] + bytes([data[-1] ^ 1])
    elif tamper == "replayed":  # an earlier epoch's payload again, after it was opened
        media.open("brand", "epoch.0", sealed[0])
    elif tamper in ("reordered", "dropped"):  # the second arrives where the first was expected
        label, data = "epoch.1", sealed[1]
    with pytest.raises(CryptoError, match="failed authentication"):
        opener.open(peer, label, data)


def test_keys_are_checked():
    brand = Channels("brand", "r1")
    with pytest.raises(CryptoError, match="small-order"):
        brand.connect("media", bytes(32))
    with pytest.raises(CryptoError, match="must be 32 bytes"):
        brand.connect("media", b"short")
    brand.connect("media", Channels("media", "r1").public_key)
    brand.connect("media", brand._peers["media"]["key"])  # the same key again is fine
    with pytest.raises(CryptoError, match="changed during the run"):
        brand.connect("media", Channels("media", "r1").public_key)
    with pytest.raises(ProtocolError, match="no channel to the coordinator"):
        brand.seal("coordinator", "x", b"")
