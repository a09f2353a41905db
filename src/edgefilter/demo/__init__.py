"""The demos ``edgefilter demo`` runs: offline (in-process) and live (servers on loopback).

The live demo needs the ``demo`` extra (the server's and the client's stacks). The sample
data ships inside the package, so both demos run from an installed wheel in any directory:
``DEMO_DATA`` is the folder of ``sites.json``, ``traffic.tsv`` and ``e2e-traffic.tsv``, and
``TEST_GEOIP`` and ``TEST_ASN`` are MaxMind's small synthetic GeoLite2 City and ASN test
databases (Apache-2.0 or MIT, (c) MaxMind; not real data).
"""

from importlib.resources import files
from pathlib import Path
from typing import Final

from ._offline import run_offline_demo

__all__ = ["DEMO_DATA", "TEST_ASN", "TEST_GEOIP", "run_live_demo", "run_offline_demo"]


def _packaged(name: str) -> Path:
    """A file or folder of ``edgefilter/demo/data`` as a path (installs are unpacked)."""
    return Path(str(files(__name__).joinpath("data", name)))


DEMO_DATA: Final = _packaged("")
TEST_GEOIP: Final = _packaged("GeoLite2-City-Test.mmdb")
TEST_ASN: Final = _packaged("GeoLite2-ASN-Test.mmdb")


def run_live_demo(*args: object, **kwargs: object) -> int:
    """``_live.run_live_demo``, imported when called: it loads the server and client stacks."""
    from ._live import run_live_demo as run  # noqa: PLC0415

    return run(*args, **kwargs)  # type: ignore[arg-type]
