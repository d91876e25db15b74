"""Long-term identity keys: what lets a party know its peer's channel key is its peer's.

Each party holds an Ed25519 signing key (RFC 8032, through libsodium) that outlives
runs. It signs the channel key the party makes for each run
(:mod:`fedscore.kit.channel`), and its peers check the signature against the
**fingerprint** of its public key, which they were told out of band (pinned). A
coordinator that relays the channel keys can then neither substitute its own nor replay
another run's: it holds no pinned identity.

A fingerprint is a short digest of the public key, meant to be read aloud or compared
by eye: SHA-256 over a domain separator and the 32-byte key, cut to
:data:`FINGERPRINT_BYTES` bytes and written in base32 (RFC 4648: letters and the digits
2-7, no 0/O or 1/I to confuse) in groups of four.

Examples
--------
>>> identity = Identity.generate()
>>> len(identity.fingerprint)
39
>>> verify(identity.public_key, b"message", identity.sign(b"message"))
True
"""

import base64
import hashlib
import json
import os
import stat
from pathlib import Path

import nacl.exceptions
import nacl.signing

from ..errors import CryptoError, InputError

PUBLIC_KEY_BYTES = 32
"""Ed25519 public keys and seeds are 32 bytes (RFC 8032, section 5.1.5)."""
SIGNATURE_BYTES = 64
"""Ed25519 signatures are 64 bytes (RFC 8032, section 5.1.6)."""
FINGERPRINT_BYTES = 20
"""160 bits of SHA-256: finding another key with a given fingerprint (a second preimage)
costs about 2^160 hashes, which keeps the 128-bit security of the rest of fedscore even
if an attacker tries against 2^32 pinned keys at once. 32 base32 characters."""
FINGERPRINT_GROUP = 4
"""Characters per group of a written fingerprint: eight groups, easy to compare by eye."""
_FINGERPRINT_DOMAIN = b"fedscore/identity-fingerprint/v1\x00"
FILE_FORMAT = "fedscore identity key"
FILE_VERSION = 1
FOLDER_MODE = 0o700
FILE_MODE = 0o600
"""An identity file is the party's secret: owner-only, as ssh requires of its keys."""


def fingerprint(public_key):
    """The written fingerprint of an Ed25519 public key (``XXXX-XXXX-...``, eight groups)."""
    digest = hashlib.sha256(_FINGERPRINT_DOMAIN + bytes(public_key)).digest()[:FINGERPRINT_BYTES]
    text = base64.b32encode(digest).decode("ascii")
    return "-".join(text[i:i + FINGERPRINT_GROUP] for i in range(0, len(text), FINGERPRINT_GROUP))


def normalise_fingerprint(text, *, role=None):
    """A fingerprint as :func:`fingerprint` writes it, from text a person typed or pasted.

    Case, spaces, dashes and colons do not matter. ``role`` only names the fingerprint
    in the error.

    Raises
    ------
    InputError
        If ``text`` is not 32 base32 characters.
    """
    cleaned = "".join(ch for ch in str(text).upper() if ch not in " -:\t")
    whose = f"the {role}'s " if role else ""
    try:
        raw = base64.b32decode(cleaned)
    except (ValueError, TypeError):
        raw = b""
    if len(raw) != FINGERPRINT_BYTES:
        raise InputError(f"{whose}fingerprint {text!r} is not a fedscore identity fingerprint "
                         f"(8 groups of 4 letters and digits 2-7, as `fedscore identity show` prints it)")
    encoded = base64.b32encode(raw).decode("ascii")
    return "-".join(encoded[i:i + FINGERPRINT_GROUP] for i in range(0, len(encoded), FINGERPRINT_GROUP))


def verify(public_key, message, signature):
    """Whether ``signature`` is ``public_key``'s Ed25519 signature of ``message``."""
    try:
        nacl.signing.VerifyKey(bytes(public_key)).verify(bytes(message), bytes(signature))
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, nacl.exceptions.TypeError):
        return False
    return True


class Identity:
    """A party's long-term Ed25519 signing key.

    Parameters
    ----------
    seed : bytes
        The 32-byte secret seed (RFC 8032's private key).

    Attributes
    ----------
    public_key : bytes
    fingerprint : str
        What the party's peers pin (:func:`fingerprint`).
    """

    def __init__(self, seed):
        if not isinstance(seed, bytes) or len(seed) != PUBLIC_KEY_BYTES:
            raise CryptoError(f"an identity seed is {PUBLIC_KEY_BYTES} bytes")
        self._seed = seed
        self.public_key = bytes(nacl.signing.SigningKey(seed).verify_key)
        self.fingerprint = fingerprint(self.public_key)

    @classmethod
    def generate(cls):
        """A fresh identity, from the operating system's generator."""
        return cls(bytes(nacl.signing.SigningKey.generate()))

    def sign(self, message):
        """The 64-byte Ed25519 signature of ``message``."""
        return nacl.signing.SigningKey(self._seed).sign(bytes(message)).signature

    def __repr__(self):  # never the seed, in a traceback or a log
        return f"Identity({self.fingerprint})"


