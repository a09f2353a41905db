"""EdgeFilterMiddleware: every reason, body handling, client addresses, modes, apps."""

from __future__ import annotations

import asyncio
import gzip
import itertools
import json
import logging
import random
import re
import string
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from edgefilter import (
    ConfigError,
    DecisionCounters,
    EdgeFilter,
    Reason,
    SiteConfig,
    StaticRules,
)
from edgefilter._counters import UNKNOWN_SITE_LABEL, UNRESOLVED_REASONS
from edgefilter._serving import serve_in_thread
from edgefilter._siteids import canonical_site_id
from edgefilter.middleware import (
    INVALID_PAYLOAD,
    EdgeDecision,
    EdgeFilterMiddleware,
    read_payload,
)

from .conftest import CHROME, CITY_DB, GOOGLEBOT

SITE = SiteConfig(
    site_id=1,
    id="a1b2c3d4e5f6",
    block_bots=True,
    excluded_ips=("203.0.113.0/24", "2001:db8::/32", "127.0.0.3"),
    excluded_countries=("CN",),
)
US = "216.160.83.56"
CN = "175.16.199.10"
PROXY = "127.0.0.2"


class RecordingApp:
    """The track endpoint stand-in: records what reached it, answers 200."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        body = b""
        if scope["type"] == "http":
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
        self.calls.append({"scope": scope, "body": body, "receive": receive})
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"app"})


@pytest.fixture(scope="module")
def edge_filter() -> EdgeFilter:
    """A filter over SITE with the test GeoIP database."""
    return EdgeFilter({"1": SITE}, geoip=str(CITY_DB))


def middleware(
    edge_filter: EdgeFilter, **options: Any
) -> tuple[EdgeFilterMiddleware, RecordingApp]:
    """A middleware trusting PROXY and 10.9.0.0/16, over a recording app."""
    app = RecordingApp()
    options.setdefault("trusted_proxies", [PROXY, "10.9.0.0/16"])
    options.setdefault("edge_filter", edge_filter)
    return EdgeFilterMiddleware(app, **options), app


async def call(
    asgi: Any,
    body: bytes | list[bytes] = b"",
    *,
    peer: str = PROXY,
    headers: dict[str, str] | list[tuple[str, str]] | None = None,
    method: str = "POST",
    path: str = "/api/track",
    root_path: str = "",
    complete: bool = True,
) -> tuple[int | None, bytes]:
    """Call an ASGI app with the body in the given chunks; (status or None, body).

    ``complete=False`` leaves ``more_body`` on the last chunk: the client then disconnects.
    """
    chunks = body if isinstance(body, list) else [body]
    messages = [
        {"type": "http.request", "body": chunk, "more_body": index < len(chunks) - 1}
        for index, chunk in enumerate(chunks)
    ]
    if not complete:
        messages[-1]["more_body"] = True
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    pairs = headers.items() if isinstance(headers, dict) else headers or []
    raw_headers = [(k.lower().encode(), v.encode("latin-1")) for k, v in pairs]
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "root_path": root_path,
        "headers": raw_headers,
        "client": (peer, 50000),
    }
    await asgi(scope, receive, send)
    status = next(
        (message["status"] for message in sent if message["type"] == "http.response.start"), None
    )
    return status, b"".join(
        message.get("body", b"") for message in sent if message["type"] == "http.response.body"
    )


def run(asgi: Any, body: bytes | list[bytes] = b"", **options: Any) -> tuple[int | None, bytes]:
    """``call`` in a fresh event loop."""
    return asyncio.run(call(asgi, body, **options))


def hit(site: object = "1", **fields: Any) -> bytes:
    """A Rybbit pageview payload."""
    return json.dumps({"type": "pageview", "site_id": site, "pathname": "/", **fields}).encode()


def xff(address: str, ua: str = CHROME) -> dict[str, str]:
    """Headers of a hit forwarded by the trusted proxy."""
    return {"X-Forwarded-For": address, "User-Agent": ua}


@pytest.mark.parametrize(
    ("address", "ua", "site", "status", "answer"),
    [
        (US, CHROME, "1", 200, b"app"),
        (
            "203.0.113.5",
            CHROME,
            "1",
            200,
            b'{"success":true,"message":"Event not tracked - IP excluded"}',
        ),
        (
            CN,
            GOOGLEBOT,
            "1",
            200,
            b'{"success":true,"message":"Event not tracked - country excluded"}',
        ),
        (
            "175.16.199.200",
            CHROME,
            "1",
            200,
            b'{"success":true,"message":"Event not tracked - country excluded"}',
        ),
        (US, GOOGLEBOT, "1", 200, b'{"success":true}'),
        (US, "", "1", 200, b'{"success":true}'),
        (
            "unknown",
            CHROME,
            "1",
            200,
            b'{"success":true,"message":"Event not tracked - IP excluded"}',
        ),
        (US, CHROME, "999", 404, b'{"success":false,"error":"Site not found"}'),
        (US, CHROME, 1, 200, b"app"),
        (US, CHROME, "a1b2c3d4e5f6", 200, b"app"),
    ],
)
def test_every_reason(
    edge_filter: EdgeFilter, address: str, ua: str, site: object, status: int, answer: bytes
) -> None:
    """Dropped hits get Rybbit's answer and never reach the app; tracked ones do."""
    asgi, app = middleware(edge_filter)
    assert run(asgi, hit(site), headers=xff(address, ua)) == (status, answer)
    assert len(app.calls) == (answer == b"app")


