"""A party's half of a trained two-party model, used again: found, checked against the party's table, identified.

A vertical model is two halves, one per party (``propensity``, ``segment``). The jobs that
use one again without training (``propensity_score``, ``segment_assign``) share these
steps: each party finds its own half from a party-local setting (:data:`MODEL_KEY`, never
sent), refuses the other party's half or another kind of model, checks its new table
against the half's encoder, and proves to its peer, sealed, that both halves come from
the same training run (:func:`model_id`), so that a brand's May half never meets a
media's June half.
"""

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError, ProtocolError
from .inputs import read_inputs
from .model import ModelFile
from .options import MODEL_KEY

MODEL_FILE = "model.json"
"""A half's file in a training run's party folder."""

PEER = {"brand": "media", "media": "brand"}


@dataclass(frozen=True)
class TrainedBy:
    """The training job whose halves a job uses again, as its errors name it.

    Attributes
    ----------
    kind : str
        The model file's ``kind`` (``"propensity"``, ``"segment"``).
    command : str
        How the user ran the training (``"fedscore propensity"``), for the error text.
    id_fields : tuple of str
        What both halves record alike in their ``training`` section (the run id and the
        public shape of the result): their digest is the model id.
    """

    kind: str
    command: str
    id_fields: tuple


def model_path(role, config, trained_by):
    """This party's half, from its config's :data:`MODEL_KEY`: a ``model.json`` or a folder holding one."""
    value = config.get(MODEL_KEY)
    if not value:
        raise InputError(f"the {role} has no model half: give it the folder of a {trained_by.command} run "
                         f"(--model DIR reads DIR/{role}/{MODEL_FILE})")
    path = Path(value)
    if not path.is_dir():
        return path
    for candidate in (path / role / MODEL_FILE, path / MODEL_FILE):
        if candidate.is_file():
            return candidate
    raise InputError(f"no model file for the {role} in this folder (looked for {role}/{MODEL_FILE} and {MODEL_FILE}): "
                     f"give the folder of a {trained_by.command} run", path=path)


def load_half(role, config, trained_by):
    """Load this party's half, refused unless it is a half of ``trained_by``'s kind, and the role's own.

    Raises
    ------
    InputError
        A missing or malformed file, a model of another kind, the other party's half.
    """
    path = model_path(role, config, trained_by)
    model = ModelFile.load(path)
    if model.kind != trained_by.kind or model.training.get("source") is not None:
        raise InputError(f"a {model.kind} model file, not one half of a model of {trained_by.command}", path=path)
    if model.party != role:
        raise InputError(f"this is the {model.party}'s half of the model; the {role} needs its own", path=path)
    return model


def model_id(model, trained_by, **shape):
    """The digest both halves of one trained model share, as hex text.

    ``shape`` adds what a job reads off the model itself rather than its ``training``
    section (the number of centroids, say).
    """
    fields = {name: model.training.get(name) for name in trained_by.id_fields}
    text = json.dumps({**fields, **shape}, sort_keys=True, default=str)
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


def checked_half(options, role, config, trained_by, rows=None):
    """This party's half and its table, checked against each other, and ``rows`` of the table (all by default) encoded.

    The library runs it on every row before a run starts, so that a bad cell or an unseen
    value fails before anything is exchanged; the job's first step runs it again.

    Returns
    -------
    (fedscore.kit.inputs.PartyInputs, ModelFile, numpy.ndarray)

    Raises
    ------
    InputError
        From :func:`load_half`, the table's ID column, a column the encoder needs that the
        table lacks, or a cell it cannot encode (named with the file, column and row).
    """
    model = load_half(role, config, trained_by)
    inputs = read_inputs(options, role, config)
    missing = [c for c in model.encoder.columns_ if c not in inputs.table.columns]
    if missing:
        raise InputError(f"missing column(s) the model was trained on: {', '.join(missing)} (columns are: "
                         f"{', '.join(inputs.table.columns)})", path=inputs.table.path)
    if inputs.id_column in model.encoder.columns_:
        raise InputError("the ID column is one of the model's features", path=inputs.table.path,
                         column=inputs.id_column)
    return inputs, model, model.encoder.transform(inputs.table, rows=rows, unseen=options.local("unseen", config))


def seal_model_id(party, step, key, **public_shape):
    """Seal this half's model id (and any public shape the peer's error should show) for the peer."""
    return party.channel.seal(PEER[party.role], step, {"model_id": key, **public_shape})


def check_peer_model(party, step, key, sealed, trained_by, **own_shape):
    """Refuse a peer whose half is not of the same trained model (another model id), naming both ids.

    Returns
    -------
    dict
        What the peer sealed (its model id and public shape).
    """
    peer = PEER[party.role]
    opened = party.channel.open(peer, step, sealed)
    if not isinstance(opened, dict) or "model_id" not in opened or not set(own_shape) <= set(opened):
        raise ProtocolError(f"the {peer}'s model id is malformed")
    if opened["model_id"] != key:
        shapes = "".join(f"; {name} {opened[name]} there, {value} here" for name, value in own_shape.items())
        raise InputError(f"the {peer}'s half of the model is not from the {trained_by.command} run this "
                         f"{party.role}'s half comes from (model id {opened['model_id']} there, {key} here{shapes}): "
                         "give each party its own half of the same run")
    return opened


def once(done, step, what):
    """Refuse a step this party already ran: ``what`` runs once (its key releases once)."""
    if step in done:
        raise ProtocolError(f"{step} asked for again: {what} runs once, refused")
    done.add(step)
