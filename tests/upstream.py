"""A stand-in Rybbit analytics host for the proxy's tests: records what reaches it.

It serves Rybbit v2.7's ingest surface the way Rybbit does where the tests look: the
tracker script gzip-encoded with ``Cache-Control``, ``ETag`` and ``Vary`` (a 304 for a
matching ``If-None-Match``), a ``br``-encoded ``replay.js`` (opaque bytes: only relayed,
never decoded), a ``metrics.js`` streamed in two parts (the second when the test releases
it), the tracking config, and the three hit endpoints answering ``{"success": true}`` with
Rybbit's public CORS. It never answers a preflight: the proxy must.
"""

from __future__ import annotations

import asyncio
import gzip
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

# What the stand-in's script does: a JSON fetch POST to the analytics host it was loaded
# from, as Rybbit's tracker does (so a browser preflights it).
TRACKER_JS = b"""(() => {
  const script = document.currentScript;
  const host = script.src.split("/api/script.js")[0];
  const send = (path, payload) => fetch(host + path, {method: "POST", mode: "cors",
      headers: {"Content-Type": "application/json"}, body: JSON.stringify(payload)})
    .then(async (answer) => ({status: answer.status, body: await answer.json()}));
  window.track = (siteId) =>
    send("/api/track", {type: "pageview", site_id: siteId, pathname: location.pathname});
  window.identify = (siteId, userId) =>
    send("/api/identify", {site_id: siteId, user_id: userId, traits: {plan: "pro"}});
  window.replay = (siteId) => send("/api/session-replay/record/" + siteId, {userId: "u1",
      events: [{type: 2, data: {}, timestamp: 1}], metadata: {pageUrl: location.href}});
  window.trackerLoaded = true;
})();
"""
SCRIPT_GZIP = gzip.compress(TRACKER_JS, mtime=0)
SCRIPT_ETAG = '"tracker-v1"'
SCRIPT_CACHE = "public, max-age=3600"
REPLAY_BR = bytes(range(256)) * 4  # not real brotli: the proxy must never decode it
BIG_SIZE = 4 * 1024 * 1024
FIRST_PART = b"/* metrics.js: first part */\n"


@dataclass
class Seen:
    """One request as the upstream received it."""

    method: str
    path: str
    query: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> list[str]:
        """Every value of header ``name``."""
        return [value for key, value in self.headers if key == name]


@dataclass
class Upstream:
    """The stand-in's app and what it saw."""

    seen: list[Seen] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    stream_closed: threading.Event = field(default_factory=threading.Event)
    app: Any = None

    def __post_init__(self) -> None:
        self.app = Starlette(
            routes=[
                Route("/api/script.js", self.script, methods=["GET", "HEAD"]),
                Route("/api/replay.js", self.replay, methods=["GET"]),
                Route("/api/metrics.js", self.metrics, methods=["GET"]),
                Route("/api/big", self.big, methods=["GET"]),
                Route("/api/site/tracking-config/{site}", self.config, methods=["GET"]),
                Route("/api/track", self.hit, methods=["POST"]),
                Route("/api/identify", self.hit, methods=["POST"]),
                Route("/api/session-replay/record/{site}", self.hit, methods=["POST"]),
                Route("/api/other", self.hit, methods=["POST", "GET", "OPTIONS"]),
            ]
        )

    async def record(self, request: Request) -> bytes:
        body = await request.body()
        self.seen.append(
            Seen(
                request.method,
                request.url.path,
                request.url.query,
                [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw],
                body,
            )
        )
        return body

    def hits(self) -> list[Seen]:
        """The POSTs the upstream received."""
        return [seen for seen in self.seen if seen.method == "POST"]

    async def script(self, request: Request) -> Response:
        await self.record(request)
        headers = {
            "cache-control": SCRIPT_CACHE,
            "etag": SCRIPT_ETAG,
            "vary": "Accept-Encoding",
            "x-upstream": "rybbit",
            "set-cookie": "visitor=first; Path=/",
        }
        if request.headers.get("if-none-match") == SCRIPT_ETAG:
            return Response(status_code=304, headers=headers)
        return Response(
            SCRIPT_GZIP,
            media_type="application/javascript",
            headers={**headers, "content-encoding": "gzip"},
        )

    async def replay(self, request: Request) -> Response:
        await self.record(request)
        return Response(
            REPLAY_BR,
            media_type="application/javascript",
            headers={"content-encoding": "br", "cache-control": SCRIPT_CACHE},
        )

    async def metrics(self, request: Request) -> Response:
        await self.record(request)
        release, closed = self.release, self.stream_closed

        async def parts() -> AsyncIterator[bytes]:
            try:
                yield FIRST_PART
                while not release.is_set():
                    await asyncio.sleep(0.01)
                yield b"/* second part */\n"
            finally:
                closed.set()

        return StreamingResponse(parts(), media_type="application/javascript")

    async def big(self, request: Request) -> Response:
        await self.record(request)

        async def chunks() -> AsyncIterator[bytes]:
            for index in range(BIG_SIZE // 65536):
                yield bytes([index % 256]) * 65536

        return StreamingResponse(chunks(), media_type="application/octet-stream")

    async def config(self, request: Request) -> Response:
        await self.record(request)
        site = request.path_params["site"]
        if site == "slow":
            await asyncio.sleep(2)
        headers = _cors(request)
        if site == "hop":
            headers.update({"connection": "x-upstream-secret", "x-upstream-secret": "1"})
        return JSONResponse({"trackInitialPageView": True, "site": site}, headers=headers)

    async def hit(self, request: Request) -> Response:
        await self.record(request)
        return JSONResponse({"success": True}, headers=_cors(request))


def _cors(request: Request) -> dict[str, str]:
    """Rybbit's public CORS on an actual answer: the origin reflected, ``Vary: Origin``."""
    origin = request.headers.get("origin")
    return {"access-control-allow-origin": origin, "vary": "Origin"} if origin else {}
