"""Country of an IP address from a MaxMind ``.mmdb`` database (City or Country).

``RecordResolver`` reads a database as one key per address (here the country; in ``_asn``
the AS number). Two ways to answer: ``country(ip)`` decodes the address's record
(microseconds), and ``table_for(countries)`` gives an ``AddressTable`` of every address
in those countries, so that the hot path answers with one ``bisect`` instead. The tables
come from one walk over the whole database, run in a background thread when the resolver
opens; until it ends, ``table_for`` answers None and callers fall back to ``country``.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, Final, Generic, Self, TypeVar

import maxminddb

from ._addresses import V4, V6, Interval, with_mapped_projection
from ._errors import ConfigError, GeoIPError
from ._tables import AddressTable

# What a database path may be: text, bytes, or any os.PathLike (pathlib.Path, ...).
GeoIPPath = str | bytes | os.PathLike[str] | os.PathLike[bytes]

logger = logging.getLogger("edgefilter")
K = TypeVar("K")

# Where a MaxMind IPv6 database also answers for IPv4 addresses: (base, shift, host mask).
# An IPv4 value v appears at base | v << shift, followed by shift free host bits.
IPV4_ALIASES: Final = (
    (0, 0, 0),  # ::a.b.c.d, IPv4-compatible
    (0x2002 << 112, 80, (1 << 80) - 1),  # 6to4, 2002::/16
    (0x2001_0000 << 96, 64, (1 << 64) - 1),  # Teredo, 2001::/32
)
MAX_MEMOIZED_TABLES: Final = 4096


class RecordResolver(Generic[K]):
    """An ``.mmdb`` database read as one key per address: the base of ``CountryResolver``
    and ``AsnResolver``, which say what the key of a record is (``key_of``).

    Opening a missing or corrupt database raises ``GeoIPError``; a lookup never raises: an
    invalid address, an address the database does not cover, a record without the key and
    a record the database cannot decode all answer None. ``compile_tables=False`` skips the
    walk. ``path`` is text, bytes or any ``os.PathLike``; ``self.path`` is its text. A
    ``path`` that is none of those is a ``ConfigError``.
    """

    __slots__ = ("_ended", "_intervals", "_reader", "path", "tables")
    kind: ClassVar[str] = "keys"  # what the keys are, plural, for the log
    thread_name: ClassVar[str] = "edgefilter-geoip"

    def __init__(self, path: GeoIPPath, *, compile_tables: bool = True) -> None:
        try:
            self.path = os.fsdecode(path)
        except TypeError:
            raise ConfigError(f"path {path!r} is not a file path") from None
        try:
            self._reader: Any = maxminddb.open_database(self.path)
        except (OSError, ValueError, maxminddb.InvalidDatabaseError) as error:
            raise GeoIPError(f"cannot open GeoIP database {self.path!r}: {error}") from error
        metadata = self._reader.metadata()
        try:
            self.check_database_type(metadata.database_type)
        except GeoIPError:
            self._reader.close()
            raise
        logger.info("GeoIP database %s opened: %s", self.path, metadata.database_type)
        self._intervals: dict[K, list[Interval]] | None = None
        # Compiled tables by key set; read-only for callers (EdgeFilter reads it directly).
        self.tables: dict[frozenset[K], AddressTable] = {}
        self._ended = threading.Event()  # the walk has ended, or will not run
        if compile_tables:
            walker = threading.Thread(target=self._walk, name=self.thread_name, daemon=True)
            walker.start()
        else:
            self._ended.set()

    @staticmethod
    def key_of(record: Any) -> K:
        """The key of a record; raises ``KeyError`` or ``TypeError`` when it has none."""
        raise NotImplementedError

    def check_database_type(self, database_type: str) -> None:
        """Raise ``GeoIPError`` when a database of this type cannot answer; any type can."""

    def lookup(self, ip: object) -> K | None:
        """The key of ``ip``'s record (``ip`` text or an ``ipaddress`` object), or None."""
        try:
            return self.key_of(self._reader.get(ip))
        except Exception:  # a lookup must never raise, whatever the database holds
            return None

    def table_for(self, keys: frozenset[K]) -> AddressTable | None:
        """Every address whose key is in ``keys`` as one table; None until the walk has ended."""
        try:
            return self.tables[keys]
        except KeyError:
            return self._compile_table(keys)

    @property
    def compiled(self) -> bool:
        """Whether the walk has ended and ``table_for`` answers."""
        return self._intervals is not None

    @property
    def walk_ended(self) -> bool:
        """Whether the walk has ended (compiled, failed, or never asked for): readiness."""
        return self._ended.is_set()

    def wait_compiled(self, timeout: float | None = None) -> bool:
        """Block until the walk has ended (or ``timeout``); whether the tables are ready.
        False at once when the walk failed or was not asked for."""
        self._ended.wait(timeout)
        return self.compiled

    def _compile_table(self, keys: frozenset[K]) -> AddressTable | None:
        intervals = self._intervals
        if intervals is None:
            return None
        table = AddressTable.from_intervals(
            interval for key in keys for interval in intervals.get(key, ())
        )
        if len(self.tables) >= MAX_MEMOIZED_TABLES:
            self.tables.clear()
        self.tables[keys] = table
        return table

    def _walk(self) -> None:
        started = time.perf_counter()
        try:
            intervals = record_intervals(self._reader, self.key_of)
            add_ipv4_aliases(self._reader, intervals, self.key_of)
        except Exception:  # a corrupt record deep in the tree: stay on direct lookups
            logger.exception("GeoIP database %s: walk failed, using direct lookups", self.path)
            self._ended.set()
            return
        self._intervals = intervals
        self._ended.set()
        logger.info(
            "GeoIP database %s: %d %s compiled in %.2f s",
            self.path,
            len(intervals),
            self.kind,
            time.perf_counter() - started,
        )

    def close(self) -> None:
        """Release the database file (the compiled tables stay usable)."""
        self._reader.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def country_of(record: Any) -> str:
    """The ISO code of a record's ``country`` (not ``registered_country``, as in Rybbit)."""
    return record["country"]["iso_code"]  # type: ignore[no-any-return]


