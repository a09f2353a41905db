"""Attack review of the day's new code: each test reproduces one finding.

A test marked ``xfail(strict=True)`` reproduces a bug still in the product code (it fails
while the bug is there; strict: it turns red once fixed, so the marker goes with the fix).
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgefilter import EdgeFilter, Reason, RulesFeed, SiteConfig, SitesApiClient, _rates
from edgefilter._client import FeedAnswer
from edgefilter._errors import MalformedResponseError
from edgefilter._serving import serve_in_thread
from edgefilter.proxy import create_proxy_app

from .test_feed import eventually, running_feed, serving
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


def test_relay_all_never_relays_a_fragment_target_undecided(
    upstream_url: tuple[Upstream, str],
) -> None:
    """``POST /api/track#``: the upstream records a hit from an excluded address."""
    _, hits = proxied(upstream_url, b"/api/track#", relay_all=True)
    assert hits == []


@pytest.mark.parametrize("target", [b"*", b"http://analytics.test/api/track", b"api/x"])
def test_relay_all_answers_an_odd_request_target_without_a_500(
    upstream_url: tuple[Upstream, str], target: bytes
) -> None:
    status, hits = proxied(upstream_url, target, relay_all=True)
    assert hits == []
    assert b" 500 " not in status


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


# --- 2. the rules feed: a tampered snapshot file -------------------------------------------


@pytest.mark.parametrize("version", [-1, "7", 10**20, True])
def test_a_snapshot_with_an_odd_version_does_not_wedge_the_node(
    tmp_path: Path, version: object
) -> None:
    """A snapshot file whose ``version`` is not a feed version (negative, text, past 19
    digits) was loaded as is and sent as ``since=``: the server answers 400 to every read,
    so the node kept the file's rules forever, a new exclusion never applied. Fixed: such
    a file is ignored (a full snapshot from the API)."""
    with serving(f"sqlite:///{tmp_path / 'sites.db'}") as api:
        site = api.new_site(excludedIPs=["192.0.2.1"])
        path = tmp_path / "rules.snapshot"
        with running_feed(api, snapshot_path=path):
            pass
        saved = json.loads(path.read_bytes())
        path.write_text(json.dumps({**saved, "version": version}))
        with api.owner() as owner:
            owner.update_config(site, excludedIPs=["192.0.2.1", "198.51.100.7"])
        with running_feed(api, snapshot_path=path) as feed:
            edge = EdgeFilter(feed)
            eventually(
                lambda: edge.should_track(site, "198.51.100.7", CHROME).reason is Reason.excluded_ip
            )


@pytest.mark.parametrize("version", [-1, 2**63, 2**64])
def test_a_feed_answer_with_an_odd_version_is_refused_not_held(version: int) -> None:
    """A feed answering a version that is not one (a broken or hostile server) was held
    and sent back as ``since=``, refused by the server on every later read: the node never
    took another change. Fixed: such an answer is a failure (the state kept, retried)."""
    client = SitesApiClient("http://127.0.0.1:1", None)
    feed = RulesFeed(client, start=False)
    site = {"siteId": 1, "id": "a1", "excludedIPs": ["192.0.2.1"]}
    feed._apply(FeedAnswer("e", 3, True, (site,), (), None))
    with pytest.raises(MalformedResponseError, match="version"):
        feed._apply(FeedAnswer("e", version, True, ({"siteId": 1},), (), None))
    assert feed._held.version == 3
    assert EdgeFilter(feed).should_track("1", "192.0.2.1", CHROME).reason is Reason.excluded_ip
    client.close()


# --- 4. the batch API ------------------------------------------------------------------------


@pytest.mark.parametrize("hits", [[None], [5], None])
def test_decide_many_names_a_hit_of_another_shape(hits: Any) -> None:
    """A hit that is no sequence, or hits that are no iterable, are a ValueError naming
    them, in decide_many and adecide_many alike."""
    with pytest.raises(ValueError, match="hit"):
        EdgeFilter(OPEN).decide_many(hits)
    with pytest.raises(ValueError, match="hit"):
        asyncio.run(EdgeFilter(OPEN).adecide_many(hits))
