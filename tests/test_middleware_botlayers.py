"""The request bot layers in EdgeFilterMiddleware: drops, annotate, ingestion, audit."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from edgefilter import (
    BotEvent,
    ConfigError,
    DatacenterRanges,
    EdgeFilter,
    RateLimits,
    Reason,
    RedisRates,
    RequestLayers,
    RulesSource,
    SiteConfig,
    SiteRules,
    compile_rules,
)
from edgefilter._serving import serve_in_thread
from edgefilter.middleware import EdgeFilterMiddleware

from .conftest import CHROME
from .redis_server import RedisServer, started_redis
from .test_middleware import RecordingApp, call, hit, run
from .test_signals import BROWSER

SITES = {
    "1": SiteConfig(site_id=1, block_bots=True),
    "2": SiteConfig(site_id=2, block_bots=False),
}
EDGE = EdgeFilter(SITES)
HOME = "192.0.2.10"
CLOUD = "203.0.113.10"
# A browser's request: Chrome's headers for the tracker's fetch, and its user agent.
BROWSER_REQUEST = {**BROWSER, "user-agent": CHROME}
# A script that claims to be Chrome: no Accept-Language, no Sec-Fetch-*, no gzip.
SCRIPT_REQUEST = {"accept": "*/*", "user-agent": CHROME}


def middleware(**options: Any) -> tuple[EdgeFilterMiddleware, RecordingApp]:
    app = RecordingApp()
    return EdgeFilterMiddleware(app, edge_filter=EDGE, **options), app


def layers(**options: Any) -> RequestLayers:
    defaults: dict[str, Any] = {
        "headers": True,
        "client": True,
        "datacenter": DatacenterRanges.from_sources(entries=["203.0.113.0/24"]),
        "rates": RateLimits(events=3),
    }
    return RequestLayers(**{**defaults, **options})


def test_without_bot_layers_a_script_with_a_chrome_ua_is_tracked() -> None:
    """The default middleware checks the user agent only (unchanged)."""
    asgi, app = middleware()
    assert run(asgi, hit(), peer=HOME, headers=SCRIPT_REQUEST)[1] == b"app"
    assert len(app.calls) == 1


def test_the_header_layer_drops_a_script_and_passes_a_browser() -> None:
    """With the header layer on, the script is a bot (answered as Rybbit answers bots), the
    browser is tracked."""
    asgi, app = middleware(bot_layers=layers())
    status, body = run(asgi, hit(), peer=HOME, headers=SCRIPT_REQUEST)
    assert (status, json.loads(body)) == (200, {"success": True})
    assert run(asgi, hit(), peer=HOME, headers=BROWSER_REQUEST)[1] == b"app"
    assert len(app.calls) == 1
    assert asgi.counters.snapshot()[("1", Reason.bot)] == 1


@pytest.mark.parametrize(
    ("headers", "payload", "peer", "layers_matched"),
    [
        (SCRIPT_REQUEST, {}, HOME, ("headers",)),
        (BROWSER_REQUEST, {"_bs": 7}, HOME, ("client",)),
        (BROWSER_REQUEST, {}, CLOUD, ("datacenter",)),
        (SCRIPT_REQUEST, {"_bs": 7}, CLOUD, ("headers", "client", "datacenter")),
        ({**SCRIPT_REQUEST, "user-agent": "curl/8.5.0"}, {}, HOME, ("user_agent", "headers")),
        (BROWSER_REQUEST, {}, HOME, ()),
    ],
)
def test_annotate_records_every_layer_that_matched(
    headers: dict[str, str], payload: dict[str, Any], peer: str, layers_matched: tuple[str, ...]
) -> None:
    """In annotate mode the app sees the decision with every layer that matched."""
    asgi, app = middleware(bot_layers=layers(), mode="annotate")
    run(asgi, hit(**payload), peer=peer, headers=headers)
    decision = app.calls[0]["scope"]["state"]["edgefilter"].decision
    assert decision.layers == layers_matched
    assert decision.tracked is (layers_matched == ())


@pytest.mark.parametrize("cold", [False, True], ids=["warm", "cold"])
def test_the_layers_judge_session_replays_too(cold: bool) -> None:
    """A session replay (site id in the path) from a script claiming Chrome is a bot, warm
    or cold: the request layers do not stop at track hits."""
    source: Any = ColdSource() if cold else SITES
    app = RecordingApp()
    asgi = EdgeFilterMiddleware(app, edge_filter=EdgeFilter(source), bot_layers=layers())
    replay = b'{"events":[],"metadata":{"pageUrl":"https://example.com/"}}'
    path = "/api/session-replay/record/1"
    status, body = run(asgi, replay, peer=HOME, headers=SCRIPT_REQUEST, path=path)
    assert status == 200
    assert b"not recorded" in body or body == b'{"success":true}'
    assert run(asgi, replay, peer=HOME, headers=BROWSER_REQUEST, path=path)[1] == b"app"
    assert len(app.calls) == 1
    assert asgi.counters.snapshot()[("1", Reason.bot)] == 1


def test_the_rate_layer_drops_a_flood() -> None:
    """The fourth hit in 10 s from one site+IP+UA (limit 3) is dropped."""
    asgi, _ = middleware(bot_layers=layers())
    answers = [run(asgi, hit(), peer=HOME, headers=BROWSER_REQUEST)[1] for _ in range(5)]
    assert answers == [b"app"] * 3 + [b'{"success":true}'] * 2


def test_a_site_that_does_not_block_bots_gets_no_layer() -> None:
    """blockBots false: no request layer applies."""
    asgi, _ = middleware(bot_layers=layers())
    assert run(asgi, hit("2", _bs=9), peer=CLOUD, headers=SCRIPT_REQUEST)[1] == b"app"


def test_a_verified_ingest_key_skips_every_bot_layer() -> None:
    """Server-side ingestion (a Bearer key the verifier accepts) skips the user-agent layer
    and the request layers, as Rybbit does; without the key the same hit is a bot."""
    verifier = lambda key, site: key == "good"  # noqa: E731
    asgi, _ = middleware(bot_layers=layers(), ingest_key_verifier=verifier)
    server = {"user-agent": "python-requests/2.32.3", "accept": "*/*"}
    payload = hit(user_agent="python-requests/2.32.3", _bs=9)
    assert run(asgi, payload, peer=CLOUD, headers=server)[1] == b'{"success":true}'
    verified = {**server, "authorization": "Bearer good"}
    assert run(asgi, payload, peer=CLOUD, headers=verified)[1] == b"app"
    plain, _ = middleware(ingest_key_verifier=verifier)  # no request layers: the UA layer
    assert run(plain, payload, peer=CLOUD, headers=verified)[1] == b"app"
    assert run(plain, payload, peer=CLOUD, headers=server)[1] == b'{"success":true}'


def test_the_hook_gets_a_bot_event_per_bot_hit() -> None:
    """on_bot gets one event, one flag per layer, for each hit any layer called a bot."""
    events: list[BotEvent] = []
    asgi, _ = middleware(bot_layers=layers(on_bot=events.append))
    run(asgi, hit(), peer=HOME, headers=BROWSER_REQUEST)
    run(asgi, hit(_bs=5), peer=CLOUD, headers=SCRIPT_REQUEST)
    assert [event.layers for event in events] == [("headers", "client", "datacenter")]
    assert events[0].flags()["datacenter"] and not events[0].flags()["rate"]
    assert events[0].client_ip == CLOUD
    counts = asgi.bot_layers.counters.snapshot()  # type: ignore[union-attr]
    assert counts == {("1", "headers"): 1, ("1", "client"): 1, ("1", "datacenter"): 1}


def test_bot_layers_must_be_request_layers() -> None:
    """bot_layers that is not a RequestLayers is refused when the middleware is made."""
    with pytest.raises(ConfigError, match="bot_layers"):
        middleware(bot_layers={"headers": True})


def test_over_loopback_httpx_claiming_chrome_is_dropped() -> None:
    """A real client over a real socket: httpx with a Chrome user agent is a bot by its
    headers; the same request with a browser's headers is tracked."""
    app = RecordingApp()
    asgi = EdgeFilterMiddleware(app, edge_filter=EDGE, bot_layers=RequestLayers(headers=True))
    with serve_in_thread(asgi) as url:
        answer = httpx.post(f"{url}/api/track", content=hit(), headers={"user-agent": CHROME})
        assert answer.json() == {"success": True}
        assert [call for call in app.calls if call["scope"]["type"] == "http"] == []
        answer = httpx.post(f"{url}/api/track", content=hit(), headers=BROWSER_REQUEST)
        assert answer.content == b"app"


