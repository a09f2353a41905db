"""The request layers together: which apply to a site, which matched, and the audit."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgefilter import SiteConfig
from edgefilter._botlayers import BOT_LAYERS, BotEvent, HitRequest, RequestLayers
from edgefilter._datacenter import DatacenterRanges
from edgefilter._errors import ConfigError
from edgefilter._rates import LocalRates, RateLimits, RedisRates
from edgefilter._rules import compile_rules
from edgefilter._signals import ClientSignals, HeaderHeuristics

from .conftest import CHROME
from .test_signals import BROWSER

WEB = compile_rules(SiteConfig(site_id=1, block_bots=True))
NO_BOTS = compile_rules(SiteConfig(site_id=2, block_bots=False))
MOBILE = compile_rules(SiteConfig(site_id=3, block_bots=True, type="mobile"))
CURL = [(b"accept", b"*/*"), (b"user-agent", b"curl/8.0")]
BROWSER_HEADERS = [(k.encode(), v.encode()) for k, v in BROWSER.items()]
BROWSER_HEADERS.append((b"user-agent", CHROME.encode()))
DATACENTER_IP = "203.0.113.9"
RANGES = DatacenterRanges.from_sources(entries=["203.0.113.0/24"])


def every_layer(**options: Any) -> RequestLayers:
    return RequestLayers(
        headers=True,
        client=True,
        datacenter=RANGES,
        rates=LocalRates(RateLimits(events=2)),
        **options,
    )


def test_no_layer_is_on_by_default() -> None:
    """RequestLayers() turns nothing on and judges every hit a person."""
    layers = RequestLayers()
    assert not layers and layers.enabled == frozenset()
    assert layers.judge("1", WEB, HitRequest([], {"_bs": 10}, DATACENTER_IP, "curl/8")) == ()


def test_a_browser_hit_matches_no_layer() -> None:
    """A browser's headers, no signals, a home address, a first hit: no layer matches."""
    assert (
        every_layer().judge("1", WEB, HitRequest(BROWSER_HEADERS, {"_bs": 0}, "192.0.2.1", CHROME))
        == ()
    )


@pytest.mark.parametrize(
    ("headers", "payload", "ip", "matched"),
    [
        (CURL, {}, "192.0.2.1", ("headers",)),
        (BROWSER_HEADERS, {"_bs": 5}, "192.0.2.1", ("client",)),
        (BROWSER_HEADERS, {}, DATACENTER_IP, ("datacenter",)),
        (CURL, {"_bs": 5}, DATACENTER_IP, ("headers", "client", "datacenter")),
        (BROWSER_HEADERS, {}, None, ()),
    ],
)
def test_every_matching_layer_is_named(
    headers: list[tuple[bytes, bytes]],
    payload: dict[str, Any],
    ip: str | None,
    matched: tuple[str, ...],
) -> None:
    """The verdict names every layer that matched, not only the first, in layer order."""
    assert every_layer().judge("1", WEB, HitRequest(headers, payload, ip, CHROME)) == matched


def test_the_rate_layer_and_the_user_agent_layer_are_recorded() -> None:
    """The third hit in 10 s (limit 2) matches the rate layer; the filter's own user-agent
    verdict comes first when given."""
    layers = every_layer()
    verdicts = [
        layers.judge("1", WEB, HitRequest(BROWSER_HEADERS, {}, "192.0.2.1", CHROME))
        for _ in range(3)
    ]
    assert verdicts == [(), (), ("rate",)]
    found = layers.judge("1", WEB, HitRequest(CURL, {}, "192.0.2.1", CHROME), user_agent_bot=True)
    assert found == ("user_agent", "headers", "rate")


@pytest.mark.parametrize("rules", [NO_BOTS, MOBILE, None])
def test_sites_that_do_not_block_bots_get_no_layer(rules: Any) -> None:
    """blockBots false, a mobile site, or no rules: no request layer applies."""
    assert every_layer().judge("2", rules, HitRequest(CURL, {"_bs": 9}, DATACENTER_IP, "x")) == ()


