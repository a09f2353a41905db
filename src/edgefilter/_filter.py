"""The hot path: ``EdgeFilter.should_track(site, ip, ua, *, path=None, hostname=None)``,
``adecide`` for async callers, and ``decide_many``/``adecide_many`` for batches. With the
compiled reader (``_speedups``, see ``_tables``) one C call goes from a site's rules to the
decision of its address rules, and on to that of its path, hostname, user-agent and bot
checks when their caches hold the hit's verdicts (Python makes the checks they do not);
without it, the inline pure-Python reader below does it all.

Decisions for odd input (the hot path never raises, whatever its arguments are:
unhashable, hostile objects whose methods raise, huge, ...):

- ``site`` unknown, or not a site id (see ``edgefilter._siteids``: ASCII digits or 12 hex
  characters; an int is its decimal text): ``Reason.unknown_site``, not tracked unless
  ``track_unknown_sites=True``, and the source is not asked. Another spelling of a real id
  (``"007"``, upper-case hex) is that site. A ``str`` or ``int`` subclass is read as its
  plain value: none of its own methods run.
- ``ip`` that is not an address (None, garbage, bytes that are not ASCII, too long, an
  object that is not text or bytes) for a site whose rules look at the address (excluded
  IPs, countries or ASNs): ``Reason.invalid_ip``, not tracked: an address that cannot be read
  could be an excluded one. For a site without such rules the address is never read.
- ``ua`` empty, missing or not text, for a site that blocks bots: ``Reason.bot``; bytes
  are decoded as Latin-1 and lone surrogates replaced (see ``edgefilter._bots``).
- no rules can be had for the site right now: the source's cause, ``Reason.rules_pending``
  (its first fetch has not answered yet), ``Reason.rules_unavailable`` (the API is down;
  also a source that raises or answers something else) or ``Reason.rules_unauthorized``
  (the API refused the key). ``track_when_unavailable`` decides each (see ``EdgeFilter``).

- ``path``, ``hostname`` (the payload's ``pathname`` and ``hostname``) and ``ua`` for the
  path, hostname and user-agent rules: text (a ``str`` subclass as its plain value) or
  bytes (decoded as Latin-1) are matched; None (a hit without one) and anything else are
  not excluded by those rules.

When several rules match, the reason is the first of: IP, country, ASN, path, hostname,
user agent, bot (Rybbit v2.7's order, with ASN after country). A mobile site
(``type: mobile``) gets no user-agent bot check; its excluded user agents still apply.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import warnings
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from itertools import repeat
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeVar, runtime_checkable

from ._addresses import (
    MAPPED_PACKED_PREFIX,
    V4,
    Address,
    pack_address,
    parse_hit_address,
)
from ._asn import AsnResolver
from ._bots import BotDetector
from ._decisions import (
    BOT,
    EXCLUDED_ASN,
    EXCLUDED_COUNTRY,
    EXCLUDED_HOSTNAME,
    EXCLUDED_IP,
    EXCLUDED_PATH,
    EXCLUDED_USER_AGENT,
    INVALID_IP,
    TRACKED,
    UNAVAILABLE_REASONS,
    Decision,
    Reason,
)
from ._errors import ConfigError
from ._geo import CountryResolver, GeoIPPath, RecordResolver
from ._layers import CountryLayering
from ._layout import LAYER_ASN, LAYER_COUNTRY, LAYER_IP, OUTSIDE_LAYER, WIDE, by_layer
from ._patterns import GlobMatcher, SubstringMatcher
from ._rules import SiteConfig, SiteRules, compile_rules
from ._siteids import canonical_site_id
from ._tables import (
    AddressTable,
    compiled_decision_of_hit,
    compiled_layer_of_text,
    pure_layer_of_text,
)

logger = logging.getLogger("edgefilter")

# Bound once: module globals are found faster than attributes of the socket module.
_inet_pton = socket.inet_pton
_inet_ntop = socket.inet_ntop
_AF_INET: Final = socket.AF_INET
_AF_INET6: Final = socket.AF_INET6
_get_running_loop = asyncio.events._get_running_loop
# The compiled reader (``_speedups``), when built and not turned off; None: the inline
# pure-Python reader below. Tests swap both to hold the readers to the same decisions.
_layer_of_text = compiled_layer_of_text


def in_event_loop() -> bool:
    """Whether this thread runs an asyncio event loop now (asyncio's own check, which does
    not raise): the one test of it for the filter, the cache and the middleware."""
    return _get_running_loop() is not None


R = TypeVar("R", bound=RecordResolver[Any])

# The decision for each layer of a site's table, indexed by the layer a search finds.
_EXCLUSIONS: Final = by_layer(
    {LAYER_IP: EXCLUDED_IP, LAYER_COUNTRY: EXCLUDED_COUNTRY, LAYER_ASN: EXCLUDED_ASN}
)
# The decisions of the checks after the address, in should_track's order, and tracked.
_CHECKS: Final = (EXCLUDED_PATH, EXCLUDED_HOSTNAME, EXCLUDED_USER_AGENT, BOT, TRACKED)
# The compiled reader from a site's rules to a decision (``_speedups.decision_of_hit``),
# called with the whole hit: the address's layer, then the path, hostname, user-agent and
# bot checks from their caches; a decision, None (the address passed, Python makes the
# checks after it) or False (Python decides from the address on); None when not active.
_decision_of_hit = compiled_decision_of_hit(
    SiteRules, _EXCLUSIONS, matchers=(GlobMatcher, SubstringMatcher), checks=_CHECKS
)


@runtime_checkable
class RulesSource(Protocol):
    """Where an ``EdgeFilter`` finds a site's rules: the whole contract of a source.

    A source may implement it structurally, or subclass ``RulesSource`` to inherit the
    defaults of the optional members. ``site`` is always a canonical site id (see
    ``edgefilter._siteids``): the filter canonicalises what a hit carries first.

    Required:

    - ``rules_for(site)``: called on every hit, a cheap, non-blocking read (ideally a dict's
      own ``get``) that answers None when it has nothing at hand. Declare it in the class
      body (``rules_for: Callable[[str], SiteRules | None]``) and assign it, or define it
      as a method.
    - ``resolve(site)``: called only after ``rules_for`` misses; it may do more work, and
      answers the rules, None for an unknown site, or the cause there are none right now:
      ``Reason.rules_pending``, ``Reason.rules_unavailable`` or ``Reason.rules_unauthorized``.

    Optional, with defaults:

    - ``cold_wait``: how long ``EdgeFilter.adecide`` awaits ``aensure`` for a cold site
      (default ``DEFAULT_COLD_WAIT``, 0.25 s).
    - ``aensure(site, timeout)``: await (up to ``timeout``) until ``resolve`` can answer
      ``site`` without waiting; the default returns at once.
    - ``known_sites()``: the sites whose rules are known up front, by id; ``EdgeFilter``
      checks them and layers their country rules at construction. Default: none.

    A source that implements the protocol structurally and lacks an optional member gets
    its default from ``EdgeFilter``.
    """

    __slots__ = ()

    # Read-only for the type checker (a method or an attribute satisfies it), a plain
    # annotation at run time so that a subclass may assign it in ``__init__``.
    if TYPE_CHECKING:

        @property
        def rules_for(self) -> Callable[[str], SiteRules | None]: ...

    else:
        rules_for: Callable[[str], SiteRules | None]

    cold_wait: float = 0.25

    def resolve(self, site: str) -> SiteRules | Reason | None: ...

    async def aensure(self, site: str, timeout: float | None = None) -> None:
        """Await until ``site``'s rules are at hand; a source that never fetches has them."""
        return None

    def known_sites(self) -> Mapping[str, SiteRules]:
        """The sites whose rules are known up front, by id: none by default."""
        return _NO_SITES