def test_rules_unavailable_fail_closed() -> None:
    """With a source that has no rules and fail-closed, the hit is dropped."""

    class Down:
        rules_for = staticmethod(lambda site: None)

        def resolve(self, site: str) -> Reason:
            return Reason.rules_unavailable

    asgi, app = middleware(EdgeFilter(Down(), track_when_unavailable=False))
    status, body = run(asgi, hit(), headers=xff(US))
    assert (status, json.loads(body)["message"]) == (200, "Event not tracked - rules unavailable")
    assert app.calls == []


def test_tracked_hit_reaches_the_app_byte_for_byte(edge_filter: EdgeFilter) -> None:
    """A body in many chunks arrives whole, the same bytes; headers untouched."""
    body = hit(hostname="example.com", properties='{"a": "é"}') + b"   "
    chunks = [body[i : i + 7] for i in range(0, len(body), 7)]
    asgi, app = middleware(edge_filter)
    headers = {**xff(US), "X-Custom": "kept"}
    assert run(asgi, chunks, headers=headers) == (200, b"app")
    assert app.calls[0]["body"] == body
    assert (b"x-custom", b"kept") in app.calls[0]["scope"]["headers"]
    decision = app.calls[0]["scope"]["state"]["edgefilter"]
    assert decision == EdgeDecision(decision.decision, "1", US, CHROME)
    assert decision.decision.reason is Reason.tracked


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        # safe methods pass on filtered paths
        ("GET", "/api/track", b""),
        ("HEAD", "/api/track", b""),
        ("OPTIONS", "/api/track", b""),
        # other paths pass, whatever the method
        ("POST", "/api/other", hit()),
        ("POST", "/api/trackx", hit()),
        ("POST", "/api", hit()),
    ],
)
def test_other_requests_pass_straight_through(
    edge_filter: EdgeFilter, method: str, path: str, body: bytes
) -> None:
    """Other methods and paths reach the app with the original, unread receive."""
    asgi, app = middleware(edge_filter)
    assert run(asgi, body, headers=xff("203.0.113.5"), method=method, path=path) == (200, b"app")
    assert app.calls[0]["body"] == body
    assert "state" not in app.calls[0]["scope"]


EXCLUDED_ANSWER = (200, b'{"success":true,"message":"Event not tracked - IP excluded"}')
INVALID_ANSWER = (400, b'{"success":false,"error":"Invalid payload"}')
UNKNOWN_ANSWER = (404, b'{"success":false,"error":"Site not found"}')


@pytest.mark.parametrize(
    ("method", "path", "root_path"),
    [
        # methods other than GET, HEAD, OPTIONS are hits, in any case
        ("POST", "/api/track", ""),
        ("post", "/api/track", ""),
        ("PUT", "/api/track", ""),
        ("PATCH", "/api/track", ""),
        ("DELETE", "/api/track", ""),
        ("get", "/api/track", ""),
        # the path as the loosest router reads it
        ("POST", "/api/track/", ""),
        ("POST", "//api//track", ""),
        ("POST", "/API/Track", ""),
        ("POST", "/api/./track", ""),
        ("POST", "/api/x/../track", ""),
        ("POST", "/api/track;jsessionid=1", ""),
        # under a root_path (uvicorn --root-path, a Mount), as Starlette routes it
        ("POST", "/analytics/api/track", "/analytics"),
        ("POST", "/analytics/api/track/", "/analytics"),
        ("POST", "/api/track", "/analytics"),
        ("POST", "/a/b/api/track", "/a/b"),
    ],
)
def test_every_spelling_of_a_track_request_is_filtered(
    edge_filter: EdgeFilter, method: str, path: str, root_path: str
) -> None:
    """Any method but GET/HEAD/OPTIONS on any spelling of a track path gets a decision."""
    asgi, app = middleware(edge_filter)
    answer = run(
        asgi, hit(), headers=xff("203.0.113.5"), method=method, path=path, root_path=root_path
    )
    assert answer == EXCLUDED_ANSWER
    assert app.calls == []