def test_per_site_layers() -> None:
    """A site named in ``sites`` gets only its layers; the others get every one."""
    layers = every_layer(sites={"0001": ["client"]})
    assert layers.judge("1", WEB, HitRequest(CURL, {"_bs": 9}, DATACENTER_IP, "x")) == ("client",)
    assert layers.judge("4", WEB, HitRequest(CURL, {"_bs": 9}, DATACENTER_IP, "x")) == (
        "headers",
        "client",
        "datacenter",
    )


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"sites": {"x!": ["headers"]}}, "not a site id"),
        ({"sites": {"1": ["ua"]}}, "not headers"),
        ({"sites": {"1": "headers"}}, "list of names"),
        ({"headers": "yes"}, "HeaderHeuristics"),
        ({"client": 3}, "ClientSignals"),
        ({"rates": 30}, "RateLimits"),
        ({"datacenter": ["10.0.0.0/8"]}, "DatacenterRanges"),
        ({"on_bot": "print"}, "callable"),
    ],
)
def test_bad_options_are_config_errors(options: dict[str, Any], match: str) -> None:
    """Each bad option is refused with a message naming it."""
    with pytest.raises(ConfigError, match=match):
        RequestLayers(**options)


def test_a_site_cannot_name_a_layer_that_is_off() -> None:
    """Per-site layers choose among the layers the deployment turned on."""
    with pytest.raises(ConfigError, match="not turned on"):
        RequestLayers(headers=True, sites={"1": ["datacenter"]})


def test_counters_and_the_hook_see_every_layer() -> None:
    """Counts per site label and layer, and one BotEvent (one flag per layer) per bot hit."""
    events: list[BotEvent] = []
    layers = every_layer(on_bot=events.append)
    layers.judge("1", WEB, HitRequest(CURL, {"_bs": 5}, "192.0.2.1", "curl/8"), label="site-1")
    layers.judge("1", WEB, HitRequest(BROWSER_HEADERS, {}, "192.0.2.1", CHROME), label="site-1")
    assert layers.counters.snapshot() == {("site-1", "headers"): 1, ("site-1", "client"): 1}
    assert len(events) == 1
    assert events[0].flags() == dict.fromkeys(BOT_LAYERS, False) | {
        "headers": True,
        "client": True,
    }
    assert (events[0].site, events[0].client_ip, events[0].user_agent) == (
        "1",
        "192.0.2.1",
        "curl/8",
    )


def test_a_failing_hook_is_logged_once_and_ignored(caplog: pytest.LogCaptureFixture) -> None:
    """A hook that raises does not change the verdict, and is logged once."""

    def broken(event: BotEvent) -> None:
        raise RuntimeError("hook down")

    layers = RequestLayers(headers=True, on_bot=broken)
    caplog.set_level(logging.ERROR, logger="edgefilter")
    for _ in range(3):
        assert layers.judge("1", WEB, HitRequest(CURL, {}, None, "curl/8")) == ("headers",)
    assert sum("on_bot hook failed" in r.getMessage() for r in caplog.records) == 1


def test_ajudge_counts_in_redis_or_its_local_fallback() -> None:
    """ajudge awaits the Redis counter (here unreachable: its local counts answer)."""

    async def scenario() -> list[tuple[str, ...]]:
        rates = RedisRates("redis://127.0.0.1:1/0", RateLimits(events=1))
        layers = RequestLayers(rates=rates, headers=HeaderHeuristics(), client=ClientSignals())
        try:
            return [
                await layers.ajudge(
                    "1", WEB, HitRequest(BROWSER_HEADERS, {}, "192.0.2.1", CHROME, path="/a")
                )
                for _ in range(2)
            ]
        finally:
            await layers.aclose()

    assert asyncio.run(scenario()) == [(), ("rate",)]


def test_counters_use_the_sites_own_id_by_default() -> None:
    """Without a label, counts go to the site's own id (siteId, else id), not the hit's form."""
    rules = compile_rules(SiteConfig(site_id=7, id="a1b2c3d4e5f6", block_bots=True))
    layers = RequestLayers(headers=True)
    layers.judge("a1b2c3d4e5f6", rules, HitRequest(CURL, {}, None, "curl/8"))
    assert layers.counters.snapshot() == {("7", "headers"): 1}


@given(
    st.lists(st.tuples(st.binary(max_size=30), st.binary(max_size=60)), max_size=12),
    st.one_of(st.none(), st.dictionaries(st.text(max_size=5), st.integers() | st.text())),
    st.one_of(st.none(), st.text(max_size=40), st.integers()),
    st.text(max_size=80),
    st.one_of(st.none(), st.text(max_size=30), st.integers()),
)
def test_judge_never_raises(
    headers: list[tuple[bytes, bytes]], payload: Any, ip: Any, ua: str, path: Any
) -> None:
    """Any headers, payload, address, user agent and path: a tuple of layer names."""
    found = every_layer().judge("1", WEB, HitRequest(headers, payload, ip, ua, path))
    assert set(found) <= set(BOT_LAYERS)
