"""The library API: one function per command, each running every party on this machine.

``fedscore.<command>(...)`` takes the same options as ``fedscore <command>`` on the
command line (one schema per job, :mod:`fedscore.kit.options`), runs the protocol with
each party's table, writes the run's folder and returns what each party wrote, read
back. Across organisations each party runs its own Flower node instead (see README).
"""

from ._run import ENGINE, run

__all__ = ["ENGINE", "run"]
