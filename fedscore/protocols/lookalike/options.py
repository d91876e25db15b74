"""Options of the ``lookalike`` job: each stated once, for the command, the library and the run config.

Imports nothing heavy: the command line builds ``--help`` from this module.
"""

import math
from dataclasses import dataclass

from ...errors import InputError
from ...kit.options import LABEL_DP_EPSILON, SURFACE, EncodingOptions, TableSpec, argument, option
from ...kit.sizes import parse_sizes
from ...params import DEFAULT_L2, DP_DELTA, ID_KINDS, MIN_SEED_SIZE

BACKENDS = ("ckks", "paillier")

HOLDOUT_FRACTION = 0.2
"""Share of the media's rows held out (at random, label-blind) to measure the model."""

L2_CANDIDATES = (1e-4, 1e-3, 1e-2)
"""L2 penalties tried; the brand picks the one with the best held-out AUC. Three
candidates cost the brand log2(3) bits of label-dependent information to the media
(the choice); with label DP only :data:`~fedscore.params.DEFAULT_L2` is
used so that the epsilon covers everything the media learns (:attr:`LookalikeOptions.candidates`)."""

DEFAULT_AUDIENCE_SIZES = ("1%", "5%", "10%")



@dataclass(frozen=True)
class LookalikeOptions(EncodingOptions):
    """Hidden-seed lookalike: the media trains on the brand's seed flags without seeing them."""

    job = "lookalike"
    tables = {"brand": TableSpec(features=False, unique_ids=False),  # a seed list: IDs only
              "media": TableSpec(features=True, unique_ids=False)}   # PSI skips empty and repeated IDs

    id_column: str = option(None, "The ID column, in both tables.", required=True, local=True)
    id_kind: str = option("auto", "How IDs are normalised before matching.", choices=ID_KINDS)
    backend: str = option("ckks", "Homomorphic encryption: ckks (fast, approximate, flooded releases) or paillier "
                          "(exact, slow).", choices=BACKENDS)
    audience_sizes: tuple[str, ...] = option(DEFAULT_AUDIENCE_SIZES, "Audience sizes, comma-separated: percentages "
                                             "of the audience or absolute counts.", cli="--audience-size")
    min_seed: int = option(MIN_SEED_SIZE, "Refuse the run when fewer seed members than this are found at the media.",
                           low=1)
    exclude_seed: bool = option(False, "Leave seed members out of the audiences. Excluding them tells the media "
                                "which of its top candidates (the largest audience plus the seed list's size) are "
                                "seed members, so it needs label DP off (--no-label-dp).",
                                cli="--exclude-seed/--include-seed")
    label_dp_epsilon: float | None = option(LABEL_DP_EPSILON, "Gaussian label differential privacy on the one label "
                                            "aggregate the media receives; the epsilon is reported. 'inf' "
                                            "(--no-label-dp) turns it off: the report then says what the media "
                                            "can learn.", low=0, low_open=True)
    label_dp_delta: float = option(DP_DELTA, "The delta of label differential privacy.", low=0, high=1,
                                   low_open=True, high_open=True)
    holdout_fraction: float = option(HOLDOUT_FRACTION, "Share of the media's rows held out, at random and before "
                                     "any label is seen, to measure the model.", low=0, high=1, low_open=True,
                                     high_open=True)
    l2_candidates: tuple[float, ...] = option(L2_CANDIDATES, "L2 penalties tried, comma-separated; the brand picks "
                                              "the one with the best held-out AUC. With label DP only 1e-4 is "
                                              "trained.", low=0)
    random_state: int | None = option(None, "Makes the media's held-out split reproducible (the brand is not "
                                      "sent it).")
    paillier_key_bits: int | None = option(None, "Shorter Paillier keys than 3072 bits, for tests only (both "
                                           "parties must consent).", hidden=True)

    def __post_init__(self):
        super().__post_init__()
        # epsilon inf is no label DP: one value (None) for "off" wherever the options are read
        if self.label_dp_epsilon is not None and math.isinf(self.label_dp_epsilon):
            object.__setattr__(self, "label_dp_epsilon", None)

    def check(self):
        parse_sizes(self.audience_sizes, "audience size")
        if not self.l2_candidates:
            raise InputError(f"{argument('l2_candidates')} must list at least one non-negative number")
        if self.label_dp_epsilon is not None and self.exclude_seed:
            include = "--include-seed" if SURFACE.get() == "cli" else "exclude_seed=False"
            off = "--no-label-dp" if SURFACE.get() == "cli" else "label_dp_epsilon=inf"
            raise InputError("label DP cannot hold while the media learns which of its top candidates are seed "
                             f"members to exclude them: use {include} (the default), or {off} to exclude them")

    def check_inputs(self, role, inputs):
        """The brand refuses a seed list shorter than ``min_seed`` before anything is sent."""
        if role != "brand":
            return
        distinct = len(set(inputs.ids.tolist()) - {""})
        if distinct < self.min_seed:
            raise InputError(f"the seed list has {distinct} distinct IDs; at least {self.min_seed} are needed "
                             f"(clean-room minimum seed size)", path=inputs.table.path, column=inputs.id_column)

    @property
    def sizes(self):
        """The audience sizes as :class:`fedscore.kit.sizes.Size`, in the order given."""
        return parse_sizes(self.audience_sizes, "audience size")

    @property
    def candidates(self):
        """The L2 penalties the media trains: :attr:`l2_candidates`, or the default alone with label DP.

        With label DP the choice among several candidates would be a label-dependent
        release outside the epsilon, so only one is trained.
        """
        if self.label_dp_epsilon is None:
            return self.l2_candidates
        return (DEFAULT_L2,)
