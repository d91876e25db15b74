"""PSI, the coordinator's side: relay blinded sets between the brand and the media.

Diffie-Hellman PSI over the prime-order subgroup of Curve25519 (``protocols/psi.md``).
Each party hashes its normalised IDs onto the curve and raises them to its own secret
scalar; since scalar multiplications commute, an ID blinded by both parties' keys gives
the same point whichever went first, and nothing else about the ID. Comparing the
double-blinded sets finds the common IDs. The coordinator relays blinded points and
sealed payloads; it never holds a key.
"""

from ...errors import ProtocolError
from ...wire import Message, blinded_ids, ciphertext, public
from .options import PSIOptions

BRAND, MEDIA = "brand", "media"


def run(coordinator, options):
    """The ``psi`` job: match IDs and write each party's result files."""
    return intersect(coordinator, options, write_output=True)


def intersect(coordinator, options, *, write_output=False):
    """Run PSI between the brand and the media, as a job or as the first phase of one.

    Parameters
    ----------
    coordinator : fedscore.runtime.coordinator.Coordinator
    options : fedscore.protocols.psi.options.PSIOptions
    write_output : bool
        Write each party's result files into its output folder (the ``psi`` job).

    Returns
    -------
    dict
        ``mode``, each party's ID counts (``rows``, ``unique``, ``empty``,
        ``duplicates``) and, in ``both`` mode only, ``intersection``.

    Notes
    -----
    Three round trips in ``both`` mode, three in ``labelled`` mode (the last to the
    brand alone). Afterwards each party holds its result in ``party.phase("psi")``
    (:mod:`fedscore.protocols.psi.party`), and the parties' sealed channel is open:
    the phases that follow use it without exchanging keys again.
    """
    missing = {BRAND, MEDIA} - set(coordinator.roles)
    if missing:
        raise ProtocolError(f"PSI needs a brand and a media party (missing: {', '.join(sorted(missing))})")
    setup = Message(options=public(options.to_dict()), write_output=public(bool(write_output)))
    own = coordinator.exchange({BRAND: ("psi.blind_own", setup), MEDIA: ("psi.blind_own", setup)})

    peer = {BRAND: MEDIA, MEDIA: BRAND}
    blinded = coordinator.exchange({
        role: ("psi.blind_peer", Message(points=blinded_ids(own[other]["points"]),
                                         channel_key=public(own[other]["channel_key"])))
        for role, other in peer.items()
    })

    summary = {"mode": options.mode}
    for role in (BRAND, MEDIA):
        summary[role] = {k: own[role][k] for k in ("rows", "unique", "empty", "duplicates")}
    if options.mode == "both":
        matched = coordinator.exchange({
            role: ("psi.match", Message(sealed=ciphertext(blinded[other]["sealed"])))
            for role, other in peer.items()
        })
        if matched[BRAND]["matched"] != matched[MEDIA]["matched"]:
            raise ProtocolError(f"the parties found intersections of different sizes "
                                f"({matched[BRAND]['matched']} and {matched[MEDIA]['matched']})")
        summary["intersection"] = matched[BRAND]["matched"]
    else:
        coordinator.call(BRAND, "psi.match", Message(sealed=ciphertext(blinded[MEDIA]["sealed"])))
    return summary


def intersect_and_load(coordinator, options, step, what):
    """PSI on new tables, then ``step`` at both parties: each loads its own half of a trained model.

    The opening of every job that scores with saved halves (``propensity_score``,
    ``segment_assign``): both parties must take part, learn the matched users in one
    order, and report the same number of rows once they have encoded theirs.

    Parameters
    ----------
    coordinator : fedscore.runtime.coordinator.Coordinator
    options : options of the job, with ``id_column``, ``id_kind`` and ``min_intersection``
    step : str
        The load step, sent ``options`` to both parties.
    what : str
        The job's name in words, for the error when a party is missing.

    Returns
    -------
    psi : dict
        PSI's public summary.
    loaded : dict of role to Message
        Each party's reply to ``step``.
    """
    missing = {BRAND, MEDIA} - set(coordinator.roles)
    if missing:
        raise ProtocolError(f"{what} needs a brand and a media party (missing: {', '.join(sorted(missing))})")
    psi = intersect(coordinator, PSIOptions.from_dict({
        "id_column": options.id_column, "mode": "both", "id_kind": options.id_kind,
        "min_intersection": options.min_intersection}))
    loaded = coordinator.exchange({role: (step, Message(options=public(options.to_dict()))) for role in (BRAND, MEDIA)})
    if loaded[BRAND]["rows"] != loaded[MEDIA]["rows"]:
        raise ProtocolError(f"parties disagree on the overlap size ({loaded[BRAND]['rows']} vs "
                            f"{loaded[MEDIA]['rows']})")
    return psi, loaded
