"""EdgeFilterMiddleware's cost on the pass path: in-process, by stage, and under load.

1. In-process: the same tracked hit through the bare ASGI app and through the app behind
   the middleware, interleaved rounds, best of each; the difference is what the middleware
   adds. With the headers the load generator sends, with a browser's, and with wrk's
   again but the CPU caches evicted before each hit (as a server's own work between hits
   leaves them; the load's ratio follows this row rather than the warm ones).
2. The breakdown of that cost, each stage timed on its own in the same run (the
   middleware's own pieces, called as its pass path calls them): the header scan, reading
   the body, parsing it, the client address, the decision (``should_track``), counting it,
   and the replay of the body to the app; what is left is the middleware's own frame and
   bookkeeping (its coroutine, the path check, the ``EdgeDecision``, ``scope["state"]``)
   and what the stages cost more in the flow than in a loop of their own.
3. Loopback load: uvicorn with httptools serving each variant in its own process pinned to
   one core, wrk (Debian package ``wrk``) pinned to the other, three interleaved rounds in
   short mirrored bursts (ABCD DCBA); every round's ratio to the bare app is printed, and
   the median, both of wall-clock requests per second and of requests per second of the
   server's own CPU time (which the machine's other work does not dilute). Beside the bare
   app and the middleware run two floors: a pass-through layer (one coroutine awaiting the
   app: what any Python ASGI layer costs) and read+replay (a layer that reads the body and
   replays it with the middleware's ``_replay``: what any body-reading layer costs), so
   that the middleware's own share of the gap can be read off.

``python bench_middleware.py --load-only`` runs the load part alone; ``--instructions``
instead counts each variant's instructions per hit in process with callgrind (Debian
package ``valgrind``): exact, so a change's effect shows however busy the machine is.
"""

from __future__ import annotations

import asyncio
import collections
import json
import operator
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import httpx
import orjson

from _common import CITY_DB, fmt_ns, print_table
from edgefilter import CountryResolver, EdgeFilter, SiteConfig
from edgefilter.middleware import EdgeFilterMiddleware, _replay, _scan_headers

ROUNDS = 9
STAGE_CALLS = 50_000
# Server on one core, load generator on the other, so they do not take turns on both.
PIN_SERVER = ["taskset", "-c", "0"] if shutil.which("taskset") and os.cpu_count() == 2 else []
PIN_LOAD = ["taskset", "-c", "1"] if PIN_SERVER else []
CALLS = 20_000
LOAD_SECONDS = 1  # per burst; a round is ABCD DCBA bursts of each set of running servers
# Servers per variant: one server process is faster or slower than another of the same code
# by up to a tenth, for its life (its memory layout, its hash seed), so each variant's
# load is the sum over processes started alike.
SERVERS_PER_VARIANT = 2
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
# What wrk sends (below), as uvicorn's httptools protocol hands it over.
WRK_HEADERS = [
    (b"host", b"127.0.0.1:18700"),
    (b"content-length", str(len(BODY)).encode()),
    (b"user-agent", UA.encode()),
    (b"x-forwarded-for", FORWARDED_FOR.encode()),
]
# What Chrome sends with the tracker's fetch to a collector on another domain, via a proxy.
BROWSER_HEADERS = [
    (b"host", b"collector.example.net"),
    (b"connection", b"keep-alive"),
    (b"content-length", str(len(BODY)).encode()),
    (b"sec-ch-ua-platform", b'"Windows"'),
    (b"user-agent", UA.encode()),
    (b"content-type", b"application/json"),
    (b"accept", b"*/*"),
    (b"origin", b"https://example.com"),
    (b"sec-fetch-site", b"cross-site"),
    (b"sec-fetch-mode", b"cors"),
    (b"referer", b"https://example.com/a"),
    (b"accept-encoding", b"gzip, deflate, br"),
    (b"accept-language", b"en-US,en;q=0.9"),
    (b"x-forwarded-for", FORWARDED_FOR.encode()),
]
MESSAGE = {"type": "http.request", "body": BODY, "more_body": False}


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


async def pass_through_app(scope: Any, receive: Any, send: Any) -> None:
    """The floor of any Python ASGI layer: one more coroutine that awaits the bare app."""
    await bare_app(scope, receive, send)


async def replaying_app(scope: Any, receive: Any, send: Any) -> None:
    """The floor of a layer that reads the body first: the bare app behind one that reads
    the body's message and replays it with the middleware's own ``_replay``."""
    if scope["type"] != "http":
        await bare_app(scope, receive, send)
        return
    message = await receive()
    await bare_app(scope, _replay(message, receive), send)


