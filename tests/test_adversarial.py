"""The standing adversarial suite: the filter's invariants, whatever a client sends (issue 11).

Each test states one invariant from the README ("What the filter promises") and lets
Hypothesis look for a violation, instead of replaying the cases the review found (those
have regression tests of their own). Also part of the suite, and marked ``adversarial``:
``test_never_raises.py`` (should_track never raises), ``test_server_fuzz.py`` (the server
never answers 5xx and stores nothing partial) and the cache's flood tests.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgefilter import EdgeFilter, SiteConfig
from edgefilter.middleware import EdgeFilterMiddleware

from .conftest import CHROME, CITY_DB, GOOGLEBOT

pytestmark = pytest.mark.adversarial

SITE = SiteConfig(
    site_id=1,
    id="a1b2c3d4e5f6",
    block_bots=True,
    excluded_ips=("203.0.113.0/24", "2001:db8::/32"),
    excluded_countries=("CN",),
)
EXCLUDED = ("203.0.113.7", "2001:db8::7", "::ffff:203.0.113.7", "175.16.199.10")  # last: CN
ALLOWED = "198.51.100.20"
PROXY_NET = "10.9.0.0/16"
PROXY = "10.9.0.1"
FILTER = EdgeFilter({"1": SITE}, geoip=CITY_DB)


class RecordingApp:
    """The collector: records every request that reaches it."""

    def __init__(self) -> None:
        self.calls: list[bytes] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body") or b""
            if message["type"] != "http.request" or not message.get("more_body"):
                break
        self.calls.append(body)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"collected"})


def middleware() -> tuple[EdgeFilterMiddleware, RecordingApp]:
    app = RecordingApp()
    return EdgeFilterMiddleware(app, edge_filter=FILTER, trusted_proxies=[PROXY_NET]), app


async def request(
    asgi: Any,
    chunks: list[bytes],
    *,
    peer: str,
    headers: list[tuple[str, str]],
    path: str = "/api/track",
    root_path: str = "",
    method: str = "POST",
    disconnect: bool = False,
) -> None:
    """One request through ``asgi``; ``disconnect`` ends it before its last chunk."""
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": chunk, "more_body": index < len(chunks) - 1}
        for index, chunk in enumerate(chunks)
    ]
    if disconnect:
        messages[-1]["more_body"] = True

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(_message: dict[str, Any]) -> None:
        return None

    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "root_path": root_path,
        "headers": [(name.encode(), value.encode("latin-1")) for name, value in headers],
        "client": (peer, 50000),
    }
    await asgi(scope, receive, send)


# --- what an attacker controls --------------------------------------------------------------

# Every spelling of site 1, and things that are no site at all.
site_ids = st.one_of(
    st.sampled_from(["1", "01", "000001", "a1b2c3d4e5f6", "A1B2C3D4E5F6", "²", "\u0661", " 1"]),
    st.just(1),
    st.text(max_size=20),
    st.integers(),
    st.floats(allow_nan=False),
    st.none(),
    st.lists(st.just("1"), max_size=2),
)
junk_values = st.one_of(st.text(max_size=10), st.integers(), st.booleans(), st.none())


@st.composite
def payload_texts(draw: st.DrawFn) -> str:
    """A track payload as JSON text: extra keys, a decoy site_id first, odd numbers."""
    fields: list[tuple[str, object]] = [("type", "pageview")]
    if draw(st.booleans()):  # a decoy site_id that a first-wins parser would read
        fields.append(("site_id", draw(site_ids)))
    fields += draw(
        st.lists(
            st.tuples(st.sampled_from(["pathname", "x", "ip_address"]), junk_values), max_size=3
        )
    )
    fields.append(("site_id", draw(site_ids)))
    parts = [f"{json.dumps(key)}:{json.dumps(value)}" for key, value in fields]
    if draw(st.booleans()):
        parts.insert(1, '"n":NaN')  # lenient parsers read it, orjson does not
    if draw(st.booleans()):
        parts.insert(1, '"big":' + "9" * draw(st.integers(19, 5000)))
    return "{" + ",".join(parts) + "}"


ENCODINGS = ("utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32")


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    """The payload's bytes in any encoding, perhaps cut, padded or spliced with junk."""
    text = draw(payload_texts())
    body = text.encode(draw(st.sampled_from(ENCODINGS)))
    change = draw(st.sampled_from(["none", "pad", "cut", "junk", "bytes", "bad-utf8"]))
    if change == "pad":
        body = b" \n\t" + body + b"\r\n "
    elif change == "cut":
        body = body[: draw(st.integers(0, len(body)))]
    elif change == "junk":
        body = body + draw(st.binary(max_size=8))
    elif change == "bytes":
        body = draw(st.binary(max_size=64))
    elif change == "bad-utf8":
        body = body.replace(b"pageview", b"page\xffview")
    return body


@st.composite
def chunked(draw: st.DrawFn, body: bytes) -> list[bytes]:
    """``body`` split at random points (empty chunks included)."""
    cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=4)))
    edges = [0, *cuts, len(body)]
    return [body[start:end] for start, end in itertools.pairwise(edges)]


