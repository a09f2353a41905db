"""Attack review of the day's new code: each test reproduces one finding.

A test marked ``xfail(strict=True)`` reproduces a bug still in the product code (it fails
while the bug is there; strict: it turns red once fixed, so the marker goes with the fix).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from edgefilter import EdgeFilter, SiteConfig
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
