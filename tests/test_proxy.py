"""``edgefilter proxy`` as the analytics host: on loopback, in front of a recording upstream."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from edgefilter import EdgeFilter, SiteConfig
from edgefilter._errors import ConfigError
from edgefilter._serving import serve_in_thread
from edgefilter.proxy import create_proxy_app

from .conftest import CHROME
from .upstream import (
    BIG_SIZE,
    FIRST_PART,
    REPLAY_BR,
    SCRIPT_CACHE,
    SCRIPT_ETAG,
    SCRIPT_GZIP,
    Upstream,
)

SITES = {
    "1": SiteConfig(
        site_id=1, block_bots=True, excluded_ips=("203.0.113.0/24",), excluded_paths=("/admin*",)
    ),
    "2": SiteConfig(site_id=2, block_bots=False, excluded_ips=("127.0.0.1",)),
}
VISITOR = "216.160.83.56"
TRUSTING = {"trusted_proxies": ["127.0.0.2"]}


@pytest.fixture(scope="module")
def upstream_server() -> Iterator[tuple[Upstream, str]]:
    """The stand-in upstream on loopback, for the whole module."""
    upstream = Upstream()
    with serve_in_thread(upstream.app) as url:
        yield upstream, url


@pytest.fixture
def upstream(upstream_server: tuple[Upstream, str]) -> Upstream:
    """The upstream with a fresh record."""
    fake, _ = upstream_server
    fake.seen.clear()
    fake.release.clear()
    fake.stream_closed.clear()
    return fake


@pytest.fixture
def serve(
    upstream_server: tuple[Upstream, str],
) -> Iterator[Any]:
    """Serve a proxy to the upstream made with the given options; yields a client factory."""
    _, url = upstream_server
    stack: list[Any] = []

    def start(local_address: str = "127.0.0.2", **options: Any) -> httpx.Client:
        options = {**TRUSTING, **options}
        proxy = create_proxy_app(options.pop("upstream", url), EdgeFilter(SITES), **options)
        served = serve_in_thread(proxy)
        proxy_url = served.__enter__()
        stack.append(served)
        transport = httpx.HTTPTransport(local_address=local_address)
        client = httpx.Client(base_url=proxy_url, transport=transport, timeout=10)
        stack.append(client)
        return client

    yield start
    for item in reversed(stack):
        item.__exit__(None, None, None)


def hit(site: str, path: str = "/a") -> bytes:
    """A track payload as Rybbit's tracker sends it."""
    return f'{{"type":"pageview","site_id":"{site}","pathname":"{path}"}}'.encode()


BROWSER = {"User-Agent": CHROME, "Content-Type": "application/json", "Origin": "https://a.test"}


# --- assets: headers, encodings, conditional requests, streaming --------------------------


def test_the_script_is_relayed_with_its_headers_byte_for_byte(
    serve: Any, upstream: Upstream
) -> None:
    """script.js: gzip body untouched, Content-Encoding, Cache-Control, ETag, Vary kept."""
    client = serve()
    with client.stream("GET", "/api/script.js", headers={"Accept-Encoding": "gzip"}) as answer:
        raw = b"".join(answer.iter_raw())
    assert answer.status_code == 200
    assert raw == SCRIPT_GZIP
    assert answer.headers["content-encoding"] == "gzip"
    assert answer.headers["cache-control"] == SCRIPT_CACHE
    assert answer.headers["etag"] == SCRIPT_ETAG
    assert answer.headers["vary"] == "Accept-Encoding"
    assert answer.headers["x-upstream"] == "rybbit"
    assert len(answer.headers.get_list("date")) == 1
    assert upstream.seen[0].header("accept-encoding") == ["gzip"]


def test_one_visitors_cookies_never_reach_another(serve: Any, upstream: Upstream) -> None:
    """The upstream's Set-Cookie goes to the visitor it answered, and is not kept by the
    proxy for the next visitor's requests."""
    first = serve()
    answer = first.get("/api/script.js")
    assert answer.headers["set-cookie"] == "visitor=first; Path=/"
    with httpx.Client(base_url=first.base_url) as second:
        second.get("/api/script.js")
    assert [seen.header("cookie") for seen in upstream.seen] == [[], []]


def test_a_conditional_request_passes_through_to_a_304(serve: Any, upstream: Upstream) -> None:
    """If-None-Match reaches the upstream; its 304 comes back with the ETag, no body."""
    client = serve()
    answer = client.get("/api/script.js", headers={"If-None-Match": SCRIPT_ETAG})
    assert (answer.status_code, answer.content) == (304, b"")
    assert answer.headers["etag"] == SCRIPT_ETAG
    assert answer.headers["cache-control"] == SCRIPT_CACHE
    assert upstream.seen[0].header("if-none-match") == [SCRIPT_ETAG]


