"""Edge proxy mode: a collector that forwards tracked hits to a real Rybbit upstream.

Dropped hits are answered by ``EdgeFilterMiddleware`` itself (and by the forwarder, should
``mode="annotate"`` pass one on: only a tracked decision is forwarded); tracked ones are sent
on with httpx, keeping the visitor's user agent, ``Accept*``, ``Sec-Fetch-*`` and client hints
(Rybbit counts a ``python-httpx`` user agent, or missing browser headers, as a bot) and the
client address in ``X-Forwarded-For``: the user agent and address the filter decided on.
The upstream's answer is relayed as it is.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable
from typing import Any, Final

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .._decisions import Reason
from .._filter import EdgeFilter
from ..middleware import DROP_ANSWERS, EdgeFilterMiddleware

FORWARDED_HEADERS: Final = (
    "user-agent",
    "accept",
    "accept-language",
    "accept-encoding",
    "content-type",
    "origin",
    "referer",
)
FORWARDED_PREFIXES: Final = ("sec-fetch-", "sec-ch-ua")
UPSTREAM_TIMEOUT: Final = 10.0


def upstream_headers(
    request: Request, client_ip: str | None, user_agent: str | None = None
) -> dict[str, str]:
    """The visitor's headers worth keeping, plus ``X-Forwarded-For: <client address>``.

    ``user_agent``, when given, is the one the filter decided on and replaces the request's
    (a repeated ``User-Agent`` is read as none: the upstream must judge the same one).
    """
    headers = {
        name: value
        for name, value in request.headers.items()
        if name in FORWARDED_HEADERS or name.startswith(FORWARDED_PREFIXES)
    }
    if user_agent is not None:
        headers["user-agent"] = user_agent
    if client_ip:
        headers["x-forwarded-for"] = client_ip
    return headers


def create_proxy_app(
    upstream: str,
    edge_filter: EdgeFilter,
    *,
    trusted_proxies: Iterable[str] = (),
    paths: Iterable[str] = ("/api/track",),
    transport: httpx.AsyncBaseTransport | None = None,
    **middleware_options: Any,
) -> EdgeFilterMiddleware:
    """The proxy: ``EdgeFilterMiddleware`` in front of a forwarder to ``upstream``."""
    base = upstream.rstrip("/")
    client = httpx.AsyncClient(timeout=UPSTREAM_TIMEOUT, transport=transport)

    async def forward(request: Request) -> Response:
        outcome = request.scope.get("state", {}).get("edgefilter")
        if outcome is None:  # no decision: nothing is forwarded without one
            status, answer_body = DROP_ANSWERS[Reason.invalid_payload]
            return JSONResponse(answer_body, status)
        if not outcome.decision.tracked:  # mode="annotate" passes drops on; they stop here
            status, answer_body = DROP_ANSWERS[outcome.decision.reason]
            return JSONResponse(answer_body, status)
        try:
            answer = await client.post(
                base + request.url.path,
                params=request.query_params,
                content=await request.body(),
                headers=upstream_headers(request, outcome.client_ip, outcome.user_agent),
            )
        except httpx.HTTPError:
            return JSONResponse({"success": False, "error": "Upstream unavailable"}, 502)
        media_type = answer.headers.get("content-type", "application/json")
        return Response(answer.content, status_code=answer.status_code, media_type=media_type)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        await client.aclose()

    path_list = list(paths)
    app = Starlette(
        routes=[Route(path, forward, methods=["POST"]) for path in path_list], lifespan=lifespan
    )
    return EdgeFilterMiddleware(
        app,
        edge_filter=edge_filter,
        trusted_proxies=trusted_proxies,
        paths=path_list,
        **middleware_options,
    )
