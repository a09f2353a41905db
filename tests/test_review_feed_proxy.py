"""Attacker's review of the rules feed and the proxy: each test guards one invariant a
finding broke (the real server on loopback, SQLite and PostgreSQL where both apply)."""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from edgefilter import EdgeFilter, Reason, RulesCache, RulesFeed, SiteConfig, SitesApiClient
from edgefilter._client import FeedAnswer
from edgefilter._serving import serve_in_thread
from edgefilter.proxy import create_proxy_app

from .conftest import LiveApi
from .test_feed import FeedApi, counted_builds, database, eventually, running_feed, serving
from .upstream import Upstream

__all__ = ["database"]  # the fixture, on SQLite and PostgreSQL

CHROME = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0"
OPEN = {"1": SiteConfig(site_id=1, block_bots=False)}
HIT = b'{"type":"pageview","site_id":"1","pathname":"/a"}'


# --- the rules feed ------------------------------------------------------------------------


def _rewind(api: FeedApi, version: int) -> None:
    """What a restore from a backup taken at ``version`` (or a failover to a replica that
    lacks the last commits) leaves: the sites created after it gone, the clock back at it."""
    with api.store.engine.begin() as connection:
        connection.execute(text("DELETE FROM sites WHERE feed_version > :v"), {"v": version})
        connection.execute(text("UPDATE feed_clock SET version = :v"), {"v": version})


def test_a_change_after_the_database_clock_went_back_reaches_the_node(database: str) -> None:
    """The server's signal only went forward: after the database's clock went back under a
    running server (a restore, a failover), a node that took the snapshot was answered an
    empty delta (cached under the signal's old version) in a tight loop, and a change
    committed after the rewind never reached it until the clock passed the old mark."""
    with serving(database) as api:
        site = api.new_site()
        with api.edge() as client:
            backup = client.edge_rules().version
        assert backup is not None
        for _ in range(3):
            api.new_site()
        with running_feed(api, wait=0.5) as feed:
            _rewind(api, backup)
            edge = EdgeFilter(feed)
            eventually(lambda: feed.stats()["version"] == backup)
            requests = feed.stats()["requests"]
            with api.owner() as owner:
                owner.update_config(site, excludedIPs=["192.0.2.0/24"])
            eventually(
                lambda: edge.should_track(site, "192.0.2.1", CHROME).reason is Reason.excluded_ip
            )
            assert feed.stats()["requests"] - requests < 20  # held reads, not a busy loop


def test_a_read_built_on_a_clock_behind_the_signal_resets_it(database: str) -> None:
    """The first read after the rewind is behind the signal (no clock read of its own): its
    build finds the clock went back, so the next read sees the change that follows."""
    with serving(database) as api:
        site = api.new_site()
        with api.edge() as client:
            backup = client.edge_rules().version
            api.new_site()  # the signal learns its version from the commit
            eventually(lambda: api.faults.app.state.feed.signal.version > backup)
            _rewind(api, backup)  # type: ignore[arg-type]
            assert client.edge_rules(backup, wait=5).sites == ()
            with api.owner() as owner:
                owner.update_config(site, excludedIPs=["192.0.2.0/24"])
            answer = client.edge_rules(backup, wait=5)
        assert [s["siteId"] for s in answer.sites] == [int(site)]


def test_a_deleted_site_whose_id_another_organisation_reuses_leaves_the_node(
    tmp_path: Path,
) -> None:
    """SQLite reuses the highest deleted rowid: site N deleted in one organisation, the next
    site created (in another) is site N again, and the create dropped N's tombstone. A node
    on the first organisation's key held N's old rules for ever (its delta had neither the
    new site, of another scope, nor the tombstone)."""
    with serving(f"sqlite:///{tmp_path / 'sites.db'}") as api:
        api.new_site()
        site = api.new_site()
        other_org = api.store.create_organization("Other")
        other_owner = api.store.create_key(other_org, "owner")
        with SitesApiClient(api.url, api.owner_key) as scoped:
            feed = RulesFeed(scoped, start=False, wait=0.5, max_backoff=0.2)
            feed._apply(scoped.edge_rules())
            edge = EdgeFilter(feed)
            assert edge.should_track(site, "192.0.2.1", CHROME).tracked
            with api.owner() as owner:
                owner.delete_site(site)
            with SitesApiClient(api.url, other_owner) as other:
                reused = other.create_site(other_org, "other.example", "Other")
            assert str(reused["siteId"]) == site  # the rowid came back
            feed.start()
            try:
                eventually(
                    lambda: (
                        edge.should_track(site, "192.0.2.1", CHROME).reason is Reason.unknown_site
                    )
                )
            finally:
                feed.close()


