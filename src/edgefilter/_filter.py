"""The hot path: ``EdgeFilter.should_track(site, ip, ua)``.

Decisions for odd input (the hot path never raises):

- ``site`` unknown, or not a string or int: ``Reason.unknown_site``, not tracked unless
  ``track_unknown_sites=True``. An int site id is looked up as its decimal string.
- ``ip`` that is not an address (None, garbage, bytes that are not ASCII, too long) for a
  site whose rules look at the address (excluded IPs or countries):
  ``Reason.invalid_ip``, not tracked: an address that cannot be read could be an excluded
  one. For a site without such rules the address is never read.
- ``ua`` empty, missing or not text, for a site that blocks bots: ``Reason.bot``.
- no rules can be had for the site right now (a live source whose API is down, or whose
  first fetch is still running): ``Reason.rules_unavailable``, tracked unless
  ``track_when_unavailable=False`` (fail open by default: an outage of the config API must
  not silently drop every hit).

When several rules match, the reason is the first of: IP, country, bot.
"""

from __future__ import annotations

import logging
import socket
from bisect import bisect_right
from collections.abc import Callable, Iterator, Mapping
from typing import Final, Protocol, runtime_checkable

from ._addresses import (
    MAPPED_PACKED_PREFIX,
    V4,
    pack_address,
    parse_hit_address,
)
from ._bots import BotDetector
from ._decisions import (
    BOT,
    EXCLUDED_COUNTRY,
    EXCLUDED_IP,
    INVALID_IP,
    TRACKED,
    Decision,
    Reason,
)
from ._geo import CountryResolver
from ._layers import CountryLayering
from ._layout import LAYER_COUNTRY, LAYER_IP, WIDE, by_layer
from ._rules import SiteConfig, SiteRules, compile_rules
from ._tables import AddressTable

logger = logging.getLogger("edgefilter")

# Bound once: module globals are found faster than attributes of the socket module.
_inet_pton = socket.inet_pton
_inet_ntop = socket.inet_ntop
_AF_INET: Final = socket.AF_INET
_AF_INET6: Final = socket.AF_INET6

# The decision for each layer of a site's table, indexed by the layer a search finds.
_EXCLUSIONS: Final = by_layer({LAYER_IP: EXCLUDED_IP, LAYER_COUNTRY: EXCLUDED_COUNTRY})


@runtime_checkable
class RulesSource(Protocol):
    """Where an ``EdgeFilter`` finds a site's rules.

    ``rules_for(site)`` is called on every hit: a cheap, non-blocking read (ideally a dict's
    own ``get``) that answers None when it has nothing at hand. Only then is
    ``resolve(site)`` called: it may do more work, and answers the rules, None for an
    unknown site, or ``Reason.rules_unavailable`` when the rules cannot be had now.
    """

    @property
    def rules_for(self) -> Callable[[str], SiteRules | None]: ...

    def resolve(self, site: str) -> SiteRules | Reason | None: ...


class StaticRules:
    """A fixed ``RulesSource`` compiled once from a mapping of site id to config or rules.

    Each site is also reachable by the other form of its id (``siteId`` and the 12-hex
    ``id``) when its config names it and no other key takes it. ``compact_tables`` is passed
    to ``compile_rules`` as ``compact``.
    """

    __slots__ = ("_rules", "rules_for")

    def __init__(
        self, sites: Mapping[str, SiteConfig | SiteRules], *, compact_tables: bool = False
    ) -> None:
        rules: dict[str, SiteRules] = {}
        for key, value in sites.items():
            rules[str(key)] = (
                compile_rules(value, compact=compact_tables)
                if isinstance(value, SiteConfig)
                else value
            )
        for compiled in list(rules.values()):
            for alias in (compiled.site_id, compiled.id):
                if alias is not None:
                    rules.setdefault(alias, compiled)
        self._rules = rules
        # The dict's own C-level get: no Python frame between the hot path and the lookup.
        self.rules_for: Callable[[str], SiteRules | None] = rules.get

    def resolve(self, site: str) -> SiteRules | Reason | None:
        """A static source has nothing more than ``rules_for``: a miss is an unknown site."""
        return None

    def __iter__(self) -> Iterator[tuple[str, SiteRules]]:
        return iter(self._rules.items())


