"""Attack review of the day's new code: each test reproduces one finding.

A test marked ``xfail(strict=True)`` reproduces a bug still in the product code (it fails
while the bug is there; strict: it turns red once fixed, so the marker goes with the fix).
"""

from __future__ import annotations

import socket
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest

from edgefilter import EdgeFilter, SiteConfig, _rates
from edgefilter._serving import serve_in_thread
from edgefilter.proxy import create_proxy_app

from .upstream import Upstream

CHROME = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0"
# Every loopback visitor is excluded: any hit the upstream sees went through undecided.
EXCLUDED = {"1": SiteConfig(site_id=1, block_bots=True, excluded_ips=("127.0.0.0/8",))}
OPEN = {"1": SiteConfig(site_id=1, block_bots=False)}
HIT = b'{"type":"pageview","site_id":"1","pathname":"/a"}'


@pytest.fixture(scope="module")
def upstream_url() -> Iterator[tuple[Upstream, str]]:
    upstream = Upstream()
    with serve_in_thread(upstream.app) as url:
        yield upstream, url


def raw_request(url: str, target: bytes, body: bytes = HIT, method: bytes = b"POST") -> bytes:
    """Send one request with a request target as given (no client normalises it); the
    status line of the answer."""
    host, port = url.removeprefix("http://").split(":")
    head = (
        method + b" " + target + b" HTTP/1.1\r\nHost: analytics.test\r\n"
        b"Content-Type: application/json\r\nUser-Agent: " + CHROME.encode() + b"\r\n"
        b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body)
    )
    with socket.create_connection((host, int(port)), timeout=5) as connection:
        connection.sendall(head + body)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    return answer.partition(b"\r\n")[0]


def proxied(
    upstream: tuple[Upstream, str], target: bytes, sites: Any = EXCLUDED, **options: Any
) -> tuple[bytes, list[str]]:
    """The status line of ``target`` sent to a proxy on uvicorn's h11 (what ``pip install
    edgefilter[proxy]`` serves with), and the POSTs the upstream received."""
    fake, url = upstream
    fake.seen.clear()
    proxy = create_proxy_app(url, EdgeFilter(sites), **options)
    with serve_in_thread(proxy, http="h11") as proxy_url:
        status = raw_request(proxy_url, target)
        time.sleep(0.05)
    return status, [seen.path for seen in fake.hits()]


# --- 1. the proxy: a hit reaching the upstream without a decision -----------------------


@pytest.mark.xfail(
    strict=True,
    reason="relay_all: a request target starting '@' is appended "
    "to the upstream URL as userinfo@host: undecided hit to any host (SSRF)",
)
def test_relay_all_never_relays_an_authority_shaped_target_undecided(
    upstream_url: tuple[Upstream, str],
) -> None:
    """``POST @127.0.0.1:PORT/api/track``: the filter does not see a hit path (the path
    does not start with ``/``), the relay builds ``http://up:port@127.0.0.1:PORT/api/track``
    and the upstream (or any host the client names) records the excluded visitor's hit."""
    _, url = upstream_url
    authority = url.removeprefix("http://").encode()
    _, hits = proxied(upstream_url, b"@" + authority + b"/api/track", relay_all=True)
    assert hits == []


@pytest.mark.xfail(
    strict=True,
    reason="relay_all: h11 keeps '#' in the path; the filter "
    "misses /api/track#, httpx drops the fragment: undecided hit upstream",
)
def test_relay_all_never_relays_a_fragment_target_undecided(
    upstream_url: tuple[Upstream, str],
) -> None:
    """``POST /api/track#``: the upstream records a hit from an excluded address."""
    _, hits = proxied(upstream_url, b"/api/track#", relay_all=True)
    assert hits == []


