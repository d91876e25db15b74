"""Joint propensity, the coordinator's side: ``protocols/propensity.md``, in time order.

The coordinator holds no key. It relays public keys, ciphertexts and sealed payloads
between the brand and the media, and decides from control flags alone when training
ends. Every call below is one row of the spec's message flow.
"""

from ...wire import Message, ciphertext, control, public, size
from ..psi.coordinator import intersect
from ..psi.options import PSIOptions

BRAND, MEDIA = "brand", "media"


def run(coordinator, options):
    """The ``propensity`` job. Returns the public summary; the report is the brand's.

    Parameters
    ----------
    coordinator : fedscore.runtime.coordinator.Coordinator
    options : fedscore.protocols.propensity.options.PropensityOptions
    """
    psi = intersect(coordinator, PSIOptions.from_dict({
        "id_column": options.id_column, "mode": "both", "id_kind": options.id_kind,
        "min_intersection": options.min_intersection}))
    logits = setup(coordinator, options)
    for epoch in range(options.epochs):
        coordinator.advance("epoch", epoch + 1, options.epochs)
        logits, state = train_epoch(coordinator, logits, last_allowed=epoch == options.epochs - 1,
                                    media_converged="converged" in logits and bool(logits["converged"]))
        if state["last"]:
            break
    ranked = rank(coordinator, state["best_epoch"])
    label_dp = None
    if options.label_dp_epsilon is not None:
        label_dp = {"epsilon": options.label_dp_epsilon, "delta": options.label_dp_delta, "releases": 1}
    return {"job": "propensity", "psi": psi, "backend": options.backend, "epochs_run": epoch + 1,
            "epochs": options.epochs, "best_epoch": state["best_epoch"], "stopped_early": state["stop"],
            "exact_scores": options.exact_scores, "ranked_users": ranked, "label_dp": label_dp,
            "counts": "ranked_users: the matched users the private ranking ordered (validation users and users "
                      "to score); the brand's report.json says how many it scored in all"}


def setup(coordinator, options):
    """Steps 1-3: load and encode both tables, make both key pairs, cross the public keys.

    Returns the media's first epoch message (``[[u]]``, ``[[u²]]``, sealed quantiles; with
    label DP also its masked part of the label aggregate, computed on the brand's
    ``[[w ⊙ y]]``).
    """
    # The brand's random state (its validation split) stays the brand's: the media gets the options without it.
    loaded = coordinator.exchange({
        BRAND: ("propensity.load", Message(options=public(options.to_dict()))),
        MEDIA: ("propensity.load", Message(options=public(options.replace(random_state=None).to_dict())))})
    keys = coordinator.exchange({
        BRAND: ("propensity.make_key", Message(
            peer_features=size(loaded[MEDIA]["features"]), peer_table_rows=size(loaded[MEDIA]["table_rows"]))),
        MEDIA: ("propensity.make_key", Message(
            peer_features=size(loaded[BRAND]["features"]), peer_table_rows=size(loaded[BRAND]["table_rows"]),
            training_rows=size(loaded[BRAND]["training_rows"]))),
    })
    labels = {"labels": ciphertext(keys[BRAND]["labels"])} if "labels" in keys[BRAND] else {}
    first = coordinator.exchange({
        MEDIA: ("propensity.media_logits", Message(public_context=public(keys[BRAND]["public_context"]), **labels)),
        BRAND: ("propensity.peer_key", Message(public_context=public(keys[MEDIA]["public_context"]))),
    })
    return first[MEDIA]


def train_epoch(coordinator, logits, *, last_allowed=False, media_converged=False):
    """Steps 4-7: one full-batch epoch, four calls, each party's block stepped once.

    Parameters
    ----------
    logits : Message
        The media's message that opens the epoch (from ``setup`` or the last epoch).
    last_allowed : bool
        This is the last epoch the options allow.
    media_converged : bool
        The media's step of the previous epoch was below the convergence tolerance.

    Returns
    -------
    logits : Message
        The media's reply to ``propensity.media_update``: the next epoch's opening
        message unless this epoch was the last.
    state : dict
        ``last`` (training ends with this epoch), ``stop`` (the brand's early stopping
        ended it) and ``best_epoch`` (the epoch whose weights are kept).

    Notes
    -----
    Training ends at the epoch limit, when the brand's early stopping says so, or when
    the brand's step of this epoch and the media's step of the previous one were both
    tiny. The coordinator tells the media before its step (``last``), so the media starts
    no epoch that will not run: every payload it seals for the brand is opened.
    """
    label_term = {"label_term": ciphertext(logits["label_term"])} if "label_term" in logits else {}
    brand = coordinator.call(BRAND, "propensity.brand_round", Message(
        media_logit=ciphertext(logits["media_logit"]), media_logit_squared=ciphertext(logits["media_logit_squared"]),
        quantiles=ciphertext(logits["quantiles"]), **label_term))
    label_term = {"label_term": ciphertext(brand["label_term"])} if "label_term" in brand else {}
    media = coordinator.call(MEDIA, "propensity.media_round", Message(
        coefficients=ciphertext(brand["coefficients"]), brand_gradient=ciphertext(brand["gradient"]), **label_term))
    update = coordinator.call(BRAND, "propensity.brand_update", Message(
        brand_gradient=ciphertext(media["brand_gradient"]), media_gradient=ciphertext(media["media_gradient"])))
    stop = bool(update["stop"])
    last = last_allowed or stop or (bool(update["converged"]) and media_converged)
    logits = coordinator.call(MEDIA, "propensity.media_update", Message(
        media_gradient=ciphertext(update["media_gradient"]), last=control(last)))
    return logits, {"last": last, "stop": stop, "best_epoch": int(update["best_epoch"])}


def rank(coordinator, best_epoch):
    """Steps 8-11: the private ranking with the kept weights; returns how many users were ranked."""
    encrypted = coordinator.call(MEDIA, "propensity.rank_encrypt", Message(best_epoch=control(best_epoch)))
    masked = coordinator.call(BRAND, "propensity.rank_mask", Message(
        public_context=public(encrypted["public_context"]), media_logits=ciphertext(encrypted["media_logits"])))
    revealed = coordinator.call(MEDIA, "propensity.rank_reveal", Message(scores=ciphertext(masked["scores"])))
    coordinator.call(BRAND, "propensity.finish", Message(ranks=ciphertext(revealed["ranks"])))
    return masked["rows"]
