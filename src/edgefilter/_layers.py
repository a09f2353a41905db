"""Country and ASN rules layered into a site's IP table, built off the hot path.

Once a ``CountryResolver`` (and an ``AsnResolver``) has walked its database, a site's
excluded IPs (layer 0), the addresses of its excluded countries (layer 1) and those of its
excluded ASNs (layer 2) can live in one ``AddressTable``: one search then answers all three
rules and names the one that matched. Building that table costs time in proportion to the
site's rules (milliseconds for a thousand entries, about a third of a second for 100,000),
so a hit never waits for it: the first hit of a site schedules it on a background thread
and is answered from the tables apart, as are the hits that follow until the layered table
is stored in ``SiteRules.country_layers``. A filter without one of the databases layers an
empty table in its place (its rules are skipped, with one warning per site).
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final

from ._asn import AsnResolver
from ._geo import CountryResolver, RecordResolver
from ._rules import SiteRules
from ._tables import AddressTable

logger = logging.getLogger("edgefilter")

# A country (or ASN) table with more bounds than this is searched on its own rather than
# copied into the table of every site that excludes it (the large countries of a full
# database).
MAX_LAYERED_COUNTRY_BOUNDS: Final = 4_096
_EMPTY: Final = AddressTable()


class CountryLayering:
    """Builds and stores layered tables for one filter's resolvers, on one background thread.

    ``key`` is where the tables go in ``SiteRules.country_layers``: the GeoIP resolver, or
    one key object for the pair of GeoIP and ASN resolvers when the filter has an ASN
    database.
    """

    __slots__ = ("_executor", "_lock", "_pending", "asn", "geoip", "key")

    def __init__(self, geoip: CountryResolver | None, asn: AsnResolver | None = None) -> None:
        self.geoip = geoip
        self.asn = asn
        self.key: object = geoip if asn is None else _pair_key(geoip, asn)
        self._executor: ThreadPoolExecutor | None = None
        self._pending: set[int] = set()  # id() of rules with a build queued
        self._lock = threading.Lock()

    def layer(self, rules: SiteRules) -> AddressTable | None:
        """Build and store the layered table of ``rules`` now; None when it cannot be had
        (a walk has not ended, or a country or ASN table is over the limit)."""
        found = rules.country_layers.get(self.key)
        if found is not None:
            return found
        layers = self._layers(rules)
        if layers is None:
            return None
        layered = AddressTable.layered(rules.excluded_ips, *layers)
        rules.country_layers[self.key] = layered
        return layered

    def _layers(self, rules: SiteRules) -> tuple[AddressTable, AddressTable] | None:
        """The country (1) and ASN (2) layers of ``rules``, or None when one is not ready."""
        countries = _layer(self.geoip, rules.excluded_countries)
        asns = _layer(self.asn, rules.excluded_asns)
        if countries is None or asns is None:
            return None
        return countries, asns

    def schedule(self, rules: SiteRules) -> None:
        """Queue ``rules`` for a background build if one can succeed and none is queued."""
        if id(rules) in self._pending or self._layers(rules) is None:
            return
        with self._lock:
            if id(rules) in self._pending:
                return
            self._pending.add(id(rules))  # the queued job holds rules: its id stays unique
            self._start().submit(self._build, rules)

    def schedule_all(self, rules: Iterable[SiteRules]) -> None:
        """Layer every site of a fixed source as soon as the walks end, in the background."""
        layered = [each for each in rules if each.needs_layers]
        if layered:
            self._start().submit(self._build_all, layered)

    def _start(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="edgefilter-layers")
        return self._executor

    def _build(self, rules: SiteRules) -> None:
        try:
            self.layer(rules)
        except Exception:  # keep answering from the tables apart
            logger.exception(
                "site %s: layering its country and ASN rules failed",
                rules.site_id,
                extra={"site": rules.site_id or rules.id},
            )
        finally:
            self._pending.discard(id(rules))

    def _build_all(self, rules: list[SiteRules]) -> None:
        for resolver in (self.geoip, self.asn):
            if resolver is not None:
                resolver.wait_compiled()
        for each in rules:
            self._build(each)


class _PairKey:
    """The key of the tables layered for one pair of resolvers: hashed by identity (a dict
    read on every hit; a tuple's hash would be computed each time), one object per pair."""

    __slots__ = ("__weakref__", "asn", "geoip")

    def __init__(self, geoip: CountryResolver | None, asn: AsnResolver) -> None:
        self.geoip, self.asn = geoip, asn


# One key per live pair: filters over the same resolvers share their layered tables. A key
# holds its resolvers, so the ids in a live entry are theirs.
_PAIR_KEYS: weakref.WeakValueDictionary[tuple[int, int], _PairKey] = weakref.WeakValueDictionary()
_PAIR_KEYS_LOCK: Final = threading.Lock()


def _pair_key(geoip: CountryResolver | None, asn: AsnResolver) -> _PairKey:
    with _PAIR_KEYS_LOCK:
        key = _PAIR_KEYS.get((id(geoip), id(asn)))
        if key is None:
            key = _PAIR_KEYS[id(geoip), id(asn)] = _PairKey(geoip, asn)
        return key


def _layer(resolver: RecordResolver[Any] | None, keys: frozenset[Any]) -> AddressTable | None:
    """The addresses of ``keys`` as one layer: empty without keys or without a database;
    None while the walk runs (or after it failed) or when the table is over the limit."""
    if not keys or resolver is None:
        return _EMPTY
    table = resolver.table_for(keys)
    if table is None or table.bound_count > MAX_LAYERED_COUNTRY_BOUNDS:
        return None
    return table
