"""The ``ping`` job: check that a run's parties are reachable, who they say they are, and ready."""
