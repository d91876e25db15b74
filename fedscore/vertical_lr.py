"""The vertical logistic-regression engine shared by hidden-seed lookalike and joint propensity.

Both protocols train a logistic regression whose labels sit at the brand and whose
features sit, wholly or partly, at the media. They are built from the same four pieces,
which live here so that neither protocol writes them twice:

* **Encrypted aggregates.** ``Xᵀ[[v]]``: a party multiplies its plaintext feature
  matrix by a vector encrypted under the *other* party's key (labels, residual terms).
  :func:`encrypted_product` does it with the scaling CKKS needs to survive flooding.
* **Masked release.** The result goes back to the key owner for decryption with a
  uniform random mask added by the party that will use it (:func:`mask`), is decrypted
  with :meth:`~fedscore.he.base.HEContext.decrypt_release` (quantised and, for CKKS,
  noise-flooded) and unmasked by its owner (:func:`unmask`). The key owner sees only
  the masked value; the mask owner sees only the released aggregate.
* **The split-logit sigmoid.** When the logit ``z = z_b + z_m`` is split between the
  parties, nobody can apply the sigmoid to it. :func:`split_sigmoid` is exact in the
  brand's part and quadratic in the media's part, fitted to the quantiles of the
  media's partial logits (see its Notes for why this beats the Taylor residual).
* **A local optimiser.** :class:`BoundOptimizer` takes one gradient step per call for
  one party's block of weights, preconditioned with Böhning's bound on the logistic
  Hessian (computable from that party's own features alone).

Scaling for CKKS
----------------
``decrypt_release`` floods a CKKS value with noise far above the ciphertext's error,
whose absolute size barely depends on the values encrypted. Encrypted operands are
therefore multiplied by ``2^VALUE_SHIFT_BITS`` before encryption and plaintext matrices
by up to ``2^MATRIX_SHIFT_BITS`` before the product, which buys that many bits of
precision for the released aggregate, and the mask is drawn from
``[-2^CKKS_MASK_BITS, 2^CKKS_MASK_BITS]``, just inside what the ciphertext holds after
one plaintext multiplication (about 2^59 at the default parameters). What remains
between the largest possible aggregate and the mask range is the statistical hiding of
the mask; :func:`encrypted_product` lowers the matrix shift to keep at least
:data:`MIN_HIDING_BITS` of it and refuses tables for which even that is impossible.
Paillier is exact: no shift, and a mask :data:`PAILLIER_MASK_BITS` above the bound.
Released values travel as float64 in both cases, which is what caps the hiding margin.
"""

import io
import math

import numpy as np
from scipy.linalg import cho_factor, cho_solve
from scipy.special import expit

from .channel import PeerChannel, new_keypair
from .errors import CryptoError, ProtocolError
from .params import PAILLIER_KEY_BITS
from .he._random import uniform

# --- Scaling and masks --------------------------------------------------------------------

VALUE_SHIFT_BITS = {"ckks": 10, "paillier": 0}
"""Encrypted operands (labels, residual terms) are multiplied by ``2^this`` before
encryption. For CKKS this lifts them above the error that flooding multiplies: measured
on ``Xᵀ[[y]]`` over 30k rows with a release budget of 2^10 values, shifts of 10 + 10 bits
bring the flooding error from about 260 units of a label to 0.2. Paillier encodes
exactly at 2^-40 and needs none."""

MATRIX_SHIFT_BITS = {"ckks": 16, "paillier": 0}
"""Largest shift of the plaintext matrix in :func:`encrypted_product` (see above)."""

CKKS_MASK_BITS = 56
"""Masks are uniform in ``[-2^56, 2^56]``: at N = 8192 with primes (60, 40, 40, 60) and a
2^40 scale, a ciphertext that went through one plaintext multiplication still holds
values up to about 2^59 (checked with 2^58 masks); 2^56 leaves a factor 8 of margin."""

MIN_HIDING_BITS = 20
"""Least margin, in bits, between the largest possible masked aggregate and the CKKS mask
range: the masked value is within statistical distance 2^-20 of uniform for any
aggregate. Paillier masks have :data:`PAILLIER_MASK_BITS` of margin."""

PAILLIER_MASK_BITS = 24
"""Paillier masks are uniform in ``[-B 2^24, B 2^24]`` for an aggregate bounded by ``B``:
statistical distance 2^-24 from uniform. The plaintext space would take far larger
masks, but releases come back as float64, whose 53-bit mantissa must hold mask and
aggregate together: 24 bits of hiding leave ``B 2^-29`` of absolute precision."""

