"""Rybbit v2.7's exclusions and our ASN rules through should_track: each kind, their order."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgefilter import (
    AsnResolver,
    ConfigError,
    CountryResolver,
    EdgeFilter,
    GeoIPError,
    Reason,
    SiteConfig,
    compile_rules,
)
from edgefilter._decisions import EXCLUSION_MESSAGES

from .conftest import ASN_DB, CHROME, GOOGLEBOT

SE_AS29518 = "89.160.20.129"  # SE in the City test database, AS29518 in the ASN one
US_AS209 = "216.160.83.57"  # US, AS209
NOWHERE = "192.0.2.1"  # in neither database

FULL = SiteConfig(
    site_id=1,
    block_bots=True,
    excluded_ips=("10.0.0.0/8",),
    excluded_countries=("SE",),
    excluded_asns=(209, "AS29518", "as15169"),
    excluded_paths=("/admin*", "/health", " /Preview/*/draft "),
    excluded_hostnames=("*.internal.example", "staging.example.com"),
    excluded_user_agents=("uptimerobot", "MyMonitor"),
)
MOBILE = SiteConfig(
    site_id=2, block_bots=True, type="mobile", excluded_user_agents=("internal-qa",)
)
PLAIN = SiteConfig(site_id=3, block_bots=True, excluded_ips=("10.0.0.0/8",))


@pytest.fixture(params=["layered", "layered compact", "tables apart", "direct lookups"])
def edge_filter(
    request: pytest.FixtureRequest, city_db: Path, monkeypatch: pytest.MonkeyPatch
) -> EdgeFilter:
    """A filter over FULL, MOBILE and PLAIN with both test databases, every address path:
    one layered table, the country and ASN tables apart, records decoded."""
    compiled = request.param != "direct lookups"
    if not request.param.startswith("layered"):
        monkeypatch.setattr("edgefilter._layers.MAX_LAYERED_COUNTRY_BOUNDS", -1)
    geoip = CountryResolver(city_db, compile_tables=compiled)
    asn_db = AsnResolver(ASN_DB, compile_tables=compiled)
    assert not compiled or (geoip.wait_compiled(30) and asn_db.wait_compiled(30))
    compact = request.param == "layered compact"
    sites = {
        "1": compile_rules(FULL, compact=compact),
        "2": compile_rules(MOBILE),
        "3": compile_rules(PLAIN),
    }
    edge_filter = EdgeFilter(sites, geoip=geoip, asn_db=asn_db)
    assert edge_filter.prepare(sites["1"]) is request.param.startswith("layered")
    return edge_filter


@pytest.mark.parametrize(
    ("ip", "ua", "path", "hostname", "reason"),
    [
        # nothing matches
        (NOWHERE, CHROME, "/blog/post", "www.example.com", Reason.tracked),
        # the order of checks: IP, country, ASN, path, hostname, user agent, bot
        ("10.0.0.1", GOOGLEBOT + " uptimerobot", "/admin", "a.internal.example", "excluded_ip"),
        (SE_AS29518, GOOGLEBOT, "/admin", "a.internal.example", Reason.excluded_country),
        (US_AS209, GOOGLEBOT + " uptimerobot", "/admin", "a.internal.example", "excluded_asn"),
        (NOWHERE, GOOGLEBOT + " uptimerobot", "/admin", "a.internal.example", "excluded_path"),
        (NOWHERE, GOOGLEBOT + " uptimerobot", "/blog", "a.internal.example", "excluded_hostname"),
        (NOWHERE, GOOGLEBOT + " uptimerobot", "/blog", "www.example.com", "excluded_user_agent"),
        (NOWHERE, GOOGLEBOT, "/blog", "www.example.com", Reason.bot),
        # ASNs: every spelling of an entry, IPv4, mapped and IPv6 forms of the address
        ("1.0.0.1", CHROME, None, None, Reason.excluded_asn),  # 'as15169'
        ("::ffff:1.0.0.1", CHROME, None, None, Reason.excluded_asn),
        ("2001:4860::1", CHROME, None, None, Reason.tracked),  # AS15169 in IPv6, not there
        # paths: case-insensitive globs anchored at both ends; * crosses slashes
        (NOWHERE, CHROME, "/ADMIN", None, Reason.excluded_path),
        (NOWHERE, CHROME, "/admin/users/7", None, Reason.excluded_path),
        (NOWHERE, CHROME, "/administrator", None, Reason.excluded_path),
        (NOWHERE, CHROME, "/x/admin", None, Reason.tracked),
        (NOWHERE, CHROME, "/Health", None, Reason.excluded_path),
        (NOWHERE, CHROME, "/healthz", None, Reason.tracked),
        (NOWHERE, CHROME, "/preview/a/b/draft", None, Reason.excluded_path),  # entry trimmed
        (NOWHERE, CHROME, "/preview/draft", None, Reason.tracked),  # "/*/" needs two slashes
        (NOWHERE, CHROME, b"/admin", None, Reason.excluded_path),  # bytes read as Latin-1
        # hostnames: the same globs
        (NOWHERE, CHROME, None, "A.B.Internal.Example", Reason.excluded_hostname),
        (NOWHERE, CHROME, None, "internal.example", Reason.tracked),
        (NOWHERE, CHROME, None, "STAGING.example.com", Reason.excluded_hostname),
        (NOWHERE, CHROME, None, "staging.example.com.evil", Reason.tracked),
        # user agents: case-insensitive substrings
        (NOWHERE, "Mozilla/5.0 (compatible; UptimeRobot/2.0)", None, None, "excluded_user_agent"),
        (NOWHERE, CHROME + " mymonitor/1", None, None, Reason.excluded_user_agent),
        # a hit without a path or hostname is not excluded by those rules
        (NOWHERE, CHROME, None, None, Reason.tracked),
        (NOWHERE, CHROME, "", "", Reason.tracked),
        # values that are no text are not excluded by those rules (and never raise)
        (NOWHERE, CHROME, ["/admin"], {"a.internal.example": 1}, Reason.tracked),
        (NOWHERE, CHROME, 7, 8.5, Reason.tracked),
        # the address is still read first: an unreadable one is invalid_ip
        ("not an ip", CHROME, "/admin", None, Reason.invalid_ip),
    ],
)
def test_exclusions_and_their_order(
    edge_filter: EdgeFilter,
    ip: object,
    ua: object,
    path: object,
    hostname: object,
    reason: str,
) -> None:
    """Each hit gets the first matching rule's reason, in Rybbit's order with ASN after
    country; asked twice, the second time from the matchers' caches."""
    for _ in range(2):
        decision = edge_filter.should_track("1", ip, ua, path=path, hostname=hostname)
        assert decision.reason == reason
        assert decision.tracked is (reason == Reason.tracked)


