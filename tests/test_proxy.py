"""Edge proxy mode: tracked hits forwarded to an upstream with the visitor's headers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from edgefilter import EdgeFilter, SiteConfig
from edgefilter._serving import serve_in_thread
from edgefilter.proxy import create_proxy_app

from .conftest import CHROME

SITE = SiteConfig(site_id=1, block_bots=True, excluded_ips=("203.0.113.0/24",))
LOOPBACK_EXCLUDED = SiteConfig(site_id=1, block_bots=True, excluded_ips=("127.0.0.1",))


class Upstream:
    """A stand-in Rybbit: records each request, answers like Rybbit's track endpoint."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.app = Starlette(routes=[Route("/api/track", self.track, methods=["POST"])])

    async def track(self, request: Request) -> JSONResponse:
        self.requests.append({"headers": dict(request.headers), "body": await request.body()})
        return JSONResponse({"success": True}, headers={"x-upstream": "rybbit"})


@pytest.fixture
def upstream() -> Iterator[tuple[Upstream, str]]:
    """The upstream on loopback."""
    fake = Upstream()
    with serve_in_thread(fake.app) as url:
        yield fake, url


def test_tracked_hits_are_forwarded_with_the_visitors_headers(
    upstream: tuple[Upstream, str],
) -> None:
    """Body byte for byte; UA, Accept*, Sec-Fetch-* kept; client address in X-Forwarded-For."""
    fake, url = upstream
    proxy = create_proxy_app(url, EdgeFilter({"1": SITE}), trusted_proxies=["127.0.0.2"])
    body = b'{"type": "pageview", "site_id": "1", "pathname": "/a"}'
    headers = {
        "User-Agent": CHROME,
        "Accept-Language": "de-CH",
        "Sec-Fetch-Mode": "no-cors",
        "X-Forwarded-For": "216.160.83.56",
        "Cookie": "secret=1",
        "Content-Type": "application/json",
    }
    transport = httpx.HTTPTransport(local_address="127.0.0.2")
    with serve_in_thread(proxy) as proxy_url, httpx.Client(transport=transport) as client:
        answer = client.post(f"{proxy_url}/api/track", content=body, headers=headers)
        dropped = client.post(
            f"{proxy_url}/api/track",
            content=body,
            headers={**headers, "X-Forwarded-For": "203.0.113.5"},
        )
    assert answer.json() == {"success": True}
    assert dropped.json()["message"] == "Event not tracked - IP excluded"
    assert len(fake.requests) == 1
    forwarded = fake.requests[0]
    assert forwarded["body"] == body
    assert forwarded["headers"]["user-agent"] == CHROME
    assert forwarded["headers"]["accept-language"] == "de-CH"
    assert forwarded["headers"]["sec-fetch-mode"] == "no-cors"
    assert forwarded["headers"]["x-forwarded-for"] == "216.160.83.56"
    assert "cookie" not in forwarded["headers"]


def test_upstream_down_is_a_502() -> None:
    """No upstream: the proxy answers 502, it does not crash."""
    proxy = create_proxy_app("http://127.0.0.1:9", EdgeFilter({"1": SITE}))
    body = b'{"type": "pageview", "site_id": "1"}'
    with serve_in_thread(proxy) as proxy_url:
        answer = httpx.post(f"{proxy_url}/api/track", content=body, headers={"User-Agent": CHROME})
    assert answer.status_code == 502
    assert answer.json() == {"success": False, "error": "Upstream unavailable"}


def test_only_tracked_decisions_reach_the_upstream(upstream: tuple[Upstream, str]) -> None:
    """In annotate mode, dropped or unreadable hits still stop at the proxy."""
    fake, url = upstream
    proxy = create_proxy_app(url, EdgeFilter({"1": LOOPBACK_EXCLUDED}), mode="annotate")
    excluded = httpx.HTTPTransport(local_address="127.0.0.1")
    with serve_in_thread(proxy) as proxy_url, httpx.Client(transport=excluded) as client:
        bom = client.post(
            f"{proxy_url}/api/track",
            content=b'\xef\xbb\xbf{"type": "pageview", "site_id": "1"}',
            headers={"User-Agent": CHROME},
        )
        invalid = client.post(
            f"{proxy_url}/api/track", content=b"{", headers={"User-Agent": CHROME}
        )
    assert (bom.status_code, invalid.status_code) == (200, 400)
    assert fake.requests == []


def test_the_upstream_gets_the_user_agent_the_filter_judged(
    upstream: tuple[Upstream, str],
) -> None:
    """Two User-Agent headers are judged as none; the upstream is sent none, not the last."""
    fake, url = upstream
    site = SiteConfig(site_id=1, block_bots=False)
    proxy = create_proxy_app(url, EdgeFilter({"1": site}))
    headers = [("User-Agent", "curl/8.0"), ("User-Agent", CHROME)]
    with serve_in_thread(proxy) as proxy_url:
        httpx.post(
            f"{proxy_url}/api/track", content=b'{"site_id": "1"}', headers=headers
        ).raise_for_status()
    assert fake.requests[0]["headers"]["user-agent"] == ""