def test_a_configured_full_path_matches_under_its_root_path(edge_filter: EdgeFilter) -> None:
    """paths naming the full URL path still match when a root_path is in front."""
    asgi, app = middleware(edge_filter, paths=["/analytics/api/track"])
    answer = run(
        asgi, hit(), headers=xff("203.0.113.5"), path="/analytics/api/track", root_path="/analytics"
    )
    assert answer == EXCLUDED_ANSWER
    assert app.calls == []


def test_a_mounted_starlette_app_is_filtered(edge_filter: EdgeFilter) -> None:
    """The middleware inside a Starlette app mounted at /analytics filters its hits."""
    inner = Starlette(
        routes=[Route("/api/track", track, methods=["POST"])],
        middleware=[
            Middleware(EdgeFilterMiddleware, edge_filter=edge_filter, trusted_proxies=[PROXY])
        ],
    )
    outer = Starlette(routes=[Mount("/analytics", app=inner)])
    transport = httpx.ASGITransport(app=outer, client=(PROXY, 50000))

    async def post_both() -> tuple[httpx.Response, httpx.Response]:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            path = "/analytics/api/track"
            return (
                await client.post(path, content=hit(), headers=xff("203.0.113.5")),
                await client.post(path, content=hit(), headers=xff(US)),
            )

    dropped, tracked = asyncio.run(post_both())
    assert dropped.json()["message"] == "Event not tracked - IP excluded"
    assert tracked.json() == {"success": True, "received": len(hit())}


def test_non_http_scopes_pass_through(edge_filter: EdgeFilter) -> None:
    """Lifespan and websocket scopes go to the app untouched."""
    asgi, app = middleware(edge_filter)
    for kind in ("lifespan", "websocket"):
        receive, send = object(), object()
        asyncio.run(asgi({"type": kind, "path": "/api/track"}, receive, send))
        assert app.calls[-1]["receive"] is receive


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        # not JSON, or not an object
        (b"{not json", {}),
        (b"", {}),
        (b"[]", {}),
        (b'"1"', {}),
        (b"\xff\xfe", {}),
        (hit() + b" {}", {}),
        # no usable site_id
        (b'{"type": "pageview"}', {}),
        (b'{"site_id": null}', {}),
        (b'{"site_id": true}', {}),
        (b'{"site_id": ["1"]}', {}),
        (b'{"site_id": {"id": "1"}}', {}),
        # deeper than any parser here reads
        (b'{"site_id": "1", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}", {}),
        # digits past the interpreter's int limit
        (b'{"site_id": "1", "x": ' + b"9" * 5000 + b"}", {}),
        # a compressed body the filter does not decode
        (gzip.compress(hit()), {"Content-Encoding": "gzip"}),
        (hit(), {"Content-Encoding": "br"}),
        (hit(), {"Content-Encoding": "identity, gzip"}),
    ],
)
def test_unreadable_payloads_are_refused(
    edge_filter: EdgeFilter, body: bytes, headers: dict[str, str]
) -> None:
    """What the filter cannot read never reaches the app: 400 as Rybbit answers it."""
    asgi, app = middleware(edge_filter)
    assert run(asgi, body, headers={**xff(US), **headers}) == INVALID_ANSWER
    assert app.calls == []
    assert asgi.counters.snapshot() == {("", Reason.invalid_payload): 1}


def test_annotate_mode_passes_unreadable_payloads_with_their_decision(
    edge_filter: EdgeFilter,
) -> None:
    """In annotate mode the app gets the refused body, marked invalid_payload."""
    asgi, app = middleware(edge_filter, mode="annotate")
    run(asgi, b"{not json", headers=xff(US))
    decision = app.calls[0]["scope"]["state"]["edgefilter"]
    assert decision == EdgeDecision(INVALID_PAYLOAD, "", US, CHROME)


def excluded_payload(**fields: Any) -> str:
    """A pageview of site 1, as JSON text with extra raw fields appended."""
    extra = "".join(f', "{name}": {value}' for name, value in fields.items())
    return '{"type": "pageview", "site_id": "1"' + extra + "}"


@pytest.mark.parametrize(
    "body",
    [
        # a UTF-8 byte order mark (json.loads on bytes, Fastify strip it)
        b"\xef\xbb\xbf" + hit(),
        # what json.loads reads and orjson does not
        excluded_payload(x="NaN").encode(),
        excluded_payload(x="-Infinity").encode(),
        excluded_payload(x="1" + "0" * 30).encode(),
        excluded_payload(x='"\\ud800"').encode(),
        # invalid UTF-8, read as U+FFFD as Node reads it
        excluded_payload(x='"?"').encode().replace(b"?", b"\xff\xfe"),
        b'{"site_id": "1", "pathname": "/\xc3"}',
        # UTF-16 and UTF-32, with and without a BOM (json.loads on bytes detects them)
        excluded_payload().encode("utf-16"),
        excluded_payload().encode("utf-16-le"),
        excluded_payload().encode("utf-16-be"),
        excluded_payload().encode("utf-32"),
        excluded_payload().encode("utf-32-le"),
        # duplicate keys: the last one wins, in every parser
        b'{"site_id": "999", "site_id": "1"}',
        b'{"site_id": "999", "site\\u005fid": "1"}',
        # the site's other spellings
        b'{"site_id": "001"}',
        b'{"site_id": "A1B2C3D4E5F6"}',
        b'{"site_id": 1}',
        # an identity encoding is no encoding
        hit(),
    ],
)
def test_bodies_a_lenient_parser_reads_are_decided(edge_filter: EdgeFilter, body: bytes) -> None:
    """A payload orjson refuses but an app's parser reads is decided on that reading."""
    asgi, app = middleware(edge_filter)
    headers = {**xff("203.0.113.5"), "Content-Encoding": " Identity "}
    assert run(asgi, body, headers=headers) == EXCLUDED_ANSWER
    assert app.calls == []