# --- Optimiser ------------------------------------------------------------------------------

LOGISTIC_CURVATURE_BOUND = 0.25
"""``σ'(z) <= 1/4``: ``XᵀX / 4n`` bounds the Hessian of the mean logistic loss, so a
Newton step with it never overshoots (Böhning & Lindsay, "Monotonicity of
quadratic-approximation algorithms", Ann. Inst. Stat. Math. 40, 1988). When the weights
are split into ``k`` blocks, each stepped with its own block of the bound, the bound
must be multiplied by ``k`` (a positive semi-definite matrix is at most ``k`` times its
block diagonal): with the brand's intercept and the media's one-hot columns collinear,
the factor-1 step oscillates without end (measured with the Taylor residual)."""

DEFAULT_MOMENTUM = 0.5
"""Nesterov momentum on top of the bounded-Hessian step. Measured centrally on bank
marketing and default_credit with the weights split brand/media (two blocks): 15
full-batch epochs come within 0.001 AUC of the converged model."""

DEFAULT_L2 = 1e-4
"""L2 penalty on the mean loss (scikit-learn's ``C = 1 / (l2 n)``); the intercept is
not penalised."""

DEFAULT_L2 = 1e-4
"""L2 penalty on the mean loss (scikit-learn's ``C = 1 / (l2 n)``); the intercept is
not penalised."""

_RIDGE_FLOOR = 1e-8
"""Added to the preconditioner's diagonal so that a constant or duplicated column keeps
it positive definite."""

# --- Split-logit sigmoid ------------------------------------------------------------------

SPLIT_SIGMOID_POINTS = 64
"""Quantiles of the media's partial logits (at probabilities (j + 1/2) / 64) that the media
releases each epoch and the split-sigmoid fit uses as its design points."""


def create_key(scheme, *, release_budget=None, paillier_key_bits=None):
    """Generate a party's own key pair for one run.

    Parameters
    ----------
    scheme : {"ckks", "paillier"}
    release_budget : int, optional
        CKKS only: how many values the protocol will release under this key. The
        flooding noise grows with its square root, so a protocol sizes it to what it
        actually releases instead of taking the backend's default.
    paillier_key_bits : int, optional
        Paillier only; below 3072 bits the backend warns (tests use short keys).
    """
    from .he import create_context

    if scheme == "ckks":
        return create_context("ckks", **({"release_budget": int(release_budget)} if release_budget else {}))
    if paillier_key_bits:
        return create_context("paillier", key_bits=int(paillier_key_bits),
                              allow_weak_key=int(paillier_key_bits) < PAILLIER_KEY_BITS)
    return create_context("paillier")


def shifts(scheme):
    """Return ``(value_shift, matrix_shift)`` bits for ``scheme``."""
    return VALUE_SHIFT_BITS[scheme], MATRIX_SHIFT_BITS[scheme]


def encrypt_scaled(context, values):
    """Encrypt ``values * 2^VALUE_SHIFT_BITS`` under ``context`` (see the module docstring)."""
    return context.encrypt(np.asarray(values, dtype=float) * 2.0 ** VALUE_SHIFT_BITS[context.scheme])


def message_bound(scheme, largest):
    """The ``message_bound`` of a release whose encrypted operands were at most ``largest``."""
    return float(largest) * 2.0 ** VALUE_SHIFT_BITS[scheme]


def encrypted_product(vector, matrix, value_bound, plain=None):
    """Return ``matrix.T @ vector`` encrypted, and the scale it carries.

    Parameters
    ----------
    vector : EncryptedVector
        Made by :func:`encrypt_scaled` (so it carries ``2^VALUE_SHIFT_BITS``), possibly
        after additions of other such vectors.
    matrix : numpy.ndarray, shape (vector.size, d)
        The caller's plaintext.
    value_bound : float
        A bound on ``|v_i|`` of the unscaled encrypted values; with the column sums of
        ``|matrix|`` it bounds every output.
    plain : numpy.ndarray, shape (d,), optional
        A plaintext term added to the product (scaled the same way).

    Returns
    -------
    product : EncryptedVector
        ``2^shift * (matrix.T @ v + plain)``.
    shift : int
        Total scale (value shift + matrix shift), in bits, that :func:`unmask` removes.
    bound : float
        A bound on ``|product|`` (scaled), for :func:`mask`.

    Raises
    ------
    CryptoError
        For CKKS, when the table is so large that no matrix shift leaves
        :data:`MIN_HIDING_BITS` between the aggregate and the mask range.
    """
    return encrypted_products([(vector, matrix, value_bound)], plain)


