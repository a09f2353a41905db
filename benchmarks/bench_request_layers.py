"""The request layers of bot detection (issue 15): their rates and their per-hit cost.

1. Rates on the captured requests (``data/requests/``, re-captured by ``python -m
   tests.capture_requests``): browsers flagged and clients caught, by the user-agent layer,
   the header layer and both.
2. The datacenter layer: published crawler addresses (Googlebot, Bingbot, OpenAI) found in
   the cloud providers' list (../shared/data/cidr when present, else the shipped sample).
3. The rate layer: a flood from one address, and a brisk human session.
4. The cost of each layer per hit, against ``EdgeFilter.should_track`` of a site that
   blocks bots (a cached user-agent verdict) measured in the same run, interleaved rounds:
   ratios, not bare times. Redis is timed when ``redis-server`` is installed.
5. A tracked browser hit through ``EdgeFilterMiddleware`` in process: without request
   layers, with all four (local rates), and with the rates in Redis; same run, interleaved.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from _common import ROOT, SHARED_DATA, fmt_ns, per_call_ns, print_table
from edgefilter import BotDetector, EdgeFilter, RequestLayers, SiteConfig
from edgefilter._datacenter import DatacenterRanges
from edgefilter._rates import LocalRates, RateLimits, RedisRates
from edgefilter._signals import ClientSignals, HeaderHeuristics, header_map
from edgefilter.middleware import EdgeFilterMiddleware

sys.path.insert(0, str(ROOT))
from tests.redis_server import RedisServer, redis_server_path

REQUESTS = ROOT / "data" / "requests"
ROUNDS = 7
CALLS = 20_000


def load(name: str) -> list[tuple[str, dict[str, str], list[tuple[bytes, bytes]]]]:
    """(client, headers by lower-case name, raw ASGI headers) of a fixture file."""
    document = json.loads((REQUESTS / name).read_text())
    out = []
    for each in document["requests"]:
        raw = [(n.lower().encode(), v.encode("latin-1")) for n, v in each["headers"]]
        out.append((each["client"], header_map(raw), raw))
    return out


def rates_table() -> None:
    detector = BotDetector()
    layer = HeaderHeuristics()
    rows = []
    for name in ("browsers.json", "clients.json"):
        requests = load(name)
        ua_hits = head_hits = both = 0
        for client, headers, _ in requests:
            ua = headers.get("user-agent", "")
            by_ua, by_head = detector.is_bot(ua), layer.is_bot(headers, ua)
            ua_hits += by_ua
            head_hits += by_head
            both += by_ua or by_head
            if name == "clients.json" and not (by_ua or by_head):
                print(f"  missed by both: {client} (header score {layer.score(headers, ua)})")
        what = "browsers flagged" if name == "browsers.json" else "clients caught"
        count = len(requests)
        rows.append(
            [
                f"{what} ({count})",
                f"{ua_hits}/{count}",
                f"{head_hits}/{count}",
                f"{both}/{count}",
            ]
        )
    chrome = [r for r in load("clients.json") if r[0].endswith("chrome-ua")]
    head = sum(HeaderHeuristics().is_bot(h, h.get("user-agent", "")) for _, h, _ in chrome)
    ua = sum(detector.is_bot(h.get("user-agent", "")) for _, h, _ in chrome)
    rows.append([f"clients with a Chrome UA ({len(chrome)})", f"{ua}", f"{head}", "-"])
    print_table(["captured requests", "user-agent layer", "header layer", "either"], rows)


def cloud_files() -> tuple[list[Path], str]:
    # ../shared from the main checkout; a worktree under /work/wt has it one level higher
    shared = next(
        (
            each / "cidr"
            for each in (SHARED_DATA, ROOT.parents[1] / "shared" / "data")
            if (each / "cidr").exists()
        ),
        SHARED_DATA / "cidr",
    )
    full = [shared / "ipranges-all-ipv4.txt", shared / "ipranges-all-ipv6-merged.txt"]
    if all(path.exists() for path in full):
        return full, "lord-alfred/ipranges all (../shared/data/cidr)"
    sample = ROOT / "data" / "cidr"
    return [sample / "ipranges-sample-ipv4.txt", sample / "ipranges-sample-ipv6.txt"], (
        "the shipped sample (data/cidr)"
    )


def datacenter_table() -> DatacenterRanges:
    files, what = cloud_files()
    started = time.perf_counter()
    ranges = DatacenterRanges.from_sources(files)
    took = time.perf_counter() - started
    print(f"\ncloud list: {what}; compiled in {took:.2f} s, {ranges.table.bound_count} bounds")
    rows = []
    for name in ("googlebot-ipv4.txt", "googlebot-ipv6.txt", "bingbot-ipv4.txt", "openai-ipv4.txt"):
        lines = [line.strip() for line in (ROOT / "data" / "cidr" / name).read_text().splitlines()]
        firsts = [line.split("/")[0] for line in lines if line]
        inside = sum(first in ranges for first in firsts)
        rows.append([name, len(firsts), f"{100 * inside / len(firsts):.1f}%"])
    print_table(["published crawler ranges", "ranges", "first address in the cloud list"], rows)
    return ranges


def rate_table() -> None:
    clock = [0.0]
    rates = LocalRates(clock=lambda: clock[0])
    first_flag = None
    for number in range(100):  # a flood: 100 hits in 5 s from one site+IP+UA
        clock[0] = number * 0.05
        if rates.hit("1", "198.51.100.1", "ua", "/") and first_flag is None:
            first_flag = number + 1
    human = LocalRates(clock=lambda: clock[0])
    flagged = 0
    for number in range(720):  # an hour of one pageview every 5 s on 12 pages
        clock[0] = 1000 + number * 5.0
        flagged += human.hit("1", "198.51.100.2", "ua", f"/page{number % 12}")
    print(
        f"\nrate layer (Rybbit's limits): a flood of 20 hits/s is flagged from hit {first_flag};"
        f" a session of one pageview per 5 s over 12 pages for an hour: {flagged} of 720 flagged"
    )


def visitor_ips(ranges: DatacenterRanges, count: int = 250) -> list[str]:
    """Addresses outside every datacenter range (the cloud list holds the documentation
    ranges 192.0.2.0/24, 198.51.100.0/24 and 203.0.113.0/24, so those will not do)."""
    found = [ip for n in range(4 * count) if (ip := f"81.2.{n // 250}.{n % 250}") not in ranges]
    assert len(found) >= count, "too few visitor addresses outside the datacenter list"
    return found[:count]


def cost_table(ranges: DatacenterRanges) -> None:
    edge = EdgeFilter({"1": SiteConfig(site_id=1, block_bots=True)})
    browsers = load("browsers.json")
    _, headers, raw = browsers[0]
    ua = headers["user-agent"]
    payload = {"type": "pageview", "site_id": "1", "_bs": 1, "_bsm": 0}
    layer, signals = HeaderHeuristics(), ClientSignals()
    local = LocalRates(RateLimits(events=10**9, paths=10**9))
    edge.should_track("1", "192.0.2.1", ua)  # warm the user-agent cache
    visitors = visitor_ips(ranges)
    ips = [visitors[n % len(visitors)] for n in range(CALLS)]
    cases: dict[str, tuple[Any, list[tuple[object, ...]]]] = {
        "baseline: should_track (site blocks bots)": (
            edge.should_track,
            [("1", ip, ua) for ip in ips],
        ),
        "headers: is_bot_request (cached, a browser)": (
            layer.is_bot_request,
            [([*raw],) for _ in range(CALLS)],  # a new list per hit, as each scope has
        ),
        "headers: is_bot, uncached (decoded headers)": (layer.is_bot, [(headers, ua)] * CALLS),
        "client: is_bot": (signals.is_bot, [(payload,)] * CALLS),
        "datacenter: ip in ranges": (ranges.__contains__, [(ip,) for ip in ips]),
        "rate: LocalRates.hit": (local.hit, [("1", ip, ua, "/") for ip in ips]),
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(ROUNDS):  # interleaved: every case once per round
        for name, (call, arguments) in cases.items():
            times[name].append(per_call_ns(call, arguments, repeats=1))
    redis_ns = redis_cost()
    base = min(times["baseline: should_track (site blocks bots)"])
    rows = [[name, fmt_ns(min(each)), f"{min(each) / base:.2f}x"] for name, each in times.items()]
    if redis_ns is not None:
        base_async, redis_hit = redis_ns
        rows.append(
            ["rate: RedisRates.ahit (loopback)", fmt_ns(redis_hit), f"{redis_hit / base:.2f}x"]
        )
        rows.append(["  (an awaited no-op in the same loop)", fmt_ns(base_async), "-"])
    print()
    print_table(["per hit", "time", "x baseline"], rows)


def redis_cost() -> tuple[float, float] | None:
    binary = redis_server_path()
    if binary is None:
        print("no redis-server: the Redis round trip is not timed")
        return None
    server = RedisServer(binary)
    server.start()

    async def measure() -> tuple[float, float]:
        rates = RedisRates(server.url, RateLimits(events=10**6, paths=10**6), timeout=1.0)
        calls = 2_000

        async def noop() -> None:
            return None

        best_noop = best_hit = float("inf")
        try:
            await rates.ahit("1", "ip", "ua", "/")
            for _ in range(ROUNDS):
                start = time.perf_counter_ns()
                for _ in range(calls):
                    await noop()
                best_noop = min(best_noop, (time.perf_counter_ns() - start) / calls)
                start = time.perf_counter_ns()
                for number in range(calls):
                    await rates.ahit("1", f"192.0.2.{number % 250}", "ua", "/")
                best_hit = min(best_hit, (time.perf_counter_ns() - start) / calls)
            assert not rates.is_down
        finally:
            await rates.aclose()
        return best_noop, best_hit

    try:
        return asyncio.run(measure())
    finally:
        server.close()


async def _bare_app(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b'{"success":true}'})


def middleware_table(ranges: DatacenterRanges) -> None:
    edge = EdgeFilter({"1": SiteConfig(site_id=1, block_bots=True)})
    _, _, raw = load("browsers.json")[0]
    body = json.dumps({"type": "pageview", "site_id": "1", "pathname": "/a", "_bs": 0}).encode()
    unlimited = RateLimits(events=10**9, paths=10**9)

    def every_layer(rates: Any) -> RequestLayers:
        return RequestLayers(headers=True, client=True, datacenter=ranges, rates=rates)

    variants: dict[str, Any] = {
        "middleware, no request layers (baseline)": EdgeFilterMiddleware(
            _bare_app, edge_filter=edge
        ),
        "+ headers, client, datacenter, local rates": EdgeFilterMiddleware(
            _bare_app, edge_filter=edge, bot_layers=every_layer(LocalRates(unlimited))
        ),
    }
    server = None
    binary = redis_server_path()
    if binary is not None:
        server = RedisServer(binary)
        server.start()
        redis_rates = RedisRates(server.url, unlimited, timeout=1.0)
        variants["+ the same, rates in Redis"] = EdgeFilterMiddleware(
            _bare_app, edge_filter=edge, bot_layers=every_layer(redis_rates)
        )
    message = {"type": "http.request", "body": body, "more_body": False}
    calls = 5_000
    visitors = visitor_ips(ranges)

    async def receive() -> dict[str, Any]:
        return message

    async def send(message: Any) -> None:
        if message["type"] == "http.response.start":
            assert message["headers"] == [], "a drop: this row must time tracked hits"

    async def one(app: Any) -> float:
        start = time.perf_counter_ns()
        for number in range(calls):
            scope = {
                "type": "http",
                "method": "POST",
                "path": "/api/track",
                "headers": [*raw],
                "client": (visitors[number % len(visitors)], 5000),
            }
            await app(scope, receive, send)
        return (time.perf_counter_ns() - start) / calls

    async def measure() -> dict[str, float]:
        best = dict.fromkeys(variants, float("inf"))
        for _ in range(ROUNDS):
            for name, app in variants.items():
                best[name] = min(best[name], await one(app))
        return best

    try:
        best = asyncio.run(measure())
    finally:
        if server is not None:
            server.close()
    base = best["middleware, no request layers (baseline)"]
    rows = [[name, fmt_ns(value), f"{value / base:.2f}x"] for name, value in best.items()]
    print()
    print_table(["a tracked browser hit in process", "per hit", "x baseline"], rows)


def main() -> None:
    print("Request layers (issue 15)\n")
    rates_table()
    ranges = datacenter_table()
    rate_table()
    cost_table(ranges)
    middleware_table(ranges)


if __name__ == "__main__":
    main()