_NO_SITES: Final[Mapping[str, SiteRules]] = MappingProxyType({})
_NO_HITS: Final[tuple[Sequence[object], ...]] = ()  # decide_many called with columns
DEFAULT_COLD_WAIT: Final = RulesSource.cold_wait


class StaticRules(RulesSource):
    """A fixed ``RulesSource`` compiled once from a mapping of site id to config or rules.

    Keys are site ids in any spelling ``canonical_site_id`` reads (``"007"`` is ``"7"``, hex
    any case, an int); a key that is not a site id, or two keys for one site, are a
    ``ConfigError`` naming them. Each site is also reachable by the other form of its id
    (``siteId`` and the 12-hex ``id``) when its config names it and no key takes it.
    ``compact_tables`` is passed to ``compile_rules`` as ``compact``.
    """

    __slots__ = ("_rules", "rules_for")

    def __init__(
        self, sites: Mapping[str, SiteConfig | SiteRules], *, compact_tables: bool | None = None
    ) -> None:
        rules: dict[str, SiteRules] = {}
        spellings: dict[str, object] = {}
        for key, value in sites.items():
            site = canonical_site_id(key)
            if site is None:
                raise ConfigError(f"site key {key!r} is not a site id (digits or 12 hex)")
            if site in rules:
                raise ConfigError(
                    f"site keys {spellings[site]!r} and {key!r} name the same site {site!r}"
                )
            spellings[site] = key
            rules[site] = (
                compile_rules(value, compact=compact_tables)
                if isinstance(value, SiteConfig)
                else value
            )
        for compiled in list(rules.values()):
            for alias in (compiled.site_id, compiled.id):
                canonical = canonical_site_id(alias)
                if canonical is not None:
                    rules.setdefault(canonical, compiled)
        self._rules = rules
        # The dict's own C-level get: no Python frame between the hot path and the lookup.
        self.rules_for: Callable[[str], SiteRules | None] = rules.get

    def resolve(self, site: str) -> SiteRules | Reason | None:
        """A static source has nothing more than ``rules_for``: a miss is an unknown site."""
        return None

    def known_sites(self) -> Mapping[str, SiteRules]:
        """Every site, by each of its ids (a read-only view)."""
        return MappingProxyType(self._rules)

    def __iter__(self) -> Iterator[tuple[str, SiteRules]]:
        return iter(self._rules.items())


