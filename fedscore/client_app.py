"""A party's Flower ClientApp (``[tool.flwr.app.components] clientapp``).

The party's role and local files come from its SuperNode's node config, e.g.
``flower-supernode ... --node-config 'role="brand" data-path="customers.csv" out-dir="out"'``.
"""

from .runtime.flower import make_client_app

app = make_client_app()