def test_duplicate_keys_every_parser_takes_the_last() -> None:
    """orjson, json.loads (bytes and text) and the fallback read a repeated key alike."""
    body = b'{"site_id": "2", "site_id": "1"}'
    assert orjson.loads(body)["site_id"] == "1"
    assert json.loads(body)["site_id"] == "1"
    assert json.loads(body.decode())["site_id"] == "1"
    assert read_payload(b"\xef\xbb\xbf" + body) == {"site_id": "1"}


@settings(max_examples=200)
@given(
    payload=st.fixed_dictionaries(
        {
            "site_id": st.one_of(
                st.sampled_from(["1", "001", "a1b2c3d4e5f6", "999", "x"]), st.integers()
            )
        },
        optional={
            "pathname": st.text(),
            "x": st.one_of(st.floats(), st.integers(), st.text()),
        },
    ),
    encoding=st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-32-be"]),
)
def test_decisions_follow_the_stdlib_reading(
    edge_filter: EdgeFilter, payload: dict[str, Any], encoding: str
) -> None:
    """Whatever json.loads reads from the bytes, the middleware decides for that site."""
    asgi, app = middleware(edge_filter, mode="annotate")
    body = json.dumps(payload).encode(encoding)
    run(asgi, body, headers=xff(US))
    outcome = app.calls[0]["scope"]["state"]["edgefilter"]
    assert outcome.site == (canonical_site_id(json.loads(body)["site_id"]) or "")


@pytest.mark.parametrize(
    "site",
    ["abc", "1.5", "-1", "1 ", "\u00b2", "0x1", "a" * 60_000, "a1b2c3d4e5f", 2**64, -1, 1.0],
)
def test_ids_that_are_no_site_id_are_unknown_without_a_lookup(site: object) -> None:
    """A site_id canonical_site_id refuses is an unknown site, and no source is asked."""
    asked: list[object] = []

    class Spy:
        def rules_for(self, site: object) -> None:
            asked.append(site)

        def resolve(self, site: object) -> None:
            asked.append(site)

    asgi, app = middleware(EdgeFilter(Spy(), track_unknown_sites=True), max_body_bytes=100_000)
    assert run(asgi, hit(site), headers=xff(US)) == UNKNOWN_ANSWER
    assert (asked, app.calls) == ([], [])


def test_body_limit(edge_filter: EdgeFilter) -> None:
    """Past max_body_bytes: 413, by declared length or by counting chunks."""
    asgi, app = middleware(edge_filter, max_body_bytes=100)
    big = hit(pathname="/" + "x" * 200)
    assert run(asgi, [big[:60], big[60:]], headers=xff(US))[0] == 413
    assert run(asgi, b"{}", headers={**xff(US), "Content-Length": "5000"})[0] == 413
    assert run(asgi, hit(), headers=xff(US))[0] == 200
    assert len(app.calls) == 1


@pytest.mark.parametrize(
    ("size", "declared", "status"),
    [
        # exactly the limit is read; one byte more is not
        (100, None, 200),
        (101, None, 413),
        (100, "100", 200),
        # a length that lies small, or is absent (chunked): the bytes are counted
        (101, "10", 413),
        (5000, "0", 413),
        # a declared length past the limit, however many digits it has
        (50, "101", 413),
        (50, "9" * 5000, 413),
        (50, "0" * 40 + "100", 200),
        # a length that is no number is not believed: the bytes are counted
        (50, "-5", 200),
        (101, "+5", 413),
    ],
)
def test_body_limit_edges(
    edge_filter: EdgeFilter, size: int, declared: str | None, status: int
) -> None:
    """The limit holds whatever Content-Length says; a body of exactly the limit is read."""
    asgi, app = middleware(edge_filter, max_body_bytes=100)
    body = b'{"site_id":"1","x":"' + b"x" * (size - 22) + b'"}'
    assert len(body) == size
    headers = xff(US) if declared is None else {**xff(US), "Content-Length": declared}
    chunks = [body[i : i + 16] for i in range(0, size, 16)]
    assert run(asgi, chunks, headers=headers)[0] == status
    assert len(app.calls) == (status == 200)


