"""The browser harness itself: headless Chromium over CDP, a cross-origin JSON POST."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from edgefilter import EdgeFilter, SiteConfig
from edgefilter._serving import serve_in_thread
from edgefilter.middleware import EdgeFilterMiddleware

from .browser import Browser, CdpError, chromium_path


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Chromium for the module; skipped where none is installed (not in CI)."""
    binary = chromium_path()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("CI must provide Chromium: .ci/chromium.sh installs it")
        pytest.skip("no Chromium on this machine; .ci/chromium.sh installs Debian's")
    started = launch(binary)
    yield started
    started.close()


def launch(binary: str, attempts: int = 3) -> Browser:
    """A started browser; a start that fails (a busy machine: the DevTools socket refused,
    no banner in time) is tried again, up to ``attempts`` times."""
    for attempt in range(1, attempts + 1):
        try:
            return Browser(binary)
        except (OSError, CdpError):
            if attempt == attempts:
                raise
    raise AssertionError("unreachable")


def test_cross_origin_json_post_is_preflighted(browser: Browser) -> None:
    """A JSON fetch POST to another origin sends a preflight first, then the POST."""
    seen: list[tuple[str, str | None]] = []

    async def endpoint(request: Request) -> Response:
        seen.append((request.method, request.headers.get("origin")))
        cors: dict[str, Any] = {
            "access-control-allow-origin": request.headers.get("origin", "*"),
            "access-control-allow-headers": "content-type",
            "access-control-allow-methods": "POST",
        }
        if request.method == "OPTIONS":
            return Response(status_code=204, headers=cors)
        return JSONResponse(await request.json(), headers=cors)

    async def page(_request: Request) -> Response:
        return HTMLResponse("<!doctype html><title>site</title>")

    analytics = Starlette(routes=[Route("/api/track", endpoint, methods=["POST", "OPTIONS"])])
    site = Starlette(routes=[Route("/", page)])
    with (
        serve_in_thread(analytics) as api_url,
        serve_in_thread(site) as site_url,
        browser.page() as tab,
    ):
        tab.navigate(site_url + "/")
        echoed = tab.evaluate(
            f"""fetch("{api_url}/api/track", {{method: "POST",
                headers: {{"Content-Type": "application/json"}},
                body: JSON.stringify({{site_id: "1"}})}}).then(r => r.json())"""
        )
    assert echoed == {"site_id": "1"}
    assert [method for method, _ in seen] == ["OPTIONS", "POST"]
    assert {origin for _, origin in seen} == {site_url}


SITES = {
    "1": SiteConfig(site_id=1, block_bots=False, excluded_ips=("127.0.0.1", "::1")),
    "2": SiteConfig(site_id=2, block_bots=False),
}
TRACKER = """(siteId) => fetch("%s/api/track", {method: "POST", mode: "cors", keepalive: true,
    headers: {"Content-Type": "application/json"},
    body: JSON.stringify({type: "pageview", site_id: siteId, pathname: "/"})})
  .then(async (answer) => ({status: answer.status, body: await answer.json()}))"""


def collector(framework: str, seen: list[tuple[bytes, str | None, str | None]]) -> Any:
    """A track endpoint with CORS, wired as the README shows: the filter added last, so it
    sits outside the app's CORS layer."""

    async def track(request: Request) -> Response:
        client = request.client.host if request.client else None
        seen.append((await request.body(), client, request.headers.get("user-agent")))
        return JSONResponse({"success": True})

    cors = Middleware(
        CORSMiddleware,
        allow_origins=["*"],
        allow_methods=["POST"],
        allow_headers=["content-type"],
    )
    app: Any
    if framework == "fastapi":
        app = FastAPI(middleware=[cors])
        app.add_api_route("/api/track", track, methods=["POST"])
    else:
        app = Starlette(routes=[Route("/api/track", track, methods=["POST"])], middleware=[cors])
    app.add_middleware(EdgeFilterMiddleware, edge_filter=EdgeFilter(SITES))
    return app


@pytest.mark.parametrize("framework", ["starlette", "fastapi"])
def test_drops_are_readable_cross_origin(browser: Browser, framework: str) -> None:
    """From a page on another origin, an excluded hit is a readable 200 with Rybbit's body and
    reaches nothing; a tracked hit reaches the app byte for byte, with the visitor's address
    and user agent."""
    seen: list[tuple[bytes, str | None, str | None]] = []

    async def page(_request: Request) -> Response:
        return HTMLResponse("<!doctype html><title>customer site</title>")

    site = Starlette(routes=[Route("/", page)])
    with (
        serve_in_thread(collector(framework, seen)) as api_url,
        serve_in_thread(site) as site_url,
        browser.page() as tab,
    ):
        tab.navigate(site_url + "/")
        tracker = TRACKER % api_url
        dropped = tab.evaluate(f"({tracker})('1')")
        tracked = tab.evaluate(f"({tracker})('2')")
        user_agent = tab.evaluate("navigator.userAgent")
    assert dropped == {
        "status": 200,
        "body": {"success": True, "message": "Event not tracked - IP excluded"},
    }
    assert tracked == {"status": 200, "body": {"success": True}}
    expected = json.dumps({"type": "pageview", "site_id": "2", "pathname": "/"})
    assert seen == [
        (expected.replace(", ", ",").replace(": ", ":").encode(), "127.0.0.1", user_agent)
    ]