def test_a_brotli_answer_is_never_decoded(serve: Any) -> None:
    """replay.js with Content-Encoding br: the same bytes and the same header."""
    client = serve()
    with client.stream("GET", "/api/replay.js") as answer:
        raw = b"".join(answer.iter_raw())
    assert (raw, answer.headers["content-encoding"]) == (REPLAY_BR, "br")


def test_the_tracking_config_is_relayed_with_its_query(serve: Any, upstream: Upstream) -> None:
    """GET /api/site/tracking-config/{siteId}: the answer as is, the query string kept."""
    client = serve()
    answer = client.get("/api/site/tracking-config/1?v=2", headers={"Origin": "https://a.test"})
    assert answer.json() == {"trackInitialPageView": True, "site": "1"}
    assert answer.headers["access-control-allow-origin"] == "https://a.test"
    assert (upstream.seen[0].path, upstream.seen[0].query) == ("/api/site/tracking-config/1", "v=2")


def test_answers_are_streamed_not_buffered(serve: Any, upstream: Upstream) -> None:
    """The first part of an answer reaches the client while the upstream still holds the rest."""
    client = serve()
    with client.stream("GET", "/api/metrics.js") as answer:
        parts = answer.iter_raw()
        first = next(parts)
        assert first == FIRST_PART  # the upstream has not sent its second part yet
        upstream.release.set()
        rest = b"".join(parts)
    assert rest == b"/* second part */\n"


def test_a_large_answer_arrives_whole(serve: Any) -> None:
    """4 MB streamed by the upstream (relay_all: off the ingest surface) arrive byte for byte."""
    client = serve(relay_all=True)
    answer = client.get("/api/big")
    assert len(answer.content) == BIG_SIZE
    assert answer.content[65536 * 3 : 65536 * 3 + 2] == b"\x03\x03"


def test_a_client_gone_mid_answer_closes_the_upstream_stream(
    serve: Any, upstream: Upstream
) -> None:
    """The client leaves after the first part: the upstream's stream is closed, not left open."""
    client = serve()
    with client.stream("GET", "/api/metrics.js") as answer:
        next(answer.iter_raw())
    client.close()
    assert upstream.stream_closed.wait(5)


# --- hits: filtered, forwarded with the visitor's address and user agent ------------------


@pytest.mark.parametrize("path", ["/api/track", "/api/identify"])
def test_tracked_hits_reach_the_upstream_byte_for_byte(
    serve: Any, upstream: Upstream, path: str
) -> None:
    """Body as sent; UA kept; X-Real-IP and X-Forwarded-For are the visitor's, whatever the
    client claimed; the client's own address headers are dropped."""
    client = serve()
    body = b'{"site_id":"1","user_id":"u1","traits":{"plan":"pro"}}'
    headers = {
        **BROWSER,
        "X-Forwarded-For": VISITOR,
        "X-Real-IP": "198.51.100.7",
        "CF-Connecting-IP": "198.51.100.8",
        "Cookie": "a=1",
    }
    answer = client.post(path, content=body, headers=headers)
    assert answer.json() == {"success": True}
    (seen,) = upstream.hits()
    assert (seen.path, seen.body) == (path, body)
    assert seen.header("x-real-ip") == [VISITOR]
    assert seen.header("x-forwarded-for") == [VISITOR]
    assert seen.header("cf-connecting-ip") == []
    assert seen.header("user-agent") == [CHROME]
    assert seen.header("cookie") == ["a=1"]
    assert seen.header("origin") == ["https://a.test"]


@pytest.mark.parametrize("path", ["/api/track", "/api/identify"])
def test_dropped_hits_reach_nothing(serve: Any, upstream: Upstream, path: str) -> None:
    """An excluded address and a bot are answered as Rybbit answers, readable cross-origin."""
    client = serve()
    excluded = client.post(
        path, content=hit("1"), headers={**BROWSER, "X-Forwarded-For": "203.0.113.9"}
    )
    bot = client.post(path, content=hit("1"), headers={**BROWSER, "User-Agent": "curl/8.0"})
    assert excluded.json() == {"success": True, "message": "Event not tracked - IP excluded"}
    assert excluded.headers["access-control-allow-origin"] == "https://a.test"
    assert (bot.status_code, bot.json()) == (200, {"success": True})
    assert upstream.seen == []


