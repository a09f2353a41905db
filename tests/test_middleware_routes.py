"""The middleware on every Rybbit ingest path: track, identify, session replay."""

from __future__ import annotations

import asyncio
import gzip
import json
import zlib
from typing import Any

import pytest

from edgefilter import ConfigError, EdgeFilter, SiteConfig
from edgefilter.middleware import RYBBIT_ROUTES, EdgeFilterMiddleware, HitRoute

from .conftest import CHROME
from .test_middleware import RecordingApp, call

SITES = {
    "1": SiteConfig(
        site_id=1,
        id="a1b2c3d4e5f6",
        block_bots=True,
        excluded_ips=("203.0.113.0/24",),
        excluded_paths=("/admin*",),
        excluded_hostnames=("*.internal.test",),
    )
}
BROWSER = {"User-Agent": CHROME}
REPLAY = "/api/session-replay/record/1"


def replay_body(page_url: object = "https://shop.test/cart", size: int = 0) -> bytes:
    """A session replay upload as Rybbit's recorder sends it."""
    events = [{"type": 3, "data": {"pad": "x" * size}, "timestamp": 1}]
    return json.dumps(
        {"userId": "u1", "events": events, "metadata": {"pageUrl": page_url}}
    ).encode()


def made(**options: Any) -> tuple[EdgeFilterMiddleware, RecordingApp]:
    """A middleware over a recording app, with the given options."""
    app = RecordingApp()
    return EdgeFilterMiddleware(app, edge_filter=EdgeFilter(SITES), **options), app


def run(asgi: Any, body: bytes, **options: Any) -> tuple[int | None, Any]:
    """One call; its status and JSON answer (None when the app answered)."""
    status, answer = asyncio.run(call(asgi, body, peer="198.51.100.1", **options))
    return status, None if answer == b"app" else json.loads(answer)


def test_the_default_routes_are_rybbits() -> None:
    """Without paths or routes, track, identify and session replay are filtered."""
    asgi, _ = made()
    assert asgi.routes.routes == RYBBIT_ROUTES
    assert asgi.paths == {route.path for route in RYBBIT_ROUTES}


@pytest.mark.parametrize("path", ["/api/track", "/api/identify"])
def test_identify_is_filtered_like_track(path: str) -> None:
    """identify's site_id is in its body, like track's: an excluded visitor is dropped."""
    asgi, app = made()
    body = b'{"site_id":"1","user_id":"u1"}'
    assert run(asgi, body, path=path, headers={**BROWSER, "User-Agent": "curl/8.0"}) == (
        200,
        {"success": True},
    )
    assert run(asgi, body, path=path, headers=BROWSER) == (200, None)
    assert [call["body"] for call in app.calls] == [body]


@pytest.mark.parametrize(
    ("path", "page_url", "headers", "expected"),
    [
        # the site from the path: tracked reaches the app
        (REPLAY, "https://shop.test/cart", BROWSER, (200, None)),
        ("/api/session-replay/record/a1b2c3d4e5f6", "https://shop.test/", BROWSER, (200, None)),
        # the page from metadata.pageUrl: path and hostname rules apply
        (REPLAY, "https://shop.test/admin/x", BROWSER, "path"),
        (REPLAY, "https://a.internal.test/cart", BROWSER, "hostname"),
        (REPLAY, "/admin/relative?x", BROWSER, "path"),
        # no page: not excluded by page rules
        (REPLAY, None, BROWSER, (200, None)),
        (REPLAY, 42, BROWSER, (200, None)),
        # the visitor's rules
        (
            REPLAY,
            "https://shop.test/",
            {**BROWSER, "User-Agent": "curl/8.0"},
            (200, {"success": True}),
        ),
        # a segment that is no site id, a site that does not exist
        (
            "/api/session-replay/record/zz",
            "https://shop.test/",
            BROWSER,
            (404, {"success": False, "error": "Site not found"}),
        ),
        (
            "/api/session-replay/record/2",
            "https://shop.test/",
            BROWSER,
            (404, {"success": False, "error": "Site not found"}),
        ),
    ],
)
def test_session_replays_are_filtered_by_the_path_site(
    path: str, page_url: object, headers: dict[str, str], expected: Any
) -> None:
    """Session replay: the site from the path, the page from the upload, Rybbit's answers."""
    asgi, app = made()
    body = replay_body(page_url)
    if isinstance(expected, str):
        expected = (
            200,
            {"success": True, "message": f"Session replay not recorded - {expected} excluded"},
        )
    assert run(asgi, body, path=path, headers=headers) == expected
    assert [call["body"] for call in app.calls] == ([body] if expected == (200, None) else [])