# By default an excluded address must not get through while the API is healthy but slow
# (pending), while an outage or a refused key fails open, as Rybbit would have tracked.
DEFAULT_TRACK_WHEN_UNAVAILABLE: Final[Mapping[Reason, bool]] = MappingProxyType(
    {
        Reason.rules_pending: False,
        Reason.rules_unavailable: True,
        Reason.rules_unauthorized: True,
    }
)

# Set by adecide around the should_track that follows its await: no "forgot to await".
_AWAITED: Final[ContextVar[bool]] = ContextVar("edgefilter_awaited", default=False)


def _unavailable_decisions(option: object) -> dict[Reason, Decision]:
    """The Decision for each cause of "no rules right now", from ``track_when_unavailable``."""
    if isinstance(option, bool):
        choices = dict.fromkeys(DEFAULT_TRACK_WHEN_UNAVAILABLE, option)
    elif isinstance(option, Mapping):
        unknown = [key for key in option if key not in UNAVAILABLE_REASONS]
        if unknown:
            raise ConfigError(
                f"track_when_unavailable has keys {unknown!r} that are not "
                f"{', '.join(sorted(UNAVAILABLE_REASONS))}"
            )
        wrong = {key: value for key, value in option.items() if not isinstance(value, bool)}
        if wrong:
            raise ConfigError(f"track_when_unavailable has values {wrong!r} that are not bools")
        choices = {**DEFAULT_TRACK_WHEN_UNAVAILABLE, **{Reason(k): v for k, v in option.items()}}
    else:
        raise ConfigError(
            f"track_when_unavailable {option!r} is not a bool nor a mapping of Reason to bool"
        )
    return {reason: Decision(track, reason) for reason, track in choices.items()}


def _canonical_site(site: object) -> str | None:
    """The canonical id a hit's ``site`` names, or None; a ``str`` or ``int`` subclass is
    read as its plain value (copied without calling its methods). Never raises."""
    kind = type(site)
    if kind is not str and kind is not int:
        if issubclass(kind, str):
            site = "".join((site,))  # type: ignore[arg-type]
        elif issubclass(kind, int) and kind is not bool:
            site = int.__int__(site)  # type: ignore[arg-type]
        else:
            return None
    return canonical_site_id(site)


def _read_hit_address(ip: object) -> Address | None:
    """The lenient read of a hit's address behind the hot path's ``inet_pton``: text or
    bytes-like (subclasses as their plain value), else None. Never raises."""
    kind = type(ip)
    try:
        if kind is not str and kind is not bytes:
            if issubclass(kind, str):
                ip = "".join((ip,))  # type: ignore[arg-type]
            elif issubclass(kind, bytes | bytearray | memoryview):
                ip = b"".join((ip,))  # type: ignore[arg-type]
            else:
                return None
        return parse_hit_address(ip)
    except Exception:  # a released memoryview, ...
        return None


