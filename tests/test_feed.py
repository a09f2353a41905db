"""The versioned rules feed against the real server on SQLite and PostgreSQL, and RulesFeed."""

from __future__ import annotations

import gzip
import math
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.requests import Request

from edgefilter import ConfigError, EdgeFilter, Reason, RulesFeed, SitesApiClient
from edgefilter._feed import write_durably
from edgefilter._serving import serve_in_thread
from edgefilter.server import create_app
from edgefilter.server._feed import _accepts_gzip
from edgefilter.server._store import SiteStore, engine_for

from .live import FaultInjector, unused_port
from .test_server import postgres_url
from .test_server_spec import check_answer

CHROME = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0"


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database URL: a SQLite file, or a PostgreSQL schema dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'sites.db'}"
        return
    base = postgres_url()
    schema = f"test_{secrets.token_hex(6)}"
    admin = engine_for(base)
    with admin.begin() as connection:
        connection.exec_driver_sql(f"CREATE SCHEMA {schema}")
    yield f"{base}?options=-csearch_path%3D{schema}"
    with admin.begin() as connection:
        connection.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
    admin.dispose()


@dataclass
class FeedApi:
    """The reference server on loopback (behind a FaultInjector), an org and its keys."""

    url: str
    store: SiteStore
    faults: FaultInjector
    org_id: str
    owner_key: str
    edge_key: str

    def owner(self) -> SitesApiClient:
        return SitesApiClient(self.url, self.owner_key)

    def edge(self, **options: Any) -> SitesApiClient:
        return SitesApiClient(self.url, self.edge_key, **options)

    def http(self, key: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key or self.edge_key}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def new_site(self, **config: Any) -> str:
        """A new site with the config given; its siteId."""
        with self.owner() as client:
            site = str(client.create_site(self.org_id, "example.com", "Site")["siteId"])
            if config:
                client.update_config(site, **config)
        return site


@contextmanager
def serving(
    db_url: str, *, port: int = 0, keys: tuple[str, str, str] | None = None, **options: Any
) -> Iterator[FeedApi]:
    """The server over ``db_url`` on ``port``; a new org and keys unless ``keys`` given."""
    app = create_app(db_url, **options)
    store: SiteStore = app.state.store
    if keys is None:
        org_id = store.create_organization("Feed")
        keys = (org_id, store.create_key(org_id, "owner"), store.create_key(org_id, "edge"))
    faults = FaultInjector(app)
    # Held long polls would keep uvicorn's graceful shutdown waiting for their whole wait.
    with serve_in_thread(faults, port=port, timeout_graceful_shutdown=0.1) as url:
        yield FeedApi(url, store, faults, *keys)


def counted_builds(api: FeedApi) -> list[int | None]:
    """The ``since`` of every feed answer the server builds from now on (its store's
    ``feed_changes`` wrapped to note them)."""
    store = api.faults.app.state.store
    builds: list[int | None] = []
    original = store.feed_changes

    def counted(scope: str | None, since: int | None) -> Any:
        builds.append(since)
        return original(scope, since)

    store.feed_changes = counted
    return builds


@pytest.fixture
def feed_api(database: str) -> Iterator[FeedApi]:
    """The server on a fresh database of each backend."""
    with serving(database) as api:
        yield api


