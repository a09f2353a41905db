"""Autonomous system numbers: ASN rules (edgefilter's own; Rybbit has none) and the database.

``AsnResolver`` reads a MaxMind GeoLite2-ASN or GeoIP2-ISP ``.mmdb``: the same walk as
``CountryResolver`` (see ``_geo``), keyed by the record's ``autonomous_system_number``, so a
site's excluded ASNs become one ``AddressTable`` layered into its IP table, as countries are.

``parse_asn`` reads one rule entry: an int, or text ``AS15169`` (any case) or ``15169``
(ASCII digits), between 1 and 4,294,967,295 (32-bit AS numbers; 0 is reserved).
"""

from __future__ import annotations

from typing import Any, Final

from ._errors import ConfigError, GeoIPError
from ._geo import RecordResolver

MAX_ASN: Final = 2**32 - 1
ASN_PREFIX: Final = "as"
# The database types whose records carry autonomous_system_number.
ASN_DATABASE_MARKERS: Final = ("ASN", "ISP")


def parse_asn(entry: object) -> int:
    """The AS number an entry names; ``ConfigError`` naming an entry that names none."""
    value: int | None = None
    if isinstance(entry, int) and not isinstance(entry, bool):
        value = int(entry)
    elif isinstance(entry, str):
        text = entry.strip()
        if text[:2].lower() == ASN_PREFIX:
            text = text[2:]
        if text.isascii() and text.isdigit() and len(text) <= 10:
            value = int(text)
    if value is None:
        raise ConfigError(f"excluded ASN {entry!r} is not an AS number (15169 or 'AS15169')")
    if not 1 <= value <= MAX_ASN:
        raise ConfigError(f"excluded ASN {entry!r} is not between 1 and {MAX_ASN}")
    return value


def asn_of(record: Any) -> int:
    """The AS number of a GeoLite2-ASN or GeoIP2-ISP record."""
    value = record["autonomous_system_number"]
    if not isinstance(value, int):
        raise TypeError(f"autonomous_system_number {value!r} is not an int")
    return value


class AsnResolver(RecordResolver[int]):
    """Looks up the AS number of an address in a GeoLite2-ASN or GeoIP2-ISP database.

    Opening a database of another type (a City database, say) is a ``GeoIPError``: its
    records have no AS number, so every ASN rule would silently never match. See
    ``RecordResolver`` for the walk and the other errors.
    """

    __slots__ = ()
    kind = "ASNs"
    thread_name = "edgefilter-asn"
    key_of = staticmethod(asn_of)

    def check_database_type(self, database_type: str) -> None:
        """Refuse a database whose records carry no AS number."""
        if not any(marker in str(database_type) for marker in ASN_DATABASE_MARKERS):
            raise GeoIPError(
                f"GeoIP database {self.path!r} is a {database_type!r} database, "
                "not GeoLite2-ASN or GeoIP2-ISP: it has no AS numbers"
            )

    def asn(self, ip: object) -> int | None:
        """The AS number of ``ip`` (text or ``ipaddress`` object), or None when unknown."""
        return self.lookup(ip)