def filtered_app() -> EdgeFilterMiddleware:
    """The bare app behind the middleware, with 1,000 IP entries, 3 countries and blockBots."""
    resolver = CountryResolver(CITY_DB)
    resolver.wait_compiled()
    edge_filter = EdgeFilter({"1": SITE}, geoip=resolver)
    return EdgeFilterMiddleware(bare_app, edge_filter=edge_filter, trusted_proxies=["127.0.0.1"])


# The layers under load: the bare app, the two floors, the middleware.
FLOORS: dict[str, Any] = {
    "bare": bare_app,
    "pass-through": pass_through_app,
    "read+replay": replaying_app,
}
VARIANTS = (*FLOORS, "filtered")
BURSTS = (*VARIANTS, *reversed(VARIANTS))  # each server's turns in a round: mirrored order


def hit_scope(headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    """A tracked hit's scope as uvicorn makes it (with the ``state`` it always carries)."""
    return {
        "type": "http",
        "method": "POST",
        "path": "/api/track",
        "headers": headers,
        "client": ("127.0.0.1", 5000),
        "state": {},
    }


async def receive() -> dict[str, Any]:
    return MESSAGE


async def send(_message: Any) -> None:
    return None


def in_process(app: Any, headers: list[tuple[bytes, bytes]]) -> float:
    """Nanoseconds per request through ``app``, called directly."""
    scope = hit_scope(headers)

    async def loop() -> float:
        start = time.perf_counter_ns()
        for _ in range(CALLS):
            await app(dict(scope), receive, send)
        return (time.perf_counter_ns() - start) / CALLS

    return asyncio.run(loop())


COLD_CALLS = 2_000
EVICTION = bytearray(4 * 1024 * 1024)  # past this machine's L2 (and most of an L3 share)


def in_process_cold(app: Any, headers: list[tuple[bytes, bytes]]) -> float:
    """Nanoseconds per request through ``app`` with the CPU caches evicted before each
    (a 4 MiB write, untimed) and the headers fresh, as a server's own work leaves them."""
    scope = hit_scope(headers)
    lines = len(EVICTION[::64])

    async def loop() -> float:
        total = 0
        for _ in range(COLD_CALLS):
            EVICTION[::64] = bytes(lines)
            fresh = dict(scope)
            fresh["headers"] = [(bytes(name), bytes(value)) for name, value in headers]
            start = time.perf_counter_ns()
            await app(fresh, receive, send)
            total += time.perf_counter_ns() - start
        return total / COLD_CALLS

    return asyncio.run(loop())


def timed(stage: Callable[[], object]) -> float:
    """Nanoseconds per call of ``stage``, less the loop's own cost."""
    start = time.perf_counter_ns()
    for _ in range(STAGE_CALLS):
        stage()
    return (time.perf_counter_ns() - start) / STAGE_CALLS


def timed_async(stage: Callable[[], Awaitable[object]]) -> float:
    """Nanoseconds per await of ``stage()``, driven without an event loop (none suspends)."""

    async def loop() -> float:
        start = time.perf_counter_ns()
        for _ in range(STAGE_CALLS):
            await stage()
        return (time.perf_counter_ns() - start) / STAGE_CALLS

    coroutine = loop()
    try:
        coroutine.send(None)
    except StopIteration as done:
        return float(done.value)
    raise RuntimeError("a stage suspended")


def stage_costs(
    middleware: EdgeFilterMiddleware, headers: list[tuple[bytes, bytes]]
) -> dict[str, float]:
    """Each stage of the pass path on its own, as ``EdgeFilterMiddleware.__call__`` runs it."""
    scope = hit_scope(headers)
    limit = middleware.max_body_bytes
    wanted = middleware._wanted_names
    hit = _scan_headers(headers, wanted, limit)  # the compiled scan, when built
    if hit is False:
        scan = "Python"
        hit = middleware._scan(headers, middleware._exact_routes["/api/track"])
    else:
        scan = "compiled"
    assert hit is not None
    client_ip = middleware._client_address(scope["client"], hit[1])
    user_agent = hit[0]
    edge_filter = middleware.edge_filter
    rules = middleware.rules_for("1")
    counts = middleware._tracked_counts
    decision = edge_filter.should_track(
        "1", client_ip, user_agent, path="/a", hostname="example.com"
    )
    assert decision.tracked, decision
    middleware._count(decision, "1")  # the count exists from here

    def count() -> object:  # the pass path's count of a tracked hit (EdgeFilterMiddleware._decide)
        return next(counts[rules.site_id or rules.id or "1"])  # type: ignore[union-attr]

    def header_scan() -> object:
        if scan == "compiled":
            return _scan_headers(headers, wanted, limit)
        return middleware._scan(headers, middleware._exact_routes["/api/track"])

    async def read_body() -> object:  # the lines of __call__ that read a body sent whole
        message = await receive()
        body = message.get("body") or b""
        return message.get("more_body", False) or len(body) > limit

    async def replay() -> object:  # the app's receive, once
        return await _replay(MESSAGE, receive)()

    async def bare_receive() -> object:  # what the bare app pays for its receive
        return await receive()

    async def nothing() -> object:
        return None

    return {  # raw timings, the loops' own costs included (see stage_breakdown)
        "loop": timed(lambda: None),
        "async loop": timed_async(nothing),
        "bare receive": timed_async(bare_receive),
        f"header scan ({scan})": timed(header_scan),
        "read body": timed_async(read_body),
        "parse (orjson)": timed(lambda: orjson.loads(BODY)),
        "client address": timed(lambda: middleware._client_address(scope["client"], hit[1])),
        "decide (should_track)": timed(
            lambda: edge_filter.should_track(
                "1", client_ip, user_agent, path="/a", hostname="example.com"
            )
        ),
        "count": timed(count),
        "replay": timed_async(replay),
    }


def stage_breakdown(raw: dict[str, float]) -> dict[str, float]:
    """What each stage adds, from the best raw timings: its loop's own cost taken off, and
    for reading the body the receive the bare app makes too (the app's receive is then the
    replay, all of it added)."""
    bases = {"read body": raw["bare receive"], "replay": raw["async loop"]}
    return {
        stage: cost - bases.get(stage, raw["loop"])
        for stage, cost in raw.items()
        if stage not in ("loop", "async loop", "bare receive")
    }


def in_process_tables(middleware: EdgeFilterMiddleware) -> None:
    """Print the added cost with each header set, and its breakdown."""
    added = {}
    breakdowns = {}
    for label, headers in (("wrk's 4 headers", WRK_HEADERS), ("a browser's 14", BROWSER_HEADERS)):
        best = {"bare": float("inf"), "filtered": float("inf")}
        stages: dict[str, float] = {}
        for _ in range(ROUNDS):
            for name, app in (("bare", bare_app), ("filtered", middleware)):
                best[name] = min(best[name], in_process(app, headers))
            for stage, cost in stage_costs(middleware, headers).items():
                stages[stage] = min(stages.get(stage, float("inf")), cost)
        added[label] = best
        breakdowns[label] = stage_breakdown(stages)
    cold = {"bare": float("inf"), "filtered": float("inf")}
    for _ in range(ROUNDS):
        for name, app in (("bare", bare_app), ("filtered", middleware)):
            cold[name] = min(cold[name], in_process_cold(app, WRK_HEADERS))
    added["wrk's 4, caches evicted"] = cold
    print(
        "In-process, per tracked hit (1,000 IP entries, 3 countries, blockBots;"
        f" best of {ROUNDS} interleaved):\n"
    )
    print_table(
        ["headers", "bare ASGI app", "behind EdgeFilterMiddleware", "added"],
        [
            [
                label,
                fmt_ns(best["bare"]),
                fmt_ns(best["filtered"]),
                fmt_ns(best["filtered"] - best["bare"]),
            ]
            for label, best in added.items()
        ],
    )
    print(
        "\n(caches evicted: a 4 MiB write before each hit, untimed, and fresh header objects:"
        " closer to what a hit costs in a server, whose own work between hits evicts them.)"
    )
    labels = list(breakdowns)
    rows = []
    for stage in breakdowns[labels[0]]:
        rows.append([stage, *(fmt_ns(breakdowns[label][stage]) for label in labels)])
    rows.append(
        [
            "the rest (frame, checks, state; stages cost more in the flow than alone)",
            *(
                fmt_ns(
                    added[label]["filtered"]
                    - added[label]["bare"]
                    - sum(breakdowns[label].values())
                )
                for label in labels
            ),
        ]
    )
    rows.append(
        [
            "added in all",
            *(fmt_ns(added[label]["filtered"] - added[label]["bare"]) for label in labels),
        ]
    )
    print(f"\nWhere it goes, each stage on its own (best of {ROUNDS}, same run):\n")
    print_table(["stage", *labels], rows)


def serve(variant: str, port: int) -> None:
    """Serve one variant with uvicorn (the child-process entry point)."""
    import uvicorn  # noqa: PLC0415 - only the child process serves

    app = filtered_app() if variant == "filtered" else FLOORS[variant]
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        http="httptools",
        lifespan="off",
        proxy_headers=False,  # the middleware reads X-Forwarded-For itself (trusted_proxies)
        log_level="warning",
        access_log=False,
    )


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


