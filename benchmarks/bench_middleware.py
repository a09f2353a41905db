"""EdgeFilterMiddleware's cost on the pass path: in-process, and under load over loopback.

1. In-process: the same tracked hit through the bare ASGI app and through the app behind
   the middleware, interleaved rounds, best of each; the difference is what the middleware
   adds (body buffering, JSON parse, client address, should_track, replay).
2. Loopback load: uvicorn serving each variant in its own process, driven by wrk when it is
   on PATH (Debian package ``wrk``), else by a threaded httpx generator (slower, so the
   ratio then understates the server's headroom); interleaved, best run of each.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from _common import CITY_DB, fmt_ns, print_table
from edgefilter import CountryResolver, EdgeFilter, SiteConfig
from edgefilter.middleware import EdgeFilterMiddleware

ROUNDS = 5
# Server on one core, load generator on the other, so they do not take turns on both.
PIN_SERVER = ["taskset", "-c", "0"] if shutil.which("taskset") and os.cpu_count() == 2 else []
PIN_LOAD = ["taskset", "-c", "1"] if PIN_SERVER else []
CALLS = 20_000
LOAD_SECONDS = 5
LOAD_ROUNDS = 3
CONNECTIONS = 32
UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
)
FORWARDED_FOR = "216.160.83.56"
BODY = json.dumps(
    {"type": "pageview", "site_id": "1", "hostname": "example.com", "pathname": "/a"}
).encode()
SITE = SiteConfig(
    site_id=1,
    block_bots=True,
    excluded_ips=tuple(f"10.{i // 256}.{i % 256}.0/24" for i in range(1000)),
    excluded_countries=("CN", "RU", "KP"),
)


async def bare_app(scope: Any, receive: Any, send: Any) -> None:
    """A minimal track endpoint: reads the body, answers {"success": true}."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": b'{"success":true}'})


def filtered_app() -> EdgeFilterMiddleware:
    """The bare app behind the middleware, with 1,000 IP entries, 3 countries and blockBots."""
    resolver = CountryResolver(CITY_DB)
    resolver.wait_compiled()
    edge_filter = EdgeFilter({"1": SITE}, geoip=resolver)
    return EdgeFilterMiddleware(bare_app, edge_filter=edge_filter, trusted_proxies=["127.0.0.1"])


def in_process(app: Any) -> float:
    """Nanoseconds per request through ``app``, called directly."""
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/api/track",
        "headers": [(b"user-agent", UA.encode()), (b"x-forwarded-for", FORWARDED_FOR.encode())],
        "client": ("127.0.0.1", 5000),
    }
    message = {"type": "http.request", "body": BODY, "more_body": False}

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


def serve(variant: str, port: int) -> None:
    """Serve one variant with uvicorn (the child-process entry point)."""
    import uvicorn  # noqa: PLC0415 - only the child process serves

    app = bare_app if variant == "bare" else filtered_app()
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def start_server(variant: str, port: int) -> subprocess.Popen[bytes]:
    """A child process serving ``variant`` on ``port``, once it answers."""
    command = [sys.executable, __file__, "--serve", variant, str(port)]
    child = subprocess.Popen(PIN_SERVER + command)
    for _ in range(200):
        try:
            httpx.post(
                f"http://127.0.0.1:{port}/api/track", content=BODY, headers={"User-Agent": UA}
            )
            return child
        except httpx.TransportError:
            time.sleep(0.05)
    child.kill()
    raise RuntimeError(f"{variant} server did not start")


def wrk_rps(port: int) -> float:
    """Requests per second measured by wrk."""
    script = "\n".join(
        [
            'wrk.method = "POST"',
            f"wrk.body = {json.dumps(BODY.decode())}",
            f'wrk.headers["User-Agent"] = "{UA}"',
            f'wrk.headers["X-Forwarded-For"] = "{FORWARDED_FOR}"',
        ]
    )
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
    try:
        out = subprocess.run(
            [
                "wrk",
                "-t2",
                f"-c{CONNECTIONS}",
                f"-d{LOAD_SECONDS}s",
                "-s",
                handle.name,
                f"http://127.0.0.1:{port}/api/track",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        os.unlink(handle.name)
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]


def python_rps(port: int) -> float:
    """Requests per second from a threaded httpx generator (fallback when wrk is absent)."""
    deadline = time.perf_counter() + LOAD_SECONDS

    def worker(_: int) -> int:
        count = 0
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            while time.perf_counter() < deadline:
                client.post(
                    "/api/track",
                    content=BODY,
                    headers={"User-Agent": UA, "X-Forwarded-For": FORWARDED_FOR},
                )
                count += 1
        return count

    start = time.perf_counter()
    with ThreadPoolExecutor(CONNECTIONS // 4) as pool:
        total = sum(pool.map(worker, range(CONNECTIONS // 4)))
    return total / (time.perf_counter() - start)


def main() -> int:
    """Print both tables; exit 0."""
    best = {"bare": float("inf"), "filtered": float("inf")}
    apps = {"bare": bare_app, "filtered": filtered_app()}
    for _ in range(ROUNDS):
        for name, app in apps.items():
            best[name] = min(best[name], in_process(app))
    added = best["filtered"] - best["bare"]
    print(
        "In-process, per tracked hit (1,000 IP entries, 3 countries, blockBots;"
        f" best of {ROUNDS}):\n"
    )
    print_table(
        ["app", "per request"],
        [
            ["bare ASGI app", fmt_ns(best["bare"])],
            ["behind EdgeFilterMiddleware", fmt_ns(best["filtered"])],
            ["added by the middleware", fmt_ns(added)],
        ],
    )
    generator = "wrk" if shutil.which("wrk") else "httpx threads (wrk not installed)"
    measure = wrk_rps if shutil.which("wrk") else python_rps
    rps = {"bare": 0.0, "filtered": 0.0}
    for round_index in range(LOAD_ROUNDS):
        for offset, name in enumerate(("bare", "filtered")):
            port = 18700 + round_index * 2 + offset
            child = start_server(name, port)
            try:
                rps[name] = max(rps[name], measure(port))
            finally:
                child.terminate()
                child.wait()
    print(
        f"\nLoopback load, uvicorn, {CONNECTIONS} connections, {LOAD_SECONDS} s runs,"
        f" best of {LOAD_ROUNDS} interleaved, load from {generator}:\n"
    )
    print_table(
        ["app", "requests/s", "vs bare"],
        [
            ["bare ASGI app", f"{rps['bare']:,.0f}", "1.00x"],
            [
                "behind EdgeFilterMiddleware",
                f"{rps['filtered']:,.0f}",
                f"{rps['filtered'] / rps['bare']:.2f}x",
            ],
        ],
    )
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        serve(sys.argv[2], int(sys.argv[3]))
        sys.exit(0)
    sys.exit(main())