def test_a_malformed_site_in_a_delta_does_not_keep_its_old_rules() -> None:
    """A delta's site that does not read (a server of another version, a bad proxy) was
    skipped and its old rules kept while the version moved past the change: its new
    exclusions never applied. A snapshot drops such a site; a delta now does too."""
    client = SitesApiClient("http://127.0.0.1:1", None)
    feed = RulesFeed(client, start=False)
    feed._apply(FeedAnswer("e", 3, True, ({"siteId": 1, "id": "aaaaaaaaaaa1"},), (), None))
    edge = EdgeFilter(feed)
    assert edge.should_track("1", "192.0.2.1", CHROME).tracked
    changed = {"siteId": 1, "id": "aaaaaaaaaaa1", "excludedIPs": "192.0.2.1"}  # not a list
    feed._apply(FeedAnswer("e", 4, False, (changed,), (), None))
    assert not edge.should_track("1", "192.0.2.1", CHROME).tracked
    assert not edge.should_track("aaaaaaaaaaa1", "192.0.2.1", CHROME).tracked
    feed._apply(FeedAnswer("e", 5, False, ({"siteId": "2", "blockBots": 1},), (), None))
    assert feed._held.epoch is None  # which site it was does not read: a snapshot next
    client.close()


def test_a_huge_retry_after_does_not_stop_the_node_reading() -> None:
    """A ``Retry-After`` of a day (a box between the node and the server) was obeyed as
    said: no read for a day, the node neither failing nor current. It is capped."""
    client = SitesApiClient("http://127.0.0.1:1", None)
    feed = RulesFeed(client, start=False)
    for retry_after in (86_400.0, 9.0 * 10**18):
        answer = FeedAnswer(None, 3, False, (), (), None, True, retry_after)
        assert feed._pause(answer, 0.0) <= 60
    assert feed._pause(FeedAnswer(None, 3, False, (), (), None, True, 5.0), 0.0) == 5
    client.close()


def test_reads_past_the_clock_share_one_snapshot_build(database: str) -> None:
    """Every ``since`` past the clock answers the full snapshot, and each distinct one built
    its own (a key could make the server build and keep 32 full snapshots at will)."""
    with serving(database) as api:
        api.new_site()
        builds = counted_builds(api)
        with api.edge() as client:
            version = client.edge_rules().version
            assert version is not None
            for since in range(version + 1, version + 6):
                assert client.edge_rules(since).full
            assert client.edge_rules(version + secrets.randbelow(10**6) + 10).full
        assert builds == [None]


# --- the proxy -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def upstream_url() -> Iterator[tuple[Upstream, str]]:
    upstream = Upstream()
    with serve_in_thread(upstream.app) as url:
        yield upstream, url


def _send_raw(url: str, request: bytes) -> bytes:
    """``request`` as bytes on one connection; the answer's status line."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(request)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    return answer.partition(b"\r\n")[0]


@pytest.mark.parametrize("http", ["h11", "httptools"])
def test_a_chunked_hit_that_also_declares_a_length_is_relayed_as_chunked(
    upstream_url: tuple[Upstream, str], http: str
) -> None:
    """``Transfer-Encoding: chunked`` with a ``Content-Length`` (h11 frames it as chunked):
    the relay dropped the Transfer-Encoding (hop by hop) but sent the stale length on with
    the body, which httpx refused (more or fewer bytes than declared), so a client's odd
    framing answered 502 ``Upstream unavailable`` and marked the upstream failing. The
    length goes (RFC 9112 6.3: a proxy removes it), the body is sent as it came."""
    fake, url = upstream_url
    fake.seen.clear()
    proxy = create_proxy_app(url, EdgeFilter(OPEN))
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(HIT), HIT)
    head = (
        b"POST /api/track HTTP/1.1\r\nHost: analytics.test\r\nUser-Agent: "
        + CHROME.encode()
        + b"\r\nContent-Type: application/json\r\nConnection: close\r\n"
        b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"
    )
    with serve_in_thread(proxy, http=http) as proxy_url:
        status = _send_raw(proxy_url, head + chunked)
    if http == "h11":  # h11 frames it by the chunks
        assert status.split()[1] == b"200"
        assert [seen.body for seen in fake.hits()] == [HIT]
    else:  # httptools refuses the framing itself: nothing relayed
        assert status.split()[1] == b"400"
        assert fake.hits() == []
    assert not proxy.app.counters.snapshot().get(("failure", "unavailable"))


def test_an_upstream_answer_both_chunked_and_sized_reaches_the_client_whole() -> None:
    """An upstream (or a box before it) answering ``Transfer-Encoding: chunked`` with a
    ``Content-Length``: the length went on with the de-chunked body, which uvicorn refuses
    to send past it (an exception in the relay, the answer cut)."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def answer_once() -> None:
        connection, _ = listener.accept()
        with connection:
            request = b""
            while b"\r\n\r\n" not in request:
                request += connection.recv(65536)
            connection.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/javascript\r\n"
                b"Transfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n"
                b"6\r\nabcdef\r\n0\r\n\r\n"
            )

    thread = threading.Thread(target=answer_once, daemon=True)
    thread.start()
    proxy = create_proxy_app(f"http://127.0.0.1:{port}", EdgeFilter(OPEN))
    try:
        with serve_in_thread(proxy, http="h11") as proxy_url:
            answer = httpx.get(proxy_url + "/api/script.js")
        thread.join(5)
    finally:
        listener.close()
    assert answer.status_code == 200
    assert answer.content == b"abcdef"


