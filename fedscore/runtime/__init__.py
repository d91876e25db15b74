"""Run a protocol: the coordinator drives steps, parties answer them, a transport carries them.

A protocol is written once, as a coordinator function that calls party steps
(``coordinator.call("media", "psi.blind_own", msg)``) and party step functions listed in
:data:`fedscore.protocols.STEPS`. The same code runs over the in-process transport
(:class:`~fedscore.runtime.local.LocalTransport`, for tests and single-machine runs)
and over Flower's Message API (simulation or a real SuperLink with SuperNodes).
"""