@pytest.mark.parametrize("chunks", [[b""], [hit()[:10]], [hit()[:10], hit()[10:20]], [hit()]])
def test_a_client_that_disconnects_mid_body_reaches_nothing(
    edge_filter: EdgeFilter, chunks: list[bytes]
) -> None:
    """A body cut short by http.disconnect is not a hit: no app call, no answer."""
    asgi, app = middleware(edge_filter)
    assert run(asgi, chunks, headers=xff(US), complete=False) == (None, b"")
    assert app.calls == []
    assert asgi.counters.snapshot() == {}


def test_a_chunk_without_a_body_key_is_empty(edge_filter: EdgeFilter) -> None:
    """A server's http.request with body None or missing is read as no bytes, not a crash."""
    asgi, app = middleware(edge_filter)
    messages = [
        {"type": "http.request", "body": None, "more_body": True},
        {"type": "http.request", "more_body": True},
        {"type": "http.request", "body": hit()},
    ]
    sent: list[Any] = []

    async def receive() -> Any:
        return messages.pop(0)

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/api/track",
        "headers": [(b"user-agent", CHROME.encode())],
        "client": ("198.51.100.7", 1),
    }
    asyncio.run(asgi(scope, receive, send))
    assert sent[0]["status"] == 200
    assert app.calls[0]["body"] == hit()


def test_spoofed_forwarding_cannot_dodge_an_exclusion(edge_filter: EdgeFilter) -> None:
    """An excluded untrusted peer claiming another address is still excluded."""
    asgi, app = middleware(edge_filter)
    status, body = run(asgi, hit(), peer="127.0.0.3", headers=xff(US))
    assert (status, json.loads(body)["message"]) == (200, "Event not tracked - IP excluded")
    assert app.calls == []


def test_trust_everyone(edge_filter: EdgeFilter) -> None:
    """``*`` trusts every peer."""
    asgi, app = middleware(edge_filter, trusted_proxies=["*"], mode="annotate")
    run(asgi, hit(), peer="198.51.100.7", headers=xff(US))
    assert app.calls[0]["scope"]["state"]["edgefilter"].client_ip == US


def test_payload_overrides_need_a_verified_key(edge_filter: EdgeFilter) -> None:
    """ip_address/user_agent in the payload count only for keys the verifier accepts."""
    payload = hit(ip_address="203.0.113.5", user_agent=GOOGLEBOT)
    verifier = lambda key, site: key == "good" and site == "1"  # noqa: E731
    asgi, _ = middleware(edge_filter, ingest_key_verifier=verifier)
    assert run(asgi, payload, headers=xff(US))[1] == b"app"
    assert run(asgi, payload, headers={**xff(US), "Authorization": "Bearer bad"})[1] == b"app"
    _, body = run(asgi, payload, headers={**xff(US), "Authorization": "Bearer good"})
    assert json.loads(body)["message"] == "Event not tracked - IP excluded"
    unverified, _ = middleware(edge_filter)
    assert (
        run(unverified, payload, headers={**xff(US), "Authorization": "Bearer good"})[1] == b"app"
    )


def test_annotate_mode_passes_everything(edge_filter: EdgeFilter) -> None:
    """In annotate mode dropped hits reach the app too, with their decision."""
    asgi, app = middleware(edge_filter, mode="annotate")
    run(asgi, hit(), headers=xff("203.0.113.5"))
    assert app.calls[0]["scope"]["state"]["edgefilter"].decision.reason is Reason.excluded_ip


def test_counters_and_prometheus(edge_filter: EdgeFilter) -> None:
    """Decisions are counted by site and reason, and exported to Prometheus."""
    asgi, _ = middleware(edge_filter)
    for address in (US, US, "203.0.113.5"):
        run(asgi, hit(), headers=xff(address))
    run(asgi, hit("nope"), headers=xff(US))
    counts = asgi.counters.snapshot()
    assert counts[("1", Reason.tracked)] == 2
    assert counts[("1", Reason.excluded_ip)] == 1
    assert counts[("", Reason.unknown_site)] == 1
    registry = CollectorRegistry()
    asgi.counters.register_prometheus(registry)
    text = generate_latest(registry).decode()
    assert 'edgefilter_decisions_total{reason="tracked",site="1"} 2.0' in text


