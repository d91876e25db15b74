"""Options of the ``propensity`` job: one declaration each, for the command, the library and the run config.

This module imports no numerical library: the command line builds its ``--help`` from it.
"""

import math
from dataclasses import dataclass

from ...errors import InputError
from ...kit.options import LABEL_DP_EPSILON, EncodingOptions, TableSpec, argument, option
from ...kit.sizes import parse_size
from ...params import DEFAULT_L2, DP_DELTA, ID_KINDS, PSI_MIN_INTERSECTION

BACKENDS = ("ckks", "paillier")

DEFAULT_EPOCHS = 20
"""Full-batch epochs at most. With two-block bounded-Hessian steps and momentum (see
:class:`fedscore.protocols.vertical_lr.BoundOptimizer`) 20 epochs came within 0.0005 AUC
of the converged model on bank marketing and default_credit, measured centrally."""

DEFAULT_PATIENCE = 3
"""Early stopping: training stops once the validation Brier score has not improved for
this many epochs, and the weights of the best epoch are kept (Prechelt, "Early stopping
-- but when?", 1998, uses patience criteria of this kind; 3 of at most 20 full-batch
epochs tolerates the short plateaus momentum produces)."""

VALIDATION_FRACTION = 0.2
"""Share of the brand's labelled matched users kept out of training, for early stopping
and the report."""

DEFAULT_TOP = "10%"
"""Size of the brand's top list: the top decile, the share lift is reported at."""



@dataclass(frozen=True)
class PropensityOptions(EncodingOptions):
    """Joint propensity: vertical logistic regression with the labels at the brand, private ranks out."""

    job = "propensity"
    tables = {"brand": TableSpec(features=True, label="label_column"),
              "media": TableSpec(features=True)}

    id_column: str = option(None, "The ID column, in both tables.", required=True, local=True)
    label_column: str = option(None, "The label column, in the brand's table (1/0, yes/no, true/false; empty = "
                               "a user to score).", required=True, local=True)
    id_kind: str = option("auto", "How IDs are normalised before matching.", choices=ID_KINDS)
    backend: str = option("ckks", "Homomorphic encryption for training: ckks (fast, flooded releases) or paillier "
                          "(exact, slow).", choices=BACKENDS)
    epochs: int = option(DEFAULT_EPOCHS, "Full-batch epochs at most (each is four messages, whatever the number "
                         "of users).", low=1)
    patience: int = option(DEFAULT_PATIENCE, "Early stopping: stop after this many epochs without a better "
                           "validation score, keeping the best epoch's weights.", low=1)
    l2: float = option(DEFAULT_L2, "L2 penalty on the mean loss (the intercept is not penalised).", low=0)
    top: str = option(DEFAULT_TOP, "Size of brand/top.csv: a percentage of the users scored or a count.")
    exact_scores: bool = option(False, "Give the brand calibrated probabilities instead of percentiles. This "
                                "reveals to the brand the media's partial score of every ranked user (see "
                                "protocols/propensity.md).")
    validation_fraction: float = option(VALIDATION_FRACTION, "Share of the brand's labelled matched users kept "
                                        "out of training, for early stopping and the report.", low=0, high=1,
                                        low_open=True, high_open=True)
    min_intersection: int = option(PSI_MIN_INTERSECTION, "Stop with an error when fewer IDs than this match "
                                   "(clean rooms commonly ask for 100 or more).", low=0)
    random_state: int | None = option(None, "Makes the brand's validation split reproducible (the media is not "
                                      "sent it).")
    paillier_key_bits: int | None = option(None, "Shorter Paillier keys, for tests only (warns); each party must "
                                           "also allow weak keys in its own settings.", hidden=True)
    label_dp_epsilon: float | None = option(LABEL_DP_EPSILON, "Label differential privacy towards the media: the "
                                            "labels enter training once, with Gaussian noise for (epsilon, delta)-DP; "
                                            "rows are clipped and early stopping is off. 'inf' (--no-label-dp) turns "
                                            "it off: the report then says what the media can learn.", low=0,
                                            low_open=True)
    label_dp_delta: float = option(DP_DELTA, "The delta of label DP.", low=0, high=1, low_open=True,
                                   high_open=True)

    def __post_init__(self):
        super().__post_init__()
        # epsilon inf is no label DP: one value (None) for "off" wherever the options are read
        if self.label_dp_epsilon is not None and math.isinf(self.label_dp_epsilon):
            object.__setattr__(self, "label_dp_epsilon", None)

    def check(self):
        try:
            parse_size(self.top)
        except InputError:
            raise InputError(f"{argument('top', self.top)} is neither a percentage in (0, 100] nor a positive "
                             f"count") from None
        if self.label_dp_epsilon is not None:
            from ...dp import noise_multiplier

            noise_multiplier(self.label_dp_epsilon, 1, self.label_dp_delta)  # the accountant is installed

    @property
    def top_size(self):
        """The ``top`` option parsed: a :class:`fedscore.kit.sizes.Size`."""
        return parse_size(self.top)
