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

A party that adds noise owns its guarantee: it sizes the noise itself from its own
epsilon, delta and count of releases, and counts what it releases against that count
(:class:`PrivacyBudget`). Nothing that sizes its noise comes from the coordinator or a peer.

Neighbouring datasets differ by *replacing* one row of one party (bounded DP): the row
counts are public in the protocols that use this module, and replacing a row moves the
sum of clipped gradients by at most ``2 C`` in L2 norm, the sensitivity used below.
"""

import math

import numpy as np

from .errors import InputError, ProtocolError
from .he.random import gaussian
from .params import DP_DELTA

REPLACE_ONE_SENSITIVITY = 2.0
"""L2 sensitivity of a sum of clipped rows, in units of ``C``, when one row is replaced."""

_NOISE_BRACKET = (1e-3, 1e6)
"""Search interval for the noise multiplier (accountant calibration)."""

MULTIPLIER_AGREEMENT = 1e-6
"""Relative difference below which another party's noise multiplier is the same as one's own: the
calibration is a bracketed root search, whose last digits may differ between library versions."""


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
    A party computes this from its own epsilon, delta and count of releases
    (:class:`PrivacyBudget`). A coordinator may compute it from the run's options to report
    the epsilon without seeing any data; in the horizontal protocols a party whose own value
    differs from the one the coordinator announces stops the run.
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


class PrivacyBudget:
    """One party's own Gaussian releases: the noise it calibrated for them, and how many it has made.

    Parameters
    ----------
    epsilon, delta : float
        The party's own guarantee for the run.
    releases : int
        The releases the party agreed to make in the run (rounds times steps), from its
        own options: the noise multiplier is calibrated for exactly that many.

    Attributes
    ----------
    noise_multiplier : float
        Computed here, never taken from another party.
    spent : int
        Releases made so far.

    Notes
    -----
    A plain object of numbers: a party's state is pickled between steps.
    """

    def __init__(self, epsilon, releases, delta):
        self.epsilon, self.delta, self.releases = float(epsilon), float(delta), int(releases)
        self.noise_multiplier = noise_multiplier(self.epsilon, self.releases, self.delta)
        self.spent = 0

    def check_claim(self, claimed, source="the coordinator"):
        """Stop the run unless ``claimed`` (another party's noise multiplier for the run) is this one.

        Raises
        ------
        ProtocolError
            Naming both values: the two sides would report different guarantees.
        """
        if claimed is None or not math.isclose(float(claimed), self.noise_multiplier, rel_tol=MULTIPLIER_AGREEMENT):
            raise ProtocolError(
                f"{source} announced a DP noise multiplier of {claimed!r}, but this party's own is "
                f"{self.noise_multiplier:.6g} (epsilon {self.epsilon:g}, delta {self.delta:g}, {self.releases} "
                "releases): refused")

    def spend(self, count=1, what="a Gaussian release"):
        """Count ``count`` releases about to be made; refuse any beyond the budget.

        Raises
        ------
        ProtocolError
            When the releases made so far and these exceed the ones the noise was sized for.
        """
        if self.spent + count > self.releases:
            raise ProtocolError(
                f"{what} would be Gaussian release {self.spent + count} of this party, whose noise is sized for "
                f"{self.releases} (epsilon {self.epsilon:g}): refused, the budget is spent")
        self.spent += count

    def epsilon_spent(self):
        """The epsilon of the releases made so far."""
        return epsilon_spent(self.noise_multiplier, self.spent, self.delta)

    def summary(self):
        """What a party reports of its own guarantee (JSON-ready)."""
        return {"epsilon_budget": self.epsilon, "delta": self.delta, "noise_multiplier": self.noise_multiplier,
                "releases_budget": self.releases, "releases": self.spent, "epsilon_spent": self.epsilon_spent()}
