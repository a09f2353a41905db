"""The per-hit contract: whatever the arguments, a documented Decision and no exception."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgefilter import (
    BotDetector,
    CountryResolver,
    Decision,
    EdgeFilter,
    Reason,
    RulesSource,
    SiteConfig,
    SiteRules,
    compile_rules,
)
from edgefilter._bots import FAMILIES

from .conftest import CITY_DB
from .hostile import (
    BYTES_METHODS,
    INT_METHODS,
    OBJECT_METHODS,
    STR_METHODS,
    HostileError,
    any_values,
    liar,
    masked_class,
    raiser,
    seeds,
)

pytestmark = pytest.mark.adversarial

SITES = {
    "1": SiteConfig(
        site_id=1,
        id="a1b2c3d4e5f6",
        block_bots=True,
        excluded_ips=("175.16.199.0/25", "2001:db8::/32", "10.0.0.1"),
        excluded_countries=("CN", "ru"),
    ),
    "2": SiteConfig(site_id=2, block_bots=False),
    "3": SiteConfig(site_id=3, block_bots=True, excluded_ips=("10.0.0.0/8", "1.2.3.4-1.2.3.9")),
    "4": SiteConfig(site_id=4, block_bots=False, excluded_countries=("GB", "US")),
    "5": SiteConfig(site_id=5, block_bots=True),
}
# What each site may answer: its rules' reasons, nothing else.
SITE_REASONS = {
    "1": {Reason.tracked, Reason.excluded_ip, Reason.excluded_country, Reason.bot},
    "2": {Reason.tracked},
    "3": {Reason.tracked, Reason.excluded_ip, Reason.bot},
    "4": {Reason.tracked, Reason.excluded_country},
    "5": {Reason.tracked, Reason.bot},
}
for _site, _reasons in SITE_REASONS.items():
    if SITES[_site].excluded_ips or SITES[_site].excluded_countries:
        _reasons.add(Reason.invalid_ip)
STATIC_REASONS = set().union(*SITE_REASONS.values()) | {Reason.unknown_site}
LIVE_REASONS = STATIC_REASONS | {
    Reason.rules_pending,
    Reason.rules_unavailable,
    Reason.rules_unauthorized,
}
# Whether each reason is tracked, with the default options.
TRACKED = {reason: reason is Reason.tracked for reason in Reason} | {
    Reason.rules_unavailable: True,
    Reason.rules_unauthorized: True,
}
# A live-like source's answers for sites it has no rules for.
ANSWERS: dict[str, object] = {
    "90": Reason.rules_pending,
    "91": Reason.rules_unavailable,
    "92": Reason.rules_unauthorized,
    "94": [],  # unhashable: the protocol does not allow it
    "95": Reason.tracked,  # not a cause of unavailability either
    "96": masked_class(HostileError),  # an answer whose __class__ raises
}


class LiveLike(RulesSource):
    """Nothing at hand: every site resolved, some with each cause of "no rules", one raising."""

    rules_for: Callable[[str], SiteRules | None]

    def __init__(self, rules: dict[str, SiteRules]) -> None:
        self.rules = rules
        self.rules_for = {}.get

    def resolve(self, site: str) -> SiteRules | Reason | None:
        if site == "93":
            raise HostileError("the source itself fails")
        return self.rules.get(site) or ANSWERS.get(site)  # type: ignore[return-value]

    async def aensure(self, site: str, timeout: float | None = None) -> None:
        if site == "93":
            raise HostileError("the source itself fails")


def _filters() -> dict[str, tuple[EdgeFilter, set[Reason]]]:
    layered = CountryResolver(CITY_DB)
    assert layered.wait_compiled(timeout=30)
    direct = CountryResolver(CITY_DB, compile_tables=False)
    static = EdgeFilter(SITES, geoip=layered)
    for site in SITES:
        static.prepare(static.source.rules_for(site))  # type: ignore[arg-type]
    compact = EdgeFilter(SITES, geoip=direct, compact_tables=True)
    live = EdgeFilter(LiveLike({key: compile_rules(c) for key, c in SITES.items()}), geoip=layered)
    return {
        "layered": (static, STATIC_REASONS),
        "compact, direct lookups": (compact, STATIC_REASONS),
        "live": (live, LIVE_REASONS),
    }


FILTERS = _filters()
ids = st.sampled_from([*SITES, *ANSWERS, "93", "007", "A1B2C3D4E5F6", 1, 3])
sites = st.one_of(ids, any_values)
addresses = st.one_of(
    st.sampled_from(
        ["10.0.0.1", "175.16.199.200", "::ffff:10.0.0.1", "2001:db8::1", "81.2.69.160"]
    ),
    any_values,
)
agents = st.one_of(st.sampled_from(["Googlebot\ud800", "Mozilla/5.0 \udcff"]), seeds, any_values)


def _check(decision: object, site: object, reasons: set[Reason]) -> None:
    """The decision is a Decision with a documented reason, tracked as documented."""
    assert type(decision) is Decision
    assert decision.reason in reasons
    assert decision.tracked is TRACKED[decision.reason]
    if type(site) is str and site in SITE_REASONS:
        assert decision.reason in SITE_REASONS[site]


@settings(max_examples=300)
@given(st.sampled_from(sorted(FILTERS)), sites, addresses, agents)
def test_should_track_never_raises(name: str, site: object, ip: object, ua: object) -> None:
    """Whatever it is given, should_track answers a documented Decision."""
    edge_filter, reasons = FILTERS[name]
    for _ in range(2):  # the second call meets the caches the first one filled
        _check(edge_filter.should_track(site, ip, ua), site, reasons)


@settings(max_examples=100)
@given(st.sampled_from(sorted(FILTERS)), sites, addresses, agents)
def test_adecide_never_raises_nor_warns(name: str, site: object, ip: object, ua: object) -> None:
    """Whatever it is given, adecide answers a documented Decision, without a warning."""
    edge_filter, reasons = FILTERS[name]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        decision = asyncio.run(edge_filter.adecide(site, ip, ua))
    _check(decision, site, reasons)
    assert caught == []


detector = BotDetector()


@settings(max_examples=300)
@given(st.one_of(seeds, any_values))
def test_bot_detector_never_raises(ua: object) -> None:
    """is_bot, classify and verdict answer for any value, and agree."""
    family = detector.classify(ua)
    assert family is None or family in FAMILIES
    assert detector.is_bot(ua) is (family is not None)
    assert detector.verdict(ua) == (family or "")


@settings(max_examples=200)
@given(any_values)
def test_country_lookup_never_raises(ip: object) -> None:
    """A lookup of any value answers a country code or None."""
    country = FILTERS["layered"][0].geoip.country(ip)  # type: ignore[union-attr]
    assert country is None or (isinstance(country, str) and len(country) == 2)


@pytest.mark.parametrize(
    ("ua", "family"),
    [
        ("Googlebot\ud800", "crawler"),
        ("Mozilla/5.0 (compatible; Googlebot/2.1)\udc80", "crawler"),
        ("curl/8.4.0\ud83d", "library"),
        ("\ud800\udfff\ud800", "empty"),
        ("\ud800\udfff\ud800\udfff\ud800\udfff", "library"),
    ],
)
def test_lone_surrogates_are_replaced_before_classifying(ua: str, family: str) -> None:
    """A user agent with lone surrogates is classified on its text with them replaced."""
    assert BotDetector(use_crawler_list=False).classify(ua) == family


def test_a_surrogate_user_agent_is_a_bot_on_the_hot_path() -> None:
    """The reported case: a bot's user agent with a lone surrogate is still a bot."""
    edge_filter = EdgeFilter({"5": SITES["5"]})
    assert edge_filter.should_track("5", "1.2.3.4", "Googlebot\ud800").reason is Reason.bot