class EdgeFilter:
    """Decides for each hit whether to track it, from per-site rules.

    ``source`` is a mapping of site id to ``SiteConfig`` or ``SiteRules`` (compiled once,
    here, into ``StaticRules``) or any ``RulesSource``. ``geoip`` is a ``.mmdb`` path (text,
    bytes or any ``os.PathLike``) or a ``CountryResolver``; without one, country rules are
    skipped (with one warning per site). ``asn_db`` is likewise a GeoLite2-ASN or GeoIP2-ISP
    ``.mmdb`` path or an ``AsnResolver``; without one, ASN rules are skipped (one warning
    per site). ``bots`` is a ``BotDetector``; a default one is made when not given.
    ``compact_tables`` is passed to ``compile_rules`` as ``compact`` (None, the default:
    compact with the compiled reader) for the configs of a mapping (a live source takes the
    option itself, e.g. ``RulesCache(client, compact_tables=True)``).

    ``track_when_unavailable`` decides the hits of a site whose rules cannot be had right
    now: a bool for every cause, or a mapping of some of ``Reason.rules_pending``,
    ``Reason.rules_unavailable`` and ``Reason.rules_unauthorized`` to a bool, the others
    keeping their defaults (``DEFAULT_TRACK_WHEN_UNAVAILABLE``: pending not tracked, the
    other two tracked). Every option is checked here: a bad one is a ``ConfigError``
    naming it.
    """

    __slots__ = (
        "_aensure_source",
        "_bot_verdict",
        "_bot_verdicts",
        "_cold_wait",
        "_layering",
        "_layers_key",
        "_rules_for",
        "_source_failure_logged",
        "_unavailable",
        "_unknown",
        "_warned",
        "_warned_unawaited",
        "asn_db",
        "bots",
        "geoip",
        "source",
    )

    def __init__(
        self,
        source: Mapping[str, SiteConfig | SiteRules] | RulesSource,
        *,
        geoip: GeoIPPath | CountryResolver | None = None,
        asn_db: GeoIPPath | AsnResolver | None = None,
        bots: BotDetector | None = None,
        track_unknown_sites: bool = False,
        track_when_unavailable: bool | Mapping[Reason, bool] = DEFAULT_TRACK_WHEN_UNAVAILABLE,
        compact_tables: bool | None = None,
    ) -> None:
        for name, flag in (
            ("track_unknown_sites", track_unknown_sites),
            ("compact_tables", False if compact_tables is None else compact_tables),
        ):
            if not isinstance(flag, bool):
                raise ConfigError(f"{name} {flag!r} is not a bool")
        self._unavailable = _unavailable_decisions(track_when_unavailable)
        self._unknown = Decision(track_unknown_sites, Reason.unknown_site)
        self.source = _as_source(source, compact_tables=compact_tables)
        self._rules_for: Callable[[str], SiteRules | None] = self.source.rules_for
        self._cold_wait = _cold_wait(self.source)
        self._aensure_source = _optional(self.source, "aensure")
        if bots is not None and not isinstance(bots, BotDetector):
            raise ConfigError(f"bots {bots!r} is not a BotDetector")
        self.geoip = _as_resolver(geoip, "geoip", CountryResolver)  # last checks: open files
        self.asn_db = _as_resolver(asn_db, "asn_db", AsnResolver)
        self._layering = (
            None
            if self.geoip is None and self.asn_db is None
            else CountryLayering(self.geoip, self.asn_db)
        )
        # Where this filter's layered tables live in SiteRules.country_layers.
        self._layers_key = None if self._layering is None else self._layering.key
        self.bots = bots if bots is not None else BotDetector()
        self._bot_verdicts = self.bots.verdicts
        self._bot_verdict = self.bots.verdict
        self._warned: set[object] = set()
        self._warned_unawaited = False
        self._source_failure_logged = False
        known = {id(rules): rules for rules in _optional(self.source, "known_sites")().values()}
        for rules in known.values():
            self.check_rules(rules)
        if self._layering is not None:
            self._layering.schedule_all(known.values())

    def check_rules(self, rules: SiteRules) -> None:
        """Warn once per site about rules this filter cannot apply."""
        site = rules.site_id or rules.id
        if rules.excluded_countries and self.geoip is None and site not in self._warned:
            self._warned.add(site)
            logger.warning(
                "site %s excludes countries %s but no GeoIP database is loaded: "
                "country rules are skipped",
                site,
                ",".join(sorted(rules.excluded_countries)),
                extra={"site": site},
            )
        if rules.excluded_asns and self.asn_db is None and ("asn", site) not in self._warned:
            self._warned.add(("asn", site))
            logger.warning(
                "site %s excludes ASNs %s but no ASN database is loaded: ASN rules are skipped",
                site,
                ",".join(str(asn) for asn in sorted(rules.excluded_asns)),
                extra={"site": site},
            )

    def should_track(  # noqa: PLR0912, PLR0915
        self,
        site: object,
        ip: object,
        ua: object,
        *,
        path: object = None,
        hostname: object = None,
    ) -> Decision:
        """Whether to track the hit of ``site`` from ``ip`` with user agent ``ua``, on page
        ``path`` of ``hostname`` (None: not known, so not excluded by those rules), and why.

        One flat function of early returns, cheapest check first (see the module docstring
        for odd input); its branches are kept inline because every call costs on this path.
        Never raises: every ``except`` below is free until something is raised, and the
        slow paths they lead to read odd values safely. Inside a running event loop, use
        ``await adecide(...)``: this call never waits for a cold site's rules.
        """
        try:
            rules = self._rules_for(site)  # type: ignore[arg-type]
        except Exception:  # an odd site id (unhashable, hostile, ...): the slow path reads it
            rules = None
        if rules is None:
            found = self._resolve(site)
            if not isinstance(found, SiteRules):
                return found
            rules = found
        if _decision_of_hit is not None:  # the compiled reader: the address, then the caches
            decision = _decision_of_hit(
                rules, self._layers_key, ip, ua, path, hostname, self._bot_verdicts
            )
            if decision is not None:
                if decision is not False:
                    return decision  # type: ignore[return-value]
                # not plain text, or the layers not built yet
                return self._decide_slowly(rules, ip, ua, path=path, hostname=hostname)
            # None: the address passed; a check after it was not in a cache (made below)
        elif rules.needs_ip:
            table = rules.excluded_ips
            if rules.needs_layers:  # IPs, countries and ASNs in one table, once ready
                layered = rules.country_layers.get(self._layers_key)
                if layered is None:
                    return self._decide_unlayered(rules, ip, ua, path=path, hostname=hostname)
                table = layered
            try:
                if ":" in ip:  # type: ignore[operator]
                    packed = _inet_pton(_AF_INET6, ip)  # type: ignore[arg-type]
                    is_v4 = packed.startswith(MAPPED_PACKED_PREFIX)
                    if is_v4:  # ::ffff:a.b.c.d is a.b.c.d
                        packed = packed[12:]
                else:
                    packed = _inet_pton(_AF_INET, ip)  # type: ignore[arg-type]
                    is_v4 = True
            except Exception:  # not plain address text: the lenient read, never raising
                return self._decide_address(rules, table, ip, ua, path=path, hostname=hostname)
            # An inline copy of AddressTable.layer_of_packed (the layout: _layout), pinned
            # to it by tests/test_layout.py::test_inline_lookups_agree_with_layer_of_packed.
            if is_v4:
                buckets, shift = table.buckets4, table.shift4
            else:
                buckets, shift = table.buckets6, table.shift6
            if shift < 0:  # a tag: WIDE (two-byte index), or COMPACT (bounds as ints)
                if shift != WIDE:
                    return self._decide_compact(
                        rules, table, packed, ua, path=path, hostname=hostname
                    )
                bucket = buckets[packed[0] << 8 | packed[1]]
            else:  # a shift: FLAT or BY_BYTE
                bucket = buckets[packed[0] >> shift]
            index = bisect_right(bucket, packed)
            if index & 1:  # inside an interval: its end's LAYER_BYTE names the layer
                return _EXCLUSIONS[bucket[index][-1]]
        if rules.has_patterns:  # paths, hostnames, user agents; each None when the site has none
            matcher = rules.excluded_paths
            if matcher is not None and path is not None:
                try:  # its cache, directly, for exact text only: a str subclass's __hash__
                    # and __eq__ could lie their way to another string's verdict
                    matched = matcher.verdicts[path] if type(path) is str else matcher.matches(path)
                except Exception:  # a miss; matches never raises
                    matched = matcher.matches(path)
                if matched:
                    return EXCLUDED_PATH
            matcher = rules.excluded_hostnames
            if matcher is not None and hostname is not None:
                try:
                    matched = (
                        matcher.verdicts[hostname]
                        if type(hostname) is str
                        else matcher.matches(hostname)
                    )
                except Exception:
                    matched = matcher.matches(hostname)
                if matched:
                    return EXCLUDED_HOSTNAME
            agents = rules.excluded_user_agents
            if agents is not None:
                try:
                    matched = agents.verdicts[ua] if type(ua) is str else agents.matches(ua)
                except Exception:
                    matched = agents.matches(ua)
                if matched:
                    return EXCLUDED_USER_AGENT
        if rules.block_bots:
            try:  # the detector's cache, read directly, for exact text only
                verdict = self._bot_verdicts[ua] if type(ua) is str else self._bot_verdict(ua)
            except Exception:  # a miss; verdict never raises
                verdict = self._bot_verdict(ua)
            if verdict:  # a bot family; "" is a person
                return BOT
        return TRACKED

    def _decide_slowly(
        self, rules: SiteRules, ip: object, ua: object, *, path: object, hostname: object
    ) -> Decision:
        """``should_track`` after the compiled reader did not answer: the site's layered
        table is not built yet, or the address is not plain text (the lenient read), or
        ``needs_ip`` is not a bool (read as the pure path reads it)."""
        if not rules.needs_ip:
            return self._decide_after_address(rules, ua, path, hostname)
        table = rules.excluded_ips
        if rules.needs_layers:
            layered = rules.country_layers.get(self._layers_key)
            if layered is None:
                return self._decide_unlayered(rules, ip, ua, path=path, hostname=hostname)
            table = layered
        return self._decide_address(rules, table, ip, ua, path=path, hostname=hostname)

    def _decide_address(
        self,
        rules: SiteRules,
        table: AddressTable,
        ip: object,
        ua: object,
        *,
        path: object = None,
        hostname: object = None,
    ) -> Decision:
        """``should_track`` for an address that is not plain text (the lenient read) in the
        site's table (layered or not), and the checks after it."""
        address = _read_hit_address(ip)
        if address is None:
            return INVALID_IP
        layer = table.layer_of_packed(pack_address(address))
        if layer is not None:
            return _EXCLUSIONS[layer]
        return self._decide_after_address(rules, ua, path, hostname)

    def _decide_unlayered(
        self,
        rules: SiteRules,
        ip: object,
        ua: object,
        *,
        path: object = None,
        hostname: object = None,
    ) -> Decision:
        """``should_track`` for a site with country or ASN rules whose layered table is not
        built yet: have it built in the background, and meanwhile read the address, and check
        the IP table, then the countries' table and the ASNs' table (or the address's record
        in each database)."""
        if self._layering is not None:
            self._layering.schedule(rules)
        address = _read_hit_address(ip)
        if address is None:
            return INVALID_IP
        is_v4, packed = address[0] == V4, pack_address(address)
        if rules.excluded_ips.contains_packed(packed):
            return EXCLUDED_IP
        if _in_records(self.geoip, rules.excluded_countries, is_v4, packed):
            return EXCLUDED_COUNTRY
        if _in_records(self.asn_db, rules.excluded_asns, is_v4, packed):
            return EXCLUDED_ASN
        return self._decide_after_address(rules, ua, path, hostname)

    def _decide_compact(
        self,
        rules: SiteRules,
        table: AddressTable,
        packed: bytes,
        ua: object,
        *,
        path: object = None,
        hostname: object = None,
    ) -> Decision:
        """``should_track`` after the address is read, for a compact IPv4 table: the compact
        reader is ``AddressTable.layer_of_packed`` itself."""
        layer = table.layer_of_packed(packed)
        if layer is not None:
            return _EXCLUSIONS[layer]
        return self._decide_after_address(rules, ua, path, hostname)

    def _decide_after_address(
        self, rules: SiteRules, ua: object, path: object, hostname: object
    ) -> Decision:
        """The checks of ``should_track`` after the address rules, for its slow paths: path,
        hostname and user-agent rules, then bots."""
        paths, hostnames = rules.excluded_paths, rules.excluded_hostnames
        if paths is not None and path is not None and paths.matches(path):
            return EXCLUDED_PATH
        if hostnames is not None and hostname is not None and hostnames.matches(hostname):
            return EXCLUDED_HOSTNAME
        if rules.excluded_user_agents is not None and rules.excluded_user_agents.matches(ua):
            return EXCLUDED_USER_AGENT
        return BOT if rules.block_bots and self.bots.is_bot(ua) else TRACKED

    def prepare(self, rules: SiteRules) -> bool:
        """Layer a site's country and ASN rules into its IP table now, rather than in the
        background after its first hit; whether its hits are now answered by one search."""
        if not rules.needs_layers:
            return True
        return self._layering is not None and self._layering.layer(rules) is not None

    def _resolve(self, site: object) -> SiteRules | Decision:
        """The slow path after a miss: the canonical id (none: an unknown site, the source
        is not asked), its rules at hand, then the source's ``resolve``."""
        kind = type(site)  # plain text or int, the usual case, without one more call
        canonical = canonical_site_id(site) if kind is str or kind is int else _canonical_site(site)
        if canonical is None:
            return self._unknown
        if canonical is not site:  # another spelling: its rules may be at hand after all
            try:
                rules = self._rules_for(canonical)
            except Exception:  # a source's read must not break the hot path: ask resolve
                rules = None
            if rules is not None:
                return rules
        try:
            found = self.source.resolve(canonical)
            rules = found if isinstance(found, SiteRules) else None  # __class__ may raise
            cause = found if isinstance(found, Reason) else None
        except Exception:  # a source must not break the hot path; count it as unavailable
            self._log_source_failure(canonical)
            return self._unavailable[Reason.rules_unavailable]
        if rules is not None:
            self.check_rules(rules)
            return rules
        if found is None:
            return self._unknown
        decision = None if cause is None else self._unavailable.get(cause)
        if decision is None:  # an answer the protocol does not name: the source is broken
            self._log_source_failure(canonical, found)
            decision = self._unavailable[Reason.rules_unavailable]
        if not self._warned_unawaited and not _AWAITED.get():
            self._warn_if_in_event_loop()
        return decision

    def _log_source_failure(self, site: str, answer: object = None) -> None:
        """Log the first failure of the source (not one per hit: it may fail for each)."""
        if self._source_failure_logged:
            return
        self._source_failure_logged = True
        if answer is None:
            logger.exception(
                "rules source failed to resolve site %s (logged once)", site, extra={"site": site}
            )
        else:
            logger.error(
                "rules source answered %r for site %s (logged once)",
                answer,
                site,
                extra={"site": site},
            )

    def _warn_if_in_event_loop(self) -> None:
        """Warn once when ``should_track`` met a site without rules at hand inside a running
        event loop: the caller should have awaited ``adecide``."""
        if _get_running_loop() is None:  # asyncio's own check, without raising
            return
        self._warned_unawaited = True
        message = (
            "EdgeFilter.should_track met a site whose rules are not at hand inside a running "
            "event loop, where it never waits for them; use await edge_filter.adecide(site, "
            "ip, ua) (warned once per EdgeFilter)"
        )
        try:
            warnings.warn(message, RuntimeWarning, stacklevel=4)
        except Exception:  # warnings made errors: the hot path still never raises
            logger.warning("%s", message)

    async def adecide(
        self,
        site: object,
        ip: object,
        ua: object,
        *,
        path: object = None,
        hostname: object = None,
    ) -> Decision:
        """``should_track`` for async callers: for a site whose rules are not at hand, await
        the source's ``aensure`` (up to its ``cold_wait``) without blocking the event loop,
        then decide. Never raises (a cancelled task is still cancelled)."""
        try:
            at_hand = self._rules_for(site) is not None  # type: ignore[arg-type]
        except Exception:
            at_hand = False
        if at_hand:
            return self.should_track(site, ip, ua, path=path, hostname=hostname)
        canonical = _canonical_site(site)
        if canonical is None:
            return self._unknown
        try:
            cold = self._rules_for(canonical) is None
            if cold:
                await self._aensure_source(canonical, self._cold_wait)
        except Exception:  # the decision below says what the source has
            self._log_source_failure(canonical)
        token = _AWAITED.set(True)
        try:
            return self.should_track(canonical, ip, ua, path=path, hostname=hostname)
        finally:
            _AWAITED.reset(token)

    async def aensure(self, site: object, timeout: float | None = None) -> None:
        """Await (up to ``timeout``) until the source has ``site``'s rules at hand, or has
        failed to get them; the async way to warm a site. Not a site id: returns at once."""
        canonical = _canonical_site(site)
        if canonical is not None:
            await self._aensure_source(canonical, timeout)

    def decide_many(
        self,
        hits: Iterable[Sequence[object]] = _NO_HITS,
        *,
        sites: Sequence[object] | None = None,
        ips: Sequence[object] | None = None,
        uas: Sequence[object] | None = None,
        paths: Sequence[object] | None = None,
        hostnames: Sequence[object] | None = None,
    ) -> list[Decision]:
        """``should_track`` for many hits, the answers in order: ``hits`` as tuples ``(site,
        ip, ua)`` or ``(site, ip, ua, path, hostname)``, or parallel sequences ``sites``,
        ``ips``, ``uas`` (and ``paths``, ``hostnames``) of one length.

        Each answer is the one ``should_track`` gives for that hit; a batch reads each
        site's rules once, on its first hit, so a backfill is decided against the rules of
        now, not those in force when its hits happened. Never waits for a cold site (see
        ``adecide_many``). A hit of another shape, or sequences of unequal lengths, are a
        ``ValueError`` naming them (the answers themselves never raise).
        """
        return self._decide_rows(
            _rows(hits, sites=sites, ips=ips, uas=uas, paths=paths, hostnames=hostnames)
        )

    async def adecide_many(
        self,
        hits: Iterable[Sequence[object]] = _NO_HITS,
        *,
        sites: Sequence[object] | None = None,
        ips: Sequence[object] | None = None,
        uas: Sequence[object] | None = None,
        paths: Sequence[object] | None = None,
        hostnames: Sequence[object] | None = None,
    ) -> list[Decision]:
        """``decide_many`` for async callers: first await the source's ``aensure`` (up to its
        ``cold_wait``) once for each cold site of the batch, all at once, then decide."""
        rows = list(_rows(hits, sites=sites, ips=ips, uas=uas, paths=paths, hostnames=hostnames))
        cold: set[str] = set()
        for row in rows:
            try:
                site = row[0]
            except Exception:  # not a hit at all: _decide_rows names it in its ValueError
                continue
            try:
                at_hand = self._rules_for(site) is not None  # type: ignore[arg-type]
            except Exception:
                at_hand = False
            if not at_hand:
                canonical = _canonical_site(site)
                if canonical is not None and self._rules_for(canonical) is None:
                    cold.add(canonical)
        waits = [self._aensure_source(site, self._cold_wait) for site in sorted(cold)]
        for site, outcome in zip(
            sorted(cold), await asyncio.gather(*waits, return_exceptions=True), strict=True
        ):
            if isinstance(outcome, Exception):  # the decisions say what the source has
                self._log_source_failure(site)
        token = _AWAITED.set(True)
        try:
            return self._decide_rows(rows)
        finally:
            _AWAITED.reset(token)

    def _decide_rows(self, rows: Iterable[Sequence[object]]) -> list[Decision]:  # noqa: PLR0912
        """The loop of ``decide_many`` over ``(site, ip, ua)`` or ``(site, ip, ua, path,
        hostname)`` rows: with the compiled reader, a site whose rules need no more than its
        table and bots is decided here, one call of the reader a hit (C when compiled); any
        other hit by ``should_track`` itself."""
        layer_of_text = pure_layer_of_text if _layer_of_text is None else _layer_of_text
        should_track = self.should_track
        plans: dict[str, tuple[AddressTable | None, bool] | None] = {}
        verdicts, bot_verdict = self._bot_verdicts, self._bot_verdict
        answers: list[Decision] = []
        append = answers.append
        for row in rows:
            try:
                size = len(row)
            except TypeError:  # not a sequence at all: the ValueError below names it
                size = 0
            if size == 3:
                site, ip, ua = row
                path = hostname = None
            elif size == 5:
                site, ip, ua, path, hostname = row
            else:
                raise ValueError(
                    f"hit {row!r} is neither (site, ip, ua) nor (site, ip, ua, path, hostname)"
                )
            plan = None
            if type(site) is str:
                try:
                    plan = plans[site]
                except KeyError:
                    plan = plans[site] = self._plan(site)
            if plan is None:
                append(should_track(site, ip, ua, path=path, hostname=hostname))
                continue
            table, block_bots = plan
            if table is not None:
                layer = layer_of_text(table, ip)
                if layer >= 0:
                    append(_EXCLUSIONS[layer])
                    continue
                if layer != OUTSIDE_LAYER:  # not plain address text: the lenient read
                    append(should_track(site, ip, ua, path=path, hostname=hostname))
                    continue
            if block_bots:
                try:  # the detector's cache, for exact text only
                    verdict = verdicts[ua] if type(ua) is str else bot_verdict(ua)
                except Exception:
                    verdict = bot_verdict(ua)
                if verdict:
                    append(BOT)
                    continue
            append(TRACKED)
        return answers

    def _plan(self, site: str) -> tuple[AddressTable | None, bool] | None:
        """What ``_decide_rows`` needs of a site decided in its loop: the table to search
        (None: the address is not read) and whether it blocks bots; None for a site that
        ``should_track`` decides (no rules at hand, patterns, layers not built yet)."""
        try:
            rules = self._rules_for(site)
        except Exception:
            return None
        if rules is None or rules.has_patterns:
            return None
        if not rules.needs_ip:
            return None, rules.block_bots
        table: AddressTable | None = rules.excluded_ips
        if rules.needs_layers:
            table = rules.country_layers.get(self._layers_key)
            if table is None:
                return None
        return table, rules.block_bots