class EdgeFilter:
    """Decides for each hit whether to track it, from per-site rules.

    ``source`` is a mapping of site id to ``SiteConfig`` or ``SiteRules`` (compiled once, here)
    or any ``RulesSource``. ``geoip`` is a ``.mmdb`` path or a ``CountryResolver``; without one,
    country rules are skipped (with one warning per site). ``bots`` is a ``BotDetector``; a
    default one is made when not given. ``compact_tables=True`` compiles the configs of a
    mapping with ``compile_rules(config, compact=True)``: many sites in little memory.
    """

    __slots__ = (
        "_bot_verdict",
        "_bot_verdicts",
        "_layering",
        "_rules_for",
        "_unavailable",
        "_unknown",
        "_warned",
        "bots",
        "geoip",
        "source",
    )

    def __init__(
        self,
        source: Mapping[str, SiteConfig | SiteRules] | RulesSource,
        *,
        geoip: str | CountryResolver | None = None,
        bots: BotDetector | None = None,
        track_unknown_sites: bool = False,
        track_when_unavailable: bool = True,
        compact_tables: bool = False,
    ) -> None:
        self.source: RulesSource = (
            source
            if isinstance(source, RulesSource)
            else StaticRules(source, compact_tables=compact_tables)
        )
        self.geoip = CountryResolver(geoip) if isinstance(geoip, str) else geoip
        self._layering = None if self.geoip is None else CountryLayering(self.geoip)
        self._rules_for: Callable[[str], SiteRules | None] = self.source.rules_for
        self.bots = bots or BotDetector()
        self._bot_verdicts = self.bots.verdicts
        self._bot_verdict = self.bots.verdict
        self._unknown = Decision(track_unknown_sites, Reason.unknown_site)
        self._unavailable = Decision(track_when_unavailable, Reason.rules_unavailable)
        self._warned: set[str | None] = set()
        if isinstance(self.source, StaticRules):
            for _, rules in self.source:
                self.check_rules(rules)
            if self._layering is not None:
                self._layering.schedule_all({id(rules): rules for _, rules in self.source}.values())

    def check_rules(self, rules: SiteRules) -> None:
        """Warn once per site about rules this filter cannot apply."""
        site = rules.site_id or rules.id
        if rules.excluded_countries and self.geoip is None and site not in self._warned:
            self._warned.add(site)
            logger.warning(
                "site %s excludes countries %s but no GeoIP database is loaded: "
                "country rules are skipped",
                rules.site_id or rules.id,
                ",".join(sorted(rules.excluded_countries)),
            )

    def should_track(self, site: object, ip: object, ua: object) -> Decision:  # noqa: PLR0912
        """Whether to track the hit of ``site`` from ``ip`` with user agent ``ua``, and why.

        One flat function of early returns, cheapest check first (see the module docstring
        for odd input); its branches are kept inline because every call costs on this path.
        """
        try:
            rules = self._rules_for(site)  # type: ignore[arg-type]
        except Exception:  # an odd site id (unhashable, ...) is an unknown site
            rules = None
        if rules is None:
            found = self._resolve(site)
            if not isinstance(found, SiteRules):
                return self._unknown if found is None else self._unavailable
            rules = found
        if rules.needs_ip:
            try:
                if ":" in ip:  # type: ignore[operator]
                    packed = _inet_pton(_AF_INET6, ip)  # type: ignore[arg-type]
                    is_v4 = packed.startswith(MAPPED_PACKED_PREFIX)
                    if is_v4:  # ::ffff:a.b.c.d is a.b.c.d
                        packed = packed[12:]
                else:
                    packed = _inet_pton(_AF_INET, ip)  # type: ignore[arg-type]
                    is_v4 = True
            except (OSError, TypeError, ValueError):
                address = parse_hit_address(ip)
                if address is None:
                    return INVALID_IP
                is_v4, packed = address[0] == V4, pack_address(address)
            table = rules.excluded_ips
            if rules.excluded_countries:  # IPs and countries layered in one table, once ready
                layered = rules.country_layers.get(self.geoip)
                if layered is None:
                    return self._decide_unlayered(rules, is_v4, packed, ua)
                table = layered
            # An inline copy of AddressTable.layer_of_packed (the layout: _layout), pinned to
            # it by tests/test_layout.py::test_inline_lookups_agree_with_layer_of_packed.
            if is_v4:
                buckets, shift = table.buckets4, table.shift4
            else:
                buckets, shift = table.buckets6, table.shift6
            if shift < 0:  # a tag: WIDE (two-byte index), or COMPACT (IPv4 as ints)
                if shift != WIDE:
                    return self._decide_compact(rules, table, packed, ua)
                bucket = buckets[packed[0] << 8 | packed[1]]
            else:  # a shift: FLAT or BY_BYTE
                bucket = buckets[packed[0] >> shift]
            index = bisect_right(bucket, packed)
            if index & 1:  # inside an interval: its end's LAYER_BYTE (the last) names the layer
                return _EXCLUSIONS[bucket[index][-1]]
        if rules.block_bots:
            try:
                verdict = self._bot_verdicts[ua]  # the detector's cache, read directly
            except (KeyError, TypeError):
                verdict = self._bot_verdict(ua)
            if verdict:  # a bot family; "" is a person
                return BOT
        return TRACKED

    def _decide_unlayered(
        self, rules: SiteRules, is_v4: bool, packed: bytes, ua: object
    ) -> Decision:
        """``should_track`` after the address is read, for a site with country rules whose
        layered table is not built yet: have it built in the background, and meanwhile check
        the IP table, then the countries' table (or the address's record)."""
        if self._layering is not None:
            self._layering.schedule(rules)
        if rules.excluded_ips.contains_packed(packed):
            return EXCLUDED_IP
        if self._in_countries(rules.excluded_countries, is_v4, packed):
            return EXCLUDED_COUNTRY
        return BOT if rules.block_bots and self.bots.is_bot(ua) else TRACKED

    def _decide_compact(
        self, rules: SiteRules, table: AddressTable, packed: bytes, ua: object
    ) -> Decision:
        """``should_track`` after the address is read, for a compact IPv4 table: the compact
        reader is ``AddressTable.layer_of_packed`` itself."""
        layer = table.layer_of_packed(packed)
        if layer is not None:
            return _EXCLUSIONS[layer]
        return BOT if rules.block_bots and self.bots.is_bot(ua) else TRACKED

    def prepare(self, rules: SiteRules) -> bool:
        """Layer a site's country rules into its IP table now, rather than in the background
        after its first hit; whether its hits are now answered by one search."""
        if not rules.excluded_countries:
            return True
        return self._layering is not None and self._layering.layer(rules) is not None

    def _in_countries(self, countries: frozenset[str], is_v4: bool, packed: bytes) -> bool:
        """Whether the address lies in ``countries``: their table if the walk has ended, else
        the address's record."""
        if self.geoip is None:
            return False
        table = self.geoip.table_for(countries)
        if table is not None:
            return table.contains_packed(packed)
        text = _inet_ntop(_AF_INET if is_v4 else _AF_INET6, packed)
        return self.geoip.country(text) in countries

    def _resolve(self, site: object) -> SiteRules | Reason | None:
        """The slow path after a miss: int ids as text, then the source's ``resolve``."""
        if isinstance(site, int) and not isinstance(site, bool):
            site = str(site)
            rules = self._rules_for(site)
            if rules is not None:
                return rules
        if not isinstance(site, str):
            return None
        try:
            found = self.source.resolve(site)
        except Exception:  # a source must not break the hot path; count it as unavailable
            logger.exception("rules source failed to resolve site %r", site)
            return Reason.rules_unavailable
        if isinstance(found, SiteRules):
            self.check_rules(found)
        return found

    async def ensure(self, site: str, timeout: float | None = None) -> None:
        """Wait (up to ``timeout``) until a fetching source has ``site``'s rules; the async
        path's way to warm a cold site without blocking the event loop."""
        aensure = getattr(self.source, "aensure", None)
        if aensure is not None:
            await aensure(site, timeout)
