"""Homomorphic encryption backends behind one interface (see :mod:`fedscore.he.base`).

Examples
--------
>>> from fedscore.he import create_context, load_context
>>> owner = create_context("ckks")
>>> peer = load_context(owner.public_context().to_bytes())
>>> enc = peer.encrypt([1.0, 2.0]) + [0.5, 0.5]
>>> owner.decrypt(owner.load_vector(enc.to_bytes())).round(6)
array([1.5, 2.5])
"""

from . import _envelope
from .base import EncryptedVector, HEContext
from .ckks import CKKSContext, CKKSVector
from .elgamal import BitKey, BitVector
from .paillier import PaillierContext, PaillierVector

_CONTEXTS = {"ckks": CKKSContext, "paillier": PaillierContext, "elgamal": BitKey}


def create_context(scheme, **params):
    """Generate a fresh key pair for ``scheme`` (``"ckks"``, ``"paillier"`` or ``"elgamal"``, bits only).

    ``params`` go to :class:`CKKSContext` or :class:`PaillierContext`.
    """
    try:
        context_class = _CONTEXTS[scheme]
    except KeyError:
        raise ValueError(f"unknown HE scheme {scheme!r}; expected one of {sorted(_CONTEXTS)}") from None
    return context_class(**params)


def load_context(data, *, allow_weak_key=False):
    """Rebuild a context from :meth:`HEContext.to_bytes`, checking integrity and parameters.

    Parameters
    ----------
    data : bytes
    allow_weak_key : bool
        Accept a Paillier key below 128-bit security (with a warning). The receiver's
        own policy: a peer cannot lower it by serialising its context with the flag set.
        CKKS parameters are always checked against the 128-bit table.

    Raises
    ------
    fedscore.errors.CryptoError
        If the bytes are truncated, corrupted, not a context, or describe parameters
        below the security level the context was created with.
    """
    scheme, key_fingerprint, fields = _envelope.unpack(data, _envelope.KIND_CONTEXT)
    if scheme == "paillier":
        return PaillierContext._from_fields(key_fingerprint, fields, allow_weak_key=allow_weak_key)
    return _CONTEXTS[scheme]._from_fields(key_fingerprint, fields)


__all__ = [
    "BitKey",
    "BitVector",
    "CKKSContext",
    "CKKSVector",
    "EncryptedVector",
    "HEContext",
    "PaillierContext",
    "PaillierVector",
    "create_context",
    "load_context",
]