def wrk_rps(port: int) -> tuple[int, float]:
    """Requests served and seconds taken, measured by wrk."""
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
                *PIN_LOAD,
                "wrk",
                "-t1",
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
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return requests, requests / float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]


def python_rps(port: int) -> tuple[int, float]:
    """Requests served and seconds taken, from a threaded httpx generator (the fallback
    when wrk is absent)."""
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
    return total, time.perf_counter() - start


def cpu_seconds(pid: int) -> float:
    """The CPU time process ``pid``'s threads have used, to the nanosecond from the
    scheduler's own count (``/proc/PID/task/*/schedstat``), else in clock ticks from
    ``/proc/PID/stat`` (user and system); 0 without ``/proc``."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
        total = 0
        for task in tasks:
            with open(f"/proc/{pid}/task/{task}/schedstat") as handle:
                total += int(handle.read().split()[0])
        return total / 1e9
    except (OSError, ValueError, IndexError):
        pass
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


class Load(NamedTuple):
    """One variant's share of a round: requests per second of wall time, and per second
    of the server's own CPU time (what it would serve with its core to itself)."""

    per_second: float
    per_cpu_second: float


def load_rounds() -> list[dict[str, Load]]:
    """Each variant's load, round by round: every server runs throughout, the load
    alternates between them in short bursts (ABCD DCBA, over each set of servers), so that
    what else the machine runs weighs on all alike; the server's CPU time is read around
    each burst, and a variant's servers are summed."""
    measure = wrk_rps if shutil.which("wrk") else python_rps
    servers = [(name, replica) for replica in range(SERVERS_PER_VARIANT) for name in VARIANTS]
    ports = {server: 18700 + index for index, server in enumerate(servers)}
    children = {server: start_server(server[0], port) for server, port in ports.items()}
    turns = [(name, replica) for replica in range(SERVERS_PER_VARIANT) for name in BURSTS]
    try:
        rounds = []
        for _ in range(LOAD_ROUNDS):
            totals = {name: [0, 0.0, 0.0] for name in VARIANTS}  # requests, seconds, CPU s
            for server in turns:
                name = server[0]
                cpu = cpu_seconds(children[server].pid)
                requests, seconds = measure(ports[server])
                totals[name][0] += requests
                totals[name][1] += seconds
                totals[name][2] += cpu_seconds(children[server].pid) - cpu
            rounds.append(
                {
                    name: Load(requests / seconds, requests / cpu if cpu else float("nan"))
                    for name, (requests, seconds, cpu) in totals.items()
                }
            )
        return rounds
    finally:
        for child in children.values():
            child.terminate()
            child.wait()