def test_a_replay_from_an_excluded_address_is_dropped() -> None:
    """IP rules apply to replays too, with Rybbit's replay message."""
    asgi, app = made(trusted_proxies=["198.51.100.1"])
    headers = {**BROWSER, "X-Forwarded-For": "203.0.113.5"}
    assert run(asgi, replay_body(), path=REPLAY, headers=headers) == (
        200,
        {"success": True, "message": "Session replay not recorded - IP excluded"},
    )
    assert app.calls == []


def test_an_unreadable_replay_is_decided_on_its_path_site() -> None:
    """A broken gzip or a non-JSON upload still has its site in the path: decided without
    a page."""
    asgi, app = made()
    assert run(asgi, b"\x1f\x8b not json", path=REPLAY, headers=BROWSER) == (200, None)
    gzipped = {**BROWSER, "Content-Encoding": "gzip"}
    assert run(asgi, b"\x1f\x8b", path=REPLAY, headers=gzipped) == (200, None)
    assert run(asgi, b"x", path=REPLAY, headers={"User-Agent": "curl/8.0"}) == (
        200,
        {"success": True},
    )
    assert len(app.calls) == 2


def _encoded(body: bytes, encoding: str) -> bytes:
    """``body`` as a client sends it with that ``Content-Encoding``."""
    return zlib.compress(body) if encoding == "deflate" else gzip.compress(body)


@pytest.mark.parametrize("encoding", ["gzip", "x-gzip", "deflate", " GZIP "])
@pytest.mark.parametrize(
    ("page_url", "expected"),
    [
        ("https://shop.test/admin/users", "path"),
        ("https://db.internal.test/", "hostname"),
        ("https://shop.test/cart", None),
    ],
)
def test_a_compressed_replay_is_decided_on_its_page(
    encoding: str, page_url: str, expected: str | None
) -> None:
    """A replay sent gzip or deflate encoded is read for its page: compressing an upload
    does not get an excluded page past the path and hostname rules. What passes reaches the
    app byte for byte, still encoded."""
    asgi, app = made()
    body = _encoded(replay_body(page_url), encoding.strip().lower())
    headers = {**BROWSER, "Content-Encoding": encoding}
    answer = run(asgi, body, path=REPLAY, headers=headers)
    if expected is None:
        assert answer == (200, None)
        assert [call["body"] for call in app.calls] == [body]
    else:
        message = f"Session replay not recorded - {expected} excluded"
        assert answer == (200, {"success": True, "message": message})
        assert app.calls == []


def test_a_replay_that_decodes_past_its_limit_is_refused() -> None:
    """An upload of a few KiB that inflates past the route's limit (10 MiB) is refused as an
    invalid payload, not decided without its page: the origin may inflate it whole."""
    asgi, app = made()
    bomb = gzip.compress(replay_body("https://shop.test/admin", size=11 * 1024 * 1024))
    assert len(bomb) < 64 * 1024
    headers = {**BROWSER, "Content-Encoding": "gzip"}
    assert run(asgi, bomb, path=REPLAY, headers=headers) == (
        400,
        {"success": False, "error": "Invalid payload"},
    )
    assert app.calls == []


def test_each_route_has_its_own_body_limit() -> None:
    """Replays may be 10 MiB; track and identify keep max_body_bytes (64 KiB)."""
    asgi, app = made()
    large = replay_body(size=1024 * 1024)
    assert run(asgi, large, path=REPLAY, headers=BROWSER) == (200, None)
    big_track = b'{"site_id":"1","pathname":"/' + b"a" * 70_000 + b'"}'
    assert run(asgi, big_track, headers=BROWSER)[0] == 413
    too_large = replay_body(size=10 * 1024 * 1024)
    assert run(asgi, too_large, path=REPLAY, headers=BROWSER)[0] == 413
    assert len(app.calls) == 1


