"""Sealed channels between parties, relayed by a coordinator that can neither read nor rearrange them.

Every message between parties passes through the coordinator (the Flower ServerApp),
which may be run by one of the parties. Some of it must reach a peer but not the
coordinator: the double-blinded sets of PSI, a masked value released by a key owner, a
shared secret key, a KMeans party's partial inertia. A party seals such a value for one
peer on its :class:`Channels`, the one place every protocol does so
(``protocols/channel.md``).

Keys. Each party makes one X25519 key pair per run and sends the public half, its
**offer**, through the coordinator, signed with its long-term identity key
(:mod:`fedscore.kit.identity`) over the run id, the job and its role. The receiver
accepts an offer only if the signing key has the fingerprint it pinned for that role,
and the signature covers this run, this job and that role: a coordinator that swaps in
its own key, or replays another run's, is refused. Both ends of a pair derive the same
key from the X25519 agreement, bound to the run, the job and both roles' offers, and
seal with XChaCha20-Poly1305.

Payloads. Every sealed payload carries, in clear and authenticated as associated data,
the run id, the job, its sender and receiver, the step it belongs to, the step's round
(an epoch or iteration, where a step repeats) and its sequence number in its direction.
The receiver opens the payloads of a peer in the order they were sealed, under the step
and round it expects: a replayed, reordered, dropped, misdirected or cross-run payload
is refused with an error that says which of these it is; an altered one fails
authentication.
"""

import hashlib

import nacl.bindings
import nacl.exceptions
import nacl.public
import nacl.secret

from ..errors import CryptoError, ProtocolError
from ..wire import decode_value, encode_value
from .identity import PUBLIC_KEY_BYTES, SIGNATURE_BYTES, fingerprint, verify

KEY_BYTES = nacl.public.PublicKey.SIZE
"""X25519 public and secret keys are 32 bytes (RFC 7748, section 5)."""

OFFER_MAGIC = b"fsk1"
"""First bytes of a signed channel key (an offer)."""
SEALED_MAGIC = b"fss3"
"""First bytes of a sealed payload; the header that follows is its associated data."""
_OFFER_DOMAIN = b"fedscore/channel-key/v1"
_KEY_DOMAIN = b"fedscore/channel-shared-key/v1"
_HEADER_LENGTH_BYTES = 2
_SEQ_BYTES = 8
NO_ROUND = ""
"""The round of a payload whose step happens once."""

HOW_TO_PIN = ("pin it with --peer-fingerprint {role}=FINGERPRINT, a parties file (--parties-file FILE), or the node "
              "config key peer-fingerprints=\"{role}=FINGERPRINT\"; the {role}'s operator reads the fingerprint "
              "with `fedscore identity show KEYFILE`")
"""How a party is told a peer's fingerprint, for the errors that ask for one."""


def _pack(*parts):
    """Length-prefixed concatenation: no two different part lists give the same bytes."""
    return b"".join(len(part).to_bytes(4, "big") + part for part in parts)


def _unpack(data, count):
    parts, at = [], 0
    for _ in range(count):
        if at + 4 > len(data):
            raise ValueError("truncated")
        length = int.from_bytes(data[at:at + 4], "big")
        parts.append(data[at + 4:at + 4 + length])
        at += 4 + length
        if at > len(data):
            raise ValueError("truncated")
    if at != len(data):
        raise ValueError("trailing bytes")
    return parts


def _text(value):
    return str(value).encode("utf-8")