def eventually(check: Callable[[], bool], timeout: float = 5.0) -> float:
    """Seconds until ``check()`` holds; fails past ``timeout``."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout, "the condition never held"
        time.sleep(0.002)
    return time.monotonic() - started


# --- the endpoint ----------------------------------------------------------------------------


def test_a_snapshot_holds_every_site_in_the_compact_form(feed_api: FeedApi) -> None:
    """The snapshot answers each site with only what the edge decides on, defaults left out."""
    plain = feed_api.new_site()
    ruled = feed_api.new_site(
        excludedIPs=["10.0.0.0/8"], blockBots=False, type="mobile", excludedASNs=["AS15169"]
    )
    with feed_api.edge() as client:
        answer = client.edge_rules()
    assert answer.full
    by_id = {str(site["siteId"]): site for site in answer.sites}
    assert set(by_id) == {plain, ruled}
    assert set(by_id[plain]) == {"siteId", "id", "domain"}
    assert {key: by_id[ruled][key] for key in set(by_id[ruled]) - {"siteId", "id"}} == {
        "domain": "example.com",
        "blockBots": False,
        "type": "mobile",
        "excludedIPs": ["10.0.0.0/8"],
        "excludedASNs": [15169],
    }


def test_a_delta_holds_only_the_changes_and_the_deletions(feed_api: FeedApi) -> None:
    """Since a version: the sites changed after it and the siteIds deleted, nothing else."""
    kept, changed, gone = feed_api.new_site(), feed_api.new_site(), feed_api.new_site()
    with feed_api.edge() as client:
        version = client.edge_rules().version
        with feed_api.owner() as owner:
            owner.update_config(changed, excludedPaths=["/admin*"])
            owner.delete_site(gone)
        delta = client.edge_rules(version)
    assert not delta.full
    assert [str(site["siteId"]) for site in delta.sites] == [changed]
    assert delta.sites[0]["excludedPaths"] == ["/admin*"]
    assert delta.deleted == (int(gone),)
    assert kept not in {str(site["siteId"]) for site in delta.sites}
    assert delta.version == version + 2  # type: ignore[operator]


def test_etags_answer_304(feed_api: FeedApi) -> None:
    """A snapshot's ETag answers 304; so does a since equal to the version; a change does not."""
    site = feed_api.new_site()
    with feed_api.edge() as client:
        first = client.edge_rules()
        assert client.edge_rules(etag=first.etag).not_modified
        assert client.edge_rules(first.version).not_modified
        with feed_api.owner() as owner:
            owner.update_config(site, excludedIPs=["192.0.2.1"])
        assert not client.edge_rules(etag=first.etag).not_modified
        assert not client.edge_rules(first.version).not_modified


def test_the_body_is_gzip_encoded_when_accepted(feed_api: FeedApi) -> None:
    """A client accepting gzip gets the body encoded; one that does not, or refuses it by
    its weight, gets it plain."""
    for _ in range(20):
        feed_api.new_site(excludedUserAgents=["UptimeRobot"])
    with feed_api.http() as client:
        packed = client.get("/api/edge/rules", headers={"Accept-Encoding": "gzip"})
        plain = client.get("/api/edge/rules", headers={"Accept-Encoding": "identity"})
        refused = client.get("/api/edge/rules", headers={"Accept-Encoding": "gzip;q=0"})
        weighted = client.get("/api/edge/rules", headers={"Accept-Encoding": "gzip;q=1"})
    assert packed.headers["content-encoding"] == "gzip"
    assert "content-encoding" not in plain.headers
    assert "content-encoding" not in refused.headers  # gzip;q=0 refuses it (RFC 9110)
    assert weighted.headers["content-encoding"] == "gzip"
    assert int(packed.headers["content-length"]) < int(plain.headers["content-length"]) / 3
    assert packed.json() == plain.json()
    assert gzip.decompress(gzip.compress(plain.content)) == plain.content


@pytest.mark.parametrize(
    ("accepted", "encoded"),
    [
        ("gzip;q=0", False),
        ("gzip; q=0.0, identity", False),
        ("*;q=0", False),
        ("gzip;q=nan", False),
        ("br, gzip;q=0.5", True),
        ("*", True),
        ("GZIP", True),
        ("identity, *;q=0.1", True),
        ("gzip;q=0, *", False),
    ],
)
def test_gzip_follows_the_accepted_weights(accepted: str, encoded: bool) -> None:
    """``Accept-Encoding`` weights count: ``gzip;q=0`` refuses gzip (RFC 9110), ``*`` stands
    for a gzip it does not name."""
    scope = {"type": "http", "headers": [(b"accept-encoding", accepted.encode())]}
    assert _accepts_gzip(Request(scope)) is encoded


