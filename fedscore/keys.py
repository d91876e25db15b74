"""Key ceremony for horizontal protocols: one CKKS key shared by the parties, none for the coordinator.

In horizontal mode every party encrypts its model update under the same CKKS key, the
coordinator adds the ciphertexts, and every party decrypts the sum. The ceremony
therefore produces:

* one secret key file per party (``party-1.secret`` ...), all holding the same secret
  context, written owner-only (mode 0600) and never overwritten;
* ``coordinator.public``: the public context only, with which the coordinator can add
  ciphertexts (and check what it adds) but never decrypt;
* ``keys.json``: a public manifest (scheme, parameters, key fingerprint, file names), so
  that any file can be checked against the ceremony it came from.

Whoever runs the ceremony sees the secret key: in deployment that is one of the parties
(or an operator the parties trust), who hands each party its file over an
authenticated, confidential channel and gives the coordinator only ``coordinator.public``.
"""

import json
import os
import stat
from pathlib import Path

from .errors import CryptoError, InputError
from .he import create_context, load_context

KEY_SCHEME = "ckks"
"""Horizontal aggregation adds real-valued updates: CKKS at the 128-bit parameters of
:mod:`fedscore.params` (sums need no multiplication, so no relinearisation or Galois keys)."""

SECRET_FILE_MODE = 0o600
"""Owner read/write only: the secret context must not be readable by other local users."""

KEY_DIR_MODE = 0o700
PUBLIC_FILE = "coordinator.public"
MANIFEST_FILE = "keys.json"
SECRET_SUFFIX = ".secret"


def party_key_name(index):
    """File name of the ``index``-th party's (1-based) secret key."""
    return f"party-{index}{SECRET_SUFFIX}"


def init_keys(out_dir, parties):
    """Run the key ceremony: write ``parties`` secret key files and the coordinator's public file.

    Parameters
    ----------
    out_dir : str or Path
        Created if needed (mode 0700). Refused if it already holds any key file.
    parties : int
        Number of parties (at least 2).

    Returns
    -------
    dict
        The manifest written to ``keys.json``.

    Raises
    ------
    InputError
        For fewer than two parties or when a key file already exists.

    Notes
    -----
    Every file is created with ``O_EXCL``, so an existing key is never replaced: a new key
    would make every ciphertext and every other party's file from the old ceremony useless
    without anyone noticing until the next run.
    """
    if int(parties) != parties or parties < 2:
        raise InputError(f"a key ceremony needs at least 2 parties, not {parties!r}")
    out_dir = Path(out_dir)
    names = [party_key_name(i) for i in range(1, int(parties) + 1)]
    existing = [n for n in names + [PUBLIC_FILE, MANIFEST_FILE] if (out_dir / n).exists()]
    if existing:
        raise InputError(f"key files already exist ({', '.join(existing)}): refusing to overwrite them", path=out_dir)
    out_dir.mkdir(parents=True, exist_ok=True, mode=KEY_DIR_MODE)

    context = create_context(KEY_SCHEME)
    secret = context.to_bytes(include_secret_key=True)
    for name in names:
        _write_new(out_dir / name, secret, SECRET_FILE_MODE)
    _write_new(out_dir / PUBLIC_FILE, context.public_context().to_bytes(), 0o644)
    manifest = {
        "scheme": context.scheme,
        "fingerprint": context.fingerprint.hex(),
        "poly_modulus_degree": context.poly_modulus_degree,
        "coeff_mod_bit_sizes": list(context.coeff_mod_bit_sizes),
        "global_scale_bits": context.global_scale_bits,
        "parties": names,
        "public": PUBLIC_FILE,
    }
    _write_new(out_dir / MANIFEST_FILE, (json.dumps(manifest, indent=2) + "\n").encode(), 0o644)
    return manifest


def _write_new(path, data, mode):
    """Create ``path`` with ``mode`` from the start (no window where it is readable), refusing to replace it."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise InputError("key file already exists: refusing to overwrite it", path=path) from None
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, mode)  # the umask may have removed bits we asked for


def read_manifest(key_dir):
    """Return the ceremony manifest of ``key_dir``."""
    path = Path(key_dir) / MANIFEST_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("not a key folder (no keys.json): run 'fedscore keys init' first", path=key_dir) from None
    except json.JSONDecodeError as exc:
        raise InputError(f"keys.json is not valid JSON ({exc})", path=path) from None


def load_secret_key(path, fingerprint=None):
    """Load a party's secret context, checking its file permissions and its key.

    Parameters
    ----------
    path : str or Path
    fingerprint : str, optional
        Hex fingerprint the key must have (from the manifest or the coordinator).

    Returns
    -------
    fedscore.he.HEContext
        A context that can decrypt.

    Raises
    ------
    CryptoError
        If the file is readable by group or others, holds no secret key, or is another key.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("secret key file not found", path=path)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise CryptoError(f"{path}: secret key file is accessible by other users (mode {mode:o}): chmod 600 it")
    context = _load(path)
    if not context.has_secret_key:
        raise CryptoError(f"{path}: holds no secret key (is it the coordinator's public file?)")
    _check_fingerprint(context, fingerprint, path)
    return context


def load_public_key(path, fingerprint=None):
    """Load the coordinator's public context, refusing a file that holds a secret key.

    Raises
    ------
    CryptoError
        If the file holds a secret key: the coordinator must never be able to decrypt.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("public key file not found", path=path)
    context = _load(path)
    if context.has_secret_key:
        raise CryptoError(f"{path}: holds a secret key; the coordinator must get only the public context "
                          f"({PUBLIC_FILE})")
    _check_fingerprint(context, fingerprint, path)
    return context


def _load(path):
    try:
        return load_context(path.read_bytes())
    except CryptoError as exc:
        raise CryptoError(f"{path}: {exc}") from None


def _check_fingerprint(context, fingerprint, path):
    if fingerprint is not None and context.fingerprint.hex() != fingerprint:
        raise CryptoError(f"{path}: key {context.fingerprint.hex()[:12]}... is not the expected key "
                          f"{fingerprint[:12]}...: all files must come from one key ceremony")
