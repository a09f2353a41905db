"""What the hot path answers: a ``Decision`` and its ``Reason``.

This module sits below the hot path (``_filter``), the rules sources (``_cache``) and the
middleware, so each can name a reason without importing the others.

Three reasons say that no rules could be had for a site right now, each for its own cause,
so that ``EdgeFilter(track_when_unavailable=...)`` can decide each one on its own:

- ``rules_pending``: the API is not known to be down, but the site's first fetch has not
  answered in time (or could not be queued, during a flood of new ids);
- ``rules_unavailable``: the API failed (5xx, timeout, unreachable, malformed answer);
- ``rules_unauthorized``: the API refused the key (401 or 403).

Each exclusion reason has the text Rybbit answers for it in ``EXCLUSION_MESSAGES`` (the
``message`` of its ``200 {"success": true, "message": ...}``), for the middleware and the
proxy to answer with; ``excluded_asn`` is edgefilter's own (Rybbit has no ASN rules).

``foreign_origin`` is the middleware's own too (``check_origin=True``): the hit's ``Origin``
is not the site's domain or one of its subdomains.

``invalid_payload`` is the middleware's own: a body it could not read as a track payload
with a ``site_id`` (``should_track`` never answers it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Final

__all__ = [
    "BOT",
    "EXCLUDED_ASN",
    "EXCLUDED_COUNTRY",
    "EXCLUDED_HOSTNAME",
    "EXCLUDED_IP",
    "EXCLUDED_PATH",
    "EXCLUDED_USER_AGENT",
    "EXCLUSION_MESSAGES",
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
    excluded_asn = "excluded_asn"
    excluded_path = "excluded_path"
    excluded_hostname = "excluded_hostname"
    excluded_user_agent = "excluded_user_agent"
    bot = "bot"
    unknown_site = "unknown_site"
    invalid_ip = "invalid_ip"
    rules_unavailable = "rules_unavailable"
    rules_pending = "rules_pending"
    rules_unauthorized = "rules_unauthorized"
    invalid_payload = "invalid_payload"  # the middleware could not read a track payload
    foreign_origin = "foreign_origin"  # check_origin: the page is not on the site's domain


UNAVAILABLE_REASONS: Final = frozenset(
    {Reason.rules_pending, Reason.rules_unavailable, Reason.rules_unauthorized}
)


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer for one hit: whether to track it and why. ``bool(decision)`` is ``tracked``.

    ``layers``: for a bot, the bot layers that matched it (``edgefilter._botlayers``), every
    one, ``user_agent`` first; audit only, so equality ignores it."""

    tracked: bool
    reason: Reason
    layers: tuple[str, ...] = field(default=(), compare=False)

    def __bool__(self) -> bool:
        return self.tracked


TRACKED: Final = Decision(True, Reason.tracked)
EXCLUDED_IP: Final = Decision(False, Reason.excluded_ip)
EXCLUDED_COUNTRY: Final = Decision(False, Reason.excluded_country)
EXCLUDED_ASN: Final = Decision(False, Reason.excluded_asn)
EXCLUDED_PATH: Final = Decision(False, Reason.excluded_path)
EXCLUDED_HOSTNAME: Final = Decision(False, Reason.excluded_hostname)
EXCLUDED_USER_AGENT: Final = Decision(False, Reason.excluded_user_agent)
BOT: Final = Decision(False, Reason.bot, ("user_agent",))  # the filter's own layer
INVALID_IP: Final = Decision(False, Reason.invalid_ip)

# What Rybbit answers for an excluded hit, by reason: ``200 {"success": true, "message": ...}``.
EXCLUSION_MESSAGES: Final[Mapping[Reason, str]] = MappingProxyType(
    {
        Reason.excluded_ip: "Event not tracked - IP excluded",
        Reason.excluded_country: "Event not tracked - country excluded",
        Reason.excluded_asn: "Event not tracked - ASN excluded",
        Reason.excluded_path: "Event not tracked - path excluded",
        Reason.excluded_hostname: "Event not tracked - hostname excluded",
        Reason.excluded_user_agent: "Event not tracked - user agent excluded",
    }
)
