"""Options of the ``horizontal_lr`` job: federated logistic regression for N parties.

Imported by the command line to build ``--help``: nothing heavy is imported here (the
accountant is imported when a noise multiplier is computed).
"""

from dataclasses import dataclass

from ...kit.options import ANY_PARTY, EncodingOptions, TableSpec, option
from ...params import DEFAULT_L2, DP_CLIP_NORM, DP_DELTA

DEFAULT_ROUNDS = 10
"""FedAvg rounds. On the benchmark splits the global model is within 0.001 AUC of its final
value after 2-3 rounds; 10 leaves a margin for less even splits."""

LOCAL_STEPS = 20
"""L-BFGS iterations per round without DP: enough to approach each party's optimum from the
global model (FedAvg with several local epochs, McMahan et al., AISTATS 2017)."""

DP_LOCAL_STEPS = 5
"""Noisy gradient steps per round with DP. Each step is one Gaussian release, so rounds x
steps is what the accountant composes."""

DP_LEARNING_RATE = 5.0
"""Step size of the noisy gradient steps. A clipped row gradient has norm at most ``C = 1``,
so the mean clipped gradient is at most 1 and a step moves the weights by at most 5;
tuned on the benchmark splits (default credit, bank marketing)."""

VALIDATION_FRACTION = 0.2
"""Share of each party's labelled rows held out, locally, to report validation AUC per round."""


@dataclass(frozen=True)
class HorizontalLROptions(EncodingOptions):
    """One logistic regression trained on N parties' rows with the same tag schema."""

    job = "horizontal_lr"
    tables = {ANY_PARTY: TableSpec(features=True, label="label_column", constant_ok=True)}
    own = ("dp_epsilon", "dp_delta", "clip_norm", "rounds", "local_steps", "min_parties", "min_category_count",
           "outlier_quantile")
    """Each party's own options (:func:`fedscore.protocols.horizontal.own_options`): what sizes its noise,
    counts its releases, says how few contributors it accepts in a sum and limits what its rows weigh."""

    id_column: str = option(None, "Column holding each row's ID.", required=True, local=True)
    label_column: str = option(None, "Label column: 1/0, yes/no or true/false; an empty cell marks a row to score, "
                               "not train on.", required=True, local=True)
    rounds: int = option(DEFAULT_ROUNDS, "FedAvg rounds.", low=1)
    local_steps: int | None = option(None, f"Local iterations per round (default {LOCAL_STEPS} L-BFGS iterations, or "
                                     f"{DP_LOCAL_STEPS} noisy gradient steps with DP).", low=1)
    learning_rate: float = option(DP_LEARNING_RATE, "Step size of the noisy gradient steps under DP.", low=0,
                                  low_open=True)
    l2: float = option(DEFAULT_L2, "L2 penalty of the mean log-loss (intercept excluded).", low=0)
    proximal_mu: float = option(0.0, "FedProx proximal term (0: plain FedAvg).", low=0)
    validation_fraction: float = option(VALIDATION_FRACTION, "Share of each party's labelled rows held out for the "
                                        "per-round validation AUC.", low=0, high=1, high_open=True)
    min_parties: int | None = option(None, "A round goes on when at least this many parties answered (default: all "
                                     "of them); each party also refuses a sum of fewer parties' updates than its own "
                                     "value.", low=2)
    dp_epsilon: float | None = option(None, "Differential privacy per row (DP-SGD): each party clips every row's "
                                      "gradient and adds Gaussian noise in each local step before encrypting its "
                                      "update, so the whole run spends this epsilon for any one row of any party. "
                                      "Not party-level DP (a party's whole table is not hidden).", low=0,
                                      low_open=True)
    dp_delta: float = option(DP_DELTA, "Delta of the DP guarantee.", low=0, high=1, low_open=True, high_open=True)
    clip_norm: float = option(DP_CLIP_NORM, "Per-row gradient clipping norm under DP.", low=0, low_open=True)
    public_key: str | None = option(None, "Path of the coordinator's public key file (coordinator.public from "
                                    "'fedscore keys init'); the command and fedscore.horizontal_lr set it from the "
                                    "key folder.", hidden=True)

    @property
    def steps_per_round(self):
        """``local_steps``, or its default: L-BFGS iterations without DP, noisy gradient steps with it."""
        if self.local_steps is not None:
            return self.local_steps
        return LOCAL_STEPS if self.dp_epsilon is None else DP_LOCAL_STEPS

    @property
    def releases(self):
        """Gaussian releases the accountant composes: one per local step of every round (DP only)."""
        return self.rounds * self.steps_per_round

    def noise_multiplier(self):
        """The DP noise multiplier these options size (None without DP): each party computes its own."""
        if self.dp_epsilon is None:
            return None
        from ... import dp

        return dp.noise_multiplier(self.dp_epsilon, self.releases, self.dp_delta)

    def training(self):
        """The hyper-parameters a model file and the summary record."""
        return {"rounds": self.rounds, "local_steps": self.steps_per_round, "l2": self.l2,
                "proximal_mu": self.proximal_mu, "validation_fraction": self.validation_fraction,
                "dp_epsilon": self.dp_epsilon, "dp_delta": self.dp_delta, "clip_norm": self.clip_norm}
