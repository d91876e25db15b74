"""Every protocol fedscore runs, and the table of its jobs and steps.

Each protocol is a package: ``options.py`` (its options schema), ``coordinator.py`` (the
job the coordinator drives) and one module per party (``brand.py`` and ``media.py``, or
``party.py`` where every party runs the same steps), each in the order of its spec in
``protocols/<spec>.md`` at the top of the repository.

The names below are the protocol's names: a job name is what ``--run-config job=...``
selects, a step name is what crosses in a request and what the spec's Transcript table
lists. They map to the code that implements them here and only here, so moving a file
changes this table, never the protocol.
"""

from dataclasses import dataclass

from ..kit.options import ANY_PARTY


@dataclass(frozen=True)
class Job:
    """A job: its coordinator function, options schema and spec."""

    coordinator: str
    """``module:function`` of ``run(coordinator, options) -> summary``."""
    options: str
    """``module:class`` of its :class:`~fedscore.kit.options.Options` schema."""
    spec: str
    """File name of its spec under ``protocols/``."""


_PKG = "fedscore.protocols"

JOBS = {
    "ping": Job(f"{_PKG}.ping.coordinator:run", f"{_PKG}.ping.options:PingOptions", "ping.md"),
    "psi": Job(f"{_PKG}.psi.coordinator:run", f"{_PKG}.psi.options:PSIOptions", "psi.md"),
    "lookalike": Job(f"{_PKG}.lookalike.coordinator:run", f"{_PKG}.lookalike.options:LookalikeOptions",
                     "lookalike.md"),
    "propensity": Job(f"{_PKG}.propensity.coordinator:run", f"{_PKG}.propensity.options:PropensityOptions",
                      "propensity.md"),
    "propensity_score": Job(f"{_PKG}.propensity_score.coordinator:run",
                            f"{_PKG}.propensity_score.options:PropensityScoreOptions", "propensity.md"),
    "segment": Job(f"{_PKG}.segment.coordinator:run", f"{_PKG}.segment.options:SegmentOptions",
                   "segment_vertical.md"),
    "segment_assign": Job(f"{_PKG}.segment_assign.coordinator:run",
                          f"{_PKG}.segment_assign.options:SegmentAssignOptions", "segment_vertical.md"),
    "horizontal_kmeans": Job(f"{_PKG}.horizontal_kmeans.coordinator:run",
                             f"{_PKG}.horizontal_kmeans.options:HorizontalKMeansOptions", "segment_horizontal.md"),
    "horizontal_lr": Job(f"{_PKG}.horizontal_lr.coordinator:run",
                         f"{_PKG}.horizontal_lr.options:HorizontalLROptions", "scoring_horizontal.md"),
}

