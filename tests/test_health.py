"""``/healthz`` and ``/readyz`` of the Sites API, on loopback, answers checked against the spec."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from edgefilter._serving import serve_in_thread
from edgefilter.server import create_app
from edgefilter.server._store import engine_for

from .test_server_spec import response_hook


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Starlette]:
    """A Sites API app on a fresh SQLite database."""
    app = create_app(f"sqlite:///{tmp_path / 'sites.db'}")
    yield app
    app.state.store.close()


def probe(app: Starlette, *paths: str) -> list[httpx.Response]:
    """GET each path of ``app`` served on loopback, without a key; answers checked by the spec."""
    with (
        serve_in_thread(app) as url,
        httpx.Client(base_url=url, event_hooks={"response": [response_hook]}) as client,
    ):
        return [client.get(path) for path in paths]


def break_database(app: Starlette, tmp_path: Path) -> None:
    """Point the app's store at a SQLite file that cannot be opened."""
    app.state.store.engine.dispose()
    app.state.store.engine = engine_for(f"sqlite:///{tmp_path / 'missing' / 'sites.db'}")


def test_healthz_and_readyz_answer_ok(app: Starlette) -> None:
    """With the database there, both answer 200 without a key."""
    healthz, readyz = probe(app, "/healthz", "/readyz")
    assert (healthz.status_code, healthz.json()) == (200, {"status": "ok"})
    assert (readyz.status_code, readyz.json()) == (200, {"status": "ready"})


def test_readyz_is_503_with_a_reason_when_the_database_is_gone(
    app: Starlette, tmp_path: Path
) -> None:
    """A database that cannot be reached: /readyz 503 with a reason; /healthz still 200."""
    break_database(app, tmp_path)
    healthz, readyz = probe(app, "/healthz", "/readyz")
    assert healthz.status_code == 200
    assert readyz.status_code == 503
    assert readyz.json()["status"] == "unavailable"
    assert "the database cannot be reached (OperationalError)" in readyz.json()["reason"]


def test_readyz_does_not_say_where_the_database_is(tmp_path: Path) -> None:
    """The answer names no host, user or path: the details go to the log only."""
    app = create_app(f"sqlite:///{tmp_path / 'sites.db'}")
    break_database(app, tmp_path)
    (readyz,) = probe(app, "/readyz")
    assert str(tmp_path) not in readyz.text
    assert "unable to open" not in readyz.text


def test_readyz_is_503_when_the_database_does_not_answer_in_time(app: Starlette) -> None:
    """A ``SELECT 1`` that never returns within the timeout answers 503, not a hang."""
    release = threading.Event()
    app.state.store.ping = lambda: release.wait(10)
    app.state.health.timeout = 0.05
    try:
        (readyz,) = probe(app, "/readyz")
    finally:
        release.set()
    assert readyz.status_code == 503
    assert "did not answer within" in readyz.json()["reason"]


def test_readyz_logs_an_outage_once_and_its_end(
    app: Starlette, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Repeated probes of a down database log one warning; the recovery one info line."""
    store: Any = app.state.store
    healthy = store.engine
    with caplog.at_level(logging.INFO, logger="edgefilter"):
        store.engine = engine_for(f"sqlite:///{tmp_path / 'missing' / 'sites.db'}")
        probe(app, "/readyz", "/readyz", "/readyz")
        store.engine = healthy
        assert [answer.status_code for answer in probe(app, "/readyz", "/readyz")] == [200, 200]
    messages = [record.getMessage() for record in caplog.records if "readyz" in record.getMessage()]
    assert len(messages) == 2
    assert "unable to open database file" in messages[0]
    assert "answers again" in messages[1]