def replay(page_url: str, size: int = 0) -> bytes:
    """A session replay upload as Rybbit's recorder sends it."""
    events = [{"type": 3, "data": {"pad": "x" * size}, "timestamp": 1}]
    return json.dumps(
        {"userId": "u1", "events": events, "metadata": {"pageUrl": page_url}}
    ).encode()


def test_session_replays_are_filtered_on_the_path_site(serve: Any, upstream: Upstream) -> None:
    """The site from the path, the page from metadata.pageUrl: a tracked replay reaches the
    upstream byte for byte with the visitor's address; an excluded page or visitor reaches
    nothing and is answered as Rybbit answers replays."""
    client = serve()
    visitor = {**BROWSER, "X-Forwarded-For": VISITOR}
    tracked = replay("https://shop.test/cart", size=300_000)
    assert client.post("/api/session-replay/record/1", content=tracked, headers=visitor).json() == {
        "success": True
    }
    admin = client.post(
        "/api/session-replay/record/1", content=replay("https://shop.test/admin/x"), headers=visitor
    )
    excluded = client.post(
        "/api/session-replay/record/1",
        content=replay("https://shop.test/"),
        headers={**BROWSER, "X-Forwarded-For": "203.0.113.9"},
    )
    unknown = client.post("/api/session-replay/record/7", content=tracked, headers=visitor)
    assert admin.json() == {
        "success": True,
        "message": "Session replay not recorded - path excluded",
    }
    assert excluded.json() == {
        "success": True,
        "message": "Session replay not recorded - IP excluded",
    }
    assert admin.headers["access-control-allow-origin"] == "https://a.test"
    assert (unknown.status_code, unknown.json()["error"]) == (404, "Site not found")
    (seen,) = upstream.hits()
    assert (seen.path, seen.body) == ("/api/session-replay/record/1", tracked)
    assert seen.header("x-real-ip") == seen.header("x-forwarded-for") == [VISITOR]


def test_replay_bodies_have_their_own_limit(serve: Any, upstream: Upstream) -> None:
    """max_replay_body_bytes bounds replays; max_body_bytes does not."""
    client = serve(max_body_bytes=100, max_replay_body_bytes=2000)
    visitor = {**BROWSER, "X-Forwarded-For": VISITOR}
    small = client.post("/api/session-replay/record/1", content=replay("/a", 1000), headers=visitor)
    large = client.post("/api/session-replay/record/1", content=replay("/a", 3000), headers=visitor)
    assert (small.status_code, large.status_code) == (200, 413)
    assert len(upstream.hits()) == 1


def test_the_upstream_gets_the_user_agent_the_filter_judged(serve: Any, upstream: Upstream) -> None:
    """Two User-Agent headers are judged as none; the upstream is sent none, not the last."""
    client = serve()
    headers = [("User-Agent", "curl/8.0"), ("User-Agent", CHROME), ("X-Forwarded-For", VISITOR)]
    client.post("/api/track", content=hit("2"), headers=headers).raise_for_status()
    assert upstream.hits()[0].header("user-agent") == [""]


def test_client_address_headers_are_configurable(serve: Any, upstream: Upstream) -> None:
    """Only the headers named are set, each to the visitor's address; () sends none."""
    client = serve(client_address_headers=["CF-Connecting-IP"])
    client.post("/api/track", content=hit("1"), headers={**BROWSER, "X-Forwarded-For": VISITOR})
    client.get("/api/script.js", headers={"X-Forwarded-For": VISITOR, "X-Real-IP": "1.2.3.4"})
    for seen in upstream.seen:
        assert seen.header("cf-connecting-ip") == [VISITOR]
        assert seen.header("x-real-ip") == seen.header("x-forwarded-for") == []
    upstream.seen.clear()
    serve(client_address_headers=()).get("/api/script.js", headers={"X-Real-IP": "1.2.3.4"})
    assert upstream.seen[0].header("x-real-ip") == []


def test_assets_carry_the_client_address_too(serve: Any, upstream: Upstream) -> None:
    """An untrusted peer's forwarded header is not believed: its own address goes on."""
    client = serve(local_address="127.0.0.3")
    client.get("/api/script.js", headers={"X-Forwarded-For": VISITOR})
    assert upstream.seen[0].header("x-real-ip") == ["127.0.0.3"]
    assert upstream.seen[0].header("x-forwarded-for") == ["127.0.0.3"]


def test_annotate_mode_still_forwards_only_tracked_hits(serve: Any, upstream: Upstream) -> None:
    """mode="annotate" passes drops to the relay; they stop there, answered as Rybbit."""
    client = serve(local_address="127.0.0.1", mode="annotate", trusted_proxies=[])
    excluded = client.post("/api/track", content=hit("2"), headers=BROWSER)
    invalid = client.post("/api/track", content=b"{", headers=BROWSER)
    assert excluded.json()["message"] == "Event not tracked - IP excluded"
    assert invalid.status_code == 400
    assert upstream.seen == []


