"""Checks on the plaintext side of homomorphic operations, shared by both backends."""

import numpy as np


def values_to_encrypt(values):
    """Return ``values`` as a non-empty, finite, 1-d float64 array."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"expected a non-empty 1-d array, got shape {values.shape}")
    if not np.all(np.isfinite(values)):
        raise ValueError("cannot encrypt NaN or infinite values")
    return values


def plain_operand(values, size):
    """Return a scalar or an array of ``size`` as a finite float64 array of ``size``."""
    plain = np.asarray(values, dtype=np.float64)
    if plain.ndim == 0:
        plain = np.full(size, float(plain))
    if plain.shape != (size,):
        raise ValueError(f"plaintext of shape {plain.shape} does not match an encrypted vector of size {size}")
    if not np.all(np.isfinite(plain)):
        raise ValueError("plaintext contains NaN or infinite values")
    return plain


def plain_matrix(matrix, size):
    """Return ``matrix`` as a finite float64 array of shape ``(size, d)``."""
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] != size:
        raise ValueError(f"matrix of shape {matrix.shape} does not match an encrypted vector of size {size}")
    if not np.all(np.isfinite(matrix)):
        raise ValueError("matrix contains NaN or infinite values")
    return matrix


def release_bound(bound):
    """Return ``bound`` as a positive finite float."""
    bound = float(bound)
    if not (bound > 0 and np.isfinite(bound)):
        raise ValueError(f"bound must be a positive finite number, got {bound}")
    return bound