@pytest.mark.parametrize("target", [b"*", b"http://analytics.test/api/track", b"api/x"])
@pytest.mark.xfail(
    strict=True,
    reason="relay_all: a target not starting with '/' makes "
    "httpx.Request raise InvalidURL outside the relay's try: 500",
)
def test_relay_all_answers_an_odd_request_target_without_a_500(
    upstream_url: tuple[Upstream, str], target: bytes
) -> None:
    status, hits = proxied(upstream_url, target, relay_all=True)
    assert hits == []
    assert b" 500 " not in status


@pytest.mark.xfail(
    strict=True,
    reason="an accepted ingest key's ip_address is sent "
    "upstream as latin-1: a non-latin-1 one raises UnicodeEncodeError: 500",
)
def test_an_ingested_hit_with_an_odd_ip_address_is_not_a_500(
    upstream_url: tuple[Upstream, str],
) -> None:
    """Server-side ingestion names the visitor's address in the payload; one that is not
    latin-1 text (``"\u20ac"``) breaks ``Relay.request_headers``."""
    fake, url = upstream_url
    fake.seen.clear()
    proxy = create_proxy_app(url, EdgeFilter(OPEN), ingest_key_verifier=lambda key, site: True)
    body = '{"type":"pageview","site_id":"1","pathname":"/a","ip_address":"\u20ac"}'.encode()
    with serve_in_thread(proxy, http="h11") as proxy_url:
        host, port = proxy_url.removeprefix("http://").split(":")
        head = (
            b"POST /api/track HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer k\r\n"
            b"Content-Type: application/json\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        )
        with socket.create_connection((host, int(port)), timeout=5) as connection:
            connection.sendall(head + body)
            status = connection.recv(65536).partition(b"\r\n")[0]
    assert b" 500 " not in status


def test_the_default_relay_refuses_the_same_targets(upstream_url: tuple[Upstream, str]) -> None:
    """What held: without ``relay_all`` none of these reaches the upstream or answers 500."""
    _, url = upstream_url
    authority = url.removeprefix("http://").encode()
    for target in (b"@" + authority + b"/api/track", b"/api/track#", b"*", b"api/track"):
        status, hits = proxied(upstream_url, target)
        assert hits == [], target
        assert b" 500 " not in status, target


# --- 3. the request bot layers: local rate counters ---------------------------------------


def test_a_full_rate_table_does_not_scan_itself_on_every_new_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Keys going idle one by one (a steady stream of new visitors at the table's size
    per window) made each new key free one key with a scan of the whole table: a hit cost
    O(max_keys). Fixed: a scan frees a quarter of the table at least."""
    scans = 0
    shrink = _rates._shrink

    def counted(*arguments: Any) -> None:
        nonlocal scans
        scans += 1
        shrink(*arguments)

    monkeypatch.setattr(_rates, "_shrink", counted)
    now = 0.0
    size = 2000
    rates = _rates.LocalRates(clock=lambda: now, max_keys=size)
    window = rates.limits.events_window
    for index in range(size + 400):
        now += window / size * 1.00001  # one key goes idle per new key
        rates.hit("1", f"10.0.{index >> 8}.{index & 255}", "ua")
    assert scans <= 2
    assert len(rates) <= size


def test_long_user_agents_and_paths_do_not_grow_the_rate_table() -> None:
    """The local counters kept each UA (up to the header limit) in its key and each of a
    site+IP's last 26 paths (up to 2 KiB each): 100 000 keys could hold gigabytes. Fixed:
    both are kept as hashes."""
    rates = _rates.LocalRates(_rates.RateLimits(), max_keys=200)
    agent = "Mozilla/5.0 " + "x" * 8000
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for visitor in range(200):
        for page in range(26):
            path = f"/{page}/" + "p" * 2040
            rates.hit("1", f"10.0.0.{visitor}", agent + str(visitor), path)
    grown = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(before, "filename"))
    tracemalloc.stop()
    assert grown < 1_200_000  # now ~0.75 MB; was ~13 MB: 200 UAs of 8 KB and 5200 paths of 2 KB