# --- CORS, catch-all, hop-by-hop ----------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/api/track", "/api/identify", "/api/session-replay/record/1", "/api/site/tracking-config/1"],
)
def test_preflights_are_answered_by_the_proxy(serve: Any, upstream: Upstream, path: str) -> None:
    """OPTIONS with Access-Control-Request-Method: 204 with Rybbit's public CORS, no upstream."""
    client = serve()
    answer = client.options(
        path,
        headers={
            "Origin": "https://a.test",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert answer.status_code == 204
    assert answer.headers["access-control-allow-origin"] == "https://a.test"
    assert "POST" in answer.headers["access-control-allow-methods"].split(",")
    assert "content-type" in answer.headers["access-control-allow-headers"].lower().split(",")
    assert answer.headers["vary"] == "Origin"
    assert upstream.seen == []


def test_paths_off_the_surface_are_404_without_the_upstream(serve: Any, upstream: Upstream) -> None:
    """By default nothing off Rybbit's ingest surface is relayed: the API, the dashboard."""
    client = serve()
    for method, path in [
        ("GET", "/api/sites/1"),
        ("POST", "/api/other"),
        ("GET", "/"),
        ("GET", "/api/site/tracking-config/%2E%2E"),
        ("GET", "/api/script.js/x"),
    ]:
        answer = client.request(method, path)
        assert (answer.status_code, answer.json()) == (
            404,
            {"success": False, "error": "Not found"},
        )
    assert upstream.seen == []


def test_relay_all_relays_the_rest_unfiltered(serve: Any, upstream: Upstream) -> None:
    """relay_all=True: other paths go to the upstream, any method, body and all."""
    client = serve(relay_all=True)
    answer = client.post("/api/other?x=1", content=b"payload", headers={"Origin": "https://a.test"})
    assert answer.json() == {"success": True}
    (seen,) = upstream.seen
    assert (seen.path, seen.query, seen.body) == ("/api/other", "x=1", b"payload")


def test_hop_by_hop_headers_stop_at_the_proxy(serve: Any, upstream: Upstream) -> None:
    """Connection and what it names, Keep-Alive, TE: dropped both ways; Host is the upstream's."""
    client = serve()
    answer = client.get(
        "/api/site/tracking-config/hop",
        headers={
            "Connection": "keep-alive, x-client-secret",
            "X-Client-Secret": "1",
            "TE": "trailers",
        },
    )
    assert "x-upstream-secret" not in answer.headers
    (seen,) = upstream.seen
    assert seen.header("x-client-secret") == seen.header("te") == []
    assert seen.header("x-forwarded-host") == [client.base_url.netloc.decode()]
    assert seen.header("host") != seen.header("x-forwarded-host")


# --- bodies -------------------------------------------------------------------------------


def test_a_relayed_body_is_streamed_on(serve: Any, upstream: Upstream) -> None:
    """A chunked body (no length) goes on whole; a body past 10 MB, declared or counted,
    is a 413 and reaches nothing."""
    client = serve(relay_all=True)

    def parts() -> Iterator[bytes]:
        yield b"first,"
        yield b"second"

    client.post("/api/other", content=parts())
    assert upstream.seen[0].body == b"first,second"
    upstream.seen.clear()
    declared = client.post("/api/other", content=b"x" * (10 * 1024 * 1024 + 1))

    def megabytes() -> Iterator[bytes]:
        for _ in range(11):
            yield b"x" * (1024 * 1024)

    counted = client.post("/api/other", content=megabytes())
    assert (declared.status_code, counted.status_code) == (413, 413)
    assert upstream.seen == []


def test_hit_bodies_past_the_limit_are_413(serve: Any, upstream: Upstream) -> None:
    """max_body_bytes bounds track and identify bodies."""
    client = serve(max_body_bytes=100)
    body = b'{"site_id":"1","pathname":"/' + b"a" * 200 + b'"}'
    answer = client.post("/api/identify", content=body, headers=BROWSER)
    assert answer.status_code == 413
    assert upstream.seen == []


# --- failures -----------------------------------------------------------------------------


def free_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_an_upstream_that_is_down_is_a_502(serve: Any) -> None:
    """Nothing listening: 502 with a JSON error, for assets and hits alike."""
    client = serve(upstream=f"http://127.0.0.1:{free_port()}")
    for answer in (
        client.get("/api/script.js"),
        client.post(
            "/api/track", content=hit("1"), headers={**BROWSER, "X-Forwarded-For": VISITOR}
        ),
    ):
        assert (answer.status_code, answer.json()) == (
            502,
            {"success": False, "error": "Upstream unavailable"},
        )


def test_an_upstream_that_does_not_answer_in_time_is_a_504(serve: Any) -> None:
    """An upstream slower than upstream_timeout: 504, well before it would have answered."""
    client = serve(upstream_timeout=0.2)
    started = time.monotonic()
    answer = client.get("/api/site/tracking-config/slow")
    assert (answer.status_code, answer.json()) == (
        504,
        {"success": False, "error": "Upstream timed out"},
    )
    assert time.monotonic() - started < 1.5


def test_an_upstream_that_hangs_up_is_a_502() -> None:
    """An upstream that accepts and closes without answering: 502, not a 500 or a hang."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def hang_up() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            connection.recv(65536)
            connection.close()

    threading.Thread(target=hang_up, daemon=True).start()
    port = listener.getsockname()[1]
    proxy = create_proxy_app(f"http://127.0.0.1:{port}", EdgeFilter(SITES))
    try:
        with serve_in_thread(proxy) as url:
            answer = httpx.get(f"{url}/api/script.js")
    finally:
        listener.close()
    assert answer.status_code == 502


@pytest.mark.parametrize(
    "options",
    [
        {"client_address_headers": "x-real-ip"},
        {"client_address_headers": ["bad header"]},
        {"client_address_headers": ["connection"]},
        {"upstream_timeout": 0},
        {"upstream_timeout": True},
        {"upstream_timeout": float("inf")},
        {"upstream_timeout": float("nan")},
        {"upstream": "ftp://up"},
    ],
)
def test_bad_options_are_config_errors(options: dict[str, Any]) -> None:
    """Each bad option is a ConfigError naming it, at construction."""
    upstream = options.pop("upstream", "http://up")
    with pytest.raises(ConfigError):
        create_proxy_app(upstream, EdgeFilter(SITES), **options)


def test_an_upstream_that_fails_mid_answer_ends_the_connection() -> None:
    """Headers sent, then the upstream hangs up: the client sees a broken answer, never a
    short one that looks whole."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def answer_half() -> None:
        try:
            connection, _ = listener.accept()
        except OSError:
            return
        connection.recv(65536)
        connection.sendall(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\n" + b"x" * 10
        )
        connection.close()

    threading.Thread(target=answer_half, daemon=True).start()
    proxy = create_proxy_app(f"http://127.0.0.1:{listener.getsockname()[1]}", EdgeFilter(SITES))
    try:
        with serve_in_thread(proxy) as url, pytest.raises(httpx.RemoteProtocolError):
            httpx.get(f"{url}/api/script.js")
    finally:
        listener.close()


def test_head_and_a_root_path_and_an_upstream_path(upstream_server: tuple[Upstream, str]) -> None:
    """HEAD relays headers without a body; served under --root-path, the prefix is not
    sent on; an upstream URL with a path keeps it in front."""
    fake, url = upstream_server
    fake.seen.clear()
    proxy = create_proxy_app(url + "/", EdgeFilter(SITES))
    with serve_in_thread(proxy, root_path="/edge") as proxy_url, httpx.Client() as client:
        head = client.head(f"{proxy_url}/api/script.js")  # uvicorn puts /edge in front
    assert (head.status_code, head.content, head.headers["etag"]) == (200, b"", SCRIPT_ETAG)
    assert [(seen.method, seen.path) for seen in fake.seen] == [("HEAD", "/api/script.js")]
    prefixed = create_proxy_app(url + "/rybbit", EdgeFilter(SITES))
    with serve_in_thread(prefixed) as proxy_url:
        answer = httpx.get(f"{proxy_url}/api/script.js")
    assert (answer.status_code, answer.text) == (404, "Not Found")  # the upstream's own 404


def test_a_client_gone_mid_body_aborts_the_upstream_request(serve: Any, upstream: Upstream) -> None:
    """A body cut short by the client: the upstream never gets a whole request; the proxy
    goes on answering."""
    client = serve(relay_all=True)
    host, port = client.base_url.host, client.base_url.port
    with socket.create_connection((host, port)) as raw:
        raw.sendall(
            b"POST /api/other HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"a\r\n" + b"a" * 10 + b"\r\n"  # one chunk, then gone: a cut body, not an end
        )
        time.sleep(0.2)
    time.sleep(0.2)
    assert [seen for seen in upstream.seen if seen.path == "/api/other"] == []
    assert client.get("/api/script.js").status_code == 200
