"""The hot path: decisions, their precedence, and odd input."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import re
import threading
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import maxminddb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgefilter import (
    AddressTable,
    BotDetector,
    ConfigError,
    CountryResolver,
    Decision,
    EdgeFilter,
    Reason,
    RulesSource,
    SiteConfig,
    SiteRules,
    compile_rules,
)
from edgefilter._layers import CountryLayering

from .conftest import CHROME, GOOGLEBOT
from .oracle import Address, fold, naive_excluded
from .strategies import addresses, entries

CN_ADDRESS = "175.16.199.10"  # CN in the test database
US_ADDRESS = "216.160.83.56"  # US in the test database

SITE = SiteConfig(
    site_id=1,
    id="a1b2c3d4e5f6",
    block_bots=True,
    excluded_ips=("175.16.199.0/25", "2001:db8::/32", "10.0.0.1"),
    excluded_countries=("CN", "ru"),
)
OPEN_SITE = SiteConfig(site_id=2, block_bots=False)


@pytest.fixture(params=["layered", "layered compact", "country tables", "direct lookups"])
def edge_filter(
    request: pytest.FixtureRequest, city_db: Path, monkeypatch: pytest.MonkeyPatch
) -> EdgeFilter:
    """A filter over SITE and OPEN_SITE with the test GeoIP database, every country path:
    IPs and countries in one layered table, the two tables apart, records decoded."""
    compiled = request.param != "direct lookups"
    if not request.param.startswith("layered"):  # no table is small enough to layer
        monkeypatch.setattr("edgefilter._layers.MAX_LAYERED_COUNTRY_BOUNDS", -1)
    resolver = CountryResolver(city_db, compile_tables=compiled)
    assert not compiled or resolver.wait_compiled(timeout=30)
    compact = request.param == "layered compact"
    rules = {"1": compile_rules(SITE, compact=compact), "2": compile_rules(OPEN_SITE)}
    edge_filter = EdgeFilter(rules, geoip=resolver)
    assert edge_filter.prepare(rules["1"]) is request.param.startswith("layered")
    return edge_filter


@pytest.mark.parametrize(
    ("site", "ip", "ua", "reason"),
    [
        # tracked
        ("1", US_ADDRESS, CHROME, Reason.tracked),
        ("1", "2001:218::1", CHROME, Reason.tracked),
        # excluded IP, in every text form of the address
        ("1", "10.0.0.1", CHROME, Reason.excluded_ip),
        ("1", "::ffff:10.0.0.1", CHROME, Reason.excluded_ip),
        ("1", "::FFFF:a00:1", CHROME, Reason.excluded_ip),
        ("1", "2001:DB8::42", CHROME, Reason.excluded_ip),
        ("1", " 10.0.0.1 ", CHROME, Reason.excluded_ip),
        ("1", b"10.0.0.1", CHROME, Reason.excluded_ip),
        ("1", "[2001:db8::1]", CHROME, Reason.excluded_ip),
        # excluded country, IPv4, mapped and IPv6 (RU given in lower case)
        ("1", "175.16.199.200", CHROME, Reason.excluded_country),
        ("1", "::ffff:175.16.199.200", CHROME, Reason.excluded_country),
        ("1", "2a02:d0c0::1", CHROME, Reason.excluded_country),
        # bots; an empty or missing user agent is a bot
        ("1", US_ADDRESS, GOOGLEBOT, Reason.bot),
        ("1", US_ADDRESS, "", Reason.bot),
        ("1", US_ADDRESS, None, Reason.bot),
        # precedence: IP, then country, then bot
        ("1", CN_ADDRESS, GOOGLEBOT, Reason.excluded_ip),
        ("1", "175.16.199.200", GOOGLEBOT, Reason.excluded_country),
        # the address cannot be read while a rule needs it
        ("1", None, CHROME, Reason.invalid_ip),
        ("1", "not an ip", CHROME, Reason.invalid_ip),
        ("1", "1.2.3.4.5", GOOGLEBOT, Reason.invalid_ip),
        # a site without rules does not read the address nor the user agent
        ("2", None, None, Reason.tracked),
        ("2", CN_ADDRESS, GOOGLEBOT, Reason.tracked),
        # site ids: numeric, 12-hex, int
        ("a1b2c3d4e5f6", "10.0.0.1", CHROME, Reason.excluded_ip),
        (1, "10.0.0.1", CHROME, Reason.excluded_ip),
        ("3", US_ADDRESS, CHROME, Reason.unknown_site),
        (None, US_ADDRESS, CHROME, Reason.unknown_site),
        (["1"], US_ADDRESS, CHROME, Reason.unknown_site),
        (True, US_ADDRESS, CHROME, Reason.unknown_site),
    ],
)
def test_decisions(
    edge_filter: EdgeFilter, site: object, ip: object, ua: object, reason: Reason
) -> None:
    """Each hit gets the documented reason, tracked only when the reason is ``tracked``;
    asked twice, the second time from the caches the first one filled."""
    for _ in range(2):
        decision = edge_filter.should_track(site, ip, ua)
        assert decision.reason is reason
        assert bool(decision) is decision.tracked is (reason is Reason.tracked)


LAYER_HITS = [
    (CN_ADDRESS, Reason.excluded_ip),
    ("175.16.199.200", Reason.excluded_country),
    (US_ADDRESS, Reason.tracked),
    ("2a02:d0c0::1", Reason.excluded_country),
]


class ResolvingSource:
    """A live-like source: nothing at hand, every site resolved on its first hit."""

    def __init__(self, rules: SiteRules) -> None:
        self.rules = rules
        self.rules_for: Callable[[str], SiteRules | None] = {}.get

    def resolve(self, site: str) -> SiteRules | Reason | None:
        return self.rules if site == "1" else None


@pytest.mark.parametrize("limit", [0, 4_096])
def test_country_rules_are_layered_into_the_ip_table_within_the_limit(
    city_db: Path, monkeypatch: pytest.MonkeyPatch, limit: int
) -> None:
    """Once the walk is done a site's IPs and countries become one table, unless the
    countries' table is over the limit; the decisions are the same either way."""
    monkeypatch.setattr("edgefilter._layers.MAX_LAYERED_COUNTRY_BOUNDS", limit)
    resolver = CountryResolver(city_db)
    assert resolver.wait_compiled(timeout=30)
    rules = compile_rules(SITE)
    edge_filter = EdgeFilter(ResolvingSource(rules), geoip=resolver)
    for ip, reason in LAYER_HITS:
        assert edge_filter.should_track("1", ip, CHROME).reason is reason
    assert edge_filter.prepare(rules) is (limit > 0)
    assert (resolver in rules.country_layers) is (limit > 0)
    for ip, reason in LAYER_HITS:
        assert edge_filter.should_track("1", ip, CHROME).reason is reason