def encrypted_products(terms, plain=None):
    """Sum of several :func:`encrypted_product` terms, all under one key and at one scale.

    ``terms`` is a list of ``(vector, matrix, value_bound)``. Each product costs one
    plaintext multiplication, so ``Xᵀ[[a]] + (X ⊙ u)ᵀ[[b]]`` stays at depth one where
    ``Xᵀ([[a]] + u ⊙ [[b]])`` would need two, more than CKKS at the default parameters
    leaves room to mask.
    """
    scheme = terms[0][0].context.scheme
    value_shift, matrix_shift = shifts(scheme)
    largest = 0.0
    for _, matrix, value_bound in terms:
        if matrix.size:
            largest += float(np.max(np.sum(np.abs(matrix), axis=0))) * float(value_bound)
    if plain is not None:
        largest += float(np.max(np.abs(plain)))
    largest = max(largest, 1.0)
    if scheme == "ckks":
        room = CKKS_MASK_BITS - MIN_HIDING_BITS - value_shift - math.log2(largest)
        matrix_shift = min(matrix_shift, math.floor(room))
        if matrix_shift < 0:
            raise CryptoError(
                f"an aggregate over this many rows (bound {largest:.3g}) cannot be masked with "
                f"{MIN_HIDING_BITS} bits of hiding under CKKS: use the paillier backend or fewer rows")
    shift = value_shift + matrix_shift
    product = None
    for vector, matrix, _ in terms:
        term = vector.dot(np.asarray(matrix, dtype=float) * 2.0 ** matrix_shift)
        product = term if product is None else product + term
    if plain is not None:
        product = product + np.asarray(plain, dtype=float) * 2.0 ** shift
    return product, shift, largest * 2.0 ** shift


def mask(vector, bound):
    """Add a fresh uniform mask to an encrypted aggregate before its key owner decrypts it.

    Parameters
    ----------
    vector : EncryptedVector
    bound : float
        A bound on ``|vector|`` (as returned by :func:`encrypted_product`).

    Returns
    -------
    masked : EncryptedVector
    mask : numpy.ndarray
        Keep it: :func:`unmask` needs it.
    release_bound : float
        The bound the key owner passes to ``decrypt_release``; public, it depends only on
        the scheme and, for Paillier, on ``bound``.
    """
    scheme = vector.context.scheme
    if scheme == "ckks":
        if bound * 2.0 ** MIN_HIDING_BITS > 2.0 ** CKKS_MASK_BITS:
            raise CryptoError(f"aggregate bound {bound:.3g} too large to mask under CKKS")
        radius = 2.0 ** CKKS_MASK_BITS
    else:
        radius = float(bound) * 2.0 ** PAILLIER_MASK_BITS
    values = (2.0 * uniform(vector.size) - 1.0) * radius
    return vector + values, values, radius + float(bound)


def unmask(released, mask_values, shift):
    """Remove the mask and the scale (``shift`` bits) from a released aggregate (the mask owner's side)."""
    return (np.asarray(released, dtype=float) - mask_values) / 2.0 ** shift


def hide_slots(vector, magnitude):
    """Re-randomise the slots of a CKKS partial-sum vector without changing its values.

    A CKKS product from :meth:`EncryptedVector.dot` holds each output as the sum of all
    slots of one ciphertext, and the key owner who decrypts it sees every slot -- per-row
    products when the table is smaller than a ciphertext. Adding a plaintext splits it
    into random shares over the slots (:meth:`fedscore.he.ckks.CKKSVector.__add__`), so
    adding and subtracting the same random values leaves the sums as they were and
    hides each slot behind shares of about ``magnitude``. Paillier vectors have no slots
    and are returned unchanged.
    """
    if vector.context.scheme != "ckks":
        return vector
    noise = (2.0 * uniform(vector.size) - 1.0) * float(magnitude)
    return (vector + noise) - noise


# --- Sealed masked values -----------------------------------------------------------------
# A masked value released by one party for the other must not reach the coordinator in
# the clear (it relays to the mask owner's peer, and the ledger audit forbids it): it is
# sealed for the peer on the run's peer channel (:mod:`fedscore.channel`).