def _each_hostile() -> list[object]:
    """One hostile object per (kind, method, behaviour): every method that raises each of
    a few exceptions or lies, over text that would otherwise decide."""
    made: list[object] = []
    kinds = [
        (str, STR_METHODS, ["1", "007", "10.0.0.1", " 10.0.0.1 ", "[2001:db8::1]", "Googlebot"]),
        (bytes, BYTES_METHODS, [b"10.0.0.1", b" 10.0.0.1", b"Googlebot/2.1"]),
        (int, INT_METHODS, [1, 3, 2**63]),
        (object, OBJECT_METHODS, [None]),
    ]
    for base, methods, values in kinds:
        for method in methods:
            behaviours = [raiser(error) for error in (HostileError, RuntimeError, KeyError)]
            behaviours += [liar(lie) for lie in (None, "10.0.0.1", [])]
            for behaviour in behaviours:
                cls = type(f"Hostile{base.__name__}", (base,), {method: behaviour})
                made += [cls(value) for value in values] if base is not object else [cls()]
    made += [masked_class(error) for error in (HostileError, RuntimeError)]
    released = memoryview(b"10.0.0.1")
    released.release()
    made += [released, memoryview(b"1 0 . 0 . 0 . 1")[::2], memoryview(bytearray(b"10.0.0.1"))]
    return made


