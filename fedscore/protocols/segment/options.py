"""Options of the ``segment`` job: vertical KMeans of the users the brand and the media share."""

from dataclasses import dataclass

from ...kit.options import EncodingOptions, TableSpec, option
from ...params import ID_KINDS, MIN_SEGMENT_SIZE, PSI_MIN_INTERSECTION

DEFAULT_N_INIT = 10
"""Restarts from random shared users, run side by side and scored by their joint inertia
(scikit-learn's ``KMeans`` makes 10 restarts with random initialisation). Each restart
multiplies the size of the round messages: lower it for hundreds of thousands of users."""
DEFAULT_MAX_ITER = 100
"""Centroid updates before a restart stops (scikit-learn's ``KMeans`` counts ``max_iter`` alike)."""
DEFAULT_TOL = 1e-4
"""Relative tolerance on the squared centroid shift, scaled by the mean feature variance
as scikit-learn's ``KMeans`` does."""
DEFAULT_RESTART_ITER = 10
"""Lloyd iterations every restart runs before only the one of least joint inertia goes on.
Every masked round shows the key owner each user's masked distances once more per
restart (see :data:`fedscore.protocols.segment.party.MASK_SCALE_OCTAVES`), so restarts
that cannot win should stop early. Measured with plain Lloyd iterations, 30 draws of 10
random restarts each, on wholesale customers (k = 3, 5), FATE vehicle (k = 4) and 3,000
rows of bank marketing (k = 4): the restart kept after 10 iterations ends within 0.3 %
(mean; 2.6 % worst) of the inertia of the best restart run to convergence; after 5
iterations, within 1.6 % (mean)."""


@dataclass(frozen=True)
class SegmentOptions(EncodingOptions):
    """Split the users the brand and the media share into ``k`` personas, on both parties' features."""

    job = "segment"
    tables = {"brand": TableSpec(features=True), "media": TableSpec(features=True)}

    id_column: str = option(None, "Column holding each user's ID, in both tables.", required=True, local=True)
    k: int = option(None, "Number of segments (personas).", required=True, low=2)
    exclude: tuple[str, ...] = option((), "A column to leave out of the features (repeatable), e.g. a label.",
                                      multiple=True)
    n_init: int = option(DEFAULT_N_INIT, "Candidate initial centroid sets, scored by their privately computed joint "
                         "inertia.", low=1)
    restart_iter: int = option(DEFAULT_RESTART_ITER, "Iterations after which only the candidate of least joint "
                               "inertia goes on.", low=1)
    max_iter: int = option(DEFAULT_MAX_ITER, "Stop after this many iterations even if the centroids still move (the "
                           "output says so).", low=1)
    tol: float = option(DEFAULT_TOL, "Stop when the squared centroid shift falls below this times the mean feature "
                        "variance (scikit-learn's convention).", low=0)
    min_segment_size: int = option(MIN_SEGMENT_SIZE, "Segments smaller than this are not profiled to the other "
                                   "party.", low=1)
    profile_noise: float = option(0.0, "Gaussian noise on released profile means, in standard deviations of each "
                                  "feature.", low=0)
    random_state: int | None = option(None, "Seed for the choice of initial users (masks always use the OS "
                                      "generator).")
    id_kind: str = option("auto", "How IDs are normalised before matching: e-mails trimmed and lower-cased, phone "
                          "numbers to digits, hex hashes lower-cased, other text trimmed. auto picks the rule by "
                          "each value's shape.", choices=ID_KINDS)
    min_intersection: int = option(PSI_MIN_INTERSECTION, "Stop with an error when fewer IDs than this match (clean "
                                   "rooms commonly ask for 100 or more).", low=0)