class ColdSource(RulesSource):
    """A source without rules at hand until its first resolve (as RulesCache is before a
    site's first fetch): a site's first hit takes the awaited path."""

    def __init__(self) -> None:
        self.rules = compile_rules(SITES["1"])
        self.known: dict[str, SiteRules] = {}
        self.rules_for = self.known.get

    def resolve(self, site: str) -> SiteRules | Reason | None:
        if site != "1":
            return None
        self.known[site] = self.rules
        return self.rules


def test_a_verified_ingest_key_skips_the_bot_layers_for_a_cold_site_too() -> None:
    """The awaited path (rules not at hand) skips the bot layers for ingestion as well."""
    verifier = lambda key, site: key == "good"  # noqa: E731
    headers = {"user-agent": "python-requests/2.32.3", "authorization": "Bearer good"}
    for bot_layers in (None, layers()):  # the user-agent layer alone, and every layer
        asgi = EdgeFilterMiddleware(
            RecordingApp(),
            edge_filter=EdgeFilter(ColdSource()),
            ingest_key_verifier=verifier,
            bot_layers=bot_layers,
        )
        assert run(asgi, hit(), peer=HOME, headers=headers)[1] == b"app"  # the first: cold
    cold = EdgeFilterMiddleware(RecordingApp(), edge_filter=EdgeFilter(ColdSource()))
    unverified = {"user-agent": "python-requests/2.32.3"}
    assert run(cold, hit(), peer=HOME, headers=unverified)[1] == b'{"success":true}'