@pytest.mark.parametrize(
    ("ua", "reason"),
    [
        (GOOGLEBOT, Reason.tracked),  # no user-agent bot check for a mobile site
        ("", Reason.tracked),
        (None, Reason.tracked),
        ("MyApp/1.0 Internal-QA build", Reason.excluded_user_agent),  # its own rules apply
    ],
)
def test_mobile_sites_skip_the_user_agent_bot_check(
    edge_filter: EdgeFilter, ua: object, reason: Reason
) -> None:
    """A mobile site's hits are not judged by the bot check; excluded user agents still are."""
    assert edge_filter.should_track("2", NOWHERE, ua).reason is reason


def test_a_web_site_with_the_same_rules_blocks_the_bot(edge_filter: EdgeFilter) -> None:
    """The same user agent is a bot for a web site: only the mobile type skips the check."""
    assert edge_filter.should_track("3", NOWHERE, GOOGLEBOT).reason is Reason.bot


def test_existing_callers_pass_three_arguments(edge_filter: EdgeFilter) -> None:
    """should_track(site, ip, ua) still works: no path, no hostname."""
    assert edge_filter.should_track("1", NOWHERE, CHROME).reason is Reason.tracked
    assert (
        edge_filter.should_track("1", NOWHERE, "uptimerobot").reason is Reason.excluded_user_agent
    )