def _rows(
    hits: Iterable[Sequence[object]],
    *,
    sites: Sequence[object] | None,
    ips: Sequence[object] | None,
    uas: Sequence[object] | None,
    paths: Sequence[object] | None,
    hostnames: Sequence[object] | None,
) -> Iterable[Sequence[object]]:
    """The rows of ``decide_many``'s arguments: the hits, or the columns zipped."""
    if sites is None and ips is None and uas is None and paths is None and hostnames is None:
        try:
            return iter(hits)
        except TypeError:
            raise ValueError(
                f"decide_many takes hits as an iterable of tuples, not {hits!r}"
            ) from None
    if hits is not _NO_HITS or sites is None or ips is None or uas is None:
        raise ValueError(
            "decide_many takes hits as tuples, or sites, ips and uas (and paths, hostnames) "
            "as parallel sequences, not both"
        )
    columns = [sites, ips, uas, *(column for column in (paths, hostnames) if column is not None)]
    lengths = [len(column) for column in columns]
    if len(set(lengths)) > 1:
        raise ValueError(f"decide_many's sequences have unequal lengths {lengths}")
    if paths is None and hostnames is None:
        return zip(sites, ips, uas, strict=True)
    nothing = repeat(None, lengths[0])
    return zip(
        sites,
        ips,
        uas,
        nothing if paths is None else paths,
        nothing if hostnames is None else hostnames,
        strict=True,
    )