@pytest.mark.parametrize(
    "options",
    [
        {"trusted_proxies": ["not-a-proxy"]},
        {"trusted_proxies": "127.0.0.1"},
        {"mode": "block"},
        {"max_body_bytes": 0},
        {"max_body_bytes": True},
        {"proxy_header": "X-Forwarded-For"},
        {"proxy_header": "x-forwarded-host"},
        {"paths": "/api/track"},
        {"paths": []},
        {"paths": ["api/track"]},
        {"edge_filter": {"1": SITE}},
        {"edge_filter": None},
    ],
)
def test_bad_options_fail_at_setup(edge_filter: EdgeFilter, options: dict[str, Any]) -> None:
    """Invalid options raise ConfigError when the middleware is made, not per request."""
    with pytest.raises(ConfigError):
        middleware(**{"edge_filter": edge_filter, **options})


async def track(request: Request) -> JSONResponse:
    """A minimal Rybbit-like track endpoint: echoes the body length it received."""
    body = await request.body()
    return JSONResponse({"success": True, "received": len(body)})


def starlette_app(edge_filter: EdgeFilter) -> Any:
    """The middleware in a Starlette app."""
    return Starlette(
        routes=[Route("/api/track", track, methods=["POST"])],
        middleware=[
            Middleware(EdgeFilterMiddleware, edge_filter=edge_filter, trusted_proxies=[PROXY])
        ],
    )


def fastapi_app(edge_filter: EdgeFilter) -> Any:
    """The middleware in a FastAPI app."""
    app = FastAPI()
    app.add_middleware(EdgeFilterMiddleware, edge_filter=edge_filter, trusted_proxies=[PROXY])
    app.add_api_route("/api/track", track, methods=["POST"])
    return app


@pytest.fixture(params=[starlette_app, fastapi_app], ids=["starlette", "fastapi"])
def served(request: pytest.FixtureRequest, edge_filter: EdgeFilter) -> Iterator[str]:
    """A Starlette or FastAPI app with the middleware, under uvicorn on loopback."""
    with serve_in_thread(request.param(edge_filter)) as url:
        yield url


def test_in_real_apps_over_http(served: str) -> None:
    """Through uvicorn: a proxied hit is tracked, a proxied excluded one dropped, a spoof too."""
    via_proxy = httpx.Client(transport=httpx.HTTPTransport(local_address=PROXY), base_url=served)
    spoofer = httpx.Client(
        transport=httpx.HTTPTransport(local_address="127.0.0.3"), base_url=served
    )
    with via_proxy, spoofer:
        body = hit()
        tracked = via_proxy.post("/api/track", content=body, headers=xff(US))
        assert tracked.json() == {"success": True, "received": len(body)}
        dropped = via_proxy.post("/api/track", content=body, headers=xff("203.0.113.5"))
        assert dropped.json()["message"] == "Event not tracked - IP excluded"
        spoofed = spoofer.post("/api/track", content=body, headers=xff(US))
        assert spoofed.json()["message"] == "Event not tracked - IP excluded"
        assert via_proxy.get("/api/track").status_code == 405


def test_counters_lose_nothing_under_threads() -> None:
    """Eight threads bumping the same keys: every decision is counted."""
    counters = DecisionCounters()

    def bump(_: int) -> None:
        for index in range(5_000):
            counters.add(str(index % 3), Reason.tracked)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(bump, range(8)))
    assert sum(counters.snapshot().values()) == 40_000
    assert counters.by_reason()[Reason.tracked] == 40_000


def unresolved_filter() -> EdgeFilter:
    """A filter over SITE whose source answers each unknown id with a rotating reason."""
    reasons = itertools.cycle(
        [None, Reason.rules_pending, Reason.rules_unavailable, Reason.rules_unauthorized]
    )
    static = StaticRules({"1": SITE})

    class Rotating:
        rules_for = staticmethod(static.rules_for)

        def resolve(self, site: str) -> Reason | None:
            return next(reasons)

    return EdgeFilter(Rotating(), geoip=str(CITY_DB))


def test_counter_labels_stay_bounded_for_attacker_ids() -> None:
    """10,000 random ids, unknown, unresolved or unreadable, share one label."""
    asgi, _ = middleware(unresolved_filter())
    generator = random.Random(11)

    async def flood() -> None:
        for index in range(10_000):
            digits = str(generator.randrange(2, 2**63))
            hexes = f"{generator.getrandbits(48):012x}"
            junk = "".join(generator.choices(string.printable, k=generator.randrange(1, 80)))
            site: object = (digits, hexes, junk, None)[index % 4]
            await call(asgi, hit(site), headers=xff(US))

    asyncio.run(flood())
    labels = {site for site, _ in asgi.counters.snapshot()}
    assert labels == {UNKNOWN_SITE_LABEL}
    assert sum(asgi.counters.snapshot().values()) == 10_000
    reasons = {reason for _, reason in asgi.counters.snapshot()}
    assert {Reason.unknown_site, Reason.invalid_payload, Reason.rules_unavailable} <= reasons
    assert reasons <= UNRESOLVED_REASONS


