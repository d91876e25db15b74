"""Sealed channels between parties, relayed by a coordinator that cannot read them.

Every message between parties passes through the coordinator (the Flower ServerApp).
Some of it must reach a peer but not the coordinator: the double-blinded sets of PSI,
a masked value released by a key owner, a KMeans party's partial inertia. A party seals
such a value for one peer on its :class:`Channels`, the one place every protocol does so.

Each party makes one X25519 key pair per run and sends the public half through the
coordinator; both ends of a pair derive the same key (libsodium ``crypto_box_beforenm``)
and seal with XChaCha20-Poly1305. The associated data of every payload binds it to the
run, the sender and receiver, the step it belongs to (its label) and its place in the
channel (a sequence number per direction), so the coordinator can neither read a
payload, alter it, replay it into another step, epoch or run, reorder two, nor drop one
unnoticed: the receiver expects the payloads of a peer in the order they were sealed.

Notes
-----
The channel keys themselves are relayed unauthenticated: under the threat model
(semi-honest coordinator, no collusion) the coordinator relays them faithfully.
"""

import nacl.exceptions
import nacl.public
import nacl.secret

from ..errors import CryptoError, ProtocolError
from ..wire import decode_value, encode_value

KEY_BYTES = nacl.public.PublicKey.SIZE
"""X25519 public and secret keys are 32 bytes (RFC 7748, section 5)."""

_AAD_PREFIX = b"fedscore/channel/v2"


class Channels:
    """One party's sealed channels to its peers, for one run.

    Parameters
    ----------
    role : str
        This party's role, bound into everything it seals.
    run_id : str
        Bound into every payload, so that payloads of another run are refused.

    Attributes
    ----------
    public_key : bytes
        Send it to the peers (a public parameter); they pass it to :meth:`connect`.

    Examples
    --------
    >>> brand, media = Channels("brand", "r1"), Channels("media", "r1")
    >>> brand.connect("media", media.public_key); media.connect("brand", brand.public_key)
    >>> media.open("brand", "psi.match", brand.seal("media", "psi.match", b"points"))
    b'points'
    """

    def __init__(self, role, run_id):
        secret = nacl.public.PrivateKey.generate()
        # Raw bytes, not key objects: the party's state is pickled between steps.
        self._secret, self.public_key = bytes(secret), bytes(secret.public_key)
        self.role, self.run_id = role, run_id
        self._peers = {}

    def connect(self, peer, public_key):
        """Accept ``peer``'s channel key; the same key again is a no-op, another one is refused.

        Raises
        ------
        CryptoError
            If the key is malformed or of small order, or differs from the one this
            party already holds for ``peer`` in this run.
        """
        if not isinstance(public_key, bytes) or len(public_key) != KEY_BYTES:
            raise CryptoError(f"the {peer}'s channel key must be {KEY_BYTES} bytes")
        known = self._peers.get(peer)
        if known is not None:
            if known["key"] != public_key:
                raise CryptoError(f"the {peer}'s channel key changed during the run: refused")
            return
        try:
            box = nacl.public.Box(nacl.public.PrivateKey(self._secret), nacl.public.PublicKey(public_key))
        except nacl.exceptions.CryptoError:
            raise CryptoError(f"the {peer}'s channel key is a small-order point: refused") from None
        self._peers[peer] = {"key": public_key, "shared": box.shared_key(), "sent": 0, "received": 0}

    def connected(self, peer):
        """Whether this party holds ``peer``'s channel key."""
        return peer in self._peers

    def seal(self, peer, label, value):
        """Encrypt and authenticate ``value`` (bytes, an array or JSON-able) for ``peer``.

        ``label`` names the step the payload belongs to (with its epoch or round where a
        step repeats); the peer must open it under the same label.
        """
        channel = self._channel(peer)
        aad = self._aad(self.role, peer, label, channel["sent"])
        channel["sent"] += 1
        return bytes(nacl.secret.Aead(channel["shared"]).encrypt(encode_value(value), aad))

    def open(self, peer, label, sealed):
        """Decrypt the next payload ``peer`` sealed for this party under ``label``.

        Raises
        ------
        CryptoError
            If the payload was altered, sealed for another party, step, run or place in
            the channel (replayed, reordered, or one before it was dropped), or is not a
            sealed payload at all.
        """
        channel = self._channel(peer)
        if not isinstance(sealed, bytes):
            raise CryptoError(f"sealed payload from the {peer} is not bytes")
        aad = self._aad(peer, self.role, label, channel["received"])
        try:
            data = nacl.secret.Aead(channel["shared"]).decrypt(sealed, aad)
        except nacl.exceptions.CryptoError:
            raise CryptoError(f"sealed payload {label!r} from the {peer} failed authentication: altered, replayed, "
                              f"reordered, sealed for another party, step or run, or one before it was dropped"
                              ) from None
        channel["received"] += 1
        try:
            return decode_value(data)
        except ValueError as exc:
            raise ProtocolError(f"sealed payload {label!r} from the {peer} is malformed: {exc}") from None

    def _channel(self, peer):
        try:
            return self._peers[peer]
        except KeyError:
            raise ProtocolError(f"no channel to the {peer} yet: its channel key has not arrived") from None

    def _aad(self, sender, receiver, label, seq):
        parts = (_AAD_PREFIX, self.run_id.encode("utf-8"), sender.encode("utf-8"), receiver.encode("utf-8"),
                 label.encode("utf-8"), seq.to_bytes(8, "big"))
        return b"".join(len(part).to_bytes(4, "big") + part for part in parts)
