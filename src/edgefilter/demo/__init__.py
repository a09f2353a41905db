"""The demos ``edgefilter demo`` runs: offline (in-process) and live (servers on loopback).

The live demo needs the ``demo`` extra (the server's and the client's stacks).
"""

from ._offline import run_offline_demo

__all__ = ["run_live_demo", "run_offline_demo"]


def run_live_demo(*args: object, **kwargs: object) -> int:
    """``_live.run_live_demo``, imported when called: it loads the server and client stacks."""
    from ._live import run_live_demo as run  # noqa: PLC0415

    return run(*args, **kwargs)  # type: ignore[arg-type]
