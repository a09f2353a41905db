"""What routing costs: the middleware with Rybbit's three hit routes against ``paths=`` of one.

In-process, interleaved rounds, best of each: a tracked track hit, a tracked session replay
(site id from the path), and a POST to a path that is no hit (passed through unread), each
through ``EdgeFilterMiddleware(routes=RYBBIT_ROUTES)`` (the default) and, as the baseline,
``paths=("/api/track",)``, the default before the routes existed.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from _common import fmt_ns, print_table
from edgefilter import EdgeFilter, SiteConfig
from edgefilter.middleware import RYBBIT_ROUTES, EdgeFilterMiddleware

ROUNDS = 7
CALLS = 20_000
UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
)
TRACK = json.dumps({"type": "pageview", "site_id": "1", "pathname": "/a"}).encode()
REPLAY = json.dumps(
    {
        "userId": "u",
        "events": [{"type": 3, "data": {}, "timestamp": 1}],
        "metadata": {"pageUrl": "https://example.com/a"},
    }
).encode()
SITE = SiteConfig(site_id=1, block_bots=True, excluded_ips=("10.0.0.0/8",))


async def bare_app(scope: Any, receive: Any, send: Any) -> None:
    """Reads the body, answers 200."""
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def per_request_ns(app: Any, path: str, body: bytes) -> float:
    """Nanoseconds per request through ``app``, called directly."""
    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "headers": [(b"user-agent", UA.encode())],
        "client": ("192.0.2.1", 5000),
    }
    message = {"type": "http.request", "body": body, "more_body": False}

    async def receive() -> dict[str, Any]:
        return message

    async def send(_message: Any) -> None:
        return None

    async def loop() -> float:
        start = time.perf_counter_ns()
        for _ in range(CALLS):
            await app(dict(scope), receive, send)
        return (time.perf_counter_ns() - start) / CALLS

    return asyncio.run(loop())


def main() -> None:
    edge_filter = EdgeFilter({"1": SITE})
    routed = EdgeFilterMiddleware(bare_app, edge_filter=edge_filter, routes=RYBBIT_ROUTES)
    baseline = EdgeFilterMiddleware(bare_app, edge_filter=edge_filter, paths=("/api/track",))
    cases = {
        "track hit, paths=('/api/track',)": (baseline, "/api/track", TRACK),
        "track hit, Rybbit's routes": (routed, "/api/track", TRACK),
        "replay hit, Rybbit's routes": (routed, "/api/session-replay/record/1", REPLAY),
        "other POST, paths=('/api/track',)": (baseline, "/api/other", TRACK),
        "other POST, Rybbit's routes": (routed, "/api/other", TRACK),
    }
    best = dict.fromkeys(cases, float("inf"))
    for _ in range(ROUNDS):  # interleaved: each round measures every case once
        for name, (app, path, body) in cases.items():
            best[name] = min(best[name], per_request_ns(app, path, body))
    base = {
        "track": best["track hit, paths=('/api/track',)"],
        "other": best["other POST, paths=('/api/track',)"],
    }
    rows = []
    for name, value in best.items():
        reference = base["other"] if name.startswith("other") else base["track"]
        rows.append((name, fmt_ns(value), f"{value / reference:.2f}x"))
    print(f"EdgeFilterMiddleware routing: best of {ROUNDS} interleaved rounds x {CALLS} calls")
    print_table(("case", "per request", "vs baseline"), rows)


if __name__ == "__main__":
    main()