def test_the_layers_judge_cold_sites_too() -> None:
    """A site's first hit, before its rules are at hand (the awaited path), is judged by
    the layers too."""
    for headers, answer in ((SCRIPT_REQUEST, b'{"success":true}'), (BROWSER_REQUEST, b"app")):
        asgi = EdgeFilterMiddleware(
            RecordingApp(), edge_filter=EdgeFilter(ColdSource()), bot_layers=layers()
        )
        assert run(asgi, hit(), peer=HOME, headers=headers)[1] == answer


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    server = started_redis()
    yield server
    server.close()


def test_rates_in_redis_through_the_middleware(redis_server: RedisServer) -> None:
    """With the rates in Redis the hit is awaited: the third hit (limit 2) is dropped, and
    two middlewares (two workers) share the counts."""
    limits = RateLimits(events=2)

    async def scenario() -> list[bytes]:
        first = RequestLayers(rates=RedisRates(redis_server.url, limits, prefix="mw:"))
        second = RequestLayers(rates=RedisRates(redis_server.url, limits, prefix="mw:"))
        workers = [
            EdgeFilterMiddleware(RecordingApp(), edge_filter=EDGE, bot_layers=each)
            for each in (first, second)
        ]
        try:
            return [
                (await call(workers[n % 2], hit(), peer=HOME, headers=BROWSER_REQUEST))[1]
                for n in range(3)
            ]
        finally:
            await first.aclose()
            await second.aclose()

    assert asyncio.run(scenario()) == [b"app", b"app", b'{"success":true}']
