"""Vertical segmentation, the coordinator's side: ``protocols/segment_vertical.md``, in time order.

After private set intersection (both parties learn the aligned overlap), each party
keeps its own slice of every centroid (its own columns). The squared distance of user
``i`` to centroid ``j`` is the sum of the two partial distances, ``d_ij = b_ij + m_ij``.
One assignment round runs between a *key owner* and a *masker*, who swap every round
(:mod:`fedscore.protocols.segment.party`). The coordinator relays ciphertexts and sealed
payloads; it hears a size, a public parameter or the one control value ``stop``, never
an inertia, a shift, a distance or a segment.
"""

import time

import numpy as np

from ...errors import InputError, ProtocolError
from ...wire import Message, ciphertext, public
from ..psi.coordinator import intersect
from ..psi.options import PSIOptions

BRAND, MEDIA = "brand", "media"
PEER = {BRAND: MEDIA, MEDIA: BRAND}


def run(coordinator, options):
    """The ``segment`` job: PSI, then private Lloyd iterations, then profiles.

    Parameters
    ----------
    coordinator : fedscore.runtime.coordinator.Coordinator
    options : fedscore.protocols.segment.options.SegmentOptions

    Returns
    -------
    dict
        Public summary: sizes, rounds, how the parties stopped, timings. No inertia,
        shift or segment: those stay with the parties.
    """
    missing = {BRAND, MEDIA} - set(coordinator.roles)
    if missing:
        raise ProtocolError(f"segmentation needs a brand and a media party (missing: {', '.join(sorted(missing))})")
    started = time.perf_counter()

    # 1. PSI: both parties learn the shared users in one order, and their sealed channel opens.
    psi_summary = intersect(coordinator, PSIOptions.from_dict({
        "id_column": options.id_column, "mode": "both", "id_kind": options.id_kind,
        "min_intersection": options.min_intersection}))

    # 2. segment.setup: each party encodes its features on the shared rows and makes its CKKS key.
    setup = coordinator.exchange({role: ("segment.setup", Message(options=public(options.to_dict())))
                                  for role in (BRAND, MEDIA)})
    if setup[BRAND]["rows"] != setup[MEDIA]["rows"]:
        raise ProtocolError(f"parties disagree on the overlap size ({setup[BRAND]['rows']} vs {setup[MEDIA]['rows']})")
    n = setup[BRAND]["rows"]
    if options.k > n:
        raise InputError(f"k = {options.k} segments asked for but only {n} users are in both files")

    # 3. segment.keys: the peer's public context and the initial users of every restart.
    seed = coordinator.random_seed if options.random_state is None else options.random_state
    rng = np.random.default_rng(seed)
    init_rows = np.stack([rng.choice(n, size=options.k, replace=False) for _ in range(options.n_init)])
    coordinator.exchange({role: ("segment.keys", Message(he_context=public(setup[PEER[role]]["he_context"]),
                                                         init_rows=public(init_rows)))
                          for role in (BRAND, MEDIA)})

    # 4. Rounds. Round r: the owner encrypts its partial distances to the centroids of
    # round r, the masker adds its own and masks, the owner finds each row's masked argmin,
    # the masker unmasks it, moves its slice and opens round r + 1 as owner. Both parties
    # decide alike, from each other's sealed stats, which restarts go on; the masker says
    # ``stop`` when none does.
    owner, masker = MEDIA, BRAND
    reply = coordinator.call(owner, "segment.encrypt_distances", Message())
    rounds, round_times = 0, []
    while True:
        t0 = time.perf_counter()
        rounds += 1
        coordinator.advance("round", rounds, options.max_iter + 1)
        fields = {"distances": ciphertext(reply["distances"]), "stats": ciphertext(reply["stats"])}
        if "labels" in reply:
            fields["labels"] = ciphertext(reply["labels"])
        masked = coordinator.call(masker, "segment.mask_distances", Message(**fields))
        if "stop" in masked:
            round_times.append(time.perf_counter() - t0)
            break
        if rounds > options.max_iter + 1:  # round r computes update r - 1; the parties stop after update max_iter + 1
            raise ProtocolError(f"the parties did not stop within max_iter = {options.max_iter} iterations")
        positions = coordinator.call(owner, "segment.argmin", Message(
            distances=ciphertext(masked["distances"]), stats=ciphertext(masked["stats"])))
        reply = coordinator.call(masker, "segment.encrypt_distances", Message(
            positions=ciphertext(positions["positions"])))
        owner, masker = masker, owner
        round_times.append(time.perf_counter() - t0)

    # 5. segment.profile: the last owner first applies the masker's final stats.
    profiles = coordinator.exchange({
        masker: ("segment.profile", Message()),
        owner: ("segment.profile", Message(stats=ciphertext(masked["stats"]))),
    })

    # 6. segment.write_profiles: each party's released profile, sealed, to its peer.
    coordinator.exchange({role: ("segment.write_profiles", Message(profile=ciphertext(profiles[PEER[role]]["profile"])))
                          for role in (BRAND, MEDIA)})
    return {
        "job": "segment",
        "psi": psi_summary,
        "rows": n,
        "k": options.k,
        "features": {role: setup[role]["features"] for role in (BRAND, MEDIA)},
        "n_init": options.n_init,
        "restart_iter": options.restart_iter,
        "rounds": rounds,
        "n_iter": rounds - 1,  # Lloyd iterations run (the longest restart's)
        "converged": masked["stop"] == "converged",
        "released_segments": profiles[BRAND]["released"],
        "seconds": round(time.perf_counter() - started, 3),
        "seconds_per_iteration": round(float(np.mean(round_times)), 3),
    }
