"""Two API processes on one PostgreSQL: a change committed anywhere wakes both one's waiters."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from edgefilter import FeedAnswer, SitesApiClient
from edgefilter.server._store import SiteStore

from .live import unused_port
from .test_feed import database, serving

__all__ = ["database"]  # the fixture, shared with test_feed

SRC = Path(__file__).resolve().parents[1] / "src"


@contextmanager
def api_process(db_url: str) -> Iterator[str]:
    """``edgefilter serve-api`` in a process of its own on ``db_url``; its URL."""
    port = unused_port()
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    command = [sys.executable, "-m", "edgefilter.cli", "serve-api", "--db", db_url]
    process = subprocess.Popen(
        [*command, "--port", str(port)], env=env, stderr=subprocess.PIPE, text=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "serve-api did not start"
            time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stderr is not None:
            process.stderr.close()


@pytest.mark.parametrize("database", ["postgresql"], indirect=True)
def test_two_api_processes_on_one_postgresql_both_wake_their_waiters(database: str) -> None:
    """A long poll held on each of two API processes answers within a second of a change
    committed by a third party (neither process's own commit: only NOTIFY can wake them)."""
    with serving(database) as first, api_process(database) as second_url:
        site = first.new_site()
        clients = [first.edge(), SitesApiClient(second_url, first.edge_key)]
        version = clients[0].edge_rules().version
        assert clients[1].edge_rules().version == version
        writer = SiteStore(database)
        with ThreadPoolExecutor(2) as pool:
            held = [pool.submit(_held_for, client, version) for client in clients]
            time.sleep(0.5)  # both reads are held by now
            committed = time.monotonic()
            with writer.transaction() as connection:
                writer.update_site(connection, int(site), {"block_bots": False})
            answers = [future.result() for future in held]
        writer.close()
        for client in clients:
            client.close()
    for answered_at, answer in answers:
        assert not answer.not_modified
        assert [s["siteId"] for s in answer.sites] == [int(site)]
        assert answered_at - committed < 1.0


def _held_for(client: SitesApiClient, version: int | None) -> tuple[float, FeedAnswer]:
    answer = client.edge_rules(version, wait=10)
    return time.monotonic(), answer
