"""Scoring with a trained joint propensity model, the coordinator's side, in time order.

``protocols/propensity.md``, *Scoring with a trained model*. After private set
intersection on the new tables, each party encodes its rows with the encoder of its own
half of the model and the two run the private ranking of training (its steps 8 to 11)
over every matched user: the media encrypts its partial logits under a fresh Paillier
key; the brand adds its own, masks and shuffles; the media ranks; the brand calibrates
and writes one ranking of its whole table. The coordinator relays ciphertexts and
sealed payloads; it hears sizes and a public key, never a model, a logit or a rank.
"""

import time

from ...errors import ProtocolError
from ...wire import Message, ciphertext, public
from ..psi.coordinator import intersect
from ..psi.options import PSIOptions

BRAND, MEDIA = "brand", "media"


def run(coordinator, options):
    """The ``propensity_score`` job: PSI, then the private ranking with the saved model halves.

    Parameters
    ----------
    coordinator : fedscore.runtime.coordinator.Coordinator
    options : fedscore.protocols.propensity_score.options.PropensityScoreOptions

    Returns
    -------
    dict
        Public summary: sizes and timings. No score, rank, model or logit.
    """
    missing = {BRAND, MEDIA} - set(coordinator.roles)
    if missing:
        raise ProtocolError(f"propensity scoring needs a brand and a media party (missing: "
                            f"{', '.join(sorted(missing))})")
    started = time.perf_counter()

    # 0. PSI on the new tables: both parties learn the matched users in one order.
    psi = intersect(coordinator, PSIOptions.from_dict({
        "id_column": options.id_column, "mode": "both", "id_kind": options.id_kind,
        "min_intersection": options.min_intersection}))

    # 1. propensity_score.load: each party loads its own half, encodes its rows with its
    # saved encoder, and seals its half's model id to the peer.
    loaded = coordinator.exchange({role: ("propensity_score.load", Message(options=public(options.to_dict())))
                                   for role in (BRAND, MEDIA)})
    if loaded[BRAND]["rows"] != loaded[MEDIA]["rows"]:
        raise ProtocolError(f"parties disagree on the overlap size ({loaded[BRAND]['rows']} vs "
                            f"{loaded[MEDIA]['rows']})")

    # 2. propensity_score.rank_encrypt (media): checks the brand's model id, encrypts each z_m.
    encrypted = coordinator.call(MEDIA, "propensity_score.rank_encrypt",
                                 Message(model=ciphertext(loaded[BRAND]["model"])))

    # 3. propensity_score.rank_mask (brand): checks the media's model id, adds z_b, masks, shuffles.
    masked = coordinator.call(BRAND, "propensity_score.rank_mask", Message(
        model=ciphertext(loaded[MEDIA]["model"]), public_context=public(encrypted["public_context"]),
        media_logits=ciphertext(encrypted["media_logits"])))

    # 4. propensity_score.rank_reveal (media): ranks; 5. propensity_score.finish (brand): one ranking.
    revealed = coordinator.call(MEDIA, "propensity_score.rank_reveal", Message(scores=ciphertext(masked["scores"])))
    coordinator.call(BRAND, "propensity_score.finish", Message(ranks=ciphertext(revealed["ranks"])))
    return {
        "job": "propensity_score",
        "psi": psi,
        "ranked_users": masked["rows"],
        "features": {role: loaded[role]["features"] for role in (BRAND, MEDIA)},
        "counts": "ranked_users: the matched users the private ranking ordered (every one of them); the brand's "
                  "report.json says how many it scored in all",
        "seconds": round(time.perf_counter() - started, 3),
    }
