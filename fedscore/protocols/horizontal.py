"""What the horizontal protocols share: ciphertexts added by the coordinator, what a party checks of them.

In horizontal KMeans and horizontal logistic regression, every party encrypts a vector
of its own, the coordinator adds the ciphertexts under the public context it holds (its
only computation), and every party decrypts the sum. With two contributors the sum
minus one's own share is the other's share: encryption hides nothing between them.

A party decides for itself what it takes part in:

- its privacy options (the ones a job's options schema lists in ``own``: what sizes its
  noise, counts its releases or limits what it releases) come from its own
  configuration, or are the schema's defaults, never the coordinator's; a coordinator
  asking for other values stops the run (:func:`own_options`);
- every vector it encrypts ends with a 1, so every aggregate it decrypts says how many
  parties' vectors were added, which it checks against its own rule
  (:func:`decrypt_aggregate`), after checking, before decrypting, that the aggregate
  holds the values it expects, made by additions only.
"""

import dataclasses
import math

from ..errors import ProtocolError

NOT_SET = "none"
"""How a party's configuration says that an option of its own has no value (DP off, a
threshold left to its default rule): configuration files such as Flower's node config
have no null."""

CONTRIBUTOR = 1.0
"""The last value of every vector a party encrypts: the aggregate's last value counts the
vectors added (exact: a sum of a few small integers is far inside the CKKS precision)."""

COUNT_TOLERANCE = 0.01
"""How far a decrypted contributor count may lie from a whole number: the CKKS error on a
sum of tens of ciphertexts at scale 2^40 is about 1e-9 (measured), so anything farther is
not a count."""


MIN_PARTIES_WITHOUT_DP = 3
"""Below three contributors a party can subtract its own share from the sum and read the
other's: HE aggregation hides nothing between two parties."""


class PrivacyWarning(UserWarning):
    """A run configuration that gives a party less privacy than it may expect."""


def add_ciphertexts(context, blobs):
    """Add the parties' encrypted vectors under ``context`` (checks key and integrity); return the sum's bytes."""
    vectors = [context.load_vector(b) for b in blobs]
    total = vectors[0]
    for vector in vectors[1:]:
        total = total + vector
    return total.to_bytes()


# --- a party's own options ----------------------------------------------------------------------

def own_options(schema, sent, config):
    """The run's options as this party takes part in it: the coordinator's, if they agree with its own.

    Parameters
    ----------
    schema : type
        The job's options schema; ``schema.own`` names the options that are each party's.
    sent : dict
        The options the coordinator sent.
    config : dict
        The party's own configuration: a value for an option of ``schema.own`` under the
        option's name (``"none"`` for no value), else the schema's default is its own.

    Returns
    -------
    Options

    Raises
    ------
    ProtocolError
        Naming every option whose coordinator's value differs from the party's own.
    InputError
        If the party's own value is not a valid value of the option.
    """
    options = schema.from_dict(sent)
    defaults = {f.name: f.default for f in dataclasses.fields(schema)}
    mine = {}
    for name in schema.own:
        value = config.get(name, defaults[name])
        mine[name] = None if isinstance(value, str) and value.strip().lower() in (NOT_SET, "") else value
    own = options.replace(**mine)
    differ = [name for name in schema.own if getattr(options, name) != getattr(own, name)]
    if differ:
        detail = "; ".join(f"{name}: the coordinator's {getattr(options, name)!r}, this party's "
                           f"{getattr(own, name)!r}{'' if name in config else ' (the default)'}" for name in differ)
        raise ProtocolError(f"the coordinator's options differ from this party's own ({detail}): refused. A party's "
                            f"privacy options ({', '.join(schema.own)}) are its own: set them in every party's "
                            "configuration")
    return options


def own_settings(options):
    """Each party's configuration entries pinning ``options``' own options: one user runs every party."""
    return {name: NOT_SET if getattr(options, name) is None else getattr(options, name) for name in options.own}


# --- what a party decrypts ----------------------------------------------------------------------

def decrypt_aggregate(context, blob, size, what, *, parties, least):
    """Decrypt an aggregate of the parties' vectors, for this party's own use, if it is one.

    Parameters
    ----------
    context : fedscore.he.ckks.CKKSContext
        The shared key, secret part included.
    blob : bytes
        The aggregate, as the coordinator sent it.
    size : int
        The values the aggregate must hold, the contributor count included: computed by
        the party from public sizes (its columns, ``k``), never read from the message.
    what : str
        Named in errors.
    parties : int
        How many parties take part in the run.
    least : int
        The fewest contributors this party accepts in this aggregate.

    Returns
    -------
    (numpy.ndarray, int)
        The values without the contributor count, and the count.

    Raises
    ------
    ProtocolError
        Before decrypting, if the aggregate holds another number of values, or went
        through a plaintext multiplication (the protocol only adds); after, if it adds up
        fewer than ``least`` or more than ``parties`` vectors.

    Notes
    -----
    The count detects a coordinator that adds fewer parties' vectors than this party
    accepts, or one party's twice; not a coordinator that forges one (it holds the
    public key and can encrypt a 1). Against that, only differential privacy, which every
    party adds in full to its own share, bounds what an aggregate reveals.
    """
    vector = context.load_vector(blob)
    if vector.size != size:
        raise ProtocolError(f"{what} holds {vector.size} values, not the {size} this party expects: refused")
    if vector.layout != "packed" or vector.depth != 0:
        raise ProtocolError(f"{what} is not a sum of the parties' vectors (layout {vector.layout}, "
                            f"{vector.depth} multiplications): refused")
    values = context.decrypt(vector)
    count = float(values[-1])
    if not (math.isfinite(count) and abs(count - round(count)) <= COUNT_TOLERANCE):
        raise ProtocolError(f"{what} carries no count of the vectors added: refused")
    count = round(count)
    if not least <= count <= parties:
        raise ProtocolError(f"{what} adds up {count} parties' vectors; this party accepts from {least} to "
                            f"{parties}: refused")
    return values[:-1], count
