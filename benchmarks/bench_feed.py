"""Many nodes, many sites: per-site polling against the versioned rules feed, in one run.

The reference Sites API runs in a process of its own (``edgefilter serve-api``) on SQLite
and, when ``EDGEFILTER_TEST_POSTGRES_URL`` or ``--postgres`` names one, on PostgreSQL (a
schema of its own, dropped afterwards), holding S sites. Then, for each backend:

- **per-site polling** (what ``RulesCache`` does): concurrent asyncio workers refresh sites
  as fast as the server answers, seven conditional GETs per site (the site and its six rule
  lists, each with ``If-None-Match``: mostly 304s). Measured: server CPU and bytes per
  request. A fleet of N nodes refreshing S sites every 48 s (ttl 60 s, refresh_ahead 0.8)
  needs N * S * 7 / 48 requests per second: the row scales the measured cost to that rate.
  A change reaches a node at its next refresh: uniform over 48 s (p50 24 s, p99 47.5 s).
- **the feed**: N simulated nodes (asyncio clients) each take one snapshot, then hold a
  long poll (``since=V&wait=25``) and apply each delta. A driver changes one site every
  ``--interval`` seconds through the API. Measured: requests and bytes per second (on the
  wire: gzip), server CPU, and for each change the time from sending its PUT to the last
  node applying it (p50, p99 over the changes), and over every node's apply.

Then the memory of 100,000 sites held by one ``RulesFeed`` (packed and compact tables; the
growth of a fresh process's RSS), and the hot path's p99.9 and worst call while a
100,000-site snapshot is applied in a thread beside it.

Default: 200 nodes, 10,000 sites (the issue's target), 20 s of changes per backend: a couple
of minutes. ``--nodes``, ``--sites``, ``--seconds``, ``--memory-sites`` change the size.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import gzip
import logging
import os
import random
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h11
import httpx
import orjson
from sqlalchemy import insert, update

from _common import ROOT, print_table
from edgefilter import EdgeFilter, FeedAnswer, RulesFeed, SitesApiClient
from edgefilter.server._store import (
    SiteStore,
    engine_for,
    excluded_countries,
    excluded_ips,
    feed_clock,
    new_public_id,
    now,
    sites,
)

READS = (
    "",
    "/excluded-ips",
    "/excluded-countries",
    "/excluded-paths",
    "/excluded-hostnames",
    "/excluded-user-agents",
    "/excluded-asns",
)
REFRESH_SECONDS = 48.0  # RulesCache: ttl 60 s * refresh_ahead 0.8
WAIT = 25.0
SEED = 16
TICK = os.sysconf("SC_CLK_TCK")
UA = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"


# --- the database and the server ------------------------------------------------------------


def populate(url: str, count: int, rng: random.Random) -> tuple[str, str, str]:
    """``count`` sites in bulk (a tenth with excluded IPs, a twentieth with countries); the
    organisation, an owner key and an edge key."""
    store = SiteStore(url)
    organization_id = store.create_organization("Bench")
    owner = store.create_key(organization_id, "owner")
    edge = store.create_key(organization_id, "edge")
    stamp = now()
    rows = [
        {
            "id": new_public_id(),
            "organization_id": organization_id,
            "domain": f"site{index}.example",
            "name": f"Site {index}",
            "created_by": "bench",
            "created_at": stamp,
            "updated_at": stamp,
            "version": 1,
            "feed_version": index + 1,
            "public": False,
            "salt_user_ids": False,
            "block_bots": True,
            "session_replay": True,
            "web_vitals": True,
            "track_errors": True,
            "track_outbound": True,
            "track_url_params": False,
        }
        for index in range(count)
    ]
    with store.transaction() as connection:
        for start in range(0, count, 5000):
            connection.execute(insert(sites), rows[start : start + 5000])
        ips = [
            {
                "site_id": site_id,
                "position": position,
                "entry": f"198.51.{site_id % 256}.{position}",
            }
            for site_id in range(1, count + 1, 10)
            for position in range(10)
        ]
        countries = [
            {"site_id": site_id, "position": 0, "code": "CN"} for site_id in range(1, count + 1, 20)
        ]
        if ips:
            connection.execute(insert(excluded_ips), ips)
        if countries:
            connection.execute(insert(excluded_countries), countries)
        connection.execute(update(feed_clock).values(version=count))
    store.close()
    return organization_id, owner, edge


@contextmanager
def api_process(url: str) -> Iterator[tuple[str, int]]:
    """``edgefilter serve-api`` on ``url`` in its own process; its base URL and pid."""
    with socket_port() as port:
        pass
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "EDGEFILTER_DB": url}
    command = [sys.executable, "-m", "edgefilter.cli", "serve-api", "--port", str(port)]
    process = subprocess.Popen(command, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("serve-api did not start")
            time.sleep(0.05)
        yield base, process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:  # held long polls: graceful shutdown waits for them
            process.kill()
            process.wait()


@contextmanager
def socket_port() -> Iterator[int]:
    import socket  # noqa: PLC0415

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        yield int(probe.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of a process so far (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


# --- per-site polling ------------------------------------------------------------------------


@dataclass
class Load:
    """What a load put on the server over a window."""

    requests: int = 0
    bytes: int = 0
    seconds: float = 0.0
    server_cpu: float = 0.0
    latencies: list[float] = field(default_factory=list)  # last node per change
    applies: list[float] = field(default_factory=list)  # every node's apply
    snapshot_bytes: int = 0


async def poll_sites(base: str, key: str, site_count: int, seconds: float, pid: int) -> Load:
    """Workers refreshing random sites as fast as the server answers: 7 conditional GETs each."""
    load = Load()
    etags: dict[str, str] = {}
    limits = httpx.Limits(max_connections=64)
    headers = {"Authorization": f"Bearer {key}"}
    rng = random.Random(SEED)
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits) as client:

        async def worker(deadline: float) -> None:
            while time.monotonic() < deadline:
                site = str(rng.randrange(1, site_count + 1))
                for suffix in READS:
                    path = f"/api/sites/{site}{suffix}"
                    tag = etags.get(path)
                    answer = await client.get(path, headers={"If-None-Match": tag} if tag else {})
                    load.requests += 1
                    load.bytes += answer.num_bytes_downloaded
                    if "etag" in answer.headers:
                        etags[path] = answer.headers["etag"]

        await worker(time.monotonic() + 1.0)  # warm the connections
        load.requests = load.bytes = 0
        cpu, started = cpu_seconds(pid), time.monotonic()
        await asyncio.gather(*(worker(started + seconds) for _ in range(32)))
        load.seconds, load.server_cpu = time.monotonic() - started, cpu_seconds(pid) - cpu
    return load


# --- the feed ----------------------------------------------------------------------------------


class Connection:
    """One keep-alive HTTP/1.1 connection (asyncio streams and h11): 200 nodes in one process
    through httpx's pool made the load generator, not the server, the bottleneck."""

    def __init__(self, base: str, headers: dict[str, str]) -> None:
        host_port = base.removeprefix("http://")
        self.host, port = host_port.rsplit(":", 1)
        self.port = int(port)
        self.headers = [("Host", host_port), ("Accept-Encoding", "gzip"), *headers.items()]
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.http = h11.Connection(h11.CLIENT)

    async def get(self, target: str) -> tuple[int, bytes, int]:
        """GET ``target``: the status, the (decoded) body and the bytes read off the wire."""
        if self.reader is None or self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        request = h11.Request(method="GET", target=target, headers=self.headers)
        self.writer.write(self.http.send(request) + self.http.send(h11.EndOfMessage()))
        status, gzipped, chunks, wire = 0, False, [], 0
        while True:
            event = self.http.next_event()
            if event is h11.NEED_DATA:
                data = await self.reader.read(1 << 16)
                wire += len(data)
                self.http.receive_data(data)
            elif isinstance(event, h11.Response):
                status = event.status_code
                gzipped = (b"content-encoding", b"gzip") in list(event.headers)
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                break
        self.http.start_next_cycle()
        body = b"".join(chunks)
        return status, gzip.decompress(body) if gzipped else body, wire

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def run_feed(
    base: str, keys: tuple[str, str, str], args: argparse.Namespace, pid: int
) -> Load:
    """N nodes on the feed with long polls; a change every ``interval`` seconds."""
    _, owner_key, edge_key = keys
    nodes, site_count, seconds, interval = args.nodes, args.sites, args.seconds, args.interval
    load = Load()
    seen: list[dict[str, float]] = [{} for _ in range(nodes)]
    ready = asyncio.Event()
    started_nodes = 0
    measuring = False
    stop = False
    headers = {"Authorization": f"Bearer {edge_key}"}
    connections = [Connection(base, headers) for _ in range(nodes)]

    async def node(index: int) -> None:
        nonlocal started_nodes
        connection = connections[index]
        status, raw, wire = await connection.get("/api/edge/rules")
        load.snapshot_bytes = wire
        body = orjson.loads(raw)
        held = {site["siteId"]: site for site in body["sites"]}
        version = body["version"]
        started_nodes += 1
        if started_nodes == nodes:
            ready.set()
        while not stop:
            status, raw, wire = await connection.get(
                f"/api/edge/rules?since={version}&wait={WAIT:g}"
            )
            if measuring:
                load.requests += 1
                load.bytes += wire
            if status != 200:
                continue
            body = orjson.loads(raw)
            arrived = time.monotonic()
            for site in body["sites"]:
                held[site["siteId"]] = site
                for entry in site.get("excludedIPs", ()):
                    if entry.startswith("10."):
                        seen[index].setdefault(entry, arrived)
            for site_id in body.get("deleted", ()):
                held.pop(site_id, None)
            version = body["version"]

    tasks = [asyncio.ensure_future(node(index)) for index in range(nodes)]
    await asyncio.wait_for(ready.wait(), 300)
    await asyncio.sleep(0.5)
    sent: dict[str, float] = {}
    order = random.Random(SEED).sample(range(1, site_count + 1), site_count)
    async with httpx.AsyncClient(
        base_url=base, headers={"Authorization": f"Bearer {owner_key}"}
    ) as owner:
        measuring = True
        cpu, began = cpu_seconds(pid), time.monotonic()
        change = 0
        while time.monotonic() - began < seconds:
            change += 1
            marker = f"10.{change // 256}.{change % 256}.1"
            site = order[change % len(order)]  # distinct sites: a marker is never overwritten
            sent[marker] = time.monotonic()
            reply = await owner.put(f"/api/sites/{site}/config", json={"excludedIPs": [marker]})
            reply.raise_for_status()
            await asyncio.sleep(max(0.0, began + change * interval - time.monotonic()))
        await asyncio.sleep(2.0)  # the last change's applies
        load.seconds = time.monotonic() - began
        load.server_cpu = cpu_seconds(pid) - cpu
        measuring = False
    stop = True
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for connection in connections:
        connection.close()
    for marker, at in sent.items():
        applied = [node_seen[marker] - at for node_seen in seen if marker in node_seen]
        if len(applied) == nodes:
            load.latencies.append(max(applied))
        else:
            load.latencies.append(float("inf"))
        load.applies += applied
    return load


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def bench_backend(name: str, url: str, args: argparse.Namespace) -> list[list[str]]:
    """Both loads against one backend; the table's rows."""
    rng = random.Random(SEED)
    started = time.monotonic()
    keys = populate(url, args.sites, rng)
    print(f"[{name}] {args.sites:,} sites stored in {time.monotonic() - started:.1f} s", flush=True)
    with api_process(url) as (base, pid):
        polling = asyncio.run(poll_sites(base, keys[1], args.sites, args.poll_seconds, pid))
        feed = asyncio.run(run_feed(base, keys, args, pid))
    needed = args.nodes * args.sites * len(READS) / REFRESH_SECONDS
    per_request_cpu = polling.server_cpu / max(1, polling.requests)
    per_request_bytes = polling.bytes / max(1, polling.requests)
    feed_rate = feed.requests / feed.seconds
    idle_rate = args.nodes / WAIT
    rows = [
        [
            name,
            "per-site polling (measured cost, scaled)",
            f"{needed:,.0f}",
            f"{needed * per_request_bytes / 1e6:,.1f} MB/s",
            f"{needed * per_request_cpu:,.1f} cores",
            f"{REFRESH_SECONDS / 2:.1f} s",
            f"{REFRESH_SECONDS * 0.99:.1f} s",
        ],
        [
            name,
            f"feed, 1 change per {args.interval:g} s (measured)",
            f"{feed_rate:,.1f}",
            f"{feed.bytes / feed.seconds / 1e3:,.1f} kB/s",
            f"{feed.server_cpu / feed.seconds:.2f} cores",
            f"{percentile(feed.latencies, 0.5) * 1000:.0f} ms",
            f"{percentile(feed.latencies, 0.99) * 1000:.0f} ms",
        ],
    ]
    print(
        f"[{name}] polling measured: {polling.requests / polling.seconds:,.0f} req/s on "
        f"{polling.server_cpu / polling.seconds:.2f} server cores, "
        f"{per_request_cpu * 1e6:,.0f} us CPU and {per_request_bytes:,.0f} B per request",
        flush=True,
    )
    print(
        f"[{name}] feed: {len(feed.latencies)} changes, every node's apply p50 "
        f"{percentile(feed.applies, 0.5) * 1000:.0f} ms p99 "
        f"{percentile(feed.applies, 0.99) * 1000:.0f} ms; snapshot "
        f"{feed.snapshot_bytes / 1e3:,.0f} kB on the wire; idle (no change) "
        f"{idle_rate:.1f} req/s; requests ratio polling/feed {needed / feed_rate:,.0f}x "
        f"(idle {needed / idle_rate:,.0f}x)",
        flush=True,
    )
    return rows


