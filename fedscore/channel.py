"""A sealed channel between two parties, relayed by a coordinator that cannot read it.

Every message between the brand and the media passes through the coordinator (the
Flower ServerApp). Some of it must reach the peer but not the coordinator: in private
set intersection, for example, the coordinator holding both parties' double-blinded sets
would learn the size of the intersection. A :class:`PeerChannel` seals such a payload
for the peer alone.

Each party makes a fresh X25519 key pair per run (:func:`new_keypair`) and sends the
public half through the coordinator as a public parameter; both ends then derive the
same key (libsodium ``crypto_box_beforenm``) and seal with XChaCha20-Poly1305. The
associated data binds each payload to the run, the direction (sender → receiver) and a
label naming its purpose, so the coordinator can neither read a payload, alter it, nor
replay it to the wrong party, the wrong step or the wrong run.

Notes
-----
The public keys are not authenticated end to end: under the threat model (semi-honest
coordinator, no collusion) the coordinator relays them faithfully. A coordinator that
swapped them could read the sealed payloads; binding the keys to the parties' Flower
node-authentication keys would close that, and is out of scope here.
"""

import nacl.exceptions
import nacl.public
import nacl.secret

from .errors import CryptoError

KEY_BYTES = nacl.public.PublicKey.SIZE
"""X25519 public and secret keys are 32 bytes (RFC 7748, section 5)."""

_AAD_PREFIX = b"fedscore/channel/v1"


def new_keypair():
    """Return ``(secret_key, public_key)``, 32 raw bytes each, fresh from the OS generator.

    Raw bytes rather than key objects, so that a party can keep the secret key in its
    picklable state between the steps of a run.
    """
    secret = nacl.public.PrivateKey.generate()
    return bytes(secret), bytes(secret.public_key)


class PeerChannel:
    """Seal payloads for one peer and open the peer's, within one run.

    Parameters
    ----------
    secret_key : bytes
        This party's channel secret key (from :func:`new_keypair`).
    peer_public_key : bytes
        The peer's channel public key, as relayed by the coordinator.
    own_role, peer_role : str
        Bound into every payload, so that a payload sealed by the peer for this party
        cannot be passed off as one sealed in the other direction.
    run_id : str
        Bound into every payload, so that payloads of another run are refused.

    Raises
    ------
    CryptoError
        If the peer's public key is malformed or of small order.

    Examples
    --------
    >>> brand_sk, brand_pk = new_keypair()
    >>> media_sk, media_pk = new_keypair()
    >>> to_media = PeerChannel(brand_sk, media_pk, own_role="brand", peer_role="media", run_id="r1")
    >>> at_media = PeerChannel(media_sk, brand_pk, own_role="media", peer_role="brand", run_id="r1")
    >>> at_media.open(to_media.seal(b"points", "psi"), "psi")
    b'points'
    """

    def __init__(self, secret_key, peer_public_key, *, own_role, peer_role, run_id):
        if not isinstance(peer_public_key, bytes) or len(peer_public_key) != KEY_BYTES:
            raise CryptoError(f"the {peer_role}'s channel key must be {KEY_BYTES} bytes")
        try:
            shared = nacl.public.Box(nacl.public.PrivateKey(secret_key), nacl.public.PublicKey(peer_public_key))
        except nacl.exceptions.CryptoError:
            raise CryptoError(f"the {peer_role}'s channel key is a small-order point: refused") from None
        self._aead = nacl.secret.Aead(shared.shared_key())
        self._own, self._peer, self._run_id = own_role, peer_role, run_id

    def _aad(self, sender, receiver, label):
        return b"\x00".join(s.encode("utf-8") if isinstance(s, str) else s
                            for s in (_AAD_PREFIX, self._run_id, sender, receiver, label))

    def seal(self, plaintext, label):
        """Encrypt and authenticate ``plaintext`` for the peer; ``label`` names its purpose."""
        return bytes(self._aead.encrypt(bytes(plaintext), self._aad(self._own, self._peer, label)))

    def open(self, sealed, label):
        """Decrypt a payload the peer sealed for this party under ``label``.

        Raises
        ------
        CryptoError
            If the payload was altered, sealed for another party, step or run, or is not
            a sealed payload at all.
        """
        if not isinstance(sealed, bytes):
            raise CryptoError(f"sealed payload from the {self._peer} is not bytes")
        try:
            return self._aead.decrypt(sealed, self._aad(self._peer, self._own, label))
        except nacl.exceptions.CryptoError:
            raise CryptoError(f"sealed payload from the {self._peer} failed authentication "
                              f"(altered, or sealed for another party, step or run)") from None
