"""Attacker's review of the node's pause (6a9dd8d): a snapshot read at once when an answer
names another database, but not in a loop when the answers keep saying so."""

from __future__ import annotations

import time

import httpx
import pytest

from edgefilter import RulesFeed, SitesApiClient

SNAPSHOT = b'{"epoch":"e1","version":3,"full":true,"sites":[{"siteId":1,"domain":"a.example"}]}'


def _requests_in(handler_304_etag: str | None, *, snapshot_too: bool) -> int:
    """Reads a node sends in 1 s to a server (or a box in the way) that answers each delta
    read 304 at once with ``handler_304_etag``, and the snapshot read 304 too when
    ``snapshot_too``."""
    seen: list[str] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        headers = {} if handler_304_etag is None else {"ETag": handler_304_etag}
        if "since" in request.url.params or snapshot_too:
            return httpx.Response(304, headers=headers)
        return httpx.Response(200, content=SNAPSHOT, headers={"ETag": '"e1.all.3"'})

    client = SitesApiClient(
        "http://api.invalid", "k" * 32, async_transport=httpx.MockTransport(handler)
    )
    feed = RulesFeed(client, wait=25, poll_interval=30, max_backoff=0.2)
    try:
        time.sleep(1.0)
    finally:
        feed.close()
        client.close()
    return len(seen)


@pytest.mark.parametrize("etag", ['"cdn-5d1f"', 'W/"0815"'])
def test_a_304_whose_etag_names_no_epoch_is_not_a_full_snapshot_in_a_loop(etag: str) -> None:
    """A box in the way that answers the delta read 304 with an ETag of its own: each 304
    read as another database, and a snapshot taken at once after it, then the delta again:
    a full snapshot per round trip, with no pause, for as long as the box is there (a poll
    interval between them before 6a9dd8d)."""
    assert _requests_in(etag, snapshot_too=False) < 10


def test_a_304_to_the_snapshot_read_is_not_a_busy_loop() -> None:
    """A 304 to the unconditional snapshot read leaves the node on no epoch: each answer was
    taken for another database's, and the next read sent at once, for ever."""
    assert _requests_in('"e1.all.3"', snapshot_too=True) < 10
