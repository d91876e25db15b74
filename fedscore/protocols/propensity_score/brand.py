"""Scoring with a trained joint propensity model, the brand's side: ``protocols/propensity.md``.

Section *Scoring with a trained model*, step for step. The brand holds its half of the
model (``model.json``: its encoder, weights, intercept and the joint calibration map) and
its own model (``brand_only.json``: the brand-only model and its map), both its own
setting (:data:`~fedscore.protocols.propensity_score.options.MODEL_KEY`). No label is
read and nothing is trained: the private ranking of training (steps 9 and 11 of
``propensity``, :func:`~fedscore.protocols.propensity.brand.mask_for_ranking`) runs over
every matched user, and every row of the brand's table gets one calibrated score.

1. ``propensity_score.load``: load and check both files; encode every row of the table
   with the saved encoder; seal the half's model id to the media.
3. ``propensity_score.rank_mask``: check the media's model id; mask, shuffle and send
   every matched user's ``[[a (z_b + z_m) + b]]``.
5. ``propensity_score.finish``: undo the shuffle; calibrate the joint ranks and the
   brand-only logits with the saved maps; write one ranking.
"""

import json
from dataclasses import dataclass, field

import numpy as np

from ...errors import InputError
from ...kit.model import ModelFile
from ...wire import Message, ciphertext, size
from ..propensity.brand import (
    BRAND_ONLY,
    BRAND_ONLY_FILE,
    JOINT,
    PlattCalibration,
    mask_for_ranking,
    merged_ranking,
    opened_ranks,
    rank_logit,
    ranking_ciphertexts,
)
from .common import (
    check_inputs,
    check_peer_model,
    matched,
    model_id,
    model_path,
    once,
    seal_model_id,
)
from .options import PropensityScoreOptions


@dataclass
class ScoreState:
    """What the brand keeps between the steps of one scoring run."""

    options: PropensityScoreOptions
    id_column: str
    ids: np.ndarray
    """Every ID of the brand's table, in table order."""
    matched_rows: np.ndarray
    """The table row of each matched user, in PSI's shared order."""
    matched_ids: np.ndarray
    model: ModelFile
    """The brand's half of the joint model (with the joint calibration map)."""
    own: ModelFile
    """The brand-only model (with its calibration map)."""
    model_id: str
    exact_scores: bool
    brand_logits: np.ndarray
    """The half's partial logits of the matched users, before clipping to the rank limit."""
    own_logits: np.ndarray
    """The brand-only model's logit of every row of the table."""
    joint_map: PlattCalibration
    own_map: PlattCalibration
    ranked_rows: np.ndarray = None
    done: set = field(default_factory=set)


def load_scoring(config, model):
    """The brand-only model beside the brand's half, and both calibration maps, refused unless a run saved them.

    Returns
    -------
    (ModelFile, PlattCalibration, PlattCalibration)
        The brand-only model, the joint map and the brand-only map.
    """
    path = model_path("brand", config).parent / BRAND_ONLY_FILE
    if "calibration" not in model.training or not path.is_file():
        raise InputError("this half of the model has no saved calibration or brand-only model (a propensity run of "
                         "an earlier fedscore): train it again to score with it", path=path)
    own = ModelFile.load(path)
    if own.kind != "propensity" or own.training.get("source") != BRAND_ONLY or "calibration" not in own.training:
        raise InputError("not the brand-only model of a propensity run", path=path)
    if own.training.get("run_id") != model.training.get("run_id") or own.encoder.columns_ != model.encoder.columns_:
        raise InputError("the brand-only model is not from the run the brand's half comes from", path=path)
    return (own, PlattCalibration.from_dict(model.training["calibration"]),
            PlattCalibration.from_dict(own.training["calibration"]))


# --- 1. propensity_score.load --------------------------------------------------------------

def load(party, msg):
    """Load both files; encode every row with the saved encoder; seal the half's model id to the media."""
    options = PropensityScoreOptions.from_dict(msg["options"])
    psi = matched(party)
    inputs, model, features = check_inputs(options, party.role, party.config)
    own, joint_map, own_map = load_scoring(party.config, model)
    key = model_id(model)
    party.state["propensity_score"] = ScoreState(
        options=options, id_column=inputs.id_column, ids=np.asarray(inputs.ids, dtype=object),
        matched_rows=np.asarray(psi.rows), matched_ids=np.asarray(psi.ids, dtype=object), model=model, own=own,
        model_id=key, exact_scores=bool(model.training.get("exact_scores")),
        brand_logits=model.logits(features[psi.rows]), own_logits=own.logits(features), joint_map=joint_map,
        own_map=own_map)
    return Message(rows=size(len(psi.rows)), features=size(features.shape[1]),
                   model=ciphertext(seal_model_id(party, model, key)))


# --- 3. propensity_score.rank_mask ---------------------------------------------------------

def rank_mask(party, msg):
    """Check the media's model id; send every matched user's masked joint score, shuffled (training's step 9)."""
    state = party.phase("propensity_score")
    once(state.done, "rank_mask")
    check_peer_model(party, state.model_id, msg["model"])
    media_logits = ranking_ciphertexts(party, msg, len(state.matched_rows))
    rows = np.arange(len(state.matched_rows))
    scores, state.ranked_rows = mask_for_ranking(media_logits, state.brand_logits, rows, state.exact_scores)
    return Message(scores=ciphertext(scores.to_bytes()), rows=size(len(rows)))


# --- 5. propensity_score.finish ------------------------------------------------------------

def finish(party, msg):
    """Undo the shuffle; one calibrated ranking of every row of the table; write it, the top list and the report."""
    state = party.phase("propensity_score")
    once(state.done, "finish")
    values = opened_ranks(party, msg["ranks"], len(state.ranked_rows))
    joint_score = np.empty(len(state.matched_rows))
    joint_score[state.ranked_rows] = values if state.exact_scores else rank_logit(values)
    joint_map, own_map = state.joint_map, state.own_map
    unmatched = np.ones(len(state.ids), dtype=bool)
    unmatched[state.matched_rows] = False
    frame = merged_ranking(state.id_column, [
        (JOINT, state.matched_ids, joint_score, joint_map),
        (BRAND_ONLY, state.ids[unmatched], state.own_logits[unmatched], own_map)])
    frame.to_csv(party.out / "scores.csv", index=False)
    count = state.options.top_size.of(len(frame))
    frame.head(count).to_csv(party.out / "top.csv", index=False)
    training = state.model.training
    report = {
        "job": "propensity_score", "role": party.role, "model_id": state.model_id,
        "trained_run_id": training.get("run_id"), "features": len(state.model.encoder.feature_names_),
        "table_rows": len(state.ids), "matched_users": len(state.matched_rows),
        "ranked_users": len(state.ranked_rows), "scored_users": len(frame),
        "scored_by_source": {JOINT: int(len(state.matched_rows)), BRAND_ONLY: int(unmatched.sum())},
        "top": {"size": state.options.top, "count": int(count)},
        "exact_scores": state.exact_scores,
        "score": "calibrated probability of a positive label with the trained run's maps: joint from the joint "
                 "model's " + ("logit (exact scores)" if state.exact_scores else
                               "rank among this run's matched users")
                 + ", brand only from the brand's own model; no label was read and nothing was trained",
        "calibration": {JOINT: joint_map.to_dict(), BRAND_ONLY: own_map.to_dict()},
        "unseen": state.options.local("unseen", party.config),
    }
    (party.out / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return Message()