STEPS = {
    # step name: {role (or ANY_PARTY): "module:function"}
    "ping.ready": {ANY_PARTY: f"{_PKG}.ping.party:ready"},
    "ping.echo": {ANY_PARTY: f"{_PKG}.ping.party:echo"},

    "psi.blind_own": {ANY_PARTY: f"{_PKG}.psi.party:blind_own"},
    "psi.blind_peer": {ANY_PARTY: f"{_PKG}.psi.party:blind_peer"},
    "psi.match": {ANY_PARTY: f"{_PKG}.psi.party:match"},

    "lookalike.encrypt_labels": {"brand": f"{_PKG}.lookalike.brand:encrypt_labels"},
    "lookalike.load_features": {"media": f"{_PKG}.lookalike.media:load_features"},
    "lookalike.label_aggregate": {"media": f"{_PKG}.lookalike.media:label_aggregate"},
    "lookalike.release_aggregate": {"brand": f"{_PKG}.lookalike.brand:release_aggregate"},
    "lookalike.train": {"media": f"{_PKG}.lookalike.media:train"},
    "lookalike.evaluate": {"brand": f"{_PKG}.lookalike.brand:evaluate"},
    "lookalike.select": {"media": f"{_PKG}.lookalike.media:select"},
    "lookalike.release_flags": {"brand": f"{_PKG}.lookalike.brand:release_flags"},
    "lookalike.write_audiences": {"media": f"{_PKG}.lookalike.media:write_audiences"},

    "propensity.load": {"brand": f"{_PKG}.propensity.brand:load", "media": f"{_PKG}.propensity.media:load"},
    "propensity.make_key": {"brand": f"{_PKG}.propensity.brand:make_key",
                            "media": f"{_PKG}.propensity.media:make_key"},
    "propensity.media_logits": {"media": f"{_PKG}.propensity.media:media_logits"},
    "propensity.peer_key": {"brand": f"{_PKG}.propensity.brand:peer_key"},
    "propensity.brand_round": {"brand": f"{_PKG}.propensity.brand:brand_round"},
    "propensity.media_round": {"media": f"{_PKG}.propensity.media:media_round"},
    "propensity.brand_update": {"brand": f"{_PKG}.propensity.brand:brand_update"},
    "propensity.media_update": {"media": f"{_PKG}.propensity.media:media_update"},
    "propensity.rank_encrypt": {"media": f"{_PKG}.propensity.media:rank_encrypt"},
    "propensity.rank_mask": {"brand": f"{_PKG}.propensity.brand:rank_mask"},
    "propensity.rank_reveal": {"media": f"{_PKG}.propensity.media:rank_reveal"},
    "propensity.finish": {"brand": f"{_PKG}.propensity.brand:finish"},

    "propensity_score.load": {"brand": f"{_PKG}.propensity_score.brand:load",
                              "media": f"{_PKG}.propensity_score.media:load"},
    "propensity_score.rank_encrypt": {"media": f"{_PKG}.propensity_score.media:rank_encrypt"},
    "propensity_score.rank_mask": {"brand": f"{_PKG}.propensity_score.brand:rank_mask"},
    "propensity_score.rank_reveal": {"media": f"{_PKG}.propensity_score.media:rank_reveal"},
    "propensity_score.finish": {"brand": f"{_PKG}.propensity_score.brand:finish"},

    "segment.setup": {ANY_PARTY: f"{_PKG}.segment.party:setup"},
    "segment.keys": {ANY_PARTY: f"{_PKG}.segment.party:keys"},
    "segment.encrypt_distances": {ANY_PARTY: f"{_PKG}.segment.party:encrypt_distances"},
    "segment.mask_distances": {ANY_PARTY: f"{_PKG}.segment.party:mask_distances"},
    "segment.argmin": {ANY_PARTY: f"{_PKG}.segment.party:argmin"},
    "segment.profile": {ANY_PARTY: f"{_PKG}.segment.party:profile"},
    "segment.write_profiles": {ANY_PARTY: f"{_PKG}.segment.party:write_profiles"},

    "segment_assign.setup": {ANY_PARTY: f"{_PKG}.segment_assign.party:setup"},
    "segment_assign.encrypt_distances": {ANY_PARTY: f"{_PKG}.segment_assign.party:encrypt_distances"},
    "segment_assign.mask_distances": {ANY_PARTY: f"{_PKG}.segment_assign.party:mask_distances"},
    "segment_assign.argmin": {ANY_PARTY: f"{_PKG}.segment_assign.party:argmin"},
    "segment_assign.unmask": {ANY_PARTY: f"{_PKG}.segment_assign.party:unmask"},
    "segment_assign.write_segments": {ANY_PARTY: f"{_PKG}.segment_assign.party:write_segments"},

    "horizontal_kmeans.setup": {ANY_PARTY: f"{_PKG}.horizontal_kmeans.party:setup"},
    "horizontal_kmeans.make_key": {ANY_PARTY: f"{_PKG}.horizontal_kmeans.party:make_key"},
    "horizontal_kmeans.column_stats": {ANY_PARTY: f"{_PKG}.horizontal_kmeans.party:column_stats"},
    "horizontal_kmeans.local_centers": {ANY_PARTY: f"{_PKG}.horizontal_kmeans.party:local_centers"},
    "horizontal_kmeans.cluster_sums": {ANY_PARTY: f"{_PKG}.horizontal_kmeans.party:cluster_sums"},
    "horizontal_kmeans.finish": {ANY_PARTY: f"{_PKG}.horizontal_kmeans.party:finish"},

    "horizontal_lr.describe": {ANY_PARTY: f"{_PKG}.horizontal_lr.party:describe"},
    "horizontal_lr.sum_columns": {ANY_PARTY: f"{_PKG}.horizontal_lr.party:sum_columns"},
    "horizontal_lr.spread_columns": {ANY_PARTY: f"{_PKG}.horizontal_lr.party:spread_columns"},
    "horizontal_lr.train_round": {ANY_PARTY: f"{_PKG}.horizontal_lr.party:train_round"},
    "horizontal_lr.finish": {ANY_PARTY: f"{_PKG}.horizontal_lr.party:finish"},
}


def _load(target):
    """The object a ``module:name`` entry names (a callable entry is itself: tests add steps so)."""
    import importlib

    if callable(target):
        return target
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


def job(name):
    """The :class:`Job` named ``name``; unknown names are an error naming the known ones."""
    from ..errors import FedscoreError

    try:
        return JOBS[name]
    except KeyError:
        raise FedscoreError(f"unknown job {name!r} (known: {', '.join(sorted(JOBS))})") from None


def coordinator_of(name):
    """The coordinator function of job ``name``."""
    return _load(job(name).coordinator)


def options_of(name):
    """The options schema of job ``name``."""
    return _load(job(name).options)


def step_of(name, role):
    """The function that runs step ``name`` at a party playing ``role``.

    Raises
    ------
    ProtocolError
        For a step this table does not list, or one the role does not run.
    """
    from ..errors import ProtocolError

    try:
        targets = STEPS[name]
    except (KeyError, TypeError):
        raise ProtocolError(f"unknown step {name!r}") from None
    target = targets.get(role, targets.get(ANY_PARTY))
    if target is None:
        raise ProtocolError(f"step {name!r} is not one the {role} runs (it runs at: {', '.join(targets)})")
    return _load(target)


def drive(coordinator, name, options):
    """Run job ``name`` as ``coordinator``: validate ``options`` with the job's schema, then drive it.

    Parameters
    ----------
    coordinator : fedscore.runtime.coordinator.Coordinator
    name : str
    options : dict or Options
        The job's public options (a dict as a run config carries them, or the schema's instance).

    Returns
    -------
    dict
        The job's public summary.
    """
    schema = options_of(name)
    if not isinstance(options, schema):
        options = schema.from_dict(options)
    return coordinator_of(name)(coordinator, options)