class CountryResolver(RecordResolver[str]):
    """Looks up the ISO 3166-1 alpha-2 code of an address's ``country`` record, from a City
    or Country database (see ``RecordResolver`` for errors and the walk).

    Only ``country`` counts (not ``registered_country``), as in Rybbit.
    """

    __slots__ = ()
    kind = "countries"
    key_of = staticmethod(country_of)

    def country(self, ip: object) -> str | None:
        """The country code of ``ip`` (text or ``ipaddress`` object), or None when unknown."""
        return self.lookup(ip)


def record_intervals(
    networks: Iterable[tuple[Any, Any]], key_of: Callable[[Any], K]
) -> dict[K, list[Interval]]:
    """Per key, the merged intervals of the networks whose record has that key.

    ``networks`` yields ``(ipaddress network, record)`` in address order, as iterating a
    maxminddb reader does, so each key's intervals arrive sorted and merge as they come.
    A record without a key (``key_of`` raises ``KeyError`` or ``TypeError``) is skipped.
    """
    result: dict[K, list[Interval]] = {}
    for network, record in networks:
        try:
            key = key_of(record)
        except (KeyError, TypeError):
            continue
        version = V4 if network.version == 4 else V6
        first, last = int(network.network_address), int(network.broadcast_address)
        for interval in with_mapped_projection(version, first, last):
            _append_merged(result.setdefault(key, []), interval)
    return result


def country_intervals(networks: Iterable[tuple[Any, Any]]) -> dict[str, list[Interval]]:
    """Per country code, the merged intervals of the networks whose record names it."""
    return record_intervals(networks, country_of)


def _append_merged(intervals: list[Interval], interval: Interval) -> None:
    version, first, last = interval
    if intervals and intervals[-1][0] == version and intervals[-1][2] + 1 == first:
        intervals[-1] = (version, intervals[-1][1], last)
    else:
        intervals.append(interval)


def add_ipv4_aliases(
    reader: Any,
    intervals: dict[K, list[Interval]],
    key_of: Callable[[Any], K] = country_of,  # type: ignore[assignment]
) -> None:
    """Add the IPv6 images of IPv4 intervals where the database aliases them.

    Iterating a reader skips aliased subtrees, but looking an address up follows them; each
    alias is checked against one real lookup before it is added.
    """
    probe = next(
        ((code, first) for code, spans in intervals.items() for v, first, _ in spans if v == V4),
        None,
    )
    if probe is None:
        return
    code, value = probe
    for base, shift, host_mask in IPV4_ALIASES:
        address = _ipv6_text(base | value << shift)
        try:
            aliased = key_of(reader.get(address)) == code
        except Exception:  # not aliased in this database (or an IPv4-only one)
            aliased = False
        if not aliased:
            continue
        for spans in intervals.values():
            spans += [
                (V6, base | first << shift, base | last << shift | host_mask)
                for v, first, last in list(spans)
                if v == V4
            ]


def _ipv6_text(value: int) -> str:
    return str(ipaddress.IPv6Address(value))
