"""The compiled reader for the test modules that test it alone, or their skip.

``EDGEFILTER_REQUIRE_COMPILED=1`` (``make test``'s compiled run) makes a missing module an
import error; ``EDGEFILTER_PURE=1`` skips the calling module; else the module is skipped
when the reader is not built.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest


def speedups_or_skip() -> ModuleType:
    """``edgefilter._speedups``, or a skip of the whole calling module (see above)."""
    if os.environ.get("EDGEFILTER_REQUIRE_COMPILED") == "1":
        return importlib.import_module("edgefilter._speedups")
    if os.environ.get("EDGEFILTER_PURE") == "1":
        pytest.skip(
            "the compiled reader is turned off (EDGEFILTER_PURE=1)", allow_module_level=True
        )
    return pytest.importorskip("edgefilter._speedups", reason="the compiled reader is not built")