_PEERS = {"brand": "media", "media": "brand"}
_CHANNEL = "vertical_lr_channel"


def open_channel(party):
    """Make this party's channel key pair for the run; return the public key to send."""
    secret, public_key = new_keypair()
    party.state[_CHANNEL] = {"secret": secret}
    return public_key


def connect_channel(party, peer_key):
    """Record the peer's channel public key, relayed by the coordinator."""
    _channel_state(party)["peer"] = bytes(peer_key)


def seal_values(party, values, label):
    """Seal a float array for the peer under ``label`` (the step it belongs to)."""
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(values, dtype=np.float64), allow_pickle=False)
    return _peer_channel(party).seal(buffer.getvalue(), label)


def open_values(party, sealed, label):
    """Open a float array the peer sealed for this party under ``label``."""
    data = _peer_channel(party).open(sealed, label)
    try:
        values = np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as exc:
        raise ProtocolError(f"sealed values are not an array ({exc})") from None
    return np.asarray(values, dtype=np.float64)


def _channel_state(party):
    try:
        return party.state[_CHANNEL]
    except KeyError:
        raise ProtocolError("peer channel used before it was opened") from None


def _peer_channel(party):
    state = _channel_state(party)
    if "peer" not in state:
        raise ProtocolError("peer channel used before the peer's key arrived")
    return PeerChannel(state["secret"], state["peer"], own_role=party.role, peer_role=_PEERS[party.role],
                       run_id=party.run_id)


# --- Local optimiser ------------------------------------------------------------------------

class BoundOptimizer:
    """One party's block of logistic-regression weights, moved by bounded-Hessian steps.

    Parameters
    ----------
    features : numpy.ndarray, shape (n, d)
        This party's training rows (its own plaintext). Only ``XᵀX`` is kept.
    l2 : float
        L2 penalty on the mean loss.
    intercept : bool
        Append an unpenalised intercept (the brand's block in propensity, the media's
        whole model in lookalike).
    momentum : float
        Nesterov momentum.
    blocks : int
        Number of blocks the model's weights are split into (each stepped by its
        owner); scales the curvature bound (see :data:`LOGISTIC_CURVATURE_BOUND`).

    Attributes
    ----------
    weights_ : numpy.ndarray
        Current weights (intercept last when ``intercept``).
    n_steps_ : int

    Notes
    -----
    The step is ``-(k XᵀX/4n + l2 I)⁻¹ g`` for ``k`` blocks: Newton's step with Böhning's
    bound in place of the Hessian. On one party's block of a split model it is a
    block-Jacobi step: each party preconditions with its own features only, which needs
    no exchange and reveals nothing. The gradient is taken at the look-ahead point
    :attr:`lookahead` (Nesterov), which is where a protocol must evaluate its partial
    logits.
    """

    def __init__(self, features, l2=DEFAULT_L2, *, intercept=False, momentum=DEFAULT_MOMENTUM, blocks=1):
        features = self.design(features, intercept)
        n, d = features.shape
        self.l2 = float(l2)
        self.intercept = bool(intercept)
        self.momentum = float(momentum)
        self._penalty = np.full(d, self.l2)
        if intercept:
            self._penalty[-1] = 0.0
        bound = blocks * LOGISTIC_CURVATURE_BOUND * (features.T @ features) / max(n, 1)
        bound[np.diag_indices(d)] += self._penalty + _RIDGE_FLOOR
        self._factor = cho_factor(bound)
        self.weights_ = np.zeros(d)
        self._velocity = np.zeros(d)
        self.n_steps_ = 0

    @staticmethod
    def design(features, intercept):
        """Return ``features`` with a column of ones appended when ``intercept``."""
        features = np.asarray(features, dtype=float)
        return np.hstack([features, np.ones((len(features), 1))]) if intercept else features

    @property
    def lookahead(self):
        """The weights at which the next gradient must be evaluated."""
        return self.weights_ + self.momentum * self._velocity

    def step(self, data_gradient):
        """Apply one step given the gradient of the mean loss (without the L2 term) at :attr:`lookahead`.

        Returns
        -------
        float
            The size (L2 norm) of the step taken.
        """
        gradient = np.asarray(data_gradient, dtype=float) + self._penalty * self.lookahead
        self._velocity = self.momentum * self._velocity - cho_solve(self._factor, gradient)
        self.weights_ = self.weights_ + self._velocity
        self.n_steps_ += 1
        return float(np.linalg.norm(self._velocity))