def test_an_edge_key_reads_every_organisation_and_writes_nothing(feed_api: FeedApi) -> None:
    """An edge key's feed holds every organisation's sites; an owner's only its own; an edge
    key reads site rules anywhere but no private link, and cannot write."""
    other_org = feed_api.store.create_organization("Other")
    other_owner = feed_api.store.create_key(other_org, "owner")
    mine = feed_api.new_site()
    with SitesApiClient(feed_api.url, other_owner) as client:
        theirs = str(client.create_site(other_org, "other.example", "Theirs")["siteId"])
        gone = str(client.create_site(other_org, "gone.example", "Gone")["siteId"])
    with feed_api.edge() as edge, feed_api.owner() as owner:
        version = owner.edge_rules().version
        with SitesApiClient(feed_api.url, other_owner) as client:
            client.delete_site(gone)
        assert {str(s["siteId"]) for s in edge.edge_rules().sites} == {mine, theirs}
        assert {str(s["siteId"]) for s in owner.edge_rules().sites} == {mine}
        assert edge.edge_rules(version).deleted == (int(gone),)
        assert owner.edge_rules(version).deleted == ()  # another org's deletes are not told
        assert edge.site(theirs)["domain"] == "other.example"
        assert edge.excluded_ips(theirs) == []
    refused = "Forbidden: an edge key reads rules only"
    with feed_api.http() as client:
        assert client.get(f"/api/sites/{theirs}/private-link-config").json()["error"] == refused
        answer = client.put(f"/api/sites/{mine}/config", json={"public": True})
        assert (answer.status_code, answer.json()["error"]) == (403, refused)
        assert client.delete(f"/api/sites/{theirs}").status_code == 403
        body = {"domain": "x.example", "name": "x"}
        assert client.post(f"/api/sites/{feed_api.org_id}", json=body).status_code == 403


@pytest.mark.parametrize("query", ["since=-1", "since=1.5", "since=x", "wait=-1", "wait=nan"])
def test_bad_feed_parameters_are_400(feed_api: FeedApi, query: str) -> None:
    """A since that is not digits or a wait that is not seconds >= 0 is a 400 naming it."""
    with feed_api.http() as client:
        answer = client.get(f"/api/edge/rules?{query}")
    assert answer.status_code == 400
    assert query.split("=", maxsplit=1)[0] in answer.json()["error"]


def test_the_feed_needs_a_key(feed_api: FeedApi) -> None:
    """Without a key the feed is a 401."""
    with httpx.Client(base_url=feed_api.url) as client:
        assert client.get("/api/edge/rules").status_code == 401


# --- push ------------------------------------------------------------------------------------


def test_a_long_poll_answers_when_a_change_commits(feed_api: FeedApi) -> None:
    """A held read answers as soon as a change commits, not when its wait ends."""
    site = feed_api.new_site()
    with feed_api.edge() as client:
        version = client.edge_rules().version
        timer = threading.Timer(0.2, feed_api.new_site)
        timer.start()
        started = time.monotonic()
        answer = client.edge_rules(version, wait=10)
        took = time.monotonic() - started
    timer.join()
    assert not answer.not_modified
    assert 0.15 < took < 3
    assert site not in {str(s["siteId"]) for s in answer.sites}


def test_waiters_and_their_wait_are_bounded(database: str) -> None:
    """Past max_waiters a read answers 304 with Retry-After at once; a wait is cut to max_wait."""
    with serving(database, feed_max_waiters=1, feed_max_wait=0.5) as api, api.edge() as client:
        version = client.edge_rules().version
        held = threading.Thread(target=client.edge_rules, args=(version,), kwargs={"wait": 30})
        held.start()
        eventually(lambda: api.store is not None and _waiting(api) == 1)
        with api.http() as second:
            started = time.monotonic()
            refused = second.get(f"/api/edge/rules?since={version}&wait=30")
            assert time.monotonic() - started < 0.4
        assert refused.status_code == 304
        assert refused.headers["retry-after"] == "5"
        started = time.monotonic()
        held.join()
        assert time.monotonic() - started < 1.5  # cut at 0.5 s, not 30