HOSTILE = _each_hostile()


@pytest.mark.parametrize("name", sorted(FILTERS))
def test_every_hostile_method_in_every_argument_is_decided(name: str) -> None:
    """Each hostile object, as the site, the address or the user agent of each site, gets a
    documented decision."""
    edge_filter, reasons = FILTERS[name]
    for site in [*SITES, *ANSWERS, "93"]:
        for hostile in HOSTILE:
            _check(edge_filter.should_track(hostile, "10.0.0.1", "Mozilla/5.0"), hostile, reasons)
            _check(edge_filter.should_track(site, hostile, "Mozilla/5.0"), site, reasons)
            _check(edge_filter.should_track(site, "81.2.69.160", hostile), site, reasons)


def test_every_hostile_user_agent_is_classified() -> None:
    """The detector answers each hostile object without raising."""
    for hostile in HOSTILE:
        assert detector.classify(hostile) in (None, *FAMILIES)


def _lying(base: type, value: object, **methods: object) -> object:
    """An instance of a ``base`` subclass whose named methods answer the given lies."""
    return type("Lying", (base,), {name: liar(lie) for name, lie in methods.items()})(value)


CHROME_TEXT = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/120.0.0.0 Safari/537.36"


@pytest.mark.parametrize(
    ("site", "ip", "ua", "reason"),
    [
        # an address read on the slow path: a subclass's strip, partition or decode lies
        ("1", _lying(str, " 10.0.0.1 ", strip="8.8.8.8"), CHROME_TEXT, Reason.excluded_ip),
        ("1", _lying(str, "[2001:db8::1]", startswith=False), CHROME_TEXT, Reason.excluded_ip),
        ("1", _lying(bytes, b"10.0.0.1", decode="8.8.8.8"), CHROME_TEXT, Reason.excluded_ip),
        ("1", _lying(bytes, b" 10.0.0.1", strip=b"8.8.8.8"), CHROME_TEXT, Reason.excluded_ip),
        # a site id: lstrip, isdigit, __str__ lie
        (
            _lying(str, "0001", lstrip="2", isdigit=False),
            "10.0.0.1",
            CHROME_TEXT,
            Reason.excluded_ip,
        ),
        (_lying(int, 1, __str__="2", __ge__=False), "10.0.0.1", CHROME_TEXT, Reason.excluded_ip),
        # a user agent: strip and __getitem__ lie
        ("5", "8.8.8.8", _lying(str, "Googlebot/2.1", strip=CHROME_TEXT), Reason.bot),
        ("5", "8.8.8.8", _lying(str, "Googlebot/2.1", __getitem__=CHROME_TEXT), Reason.bot),
        ("5", "8.8.8.8", _lying(bytes, b"Googlebot/2.1", decode=CHROME_TEXT), Reason.bot),
    ],
)
def test_subclasses_are_read_as_their_plain_value(
    site: object, ip: object, ua: object, reason: Reason
) -> None:
    """A str, bytes or int subclass is read as its plain value: its methods cannot lie an
    excluded hit through."""
    for name in ("layered", "compact, direct lookups"):
        assert FILTERS[name][0].should_track(site, ip, ua).reason is reason, name
