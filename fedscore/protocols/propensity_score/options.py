"""Options of the ``propensity_score`` job: score new customers with an earlier ``propensity`` run's model.

Nothing is trained and no label is read, so the training options (epochs, L2, label DP,
validation split, encoding limits, exact scores) are not options here: they come with
each party's half of the model, which is a party's own setting (its config's
:data:`MODEL_KEY`), never an option. Options cross to both parties; a model path must not.

This module imports no numerical library: the command line builds its ``--help`` from it.
"""

from dataclasses import dataclass

from ...errors import InputError
from ...kit.options import MODEL_KEY, Options, TableSpec, argument, option
from ...kit.sizes import parse_size
from ...params import ID_KINDS, PSI_MIN_INTERSECTION, UNSEEN_POLICIES
from ..propensity.options import DEFAULT_TOP

__all__ = ["MODEL_KEY", "PropensityScoreOptions"]


@dataclass(frozen=True)
class PropensityScoreOptions(Options):
    """Score every customer of the brand's new table with the model of an earlier ``propensity`` run."""

    job = "propensity_score"
    tables = {"brand": TableSpec(features=False), "media": TableSpec(features=False)}
    # features=False: the model's encoder names the columns read (others, a label column too, are ignored)

    id_column: str = option(None, "The ID column, in both tables.", required=True, local=True)
    id_kind: str = option("auto", "How IDs are normalised before matching.", choices=ID_KINDS)
    top: str = option(DEFAULT_TOP, "Size of brand/top.csv: a percentage of the users scored or a count.")
    unseen: str = option("error", "A text value the model never saw in training, in a column without an '<other>' "
                         "category: error stops with the row and value; zero encodes the row with none of that "
                         "column's known values set.", choices=UNSEEN_POLICIES, local=True)
    min_intersection: int = option(PSI_MIN_INTERSECTION, "Stop with an error when fewer IDs than this match "
                                   "(clean rooms commonly ask for 100 or more).", low=0)
    paillier_key_bits: int | None = option(None, "Shorter Paillier keys for the ranking, for tests only (warns); "
                                           "each party must also allow weak keys in its own settings.", hidden=True)

    def check(self):
        try:
            parse_size(self.top)
        except InputError:
            raise InputError(f"{argument('top', self.top)} is neither a percentage in (0, 100] nor a positive "
                             f"count") from None

    @property
    def top_size(self):
        """The ``top`` option parsed: a :class:`fedscore.kit.sizes.Size`."""
        return parse_size(self.top)
