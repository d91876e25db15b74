"""Scoring with a trained joint propensity model, the media's side: ``protocols/propensity.md``.

Section *Scoring with a trained model*, step for step. The media holds its half of the
model (``model.json``: its encoder and weights, no intercept), its own setting
(:data:`~fedscore.protocols.propensity_score.options.MODEL_KEY`). Nothing is trained: the
private ranking of training (steps 8 and 10 of ``propensity``,
:func:`~fedscore.protocols.propensity.media.encrypt_for_ranking` and
:func:`~fedscore.protocols.propensity.media.reveal_ranks`) runs over every matched user.

1. ``propensity_score.load``: load and check the half; encode the matched users' rows
   with the saved encoder; seal the half's model id to the brand.
2. ``propensity_score.rank_encrypt``: check the brand's model id; encrypt every matched
   user's ``z_m`` on its own under a fresh Paillier key.
4. ``propensity_score.rank_reveal``: release exactly one masked score per matched user,
   once; rank them and seal the ranks for the brand.
"""

import json
from dataclasses import dataclass, field

import numpy as np

from ...kit.model import ModelFile
from ...kit.release import KeyOwner
from ...wire import Message, ciphertext, size
from ..propensity.media import encrypt_for_ranking, reveal_ranks
from .common import (
    check_inputs,
    check_peer_model,
    matched,
    model_id,
    once,
    seal_model_id,
)
from .options import PropensityScoreOptions


@dataclass
class ScoreState:
    """What the media keeps between the steps of one scoring run."""

    options: PropensityScoreOptions
    model: ModelFile
    model_id: str
    exact_scores: bool
    media_logits: np.ndarray
    """The half's partial logits of the matched users, in PSI's shared order, before clipping."""
    owner: KeyOwner = None
    """The ranking key pair, which releases the matched users' order once."""
    done: set = field(default_factory=set)


# --- 1. propensity_score.load --------------------------------------------------------------

def load(party, msg):
    """Load the half; encode the matched users' rows with its saved encoder; seal its model id to the brand."""
    options = PropensityScoreOptions.from_dict(msg["options"])
    psi = matched(party)
    _, model, features = check_inputs(options, party.role, party.config, rows=psi.rows)
    key = model_id(model)
    party.state["propensity_score"] = ScoreState(options=options, model=model, model_id=key,
                                                 exact_scores=bool(model.training.get("exact_scores")),
                                                 media_logits=model.logits(features))
    return Message(rows=size(len(features)), features=size(features.shape[1]),
                   model=ciphertext(seal_model_id(party, model, key)))


# --- 2. propensity_score.rank_encrypt ------------------------------------------------------

def rank_encrypt(party, msg):
    """Check the brand's model id, then encrypt every matched user's ``z_m`` on its own (training's step 8)."""
    state = party.phase("propensity_score")
    once(state.done, "rank_encrypt")
    check_peer_model(party, state.model_id, msg["model"])
    state.owner, reply = encrypt_for_ranking(party, state.media_logits, state.options.paillier_key_bits)
    return reply


# --- 4. propensity_score.rank_reveal -------------------------------------------------------

def rank_reveal(party, msg):
    """Release one masked score per matched user through the key's check, once; seal the ranks (training's step 10)."""
    state = party.phase("propensity_score")
    once(state.done, "rank_reveal")
    ranked = len(state.media_logits)  # every matched user: the brand ranks them all
    ranks = reveal_ranks(party, state.owner, msg["scores"], ranked, state.exact_scores)
    training = state.model.training
    report = {"job": "propensity_score", "role": party.role, "model_id": state.model_id,
              "trained_run_id": training.get("run_id"), "features": len(state.model.encoder.feature_names_),
              "ranked_users": ranked, "exact_scores": state.exact_scores,
              "unseen": state.options.local("unseen", party.config)}
    (party.out / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return Message(ranks=ciphertext(ranks))