@pytest.mark.parametrize("agent", ["x\r\nX-Injected: 1", " Mozilla/5.0", "a\x00b", "a\x0bb"])
def test_an_ingest_key_user_agent_that_is_no_header_value_is_not_an_upstream_failure(
    upstream_url: tuple[Upstream, str], agent: str
) -> None:
    """Server-side ingestion names the user agent in the payload; one holding CR LF (or a
    NUL, or a space at an end) was set
    as the upstream request's ``User-Agent``, which httpx refused: 502 ``Upstream
    unavailable``, the upstream counted failing, for a payload. The payload goes on as it
    is (the upstream reads it there), the header is the request's own."""
    fake, url = upstream_url
    fake.seen.clear()
    proxy = create_proxy_app(url, EdgeFilter(OPEN), ingest_key_verifier=lambda key, site: True)
    payload = {"type": "pageview", "site_id": "1", "pathname": "/a"}
    body = json.dumps({**payload, "user_agent": agent}).encode()
    with serve_in_thread(proxy, http="h11") as proxy_url:
        answer = httpx.post(
            proxy_url + "/api/track",
            content=body,
            headers={"Authorization": "Bearer k", "Content-Type": "application/json"},
        )
    assert answer.status_code == 200
    [seen] = fake.hits()
    assert seen.body == body
    assert seen.header("x-injected") == []
    assert not proxy.app.counters.snapshot().get(("failure", "unavailable"))


def test_a_flood_of_readyz_requests_costs_the_sites_api_one_probe(sites_api: LiveApi) -> None:
    """``/readyz`` is public and each request probed the Sites API with the proxy's key: a
    flood of them was as many API requests (and a rate-limited key then fails the rules
    fetches). One probe answers every request for a second, and those made while it runs."""
    client = SitesApiClient(sites_api.url, sites_api.key)
    cache = RulesCache(client, tick=None)
    proxy = create_proxy_app("http://127.0.0.1:9", EdgeFilter(cache))

    async def flood(url: str) -> list[int]:
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            answers = await asyncio.gather(*(http.get("/readyz") for _ in range(40)))
        return [answer.status_code for answer in answers]

    try:
        with serve_in_thread(proxy) as url:
            statuses = asyncio.run(flood(url))
    finally:
        cache.close()
        client.close()
    assert statuses == [200] * 40
    assert sum(sites_api.faults.requests.values()) <= 2


def test_a_new_feed_epoch_makes_every_node_resync(
    database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """After a restore, ``edgefilter new-feed-epoch`` gives the database a new epoch: a
    node's next read names it (in the body, or the ETag of a 304), so the node takes a full
    snapshot instead of trusting a version of the old timeline."""
    from edgefilter.cli import main  # noqa: PLC0415

    with serving(database) as api:
        api.new_site()
        with running_feed(api, wait=0.2) as feed:
            snapshots = feed.stats()["snapshots"]
            old = api.store.feed_clock().epoch
            assert main(["new-feed-epoch", "--db", database]) == 0
            new = api.store.feed_clock().epoch
            eventually(lambda: feed.stats()["snapshots"] > snapshots)
        assert new != old
        assert f"feed epoch {new}" in capsys.readouterr().out


def test_a_new_feed_epoch_wakes_the_nodes_held_on_the_old_one(
    database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """On PostgreSQL the API's listener moves to the new epoch's channel, and the reads held
    on the old timeline are answered at once: a node waiting 20 s resyncs within seconds,
    and a change after the new epoch reaches it by push, with no restart of the API."""
    if not database.startswith("postgresql"):
        pytest.skip("SQLite has no listener: a held read sees the new epoch when it ends")
    from edgefilter.cli import main  # noqa: PLC0415

    with serving(database) as api:
        api.new_site()
        with running_feed(api, wait=20) as feed:
            time.sleep(0.5)  # the node's read is held now
            snapshots = feed.stats()["snapshots"]
            assert main(["new-feed-epoch", "--db", database]) == 0
            assert eventually(lambda: feed.stats()["snapshots"] > snapshots, timeout=8) < 8
            site = api.new_site()
            assert eventually(lambda: feed.resolve(site) is not None, timeout=8) < 8
    capsys.readouterr()
