"""Options of the ``psi`` job (and of the PSI phase that opens every vertical job)."""

from dataclasses import dataclass

from ...kit.options import Options, TableSpec, option
from ...params import ID_KINDS

MODES = ("both", "labelled")
"""``both``: both parties learn the intersection in one row order. ``labelled``: only the
brand learns which of the media's rows match (hidden-seed lookalike)."""


@dataclass(frozen=True)
class PSIOptions(Options):
    """Private set intersection of the brand's and the media's ID columns."""

    job = "psi"
    tables = {"brand": TableSpec(features=False, unique_ids=False),
              "media": TableSpec(features=False, unique_ids=False)}

    id_column: str = option("id", "The ID column, in both tables.", local=True)
    mode: str = option("both", "both: each party gets the matched IDs in one shared row order. labelled: only "
                       "the brand learns which of the media's rows match (in the media's row order); the media "
                       "learns only the size of the brand's list.", choices=MODES)
    id_kind: str = option("auto", "How IDs are normalised: e-mails trimmed and lower-cased, phone numbers to "
                          "digits, hex hashes lower-cased, other text trimmed. auto picks the rule by each "
                          "value's shape.", choices=ID_KINDS)
    min_intersection: int = option(0, "Stop with an error when fewer IDs than this match (clean rooms commonly "
                                   "ask for 100 or more).", low=0)
    minimum_named: str = option("min_intersection", "The option the user set the minimum with, named in the "
                                "error (a job that runs PSI as its first phase names its own).", hidden=True)
