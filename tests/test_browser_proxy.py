"""``edgefilter proxy`` as a real browser sees it: headless Chromium, a customer page on one
origin, the tracker script and its hits on the proxy's, a recording upstream behind it."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from edgefilter import EdgeFilter, SiteConfig
from edgefilter._serving import serve_in_thread
from edgefilter.middleware import Receive, Scope, Send
from edgefilter.proxy import create_proxy_app

from .browser import Browser, chromium_path
from .test_browser import launch
from .upstream import SCRIPT_CACHE, SCRIPT_ETAG, Upstream

SITES = {
    "1": SiteConfig(site_id=1, block_bots=False, excluded_ips=("127.0.0.1", "::1")),
    "2": SiteConfig(site_id=2, block_bots=False),
}
EXCLUDED = {"status": 200, "body": {"success": True, "message": "Event not tracked - IP excluded"}}
TRACKED = {"status": 200, "body": {"success": True}}
REPLAY_EXCLUDED = {
    "status": 200,
    "body": {"success": True, "message": "Session replay not recorded - IP excluded"},
}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Chromium for the module, as in test_browser: skipped where none is
    installed, a failure in CI."""
    binary = chromium_path()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("CI must provide Chromium: .ci/chromium.sh installs it")
        pytest.skip("no Chromium on this machine; .ci/chromium.sh installs Debian's")
    started = launch(binary)
    yield started
    started.close()


class Doorman:
    """Wraps the proxy and notes each request's method, path and Origin as it arrives."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.seen: list[tuple[str, str, str | None]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            origin = dict(scope["headers"]).get(b"origin")
            self.seen.append((scope["method"], scope["path"], origin and origin.decode()))
        await self.app(scope, receive, send)


@pytest.fixture
def deployment() -> Iterator[tuple[str, str, Upstream, Doorman]]:
    """The upstream, the proxy in front of it, and a customer site whose page loads the
    tracker from the proxy; yields the site's URL, the proxy's, the upstream, the doorman."""
    upstream = Upstream()
    with serve_in_thread(upstream.app) as upstream_url:
        doorman = Doorman(create_proxy_app(upstream_url, EdgeFilter(SITES)))
        with serve_in_thread(doorman) as proxy_url:

            async def page(_request: Request) -> Response:
                return HTMLResponse(
                    "<!doctype html><title>customer site</title>"
                    f'<script src="{proxy_url}/api/script.js"></script>'
                )

            with serve_in_thread(Starlette(routes=[Route("/", page)])) as site_url:
                yield site_url, proxy_url, upstream, doorman


def responses(browser: Browser, tab: Any, suffix: str) -> list[dict[str, Any]]:
    """The responses the tab's Network domain reported for URLs ending in ``suffix``."""
    return [
        event["params"]["response"]
        for event in browser.events
        if event.get("sessionId") == tab.session
        and event["method"] == "Network.responseReceived"
        and event["params"]["response"]["url"].endswith(suffix)
    ]


def test_the_tracker_loads_and_hits_are_filtered_through_the_proxy(
    browser: Browser,
    deployment: tuple[str, str, Upstream, Doorman],
) -> None:
    """The script loads through the proxy with its headers; the preflights succeed; an
    excluded hit (track, identify, session replay) is a readable 200 with Rybbit's body and
    reaches nothing; a tracked one reaches the upstream byte for byte with the visitor's
    address and user agent."""
    site_url, _, upstream, doorman = deployment
    with browser.page() as tab:
        tab.send("Network.enable")
        tab.navigate(site_url + "/")
        assert tab.evaluate("window.trackerLoaded === true")
        dropped = tab.evaluate("window.track('1')")
        tracked = tab.evaluate("window.track('2')")
        identify_dropped = tab.evaluate("window.identify('1', 'u1')")
        identified = tab.evaluate("window.identify('2', 'u1')")
        replay_dropped = tab.evaluate("window.replay('1')")
        replayed = tab.evaluate("window.replay('2')")
        page_url = tab.evaluate("location.href")
        user_agent = tab.evaluate("navigator.userAgent")
        (script,) = responses(browser, tab, "/api/script.js")
    assert (dropped, tracked) == (EXCLUDED, TRACKED)
    assert (identify_dropped, identified) == (EXCLUDED, TRACKED)
    assert (replay_dropped, replayed) == (REPLAY_EXCLUDED, TRACKED)
    headers = {name.lower(): value for name, value in script["headers"].items()}
    assert (script["status"], headers["content-encoding"]) == (200, "gzip")
    assert (headers["cache-control"], headers["etag"]) == (SCRIPT_CACHE, SCRIPT_ETAG)
    # The browser's side of the preflight: it asked, the proxy answered, the POSTs followed.
    for path in ("/api/track", "/api/identify", "/api/session-replay/record/1"):
        assert [method for method, seen, _ in doorman.seen if seen == path][:2] == [
            "OPTIONS",
            "POST",
        ]
    for path in ("/api/track", "/api/identify"):
        assert [method for method, seen, _ in doorman.seen if seen == path] == [
            "OPTIONS",  # one preflight per path: Chromium keeps its answer for 5 s
            "POST",
            "POST",
        ]
        assert {origin for _, seen, origin in doorman.seen if seen == path} == {site_url}
    # The recorder's side: the script once, no preflight, only the tracked hits.
    assert [(seen.method, seen.path) for seen in upstream.seen] == [
        ("GET", "/api/script.js"),
        ("POST", "/api/track"),
        ("POST", "/api/identify"),
        ("POST", "/api/session-replay/record/2"),
    ]
    bodies = [
        {"type": "pageview", "site_id": "2", "pathname": "/"},
        {"site_id": "2", "user_id": "u1", "traits": {"plan": "pro"}},
        {
            "userId": "u1",
            "events": [{"type": 2, "data": {}, "timestamp": 1}],
            "metadata": {"pageUrl": page_url},
        },
    ]
    for hit, body in zip(upstream.hits(), bodies, strict=True):
        assert hit.body == json.dumps(body, separators=(",", ":")).encode()
        assert hit.header("x-real-ip") == hit.header("x-forwarded-for") == ["127.0.0.1"]
        assert hit.header("user-agent") == [user_agent]
        assert hit.header("origin") == [site_url]


def test_a_revalidated_script_is_a_304_through_the_proxy(
    browser: Browser,
    deployment: tuple[str, str, Upstream, Doorman],
) -> None:
    """The browser revalidates its cached script with If-None-Match; the upstream's 304
    comes back through the proxy and the browser serves the script from its cache."""
    site_url, proxy_url, upstream, _ = deployment
    with browser.page() as tab:
        tab.navigate(site_url + "/")
        status = tab.evaluate(
            f"""fetch("{proxy_url}/api/script.js", {{mode: "no-cors", cache: "no-cache"}})
                .then(answer => answer.type)"""
        )
    assert status == "opaque"
    revalidation = [seen for seen in upstream.seen if seen.header("if-none-match")]
    assert [seen.header("if-none-match") for seen in revalidation] == [[SCRIPT_ETAG]]
