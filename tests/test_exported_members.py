"""The public API: ``__all__`` is sorted and names exactly the public members."""

from __future__ import annotations

import subprocess
import sys
from types import ModuleType

import pytest

import edgefilter


def test_all_is_sorted_and_complete() -> None:
    """Every public name is exported, in sorted order, and nothing else."""
    public = sorted(
        {
            name
            for name, value in vars(edgefilter).items()
            if not name.startswith("_") and not isinstance(value, ModuleType)
        }
        | set(edgefilter._LAZY)
    )
    assert edgefilter.__all__ == sorted(edgefilter.__all__)
    assert sorted(edgefilter.__all__) == public


def test_lazy_names_resolve() -> None:
    """Every name imported on first use is there, and is what its module defines."""
    for name, module in edgefilter._LAZY.items():
        value = getattr(edgefilter, name)
        assert value.__module__ == "edgefilter" + module
    assert set(edgefilter._LAZY) <= set(dir(edgefilter))


@pytest.mark.parametrize(
    "module", ["edgefilter", "edgefilter.middleware"], ids=["core", "middleware"]
)
def test_the_core_loads_no_application_stack(module: str) -> None:
    """Importing the core (or the middleware) loads none of the server's or client's stacks."""
    probe = (
        f"import sys, {module}; "
        "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'sqlalchemy', 'uvicorn', 'starlette', 'httpx', 'cachetools', 'idna', 'psycopg'})))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.split()
    assert loaded == []


def test_a_missing_extra_is_named() -> None:
    """Without the client stack, a live-rules name says which extra to install."""
    probe = (
        "import sys; sys.modules['httpx'] = None; import edgefilter\n"
        "try:\n    edgefilter.SitesApiClient\n"
        "except ImportError as error:\n    print(error)"
    )
    said = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert "pip install 'edgefilter[client]'" in said