def _as_source(
    source: Mapping[str, SiteConfig | SiteRules] | RulesSource, *, compact_tables: bool | None
) -> RulesSource:
    """The ``RulesSource`` behind ``EdgeFilter(source)``: a mapping is compiled."""
    if isinstance(source, Mapping):
        return StaticRules(source, compact_tables=compact_tables)
    missing = [name for name in ("rules_for", "resolve") if not hasattr(source, name)]
    if missing:
        raise ConfigError(
            f"source {source!r} is neither a mapping of site ids nor a RulesSource: "
            f"it has no {' and no '.join(missing)}"
        )
    if compact_tables:
        raise ConfigError(
            "compact_tables=True applies to a mapping of sites only; pass compact_tables "
            "to the source instead, e.g. RulesCache(client, compact_tables=True)"
        )
    return source


def _in_records(
    resolver: RecordResolver[Any] | None, keys: frozenset[Any], is_v4: bool, packed: bytes
) -> bool:
    """Whether the address's record has one of ``keys`` (countries, ASNs): their table if the
    walk has ended, else the record itself. False without keys or without a database."""
    if not keys or resolver is None:
        return False
    table = resolver.table_for(keys)
    if table is not None:
        return table.contains_packed(packed)
    return resolver.lookup(_inet_ntop(_AF_INET if is_v4 else _AF_INET6, packed)) in keys


def _optional(source: RulesSource, name: str) -> Any:
    """An optional member of ``source``, bound; ``RulesSource``'s default when it has none."""
    try:
        return getattr(source, name)
    except AttributeError:
        return getattr(RulesSource, name).__get__(source)


def _cold_wait(source: RulesSource) -> float:
    """The source's ``cold_wait``, checked: a number of seconds, at least 0."""
    wait = getattr(source, "cold_wait", DEFAULT_COLD_WAIT)
    if isinstance(wait, bool) or not isinstance(wait, int | float) or not wait >= 0:
        raise ConfigError(f"cold_wait {wait!r} of the source is not a number of seconds >= 0")
    return float(wait)


def _as_resolver(option: object, name: str, kind: type[R]) -> R | None:
    """The resolver behind ``EdgeFilter(geoip=...)`` or ``asn_db=...``: a path is opened."""
    if option is None or isinstance(option, kind):
        return option
    if isinstance(option, str | bytes | os.PathLike):
        return kind(option)
    raise ConfigError(f"{name} {option!r} is not a path to a .mmdb database nor a {kind.__name__}")
