"""Horizontal logistic regression's own math: the validation split and one party's local training.

Each function works on one party's own rows; the steps in :mod:`.party` call them.
"""

import hashlib

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit, log_expit
from threadpoolctl import threadpool_limits

from ... import dp

LOCAL_BLAS_THREADS = 1
"""Local training multiplies a (rows x features) matrix by a vector, a few hundred times a
round: too little work to share between threads. Measured on the 2-core benchmark machine
with other processes running (parties run side by side in simulation), two OpenBLAS
threads made each product about 13 times slower than one."""


def validation_mask(ids, labels, fraction):
    """Hold out ``fraction`` of the labelled rows, chosen by a hash of the ID.

    Notes
    -----
    A hash rather than a random draw makes the split reproducible from the file alone, so
    a benchmark can train a centralised model on exactly the same training rows.
    """
    if fraction <= 0:
        return np.zeros(len(ids), dtype=bool)
    draws = np.array([int.from_bytes(hashlib.blake2b(str(i).encode(), digest_size=8).digest(), "big")
                      for i in ids], dtype=float) / 2.0**64
    return (draws < fraction) & ~np.isnan(labels)


def with_intercept(features):
    """``features`` with a column of ones appended: the weights' last entry is the intercept."""
    return np.hstack([features, np.ones((len(features), 1))])


def local_update(global_weights, x, y, options, budget):
    """Train from the global model on this party's rows; return the new weights.

    Parameters
    ----------
    global_weights : numpy.ndarray
        Coefficients then intercept.
    x : numpy.ndarray
        The party's training rows, encoded, with the intercept column (:func:`with_intercept`).
    y : numpy.ndarray
        Their labels, 1.0 or 0.0.
    options : fedscore.protocols.horizontal_lr.options.HorizontalLROptions
    budget : fedscore.dp.PrivacyBudget or None
        This party's own DP budget (None without DP): it sizes the noise and counts every
        noisy step.

    Notes
    -----
    Without DP: ``local_steps`` L-BFGS iterations on the local objective (FedAvg; with
    ``proximal_mu > 0`` the FedProx proximal term of Li et al., MLSys 2020). With DP:
    ``local_steps`` gradient steps whose gradient is the sum of per-row gradients clipped to
    ``clip_norm`` plus Gaussian noise of ``noise_multiplier * 2 * clip_norm`` (DP-SGD of
    Abadi et al., CCS 2016, on the full local batch), so each step is one Gaussian release,
    counted against the budget before it is made.
    """
    with threadpool_limits(LOCAL_BLAS_THREADS, user_api="blas"):
        if budget is None:
            return _lbfgs(global_weights, x, y, options)
        return _noisy_gradient_steps(global_weights, x, y, options, budget)


def _objective(weights, x, y, anchor, l2, mu):
    """Mean log-loss + (l2/2)|coef|^2 + (mu/2)|w - anchor|^2, and its gradient."""
    z = x @ weights
    loss = -np.mean(y * log_expit(z) + (1 - y) * log_expit(-z))
    grad = x.T @ (expit(z) - y) / len(y)
    coef = weights[:-1]
    loss += 0.5 * l2 * coef @ coef + 0.5 * mu * np.sum((weights - anchor) ** 2)
    grad[:-1] += l2 * coef
    grad += mu * (weights - anchor)
    return loss, grad


def _lbfgs(global_weights, x, y, options):
    result = minimize(_objective, global_weights, args=(x, y, global_weights, options.l2, options.proximal_mu),
                      jac=True, method="L-BFGS-B", options={"maxiter": options.steps_per_round})
    return result.x


def _noisy_gradient_steps(global_weights, x, y, options, budget):
    clip, mu = options.clip_norm, options.proximal_mu
    noise_std = budget.noise_multiplier * dp.REPLACE_ONE_SENSITIVITY * clip
    weights = global_weights.copy()
    for _ in range(options.steps_per_round):
        budget.spend(what="a noisy gradient step")
        rows = x * (expit(x @ weights) - y)[:, None]
        noisy = dp.clip_rows(rows, clip).sum(axis=0) + dp.gaussian_noise(noise_std, x.shape[1])
        grad = noisy / len(y) + mu * (weights - global_weights)
        grad[:-1] += options.l2 * weights[:-1]
        weights = weights - options.learning_rate * grad
    return weights
