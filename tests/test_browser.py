"""The browser harness itself: headless Chromium over CDP, a cross-origin JSON POST."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from edgefilter._serving import serve_in_thread

from .browser import Browser, chromium_path


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Chromium for the module; skipped where none is installed (not in CI)."""
    binary = chromium_path()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("CI must provide Chromium: .ci/chromium.sh installs it")
        pytest.skip("no Chromium on this machine; .ci/chromium.sh installs Debian's")
    started = Browser(binary)
    yield started
    started.close()


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