def test_every_form_of_a_sites_id_shares_one_label(edge_filter: EdgeFilter) -> None:
    """ "1", "001", 1 and the 12-hex id of one site are counted under its one label."""
    asgi, _ = middleware(edge_filter)
    for site in ("1", "001", 1, "a1b2c3d4e5f6", "A1B2C3D4E5F6"):
        run(asgi, hit(site), headers=xff(US))
        run(asgi, hit(site), headers=xff("203.0.113.5"))
    assert asgi.counters.snapshot() == {("1", Reason.tracked): 5, ("1", Reason.excluded_ip): 5}


def test_the_decision_is_asked_about_the_canonical_id(edge_filter: EdgeFilter) -> None:
    """The filter and the annotation see "1" for a hit that says "0001"."""
    asgi, app = middleware(edge_filter, mode="annotate")
    run(asgi, hit("0001"), headers=xff(US))
    assert app.calls[0]["scope"]["state"]["edgefilter"].site == "1"


@pytest.mark.parametrize("agents", [("", CHROME), (CHROME, ""), (CHROME, CHROME)])
def test_a_repeated_user_agent_is_none(edge_filter: EdgeFilter, agents: tuple[str, str]) -> None:
    """Two User-Agent headers (no browser sends two) read as none: a bot for this site,
    whichever comes first."""
    asgi, app = middleware(edge_filter)
    headers = [("X-Forwarded-For", US), *(("User-Agent", agent) for agent in agents)]
    assert run(asgi, hit(), headers=headers) == (200, b'{"success":true}')
    assert app.calls == []


def test_a_body_past_the_limit_in_one_message_is_refused(edge_filter: EdgeFilter) -> None:
    """The limit counts a body that comes whole in one message too (no Content-Length)."""
    asgi, app = middleware(edge_filter, max_body_bytes=100)
    body = hit(pathname="/" + "x" * 200)
    assert run(asgi, body, headers=xff(US))[0] == 413
    assert run(asgi, body[:100], headers=xff(US))[0] == 400  # at the limit: read (cut JSON)
    assert app.calls == []


def test_a_repeated_authorization_verifies_no_key(edge_filter: EdgeFilter) -> None:
    """Two Authorization headers are read as none: the payload's overrides do not count."""
    payload = hit(ip_address="203.0.113.5")
    asgi, _ = middleware(edge_filter, ingest_key_verifier=lambda key, site: key == "good")
    good = ("Authorization", "Bearer good")
    assert run(asgi, payload, headers=[*xff(US).items(), good, good])[1] == b"app"
    assert run(asgi, payload, headers=[*xff(US).items(), good])[1] != b"app"


@pytest.mark.parametrize(
    ("encodings", "status"),
    [(["identity"], 200), (["Identity "], 200), (["identity", "identity"], 400), (["gzip"], 400)],
)
def test_content_encodings_are_read_whole(
    edge_filter: EdgeFilter, encodings: list[str], status: int
) -> None:
    """Only a body sent as ``identity`` is read; repeated Content-Encoding headers are a
    list of encodings (RFC 9110), which no plain JSON body has."""
    asgi, _ = middleware(edge_filter)
    headers = [*xff(US).items(), *(("Content-Encoding", name) for name in encodings)]
    assert run(asgi, hit(), headers=headers)[0] == status


def test_a_repeated_origin_is_read_whole() -> None:
    """With check_origin, two Origin headers are read together, not the first alone: a
    page that sends the site's Origin and another's is not the site's."""
    site = SiteConfig(site_id=1, block_bots=False, domain="example.com")
    asgi, app = middleware(EdgeFilter({"1": site}), check_origin=True)
    own = ("Origin", "https://example.com")
    assert run(asgi, hit(), headers=[*xff(US).items(), own])[0] == 200
    assert run(asgi, hit(), headers=[*xff(US).items(), own, ("Origin", "https://x.test")])[0] == 403
    assert len(app.calls) == 1


def test_a_peer_is_trusted_by_its_own_address_on_every_hit(edge_filter: EdgeFilter) -> None:
    """One middleware, many hits: each peer's trust is its own, however often it comes (the
    verdicts are kept per peer), and an untrusted peer's forwarding header never counts."""
    asgi, app = middleware(edge_filter, mode="annotate")
    peers = [PROXY, "198.51.100.7", "198.51.100.7", PROXY, "10.9.0.1", "198.51.100.7", PROXY]
    for peer in peers:
        run(asgi, hit(), peer=peer, headers=xff(US))
    seen = [call["scope"]["state"]["edgefilter"].client_ip for call in app.calls]
    assert seen == [US if peer != "198.51.100.7" else peer for peer in peers]


