"""What the brand and the media derive alike from public counts: held-out sizes, bounds and scales.

The brand decrypts everything the media computes under the brand's keys, and the bound
of every release (which sizes its check and its flooding) and the scale the label-DP
noise is drawn at come from here, computed by the brand itself from the number of media
rows (PSI) and the run's options. Nothing the brand decrypts is sized by the media.
"""

from ...params import LABEL_DP_CLIP_NORM
from ..vertical_lr import encoded_column_bound

DP_CLIP_NORM = LABEL_DP_CLIP_NORM
"""With label DP the media clips each standardised feature row to this L2 norm (then
appends the intercept's 1), so one label moves the aggregate by at most
``sqrt(DP_CLIP_NORM^2 + 1)`` in L2 norm: the sensitivity of the Gaussian mechanism."""

FLAG_BOUND = 1.0
"""A seed flag is 0 or 1: the bound of each entry of the media's masked selection of flags."""


def holdout_rows(rows, fraction):
    """Number of held-out media rows: ``round(fraction * rows)``, drawn by the media before any label is seen."""
    return int(round(fraction * rows))


def label_aggregate_bound(rows, fraction):
    """Public bound on each entry of ``[X, 1]ᵀy`` over the training rows (:func:`encoded_column_bound`)."""
    return encoded_column_bound(rows - holdout_rows(rows, fraction), rows)


def holdout_columns(audiences):
    """Columns per L2 candidate of the held-out aggregate: rank, one hit count per audience size, score."""
    return 2 + audiences


def holdout_audience(size, held, rows):
    """Held-out users in an audience of ``size`` (a :class:`~fedscore.kit.sizes.Size` of all ``rows``)."""
    return int(min(held, max(1, round(size.share(rows) * held))))
