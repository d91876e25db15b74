"""What the brand and the media derive alike from public counts: held-out sizes, bounds and scales.

The brand decrypts everything the media computes under the brand's keys, and the count
and bound of every release, the bounds on the media's multipliers that size its flooding,
and the scale the label-DP noise is drawn at come from here, computed by the brand
itself from the number of media rows (PSI), its seed list and the run's options. Nothing
the brand decrypts is sized by the media but for its feature count, a size it declares.
"""

from ...params import LABEL_DP_CLIP_NORM
from ..vertical_lr import encoded_column_bound, encoded_entry_bound

DP_CLIP_NORM = LABEL_DP_CLIP_NORM
"""With label DP the media clips each standardised feature row to this L2 norm (then
appends the intercept's 1), so one label moves the aggregate by at most
``sqrt(DP_CLIP_NORM^2 + 1)`` in L2 norm: the sensitivity of the Gaussian mechanism."""



def holdout_rows(rows, fraction):
    """Number of held-out media rows: ``round(fraction * rows)``, drawn by the media before any label is seen."""
    return int(round(fraction * rows))


def label_aggregate_bound(rows, fraction):
    """Public bound on each entry of ``[X, 1]ᵀy`` over the training rows (:func:`encoded_column_bound`)."""
    return encoded_column_bound(rows - holdout_rows(rows, fraction), rows)


def holdout_columns(audiences):
    """Columns per L2 candidate of the held-out aggregate: rank, one hit count per audience size, score."""
    return 2 + audiences


def selection_rows(held, candidates):
    """Held-out rows the L2 penalty is chosen on: half of them when there is a choice, none otherwise.

    The report's figures come from the other held-out rows, which chose nothing, so
    that choosing the best of several candidates does not flatter them.
    """
    return held // 2 if candidates > 1 else 0


def holdout_values(audiences, candidates, held):
    """Values of the held-out aggregate (:func:`~fedscore.protocols.lookalike.media.train`) over ``held`` rows.

    Per candidate, its :func:`holdout_columns` over the reported rows, then, when there
    are selection rows, its rank sum over them; last ``Σ y`` over the reported rows and,
    when there are selection rows, over them.
    """
    selecting = int(selection_rows(held, candidates) > 0)
    return (holdout_columns(audiences) + selecting) * candidates + 1 + selecting


def holdout_audience(size, held, rows):
    """Held-out users in an audience of ``size`` (a :class:`~fedscore.kit.sizes.Size` of all ``rows``)."""
    return int(min(held, max(1, round(size.share(rows) * held))))


def aggregate_terms(rows, clip_norm=None):
    """Bounds on the media's label-aggregate matrix ``[X, 1]`` (held-out rows zeroed): ``[(Σ x², max x²)]``.

    Each column of the encoded table has ``Σ x² <= rows`` (and so has the intercept's),
    and no entry exceeds :func:`~fedscore.protocols.vertical_lr.encoded_entry_bound`
    (the clipping norm with label DP).
    """
    return [(float(rows), encoded_entry_bound(rows, clip_norm) ** 2)]


def flags_released(sizes, rows, seed_size):
    """``K``: how many seed flags the media may learn to exclude seed members, ``min(rows, largest audience + seed list)``.

    Enough to fill the largest audience whatever the seed members among the top users.
    Both parties compute it: the media from the seed list's size PSI told it, the brand
    from its own list.
    """
    largest = max(size.of(rows) for size in sizes)
    return int(min(rows, largest + seed_size))