class Channels:
    """One party's sealed channels to its peers, for one run.

    Parameters
    ----------
    role : str
        This party's role, bound into everything it signs and seals.
    run_id : str
        Bound into its offer and every payload: those of another run are refused.
    identity : fedscore.kit.identity.Identity
        This party's long-term key; it signs the offer here and is not kept.
    pins : dict of role to str
        The fingerprint this party pinned for each peer (and possibly for itself).
    job : str
        The job the run runs, bound like the run id.

    Attributes
    ----------
    offer : bytes
        This party's signed channel key: send it to the peers (a public parameter);
        they pass it to :meth:`connect`.
    public_key : bytes
        The X25519 public key inside the offer.
    fingerprint : str
        This party's identity fingerprint.

    Examples
    --------
    >>> from fedscore.kit.identity import Identity
    >>> ids = {"brand": Identity.generate(), "media": Identity.generate()}
    >>> pins = {role: i.fingerprint for role, i in ids.items()}
    >>> brand, media = (Channels(role, "r1", ids[role], pins, job="psi") for role in ("brand", "media"))
    >>> brand.connect("media", media.offer); media.connect("brand", brand.offer)
    >>> media.open("brand", "psi.match", brand.seal("media", "psi.match", b"points"))
    b'points'
    """

    def __init__(self, role, run_id, identity, pins, *, job=""):
        self.role, self.run_id, self.job = str(role), str(run_id), str(job or "")
        self.pins = dict(pins)
        self.fingerprint = identity.fingerprint
        own_pin = self.pins.get(self.role)
        if own_pin is not None and own_pin != self.fingerprint:
            raise CryptoError(f"this party's identity key has fingerprint {self.fingerprint}, but the fingerprint "
                              f"pinned for the {self.role} is {own_pin}: a wrong key file, or a wrong pin")
        secret = nacl.public.PrivateKey.generate()
        # Raw bytes, not key objects: the party's state is pickled between steps. The
        # identity's secret is not kept: only the offer it signed.
        self._secret, self.public_key = bytes(secret), bytes(secret.public_key)
        body = _pack(_text(self.run_id), _text(self.job), _text(self.role), identity.public_key, self.public_key)
        self.offer = OFFER_MAGIC + body + identity.sign(_OFFER_DOMAIN + body)
        self._identity_key = identity.public_key
        self._peers = {}

    # --- keys -------------------------------------------------------------------------------

    def connect(self, peer, offer):
        """Accept ``peer``'s signed channel key; the same offer again is a no-op.

        Raises
        ------
        CryptoError
            No fingerprint pinned for ``peer``; an offer signed by an identity other than
            the pinned one (a substituted key), for another run, job or role (a replayed
            one), with a bad signature, or malformed; a channel key of small order; a
            key that differs from the one already accepted for ``peer`` in this run.
        """
        where = f"the {peer}'s channel key"
        run_id, job, role, identity_key, channel_key = self._parse_offer(peer, offer)
        pinned = self.pins.get(peer)
        if pinned is None:
            raise CryptoError(f"no identity fingerprint is pinned for the {peer}, and a channel to an "
                              f"unauthenticated peer is refused: {HOW_TO_PIN.format(role=peer)}")
        signer = fingerprint(identity_key)
        if signer != pinned:
            raise CryptoError(f"{where} is signed by identity {signer}, not by the {peer}'s pinned identity "
                              f"{pinned}: refused (the relay substituted the key, or the pin is wrong)")
        if identity_key == self._identity_key:
            raise CryptoError(f"{where} is signed by this party's own identity: a party cannot be its own peer "
                              f"(pin a different key for each role)")
        if not verify(identity_key, _OFFER_DOMAIN + offer[len(OFFER_MAGIC):-SIGNATURE_BYTES],
                      offer[-SIGNATURE_BYTES:]):
            raise CryptoError(f"{where} has an invalid signature: refused (altered on the way)")
        if run_id != self.run_id:
            raise CryptoError(f"{where} was signed for run {run_id!r}, not this run ({self.run_id!r}): refused "
                              f"(replayed from another run)")
        if job != self.job:
            raise CryptoError(f"{where} was signed for job {job!r}, not this run's job {self.job!r}: refused "
                              f"(replayed from another job)")
        if role != peer:
            raise CryptoError(f"{where} was signed as the {role}'s, not the {peer}'s: refused (misdirected)")
        known = self._peers.get(peer)
        if known is not None:
            if known["offer"] != offer:
                raise CryptoError(f"{where} changed during the run: refused")
            return
        try:
            shared = nacl.bindings.crypto_box_beforenm(channel_key, self._secret)
        except nacl.exceptions.CryptoError:
            raise CryptoError(f"{where} is a small-order point: refused") from None
        # Bind the key to the run, the job and both signed offers, in an order both ends agree on.
        ends = sorted([(self.role.encode("utf-8"), self.offer), (peer.encode("utf-8"), offer)])
        key = hashlib.blake2b(_pack(_KEY_DOMAIN, _text(self.run_id), _text(self.job), *ends[0], *ends[1]),
                              key=shared, digest_size=nacl.secret.Aead.KEY_SIZE).digest()
        self._peers[peer] = {"offer": offer, "key": key, "sent": 0, "received": 0}

    def connected(self, peer):
        """Whether this party holds ``peer``'s channel key."""
        return peer in self._peers

    def _parse_offer(self, peer, offer):
        if not isinstance(offer, bytes) or not offer.startswith(OFFER_MAGIC):
            raise CryptoError(f"the {peer}'s channel key is not a signed channel key")
        try:
            run_id, job, role, identity_key, channel_key = _unpack(offer[len(OFFER_MAGIC):-SIGNATURE_BYTES], 5)
            texts = [part.decode("utf-8") for part in (run_id, job, role)]
        except (ValueError, UnicodeDecodeError):
            raise CryptoError(f"the {peer}'s channel key is malformed") from None
        if len(identity_key) != PUBLIC_KEY_BYTES or len(channel_key) != KEY_BYTES:
            raise CryptoError(f"the {peer}'s channel key is malformed (keys must be {KEY_BYTES} bytes)")
        return (*texts, identity_key, channel_key)

    # --- payloads ---------------------------------------------------------------------------

    def seal(self, peer, step, value, *, round=NO_ROUND):
        """Encrypt and authenticate ``value`` (bytes, an array or JSON-able) for ``peer``.

        ``step`` names the step the payload belongs to and ``round`` its epoch or
        iteration where the step repeats; the peer must open it under the same two.
        """
        channel = self._channel(peer)
        header = self._header(self.role, peer, step, round, channel["sent"])
        channel["sent"] += 1
        aad = SEALED_MAGIC + len(header).to_bytes(_HEADER_LENGTH_BYTES, "big") + header
        return aad + bytes(nacl.secret.Aead(channel["key"]).encrypt(encode_value(value), aad))

    def open(self, peer, step, sealed, *, round=NO_ROUND):
        """Decrypt the next payload ``peer`` sealed for this party at ``step`` (and ``round``).

        Raises
        ------
        CryptoError
            Naming what is wrong: sealed in another run or job, by or for another
            party (misdirected, or reflected back to its sender), an earlier payload
            again (replayed), a later one where this one was expected (one dropped, or
            two reordered), for another step or round, or altered (authentication fails).
        ProtocolError
            If the payload authenticates but does not decode.
        """
        channel = self._channel(peer)
        where = f"sealed payload from the {peer} at step {step!r}{_round_text(round)}"
        if not isinstance(sealed, bytes):
            raise CryptoError(f"{where} is not bytes")
        try:
            header, aad, body = _split_sealed(sealed)
            run_id, job, sender, receiver, got_step, got_round, seq = _unpack(header, 7)
            got = {"run_id": run_id.decode("utf-8"), "job": job.decode("utf-8"), "sender": sender.decode("utf-8"),
                   "receiver": receiver.decode("utf-8"), "step": got_step.decode("utf-8"),
                   "round": got_round.decode("utf-8"), "seq": int.from_bytes(seq, "big")}
        except (ValueError, UnicodeDecodeError):
            raise CryptoError(f"{where} is not a sealed payload (malformed)") from None
        expected = channel["received"]
        problem = self._diagnose(peer, got, step, str(round), expected)
        if problem:
            raise CryptoError(f"{where} refused: {problem}")
        try:
            data = nacl.secret.Aead(channel["key"]).decrypt(body, aad)
        except nacl.exceptions.CryptoError:
            raise CryptoError(f"{where} refused: it fails authentication (altered on the way, or sealed under a "
                              f"channel key the {peer} did not make)") from None
        channel["received"] += 1
        try:
            return decode_value(data)
        except ValueError as exc:
            raise ProtocolError(f"{where} is malformed: {exc}") from None

    def _diagnose(self, peer, got, step, round, expected):
        """What is wrong with a payload's header, in words; empty when it is the one expected next."""
        sealed_at = f"step {got['step']!r}{_round_text(got['round'])}"
        if got["run_id"] != self.run_id:
            return f"it was sealed in another run ({got['run_id']!r}, this is {self.run_id!r}): replayed"
        if got["job"] != self.job:
            return f"it was sealed for job {got['job']!r}, not this run's job {self.job!r}: replayed"
        if (got["sender"], got["receiver"]) == (self.role, peer):
            return f"it is this party's own payload to the {peer}, sent back to it: reflected"
        if (got["sender"], got["receiver"]) != (peer, self.role):
            return (f"it was sealed by the {got['sender']} for the {got['receiver']}, not by the {peer} for the "
                    f"{self.role}: misdirected")
        if got["seq"] < expected:
            return (f"it is the {peer}'s payload #{got['seq']} ({sealed_at}) again, already received: replayed "
                    f"(payload #{expected} is next)")
        if got["seq"] > expected:
            return (f"payload #{got['seq']} ({sealed_at}) arrived where #{expected} was expected: the {peer}'s "
                    f"payload #{expected} was dropped, or two payloads were reordered")
        if (got["step"], got["round"]) != (step, round):
            return f"it was sealed for {sealed_at}: delivered at the wrong step"
        return ""

    def _channel(self, peer):
        try:
            return self._peers[peer]
        except KeyError:
            raise ProtocolError(f"no channel to the {peer} yet: its channel key has not arrived") from None

    def _header(self, sender, receiver, step, round, seq):
        return _pack(_text(self.run_id), _text(self.job), _text(sender), _text(receiver), _text(step),
                     _text(round), seq.to_bytes(_SEQ_BYTES, "big"))


