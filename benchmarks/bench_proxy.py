"""What the proxy's relay costs per request, in-process, beside the filter alone.

Interleaved rounds, best of each, the upstream an in-memory httpx ``MockTransport`` (so
the numbers are the proxy's own work, not a network's):

- baseline: a tracked hit through ``EdgeFilterMiddleware`` over a bare ASGI app;
- the same hit through ``create_proxy_app`` (the filter, then the relay: headers rebuilt,
  the body streamed on, the answer streamed back);
- ``GET /api/script.js`` through the proxy (no filter work: the relay alone);
- a drop through the proxy (answered by the filter; the relay never runs).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx

from _common import fmt_ns, print_table
from edgefilter import EdgeFilter, SiteConfig
from edgefilter.middleware import EdgeFilterMiddleware
from edgefilter.proxy import create_proxy_app

ROUNDS = 5
CALLS = 5_000
UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
)
BODY = json.dumps({"type": "pageview", "site_id": "1", "pathname": "/a"}).encode()
SITE = SiteConfig(site_id=1, block_bots=True, excluded_ips=("10.0.0.0/8",))
SCRIPT = b"x" * 20_000


class Streamed(httpx.AsyncByteStream):
    """An answer body as a network stream gives it (a bytes body would count as read)."""

    def __init__(self, content: bytes) -> None:
        self.content = content

    async def __aiter__(self) -> Any:
        yield self.content


def upstream(request: httpx.Request) -> httpx.Response:
    """The stand-in Rybbit: the script, or {"success": true}."""
    if request.url.path == "/api/script.js":
        headers = {"cache-control": "max-age=60", "content-length": str(len(SCRIPT))}
        return httpx.Response(200, stream=Streamed(SCRIPT), headers=headers)
    answer = b'{"success":true}'
    headers = {"content-type": "application/json", "content-length": str(len(answer))}
    return httpx.Response(200, stream=Streamed(answer), headers=headers)


async def bare_app(scope: Any, receive: Any, send: Any) -> None:
    """Reads the body, answers {"success": true}."""
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b'{"success":true}'})


def per_request_ns(app: Any, method: str, path: str, peer: str) -> float:
    """Nanoseconds per request through ``app``, called directly."""
    body = BODY if method == "POST" else b""
    headers = [(b"user-agent", UA.encode()), (b"host", b"analytics.example")]
    if body:
        headers.append((b"content-length", str(len(body)).encode()))
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": headers,
        "client": (peer, 5000),
    }

    async def loop() -> float:
        start = time.perf_counter_ns()
        for _ in range(CALLS):
            sent = False

            async def receive() -> dict[str, Any]:
                nonlocal sent
                if sent:
                    await asyncio.sleep(3600)  # a client that stays: no disconnect
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}

            async def send(_message: Any) -> None:
                return None

            await app(dict(scope), receive, send)
        return (time.perf_counter_ns() - start) / CALLS

    return asyncio.run(loop())


def main() -> None:
    edge_filter = EdgeFilter({"1": SITE})
    filtered = EdgeFilterMiddleware(bare_app, edge_filter=edge_filter)
    proxy = create_proxy_app(
        "http://rybbit.example", edge_filter, transport=httpx.MockTransport(upstream)
    )
    cases = {
        "tracked hit, filter over a bare app (baseline)": (
            filtered,
            "POST",
            "/api/track",
            "192.0.2.1",
        ),
        "tracked hit, proxy (filter + relay)": (proxy, "POST", "/api/track", "192.0.2.1"),
        "GET /api/script.js, proxy (relay only)": (proxy, "GET", "/api/script.js", "192.0.2.1"),
        "dropped hit, proxy (filter only)": (proxy, "POST", "/api/track", "10.1.2.3"),
    }
    best = dict.fromkeys(cases, float("inf"))
    for _ in range(ROUNDS):  # interleaved: each round measures every case once
        for name, arguments in cases.items():
            best[name] = min(best[name], per_request_ns(*arguments))
    baseline = best["tracked hit, filter over a bare app (baseline)"]
    rows = [(name, fmt_ns(value), f"{value / baseline:.2f}x") for name, value in best.items()]
    print(f"edgefilter proxy in-process: best of {ROUNDS} interleaved rounds x {CALLS} calls")
    print_table(("case", "per request", "vs baseline"), rows)


if __name__ == "__main__":
    main()
