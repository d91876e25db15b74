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

from ...wire import Message, ciphertext, public
from ..psi.coordinator import intersect_and_load

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
    started = time.perf_counter()
    # 0. PSI on the new tables: both parties learn the matched users in one order.
    # 1. propensity_score.load: each party loads its own half, encodes its rows with its
    # saved encoder, and seals its half's model id to the peer.
    psi, loaded = intersect_and_load(coordinator, options, "propensity_score.load", "propensity scoring")

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