def _waiting(api: FeedApi) -> int:
    app = api.faults.app
    return int(app.state.feed.waiting)


# --- RulesFeed ---------------------------------------------------------------------------------


@contextmanager
def running_feed(api: FeedApi, **options: Any) -> Iterator[RulesFeed]:
    """A RulesFeed on the edge key, holding a state, closed afterwards."""
    options = {"wait": 5.0, "max_backoff": 0.2, **options}
    client = api.edge()
    feed = RulesFeed(client, **options)
    try:
        feed.check(timeout=10)
        yield feed
    finally:
        feed.close()
        client.close()


def test_a_node_applies_changes_and_deletes(feed_api: FeedApi) -> None:
    """A change reaches the node's decisions by push; a delete makes the site unknown there."""
    site = feed_api.new_site()
    with running_feed(feed_api) as feed:
        edge = EdgeFilter(feed)
        assert edge.should_track(site, "192.0.2.1", CHROME).tracked
        with feed_api.owner() as owner:
            owner.update_config(site, excludedIPs=["192.0.2.0/24"])
            eventually(
                lambda: edge.should_track(site, "192.0.2.1", CHROME).reason.value != "tracked"
            )
            assert edge.should_track(site, "192.0.2.1", CHROME).reason is Reason.excluded_ip
            owner.delete_site(site)
        eventually(
            lambda: edge.should_track(site, "192.0.2.1", CHROME).reason is Reason.unknown_site
        )
        assert feed.stats()["sites_deleted"] == 1
        assert feed.known_sites() == {}


def test_a_node_offline_past_the_window_resyncs_with_a_full_snapshot(database: str) -> None:
    """Deletes past max_tombstones while a node was away: it gets a full snapshot, and holds
    exactly the sites that exist."""
    with serving(database, max_tombstones=2) as api, api.edge() as client:
        sites = [api.new_site() for _ in range(5)]
        feed = RulesFeed(client, start=False, wait=0.5)
        before = client.edge_rules()
        feed._apply(before)
        assert set(sites) <= set(feed.known_sites())
        with api.owner() as owner:
            for site in sites[:3]:
                owner.delete_site(site)
        answer = client.edge_rules(before.version)
        assert answer.full
        assert {str(site["siteId"]) for site in answer.sites} == set(sites[3:])
        assert not client.edge_rules(answer.version - 2).full  # type: ignore[operator]
        feed.start()
        eventually(lambda: feed.stats()["snapshots"] == 2)
        assert set(feed.known_sites()) >= set(sites[3:])
        assert not set(feed.known_sites()) & set(sites[:3])
        feed.close()


def client_snapshot(api: FeedApi, since: int | None) -> Any:
    with api.edge() as client:
        return client.edge_rules(since)


def test_push_survives_a_server_restart(database: str) -> None:
    """The server stops and starts again on the same port: the node keeps deciding meanwhile
    and the next change reaches it by push."""
    port = unused_port()
    with serving(database, port=port) as api:
        site = api.new_site()
        keys = (api.org_id, api.owner_key, api.edge_key)
        client = api.edge()
        feed = RulesFeed(client, wait=5.0, max_backoff=0.1)
        feed.check(timeout=10)
        edge = EdgeFilter(feed)
    assert edge.should_track(site, "192.0.2.1", CHROME).tracked  # the server is down
    eventually(lambda: feed.stats()["failing"] == 1)
    with serving(database, port=port, keys=keys) as api:
        with api.owner() as owner:
            owner.update_config(site, excludedIPs=["192.0.2.1"])
        took = eventually(
            lambda: not edge.should_track(site, "192.0.2.1", CHROME).tracked, timeout=10
        )
        assert took < 3  # pushed: not at the end of the 5 s wait
        assert feed.stats()["snapshots"] == 1  # deltas since, no second snapshot
        feed.close()
    client.close()


