"""A bound on the CKKS error of every value, carried through each operation.

Model (Costache, Curtis, Hales, Murphy, Ogilvie and Player, "On the precision loss in
approximate homomorphic encryption", ePrint 2022/162): every rounding to integers
after a division -- SEAL's fresh public-key encryption divides by the special prime,
and every rescale by a data prime -- leaves ``r0 + r1 * s`` with ``r0, r1`` uniform in
``[-1/2, 1/2]`` per coefficient. In slot ``i`` this is Gaussian with variance
``N/24 * (1 + |s(zeta_i)|^2)`` scale units (real part), and ``|s(zeta_i)|^2`` is
exponential with mean ``E|s|^2 = 2N/3`` for SEAL's uniform ternary secret. Encoding a
plaintext rounds its coefficients too: variance ``N/24``, multiplied by the message
when the plaintext is a multiplier.

So the error variance of a slot is ``base + key * E_i + relative * M^2``, where
``E_i = |s(zeta_i)|^2 / (2N/3)`` is exponential with mean 1 and the same in every
ciphertext, and ``M`` bounds the encrypted values that met a plaintext multiplier.
"""

import math
from dataclasses import dataclass

import numpy as np

from ..params import STATISTICAL_SECURITY_BITS

# SEAL samples the secret key uniformly from {-1, 0, 1}: a coefficient is non-zero with
# probability 2/3, so E|s(zeta)|^2 = 2N/3 (SEAL, KeyGenerator, sample_poly_ternary).
TERNARY_SECRET_DENSITY = 2.0 / 3.0

# -ln(2^-s): the exponent of the tail probabilities used below.
_TAIL_LOG = STATISTICAL_SECURITY_BITS * math.log(2.0)


def worst_slot(slots):
    """Bound on ``max_i E_i`` over ``slots`` exponential(1) variables.

    ``P(max > k) <= slots * exp(-k) = 2^-s`` for ``k = ln(slots) + s ln 2``.
    """
    return math.log(slots) + _TAIL_LOG


def weighted_exponential_sum(weights):
    """Bound on ``sum_i w_i E_i`` for independent exponential(1) ``E_i``, per column.

    Laurent and Massart (Annals of Statistics, 2000, Lemma 1; an exponential(1) is half
    a chi-square with two degrees of freedom): exceeded with probability ``2^-s``.
    ``weights`` has one row per slot and one column per output.
    """
    total = weights.sum(axis=0)
    spread = np.sqrt((weights**2).sum(axis=0) * _TAIL_LOG)
    return total + 2.0 * spread + 2.0 * weights.max(axis=0) * _TAIL_LOG


@dataclass(frozen=True)
class ErrorVariance:
    """Variance of a value's CKKS error: ``base + key * E_i + relative * M^2`` (value units).

    A packed vector's model holds for each slot ``i``; a partial sum's has ``key = 0``
    (the sum over slots already took the ``E_i`` into account).
    """

    base: float = 0.0
    key: float = 0.0
    relative: float = 0.0

    def __add__(self, other):
        return ErrorVariance(self.base + other.base, self.key + other.key, self.relative + other.relative)

    def __mul__(self, factor):
        return ErrorVariance(self.base * factor, self.key * factor, self.relative * factor)

    def combined(self, other):
        """The error of ``x + y`` when the two errors may be correlated: ``(a+b)^2 <= 2a^2 + 2b^2``."""
        return (self + other) * 2.0

    def summed(self, weights):
        """The error of ``sum_i w_i x_i`` over slots, for each column of ``weights``.

        ``weights`` is ``(slots, d)``: the sum of squared multipliers per slot. Returns
        the largest bound over the columns, with ``key = 0``.
        """
        base = self.base * weights.sum(axis=0) + self.key * weighted_exponential_sum(weights)
        return ErrorVariance(float(np.max(base)), 0.0, float(np.max(self.relative * weights.sum(axis=0))))

    def total(self, message_bound, key_factor):
        """The variance for a message bound ``M`` and a bound ``key_factor`` on ``E_i``."""
        return self.base + self.key * key_factor + self.relative * message_bound**2
