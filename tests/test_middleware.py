"""EdgeFilterMiddleware: every reason, body handling, client addresses, modes, apps."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from edgefilter import ConfigError, DecisionCounters, EdgeFilter, Reason, SiteConfig
from edgefilter._serving import serve_in_thread
from edgefilter.middleware import EdgeDecision, EdgeFilterMiddleware

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
    return EdgeFilterMiddleware(app, edge_filter=edge_filter, **options), app


def run(
    asgi: Any,
    body: bytes | list[bytes] = b"",
    *,
    peer: str = PROXY,
    headers: dict[str, str] | None = None,
    method: str = "POST",
    path: str = "/api/track",
) -> tuple[int, bytes]:
    """Call an ASGI app in-process with the body in the given chunks; (status, body)."""
    chunks = body if isinstance(body, list) else [body]
    messages = [
        {"type": "http.request", "body": chunk, "more_body": index < len(chunks) - 1}
        for index, chunk in enumerate(chunks)
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    raw_headers = [(k.lower().encode(), v.encode("latin-1")) for k, v in (headers or {}).items()]
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "headers": raw_headers,
        "client": (peer, 50000),
    }
    asyncio.run(asgi(scope, receive, send))
    status = next(message["status"] for message in sent if message["type"] == "http.response.start")
    return status, b"".join(
        message.get("body", b"") for message in sent if message["type"] == "http.response.body"
    )


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
        ("GET", "/api/track", b""),
        ("POST", "/api/other", hit()),
        ("POST", "/api/track/", hit()),
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


def test_non_http_scopes_pass_through(edge_filter: EdgeFilter) -> None:
    """Lifespan and websocket scopes go to the app untouched."""
    asgi, app = middleware(edge_filter)
    for kind in ("lifespan", "websocket"):
        receive, send = object(), object()
        asyncio.run(asgi({"type": kind, "path": "/api/track"}, receive, send))
        assert app.calls[-1]["receive"] is receive


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[]",
        b'{"type": "pageview"}',
        b'{"site_id": null}',
        b'{"site_id": true}',
        b"\xff\xfe",
    ],
)
def test_unusable_payloads_go_to_the_app_unchanged(edge_filter: EdgeFilter, body: bytes) -> None:
    """Invalid JSON or a missing site_id: the app (Rybbit) answers, with the same bytes."""
    asgi, app = middleware(edge_filter)
    assert run(asgi, body, headers=xff("203.0.113.5")) == (200, b"app")
    assert app.calls[0]["body"] == body


def test_body_limit(edge_filter: EdgeFilter) -> None:
    """Past max_body_bytes: 413, by declared length or by counting chunks."""
    asgi, app = middleware(edge_filter, max_body_bytes=100)
    big = hit(pathname="/" + "x" * 200)
    assert run(asgi, [big[:60], big[60:]], headers=xff(US))[0] == 413
    assert run(asgi, b"{}", headers={**xff(US), "Content-Length": "5000"})[0] == 413
    assert run(asgi, hit(), headers=xff(US))[0] == 200
    assert len(app.calls) == 1


@pytest.mark.parametrize(
    ("peer", "headers", "client_ip"),
    [
        # no proxy: the peer is the client, forwarding headers are ignored
        ("198.51.100.7", {"X-Forwarded-For": "1.1.1.1"}, "198.51.100.7"),
        ("127.0.0.3", {"X-Forwarded-For": US}, "127.0.0.3"),
        # a trusted proxy: the right-most untrusted X-Forwarded-For entry
        (PROXY, {"X-Forwarded-For": US}, US),
        (PROXY, {"X-Forwarded-For": f"6.6.6.6, {US}, 10.9.0.1"}, US),
        (PROXY, {"X-Forwarded-For": f"{US}:443"}, US),
        (PROXY, {}, PROXY),
        (PROXY, {"X-Forwarded-For": "10.9.0.1, 10.9.0.2"}, "10.9.0.1"),
        # RFC 7239 Forwarded, IPv6 bracketed with a port
        (PROXY, {"Forwarded": 'for="[2001:db8:cafe::17]:4711";proto=https'}, "2001:db8:cafe::17"),
        (PROXY, {"Forwarded": f"for={US}, for=10.9.0.1"}, US),
        # IPv6 and IPv4-mapped peers
        ("2001:db8:1::1", {"X-Forwarded-For": US}, "2001:db8:1::1"),
        ("::ffff:127.0.0.2", {"X-Forwarded-For": US}, US),
    ],
)
def test_client_ip(
    edge_filter: EdgeFilter, peer: str, headers: dict[str, str], client_ip: str
) -> None:
    """Forwarding headers count only from trusted proxies, read right to left."""
    asgi, app = middleware(edge_filter, mode="annotate")
    run(asgi, hit(), peer=peer, headers=headers)
    assert app.calls[0]["scope"]["state"]["edgefilter"].client_ip == client_ip


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
    ],
)
def test_bad_options_fail_at_setup(edge_filter: EdgeFilter, options: dict[str, Any]) -> None:
    """Invalid options raise ConfigError when the middleware is made, not per request."""
    with pytest.raises(ConfigError):
        middleware(edge_filter, **options)


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