def test_paths_stays_valid_and_takes_templates() -> None:
    """paths= still names the filtered paths (the others pass through unread)."""
    asgi, app = made(paths=["/collect", "/replay/{site_id}"])
    assert run(asgi, b'{"site_id":"1"}', path="/api/track", headers=BROWSER) == (200, None)
    assert run(asgi, b"{", path="/collect", headers=BROWSER)[0] == 400
    assert run(asgi, replay_body(), path="/replay/9", headers=BROWSER)[0] == 404
    assert len(app.calls) == 1


def test_routes_take_limits() -> None:
    """routes= with HitRoutes: each its limit."""
    asgi, _ = made(routes=[HitRoute("/t", 50), HitRoute("/r/{site_id}")], max_body_bytes=100)
    body = b'{"site_id":"1","x":"' + b"a" * 60 + b'"}'
    assert run(asgi, body, path="/t", headers=BROWSER)[0] == 413
    assert run(asgi, body, path="/r/1", headers=BROWSER)[0] == 200


@pytest.mark.parametrize(
    "options",
    [
        {"paths": ["/a"], "routes": [HitRoute("/b")]},
        {"routes": "/api/track"},
        {"routes": []},
        {"paths": ["/a/{site_id}/b"]},
    ],
)
def test_bad_routes_are_config_errors(options: dict[str, Any]) -> None:
    """paths and routes together, a str, none, a bad template: ConfigError."""
    with pytest.raises(ConfigError):
        made(**options)


@pytest.mark.parametrize("segment", ["1", "01", "A1B2C3D4E5F6"])
def test_the_path_site_is_read_canonically(segment: str) -> None:
    """``01`` is site 1, upper-case hex its id: the decision names the canonical id."""
    asgi, app = made()
    path = f"/api/session-replay/record/{segment}"
    assert run(asgi, replay_body(), path=path, headers=BROWSER) == (200, None)
    assert app.calls[0]["scope"]["state"]["edgefilter"].site == segment.lower().lstrip("0")


def test_a_replay_gzipped_in_several_members_is_read_whole() -> None:
    """A gzip body may be several members, which every gzip reader (Node's gunzip, gzip -d,
    Python's gzip) decodes as one text: the page of an upload cut across two members is read
    (the first alone is no JSON, so it was decided without its page: an excluded page past
    the rules). Too many members to read is refused, as a bomb is."""
    asgi, app = made()
    body = replay_body("https://shop.test/admin/users")
    headers = {**BROWSER, "Content-Encoding": "gzip"}
    split = gzip.compress(body[:20]) + gzip.compress(body[20:])
    message = "Session replay not recorded - path excluded"
    assert run(asgi, split, path=REPLAY, headers=headers) == (
        200,
        {"success": True, "message": message},
    )
    kept = replay_body("https://shop.test/cart")
    in_two = gzip.compress(kept[:20]) + gzip.compress(kept[20:]) + b"\0trailing"
    assert run(asgi, in_two, path=REPLAY, headers=headers) == (200, None)
    many = b"".join(gzip.compress(body[index : index + 1]) for index in range(len(body)))
    assert run(asgi, many, path=REPLAY, headers=headers) == (
        400,
        {"success": False, "error": "Invalid payload"},
    )
    assert [call["body"] for call in app.calls] == [in_two]


@pytest.mark.parametrize("encoding", ["br", "gzip, gzip", "gzip", "deflate", "", "zstd"])
def test_a_plain_replay_under_an_encoding_it_is_not_is_read_as_is(encoding: str) -> None:
    """A plain JSON upload labelled with an encoding the filter does not decode, or one it
    is not (Fastify, Rybbit's server, parses a body as is whatever its Content-Encoding
    says), is read as is: it was decided without its page, so relabelling an upload got an
    excluded page past the rules."""
    asgi, app = made()
    headers = {**BROWSER, "Content-Encoding": encoding}
    body = replay_body("https://shop.test/admin/users")
    assert run(asgi, body, path=REPLAY, headers=headers) == (
        200,
        {"success": True, "message": "Session replay not recorded - path excluded"},
    )
    kept = replay_body("https://shop.test/cart")
    assert run(asgi, kept, path=REPLAY, headers=headers) == (200, None)
    assert [call["body"] for call in app.calls] == [kept]
