"""The slow-client guard: a body that does not arrive in time is answered 408.

On loopback, the proxy (which is the front server slow clients meet) in front of the
recording upstream; raw sockets send the headers and then too little of the body.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from edgefilter import ConfigError, EdgeFilter, SiteConfig
from edgefilter._deadline import BodyDeadline
from edgefilter._serving import serve_in_thread
from edgefilter.middleware import EdgeFilterMiddleware
from edgefilter.proxy import create_proxy_app

from .conftest import CHROME
from .test_middleware import RecordingApp
from .test_proxy import upstream, upstream_server
from .upstream import Upstream

__all__ = ["upstream", "upstream_server"]  # the fixtures, shared with test_proxy

SITES = {"1": SiteConfig(site_id=1, block_bots=True, excluded_ips=("203.0.113.0/24",))}
HIT = b'{"type":"pageview","site_id":"1","pathname":"/a"}'


@pytest.fixture(scope="module")
def proxy(upstream_server: tuple[Upstream, str]) -> Iterator[tuple[str, int]]:
    """A proxy whose bodies are due 0.5 s after their request; its (host, port)."""
    app = create_proxy_app(upstream_server[1], EdgeFilter(SITES), body_timeout=0.5)
    with serve_in_thread(app) as url:
        parts = urlsplit(url)
        yield str(parts.hostname), int(parts.port or 80)


def request_head(path: str, length: int) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: edge.test\r\nUser-Agent: {CHROME}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


def answer_to(address: tuple[str, int], parts: list[bytes], pause: float) -> tuple[bytes, float]:
    """Send ``parts`` with ``pause`` seconds between them; the raw answer and its seconds."""
    start = time.monotonic()
    with socket.create_connection(address, timeout=5) as sock:
        for index, part in enumerate(parts):
            if index:
                time.sleep(pause)
            try:
                sock.sendall(part)
            except OSError:  # answered and closed already
                break
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
            if b"\r\n\r\n" in answer and answer.endswith(b"}"):
                break
    return answer, time.monotonic() - start


@pytest.mark.parametrize("path", ["/api/track", "/api/identify", "/api/session-replay/record/1"])
def test_a_body_that_stops_coming_is_answered_408(
    proxy: tuple[str, int], upstream: Upstream, path: str
) -> None:
    """Headers, then half the body, then nothing: 408 with Connection: close at the
    deadline, and nothing reaches the upstream."""
    answer, took = answer_to(proxy, [request_head(path, len(HIT)) + HIT[:10]], 0)
    head = answer.split(b"\r\n\r\n", 1)[0].lower()
    assert head.startswith(b"http/1.1 408"), answer
    assert b"connection: close" in head
    assert answer.endswith(b'{"success":false,"error":"Request body timeout"}')
    assert 0.4 < took < 3
    assert upstream.seen == []


def test_a_body_dripped_byte_by_byte_is_cut_at_the_deadline(proxy: tuple[str, int]) -> None:
    """A byte every 0.1 s never lets the deadline slip: it is for the whole body."""
    drip = [request_head("/api/track", len(HIT))] + [bytes([byte]) for byte in HIT]
    answer, took = answer_to(proxy, drip, 0.1)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert took < 2


def test_a_body_in_pieces_that_arrives_in_time_is_decided(
    proxy: tuple[str, int], upstream: Upstream
) -> None:
    """A body sent in three pieces within the deadline is decided and relayed as usual."""
    pieces = [request_head("/api/track", len(HIT)) + HIT[:10], HIT[10:20], HIT[20:]]
    answer, _ = answer_to(proxy, pieces, 0.1)
    assert answer.startswith(b"HTTP/1.1 200"), answer
    assert [seen.body for seen in upstream.seen] == [HIT]


async def late_body() -> dict[str, Any]:
    """A client's body that comes a second late."""
    await asyncio.sleep(1)
    return {"type": "http.request", "body": HIT, "more_body": False}


def test_a_late_body_reaches_nothing_behind_the_middleware() -> None:
    """In process: the app behind is never called with a late hit; the client gets the 408."""
    app = RecordingApp()
    middleware = EdgeFilterMiddleware(app, edge_filter=EdgeFilter(SITES), body_timeout=0.05)
    sent: list[dict[str, Any]] = []
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/api/track",
        "headers": [(b"user-agent", CHROME.encode())],
        "client": ("198.51.100.1", 5000),
    }
    asyncio.run(middleware(scope, late_body, send_to(sent)))
    assert [message.get("status") for message in sent] == [408, None]
    assert app.calls == []