@st.composite
def routes(draw: st.DrawFn) -> tuple[str, str, str]:
    """(method, path, root_path) that a router could take for the track endpoint."""
    method = draw(st.sampled_from(["POST", "PUT", "PATCH", "post", "DELETE"]))
    path, root = draw(
        st.sampled_from(
            [
                ("/api/track", ""),
                ("/api/track/", ""),
                ("/API/Track", ""),
                ("//api//track", ""),
                ("/api/./track", ""),
                ("/api/track;x=1", ""),
                ("/analytics/api/track", "/analytics"),
                ("/api/track", "/analytics"),
            ]
        )
    )
    return method, path, root


@st.composite
def client_headers(draw: st.DrawFn, excluded: str) -> tuple[str, list[tuple[str, str]]]:
    """(peer, headers): the excluded client direct, or behind the trusted proxy, which
    appends it to X-Forwarded-For; the client writes every other header as it likes."""
    forged = st.sampled_from(["127.0.0.1", ALLOWED, "unknown", "", "for=1.2.3.4", PROXY])
    headers: list[tuple[str, str]] = [("user-agent", draw(st.sampled_from([CHROME, GOOGLEBOT])))]
    for name in ("forwarded", "x-real-ip", "cf-connecting-ip", "true-client-ip"):
        if draw(st.booleans()):
            headers.append((name, f"for={draw(forged)}" if name == "forwarded" else draw(forged)))
    if draw(st.booleans()):
        headers.append(("content-encoding", draw(st.sampled_from(["gzip", "identity", "br"]))))
    if draw(st.booleans()):  # behind the proxy: whatever the client sent, then its address
        sent = draw(st.lists(forged, max_size=3))
        headers.append(("x-forwarded-for", ", ".join([*sent, excluded])))
        return PROXY, headers
    if draw(st.booleans()):
        headers.append(("x-forwarded-for", draw(forged)))  # believed from no one
    return excluded, headers


# --- the invariants ---------------------------------------------------------------------------


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), st.sampled_from(EXCLUDED), bodies(), routes(), st.booleans())
def test_no_hit_from_an_excluded_client_reaches_the_app(
    data: st.DataObject,
    excluded: str,
    body: bytes,
    route: tuple[str, str, str],
    disconnect: bool,
) -> None:
    """Whatever the body, route, headers or chunking, a client excluded from every known site
    never reaches the collector: each hit is dropped, refused or cut off."""
    asgi, app = middleware()
    peer, headers = data.draw(client_headers(excluded))
    method, path, root = route
    chunks = data.draw(chunked(body))
    asyncio.run(
        request(
            asgi,
            chunks,
            peer=peer,
            headers=headers,
            path=path,
            root_path=root,
            method=method,
            disconnect=disconnect,
        )
    )
    assert app.calls == [], (peer, headers, method, path, root, chunks)


@settings(max_examples=100)
@given(st.sampled_from(["1", "01", "a1b2c3d4e5f6", "A1B2C3D4E5F6"]), st.sampled_from(ENCODINGS))
def test_an_allowed_client_is_collected(site: str, encoding: str) -> None:
    """The control: the same harness sees a hit that should be collected reach the app, byte
    for byte, in any encoding and any spelling of the site's id."""
    asgi, app = middleware()
    body = json.dumps({"type": "pageview", "site_id": site}).encode(encoding)
    headers = [("user-agent", CHROME), ("x-forwarded-for", ALLOWED)]
    asyncio.run(request(asgi, [body], peer=PROXY, headers=headers))
    assert app.calls == [body]


@settings(max_examples=50)
@given(st.lists(st.one_of(site_ids, st.text(min_size=1, max_size=2000)), min_size=1, max_size=60))
def test_made_up_site_ids_add_no_counter_labels(ids: list[object]) -> None:
    """However many ids a client makes up, the counters keep one label per known site plus
    one shared label for everything unresolved."""
    asgi, _ = middleware()
    for site in ids:
        body = json.dumps({"type": "pageview", "site_id": site}).encode()  # any int
        asyncio.run(request(asgi, [body], peer=ALLOWED, headers=[("user-agent", CHROME)]))
    labels = {label for label, _reason in asgi.counters.snapshot()}
    assert labels <= {"", "1"}


@settings(max_examples=100)
@given(st.data(), st.sampled_from([EXCLUDED[0], ALLOWED]), bodies(), routes())
def test_an_aborted_request_never_reaches_the_app(
    data: st.DataObject, client: str, body: bytes, route: tuple[str, str, str]
) -> None:
    """A client that disconnects before its body ends is never collected, whoever it is and
    whatever part of the body it sent."""
    asgi, app = middleware()
    method, path, root = route
    chunks = data.draw(chunked(body))
    headers = [("user-agent", CHROME)]
    asyncio.run(
        request(
            asgi,
            chunks,
            peer=client,
            headers=headers,
            path=path,
            root_path=root,
            method=method,
            disconnect=True,
        )
    )
    assert app.calls == []
