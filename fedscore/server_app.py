"""The coordinator's Flower ServerApp (``[tool.flwr.app.components] serverapp``).

Each run reads its job, options, roles, output paths, run id and timeout from the run
config; see :data:`fedscore.runtime.flower.RUN_CONFIG_DEFAULTS`.
"""

from .runtime.flower import make_server_app

app = make_server_app()
