"""CKKS through TenSEAL: fast, approximate arithmetic on encrypted real vectors.

Representation
--------------
A :class:`CKKSVector` is a list of TenSEAL ciphertexts, each with ``N/2`` slots, in one
of two layouts:

* **packed** -- value ``i`` sits in slot ``i % slots`` of ciphertext ``i // slots``;
  vectors longer than one ciphertext simply span several. This is what
  :meth:`CKKSContext.encrypt` returns.
* **partial sums** -- value ``j`` is the *sum of all slots* of ciphertext ``j``. This is
  what :meth:`CKKSVector.dot` and :meth:`CKKSVector.sum` return: they multiply
  ciphertexts by plaintexts and add across ciphertexts, but never rotate, so the
  context needs no Galois keys (a 0.5 MB public context instead of 35 MB) and the
  decryptor adds the slots up after decryption.

Partial sums put one ciphertext on the wire per output value (about 235 KB each at
the default parameters), and the key owner who decrypts them sees every slot, that
is every per-row product, unless they are masked. Adding a plaintext to a
partial-sum vector therefore splits it into random shares across all slots (see
:meth:`CKKSVector.__add__`), so a mask added to protect a sum protects each slot too.

Exactness of the scale
----------------------
TenSEAL labels a rescaled ciphertext with the nominal scale ``2^scale_bits`` although
the prime it divided by differs from it (a relative bias of about ``2^-23`` per
multiplication at the default parameters). Every plaintext multiplier is therefore
pre-multiplied by ``q / 2^scale_bits``, the ratio of the prime that the next rescale
drops to the nominal scale, so that the true scale stays exactly ``2^scale_bits``.

Error tracking and release
--------------------------
Each vector carries a bound on the variance of its CKKS error
(:class:`~fedscore.he._ckks_error.ErrorVariance`), propagated operation by operation;
:meth:`CKKSContext.decrypt_release` turns it into the flooding noise (see there).
"""

import json
import math
import statistics

import numpy as np
import tenseal as ts
import tenseal.sealapi as sealapi

from ..errors import CryptoError
from ..params import (
    CKKS_COEFF_MOD_BIT_SIZES,
    CKKS_GLOBAL_SCALE_BITS,
    CKKS_MAX_COEFF_MODULUS_BITS_128,
    CKKS_POLY_MODULUS_DEGREE,
    STATISTICAL_SECURITY_BITS,
)
from . import _envelope
from ..parallel import parallel_map
from ._ckks_error import TERNARY_SECRET_DENSITY, ErrorVariance, worst_slot
from .random import gaussian, uniform
from ._validate import plain_matrix, plain_operand, release_bound, values_to_encrypt
from .base import EncryptedVector, HEContext

# Number of values one key releases before refusing more. Flooding noise grows with the
# square root of the number of decryption queries an adversary sees (Li, Micciancio,
# Schultz and Sorrell, CRYPTO 2022); 2^16 covers e.g. 300 gradient
# coordinates for 200 rounds.
RELEASE_BUDGET = 2**16

# sigma = sqrt(12 * queries) * 2^(s/2) * t gives s bits of security against key recovery
# (Li, Micciancio, Schultz and Sorrell, CRYPTO 2022; the formula OpenFHE implements
# for its NOISE_FLOODING_DECRYPT mode).
_FLOODING_QUERY_FACTOR = 12

# Gaussian tail multiplier: |error| exceeds _TAIL_Z standard deviations with probability
# 2^-STATISTICAL_SECURITY_BITS, which turns the tracked variance into a bound t.
_TAIL_Z = statistics.NormalDist().inv_cdf(1.0 - 2.0 ** -(STATISTICAL_SECURITY_BITS + 1))

_PACKED, _PARTIAL = "packed", "partial"

_VARIANCE_SLACK = 1e-9
"""Relative slack when a declared error variance is compared with the key owner's bound:
the two are computed in floating point along different paths."""


def _terms(error):
    return (error.base, error.key, error.relative)


