"""Unpredictable random floats for masks and flooding noise.

Flooding noise and slot masks protect secrets only if the party that sees the result
cannot predict them, so they are drawn from the operating system's CSPRNG
(:func:`os.urandom`) rather than from NumPy's seedable generators, whose state can be
recovered from enough outputs.
"""

import os

import numpy as np

_MANTISSA_BITS = 53  # a float64 holds 53 bits of uniform randomness in [0, 1)


def uniform(size):
    """Return ``size`` independent floats uniform in ``[0, 1)``."""
    words = np.frombuffer(os.urandom(8 * size), dtype=np.uint64)
    return np.ldexp((words >> np.uint64(64 - _MANTISSA_BITS)).astype(np.float64), -_MANTISSA_BITS)


def gaussian(size):
    """Return ``size`` independent standard normal floats (Box-Muller transform).

    Notes
    -----
    Box-Muller turns two uniforms into two normals exactly; ``1 - u`` keeps the
    logarithm's argument in ``(0, 1]``.
    """
    pairs = (size + 1) // 2
    radius = np.sqrt(-2.0 * np.log1p(-uniform(pairs)))
    angle = 2.0 * np.pi * uniform(pairs)
    return np.concatenate([radius * np.cos(angle), radius * np.sin(angle)])[:size]