def ratio_rows(rounds: list[dict[str, Load]], field: str) -> list[list[str]]:
    """One row per round, and the median: the bare app's rate (``field`` of ``Load``),
    then each other variant's as a ratio to it."""
    layers = [name for name in VARIANTS if name != "bare"]
    ratios = {
        name: [getattr(load[name], field) / getattr(load["bare"], field) for load in rounds]
        for name in layers
    }
    rows = [
        [
            str(index + 1),
            f"{getattr(load['bare'], field):,.0f}",
            *(f"{ratios[name][index]:.3f}x" for name in layers),
        ]
        for index, load in enumerate(rounds)
    ]
    rows.append(["median", "", *(f"{statistics.median(ratios[name]):.3f}x" for name in layers)])
    return rows


def load_tables(rounds: list[dict[str, Load]]) -> None:
    """Print the load: ratios to the bare app per server CPU second and per second, and
    the server's CPU time per request (the median round's), what each layer adds to it."""
    generator = "wrk" if shutil.which("wrk") else "httpx threads (wrk not installed)"
    pinning = "server on core 0, load on core 1" if PIN_SERVER else "not pinned"
    print(
        f"\nLoopback load, uvicorn (httptools), {CONNECTIONS} connections, {LOAD_ROUNDS}"
        f" rounds of {len(BURSTS) * SERVERS_PER_VARIANT} interleaved {LOAD_SECONDS} s bursts"
        f" ({', '.join(VARIANTS)}, then back, on each of {SERVERS_PER_VARIANT} servers per"
        f" variant), {pinning}, load from {generator}; the floors: pass-through is a layer"
        " that only awaits the bare app, read+replay one that reads the body and replays it"
        " (the middleware's _replay), filtered is EdgeFilterMiddleware:\n"
    )
    layers = [name for name in VARIANTS if name != "bare"]
    print("Requests per second of the server's own CPU time, vs bare:\n")
    print_table(["round", "bare req/CPU s", *layers], ratio_rows(rounds, "per_cpu_second"))
    print("\nRequests per second (wall clock), vs bare:\n")
    print_table(["round", "bare req/s", *layers], ratio_rows(rounds, "per_second"))
    cost = {name: [1e6 / load[name].per_cpu_second for load in rounds] for name in VARIANTS}
    print(
        "\nServer CPU time per request, and what each layer adds to the bare app's"
        " (medians of the rounds):\n"
    )
    print_table(
        ["variant", "CPU per request", "added"],
        [
            [
                name,
                f"{statistics.median(cost[name]):.1f} us",
                f"{statistics.median(map(operator.sub, cost[name], cost['bare'])):+.1f} us",
            ]
            for name in VARIANTS
        ],
    )
    print(
        "\n(req/CPU s: requests per second of the server process's own CPU time, which the"
        " machine's other work does not dilute as it does wall-clock req/s.)"
    )


