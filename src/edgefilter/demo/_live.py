"""The end-to-end demo: Sites API server, live rules, a collector behind the middleware.

Everything runs on loopback: the reference Sites API (SQLite in a temporary directory), a
Starlette track endpoint behind ``EdgeFilterMiddleware`` with rules from a ``RulesCache``,
and a replay of ``data/demo/e2e-traffic.tsv`` sent from several loopback source addresses
(127.0.0.2 plays the trusted proxy, 127.0.0.3 and .4 untrusted peers).
"""

from __future__ import annotations

import csv
import json
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .._cache import RulesCache
from .._client import SitesApiClient
from .._decisions import Reason
from .._errors import ApiRequestError
from .._filter import EdgeFilter
from .._geo import CountryResolver
from .._serving import serve_in_thread
from ..middleware import DROP_ANSWERS, EdgeFilterMiddleware
from ..server import create_app

TRUSTED_PROXIES: Final = ("127.0.0.2", "10.9.0.0/16")
TTL: Final = 2.0
COLD_WAIT: Final = 5.0
WORKERS: Final = 8
CHANGED_ADDRESS: Final = "216.160.83.56"
BROWSER: Final = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"


@dataclass(frozen=True, slots=True)
class LiveHit:
    """One line of the end-to-end traffic file."""

    site: str
    peer: str
    forwarded_for: str
    user_agent: str
    expected: Reason


def load_live_traffic(path: Path) -> list[LiveHit]:
    """Hits from a TSV file: ``site, peer, forwarded_for, user_agent, expected``."""
    with path.open(encoding="utf-8", newline="") as handle:
        rows = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        return [
            LiveHit(
                row["site"],
                row["peer"],
                row["forwarded_for"],
                row["user_agent"],
                Reason(row["expected"]),
            )
            for row in rows
        ]


def create_sites(
    client: SitesApiClient, organization_id: str, sites: list[dict[str, Any]]
) -> dict[str, str]:
    """Create the sample sites through the API; map their file ids to the server's ids.

    Bad entries are sent too: the API refuses them with 400 and names each one, and the
    demo then sets the rest.
    """
    ids: dict[str, str] = {}
    for site in sites:
        created = client.create_site(
            organization_id, site["domain"], site["name"], blockBots=site["blockBots"]
        )
        ref = str(created["siteId"])
        ids[str(site["siteId"])], ids[site["id"]] = ref, created["id"]
        config = {
            "excludedIPs": site["excludedIPs"],
            "excludedCountries": site["excludedCountries"],
        }
        while True:  # the API names what it refuses; drop that and send the rest
            try:
                client.update_config(ref, **config)
                break
            except ApiRequestError as error:
                print(f"PUT /config for {site['name']!r} refused (400): {error.details}")
                refused = {detail.split(": ", 1)[0] for detail in error.details}
                if not refused:
                    raise
                config = {
                    field: [entry for entry in entries if entry not in refused]
                    for field, entries in config.items()
                }
        print(f"site {ref} ({created['id']}) {site['name']!r}: {config}")
    return ids


def make_collector(edge_filter: EdgeFilter) -> tuple[EdgeFilterMiddleware, list[bytes]]:
    """A Rybbit-like track endpoint behind the middleware; the bodies it received."""
    received: list[bytes] = []

    async def track(request: Request) -> JSONResponse:
        received.append(await request.body())
        return JSONResponse({"success": True, "collected": True})

    app = Starlette(routes=[Route("/api/track", track, methods=["POST"])])
    return EdgeFilterMiddleware(
        app, edge_filter=edge_filter, trusted_proxies=TRUSTED_PROXIES
    ), received


def _label(body: dict[str, Any]) -> str:
    return f"dropped:{body.get('message') or body.get('error') or 'silent'}"


def answer_reason(status: int, body: bytes) -> str:
    """What the answer says happened: ``collected`` or the drop answer it matches."""
    parsed = json.loads(body)
    if parsed.get("collected"):
        return "collected"
    for drop_status, drop_body in DROP_ANSWERS.values():
        if (status, parsed) == (drop_status, drop_body):
            return _label(drop_body)
    return f"unexpected:{status}"


def expected_answer(reason: Reason) -> str:
    """The answer a hit with ``reason`` must get."""
    return "collected" if reason is Reason.tracked else _label(DROP_ANSWERS[reason][1])


def replay(
    url: str, hits: list[LiveHit], ids: dict[str, str], rounds: int
) -> tuple[list[str], float]:
    """Send every hit ``rounds`` times from WORKERS threads; the answers and the seconds.

    Each thread keeps one keep-alive client per source address (the peer the collector sees).
    """
    local = threading.local()
    opened: list[httpx.Client] = []

    def send(job: tuple[int, LiveHit]) -> str:
        page, hit = job
        clients = local.__dict__.setdefault("clients", {})
        if hit.peer not in clients:
            transport = httpx.HTTPTransport(local_address=hit.peer)
            clients[hit.peer] = httpx.Client(base_url=url, transport=transport)
            opened.append(clients[hit.peer])
        payload = {
            "type": "pageview",
            "site_id": ids.get(hit.site, hit.site),
            "hostname": "example.com",
            "pathname": f"/p/{page}",
        }
        headers = {"User-Agent": hit.user_agent, "X-Forwarded-For": hit.forwarded_for}
        answer = clients[hit.peer].post("/api/track", json=payload, headers=headers)
        return answer_reason(answer.status_code, answer.content)

    jobs = [(page, hit) for page in range(rounds) for hit in hits]
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        answers = list(pool.map(send, jobs))
    elapsed = time.perf_counter() - start
    for client in opened:
        client.close()
    return answers, elapsed


