"""Numbers of seconds as options take them: one reading for every component.

A duration option is an ``int`` or a ``float`` (never a ``bool``, which Python counts as an
``int``), not NaN, not infinite, and above 0 (or at 0, where the option allows it). Each
component raises its own ``ConfigError`` naming the option when ``as_seconds`` answers None.
"""

from __future__ import annotations

import math


def as_seconds(value: object, *, zero: bool = False) -> float | None:
    """``value`` as seconds, or None when it is no finite number above 0 (at or above 0
    when ``zero``)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    try:
        seconds = float(value)
    except OverflowError:  # an int past float's range
        return None
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not zero):
        return None
    return seconds
