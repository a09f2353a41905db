"""Site ids in one canonical spelling, wherever they enter (middleware, cache, server).

A Rybbit site is addressed by its numeric ``siteId`` or by its 12-hex ``id``. Anything a
client sends is read into one of those two forms or refused, so that no odd spelling of a
real id can reach the Sites API (or the cache) as a different key:

- ``siteId``: ASCII digits only (``str.isdigit`` also accepts ``²`` and Arabic-Indic
  digits, which are not digits here), leading zeros dropped (``007`` is ``7``), at most
  ``MAX_SITE_ID``. An int (not a bool) is its decimal text.
- ``id``: exactly 12 hexadecimal characters, lower-cased. Twelve digits are a ``siteId``.
- Anything longer than ``MAX_RAW_LENGTH`` characters, or neither form, is no site id:
  ``canonical_site_id`` answers None and callers decide "unknown site" with no fetch.
"""

from __future__ import annotations

from typing import Final

__all__ = ["MAX_RAW_LENGTH", "MAX_SITE_ID", "canonical_site_id"]

MAX_SITE_ID: Final = 2**63 - 1  # the widest integer key any SQL database stores
MAX_RAW_LENGTH: Final = 64  # zero padding past this is an attack, not a spelling
HEX_ID_LENGTH: Final = 12
_HEX: Final = frozenset("0123456789abcdefABCDEF")


def canonical_site_id(value: object) -> str | None:
    """The canonical text of a site id, or None when ``value`` cannot be one."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value) if 0 <= value <= MAX_SITE_ID else None
    if not isinstance(value, str) or not value or len(value) > MAX_RAW_LENGTH:
        return None
    if value.isascii() and value.isdigit():
        digits = value.lstrip("0") or "0"
        if len(digits) > 19 or int(digits) > MAX_SITE_ID:
            return None
        return digits
    if len(value) == HEX_ID_LENGTH and _HEX.issuperset(value):
        return value.lower()
    return None