@pytest.mark.parametrize("static", [True, False])
def test_sites_are_layered_in_the_background(
    city_db: Path, static: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fixed source's sites are layered once the walk ends; a live source's site after
    its first hit. No hit waits for it: the first one is answered while layering is held."""
    hit_thread = threading.current_thread()
    release, built = threading.Event(), threading.Event()
    layered_on: list[threading.Thread] = []
    layer = CountryLayering.layer

    def held_layer(self: CountryLayering, rules: SiteRules) -> AddressTable | None:
        layered_on.append(threading.current_thread())
        if threading.current_thread() is not hit_thread:  # never block the hit itself
            release.wait()
        try:
            return layer(self, rules)
        finally:
            built.set()

    monkeypatch.setattr(CountryLayering, "layer", held_layer)
    resolver = CountryResolver(city_db)
    assert resolver.wait_compiled(timeout=30)
    rules = compile_rules(SITE)
    source = {"1": rules} if static else ResolvingSource(rules)
    edge_filter = EdgeFilter(source, geoip=resolver)
    assert edge_filter.should_track("1", CN_ADDRESS, CHROME).reason is Reason.excluded_ip
    assert edge_filter.should_track("1", "175.16.199.200", CHROME).reason is (
        Reason.excluded_country
    )
    assert resolver not in rules.country_layers  # answered while the layering is held
    assert hit_thread not in layered_on
    release.set()
    assert built.wait(timeout=30)  # a safety net for a hang, not a timing
    assert resolver in rules.country_layers
    assert hit_thread not in layered_on


def test_a_site_without_a_geoip_database_is_never_layered() -> None:
    """No database: nothing to layer, and ``prepare`` says so."""
    rules = compile_rules(SITE)
    edge_filter = EdgeFilter({"1": rules})
    assert edge_filter.prepare(rules) is False
    assert edge_filter.prepare(compile_rules(OPEN_SITE)) is True
    assert rules.country_layers == {}


def test_unknown_sites_can_be_tracked() -> None:
    """``track_unknown_sites=True`` flips the unknown-site decision."""
    decision = EdgeFilter({}, track_unknown_sites=True).should_track("9", "1.2.3.4", CHROME)
    assert decision == Decision(True, Reason.unknown_site)


def test_precompiled_rules_are_accepted() -> None:
    """A mapping may hold compiled SiteRules as well as SiteConfig."""
    rules = compile_rules(SiteConfig(excluded_ips=("1.2.3.4",)))
    assert (
        EdgeFilter({"7": rules}).should_track("7", "1.2.3.4", CHROME).reason is Reason.excluded_ip
    )


def test_country_rules_without_geoip_warn_once_and_are_skipped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No database: one warning for the site, and its country rules do not apply."""
    with caplog.at_level(logging.WARNING, logger="edgefilter"):
        edge_filter = EdgeFilter({"1": SITE})
        edge_filter.check_rules(edge_filter.source.rules_for("1"))  # type: ignore[arg-type]
    assert caplog.text.count("no GeoIP database") == 1
    assert edge_filter.should_track("1", "175.16.199.200", CHROME).reason is Reason.tracked


def test_geoip_accepts_a_resolver(city_db: Path) -> None:
    """``geoip`` may be an open CountryResolver instead of a path."""
    with CountryResolver(city_db) as resolver:
        edge_filter = EdgeFilter({"1": SITE}, geoip=resolver)
        decision = edge_filter.should_track("1", "175.16.199.200", CHROME)
        assert decision.reason is Reason.excluded_country


def test_custom_bot_detector_is_used() -> None:
    """``bots`` replaces the default detector."""

    class EveryoneIsABot(BotDetector):
        def detect(self, ua: str) -> str | None:
            return "crawler"

    edge_filter = EdgeFilter({"1": SiteRules(block_bots=True)}, bots=EveryoneIsABot())
    assert edge_filter.should_track("1", "1.2.3.4", CHROME).reason is Reason.bot


@pytest.mark.parametrize("compact", [False, True])
@pytest.mark.parametrize("count", [100, 3_000, 30_000])
def test_large_sites_decide_as_a_set_of_networks(count: int, compact: bool) -> None:
    """Sites big enough for each kind of first-level index (none, one byte, two bytes), and
    compact ones, decide as a plain set of their /24 networks does."""
    rng = random.Random(count)
    networks = {rng.getrandbits(24) for _ in range(count)}
    entries = tuple(f"{ipaddress.IPv4Address(network << 8)}/24" for network in networks)
    edge_filter = EdgeFilter({"1": SiteConfig(excluded_ips=entries)}, compact_tables=compact)
    probes = [rng.getrandbits(32) for _ in range(2_000)]
    probes += [network << 8 | edge for network in list(networks)[:500] for edge in (0, 255)]
    probes += [(network << 8) - 1 for network in list(networks)[:500] if network]
    for value in probes:
        excluded = value >> 8 in networks
        decision = edge_filter.should_track("1", str(ipaddress.IPv4Address(value)), CHROME)
        assert decision.reason is (Reason.excluded_ip if excluded else Reason.tracked), value


def _geo_hits(city_db: Path) -> list[str]:
    """The first and last address of every network in the test database."""
    with maxminddb.open_database(str(city_db)) as reader:
        return [str(address) for network, _ in reader for address in (network[0], network[-1])]


GEO_CITY_DB = Path(__file__).resolve().parents[1] / "data" / "geo" / "GeoLite2-City-Test.mmdb"
GEO_COUNTRIES = ("CN", "RU", "GB", "US", "SE", "JP", "BT", "PH")


def _geo_networks(city_db: Path) -> list[str]:
    """Every network of the test database, as an excluded-IP entry."""
    with maxminddb.open_database(str(city_db)) as reader:
        return [str(network) for network, _ in reader]


@settings(max_examples=40)  # four filters per example
@given(
    st.lists(st.one_of(entries, st.sampled_from(_geo_networks(GEO_CITY_DB))), max_size=12),
    st.lists(st.sampled_from(GEO_COUNTRIES), max_size=3),
    st.lists(st.one_of(addresses, st.sampled_from(_geo_hits(GEO_CITY_DB))), max_size=12),
)
def test_every_country_path_decides_as_ipaddress_and_maxminddb(
    excluded: list[str], countries: list[str], hits: list[str]
) -> None:
    """Layered, layered compact, apart, and record lookups all decide each hit as a scan of
    the entries with ``ipaddress`` and a ``maxminddb`` record lookup do."""
    config = SiteConfig(excluded_ips=tuple(excluded), excluded_countries=tuple(countries))
    filters = _country_path_filters(config)
    never_layer = mock.patch("edgefilter._layers.MAX_LAYERED_COUNTRY_BOUNDS", -1)
    with never_layer, maxminddb.open_database(str(GEO_CITY_DB)) as reader:
        for hit in hits:
            address = ipaddress.ip_address(hit)
            if naive_excluded(excluded, address):
                expected = Reason.excluded_ip
            elif _country_of(reader, fold(address)) in countries:
                expected = Reason.excluded_country
            else:
                expected = Reason.tracked
            for name, edge_filter in filters.items():
                assert edge_filter.should_track("1", hit, CHROME).reason is expected, (name, hit)
    apart = filters["apart"].source
    assert isinstance(apart, ResolvingSource) and not apart.rules.country_layers


def _country_of(reader: maxminddb.Reader, address: Address) -> str | None:
    record = reader.get(str(address))
    try:
        return record["country"]["iso_code"]  # type: ignore[index,call-overload,no-any-return]
    except (KeyError, TypeError):
        return None


_RESOLVERS: dict[bool, CountryResolver] = {}


def _country_path_filters(config: SiteConfig) -> dict[str, EdgeFilter]:
    """One filter per way of answering country rules, over the same config."""
    for compiled in (True, False):
        if compiled not in _RESOLVERS:
            _RESOLVERS[compiled] = CountryResolver(GEO_CITY_DB, compile_tables=compiled)
            assert _RESOLVERS[compiled].wait_compiled(timeout=30) is compiled
    filters = {}
    for name, compact in (("layered", False), ("layered compact", True)):
        rules = compile_rules(config, compact=compact)
        filters[name] = EdgeFilter({"1": rules}, geoip=_RESOLVERS[True])
        assert filters[name].prepare(rules)
    # A live-like source is never layered ahead; the caller keeps hits from layering it.
    filters["apart"] = EdgeFilter(ResolvingSource(compile_rules(config)), geoip=_RESOLVERS[True])
    filters["records"] = EdgeFilter({"1": compile_rules(config)}, geoip=_RESOLVERS[False])
    return filters


# --- geoip paths ------------------------------------------------------------------------


class FsPath:
    """An os.PathLike that is not a pathlib.Path."""

    def __init__(self, path: Path, *, as_bytes: bool = False) -> None:
        self.path, self.as_bytes = path, as_bytes

    def __fspath__(self) -> str | bytes:
        return bytes(self.path) if self.as_bytes else str(self.path)


@pytest.mark.parametrize(
    "path",
    [
        lambda db: db,
        str,
        bytes,
        FsPath,
        lambda db: FsPath(db, as_bytes=True),
    ],
    ids=["Path", "str", "bytes", "PathLike", "PathLike of bytes"],
)
def test_geoip_accepts_any_path(city_db: Path, path: Callable[[Path], object]) -> None:
    """``geoip`` may be any path form: the reported ``Path`` made every hit raise."""
    edge_filter = EdgeFilter({"1": SITE}, geoip=path(city_db))  # type: ignore[arg-type]
    assert isinstance(edge_filter.geoip, CountryResolver)
    assert edge_filter.geoip.path == str(city_db)
    decision = edge_filter.should_track("1", "175.16.199.200", CHROME)
    assert decision.reason is Reason.excluded_country


# --- site ids ---------------------------------------------------------------------------


class CountingSource(RulesSource):
    """Rules at hand for site 1; counts the ids that reach ``resolve``."""

    rules_for: Callable[[str], SiteRules | None]

    def __init__(self) -> None:
        self.rules_for = {"1": compile_rules(SITE)}.get
        self.resolved: list[str] = []

    def resolve(self, site: str) -> SiteRules | Reason | None:
        self.resolved.append(site)
        return None


EXCLUDED, UNKNOWN = Reason.excluded_ip, Reason.unknown_site


@pytest.mark.parametrize(
    ("site", "reason", "resolved"),
    [
        # another spelling of a real id: its rules, from rules_for, without resolve
        ("01", EXCLUDED, []),
        ("0" * 40 + "1", EXCLUDED, []),
        (1, EXCLUDED, []),
        # not a site id: unknown, and the source is not asked
        ("", UNKNOWN, []),
        ("1.0", UNKNOWN, []),
        ("\u0661", UNKNOWN, []),  # an Arabic-Indic digit one
        ("0" * 100 + "1", UNKNOWN, []),  # past MAX_RAW_LENGTH
        ("x" * 100_000, UNKNOWN, []),
        (-1, UNKNOWN, []),
        (2**63, UNKNOWN, []),
        (True, UNKNOWN, []),
        (None, UNKNOWN, []),
        # a real site id that the source does not have: asked in its canonical spelling
        ("0042", UNKNOWN, ["42"]),
        ("ABCDEF012345", UNKNOWN, ["abcdef012345"]),
        (42, UNKNOWN, ["42"]),
    ],
)
def test_hits_read_the_site_id_through_canonical_site_id(
    site: object, reason: Reason, resolved: list[str]
) -> None:
    """After a miss the hot path asks rules_for(canonical), then resolve(canonical), and
    asks nothing for what is not a site id."""
    source = CountingSource()
    assert EdgeFilter(source).should_track(site, "10.0.0.1", CHROME).reason is reason
    assert source.resolved == resolved


def test_static_keys_are_canonicalised() -> None:
    """A mapping's keys are read as site ids: ``"007"`` is site 7, hex any case."""
    edge_filter = EdgeFilter({"007": SITE, "ABCDEF012345": OPEN_SITE})
    assert edge_filter.should_track("7", "10.0.0.1", CHROME).reason is Reason.excluded_ip
    assert edge_filter.should_track("0007", "10.0.0.1", CHROME).reason is Reason.excluded_ip
    assert edge_filter.should_track("abcdef012345", "10.0.0.1", CHROME).reason is Reason.tracked
    assert set(edge_filter.source.known_sites()) == {"7", "1", "a1b2c3d4e5f6", "abcdef012345", "2"}


@pytest.mark.parametrize(
    ("sites", "named"),
    [
        ({"site-1": SITE}, "'site-1'"),
        ({"": SITE}, "''"),
        ({"1" * 20: SITE}, "'" + "1" * 20 + "'"),
        ({"7": SITE, "007": OPEN_SITE}, "'7' and '007'"),
    ],
)
def test_static_keys_that_are_not_one_site_id_are_refused(
    sites: dict[str, SiteConfig], named: str
) -> None:
    """A key that is not a site id, or two keys for one site: ConfigError naming them."""
    with pytest.raises(ConfigError, match=re.escape(named)):
        EdgeFilter(sites)


# --- no rules right now, by cause -------------------------------------------------------


PENDING, DOWN, REFUSED = Reason.rules_pending, Reason.rules_unavailable, Reason.rules_unauthorized
CAUSES = {"1": PENDING, "2": DOWN, "3": REFUSED}


class Unavailable(RulesSource):
    """Nothing at hand, and each site's answer is the cause named by its id."""

    rules_for = staticmethod({}.get)

    def resolve(self, site: str) -> SiteRules | Reason | None:
        return CAUSES[site]


@pytest.mark.parametrize(
    ("option", "tracked"),
    [
        (None, {PENDING: False, DOWN: True, REFUSED: True}),  # the default
        (True, {PENDING: True, DOWN: True, REFUSED: True}),
        (False, {PENDING: False, DOWN: False, REFUSED: False}),
        ({DOWN: False}, {PENDING: False, DOWN: False, REFUSED: True}),
        ({PENDING: True, REFUSED: False}, {PENDING: True, DOWN: True, REFUSED: False}),
        ({"rules_pending": True}, {PENDING: True, DOWN: True, REFUSED: True}),
    ],
)
def test_each_cause_of_no_rules_is_decided_on_its_own(
    option: object, tracked: dict[Reason, bool]
) -> None:
    """``track_when_unavailable`` is a bool for every cause or a mapping per cause; by
    default a pending site is not tracked (an excluded address must not get through) while
    an outage or a refused key fails open."""
    options = {} if option is None else {"track_when_unavailable": option}
    edge_filter = EdgeFilter(Unavailable(), **options)  # type: ignore[arg-type]
    for site, cause in CAUSES.items():
        decision = edge_filter.should_track(site, "10.0.0.1", CHROME)
        assert decision == Decision(tracked[cause], cause)
        assert edge_filter.should_track(site, "10.0.0.1", CHROME) is decision  # precomputed


@pytest.mark.parametrize(
    ("option", "named"),
    [
        ({Reason.tracked: True}, "tracked"),
        ({"rules_pendng": False}, "rules_pendng"),
        ({PENDING: "no"}, "'no'"),
        ({PENDING: 0}, "bools"),
        ("yes", "'yes'"),
        (1, "track_when_unavailable 1"),
    ],
)
def test_bad_track_when_unavailable_is_refused(option: object, named: str) -> None:
    """An unknown cause, a value that is not a bool, or neither form: ConfigError."""
    with pytest.raises(ConfigError, match=re.escape(named)) as raised:
        EdgeFilter({}, track_when_unavailable=option)  # type: ignore[arg-type]
    assert "track_when_unavailable" in str(raised.value)


class Broken(RulesSource):
    """A source that raises, or answers what the protocol does not allow."""

    rules_for = staticmethod({}.get)

    def resolve(self, site: str) -> SiteRules | Reason | None:
        if site == "1":
            raise RuntimeError("the source is broken")
        return Reason.bot  # type: ignore[return-value]


def test_a_broken_source_counts_as_unavailable_and_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A source that raises or answers another value: rules_unavailable, logged once."""
    edge_filter = EdgeFilter(Broken(), track_when_unavailable={DOWN: False})
    with caplog.at_level(logging.ERROR, logger="edgefilter"):
        for site in ("1", "2", "1", "2"):
            decision = edge_filter.should_track(site, "10.0.0.1", CHROME)
            assert decision == Decision(False, Reason.rules_unavailable)
    assert len(caplog.records) == 1


# --- the RulesSource protocol -----------------------------------------------------------


class KnownUpFront(RulesSource):
    """A custom source that lists its sites up front."""

    rules_for: Callable[[str], SiteRules | None]

    def __init__(self, rules: SiteRules) -> None:
        self.sites = {"1": rules}
        self.rules_for = self.sites.get

    def resolve(self, site: str) -> SiteRules | Reason | None:
        return None

    def known_sites(self) -> dict[str, SiteRules]:
        return self.sites


def test_sites_a_custom_source_knows_up_front_are_checked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """known_sites is checked at construction whatever the source's type: one warning."""
    with caplog.at_level(logging.WARNING, logger="edgefilter"):
        EdgeFilter(KnownUpFront(compile_rules(SITE)))
    assert caplog.text.count("no GeoIP database") == 1


def test_sites_a_custom_source_knows_up_front_are_layered(city_db: Path) -> None:
    """known_sites is layered in the background whatever the source's type."""
    built = threading.Event()
    layer = CountryLayering.layer
    rules = compile_rules(SITE)

    def layer_and_tell(self: CountryLayering, layered: SiteRules) -> AddressTable | None:
        try:
            return layer(self, layered)
        finally:  # these rules only: an earlier test's filter may still be layering its own
            if layered is rules:
                built.set()

    with mock.patch.object(CountryLayering, "layer", layer_and_tell):
        resolver = CountryResolver(city_db)
        EdgeFilter(KnownUpFront(rules), geoip=resolver)
        assert built.wait(timeout=30)  # a safety net for a hang, not a timing
    assert resolver in rules.country_layers


class Minimal(RulesSource):
    """Only what the protocol requires."""

    rules_for = staticmethod({}.get)

    def resolve(self, site: str) -> SiteRules | Reason | None:
        return compile_rules(SITE) if site == "1" else None


@pytest.mark.parametrize("source", [Minimal(), ResolvingSource(compile_rules(SITE))])
def test_optional_members_have_defaults(source: RulesSource) -> None:
    """A subclass of RulesSource, or a structural source, without cold_wait, aensure and
    known_sites works: the defaults wait for nothing and know nothing up front."""
    edge_filter = EdgeFilter(source)

    async def hit() -> Decision:
        await edge_filter.aensure("1")
        return await edge_filter.adecide("1", "10.0.0.1", CHROME)

    assert asyncio.run(hit()).reason is Reason.excluded_ip
    assert edge_filter.should_track("1", "10.0.0.1", CHROME).reason is Reason.excluded_ip
    assert Minimal().cold_wait == 0.25 and dict(Minimal().known_sites()) == {}


def test_ensure_is_named_aensure() -> None:
    """Async methods are prefixed ``a``: the old name is gone."""
    assert not hasattr(EdgeFilter, "ensure")
    assert hasattr(EdgeFilter, "aensure") and hasattr(EdgeFilter, "adecide")


# --- options ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"compact_tables": True, "source": Minimal()}, "RulesCache(client, compact_tables=True)"),
        ({"compact_tables": 1}, "compact_tables 1"),
        ({"track_unknown_sites": "no"}, "track_unknown_sites 'no'"),
        ({"geoip": 42}, "geoip 42"),
        ({"bots": object()}, "bots <object"),
        ({"source": object()}, "no rules_for and no resolve"),
        ({"source": type("Slow", (Minimal,), {"cold_wait": -1})()}, "cold_wait -1"),
    ],
)
def test_bad_options_are_refused_naming_the_option(options: dict[str, object], named: str) -> None:
    """Each option is checked at construction: ConfigError naming it."""
    source = options.pop("source", {})
    with pytest.raises(ConfigError, match=re.escape(named)):
        EdgeFilter(source, **options)  # type: ignore[arg-type]