def _split_sealed(sealed):
    """``(header, associated data, AEAD body)`` of a sealed payload; ``ValueError`` if malformed."""
    start = len(SEALED_MAGIC) + _HEADER_LENGTH_BYTES
    if not sealed.startswith(SEALED_MAGIC) or len(sealed) < start:
        raise ValueError("not a sealed payload")
    end = start + int.from_bytes(sealed[len(SEALED_MAGIC):start], "big")
    if end > len(sealed):
        raise ValueError("truncated")
    return sealed[start:end], sealed[:end], sealed[end:]


def sealed_header(sealed):
    """The clear header of a sealed payload: run id, job, sender, receiver, step, round, seq.

    What any relay can read anyway (the coordinator knows every step it sends); for
    ledgers, audits and tests. ``None`` if ``sealed`` is not a sealed payload.
    """
    try:
        header, _, _ = _split_sealed(sealed)
        *texts, seq = _unpack(header, 7)
        names = ("run_id", "job", "sender", "receiver", "step", "round")
        return {**{n: t.decode("utf-8") for n, t in zip(names, texts)}, "seq": int.from_bytes(seq, "big")}
    except (ValueError, UnicodeDecodeError, TypeError, AttributeError):
        return None


def offer_header(offer):
    """The clear part of a signed channel key: run id, job, role, identity fingerprint; ``None`` if malformed."""
    try:
        if not offer.startswith(OFFER_MAGIC):
            return None
        run_id, job, role, identity_key, _ = _unpack(offer[len(OFFER_MAGIC):-SIGNATURE_BYTES], 5)
        return {"run_id": run_id.decode("utf-8"), "job": job.decode("utf-8"), "role": role.decode("utf-8"),
                "fingerprint": fingerprint(identity_key)}
    except (ValueError, UnicodeDecodeError, TypeError, AttributeError):
        return None


def _round_text(round):
    return f", round {round}" if str(round) != NO_ROUND else ""
