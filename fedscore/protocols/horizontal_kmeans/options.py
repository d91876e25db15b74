"""Options of the ``horizontal_kmeans`` job: KMeans over the rows of N parties with the same columns."""

from dataclasses import dataclass

from ...kit.options import ANY_PARTY, EncodingOptions, TableSpec, option
from ...params import DP_DELTA
from ..segment.options import DEFAULT_MAX_ITER, DEFAULT_TOL


@dataclass(frozen=True)
class HorizontalKMeansOptions(EncodingOptions):
    """Cluster the rows of N parties holding the same numeric columns into ``k`` segments.

    Of the encoding options, ``outlier_quantile`` applies (each party winsorises its own
    rows); ``min_category_count`` has nothing to merge, every feature being numeric.
    """

    job = "horizontal_kmeans"
    tables = {ANY_PARTY: TableSpec(features=True, numeric_only=True)}
    own = ("dp_epsilon", "dp_delta", "dp_clip", "max_iter", "min_proposal_size", "min_category_count",
           "outlier_quantile")
    """Each party's own options (:func:`fedscore.protocols.horizontal.own_options`): what sizes its noise,
    counts its releases and limits what its rows weigh in what it releases."""

    id_column: str = option(None, "Column holding each row's ID.", required=True, local=True)
    k: int = option(None, "Number of segments.", required=True, low=2)
    exclude: tuple[str, ...] = option((), "A column to leave out (repeatable); text columns must be.", multiple=True)
    max_iter: int = option(DEFAULT_MAX_ITER, "Stop after this many iterations even if the centroids still move (the "
                           "output says so).", low=1)
    tol: float = option(DEFAULT_TOL, "Stop when the squared centroid shift (standardised units) falls below it.",
                        low=0)
    min_proposal_size: int | None = option(None, "Without DP, a party proposes as initial centroids only local "
                                           "clusters of at least this many rows. Default: half the party's average "
                                           "local cluster (rows / 2K), between 10 and 50.", low=1)
    dp_epsilon: float | None = option(None, "Differential privacy (per row): noise every party's sums and counts, "
                                      "the initialisation's included, so the run spends this epsilon.",
                                      low=0, low_open=True)
    dp_delta: float = option(DP_DELTA, "Target delta of the differential privacy option.", low=0, high=1,
                             low_open=True, high_open=True)
    dp_clip: float | None = option(None, "L2 norm each standardised row is clipped to in the released sums (DP "
                                   "only). Default: the square root of the number of features.", low=0,
                                   low_open=True)
    random_state: int | None = option(None, "Seed of the shared initialisation.")
