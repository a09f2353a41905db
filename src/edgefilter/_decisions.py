"""What the hot path answers: a ``Decision`` and its ``Reason``.

This module sits below the hot path (``_filter``), the rules sources (``_cache``) and the
middleware, so each can name a reason without importing the others.

Three reasons say that no rules could be had for a site right now, each for its own cause,
so that ``EdgeFilter(track_when_unavailable=...)`` can decide each one on its own:

- ``rules_pending``: the API is not known to be down, but the site's first fetch has not
  answered in time (or could not be queued, during a flood of new ids);
- ``rules_unavailable``: the API failed (5xx, timeout, unreachable, malformed answer);
- ``rules_unauthorized``: the API refused the key (401 or 403).

``invalid_payload`` is the middleware's own: a body it could not read as a track payload
with a ``site_id`` (``should_track`` never answers it).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

__all__ = [
    "BOT",
    "EXCLUDED_COUNTRY",
    "EXCLUDED_IP",
    "INVALID_IP",
    "TRACKED",
    "UNAVAILABLE_REASONS",
    "Decision",
    "Reason",
]


class Reason(StrEnum):
    """Why a hit is tracked or dropped."""

    tracked = "tracked"
    excluded_ip = "excluded_ip"
    excluded_country = "excluded_country"
    bot = "bot"
    unknown_site = "unknown_site"
    invalid_ip = "invalid_ip"
    rules_unavailable = "rules_unavailable"
    rules_pending = "rules_pending"
    rules_unauthorized = "rules_unauthorized"
    invalid_payload = "invalid_payload"  # the middleware could not read a track payload


UNAVAILABLE_REASONS: Final = frozenset(
    {Reason.rules_pending, Reason.rules_unavailable, Reason.rules_unauthorized}
)


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer for one hit: whether to track it and why. ``bool(decision)`` is ``tracked``."""

    tracked: bool
    reason: Reason

    def __bool__(self) -> bool:
        return self.tracked


TRACKED: Final = Decision(True, Reason.tracked)
EXCLUDED_IP: Final = Decision(False, Reason.excluded_ip)
EXCLUDED_COUNTRY: Final = Decision(False, Reason.excluded_country)
BOT: Final = Decision(False, Reason.bot)
INVALID_IP: Final = Decision(False, Reason.invalid_ip)
