"""The one small interface every protocol uses for homomorphic encryption.

Two backends implement it: CKKS through TenSEAL (:mod:`fedscore.he.ckks`, default, fast,
approximate) and Paillier through python-paillier (:mod:`fedscore.he.paillier`, exact).

A protocol never touches TenSEAL or phe directly. It holds an :class:`HEContext` (its own
key pair, or another party's public context) and :class:`EncryptedVector` values, and
sends them as bytes (:meth:`EncryptedVector.to_bytes`, :meth:`HEContext.load_vector`).

Decryption comes in two forms, and the difference is a security property:

* :meth:`HEContext.decrypt` gives the key owner the raw values. Use it only when the
  result stays with the key owner.
* :meth:`HEContext.decrypt_release` is the only way a decryption may leave the key owner:
  values are rounded to a fixed grid and, for CKKS, flooded with Gaussian noise
  ``STATISTICAL_SECURITY_BITS`` above the worst-case CKKS error, because a raw CKKS
  decryption handed back to the ciphertext's producer leaks the secret key
  (Li & Micciancio, EUROCRYPT 2021). Paillier's ``release_integers`` is its exact twin
  for values masked by uniform integers.

Protocols do not call these directly for another party: they go through
:class:`fedscore.kit.release.KeyOwner`, where the key owner checks what it is asked to
decrypt (count, shape, bound, its own release plan) and, for CKKS, sizes the flooding
by its own bound on the error (:meth:`fedscore.he.ckks.CKKSContext.product_error`)
rather than the one a vector declares.
"""

from abc import ABC, abstractmethod


class EncryptedVector(ABC):
    """A vector of real numbers encrypted under one key.

    Arithmetic reads like arithmetic: ``enc + enc``, ``enc + array``, ``enc - array``,
    ``enc * array`` (element-wise plaintext product) and ``enc * scalar``. Combining
    vectors under different keys raises :class:`~fedscore.errors.CryptoError`.
    """

    # Make NumPy hand ``array + enc`` and ``array * enc`` to the reflected operators
    # instead of broadcasting over the vector as if it were a scalar object.
    __array_ufunc__ = None

    @property
    @abstractmethod
    def size(self):
        """Number of encrypted values."""

    @abstractmethod
    def __add__(self, other):
        """Add another encrypted vector under the same key, a plaintext array or a scalar."""

    def __radd__(self, other):
        return self.__add__(other)

    @abstractmethod
    def __sub__(self, other):
        """Subtract an encrypted vector, a plaintext array or a scalar."""

    def __rsub__(self, other):
        return (-self).__add__(other)

    @abstractmethod
    def __neg__(self):
        """Negate every value (exact, consumes no multiplicative level)."""

    @abstractmethod
    def __mul__(self, other):
        """Multiply element-wise by a plaintext array or by a scalar."""

    def __rmul__(self, other):
        return self.__mul__(other)

    @abstractmethod
    def dot(self, matrix):
        """Return ``matrix.T @ self`` encrypted: a vector of ``matrix.shape[1]`` values.

        ``matrix`` is a plaintext ``(size, d)`` array held by the caller. This is the
        workhorse of encrypted gradients (``Xᵀ[[r]]``) and per-cluster sums.
        """

    @abstractmethod
    def sum(self):
        """Return the sum of all values as an encrypted vector of size 1."""

    @abstractmethod
    def to_bytes(self):
        """Serialise for a message; carries the key's fingerprint and an integrity check."""


class HEContext(ABC):
    """A key pair, or the public part of one, for a single scheme.

    Attributes
    ----------
    scheme : str
        ``"ckks"`` or ``"paillier"``.
    fingerprint : bytes
        Identifies the key; every serialised vector carries it, so a vector under
        another key is refused instead of decrypting to nonsense.
    """

    scheme = None

    @property
    @abstractmethod
    def fingerprint(self):
        """Bytes that identify the key (hash of the public key)."""

    @property
    @abstractmethod
    def has_secret_key(self):
        """Whether this context can decrypt."""

    @abstractmethod
    def encrypt(self, values):
        """Encrypt a 1-d array of floats; return an :class:`EncryptedVector`."""

    @abstractmethod
    def decrypt(self, vector):
        """Raw decryption for the key owner's own use; never send the result to another party."""

    @abstractmethod
    def decrypt_release(self, vector, bound):
        """Decrypt for release to another party: rounded and (CKKS) noise-flooded.

        Parameters
        ----------
        vector : EncryptedVector
        bound : float
            An upper bound on ``|value|`` that the caller guarantees (e.g. a mask's range);
            it sets the flooding noise, which is proportional to the CKKS error at that
            magnitude. Values outside it raise :class:`~fedscore.errors.CryptoError`.

        Returns
        -------
        numpy.ndarray
        """

    @abstractmethod
    def public_context(self):
        """Return a context with the same public key and no secret key."""

    @abstractmethod
    def to_bytes(self, include_secret_key=False):
        """Serialise; the secret key only when asked (for the owner's own key file)."""

    @abstractmethod
    def load_vector(self, data):
        """Deserialise an :class:`EncryptedVector` under this key, checking fingerprint and integrity."""
