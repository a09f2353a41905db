"""The middleware applies path, hostname and user-agent rules from the track payload."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from edgefilter import EdgeFilter, SiteConfig
from edgefilter.middleware import EdgeFilterMiddleware

from .conftest import CHROME

SITE = SiteConfig(
    site_id=1,
    block_bots=False,
    excluded_paths=("/admin*",),
    excluded_hostnames=("*.internal.example",),
    excluded_user_agents=("uptimecheck",),
    domain="www.Example.com",
)


async def post(
    payload: dict[str, Any],
    user_agent: str = CHROME,
    *,
    origin: str | None = None,
    **options: Any,
) -> tuple[int, bytes, int]:
    """(status, answer body, requests that reached the app) for one track hit."""
    reached: list[int] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        reached.append(1)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    middleware = EdgeFilterMiddleware(app, edge_filter=EdgeFilter({"1": SITE}), **options)
    sent: list[dict[str, Any]] = []
    body = json.dumps(payload).encode()
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/api/track",
        "headers": [(b"user-agent", user_agent.encode())]
        + ([(b"origin", origin.encode())] if origin is not None else []),
        "client": ("198.51.100.1", 5000),
    }
    await middleware(scope, receive, send)
    return sent[0]["status"], sent[1]["body"], len(reached)


@pytest.mark.parametrize(
    ("payload", "user_agent", "message"),
    [
        ({"pathname": "/ADMIN/users"}, CHROME, "Event not tracked - path excluded"),
        ({"hostname": "db.internal.example"}, CHROME, "Event not tracked - hostname excluded"),
        ({"pathname": "/"}, "Mozilla/5.0 UptimeCheck/2", "Event not tracked - user agent excluded"),
    ],
)
def test_excluded_hits_get_rybbits_answer(
    payload: dict[str, Any], user_agent: str, message: str
) -> None:
    """A hit excluded by path, hostname or user agent is answered as Rybbit answers it."""
    status, body, reached = asyncio.run(
        post({"type": "pageview", "site_id": "1", **payload}, user_agent)
    )
    assert (status, json.loads(body), reached) == (200, {"success": True, "message": message}, 0)


@pytest.mark.parametrize("payload", [{}, {"pathname": "/shop"}, {"hostname": "shop.example"}])
def test_other_hits_reach_the_app(payload: dict[str, Any]) -> None:
    """A payload without a pathname, or with one no rule names, is collected."""
    status, _, reached = asyncio.run(post({"type": "pageview", "site_id": "1", **payload}))
    assert (status, reached) == (200, 1)


@pytest.mark.parametrize(
    ("origin", "collected"),
    [
        # the site's domain, with or without www., and its subdomains
        ("https://example.com", True),
        ("https://www.example.com", True),
        ("https://shop.EXAMPLE.com:8443", True),
        (None, True),  # server-side ingestion sends no Origin
        # anything else
        ("https://example.com.evil.test", False),
        ("https://notexample.com", False),
        ("https://evil.test", False),
        ("null", False),
        ("not an origin", False),
        ("http://[::1", False),
    ],
)
def test_check_origin_drops_hits_from_foreign_pages(origin: str | None, collected: bool) -> None:
    """With check_origin, a hit whose Origin is not the site's domain is refused (403)."""
    status, body, reached = asyncio.run(
        post({"type": "pageview", "site_id": "1"}, origin=origin, check_origin=True)
    )
    if collected:
        assert (status, reached) == (200, 1)
    else:
        assert (status, json.loads(body), reached) == (
            403,
            {"success": False, "error": "Origin not allowed"},
            0,
        )


def test_origins_are_not_checked_by_default() -> None:
    """Without check_origin, a foreign page's hit is decided by the rules alone."""
    _, _, reached = asyncio.run(post({"type": "pageview", "site_id": "1"}, origin="https://x.test"))
    assert reached == 1