INSTRUCTION_HITS = 2_000


def drive_hits(variant: str, hits: int) -> None:
    """The ``--count-hits`` child: ``hits`` tracked hits through ``variant``, driven without
    an event loop (none suspends), inside one ``deque()`` call: the only code callgrind
    counts (``--toggle-collect=deque_init``), after warm-up hits that specialize the
    bytecode and fill the caches."""
    app = filtered_app() if variant == "filtered" else FLOORS[variant]
    scope = hit_scope(WRK_HEADERS)

    def hit(_: int) -> None:
        coroutine = app(dict(scope), receive, send)
        try:
            coroutine.send(None)
        except StopIteration:
            return
        raise RuntimeError("a hit suspended")

    for _ in range(200):
        hit(0)
    collections.deque(map(hit, range(hits)), 0)


def instructions_per_hit(variant: str) -> float:
    """Instructions per tracked hit through ``variant``, counted by callgrind (exact, and
    the same whatever else the machine runs)."""
    with tempfile.TemporaryDirectory() as folder:
        output = os.path.join(folder, "callgrind.out")
        subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                "--toggle-collect=deque_init",
                f"--callgrind-out-file={output}",
                sys.executable,
                __file__,
                "--count-hits",
                variant,
                str(INSTRUCTION_HITS),
            ],
            check=True,
            capture_output=True,
        )
        with open(output) as handle:
            totals = re.search(r"^(?:summary|totals): (\d+)", handle.read(), re.MULTILINE)
    assert totals is not None, "callgrind wrote no totals"
    return int(totals.group(1)) / INSTRUCTION_HITS


def instruction_table() -> None:
    """Print each variant's instructions per hit, in process, and what it adds to bare."""
    counts = {name: instructions_per_hit(name) for name in VARIANTS}
    print(
        f"Instructions per tracked hit, in process (callgrind, {INSTRUCTION_HITS:,} warm hits"
        " with wrk's headers; exact, whatever else the machine runs):\n"
    )
    print_table(
        ["variant", "instructions per hit", "added to bare"],
        [
            [name, f"{count:,.0f}", f"{count - counts['bare']:+,.0f}"]
            for name, count in counts.items()
        ],
    )


def main() -> int:
    """Print the in-process tables and the load tables (or, with ``--instructions``, the
    callgrind counts); exit 0."""
    if "--instructions" in sys.argv:
        if not shutil.which("valgrind"):
            print("valgrind is not installed (Debian package valgrind)")
            return 1
        instruction_table()
        return 0
    try:
        import httptools  # noqa: F401, PLC0415 - the load runs uvicorn with it
    except ImportError:
        print("httptools is not installed: pip install 'edgefilter[bench]'")
        return 1
    if "--load-only" not in sys.argv:
        in_process_tables(filtered_app())
    load_tables(load_rounds())
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        serve(sys.argv[2], int(sys.argv[3]))
        sys.exit(0)
    if len(sys.argv) == 4 and sys.argv[1] == "--count-hits":
        drive_hits(sys.argv[2], int(sys.argv[3]))
        sys.exit(0)
    sys.exit(main())