def fit_from_aggregate(features, label_aggregate, l2=DEFAULT_L2, *, max_iter=500, tol=1e-7):
    """Fit a logistic regression from the features and ``[Xᵀy, Σy]`` alone.

    The gradient of the mean logistic loss is ``(Xᵀσ(Xw) - Xᵀy) / n``: once ``Xᵀy`` and
    ``Σy`` are known, the labels are not needed any more. The media in the lookalike
    protocol trains this way on its own features and one released aggregate.

    Parameters
    ----------
    features : numpy.ndarray, shape (n, d)
    label_aggregate : numpy.ndarray, shape (d + 1,)
        ``Xᵀy`` followed by ``Σy`` (the intercept's column of ones).
    l2 : float
    max_iter : int
    tol : float
        Stop when a step is shorter than this (L2 norm of the weight change).

    Returns
    -------
    weights : numpy.ndarray, shape (d + 1,)
        Intercept last.
    n_iter : int
    """
    optimizer = BoundOptimizer(features, l2, intercept=True)
    design = BoundOptimizer.design(features, True)
    n = len(design)
    for _ in range(max_iter):
        p = expit(design @ optimizer.lookahead)
        if optimizer.step((design.T @ p - label_aggregate) / n) < tol:
            break
    return optimizer.weights_, optimizer.n_steps_


# --- Split-logit sigmoid ------------------------------------------------------------------

def media_quantiles(media_logit):
    """The :data:`SPLIT_SIGMOID_POINTS` quantiles of the media's partial logits (an aggregate it releases)."""
    probabilities = (np.arange(SPLIT_SIGMOID_POINTS) + 0.5) / SPLIT_SIGMOID_POINTS
    return np.quantile(np.asarray(media_logit, dtype=float), probabilities)


def centred_media_logit(media_logit, quantiles):
    """``u = clip(z_m - μ, q_min - μ, q_max - μ)`` with ``μ`` the mean of the quantiles.

    The media's side of the split sigmoid: the quadratic in ``u`` is fitted between the
    extreme quantiles and never evaluated outside them.
    """
    quantiles = np.asarray(quantiles, dtype=float)
    centre = quantiles.mean()
    return np.clip(np.asarray(media_logit, dtype=float) - centre, quantiles[0] - centre, quantiles[-1] - centre)


def split_sigmoid(brand_logit, quantiles):
    """Coefficients of ``σ(z_b + z_m) ≈ c0 + c1 u + c2 u²``, per row, exact in ``z_b``.

    Parameters
    ----------
    brand_logit : numpy.ndarray
        The brand's partial logits ``z_b`` (its plaintext, intercept included).
    quantiles : numpy.ndarray
        :func:`media_quantiles` of the media's partial logits.

    Returns
    -------
    numpy.ndarray, shape (rows, 3)
        ``c0, c1, c2`` for ``u`` from :func:`centred_media_logit`.

    Notes
    -----
    For each row, the least-squares parabola through ``σ(z_b + q_j)`` over the media's
    quantiles ``q_j``: the brand's part enters the sigmoid exactly, only the media's part
    is approximated, and only where the media's logits actually lie (the "logit range
    actually seen"). Clipping ``u`` to the quantile range keeps the parabola from being
    extrapolated, which is what made unclipped quadratic and cubic fits diverge. The
    residual ``c0 + c1 u + c2 u² - y`` needs only plaintext-ciphertext products at either
    party, given ``[[u]]`` and ``[[u²]]`` from the media. Measured centrally (validation
    split by ID, full-batch training, two-block bounded-Hessian steps): bank marketing
    without ``duration`` 0.7659 against 0.7660 for exact logistic regression (first-order
    Taylor ``z/4 + 1/2``: 0.7583; a line instead of the parabola: 0.7612);
    default_credit 0.7260 against 0.7260 (Taylor 0.7208).
    """
    quantiles = np.asarray(quantiles, dtype=float)
    offsets = quantiles - quantiles.mean()
    design = np.stack([np.ones_like(offsets), offsets, offsets**2], axis=1)
    projection = np.linalg.pinv(design)  # (3, points): least squares for every row at once
    values = expit(np.asarray(brand_logit, dtype=float)[:, None] + quantiles[None, :])
    return values @ projection.T