def send_to(sent: list[dict[str, Any]]) -> Any:
    """An ASGI send that keeps what it is given in ``sent``."""

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    return send


@pytest.mark.parametrize("value", [0, -1, float("nan"), float("inf"), "5", True])
def test_a_bad_body_timeout_is_refused(value: object) -> None:
    with pytest.raises(ConfigError, match="body_timeout"):
        EdgeFilterMiddleware(RecordingApp(), edge_filter=EdgeFilter(SITES), body_timeout=value)  # type: ignore[arg-type]


def test_what_an_app_sends_after_the_408_is_dropped() -> None:
    """An app that answers anyway after its late body (it ignores the disconnect) sends
    nothing more to the client: the 408 was the answer."""
    sent: list[dict[str, Any]] = []

    async def stubborn_app() -> None:
        deadline = BodyDeadline(late_body, send_to(sent), 0.05, [])
        assert (await deadline.receive())["type"] == "http.disconnect"
        await deadline.send({"type": "http.response.start", "status": 200, "headers": []})
        await deadline.send({"type": "http.response.body", "body": b"late"})

    asyncio.run(stubborn_app())
    assert [message.get("status") for message in sent] == [408, None]
    assert sent[-1]["body"] != b"late"


def seconds_held(address: tuple[str, int], head: bytes, for_seconds: float) -> tuple[bytes, float]:
    """Send ``head``, then drip a body byte every 0.1 s for up to ``for_seconds``; the
    answer and how long the connection stayed open (``for_seconds`` if it never closed)."""
    start = time.monotonic()
    answer = b""
    with socket.create_connection(address, timeout=5) as sock:
        sock.sendall(head)
        sock.settimeout(0.1)
        while time.monotonic() - start < for_seconds:
            try:
                sock.sendall(b"x")
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:  # closed by the proxy
                break
            if not chunk:
                break
            answer += chunk
    return answer, min(time.monotonic() - start, for_seconds)


@pytest.mark.parametrize(
    "head",
    [
        request_head("/api/track", 100_000_000),  # 413 at once, from its declared length
        b"GET /healthz HTTP/1.1\r\nHost: edge.test\r\nContent-Length: 1000\r\n\r\n",
        b"GET /elsewhere HTTP/1.1\r\nHost: edge.test\r\nContent-Length: 1000\r\n\r\n",
    ],
    ids=["413", "healthz", "not relayed"],
)
def test_an_answer_before_the_whole_body_closes_the_connection(
    proxy: tuple[str, int], head: bytes
) -> None:
    """Answered before its body came whole (nobody reads it), a request's connection is
    closed after the answer: else the client dripped the rest of the body a byte at a time
    and held the connection for ever (uvicorn reads on, every byte restarting its
    keep-alive clock), the deadline gone with the request's task."""
    answer, held = seconds_held(proxy, head, 3)
    assert b"connection: close" in answer.split(b"\r\n\r\n", 1)[0].lower(), answer
    assert held < 1.5


def test_a_kept_alive_connection_stays_open_and_each_request_has_its_own_deadline(
    proxy: tuple[str, int],
) -> None:
    """A bodiless GET keeps its connection alive (no Connection: close for it), and the next
    request on it, late at its own deadline, is answered 408 that long after it came."""
    healthz = b"GET /healthz HTTP/1.1\r\nHost: edge.test\r\n\r\n"
    with socket.create_connection(proxy, timeout=5) as sock:
        sock.sendall(healthz)
        first = whole_answer(sock)
        assert first.startswith(b"HTTP/1.1 200") and b"connection: close" not in first.lower()
        time.sleep(0.6)  # past the first request's deadline
        start = time.monotonic()
        sock.sendall(request_head("/api/track", len(HIT)) + HIT[:10])
        second = whole_answer(sock)
        assert second.startswith(b"HTTP/1.1 408"), second
        assert 0.4 < time.monotonic() - start < 2


def whole_answer(sock: socket.socket) -> bytes:
    """One JSON answer read off ``sock``, head and body."""
    answer = b""
    while not (b"\r\n\r\n" in answer and answer.endswith(b"}")):
        chunk = sock.recv(65536)
        if not chunk:
            break
        answer += chunk
    return answer
