"""What the brand and the media of a propensity run compute alike.

Neither party's module imports the other's; both import this one. It holds the values
both must agree on without sending them: the public bounds every masked release is
sized from and the key owner's account of how each aggregate it releases was computed
(both from sizes and quantiles both parties hold), the steps the peer channel binds
payloads to, the label-DP parameters derived from the run's options, the rule that
picks the weights kept after training, and the constants of the private ranking.
"""

import math
from dataclasses import asdict, dataclass

from ... import dp
from ...errors import ProtocolError
from ...kit.inputs import read_inputs
from ...kit.model import ModelFile
from ...params import LABEL_DP_CLIP_NORM
from ..psi.party import Matched
from ..vertical_lr import (
    encoded_column_bound,
    encoded_entry_bound,
    media_logit_bound,
    product,
    split_coefficient_bounds,
    split_product_bound,
)

CONVERGENCE_TOL = 1e-4
"""Training stops early when both parties' last steps are shorter than this (L2 norm of
the weight change): each party reports only whether its own step was."""

RELEASE_RESERVE = 64
"""Extra values in a CKKS key's release budget beyond the releases planned."""

RANK_SCALE_BITS = (4, 16)
"""The order-preserving map ``a z + b`` draws ``log2 a`` uniformly in ``[4, 16]`` (``a``
log-uniform in ``[2^4, 2^16]``, so that every octave of scale is as likely and the
spread of the values the media decrypts does not pin the scale down) and ``b`` uniformly
in ``±2^RANK_OFFSET_BITS``."""

RANK_OFFSET_BITS = 24

MEDIA_LOGIT_LIMIT = 2.0**5
"""The media's partial logit is clipped to ``±32`` before its quantiles and ``u`` are
computed each epoch, so that ``|u| <= 64`` and ``u² <= 2^12`` hold whatever the weights:
public bounds, and far inside what CKKS encodes at scale 2^40 once shifted by
``VALUE_SHIFT_BITS``. Without them, weights that grow without bound (a nearly separable
table, or label DP's noisy label aggregate, which no weights need reproduce) made ``u²``
too large to encode (breast with label DP: ``|u|`` reached 10^12 by the eighth epoch).
``σ(±32)`` is within 1.3e-14 of 0 or 1, so the split sigmoid changes only for users whose
brand logit is as extreme the other way. The brand refuses quantiles outside the limit."""

RANK_LOGIT_LIMIT = 2.0**6
"""Each partial logit is clipped to ``±64`` before ranking, so that the bound the media
decrypts the masked scores against is a public constant. ``σ(±64)`` is within 1e-27 of
0 or 1: only users whose partial logit is that extreme can change places."""

# The steps of the payloads sealed on the parties' channel, and of the releases each key
# owner plans: the sealer and the opener use the same step, and the epoch as its round
# where a step repeats, so a payload opens at its own step and epoch only.
LABEL_TERM = "propensity.label_term"
BRAND_GRADIENT = "propensity.media_round"
MEDIA_GRADIENT = "propensity.brand_update"
QUANTILES = "propensity.quantiles"
RANKS = "propensity.rank_reveal"


# --- what both parties hold after loading ---------------------------------------------------

def encode_matched(party, options):
    """Read and validate this party's table; encode the matched users' rows in PSI's shared order.

    The encoder is fitted on the party's whole table (every public bound below relies on
    it: :func:`fedscore.protocols.vertical_lr.encoded_column_bound`).

    Returns
    -------
    psi : fedscore.protocols.psi.party.Matched
    inputs : fedscore.kit.inputs.PartyInputs
    encoder : fedscore.kit.encoder.FeatureEncoder
    encoded : numpy.ndarray, shape (matched users, features)
    """
    psi = party.phase("psi")
    if not isinstance(psi, Matched):
        raise ProtocolError("propensity needs PSI in both mode first: the matched users in one shared order")
    inputs = read_inputs(options, party.role, party.config)
    encoder = options.encoder(inputs.table.path).fit(inputs.table, inputs.feature_columns)
    return psi, inputs, encoder, encoder.transform(inputs.table, rows=psi.rows)


@dataclass(frozen=True)
class LabelDP:
    """The run's label-DP parameters, derived alike by both parties from the public options.

    One Gaussian release of the label aggregate ``[X_b, 1, X_m]ᵀ(w ⊙ y)``: with both
    parties' rows clipped to ``C`` (:data:`fedscore.params.LABEL_DP_CLIP_NORM`), changing one
    user's label moves it by at most ``sqrt(C² + 1 + C²)`` in L2 norm, the sensitivity.
    """

    epsilon: float
    delta: float
    clip_norm: float
    sensitivity: float
    noise_multiplier: float
    noise_std: float
    releases: int = 1

    @classmethod
    def of(cls, options, budget=None):
        """The parameters of ``options`` (a :class:`PropensityOptions`), or None without label DP.

        ``budget`` is the label owner's own :class:`fedscore.dp.PrivacyBudget`, whose noise
        multiplier it computed itself; the media, which adds no noise, computes the same
        figure for its report.
        """
        if options.label_dp_epsilon is None:
            return None
        sensitivity = math.sqrt(2 * LABEL_DP_CLIP_NORM**2 + 1)
        multiplier = budget.noise_multiplier if budget is not None else \
            dp.noise_multiplier(options.label_dp_epsilon, 1, options.label_dp_delta)
        return cls(epsilon=options.label_dp_epsilon, delta=options.label_dp_delta, clip_norm=LABEL_DP_CLIP_NORM,
                   sensitivity=sensitivity, noise_multiplier=multiplier, noise_std=multiplier * sensitivity)

    def to_dict(self):
        return asdict(self)