def test_path_and_hostname_are_keyword_only(edge_filter: EdgeFilter) -> None:
    """A fourth positional argument is refused: path and hostname must be named."""
    with pytest.raises(TypeError):
        edge_filter.should_track("1", NOWHERE, CHROME, "/admin")  # type: ignore[misc]


def test_adecide_takes_path_and_hostname(edge_filter: EdgeFilter) -> None:
    """adecide passes path and hostname on, for sites at hand and cold ids alike."""

    async def decide() -> list[Reason]:
        return [
            (await edge_filter.adecide("1", NOWHERE, CHROME, path="/admin")).reason,
            (
                await edge_filter.adecide("01", NOWHERE, CHROME, hostname="x.internal.example")
            ).reason,
            (await edge_filter.adecide("1", NOWHERE, CHROME, path="/blog")).reason,
        ]

    assert asyncio.run(decide()) == [
        Reason.excluded_path,
        Reason.excluded_hostname,
        Reason.tracked,
    ]


def test_a_site_without_text_rules_has_no_matchers() -> None:
    """Without paths, hostnames or user agents the rules hold None and has_patterns is false."""
    rules = compile_rules(PLAIN)
    assert rules.has_patterns is False
    assert (rules.excluded_paths, rules.excluded_hostnames, rules.excluded_user_agents) == (
        None,
        None,
        None,
    )
    only_agents = compile_rules(SiteConfig(excluded_user_agents=("bot",)))
    assert only_agents.has_patterns and only_agents.excluded_paths is None


def test_bad_entries_of_the_new_kinds_are_rejected_with_reasons() -> None:
    """Empty and non-text patterns, ASNs out of range and unknown types are each rejected."""
    config = SiteConfig(
        excluded_paths=("  ", 7, "/ok"),
        excluded_hostnames=("",),
        excluded_user_agents=(None,),
        excluded_asns=(0, 2**32, "AS", "ASx1", True, 1.5, "AS4294967295", " 15169 "),
        type="tv",
    )
    rules = compile_rules(config)
    assert [entry for entry, _ in rules.rejected] == [
        0,
        2**32,
        "AS",
        "ASx1",
        True,
        1.5,
        "  ",
        7,
        "",
        None,
        "tv",
    ]
    assert rules.excluded_asns == {4294967295, 15169}
    assert rules.mobile is False


def test_asn_rules_without_a_database_warn_once_and_are_skipped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Without asn_db a site's ASN rules are skipped, with one warning for the site."""
    site = SiteConfig(site_id=5, excluded_asns=(209,))
    with caplog.at_level(logging.WARNING, logger="edgefilter"):
        edge_filter = EdgeFilter({"5": site})
        for _ in range(3):
            assert edge_filter.should_track("5", US_AS209, CHROME).reason is Reason.tracked
    warnings = [r for r in caplog.records if "ASN database" in r.getMessage()]
    assert len(warnings) == 1
    assert "209" in warnings[0].getMessage()


def test_asn_db_accepts_a_path_or_a_resolver_and_refuses_other_databases(city_db: Path) -> None:
    """asn_db is a path or an AsnResolver; a City database or another object is refused."""
    assert isinstance(EdgeFilter({}, asn_db=ASN_DB).asn_db, AsnResolver)
    resolver = AsnResolver(ASN_DB, compile_tables=False)
    assert EdgeFilter({}, asn_db=resolver).asn_db is resolver
    with pytest.raises(GeoIPError, match="GeoLite2-City"):
        EdgeFilter({}, asn_db=city_db)
    with pytest.raises(ConfigError, match="asn_db"):
        EdgeFilter({}, asn_db=42)  # type: ignore[arg-type]


