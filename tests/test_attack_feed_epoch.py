"""Attacker's review of the new-epoch push (6a9dd8d): a clock read that overlaps a commit is
not a rewind, and a listener listens on the epoch it reads after LISTEN."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from edgefilter.server._store import SiteStore

from .test_feed import database, eventually, running_feed, serving

__all__ = ["database"]  # the fixture, on SQLite and PostgreSQL


def test_a_clock_read_that_overlaps_a_commit_does_not_resend_every_held_node_a_snapshot(
    database: str,
) -> None:
    """A clock read taken just before a commit but handed back to the loop just after the
    commit's announcement is behind the signal: ``_learn`` took it for a rewind, and since
    a rewind now wakes every held read, each node held at the new version was answered a
    full snapshot (10,000 nodes, a 10 MB body each) for an ordinary commit."""
    with serving(database) as api:
        api.new_site()
        endpoint = api.faults.app.state.feed
        store = api.faults.app.state.store
        with running_feed(api, wait=5) as feed:
            eventually(lambda: endpoint.waiting == 1)
            snapshots = feed.stats()["snapshots"]
            original = store.feed_clock
            armed, read, release = threading.Event(), threading.Event(), threading.Event()

            def slow_clock(connection: Any = None) -> Any:
                clock = original(connection)
                if connection is None and armed.is_set():
                    armed.clear()
                    read.set()
                    release.wait(5)  # the thread descheduled between its read and its return
                return clock

            store.feed_clock = slow_clock
            armed.set()
            with api.edge() as other:  # another node's plain read: it reads the clock
                plain = threading.Thread(target=other.edge_rules)
                plain.start()
                assert read.wait(5)
                version = feed.stats()["version"]
                api.new_site()  # commits, announces: the held node takes its delta
                eventually(lambda: feed.stats()["version"] > version)
                eventually(lambda: endpoint.waiting == 1)  # held again, at the new version
                release.set()  # the read of the old version lands now
                plain.join(5)
            time.sleep(0.5)
            assert feed.stats()["snapshots"] == snapshots


def test_a_new_epoch_between_the_listeners_clock_read_and_its_listen_moves_it_too(
    database: str,
) -> None:
    """The listener reads the clock, then LISTENs on that epoch's channel, then reads the
    clock again for what it missed. A new epoch committed between the first read and the
    LISTEN (its notice went to a channel nobody listened on yet) is seen by the second
    read, but the listener stayed on the old epoch's channel: no commit after it woke a
    held read of this process again (each waited out its wait) until the listener failed."""
    if not database.startswith("postgresql"):
        pytest.skip("SQLite has no listener")
    with serving(database) as api:
        site = api.new_site()
        endpoint = api.faults.app.state.feed
        store = api.faults.app.state.store
        original = store.feed_clock
        armed, done = threading.Event(), threading.Event()

        def racing_clock(connection: Any = None) -> Any:
            clock = original(connection)
            if connection is None and armed.is_set():
                armed.clear()
                store.new_feed_epoch()  # commits before the listener's LISTEN
                done.set()
            return clock

        store.feed_clock = racing_clock
        armed.set()
        store.new_feed_epoch()  # the listener breaks, reconnects, reads the clock (armed)
        assert done.wait(5)
        final = original().epoch
        eventually(lambda: endpoint.epoch == final)
        with running_feed(api, wait=20) as feed:
            eventually(lambda: endpoint.waiting == 1)
            version = feed.stats()["version"]
            writer = SiteStore(database)  # another process's commit: only NOTIFY tells
            try:
                with writer.transaction() as connection:
                    writer.update_site(connection, int(site), {"block_bots": False})
            finally:
                writer.close()
            assert eventually(lambda: feed.stats()["version"] > version, timeout=8) < 8