@contextmanager
def postgres_schema(base: str) -> Iterator[str]:
    schema = f"bench_{secrets.token_hex(4)}"
    admin = engine_for(base)
    with admin.begin() as connection:
        connection.exec_driver_sql(f"CREATE SCHEMA {schema}")
    try:
        yield f"{base}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as connection:
            connection.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


# --- memory and the hot path during a snapshot --------------------------------------------------


def synthetic_sites(count: int) -> tuple[dict[str, Any], ...]:
    """``count`` compact sites: a tenth with 10 excluded IPs, a twentieth with a country."""
    found = []
    for index in range(1, count + 1):
        site: dict[str, Any] = {"siteId": index, "id": f"{index:011x}a", "domain": f"s{index}.ex"}
        if index % 10 == 1:
            site["excludedIPs"] = [f"198.51.{index % 256}.{n}" for n in range(10)]
        if index % 20 == 1:
            site["excludedCountries"] = ["CN"]
        found.append(site)
    return tuple(found)


def rss_bytes() -> int:
    """This process's resident set size now (``/proc/self/statm``)."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def memory_probe(count: int, compact: bool) -> None:
    """In a fresh process: print the RSS growth and time of a RulesFeed taking ``count``
    sites (the process's own figure: what an operator sees)."""
    snapshot = FeedAnswer("e", count, True, synthetic_sites(count), (), None)
    client = SitesApiClient("http://127.0.0.1:1", None)
    gc.collect()
    before = rss_bytes()
    feed = RulesFeed(client, start=False, compact_tables=compact)
    started = time.perf_counter()
    feed._apply(snapshot)
    took = time.perf_counter() - started
    gc.collect()
    print(orjson.dumps({"rss": rss_bytes() - before, "seconds": took, "held": len(feed)}).decode())


def memory_rows(count: int) -> list[list[str]]:
    """The RSS of a RulesFeed holding ``count`` sites, packed and compact, each measured in
    a process of its own (the compact sites the snapshot came in are not counted)."""
    rows = []
    for kind in ("packed", "compact"):
        probe = [sys.executable, __file__, "--memory-probe", kind, "--memory-sites", str(count)]
        found = orjson.loads(subprocess.run(probe, capture_output=True, check=True).stdout)
        rows.append(
            [
                kind,
                f"{found['held']:,}",
                f"{found['rss'] / 2**20:,.0f} MiB",
                f"{found['rss'] / count:,.0f} B",
                f"{found['seconds']:.1f} s",
            ]
        )
    return rows


def hot_path_during_snapshot(count: int) -> str:
    """The worst and p99.9 should_track while a ``count``-site snapshot is applied in a
    thread, against the same calls with nothing beside them."""
    snapshot = FeedAnswer("e", count, True, synthetic_sites(count), (), None)
    client = SitesApiClient("http://127.0.0.1:1", None)
    feed = RulesFeed(client, start=False)
    feed._apply(FeedAnswer("e", 1, True, synthetic_sites(1000), (), None))
    edge = EdgeFilter(feed)

    def calls(stop: threading.Event | None, limit: int) -> list[float]:
        samples = []
        sites_ = [str(index) for index in range(1, 1001)]
        while len(samples) < limit and (stop is None or not stop.is_set()):
            site = sites_[len(samples) % 1000]
            began = time.perf_counter_ns()
            edge.should_track(site, "192.0.2.7", UA)
            samples.append((time.perf_counter_ns() - began) / 1000)
        return samples

    alone = calls(None, 200_000)
    done = threading.Event()
    applier = threading.Thread(target=lambda: (feed._apply(snapshot), done.set()))
    applier.start()
    beside = calls(done, 10_000_000)
    applier.join()
    client.close()
    return (
        f"hot path while {count:,} sites are applied in a thread: {len(beside):,} calls, "
        f"p99.9 {percentile(beside, 0.999):.1f} us, worst {max(beside):,.0f} us "
        f"(alone: p99.9 {percentile(alone, 0.999):.1f} us, worst {max(alone):,.0f} us); "
        f"{len(feed):,} sites held after"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--nodes", type=int, default=200)
    parser.add_argument("--sites", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds of changes")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between changes")
    parser.add_argument("--poll-seconds", type=float, default=8.0)
    parser.add_argument("--memory-sites", type=int, default=100_000)
    parser.add_argument("--postgres", default=os.environ.get("EDGEFILTER_TEST_POSTGRES_URL"))
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--memory-probe", choices=["packed", "compact"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.getLogger("edgefilter").setLevel(logging.ERROR)  # no warning per site
    if args.memory_probe:
        memory_probe(args.memory_sites, args.memory_probe == "compact")
        return 0
    print(
        f"{args.nodes} nodes, {args.sites:,} sites; polling: 7 reads per site every "
        f"{REFRESH_SECONDS:g} s; feed: long poll wait {WAIT:g} s, server in its own process\n",
        flush=True,
    )
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        rows += bench_backend("sqlite", f"sqlite:///{Path(directory) / 'sites.db'}", args)
    if args.postgres:
        with postgres_schema(args.postgres) as url:
            rows += bench_backend("postgresql", url, args)
    print()
    print_table(
        ["backend", "source", "API req/s", "bytes/s", "server CPU", "apply p50", "apply p99"],
        rows,
    )
    if not args.skip_memory:
        print(f"\nmemory of {args.memory_sites:,} sites held by one RulesFeed (RSS growth):")
        print_table(
            ["tables", "sites", "RSS", "per site", "snapshot applied in"],
            memory_rows(args.memory_sites),
        )
        print(hot_path_during_snapshot(args.memory_sites))
    return 0


if __name__ == "__main__":
    sys.exit(main())