def training_rows(encoded, label_dp):
    """The rows a party trains on: its encoded rows, clipped to the label-DP norm when the run has label DP."""
    return encoded if label_dp is None else dp.clip_rows(encoded, label_dp.clip_norm)


# --- public bounds ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Sizes:
    """The sizes every public bound derives from; both parties hold the same ones after ``make_key``."""

    matched: int
    training: int
    brand_table: int
    media_table: int
    brand_features: int
    media_features: int


def entry_bound(rows_fitted, label_dp):
    """Public bound on any entry a party encodes (:func:`~fedscore.protocols.vertical_lr.encoded_entry_bound`)."""
    return encoded_entry_bound(rows_fitted, None if label_dp is None else label_dp.clip_norm)


def brand_gradient_product(scheme, sizes, quantiles, label_dp):
    """The media's own account of the brand's masked gradient it releases (:class:`~fedscore.kit.release.Product`).

    Two products, ``[[u]]`` and ``[[u²]]`` times the brand's design (features, intercept,
    Brier column) weighted by coefficients bounded from the quantiles; then the plaintext
    term and the mask.
    """
    _, b1, b2 = split_coefficient_bounds(quantiles)
    u = media_logit_bound(quantiles)
    square = entry_bound(sizes.brand_table, label_dp) ** 2
    terms = [(sizes.brand_table * b1**2, square * b1**2), (sizes.brand_table * b2**2, square * b2**2)]
    return product(scheme, brand_gradient_bound(sizes, quantiles), sizes.matched, terms, additions=2,
                   largest_value=max(u, u * u))


def media_gradient_product(scheme, sizes, quantiles, label_dp):
    """The brand's own account of the media's masked gradient it releases.

    CKKS: three products, ``[[c0]]``, ``[[c1]]`` and ``[[c2]]`` times the media's features,
    ``X ⊙ u`` and ``X ⊙ u²``; then the mask. Paillier: ``X_mᵀ[[c0 + c1 u + c2 u²]]``,
    two plaintext multiplications deep (Paillier is exact: only the depth is checked).
    """
    u = media_logit_bound(quantiles)
    square = entry_bound(sizes.media_table, label_dp) ** 2
    terms = [(sizes.media_table * u ** (2 * k), square * u ** (2 * k)) for k in range(3)]
    return product(scheme, media_gradient_bound(sizes, quantiles), sizes.matched, terms,
                   largest_value=float(max(split_coefficient_bounds(quantiles))), depth=1 if scheme == "ckks" else 2)


def label_term_product(scheme, sizes, label_dp):
    """The brand's own account of the media's masked part of the label aggregate: ``X_mᵀ[[w ⊙ y]]``, rows clipped."""
    terms = [(sizes.media_table, entry_bound(sizes.media_table, label_dp) ** 2)]
    return product(scheme, label_term_bound(sizes), sizes.matched, terms)


def brand_gradient_bound(sizes, quantiles):
    """Public bound on the brand's masked release: its gradient and the validation Brier score.

    The gradient's columns are brand features over training users (:func:`
    fedscore.protocols.vertical_lr.encoded_column_bound`), the Brier column is at most one
    per matched user; the coefficients and ``u`` are bounded from the quantiles.
    """
    column = max(encoded_column_bound(sizes.training, sizes.brand_table), sizes.matched)
    return split_product_bound(column, quantiles)


def media_gradient_bound(sizes, quantiles):
    """Public bound on the media's gradient: media features over every matched user."""
    return split_product_bound(encoded_column_bound(sizes.matched, sizes.media_table), quantiles)


def label_term_bound(sizes):
    """Public bound on the media's part of the label aggregate ``X_mᵀ(w ⊙ y)``, with ``w ⊙ y`` in {0, 1}."""
    return encoded_column_bound(sizes.matched, sizes.media_table)


def rank_release_bound(exact_scores):
    """Public bound on ``|a (z_b + z_m) + b|`` with both partial logits clipped to :data:`RANK_LOGIT_LIMIT`."""
    if exact_scores:
        return 2 * RANK_LOGIT_LIMIT
    return 2.0 ** RANK_SCALE_BITS[1] * 2 * RANK_LOGIT_LIMIT + 2.0 ** RANK_OFFSET_BITS


# --- the model each party keeps -------------------------------------------------------------

def kept_weights(optimizer, evaluated, best_epoch):
    """The weights a party's block of the model keeps after training.

    ``evaluated`` are the look-ahead weights the best epoch's validation score measured.
    When that epoch is the last one trained, the score was still improving and its step
    is kept too (the weights after it, which no score measured); otherwise training went
    on past the best epoch and its evaluated weights are restored. Both parties apply
    the rule to the same best epoch, so their blocks stay from the same model.
    """
    return optimizer.weights_ if best_epoch == optimizer.n_steps_ - 1 else evaluated


def save_model(party, encoder, coef, intercept, label_dp, training):
    """Write this party's half of the joint model to ``<out>/model.json``; return it.

    A half scores nothing alone (:attr:`fedscore.kit.model.ModelFile.scorable` is False):
    its :meth:`~fedscore.kit.model.ModelFile.logits` are the party's partial logits, which
    the ranking adds under encryption.
    """
    model = ModelFile(kind="propensity", party=party.role, encoder=encoder, coef=coef, intercept=intercept,
                      clip_norm=None if label_dp is None else label_dp.clip_norm, training=training)
    model.save(party.out / "model.json")
    return model