def test_uvicorn_root_path_does_not_turn_the_filter_off(edge_filter: EdgeFilter) -> None:
    """Under uvicorn --root-path /analytics an excluded hit is still dropped."""
    with serve_in_thread(starlette_app(edge_filter), root_path="/analytics") as url:
        transport = httpx.HTTPTransport(local_address=PROXY)
        with httpx.Client(transport=transport, base_url=url) as client:
            dropped = client.post("/api/track", content=hit(), headers=xff("203.0.113.5"))
            tracked = client.post("/api/track", content=hit(), headers=xff(US))
    assert dropped.json()["message"] == "Event not tracked - IP excluded"
    assert tracked.json() == {"success": True, "received": len(hit())}


@pytest.mark.parametrize("make_app", [Starlette, FastAPI], ids=["starlette", "fastapi"])
def test_a_bad_option_via_add_middleware_fails_uvicorn_startup(
    edge_filter: EdgeFilter, make_app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """add_middleware with a bad trusted proxy: uvicorn does not start, the entry is named."""
    app = make_app()
    app.add_middleware(
        EdgeFilterMiddleware, edge_filter=edge_filter, trusted_proxies=["10.0.0.0/33"]
    )
    with (
        caplog.at_level(logging.ERROR),
        pytest.raises(RuntimeError, match="did not start"),
        serve_in_thread(app, log_config=None),
    ):
        pass
    errors = [record.getMessage() for record in caplog.records if record.name == "uvicorn.error"]
    assert any("'10.0.0.0/33'" in message for message in errors), errors


def test_a_bad_option_inside_an_event_loop_refuses_every_scope(edge_filter: EdgeFilter) -> None:
    """Made inside a loop, a misconfigured middleware fails lifespan and raises on HTTP."""

    async def make() -> EdgeFilterMiddleware:
        return EdgeFilterMiddleware(RecordingApp(), edge_filter=edge_filter, mode="block")

    asgi = asyncio.run(make())
    with pytest.raises(ConfigError, match="'block'"):
        run(asgi, hit(), headers=xff(US))
    sent: list[Any] = []

    async def receive() -> Any:
        return {"type": "lifespan.startup"}

    async def send(message: Any) -> None:
        sent.append(message)

    asyncio.run(asgi({"type": "lifespan"}, receive, send))
    assert sent[0]["type"] == "lifespan.startup.failed"
    assert "'block'" in sent[0]["message"]


@pytest.mark.parametrize("entry", ["10.0.0.0/33", "not-a-proxy", "10.0.0.1-10.0.0.0", ""])
def test_a_bad_trusted_proxy_is_named(edge_filter: EdgeFilter, entry: str) -> None:
    """Made directly, the middleware's ConfigError names the bad trusted_proxies entry."""
    with pytest.raises(ConfigError, match=re.escape(repr(entry))):
        middleware(edge_filter, trusted_proxies=["10.9.0.0/16", entry])


@pytest.mark.parametrize("edge_outside", [True, False])
def test_drops_are_readable_cross_origin_whatever_the_middleware_order(edge_outside: bool) -> None:
    """A drop carries the reflected Origin and Vary: Origin outside or inside CORSMiddleware."""
    from starlette.middleware.cors import CORSMiddleware  # noqa: PLC0415

    async def track(_request: Request) -> JSONResponse:
        return JSONResponse({"success": True})

    app = Starlette(routes=[Route("/api/track", track, methods=["POST"])])
    edge = {"edge_filter": EdgeFilter({"1": SITE}), "paths": ("/api/track",)}
    if edge_outside:
        app.add_middleware(CORSMiddleware, allow_origins=["*"], allow_methods=["*"])
        app.add_middleware(EdgeFilterMiddleware, **edge)
    else:
        app.add_middleware(EdgeFilterMiddleware, **edge)
        app.add_middleware(CORSMiddleware, allow_origins=["*"], allow_methods=["*"])
    transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 1234))
    origin = "http://shop.example"

    async def post() -> httpx.Response:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.post(
                "/api/track",
                content=b'{"site_id": "1"}',
                headers={"Origin": origin, "User-Agent": CHROME},
            )

    answer = asyncio.run(post())
    assert answer.json()["message"] == "Event not tracked - IP excluded"
    assert answer.headers.get_list("access-control-allow-origin") in ([origin], ["*"])
    if edge_outside:
        assert answer.headers["access-control-allow-origin"] == origin
        assert "Origin" in answer.headers["vary"]


def test_the_kept_peer_verdicts_stay_bounded(edge_filter: EdgeFilter) -> None:
    """Peers from everywhere (no proxy in front) cannot grow the kept trust verdicts."""
    from edgefilter.middleware import _PEER_VERDICTS  # noqa: PLC0415

    asgi, _ = middleware(edge_filter)
    for index in range(_PEER_VERDICTS + 500):
        peer = f"198.51.{index // 256}.{index % 256}"
        assert asgi._client_address((peer, 1), "1.2.3.4") == peer
    assert 0 < len(asgi._peer_verdicts) <= _PEER_VERDICTS
    assert asgi._client_address((PROXY, 1), "1.2.3.4") == "1.2.3.4"
