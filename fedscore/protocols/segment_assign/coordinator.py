"""Assigning new users to a trained vertical segmentation, the coordinator's side, in time order.

``protocols/segment_vertical.md``, *Assigning new users with a trained model*. After
private set intersection on the new tables, each party encodes its shared rows with the
encoder of its own half of the model and the two run one round of the training's
private assignment (:mod:`fedscore.protocols.segment_assign.party`): the media, key
owner, encrypts its partial distances; the brand, masker, adds its own and masks; the
media finds each row's masked argmin; the brand unmasks it and seals the segments to the
media. The coordinator relays ciphertexts and sealed payloads; it hears sizes and a
public context, never a model, a distance or a segment.
"""

import time

from ...wire import Message, ciphertext, public
from ..psi.coordinator import intersect_and_load

BRAND, MEDIA = "brand", "media"
PEER = {BRAND: MEDIA, MEDIA: BRAND}
OWNER, MASKER = MEDIA, BRAND
"""The key owner and the masker of the one round: as in round 1 of training."""


def run(coordinator, options):
    """The ``segment_assign`` job: PSI, then one private assignment round with the saved model halves.

    Parameters
    ----------
    coordinator : fedscore.runtime.coordinator.Coordinator
    options : fedscore.protocols.segment_assign.options.SegmentAssignOptions

    Returns
    -------
    dict
        Public summary: sizes and timings. No segment, model or distance.
    """
    started = time.perf_counter()
    # 1. PSI on the new tables: both parties learn the shared users in one order.
    # 2. segment_assign.setup: each party loads its own half, encodes its shared rows with
    # its saved encoder, and seals its half's model id to the peer.
    psi_summary, setup = intersect_and_load(coordinator, options, "segment_assign.setup", "segment assignment")

    # 3. segment_assign.encrypt_distances (owner): checks the masker's model id, encrypts
    # its partial distances to its slice of the centroids under a fresh key.
    encrypted = coordinator.call(OWNER, "segment_assign.encrypt_distances",
                                 Message(model=ciphertext(setup[MASKER]["model"])))

    # 4. segment_assign.mask_distances (masker): checks the owner's model id, adds its own
    # partial distances, scales, offsets and permutes every row.
    masked = coordinator.call(MASKER, "segment_assign.mask_distances", Message(
        model=ciphertext(setup[OWNER]["model"]), he_context=public(encrypted["he_context"]),
        distances=ciphertext(encrypted["distances"])))

    # 5. segment_assign.argmin (owner): decrypts the masked rows, seals each row's argmin position.
    positions = coordinator.call(OWNER, "segment_assign.argmin", Message(distances=ciphertext(masked["distances"])))

    # 6. segment_assign.unmask (masker): reads the segments through its permutations, writes
    # them, seals them to the owner; 7. segment_assign.write_segments (owner) writes them.
    unmasked = coordinator.call(MASKER, "segment_assign.unmask", Message(positions=ciphertext(positions["positions"])))
    coordinator.call(OWNER, "segment_assign.write_segments", Message(segments=ciphertext(unmasked["segments"])))
    return {
        "job": "segment_assign",
        "psi": psi_summary,
        "rows": setup[BRAND]["rows"],
        "k": len(encrypted["distances"]),
        "features": {role: setup[role]["features"] for role in (BRAND, MEDIA)},
        "seconds": round(time.perf_counter() - started, 3),
    }