def test_a_flood_of_made_up_ids_makes_no_api_request(feed_api: FeedApi) -> None:
    """A feed-fed node answers unknown_site for ids it does not hold, asking the API nothing."""
    site = feed_api.new_site()
    with running_feed(feed_api, wait=0.0, poll_interval=60.0) as feed:
        edge = EdgeFilter(feed)
        feed_api.faults.requests.clear()
        made_up = [str(n) for n in range(100_000, 110_000)] + [
            secrets.token_hex(6) for _ in range(2_000)
        ]
        decisions = {edge.should_track(fake, "192.0.2.1", CHROME).reason for fake in made_up}
        assert decisions == {Reason.unknown_site}
        assert edge.should_track(site, "192.0.2.1", CHROME).tracked
    assert sum(feed_api.faults.requests.values()) == 0


def test_the_last_good_state_stays_through_an_outage(feed_api: FeedApi) -> None:
    """While the API fails the node keeps deciding from what it holds, and says it is stale."""
    site = feed_api.new_site(excludedIPs=["192.0.2.1"])
    with running_feed(feed_api, wait=0.2) as feed:
        edge = EdgeFilter(feed)
        feed_api.faults.mode = "500"
        eventually(lambda: feed.stats()["failing"] == 1)
        time.sleep(0.3)
        assert edge.should_track(site, "192.0.2.1", CHROME).reason is Reason.excluded_ip
        assert edge.should_track(site, "192.0.2.2", CHROME).tracked
        assert feed.stats()["stale_seconds"] >= 0.3
        feed_api.faults.mode = "ok"
        eventually(lambda: feed.stats()["failing"] == 0)
        assert feed.stats()["stale_seconds"] < 1


def test_before_any_state_sites_are_pending_or_the_failure(feed_api: FeedApi) -> None:
    """With no state held, a site is rules_pending; once the key is refused, unauthorized."""
    with feed_api.edge() as client:
        feed = RulesFeed(client, start=False, cold_wait=0)
        assert feed.resolve("1") is Reason.rules_pending
        assert feed.stats()["stale_seconds"] == math.inf
    with SitesApiClient(feed_api.url, "ef_not_a_key") as client:
        refused = RulesFeed(client, max_backoff=0.1)
        eventually(lambda: refused.stats()["failing"] == 1)
        assert refused.resolve("1") is Reason.rules_unauthorized
        refused.close()


def test_a_node_restarts_from_its_snapshot_file_with_the_api_down(
    feed_api: FeedApi, tmp_path: Path
) -> None:
    """A node saves its state; started again with the API unreachable, it decides at once from
    the file, and it asks only for the changes since once the API answers."""
    path = tmp_path / "rules.snapshot"
    site = feed_api.new_site(excludedIPs=["192.0.2.1"])
    with running_feed(feed_api, snapshot_path=path):
        pass
    assert path.exists()
    down = SitesApiClient(f"http://127.0.0.1:{unused_port()}", feed_api.edge_key)
    restarted = RulesFeed(down, snapshot_path=path, max_backoff=0.1)
    edge = EdgeFilter(restarted)
    assert edge.should_track(site, "192.0.2.1", CHROME).reason is Reason.excluded_ip
    assert edge.should_track("424242", "192.0.2.1", CHROME).reason is Reason.unknown_site
    eventually(lambda: restarted.stats()["failing"] == 1)
    assert restarted.stats()["snapshot_loads"] == 1
    restarted.close()
    down.close()
    with running_feed(feed_api, snapshot_path=path) as again:
        assert again.stats()["snapshots"] == 0  # started from the file: deltas only


