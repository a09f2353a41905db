"""The public API: ``__all__`` is sorted and names exactly the public members."""

from __future__ import annotations

from types import ModuleType

import edgefilter


def test_all_is_sorted_and_complete() -> None:
    """Every public name is exported, in sorted order, and nothing else."""
    public = sorted(
        name
        for name, value in vars(edgefilter).items()
        if not name.startswith("_") and not isinstance(value, ModuleType)
    )
    assert edgefilter.__all__ == sorted(edgefilter.__all__)
    assert sorted(edgefilter.__all__) == public
