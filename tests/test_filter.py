"""The hot path: decisions, their precedence, and odd input."""

from __future__ import annotations

import ipaddress
import logging
import random
import time
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import maxminddb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgefilter import (
    BotDetector,
    CountryResolver,
    Decision,
    EdgeFilter,
    Reason,
    SiteConfig,
    SiteRules,
    compile_rules,
)

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
    """Each hit gets the documented reason, tracked only when the reason is ``tracked``.

    Asked twice: the first hit of a site with country rules layers its table, the second
    finds it layered.
    """
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
def test_sites_are_layered_in_the_background(city_db: Path, static: bool) -> None:
    """A fixed source's sites are layered once the walk ends; a live source's site after
    its first hit. No hit waits for it."""
    resolver = CountryResolver(city_db)
    rules = compile_rules(SITE)
    source = {"1": rules} if static else ResolvingSource(rules)
    edge_filter = EdgeFilter(source, geoip=resolver)
    assert resolver.wait_compiled(timeout=30)
    assert edge_filter.should_track("1", CN_ADDRESS, CHROME).reason is Reason.excluded_ip
    deadline = time.monotonic() + 30
    while resolver not in rules.country_layers and time.monotonic() < deadline:
        time.sleep(0.01)
    assert resolver in rules.country_layers


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
        def detect(self, ua: str) -> bool:
            return True

    edge_filter = EdgeFilter({"1": SiteRules(block_bots=True)}, bots=EveryoneIsABot())
    assert edge_filter.should_track("1", "1.2.3.4", CHROME).reason is Reason.bot


odd_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=300),
    st.binary(max_size=100),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.sampled_from(
        ["1", "a1b2c3d4e5f6", "10.0.0.1", "::ffff:10.0.0.1", "2001:db8::1", "x" * 100_000]
    ),
)


@given(odd_values, odd_values, odd_values)
def test_should_track_never_raises(city_db: Path, site: object, ip: object, ua: object) -> None:
    """Whatever it is given, should_track answers with a Decision."""
    edge_filter = _shared_filter(city_db)
    assert isinstance(edge_filter.should_track(site, ip, ua), Decision)


_FILTERS: dict[Path, EdgeFilter] = {}


def _shared_filter(city_db: Path) -> EdgeFilter:
    if city_db not in _FILTERS:
        _FILTERS[city_db] = EdgeFilter({"1": SITE, "2": OPEN_SITE}, geoip=str(city_db))
    return _FILTERS[city_db]


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