def _check_parameters(poly_modulus_degree, coeff_mod_bit_sizes, global_scale_bits):
    """Refuse parameters outside the HomomorphicEncryption.org 128-bit table."""
    if poly_modulus_degree not in CKKS_MAX_COEFF_MODULUS_BITS_128:
        allowed = ", ".join(str(n) for n in CKKS_MAX_COEFF_MODULUS_BITS_128)
        raise CryptoError(f"CKKS poly_modulus_degree {poly_modulus_degree} is not one of {allowed}")
    total = sum(coeff_mod_bit_sizes)
    limit = CKKS_MAX_COEFF_MODULUS_BITS_128[poly_modulus_degree]
    if total > limit:
        raise CryptoError(
            f"CKKS coefficient modulus of {total} bits is above {limit} bits, the largest "
            f"with 128-bit security for N = {poly_modulus_degree} (HomomorphicEncryption.org standard)"
        )
    if len(coeff_mod_bit_sizes) < 2:
        raise CryptoError("CKKS needs at least two primes: a data prime and the special prime")
    if not 0 < global_scale_bits < coeff_mod_bit_sizes[0]:
        raise CryptoError(
            f"CKKS scale of 2^{global_scale_bits} leaves no room below the first prime "
            f"({coeff_mod_bit_sizes[0]} bits)"
        )