def write_identity(identity, path):
    """Write ``identity`` to a new owner-only file; the folder is made owner-only if it is new.

    Raises
    ------
    InputError
        If ``path`` exists: an identity is never overwritten (its peers pinned it).
    """
    path = Path(path)
    if not path.parent.exists():
        path.parent.mkdir(mode=FOLDER_MODE, parents=True)
    document = {"format": FILE_FORMAT, "version": FILE_VERSION, "fingerprint": identity.fingerprint,
                "secret_key": identity._seed.hex()}
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        raise InputError("an identity key is already there: refusing to overwrite it (its peers have pinned its "
                         "fingerprint; delete the file first if you mean to replace it)", path=path) from None
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(json.dumps(document, indent=2) + "\n")
    return path


def load_identity(path):
    """Read an identity file written by :func:`write_identity`.

    Raises
    ------
    InputError
        If the file is missing, readable by others than its owner, or not an identity
        file, or its recorded fingerprint does not match its key (a corrupted file).
    """
    path = Path(path)
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("identity key file not found (make one with `fedscore identity init --out PATH`)",
                         path=path) from None
    except OSError as exc:
        raise InputError(f"cannot read the identity key file ({exc.strerror})", path=path) from None
    if os.name == "posix" and stat.S_IMODE(mode) & 0o077:
        raise InputError(f"the identity key file is readable by others (mode {stat.S_IMODE(mode):o}): it is a "
                         f"secret; make it owner-only with chmod 600", path=path)
    try:
        document = json.loads(text)
        if document.get("format") != FILE_FORMAT or document.get("version") != FILE_VERSION:
            raise ValueError
        identity = Identity(bytes.fromhex(document["secret_key"]))
    except (ValueError, KeyError, TypeError, AttributeError, CryptoError):
        raise InputError("not a fedscore identity key file", path=path) from None
    if document.get("fingerprint") != identity.fingerprint:
        raise InputError("the identity key file is corrupted: its key does not have the fingerprint it records",
                         path=path)
    return identity


def parse_fingerprints(value, *, source="--peer-fingerprint"):
    """Pinned fingerprints by role, from a mapping, ``"role=FP,role=FP"`` text or ``["role=FP", ...]``.

    Raises
    ------
    InputError
        For an entry without ``=``, an empty role, a malformed fingerprint, or a role
        given two different fingerprints.
    """
    if value is None or value == "":
        return {}
    if isinstance(value, dict):
        items = list(value.items())
    else:
        entries = value.split(",") if isinstance(value, str) else list(value)
        items = []
        for entry in (e.strip() for e in entries):
            if not entry:
                continue
            role, sep, text = entry.partition("=")
            if not sep or not role.strip():
                raise InputError(f"{source}: {entry!r} is not ROLE=FINGERPRINT")
            items.append((role.strip(), text.strip()))
    pins = {}
    for role, text in items:
        fp = normalise_fingerprint(text, role=role)
        if pins.get(role, fp) != fp:
            raise InputError(f"{source}: two different fingerprints for the {role}")
        pins[role] = fp
    return pins


def read_parties_file(path):
    """The pinned fingerprints of a parties file: JSON or TOML mapping each role to its fingerprint.

    The mapping may sit at the top of the file or under ``parties``::

        {"brand": "ABCD-...", "media": "EFGH-..."}

    Raises
    ------
    InputError
        If the file is missing, unreadable or holds anything but role = fingerprint.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read the parties file ({exc.strerror})", path=path) from None
    try:
        if path.suffix.lower() == ".toml":
            import tomllib

            document = tomllib.loads(text)
        else:
            document = json.loads(text)
    except ValueError as exc:
        raise InputError(f"the parties file is not valid {'TOML' if path.suffix.lower() == '.toml' else 'JSON'} "
                         f"({exc})", path=path) from None
    document = document.get("parties", document) if isinstance(document, dict) else None
    if not isinstance(document, dict) or not all(isinstance(v, str) for v in document.values()):
        raise InputError("the parties file must map each role to its fingerprint "
                         "({\"brand\": \"ABCD-...\", \"media\": \"EFGH-...\"})", path=path)
    return parse_fingerprints(document, source=str(path))
