"""What the brand and the media of a scoring run do alike: find, check and identify their half of the model.

Neither party's module imports the other's; both import this one.
"""

from ...errors import ProtocolError
from ...kit import halves
from ...kit.halves import TrainedBy
from ..psi.party import Matched

MODEL_ID_FIELDS = ("run_id", "matched_users", "epochs_run", "best_epoch", "l2", "backend", "exact_scores")
"""What both halves of one trained model record alike (``training`` in their model files):
the run that trained them and the public shape of the result. Their digest is the model id."""

MODEL_STEP = "propensity_score.model"
"""The channel label of the model id each party seals for the other."""


TRAINED_BY = TrainedBy("propensity", "fedscore propensity", MODEL_ID_FIELDS)


def model_path(role, config):
    """This party's half: :func:`fedscore.kit.halves.model_path` of a ``propensity`` run."""
    return halves.model_path(role, config, TRAINED_BY)


def model_id(model):
    """The digest both halves of one trained model share (:data:`MODEL_ID_FIELDS`), as hex text."""
    return halves.model_id(model, TRAINED_BY)


def check_inputs(options, role, config, rows=None):
    """:func:`fedscore.kit.halves.checked_half` for this job's halves."""
    return halves.checked_half(options, role, config, TRAINED_BY, rows)


def matched(party):
    """PSI's result at this party, refused unless PSI ran in both mode."""
    psi = party.phase("psi")
    if not isinstance(psi, Matched):
        raise ProtocolError("scoring needs PSI in both mode first: the matched users in one shared order")
    return psi


def seal_model_id(party, model, key):
    """Seal this half's model id (and the trained run's matched users) for the peer."""
    return halves.seal_model_id(party, MODEL_STEP, key, matched_users=model.training.get("matched_users"))


def check_peer_model(party, key, sealed):
    """Refuse a peer whose half is not of the same trained model (a different model id), naming both ids."""
    halves.check_peer_model(party, MODEL_STEP, key, sealed, TRAINED_BY)


def once(done, step):
    """Refuse a step this party already ran: the ranking is one round, its key releases once."""
    halves.once(done, step, "scoring's ranking")