def test_every_exclusion_reason_has_rybbits_answer_text() -> None:
    """Each exclusion reason maps to 'Event not tracked - <label> excluded'."""
    labels = {
        Reason.excluded_ip: "IP",
        Reason.excluded_country: "country",
        Reason.excluded_asn: "ASN",
        Reason.excluded_path: "path",
        Reason.excluded_hostname: "hostname",
        Reason.excluded_user_agent: "user agent",
    }
    assert dict(EXCLUSION_MESSAGES) == {
        reason: f"Event not tracked - {label} excluded" for reason, label in labels.items()
    }


ODD_VALUES = st.one_of(
    st.none(),
    st.text(max_size=64),
    st.binary(max_size=64),
    st.integers(),
    st.floats(),
    st.lists(st.text(max_size=4), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
    st.sampled_from(["/admin", "a.internal.example", "\ud800", "x" * 10_000]),
)


@settings(max_examples=300)
@given(path=ODD_VALUES, hostname=ODD_VALUES, ua=ODD_VALUES)
def test_should_track_never_raises_for_odd_paths_and_hostnames(
    path: object, hostname: object, ua: object
) -> None:
    """Whatever the path, hostname and user agent are, a Decision comes back."""
    edge_filter = EdgeFilter({"1": FULL_RULES})
    decision = edge_filter.should_track("1", NOWHERE, ua, path=path, hostname=hostname)
    assert isinstance(decision.reason, Reason)


FULL_RULES = compile_rules(FULL)


def _liar(text: str, posing_as: str) -> str:
    """``text`` as a str subclass whose hash and ``==`` claim it is ``posing_as``: a dict
    lookup with it finds ``posing_as``'s entry."""

    class Liar(str):
        __slots__ = ()

        def __hash__(self) -> int:
            return hash(posing_as)

        def __eq__(self, other: object) -> bool:
            return True

    return Liar(text)


@pytest.mark.parametrize(
    ("field", "value", "posing_as", "reason"),
    [
        ("path", "/admin/x", "/public", Reason.excluded_path),
        ("hostname", "db.internal.example", "www.example.com", Reason.excluded_hostname),
        ("ua", "UptimeRobot/2.0", CHROME, Reason.excluded_user_agent),
    ],
)
def test_a_lying_str_subclass_gets_its_own_verdict(
    edge_filter: EdgeFilter, field: str, value: str, posing_as: str, reason: Reason
) -> None:
    """A str subclass whose ``__hash__`` and ``__eq__`` lie is judged by its own text, never
    by the cached verdict of the string it poses as (which would let an excluded hit in)."""
    hit = {"path": "/public", "hostname": "www.example.com", "ua": CHROME}
    assert edge_filter.should_track(
        "1", NOWHERE, hit["ua"], path=hit["path"], hostname=hit["hostname"]
    ).tracked
    hit[field] = _liar(value, posing_as)
    decision = edge_filter.should_track(
        "1", NOWHERE, hit["ua"], path=hit["path"], hostname=hit["hostname"]
    )
    assert decision.reason is reason


def test_a_lying_str_subclass_bot_is_judged_as_itself(edge_filter: EdgeFilter) -> None:
    """The bot check too: a crawler's user agent posing as a cached browser's is a bot, in
    should_track, decide_many and the detector's own is_bot and classify."""
    assert edge_filter.should_track("3", NOWHERE, CHROME).tracked
    liar = _liar(GOOGLEBOT, CHROME)
    assert edge_filter.should_track("3", NOWHERE, liar).reason is Reason.bot
    assert [d.reason for d in edge_filter.decide_many([("3", NOWHERE, liar)])] == [Reason.bot]
    assert edge_filter.bots.is_bot(liar)
    assert edge_filter.bots.classify(liar) is not None
