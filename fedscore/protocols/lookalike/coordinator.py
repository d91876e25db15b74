"""Hidden-seed lookalike, the coordinator's side: ``protocols/lookalike.md``, in time order.

The brand holds a seed list; the media holds behavioural features for its whole
audience. The media ends with a model and scores for its audience, the brand with an
aggregate report. The media never learns which of its users are seed members (except,
with ``exclude_seed``, the membership of each of its top ``largest audience + seed list
size`` users by score); the brand never sees a media feature, a score of a user, or the
model. The coordinator relays ciphertexts and sealed payloads and holds no key.

Positive-unlabelled learning: the model is the "non-traditional" classifier of seed
members against everyone else in the audience (Elkan & Noto, KDD 2008). Under their
selected-completely-at-random assumption it ranks users exactly as the probability of
being like the seed does, which is all an audience selection needs; the class prior
is estimated from held-out scores and reported.
"""

from ...wire import Message, ciphertext, public, size
from ..psi.coordinator import intersect
from ..psi.options import PSIOptions

BRAND, MEDIA = "brand", "media"


def run(coordinator, options):
    """The ``lookalike`` job: PSI, one masked label aggregate, local training, private evaluation.

    ``options`` is a :class:`~fedscore.protocols.lookalike.options.LookalikeOptions`. Returns
    the public summary (sizes, parameters, epsilon); the report with the model's quality
    is the brand's (``brand/report.json``) and never passes through the coordinator.
    """
    # 0. PSI, labelled mode: the brand learns which media rows are seed members; the media, the list's size.
    psi = intersect(coordinator, PSIOptions.from_dict({
        "mode": "labelled", "id_column": options.id_column, "id_kind": options.id_kind,
        "min_intersection": options.min_seed, "minimum_named": "min_seed"}))

    # 1. The brand encrypts the flags; the media encodes its features and splits off held-out rows.
    #    Each gets the options it needs: the media's random state (its held-out split) stays the media's.
    loaded = coordinator.exchange({
        BRAND: ("lookalike.encrypt_labels", Message(options=public(options.replace(random_state=None).to_dict()))),
        MEDIA: ("lookalike.load_features", Message(options=public(options.to_dict())))})
    labels = loaded[BRAND]

    # 2. The media's masked label aggregate over its training rows.
    request = {"public_context": public(labels["public_context"]), "labels": ciphertext(labels["labels"])}
    if options.exclude_seed:
        request.update(flag_context=public(labels["flag_context"]), flags=ciphertext(labels["flags"]))
    aggregate = coordinator.call(MEDIA, "lookalike.label_aggregate", Message(**request))

    # 3. The brand releases it to the media, sealed (with label-DP noise if asked).
    released = coordinator.call(BRAND, "lookalike.release_aggregate", Message(
        aggregate=ciphertext(aggregate["aggregate"]), features=size(loaded[MEDIA]["features"])))

    # 4. The media trains each L2 candidate and aggregates its held-out results under encryption.
    trained = coordinator.call(MEDIA, "lookalike.train", Message(aggregate=ciphertext(released["aggregate"])))

    # 5. The brand measures each candidate on the held-out rows and picks one, sealed for the media.
    evaluated = coordinator.call(BRAND, "lookalike.evaluate", Message(holdout=ciphertext(trained["holdout"])))

    # 6. The media scores its audience; with seed exclusion it asks for the flags of its top users.
    selected = coordinator.call(MEDIA, "lookalike.select", Message(choice=ciphertext(evaluated["choice"])))

    # 7. The brand releases those flags to the media, which writes the audiences without seed members.
    if options.exclude_seed:
        opened = coordinator.call(BRAND, "lookalike.release_flags", Message(flags=ciphertext(selected["flags"])))
        coordinator.call(MEDIA, "lookalike.write_audiences", Message(flags=ciphertext(opened["flags"])))

    epsilon = options.label_dp_epsilon
    return {
        "job": "lookalike",
        "psi": psi,
        "backend": options.backend,
        "audience_sizes": list(options.audience_sizes),
        "exclude_seed": options.exclude_seed,
        "label_dp": None if epsilon is None else {"epsilon": epsilon, "delta": options.label_dp_delta, "releases": 1},
        "candidates": len(options.candidates),
    }
