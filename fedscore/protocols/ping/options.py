"""Options of the ``ping`` job: none."""

from dataclasses import dataclass

from ...kit.options import Options


@dataclass(frozen=True)
class PingOptions(Options):
    """``ping`` takes no option."""

    job = "ping"
