"""The jobs a coordinator can run, by name.

A job is a coordinator function ``run(coordinator, options) -> dict`` that drives one
protocol from start to end and returns a JSON-serialisable summary. The name is what
``--run-config job=...`` selects in a Flower deployment.
"""

import importlib

from ..errors import FedscoreError

JOBS = {
    "horizontal_kmeans": "fedscore.segment_horizontal:run_horizontal_kmeans",
    "horizontal_lr": "fedscore.scoring_horizontal:run_horizontal_lr",
    "lookalike": "fedscore.lookalike:run_lookalike",
    "ping": "fedscore.runtime.diagnostic:run_ping",
    "propensity": "fedscore.propensity:run_propensity",
    "psi": "fedscore.psi:run_psi",
    "segment": "fedscore.segment:run_segment",
}


def resolve_job(name):
    """Import and return the coordinator function of job ``name``."""
    try:
        module_name, func = JOBS[name].split(":")
    except KeyError:
        raise FedscoreError(f"unknown job {name!r} (known: {', '.join(sorted(JOBS))})") from None
    return getattr(importlib.import_module(module_name), func)
