"""The ledger in plain words: what each protocol step is for, and what a party opens.

A ledger entry names its step (``propensity.rank_mask``) and each field's payload
category; both are the protocol's vocabulary, which a report shows only in a detail
view. This module is the one place that says in plain words what a step does and which
received fields the receiver opens as a result released to it by design (the rest of
what it receives stays encrypted, sealed or masked for it). Both tables follow the
*Message flow* and *What each party learns* sections of the specs in ``protocols/``, step
for step with :data:`fedscore.protocols.STEPS`.
"""

PHASES = {
    "ping": "reachability check",
    "psi": "private ID matching",
}
"""Plain words for every step of a protocol whose steps need no finer words (by prefix)."""

STEP_WORDS = {
    # protocols/lookalike.md
    "lookalike.encrypt_labels": "the seed labels, encrypted by the brand",
    "lookalike.load_features": "set-up",
    "lookalike.label_aggregate": "the seed's label aggregate, computed under encryption",
    "lookalike.release_aggregate": "the seed's label aggregate, released to the media",
    "lookalike.train": "training and held-out scores",
    "lookalike.evaluate": "held-out evaluation",
    "lookalike.select": "leaving seed members out of the audiences",
    "lookalike.release_flags": "leaving seed members out of the audiences",
    "lookalike.write_audiences": "leaving seed members out of the audiences",
    # protocols/propensity.md
    "propensity.load": "set-up: sizes and keys",
    "propensity.make_key": "set-up: sizes and keys",
    "propensity.media_logits": "set-up: sizes and keys",
    "propensity.peer_key": "set-up: sizes and keys",
    "propensity.brand_round": "training epochs",
    "propensity.media_round": "training epochs",
    "propensity.brand_update": "training epochs",
    "propensity.media_update": "training epochs",
    "propensity.rank_encrypt": "private ranking of the customers to score",
    "propensity.rank_mask": "private ranking of the customers to score",
    "propensity.rank_reveal": "private ranking of the customers to score",
    "propensity.finish": "private ranking of the customers to score",
    # protocols/propensity.md, "Scoring with a trained model"
    "propensity_score.load": "set-up: each party's half of the trained model",
    "propensity_score.rank_encrypt": "private ranking of the new customers with the trained model",
    "propensity_score.rank_mask": "private ranking of the new customers with the trained model",
    "propensity_score.rank_reveal": "private ranking of the new customers with the trained model",
    "propensity_score.finish": "private ranking of the new customers with the trained model",
    # protocols/segment_vertical.md
    "segment.setup": "set-up: sizes and keys",
    "segment.keys": "set-up: sizes and keys",
    "segment.encrypt_distances": "persona rounds: each person's nearest persona, found under encryption",
    "segment.mask_distances": "persona rounds: each person's nearest persona, found under encryption",
    "segment.argmin": "persona rounds: each person's nearest persona, found under encryption",
    "segment.profile": "persona profiles",
    "segment.write_profiles": "persona profiles",
    # protocols/segment_vertical.md, "Assigning new users with a trained model"
    "segment_assign.setup": "set-up: each party's half of the trained model",
    "segment_assign.encrypt_distances": "each new person's nearest persona, found under encryption",
    "segment_assign.mask_distances": "each new person's nearest persona, found under encryption",
    "segment_assign.argmin": "each new person's nearest persona, found under encryption",
    "segment_assign.unmask": "each new person's persona",
    "segment_assign.write_segments": "each new person's persona",
    # protocols/segment_horizontal.md
    "horizontal_kmeans.setup": "set-up: columns, sizes and keys",
    "horizontal_kmeans.make_key": "set-up: columns, sizes and keys",
    "horizontal_kmeans.column_stats": "pooled column statistics",
    "horizontal_kmeans.local_centers": "starting personas",
    "horizontal_kmeans.cluster_sums": "persona rounds: pooled sums per persona",
    "horizontal_kmeans.finish": "persona rounds: pooled sums per persona",
    # protocols/scoring_horizontal.md
    "horizontal_lr.describe": "set-up: columns and keys",
    "horizontal_lr.sum_columns": "pooled column statistics",
    "horizontal_lr.spread_columns": "pooled column statistics",
    "horizontal_lr.train_round": "training rounds: pooled model updates",
    "horizontal_lr.finish": "training rounds: pooled model updates",
}
"""Plain words for each step: several steps of one phase share their words."""

RELEASED = {
    # protocols/lookalike.md, "What each party learns"
    ("lookalike.train", "aggregate"): "the seed's label aggregate (each feature summed over the seed members in its "
                                      "training rows, and their number)",
    ("lookalike.evaluate", "holdout"): "held-out sums per model candidate (AUC and seed members found per audience)",
    ("lookalike.write_audiences", "flags"): "which of its top-scored users are seed members",
    # protocols/propensity.md
    ("propensity.brand_round", "quantiles"): "64 quantiles of the media's partial scores per epoch",
    ("propensity.brand_update", "brand_gradient"): "its own gradient each epoch",
    ("propensity.media_update", "media_gradient"): "its own gradient each epoch",
    ("propensity.rank_reveal", "scores"): "the ranked customers' scores, shuffled and rescaled",
    ("propensity.finish", "ranks"): "the rank of each customer it asked to score",
    ("propensity_score.rank_encrypt", "model"): "the other party's model id: whether its half is of the same model",
    ("propensity_score.rank_mask", "model"): "the other party's model id: whether its half is of the same model",
    ("propensity_score.rank_reveal", "scores"): "the matched customers' scores, shuffled and rescaled",
    ("propensity_score.finish", "ranks"): "the rank of each matched customer",
    # protocols/segment_vertical.md
    ("segment.encrypt_distances", "positions"): "each shared person's persona after the round",
    ("segment.write_profiles", "profile"): "the other party's averages per released persona",
    ("segment_assign.encrypt_distances", "model"): "the other party's model id: whether its half is of the same model",
    ("segment_assign.mask_distances", "model"): "the other party's model id: whether its half is of the same model",
    ("segment_assign.unmask", "positions"): "each new shared person's persona",
    ("segment_assign.write_segments", "segments"): "each new shared person's persona",
    # protocols/segment_horizontal.md
    ("horizontal_kmeans.local_centers", "stats"): "pooled column statistics",
    ("horizontal_kmeans.cluster_sums", "aggregate"): "pooled sums and counts per persona",
    ("horizontal_kmeans.finish", "aggregate"): "pooled sums and counts per persona",
    # protocols/scoring_horizontal.md
    ("horizontal_lr.spread_columns", "sums"): "pooled column sums and row count",
    ("horizontal_lr.train_round", "spreads"): "pooled column spreads",
    ("horizontal_lr.train_round", "model_sum"): "the pooled model of the round",
    ("horizontal_lr.finish", "model_sum"): "the pooled model of the round",
}
"""``(step, field)`` received by a party that opens it: a result released to it by design.

It travels encrypted or sealed; the report counts it as released to its receiver, not
as an encrypted value, because the receiver reads it. Keyed by the step of the message
that carries the field to the party (the request), as the ledger records it."""

RELEASED_CATEGORY = "released"
"""The ledger-view category of a field listed in :data:`RELEASED`, on its hop to the party."""


def step_words(step):
    """Plain words for ``step``: its own, its protocol's, or the step name made readable."""
    if step in STEP_WORDS:
        return STEP_WORDS[step]
    prefix = str(step).partition(".")[0]
    return PHASES.get(prefix, str(step).replace("_", " ").replace(".", ": "))


def released(step, field):
    """What a party learns from ``field`` of ``step`` when it receives it, or None."""
    return RELEASED.get((step, field))