class CKKSContext(HEContext):
    """A CKKS key pair (or its public part) with parameters checked for 128-bit security.

    Parameters
    ----------
    poly_modulus_degree : int
        Ring dimension ``N``; a ciphertext holds ``N / 2`` values.
    coeff_mod_bit_sizes : sequence of int
        Bit sizes of the primes of the coefficient modulus: the first holds the integer
        part of results, each middle one is dropped by one multiplication, the last is
        SEAL's special prime. Their sum must stay within
        :data:`~fedscore.params.CKKS_MAX_COEFF_MODULUS_BITS_128` for ``N``.
    global_scale_bits : int
        Values are encoded as ``round(x * 2^global_scale_bits)``.
    release_budget : int
        Number of values :meth:`decrypt_release` may release under this key; the
        flooding noise grows with its square root.

    Attributes
    ----------
    slots : int
        Values per ciphertext.
    max_depth : int
        Plaintext multiplications a fresh ciphertext supports.
    released : int
        Values released so far (counted by the key owner, kept across serialisation).

    Notes
    -----
    SEAL, underneath TenSEAL, enforces the same 128-bit table, so there is no way to
    opt into weaker parameters. Relinearisation and Galois keys are never serialised:
    no operation here multiplies two ciphertexts or rotates one.

    Examples
    --------
    >>> ctx = CKKSContext()
    >>> enc = ctx.encrypt([1.0, 2.0, 3.0])
    >>> np.round(ctx.decrypt(enc * [2.0, 2.0, 2.0]), 6)
    array([2., 4., 6.])
    """

    scheme = "ckks"

    def __init__(
        self,
        poly_modulus_degree=CKKS_POLY_MODULUS_DEGREE,
        coeff_mod_bit_sizes=CKKS_COEFF_MOD_BIT_SIZES,
        global_scale_bits=CKKS_GLOBAL_SCALE_BITS,
        release_budget=RELEASE_BUDGET,
    ):
        coeff_mod_bit_sizes = [int(b) for b in coeff_mod_bit_sizes]
        _check_parameters(poly_modulus_degree, coeff_mod_bit_sizes, global_scale_bits)
        try:
            seal = ts.context(ts.SCHEME_TYPE.CKKS, poly_modulus_degree, coeff_mod_bit_sizes=coeff_mod_bit_sizes)
        except ValueError as error:
            raise CryptoError(f"SEAL refused the CKKS parameters: {error}") from error
        self._setup(seal, poly_modulus_degree, coeff_mod_bit_sizes, global_scale_bits, release_budget, 0)

    def _setup(self, seal, poly_modulus_degree, coeff_mod_bit_sizes, global_scale_bits, release_budget, released):
        self.poly_modulus_degree = poly_modulus_degree
        self.coeff_mod_bit_sizes = tuple(coeff_mod_bit_sizes)
        self.global_scale_bits = global_scale_bits
        self.release_budget = int(release_budget)
        self.released = int(released)
        self.slots = poly_modulus_degree // 2
        self._seal = seal
        self._scale = 2.0**global_scale_bits
        seal.global_scale = self._scale
        primes = [m.value() for m in sealapi.CoeffModulus.Create(poly_modulus_degree, list(coeff_mod_bit_sizes))]
        data_primes = primes[:-1]  # the last one is the special prime, used for key switching only
        self.max_depth = len(data_primes) - 1
        # The rescale after the d-th multiplication drops data_primes[-1 - d].
        self._rescale_factors = [data_primes[-1 - d] / self._scale for d in range(self.max_depth)]
        # After d multiplications a slot holds |value| < q_0 ... q_(k-d) / (2 * scale).
        self._capacity = [
            2.0 ** (sum(coeff_mod_bit_sizes[: len(data_primes) - d]) - global_scale_bits - 1)
            for d in range(self.max_depth + 1)
        ]
        # Per-slot error variances in value units (see fedscore.he._ckks_error).
        unit = poly_modulus_degree / 24 / self._scale**2
        self._rounding = ErrorVariance(base=unit, key=unit * TERNARY_SECRET_DENSITY * poly_modulus_degree)
        self._encoding = ErrorVariance(base=unit)
        self._multiplier_encoding = ErrorVariance(relative=unit)
        self._worst_slot = worst_slot(self.slots)
        self._fingerprint = _envelope.fingerprint(self._public_bytes())

    def _public_bytes(self):
        return self._seal.serialize(
            save_public_key=True, save_secret_key=False, save_galois_keys=False, save_relin_keys=False
        )

    @property
    def fingerprint(self):
        return self._fingerprint

    @property
    def has_secret_key(self):
        return self._seal.has_secret_key()

    # --- keys and serialisation -------------------------------------------------------

    def public_context(self):
        public = CKKSContext.__new__(CKKSContext)
        seal = ts.context_from(self._public_bytes())
        public._setup(
            seal, self.poly_modulus_degree, self.coeff_mod_bit_sizes, self.global_scale_bits, self.release_budget, 0
        )
        return public

    def to_bytes(self, include_secret_key=False):
        if include_secret_key and not self.has_secret_key:
            raise CryptoError("this CKKS context holds no secret key to serialise")
        meta = {
            "poly_modulus_degree": self.poly_modulus_degree,
            "coeff_mod_bit_sizes": list(self.coeff_mod_bit_sizes),
            "global_scale_bits": self.global_scale_bits,
            "release_budget": self.release_budget,
            "released": self.released if include_secret_key else 0,
        }
        seal_bytes = self._seal.serialize(
            save_public_key=True, save_secret_key=include_secret_key, save_galois_keys=False, save_relin_keys=False
        )
        fields = [json.dumps(meta).encode(), seal_bytes]
        return _envelope.pack(_envelope.KIND_CONTEXT, self.scheme, self._fingerprint, fields)

    @classmethod
    def _from_fields(cls, key_fingerprint, fields):
        """Rebuild a context from an opened envelope (see :func:`fedscore.he.load_context`)."""
        try:
            meta_bytes, seal_bytes = fields
            meta = json.loads(meta_bytes)
            degree = int(meta["poly_modulus_degree"])
            bit_sizes = [int(b) for b in meta["coeff_mod_bit_sizes"]]
            scale_bits = int(meta["global_scale_bits"])
            budget, released = int(meta["release_budget"]), int(meta["released"])
        except (ValueError, KeyError, TypeError) as error:
            raise CryptoError(f"serialised CKKS context has malformed parameters: {error}") from error
        _check_parameters(degree, bit_sizes, scale_bits)
        try:
            seal = ts.context_from(seal_bytes)
        except Exception as error:  # TenSEAL raises bare exceptions on bad protobuf input
            raise CryptoError(f"serialised CKKS context could not be loaded: {error}") from error
        context = cls.__new__(cls)
        context._setup(seal, degree, bit_sizes, scale_bits, budget, released)
        if context.fingerprint != key_fingerprint:
            raise CryptoError("serialised CKKS context does not match its key fingerprint")
        return context

    def __getstate__(self):
        return {"data": self.to_bytes(include_secret_key=self.has_secret_key)}

    def __setstate__(self, state):
        _, key_fingerprint, fields = _envelope.unpack(state["data"], _envelope.KIND_CONTEXT)
        self.__dict__.update(CKKSContext._from_fields(key_fingerprint, fields).__dict__)

    # --- encryption ---------------------------------------------------------------------

    def encrypt(self, values):
        """Encrypt a 1-d array of floats into a packed vector.

        Examples
        --------
        >>> ctx = CKKSContext()
        >>> ctx.encrypt(np.zeros(5000)).size
        5000
        """
        values = values_to_encrypt(values)
        chunks = [self._padded(values[start:start + self.slots]) for start in range(0, values.size, self.slots)]
        ciphertexts = parallel_map(lambda chunk: ts.ckks_vector(self._seal, chunk), chunks)
        return CKKSVector(self, ciphertexts, values.size, _PACKED, 0, self._rounding + self._encoding)

    def _padded(self, chunk):
        """Return ``chunk`` zero-padded to a full ciphertext, as the list TenSEAL encodes."""
        padded = np.zeros(self.slots)
        padded[:chunk.size] = chunk
        return padded.tolist()

    # --- decryption ---------------------------------------------------------------------

    def _check_own(self, vector):
        if not isinstance(vector, CKKSVector):
            raise CryptoError(f"expected a CKKS encrypted vector, got {type(vector).__name__}")
        if vector.context.fingerprint != self._fingerprint:
            raise CryptoError("vector was encrypted under another key")
        if not self.has_secret_key:
            raise CryptoError("this CKKS context holds only the public key and cannot decrypt")

    def decrypt(self, vector):
        """Raw decryption, for the key owner's own use only.

        The result carries the CKKS error, which depends on the secret key: handing it to
        the party that produced the ciphertext leaks the key (Li & Micciancio, EUROCRYPT
        2021). Use :meth:`decrypt_release` for anything that leaves the key owner.
        """
        self._check_own(vector)
        secret_key = self._seal.secret_key()
        slots = parallel_map(lambda ct: np.asarray(ct.decrypt(secret_key)), vector.ciphertexts)
        if vector.layout == _PARTIAL:
            return np.array([math.fsum(s) for s in slots])
        return np.concatenate(slots)[:vector.size]

    def product_error(self, rows, terms, additions=1):
        """The key owner's own bound on the error variance of a vector a peer computed from its encryptions.

        The vector is what the protocol says the peer computes under this key: from
        packed, fresh encryptions of ``rows`` values each, the sum of one
        :meth:`CKKSVector.dot` per term, then ``additions`` plaintext additions (a
        plaintext term, a mask, slot shares). Each term is ``(square_sum,
        largest_square)``: public bounds on ``sum_i m_ij^2`` over any column of the
        plaintext matrix and on any ``m_ij^2``, as multiplied (scales included).

        Parameters
        ----------
        rows : int
        terms : sequence of (float, float)
        additions : int

        Returns
        -------
        ErrorVariance
            At least the variance the vector tracks whatever matrix within those bounds
            the peer used: the tracking of :meth:`CKKSVector.dot` is replayed with the
            squared multipliers that maximise it (as many slots as the bounds allow at
            the largest square: every term of the Laurent-Massart bound grows when the
            weights concentrate), and never below a fresh partial sum's.

        Notes
        -----
        The variance a vector declares in its header is its producer's account: the
        flooding noise of a release must not rest on it, since a smaller declared
        variance means less noise than the ciphertext's error needs (Li and Micciancio,
        EUROCRYPT 2021). :meth:`accept` checks a vector against this bound.
        """
        blocks = -(-int(rows) // self.slots)
        fresh = self._rounding + self._encoding
        total = None
        for square_sum, largest_square in terms:
            weights = self._worst_weights(square_sum, largest_square, blocks)
            term = fresh.summed(weights) + self._over_slots(self._rounding + self._multiplier_encoding, blocks)
            total = term if total is None else total.combined(term)
        total = total + self._encoding * (self.slots * int(additions))
        floor = self._over_slots(fresh, 1)
        return ErrorVariance(*(max(a, b) for a, b in zip(_terms(total), _terms(floor))))

    def _worst_weights(self, square_sum, largest_square, blocks):
        """Per-slot squared multipliers ``(slots, 1)`` that maximise the tracked error under the bounds."""
        total = float(square_sum)
        peak = min(float(largest_square) * blocks, total)  # a slot meets one row per block
        weights = np.zeros((self.slots, 1))
        if peak > 0:
            full = min(int(total // peak), self.slots)
            weights[:full] = peak
            if full < self.slots:
                weights[full] = total - full * peak
        return weights

    def _over_slots(self, per_slot, count):
        """A per-slot error summed over all slots of ``count`` ciphertexts (a partial sum's)."""
        return per_slot.summed(np.full((self.slots, 1), float(count)))

    def accept(self, vector, error, what="the vector"):
        """Return ``vector`` carrying the key owner's own error bound ``error`` instead of its header's.

        A vector whose header declares more error than ``error`` was not computed as the
        protocol says (larger multipliers, more operations): it is refused rather than
        released with noise sized for something else.

        Raises
        ------
        CryptoError
        """
        self._check_own(vector)
        declared, own = _terms(vector.error), _terms(error)
        if any(d > o * (1.0 + _VARIANCE_SLACK) for d, o in zip(declared, own)):
            raise CryptoError(
                f"{what} declares a CKKS error variance above what the protocol's computation can produce "
                f"({declared} against at most {own}): it was not computed as the protocol says, refused")
        return vector._derive(vector.ciphertexts, error)

    def _error_bound(self, vector, message_bound):
        """Bound on ``|CKKS error|`` of each value, exceeded with probability about ``2^-s``."""
        return _TAIL_Z * math.sqrt(vector.error.total(message_bound, self._worst_slot))

    def release_noise_std(self, vector, bound, message_bound=None):
        """Standard deviation of the flooding noise :meth:`decrypt_release` adds to ``vector``.

        Public (it depends only on the parameters, the operations and ``bound``), so a
        protocol can check before releasing that the noise suits its precision.
        """
        message_bound = bound if message_bound is None else float(message_bound)
        queries = math.sqrt(_FLOODING_QUERY_FACTOR * self.release_budget)
        return queries * 2.0 ** (STATISTICAL_SECURITY_BITS / 2) * self._error_bound(vector, message_bound)

    def decrypt_release(self, vector, bound, message_bound=None):
        """Decrypt for release to another party: flooded with Gaussian noise, then rounded.

        Parameters
        ----------
        vector : CKKSVector
        bound : float
            An upper bound on ``|value|`` that the caller guarantees.
        message_bound : float, optional
            An upper bound on every encrypted value that went through a plaintext
            multiplication on the way (e.g. 1 for residuals in ``[-1, 1]``); it scales
            the part of the CKKS error that grows with the message. Defaults to
            ``bound``, which is pessimistic when a large mask was added afterwards.

        Returns
        -------
        numpy.ndarray
            ``round((x + e + z) / g) * g``, where ``x`` is the true value, ``e`` the CKKS
            error, ``z ~ N(0, sigma^2)`` and ``g`` the largest power of two not above
            ``sigma``.

        Notes
        -----
        ``t = z_s * sqrt(v)`` bounds the CKKS error except with probability about
        ``2^-s`` (``s = STATISTICAL_SECURITY_BITS``), where ``v`` is the error variance
        tracked through the operations, evaluated at ``message_bound`` and at the
        worst slot, and ``z_s`` the Gaussian ``2^-s`` two-sided quantile (about 7.1).
        The noise has standard deviation ``sigma = sqrt(12 * release_budget) * 2^(s/2) * t``:
        by Li, Micciancio,
        Schultz and Sorrell (CRYPTO 2022) this keeps ``s`` bits of security against key
        recovery for up to ``release_budget`` released values, which is why the context
        counts them and refuses to exceed the budget. Rounding to a grid at or below
        ``sigma`` afterwards removes floating-point low bits without changing the
        accuracy. :meth:`release_noise_std` gives ``sigma`` in advance.

        Raises
        ------
        CryptoError
            If a value exceeds ``bound`` (beyond the CKKS error), ``bound`` exceeds what
            the ciphertext can hold at its depth (a wrapped-around value decrypts to
            garbage, undetectably), or the release budget is spent.
        """
        self._check_own(vector)
        bound = release_bound(bound)
        if bound >= self._capacity[vector.depth]:
            raise CryptoError(
                f"bound {bound:g} is beyond what a CKKS ciphertext holds after {vector.depth} "
                f"multiplication(s) ({self._capacity[vector.depth]:g}): values would have wrapped around"
            )
        if self.released + vector.size > self.release_budget:
            raise CryptoError(
                f"release budget of this CKKS key is spent ({self.released} of {self.release_budget} "
                f"values released, {vector.size} more asked): use a fresh key"
            )
        message_bound = bound if message_bound is None else float(message_bound)
        values = self.decrypt(vector)
        sigma = self.release_noise_std(vector, bound, message_bound)
        outside = np.flatnonzero(np.abs(values) > bound + self._error_bound(vector, message_bound))
        if outside.size:
            raise CryptoError(
                f"{outside.size} decrypted value(s) exceed the declared bound {bound:g} "
                f"(first at index {outside[0]}): refusing to release"
            )
        self.released += vector.size
        grid = 2.0 ** math.floor(math.log2(sigma))
        return np.round((values + sigma * gaussian(values.size)) / grid) * grid

    def load_vector(self, data):
        fields = _envelope.check_vector_key(data, self.scheme, self._fingerprint)
        try:
            meta = json.loads(fields[0])
            size, layout, depth = int(meta["size"]), meta["layout"], int(meta["depth"])
            variances = [float(v) for v in meta["error_variance"]]
            if len(variances) != 3:
                raise ValueError(f"{len(variances)} error-variance terms, expected 3")
        except (ValueError, KeyError, TypeError, IndexError) as error:
            raise CryptoError(f"serialised CKKS vector has a malformed header: {error}") from error
        expected = size if layout == _PARTIAL else -(-size // self.slots)
        if layout not in (_PACKED, _PARTIAL) or size < 1 or not 0 <= depth <= self.max_depth:
            raise CryptoError("serialised CKKS vector has an invalid header")
        if not all(math.isfinite(v) and v >= 0 for v in variances):
            raise CryptoError("serialised CKKS vector declares an invalid error variance")
        if len(fields) - 1 != expected:
            raise CryptoError(f"serialised CKKS vector holds {len(fields) - 1} ciphertexts, expected {expected}")
        try:
            ciphertexts = [ts.ckks_vector_from(self._seal, blob) for blob in fields[1:]]
        except Exception as error:  # TenSEAL raises bare exceptions on bad protobuf input
            raise CryptoError(f"serialised CKKS vector could not be loaded: {error}") from error
        # The error variance is the producer's account of its operations (semi-honest
        # model); it can never be below that of a fresh encryption.
        fresh = self._rounding + self._encoding
        if layout == _PARTIAL:
            fresh = self._over_slots(fresh, 1)
        error = ErrorVariance(*(max(a, b) for a, b in zip(variances, (fresh.base, fresh.key, fresh.relative))))
        return CKKSVector(self, ciphertexts, size, layout, depth, error)


class CKKSVector(EncryptedVector):
    """Encrypted real values under one CKKS key; see the module docstring for layouts.

    Attributes
    ----------
    context : CKKSContext
    ciphertexts : list of tenseal.CKKSVector
    layout : {"packed", "partial"}
    depth : int
        Plaintext multiplications performed so far.
    error : ErrorVariance
        Bound on the variance of each value's CKKS error.
    """

    def __init__(self, context, ciphertexts, size, layout, depth, error):
        self.context = context
        self.ciphertexts = list(ciphertexts)
        self._size = int(size)
        self.layout = layout
        self.depth = depth
        self.error = error

    @property
    def size(self):
        return self._size

    def _derive(self, ciphertexts, error, *, size=None, layout=None, depth=None):
        return CKKSVector(
            self.context,
            ciphertexts,
            self._size if size is None else size,
            self.layout if layout is None else layout,
            self.depth if depth is None else depth,
            error,
        )

    def _check_same_key(self, other):
        if not isinstance(other, CKKSVector):
            raise CryptoError(f"cannot combine a CKKS vector with a {type(other).__name__}")
        if other.context.fingerprint != self.context.fingerprint:
            raise CryptoError("cannot combine vectors encrypted under different keys")
        if other.size != self.size or other.layout != self.layout:
            raise CryptoError(
                f"cannot combine a {self.layout} vector of size {self.size} "
                f"with a {other.layout} vector of size {other.size}"
            )


    # --- addition -----------------------------------------------------------------------

    def __add__(self, other):
        """Add a vector under the same key, a plaintext array or a scalar.

        On a partial-sum vector, plaintext value ``a_j`` is split into random shares
        drawn uniformly from ``[-|a_j|, |a_j|]`` (corrected to sum to ``a_j``) over all
        slots of ciphertext ``j``: the sum is unchanged, and each slot -- otherwise a
        per-row product the key owner would see -- is hidden as well as the sum is.
        """
        if isinstance(other, EncryptedVector):
            self._check_same_key(other)
            ciphertexts = [a + b for a, b in zip(self.ciphertexts, other.ciphertexts)]
            return self._derive(ciphertexts, self.error.combined(other.error), depth=max(self.depth, other.depth))
        plain = plain_operand(other, self.size)
        context = self.context
        slots = context.slots
        if self.layout == _PACKED:
            chunks = [context._padded(plain[start:start + slots]) for start in range(0, self.size, slots)]
            encoding = context._encoding
        else:
            chunks = [_random_shares(total, slots).tolist() for total in plain]
            encoding = context._encoding * slots
        return self._derive([ct + chunk for ct, chunk in zip(self.ciphertexts, chunks)], self.error + encoding)

    def __neg__(self):
        return self._derive([-ct for ct in self.ciphertexts], self.error)

    def __sub__(self, other):
        if isinstance(other, EncryptedVector):
            return self + (-other)
        return self + -plain_operand(other, self.size)

    # --- multiplication by plaintexts ---------------------------------------------------

    def _next_factor(self):
        """Return the scale correction for the next multiplication, or refuse it."""
        if self.depth >= self.context.max_depth:
            raise CryptoError(
                f"out of multiplicative depth: this vector has had {self.depth} plaintext "
                f"multiplication(s), the parameters allow {self.context.max_depth}"
            )
        return self.context._rescale_factors[self.depth]

    def __mul__(self, other):
        """Multiply element-wise by a plaintext array or by a scalar (uses one level)."""
        if isinstance(other, EncryptedVector):
            raise TypeError("multiplying two encrypted vectors is not supported: multiply by a plaintext")
        factor = self._next_factor()
        context = self.context
        slots = context.slots
        if np.ndim(other) == 0:
            scalar = float(plain_operand(other, 1)[0])
            ciphertexts = parallel_map(lambda ct: ct * (scalar * factor), self.ciphertexts)
            largest = abs(scalar)
        else:
            plain = plain_operand(other, self.size)
            largest = float(np.max(np.abs(plain)))
            if self.layout == _PACKED:
                chunks = [context._padded(plain[start:start + slots] * factor) for start in range(0, self.size, slots)]
            else:
                chunks = [value * factor for value in plain]
            ciphertexts = parallel_map(lambda pair: pair[0] * pair[1], zip(self.ciphertexts, chunks))
        added = context._rounding + context._multiplier_encoding  # the rescale and the multiplier
        if self.layout == _PARTIAL:
            added = context._over_slots(added, 1)
        return self._derive(ciphertexts, self.error * largest**2 + added, depth=self.depth + 1)

    def dot(self, matrix):
        """Return ``matrix.T @ self`` as a partial-sum vector of ``matrix.shape[1]`` values.

        Costs one ciphertext-plaintext product per (ciphertext, column) pair and no
        rotation; uses one level. Output ``j`` is one ciphertext whose slots sum to
        ``sum_i matrix[i, j] * x_i``.
        """
        if self.layout != _PACKED:
            raise CryptoError("dot needs a packed vector; this one already holds partial sums")
        matrix = plain_matrix(matrix, self.size)
        factor = self._next_factor()
        context = self.context
        slots, columns = context.slots, matrix.shape[1]
        blocks = np.zeros((len(self.ciphertexts), slots, columns))
        blocks.reshape(-1, columns)[: self.size] = matrix
        scaled = blocks * factor

        def column(j):
            total = None
            for k, ct in enumerate(self.ciphertexts):
                if k and not scaled[k, :, j].any():
                    continue  # an all-zero block adds nothing (sparse tag columns)
                product = ct * scaled[k, :, j].tolist()
                total = product if total is None else total + product
            return total

        ciphertexts = parallel_map(column, range(columns))
        # Slot i of every block shares the secret-key factor E_i: weight it by the
        # squared multipliers of that slot across blocks.
        propagated = self.error.summed((blocks**2).sum(axis=0))
        added = context._over_slots(context._rounding + context._multiplier_encoding, len(self.ciphertexts))
        return self._derive(ciphertexts, propagated + added, size=columns, layout=_PARTIAL, depth=self.depth + 1)

    def sum(self):
        """Return the sum of all values as a partial-sum vector of size 1 (no rotation)."""
        total = self.ciphertexts[0]
        for ct in self.ciphertexts[1:]:
            total = total + ct
        if self.layout == _PACKED:
            # every slot, padding included, carries its own rounding error
            error = self.context._over_slots(self.error, len(self.ciphertexts))
        else:
            error = self.error * self.size**2  # partial sums may be correlated
        return self._derive([total], error, size=1, layout=_PARTIAL)

    # --- serialisation ------------------------------------------------------------------

    def to_bytes(self):
        meta = {
            "size": self.size,
            "layout": self.layout,
            "depth": self.depth,
            "error_variance": [self.error.base, self.error.key, self.error.relative],
        }
        fields = [json.dumps(meta).encode()] + [ct.serialize() for ct in self.ciphertexts]
        return _envelope.pack(_envelope.KIND_VECTOR, "ckks", self.context.fingerprint, fields)

    def __getstate__(self):
        return {"context": self.context, "data": self.to_bytes()}

    def __setstate__(self, state):
        self.__dict__.update(state["context"].load_vector(state["data"]).__dict__)

    def __repr__(self):
        return f"CKKSVector(size={self.size}, layout={self.layout!r}, depth={self.depth})"


def _random_shares(total, count):
    """Split ``total`` into ``count`` random shares of magnitude up to ``|total|``."""
    shares = abs(total) * (2.0 * uniform(count) - 1.0)
    return shares + (total - shares.sum()) / count