def test_a_snapshot_is_on_disk_before_it_replaces_the_old_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The new file's bytes are flushed to disk before the rename, and the rename after it:
    a crash then leaves the old snapshot or the new one, never an empty file."""
    path, partial = tmp_path / "rules.snapshot", tmp_path / "rules.snapshot.1.partial"
    path.write_bytes(b"old")
    steps: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (steps.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(
        os, "replace", lambda a, b: (steps.append("replace"), real_replace(a, b))[1]
    )
    write_durably(path, partial, b"new")
    assert steps == ["fsync", "replace", "fsync"]
    assert path.read_bytes() == b"new" and not partial.exists()


def test_a_snapshot_that_cannot_be_written_leaves_the_old_one_and_no_partial(
    feed_api: FeedApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk at the flush: the old snapshot stays whole and the partial file goes."""
    (tmp_path / "state").mkdir()
    path = tmp_path / "state" / "rules.snapshot"
    feed_api.new_site()
    with running_feed(feed_api, snapshot_path=path):
        pass
    old = path.read_bytes()

    def full_disk(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    feed_api.new_site()
    with running_feed(feed_api, snapshot_path=path) as feed:
        eventually(lambda: feed.stats()["deltas"] + feed.stats()["snapshots"] >= 1)
    assert path.read_bytes() == old
    assert sorted(p.name for p in path.parent.iterdir()) == ["rules.snapshot"]


@pytest.mark.parametrize(
    "option",
    [
        {"wait": -1},
        {"wait": math.inf},
        {"poll_interval": 0},
        {"max_backoff": "1"},
        {"cold_wait": True},
        {"compact_tables": 1},
        {"clock": 3},
    ],
)
def test_bad_options_are_config_errors(option: dict[str, Any]) -> None:
    """Each bad option is a ConfigError naming it."""
    with pytest.raises(ConfigError, match=next(iter(option))):
        RulesFeed(SitesApiClient("http://127.0.0.1:1", None), start=False, **option)


def test_a_node_that_hangs_up_frees_its_place(feed_api: FeedApi) -> None:
    """A held read whose client goes away stops waiting at once, not when its wait ends."""
    with feed_api.edge() as client:
        version = client.edge_rules().version
    with feed_api.http() as http, pytest.raises(httpx.ReadTimeout):
        http.get(f"/api/edge/rules?since={version}&wait=20", timeout=0.3)
    assert eventually(lambda: _waiting(feed_api) == 0, timeout=3) < 2


def test_a_node_of_another_database_takes_a_full_snapshot(feed_api: FeedApi) -> None:
    """A state held from another database (another epoch) is replaced by a snapshot, even
    when its version happens to be the server's."""
    site = feed_api.new_site()
    with feed_api.edge() as client:
        feed = RulesFeed(client, start=False, wait=0.5)
        answer = client.edge_rules()
        feed._apply(answer)
        feed._held.epoch = "0123456789abcdef"
        feed._held.sites.clear()
        feed._hot.clear()
        feed.start()
        eventually(lambda: feed.stats()["snapshots"] == 2)
        assert set(feed.known_sites()) >= {site}
        feed.close()


def test_the_feed_answers_as_the_openapi_document_says(feed_api: FeedApi) -> None:
    """Snapshot, delta, 304 and 400 answers of the feed fit the spec's schemas."""
    site = feed_api.new_site(excludedIPs=["192.0.2.1"], type="mobile", blockBots=False)
    with feed_api.http() as client:
        snapshot = client.get("/api/edge/rules")
        version = snapshot.json()["version"]
        with feed_api.owner() as owner:
            owner.delete_site(site)
        answers = [
            snapshot,
            client.get(f"/api/edge/rules?since={version}"),
            client.get(f"/api/edge/rules?since={version + 1}&wait=0"),
            client.get("/api/edge/rules?since=x"),
        ]
    assert [answer.status_code for answer in answers] == [200, 200, 304, 400]
    for answer in answers:
        check_answer(answer)


def test_nodes_below_the_window_share_one_snapshot_build(database: str) -> None:
    """Nodes at different versions below the window get the same full snapshot, built once;
    nodes at the same version share one delta build."""
    with serving(database, max_tombstones=1) as api:
        sites = [api.new_site() for _ in range(4)]
        with api.owner() as owner:
            for site in sites[:2]:
                owner.delete_site(site)
        builds = counted_builds(api)
        with api.edge() as client:
            answers = [client.edge_rules(since) for since in (1, 2, 3, 5, 5)]  # floor: 5
        assert [answer.full for answer in answers] == [True] * 3 + [False] * 2
        assert builds == [None, 5]