def wait_for_change(url: str, site: str, deadline: float) -> float | None:
    """Seconds until a hit from CHANGED_ADDRESS is dropped as IP-excluded; None if never."""
    start = time.perf_counter()
    proxy = httpx.Client(
        base_url=url, transport=httpx.HTTPTransport(local_address=TRUSTED_PROXIES[0])
    )
    with proxy:
        while time.perf_counter() - start < deadline:
            answer = proxy.post(
                "/api/track",
                json={"type": "pageview", "site_id": site},
                headers={"User-Agent": BROWSER, "X-Forwarded-For": CHANGED_ADDRESS},
            )
            if answer_reason(answer.status_code, answer.content) == expected_answer(
                Reason.excluded_ip
            ):
                return time.perf_counter() - start
            time.sleep(0.05)
    return None


def print_report(
    hits: list[LiveHit], answers: list[str], counters: Counter[Reason], rounds: int
) -> int:
    """The table of decisions by reason, expected against counted; the number of mismatches."""
    expected = Counter(hit.expected for hit in hits for _ in range(rounds))
    wrong = sum(
        1
        for index, answer in enumerate(answers)
        if answer != expected_answer(hits[index % len(hits)].expected)
    )
    print(f"\n{'reason':<18}{'expected':>10}{'counted':>10}")
    for reason in Reason:
        if expected[reason] or counters[reason]:
            mark = "" if expected[reason] == counters[reason] else "  MISMATCH"
            print(f"{reason.value:<18}{expected[reason]:>10}{counters[reason]:>10}{mark}")
    mismatched = sum(1 for reason in Reason if expected[reason] != counters[reason])
    return wrong + mismatched


def run_live_demo(data_dir: Path, geoip: Path, *, rounds: int = 40) -> int:
    """The whole end-to-end job; 0 when every decision and the config change are as expected."""
    sites = json.loads((data_dir / "sites.json").read_text(encoding="utf-8"))["sites"]
    hits = load_live_traffic(data_dir / "e2e-traffic.tsv")
    resolver = CountryResolver(geoip)
    resolver.wait_compiled(timeout=10)
    with tempfile.TemporaryDirectory() as directory:
        api = create_app(f"sqlite:///{Path(directory) / 'sites.db'}")
        organization_id = api.state.store.create_organization("Demo")
        key = api.state.store.create_key(organization_id, "owner")
        with serve_in_thread(api) as api_url, SitesApiClient(api_url, key) as client:
            print(f"Sites API on {api_url}; organisation {organization_id}, owner key created")
            ids = create_sites(client, organization_id, sites)
            # A site's first hits wait for its cold fetch; on a loaded machine that can take
            # longer than the default quarter second, and the demo checks decisions, not load.
            cache = RulesCache(client, ttl=TTL, tick=0.1, cold_wait=COLD_WAIT)
            collector, received = make_collector(EdgeFilter(cache, geoip=resolver))
            try:
                with serve_in_thread(collector) as url:
                    print(f"collector on {url}, trusted proxies {', '.join(TRUSTED_PROXIES)}")
                    failures = _replay_and_report(
                        url, hits, ids, rounds, collector=collector, received=received
                    )
                    failures += _show_config_change(url, client, ids["1"])
            finally:
                cache.close()
    print("all decisions as expected" if not failures else f"{failures} mismatches")
    return 1 if failures else 0


def _replay_and_report(
    url: str,
    hits: list[LiveHit],
    ids: dict[str, str],
    rounds: int,
    *,
    collector: EdgeFilterMiddleware,
    received: list[bytes],
) -> int:
    answers, elapsed = replay(url, hits, ids, rounds)
    failures = print_report(hits, answers, collector.counters.by_reason(), rounds)
    collected = answers.count("collected")
    if len(received) != collected:
        failures += 1
        print(f"MISMATCH: the app got {len(received)} hits; {collected} were answered collected")
    rate = len(answers) / elapsed
    print(f"\n{len(answers)} hits over HTTP in {elapsed:.2f} s: {rate:,.0f} requests per second")
    return failures


def _show_config_change(url: str, client: SitesApiClient, site: str) -> int:
    client.update_config(site, excludedIPs=[*client.excluded_ips(site), f"{CHANGED_ADDRESS}/32"])
    print(f"\nPUT /config: site {site} now also excludes {CHANGED_ADDRESS}")
    took = wait_for_change(url, site, deadline=TTL + 3)
    if took is None or took > TTL + 1:
        print(f"MISMATCH: the new rule did not apply within the rules TTL ({TTL:g} s)")
        return 1
    print(f"the new rule applied after {took:.2f} s (rules TTL {TTL:g} s)")
    return 0
