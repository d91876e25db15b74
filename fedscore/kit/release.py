"""The one check a key owner makes before a decryption leaves it: ``protocols/encryption.md``, *Releases*.

A party that holds a secret key decrypts for another party only what its protocol says
it will, and decides that alone, from public sizes: never from a count, a bound, a scale
or an error variance the other side sends. Every protocol's releases go through a
:class:`KeyOwner`:

- its **plan**, fixed when the key is made: which releases the key makes and how many
  times each. A release beyond the plan is refused (the key's own release budget,
  counted here and kept with the key in the party's state);
- each release's :class:`Expected`: how many values, the bound on every value, and, for
  an aggregate the peer computed from the key owner's own encryptions, how
  (:class:`Product`: rows, and bounds on the plaintext multipliers). The key owner
  checks the count, the CKKS layout (a dot product's partial sums, never a packed
  vector: that would be its own ciphertext sent back) and depth, the Paillier exponent
  (the product's plaintext multiplications), and for CKKS replaces the error variance the vector
  declares by its own bound (:meth:`fedscore.he.ckks.CKKSContext.product_error`), which
  sizes the flooding noise.

Three calls: :meth:`KeyOwner.release` (values leave, flooded under CKKS, exact integers
under Paillier), :meth:`KeyOwner.release_bits` (single 0/1 values leave) and
:meth:`KeyOwner.load` (the same checks, for a key owner that keeps the decryption and
releases only something derived from it). Anything else stops the run with a one-line
:class:`~fedscore.errors.ProtocolError` or :class:`~fedscore.errors.CryptoError` naming
the release and what is wrong.

What this cannot see: which linear function of the key owner's ciphertexts the peer
computed. A peer that returns a selection of what it was given, of the right count,
passes; each protocol's spec says what bounds that (label DP, the counts themselves).
Nor can it tell a CKKS ciphertext the peer crafted from one it computed: CKKS releases
assume a peer that computes what the protocol says (``protocols/encryption.md``).

Examples
--------
>>> owner = KeyOwner(key, {"lookalike.release_aggregate": 1})  # doctest: +SKIP
>>> values = owner.release(blob, Expected("lookalike.release_aggregate", count=d + 1, bound=bound,
...                                       product=Product(rows=n, terms=((n, n),))))  # doctest: +SKIP
"""

from dataclasses import dataclass

from ..errors import CryptoError, ProtocolError


@dataclass(frozen=True)
class Product:
    """How the peer computed an aggregate from the key owner's fresh encryptions, in public numbers.

    Attributes
    ----------
    rows : int
        Values in each encrypted vector the key owner sent (packed, fresh).
    terms : tuple of (float, float)
        One per plaintext product that was summed: bounds on ``sum_i m_ij^2`` over any
        column of the plaintext matrix and on any ``m_ij^2``, as multiplied (the matrix
        shift included).
    additions : int
        Plaintext additions after the products (a plaintext term, the mask, slot shares).
    message_bound : float
        Bound on every encrypted value that met a multiplier (scales included).
    depth : int
        Plaintext multiplications on the way from the key owner's encryption (CKKS: the
        vector's depth; Paillier: each adds the encoding's fraction bits to the exponent).
    """

    rows: int
    terms: tuple = ()
    additions: int = 1
    message_bound: float = 1.0
    depth: int = 1


@dataclass(frozen=True)
class Expected:
    """One release as its key owner expects it, every number derived from public sizes.

    Attributes
    ----------
    step : str
        The release, as the key owner's plan names it (the protocol step).
    count : int
        Values released.
    bound : float
        Bound on every value, in value units (for a masked aggregate, the mask radius
        plus the aggregate's bound).
    product : Product or None
        How the values were computed: None for the key owner's own encrypted values
        passed through one plaintext multiplication (the ranks of a propensity run), or
        for the bits of :meth:`KeyOwner.release_bits`.
    """

    step: str
    count: int
    bound: float
    product: Product = None


