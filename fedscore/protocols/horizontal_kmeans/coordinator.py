"""Horizontal segmentation, the coordinator's side: ``protocols/segment_horizontal.md``, in time order.

Every party holds different users described by the same numeric columns. They share one
CKKS key that the coordinator does not hold: the *leader* (the first party in the
coordinator's role order) makes it and seals the secret key to each other party on its
sealed channel, relayed unread here. From then on every round is the same: each party
encrypts a vector of statistics of its own rows, the coordinator adds the ciphertexts
(its only computation) and every party decrypts the sum.
"""

import time
import warnings

import numpy as np

from ... import dp
from ...errors import InputError, ProtocolError
from ...he import load_context
from ...wire import Message, ciphertext, control, public
from ..horizontal import PrivacyWarning, add_ciphertexts
from .party import noise_multiplier, releases

TWO_PARTY_WARNING = (
    "only two parties: each can subtract its own share from the aggregate and read the other's "
    "per-cluster sums and counts; use --dp-epsilon to add differential-privacy noise"
)

SEED_RANGE = 2**31
"""The shared seed the coordinator draws when the run has no ``random_state`` (a public parameter)."""


def run(coordinator, options):
    """The ``horizontal_kmeans`` job.

    Parameters
    ----------
    coordinator : fedscore.runtime.coordinator.Coordinator
    options : fedscore.protocols.horizontal_kmeans.options.HorizontalKMeansOptions

    Returns
    -------
    dict
        Public summary: parties, rows per party, iterations, convergence, the DP
        epsilon spent, warnings.
    """
    roles = list(coordinator.roles)
    if len(roles) < 2:
        raise InputError("horizontal segmentation needs at least two parties")
    summary_warnings = []
    if len(roles) == 2:
        warnings.warn(TWO_PARTY_WARNING, PrivacyWarning, stacklevel=2)
        summary_warnings.append(TWO_PARTY_WARNING)
    started = time.perf_counter()
    leader, others = roles[0], roles[1:]

    # 1. setup: the options, the parties, the shared seed and the noise multiplier the summary will
    # report (public; each party checks the options and the multiplier against its own); each
    # party's columns, row count and channel key back.
    seed = options.random_state if options.random_state is not None else coordinator.random_seed % SEED_RANGE
    multiplier = noise_multiplier(options)
    fields = {"options": public(options.to_dict()), "roles": public(roles), "seed": public(int(seed))}
    if options.dp_epsilon is not None:
        fields["noise_multiplier"] = public(multiplier)
    setup = coordinator.exchange({role: ("horizontal_kmeans.setup", Message(**fields)) for role in roles})
    columns = setup[leader]["columns"]
    for role in others:
        if setup[role]["columns"] != columns:
            raise InputError(f"party {role!r} has columns {setup[role]['columns']}, "
                             f"party {leader!r} has {columns}: horizontal parties need the same columns")
    rows = {role: setup[role]["rows"] for role in roles}
    if options.k > sum(rows.values()):
        raise InputError(f"k = {options.k} segments asked for but the parties hold only {sum(rows.values())} users")

    # 2. make_key: the leader makes the shared key and seals its secret part to every other party.
    keys = coordinator.call(leader, "horizontal_kmeans.make_key", Message(
        channel_keys=public([setup[role]["channel_key"] for role in roles])))
    he_public = load_context(keys["he_context"])
    if len(keys["sealed_keys"]) != len(others):
        raise ProtocolError(f"the leader sealed {len(keys['sealed_keys'])} keys for {len(others)} parties")
    sealed = dict(zip(others, keys["sealed_keys"]))

    # 3. column_stats: the others open the key; every party encrypts its column sums.
    leader_key = public(setup[leader]["channel_key"])
    stats = coordinator.exchange({role: ("horizontal_kmeans.column_stats", Message(
        **({} if role == leader else {"sealed_key": ciphertext(sealed[role]), "leader_channel_key": leader_key})))
        for role in roles})
    total = add_ciphertexts(he_public, [stats[role]["stats"] for role in roles])

    # 4. local_centers: standardise with the pooled statistics, propose initial centroids.
    local = coordinator.exchange({role: ("horizontal_kmeans.local_centers", Message(stats=ciphertext(total)))
                                  for role in roles})
    total = add_ciphertexts(he_public, [local[role]["centers"] for role in roles])

    # 5. cluster_sums, repeated: the shared initialisation, then Lloyd's iterations.
    n_iter, converged, phase = 0, False, "init"
    iteration_times = []
    while True:
        t0 = time.perf_counter()
        coordinator.advance("iteration", len(iteration_times) + 1, options.max_iter + 1)
        sums = coordinator.exchange({role: ("horizontal_kmeans.cluster_sums", Message(
            aggregate=ciphertext(total), phase=control(phase))) for role in roles})
        verdicts = {bool(sums[role]["converged"]) for role in roles}
        if len(verdicts) != 1:
            raise ProtocolError("parties disagree on convergence although they decrypted the same aggregate")
        if phase == "iterate":
            n_iter += 1
            converged = verdicts.pop()
        iteration_times.append(time.perf_counter() - t0)
        total = add_ciphertexts(he_public, [sums[role]["sums"] for role in roles])
        if converged or n_iter >= options.max_iter:
            break
        phase = "iterate"

    # 6. finish: the last sums hold the sizes of the final assignment, which the parties write out.
    coordinator.exchange({role: ("horizontal_kmeans.finish", Message(aggregate=ciphertext(total)))
                          for role in roles})

    return {
        "job": "horizontal_kmeans",
        "parties": roles,
        "rows": rows,
        "k": options.k,
        "n_iter": n_iter,
        "converged": converged,
        "dp": None if options.dp_epsilon is None else {
            "epsilon_budget": options.dp_epsilon, "delta": options.dp_delta, "noise_multiplier": multiplier,
            "epsilon_spent": dp.epsilon_spent(multiplier, releases(n_iter), options.dp_delta),
        },
        "warnings": summary_warnings,
        "seconds": round(time.perf_counter() - started, 3),
        "seconds_per_iteration": round(float(np.mean(iteration_times)), 3) if iteration_times else None,
    }
