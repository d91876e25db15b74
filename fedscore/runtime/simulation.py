"""Run a job on Flower's simulation runtime, in this process.

The coordinator runs as the ServerApp in a thread of this process and each party as a
ClientApp node on a Ray actor; node *i* plays the *i*-th role of ``party_configs``. The
messages take the same path as in a deployment (encoded into Flower records, through
the Grid), only the SuperLink and SuperNodes are simulated.
"""

import contextlib
import logging
import warnings

from ..errors import FedscoreError
from .flower import RunSettings, make_client_app, make_server_app

CLIENT_RESOURCES = {"num_cpus": 1, "num_gpus": 0.0}
"""One logical CPU per party, and as many logical CPUs as parties for Ray, so every party
gets its own actor and they work concurrently as in a deployment. Flower's default of
2 CPUs per client would run the parties one after another on a 2-core machine."""


def run_simulated(job, options, party_configs, ledger_path, run_id, timeout, checkpoint=""):
    """Run ``job`` with one simulated SuperNode per party; return the job's summary.

    Flower's and Ray's logs are silenced unless the ``fedscore`` logger is at DEBUG
    level (``fedscore --debug``). The job's own error (a party failed, bad input) is
    raised as the :class:`~fedscore.errors.FedscoreError` it is.
    """
    from flwr.simulation import run_simulation  # imports Ray: only when simulating

    roles = tuple(party_configs)
    # Simulated nodes have no keys: each party's role comes from its partition id.
    settings = RunSettings(job=job, options=dict(options), roles=roles, ledger_path=str(ledger_path),
                           run_id=run_id, timeout=timeout, require_node_names=False,
                           checkpoint_path=str(checkpoint or ""))
    summaries = []
    server_app = make_server_app(settings, on_summary=summaries.append)
    client_app = make_client_app([(role, dict(party_configs[role])) for role in roles])
    verbose = logging.getLogger("fedscore").isEnabledFor(logging.DEBUG)
    backend_config = {
        "client_resources": dict(CLIENT_RESOURCES),
        "init_args": {
            "num_cpus": len(roles),
            "logging_level": "INFO" if verbose else "ERROR",
            "log_to_driver": verbose,
        },
    }
    with _quiet(verbose):
        run_simulation(server_app, client_app, num_supernodes=len(roles), backend_config=backend_config,
                       verbose_logging=verbose)
    if not summaries:
        raise FedscoreError(f"the {job!r} job ended without a result (run with --debug for Flower's log)")
    return summaries[0]


@contextlib.contextmanager
def _quiet(verbose):
    """Keep Flower's console logger and Ray's start-up tips out of the user's terminal."""
    if verbose:
        yield
        return
    flwr_logger = logging.getLogger("flwr")
    level = flwr_logger.level
    flwr_logger.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning, module="ray")
            yield
    finally:
        flwr_logger.setLevel(level)
