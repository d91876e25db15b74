"""Options of the ``segment_assign`` job: put the users both parties share into a trained model's personas.

Nothing is trained, so the training options (``k``, restarts, stopping rules, encoding
limits) are not options here: they come with each party's half of the model, which is
a party's own setting (its config's :data:`MODEL_KEY`), never an option. Options cross
to both parties; a model path must not.
"""

from dataclasses import dataclass

from ...kit.options import MODEL_KEY, Options, TableSpec, option
from ...params import ID_KINDS, PSI_MIN_INTERSECTION, UNSEEN_POLICIES

__all__ = ["MODEL_KEY", "SegmentAssignOptions"]


@dataclass(frozen=True)
class SegmentAssignOptions(Options):
    """Put the users the brand and the media share into the segments of an earlier ``segment`` run."""

    job = "segment_assign"
    tables = {"brand": TableSpec(features=False), "media": TableSpec(features=False)}
    # features=False: the model's encoder names the columns read, not the table (others are ignored)

    id_column: str = option(None, "Column holding each user's ID, in both tables.", required=True, local=True)
    unseen: str = option("error", "A text value the model never saw in training, in a column without an '<other>' "
                         "category: error stops with the row and value; zero encodes the row with none of that "
                         "column's known values set.", choices=UNSEEN_POLICIES, local=True)
    id_kind: str = option("auto", "How IDs are normalised before matching: e-mails trimmed and lower-cased, phone "
                          "numbers to digits, hex hashes lower-cased, other text trimmed. auto picks the rule by "
                          "each value's shape.", choices=ID_KINDS)
    min_intersection: int = option(PSI_MIN_INTERSECTION, "Stop with an error when fewer IDs than this match (clean "
                                   "rooms commonly ask for 100 or more).", low=0)
