"""Differential privacy for model updates: per-row clipping, Gaussian noise, an accountant.

A party that releases an aggregate computed from its rows (here: the sum of per-row
logistic-loss gradients) can make it differentially private with the Gaussian mechanism:
bound each row's contribution by clipping its gradient to an L2 norm ``C``, then add
Gaussian noise of standard deviation ``z * sensitivity`` to the sum. Repeating that for
every local step of every round composes; the accountant turns the noise multiplier
``z`` and the number of releases into the ``(epsilon, delta)`` the run spends.

The accountant is Rényi DP (Mironov, CSF 2017) as implemented by Google's
``dp-accounting`` package, the library Flower's own ``RdpAccountant`` wraps. There is no
subsampling here (each step uses all of a party's rows), so no amplification is claimed.

Neighbouring datasets differ by *replacing* one row of one party (bounded DP): the row
counts are public in the protocols that use this module, and replacing a row moves the
sum of clipped gradients by at most ``2 C`` in L2 norm, the sensitivity used below.
"""

import math

import numpy as np

from .errors import InputError
from .he.random import gaussian
from .params import DP_DELTA

REPLACE_ONE_SENSITIVITY = 2.0
"""L2 sensitivity of a sum of clipped rows, in units of ``C``, when one row is replaced."""

_NOISE_BRACKET = (1e-3, 1e6)
"""Search interval for the noise multiplier (accountant calibration)."""


def _accounting():
    """Import ``dp-accounting`` on first use, with an install hint if it is missing."""
    try:
        import dp_accounting
        from dp_accounting import dp_event, rdp
    except ImportError:  # pragma: no cover - depends on the environment
        raise InputError(
            "differential privacy needs the dp-accounting package: pip install 'dp-accounting>=0.6'"
        ) from None
    return dp_accounting, dp_event, rdp


def _event(noise_multiplier, releases):
    _, dp_event, _ = _accounting()
    return dp_event.SelfComposedDpEvent(dp_event.GaussianDpEvent(float(noise_multiplier)), int(releases))


def epsilon_spent(noise_multiplier, releases, delta=DP_DELTA):
    """Return the epsilon of ``releases`` Gaussian releases with noise multiplier ``z``.

    Parameters
    ----------
    noise_multiplier : float
        Noise standard deviation divided by the L2 sensitivity.
    releases : int
        Number of composed releases (local steps times rounds).
    delta : float

    Returns
    -------
    float
    """
    if releases <= 0:
        return 0.0
    _, _, rdp = _accounting()
    accountant = rdp.RdpAccountant()
    accountant.compose(_event(noise_multiplier, releases))
    return float(accountant.get_epsilon(delta))


def noise_multiplier(epsilon, releases, delta=DP_DELTA):
    """Return the smallest noise multiplier whose ``releases`` compositions spend ``epsilon``.

    Parameters
    ----------
    epsilon : float
        Target epsilon, > 0.
    releases : int
        Number of composed Gaussian releases.
    delta : float

    Returns
    -------
    float

    Notes
    -----
    Every party computes this from the same public options, so all parties add noise of
    the same scale and the coordinator can report the epsilon without seeing any data.
    """
    if not (epsilon > 0 and math.isfinite(epsilon)):
        raise InputError(f"DP epsilon must be a positive number, not {epsilon!r}")
    if not 0 < delta < 1:
        raise InputError(f"DP delta must be in (0, 1), not {delta!r}")
    if releases < 1:
        raise InputError(f"DP needs at least one release, not {releases!r}")
    dp_accounting, _, rdp = _accounting()
    return float(dp_accounting.calibrate_dp_mechanism(
        rdp.RdpAccountant,
        lambda z: _event(z, releases),
        float(epsilon),
        float(delta),
        dp_accounting.ExplicitBracketInterval(*_NOISE_BRACKET),
    ))


def clip_rows(rows, clip_norm):
    """Scale each row of ``rows`` down to L2 norm at most ``clip_norm`` (a new array)."""
    norms = np.linalg.norm(rows, axis=1)
    factors = np.minimum(1.0, clip_norm / np.maximum(norms, np.finfo(float).tiny))
    return rows * factors[:, None]


def gaussian_noise(std, size):
    """Return ``size`` Gaussian values of standard deviation ``std``.

    Notes
    -----
    Drawn from the operating system's CSPRNG (:mod:`fedscore.he._random`), not from a
    seedable generator whose state another party could reconstruct from the released
    values. Floating-point Gaussian sampling is not exactly the continuous mechanism
    (Mironov, CCS 2012); the gap is far below the statistical error of any epsilon
    reported here, and is left as a documented limitation.
    """
    return std * gaussian(int(size))