class KeyOwner:
    """A secret key and the releases it may make: the one place a protocol decrypts for another party.

    Parameters
    ----------
    key : fedscore.he.base.HEContext
        The party's own key pair.
    plan : dict of str to int
        Releases this key makes in the run, by step, and how many times each.

    Attributes
    ----------
    made : dict of str to int
        Releases made so far, by step.

    Notes
    -----
    Picklable (the key pickles with its secret key): it lives in the party's state.
    """

    def __init__(self, key, plan):
        if not key.has_secret_key:
            raise CryptoError("a key owner needs the secret key")
        self.key = key
        self.plan = {step: int(times) for step, times in plan.items()}
        self.made = dict.fromkeys(self.plan, 0)

    @property
    def public_context(self):
        """The public key, for the peer."""
        return self.key.public_context()

    def release(self, data, expected):
        """Check and decrypt a serialised vector for release; see the module docstring.

        Returns
        -------
        numpy.ndarray or list of int
            CKKS: the values, flooded (:meth:`~fedscore.he.ckks.CKKSContext.decrypt_release`).
            Paillier: exact integers at the vector's exponent (two fresh encodings'
            worth of fraction bits), so that a uniform integer mask hides exactly
            (:meth:`~fedscore.he.paillier.PaillierContext.release_integers`).
        """
        vector = self.load(data, expected)
        if self.key.scheme == "ckks":
            product = expected.product
            if product is None:
                raise ProtocolError(f"{expected.step}: a CKKS release must be a dot product's partial sums")
            own = self.key.product_error(product.rows, product.terms, product.additions)
            vector = self.key.accept(vector, own, what=f"the vector of {expected.step}")
            return self.key.decrypt_release(vector, float(expected.bound), float(product.message_bound))
        return self.key.release_integers(vector, float(expected.bound))

    def release_bits(self, data, expected):
        """Decrypt values that must each be exactly 0 or 1 and release them as bits.

        For a selection of the key owner's own encrypted bits (a
        :class:`~fedscore.he.elgamal.BitKey`, one pair per value): a sum of several, a
        multiple of one or a forgery decrypts to no bit and is refused, so each value
        released tells at most one bit. Only the bits leave; there is no error to flood.

        Returns
        -------
        numpy.ndarray of int8
        """
        if self.key.scheme != "elgamal":
            raise ProtocolError(f"{expected.step}: bits are released from an ElGamal bit key only")
        self._count(expected.step)
        vector = self.key.load_vector(data)
        self._check_count(vector, expected)
        try:
            return self.key.decrypt_bits(vector)
        except CryptoError as error:
            raise ProtocolError(f"{expected.step}: {error}") from None

    def _count(self, step):
        """Count a release against the plan; refuse one the plan does not hold."""
        if step not in self.plan:
            raise ProtocolError(f"this key makes no release at {step}: refused")
        if self.made[step] >= self.plan[step]:
            raise ProtocolError(f"{step}: this key's {self.plan[step]} release(s) at this step are made: "
                                f"refused (a repeated or extra request)")
        self.made[step] += 1

    @staticmethod
    def _check_count(vector, expected):
        if vector.size != expected.count:
            raise ProtocolError(f"{expected.step}: received {vector.size} values to decrypt, the protocol releases "
                                f"{expected.count}: refused")

    def load(self, data, expected):
        """Count the release against the plan, then load the vector and check its count and shape.

        What :meth:`release` does before it decrypts; a protocol whose key owner keeps the
        decryption and releases only something derived from it (an argmin position, say)
        calls this and decrypts the vector itself.

        Returns
        -------
        fedscore.he.base.EncryptedVector
        """
        step = expected.step
        self._count(step)
        vector = self.key.load_vector(data)
        self._check_count(vector, expected)
        depth = 1 if expected.product is None else expected.product.depth
        if self.key.scheme == "ckks":
            if vector.layout != "partial":
                raise ProtocolError(f"{step}: received a packed vector where the protocol releases a dot product's "
                                    f"partial sums: refused (a ciphertext sent back as it was given?)")
            if vector.depth != depth:
                raise ProtocolError(f"{step}: received values after {vector.depth} plaintext multiplication(s), the "
                                    f"protocol's computation makes {depth}: refused")
        elif vector.exponent != (1 + depth) * self.key.precision_bits:
            raise ProtocolError(f"{step}: received values at exponent {vector.exponent}, not those of "
                                f"{depth} plaintext multiplication(s) ({(1 + depth) * self.key.precision_bits}): "
                                f"refused")
        return vector
