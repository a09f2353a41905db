"""``Relay``: the pure ASGI app behind the proxy's filter, relaying to the Rybbit upstream.

What it answers, by path (the path Starlette would route: ``root_path`` stripped):

- the **ingest surface** of a Rybbit v2.7 analytics host (``INGEST_SURFACE``):
  ``/api/script.js``, ``/api/replay.js``, ``/api/metrics.js``,
  ``/api/site/tracking-config/{siteId}``, ``/api/track``, ``/api/identify`` and
  ``/api/session-replay/record/{siteId}``: relayed to the upstream, any method;
- a **preflight** (``OPTIONS`` with ``Access-Control-Request-Method``) on that surface is
  answered here, as Rybbit's public CORS answers it (``preflight_headers``): one round trip
  fewer per page, and the same policy as the filter's own drop answers;
- **anything else**: 404 ``{"success": false, "error": "Not found"}`` without asking the
  upstream, unless ``relay_all=True``, which relays every other path and method unfiltered
  (the dashboard and its API behind the same host). The default keeps the edge from
  widening what the internet reaches, and keeps an ingest path Rybbit adds later from
  bypassing the filter by way of a catch-all.

Relaying is streamed both ways: the request body goes on as it arrives (a hit's body was
read whole by the filter, at most its route's limit; any other body is cut at
``max_body_bytes`` with a 413), and the answer is relayed chunk by chunk as the upstream
sent it (``aiter_raw``: a ``br`` or ``gzip`` body stays byte for byte what it was, with its
``Content-Encoding``). Headers go on both ways except the hop-by-hop ones and those the
``Connection`` header names (and a ``Content-Length`` beside a ``Transfer-Encoding``);
``Host`` becomes the upstream's (the client's is sent in
``X-Forwarded-Host``, the scheme in ``X-Forwarded-Proto``). Of the upstream's answer,
``Date`` and ``Server`` give way to uvicorn's own (which it always writes); status,
``Cache-Control``, ``Vary``, ``ETag``, CORS headers and the rest are kept, so
conditional requests (``If-None-Match`` to a 304) pass through.

The client's address: every client-address header the request came with
(``X-Forwarded-For``, ``X-Real-IP``, ``Forwarded``, ``CF-Connecting-IP``,
``True-Client-IP``, ``X-Client-IP`` and the configured ones) is dropped, and each of
``client_address_headers`` is set to the address the filter decided on (for a hit) or reads
the same way (for anything else). A hit also carries the user agent the filter judged
(the request's own when that one cannot be a header value: an ingest key's payload).

Failures: an upstream that cannot be reached answers 502 ``{"success": false, "error":
"Upstream unavailable"}``, one that does not answer in time 504 ``{"success": false,
"error": "Upstream timed out"}`` (``upstream_timeout`` per connect, read, write and pool
wait, so a long answer that keeps flowing is not cut). After the answer has started, a
failing upstream ends the connection (the client never takes a cut answer for a whole
one). A client that disconnects mid-answer closes the upstream stream (answers past
``SHORT_ANSWER`` bytes or without a length, which are watched); one that disconnects
mid-body aborts the upstream request. The relay sends through the httpx transport, not a
client: a client's one cookie jar would carry one visitor's cookies to the next.

Request targets: only an origin-form path is relayed (``/...``, no ``#``); anything else
(``*``, an absolute URL, ``@host/...``, a fragment) answers 400 ``{"success": false,
"error": "Invalid request target"}``, so no target can name another host or reach the
upstream as a path the filter did not read. An address header carries only an IPv4 or
IPv6 address (an ingest key's ``ip_address`` that is none is not sent).
"""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote

import anyio
import httpx

from .._decisions import Reason
from ..middleware import (
    DROP_ANSWERS,
    PASS_THROUGH_METHODS,
    ASGIApp,
    EdgeFilterMiddleware,
    Receive,
    Scope,
    Send,
    cors_headers,
    route_path,
)

logger = logging.getLogger("edgefilter")

MAX_RELAYED_BODY: Final = 10 * 1024 * 1024  # Rybbit's own bodyLimit
UPSTREAM_TIMEOUT: Final = 10.0
SHORT_ANSWER: Final = 64 * 1024  # relayed without a disconnect watcher (see _is_short)
DEFAULT_CLIENT_ADDRESS_HEADERS: Final = ("x-real-ip", "x-forwarded-for")
HOP_BY_HOP: Final = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
# Headers a client could claim an address in: never passed on as the client sent them.
CLIENT_ADDRESS_HEADERS: Final = frozenset(
    {
        b"x-forwarded-for",
        b"x-real-ip",
        b"forwarded",
        b"cf-connecting-ip",
        b"true-client-ip",
        b"x-client-ip",
    }
)
# Request headers the relay writes itself (or that httpx must write for the upstream).
_REQUEST_REPLACED: Final = frozenset(
    {b"host", b"expect", b"x-forwarded-host", b"x-forwarded-proto", b"user-agent"}
)
_ANSWER_REPLACED: Final = frozenset({b"date", b"server"})  # uvicorn writes its own
# Rybbit's public CORS (v2.7, @fastify/cors options of its ingest paths).
CORS_METHODS: Final = b"GET,POST,PUT,DELETE,OPTIONS,PATCH"
CORS_ALLOWED_HEADERS: Final = (
    b"Content-Type,Authorization,X-Requested-With,x-captcha-response,x-private-key"
)
_TOKEN: Final = re.compile(r"^[!#$%&'*+.^_`|~0-9a-z-]+$")
_FIELD_VALUE: Final = re.compile(r"(?:[^\x00-\x20\x7f]+(?:[ \t]+[^\x00-\x20\x7f]+)*)?")


@dataclass(frozen=True, slots=True)
class SurfaceRoute:
    """One path of the ingest surface; ``template`` ends in ``{siteId}`` for a path that
    takes one segment there (not empty, not ``.`` or ``..``)."""

    template: str

    def matches(self, path: str) -> bool:
        """Whether ``path`` is this route."""
        prefix, marker, _ = self.template.partition("{")
        if not marker:
            return path == self.template
        segment = path[len(prefix) :]
        return path.startswith(prefix) and segment not in ("", ".", "..") and "/" not in segment


INGEST_SURFACE: Final = (
    SurfaceRoute("/api/script.js"),
    SurfaceRoute("/api/replay.js"),
    SurfaceRoute("/api/metrics.js"),
    SurfaceRoute("/api/site/tracking-config/{siteId}"),
    SurfaceRoute("/api/track"),
    SurfaceRoute("/api/identify"),
    SurfaceRoute("/api/session-replay/record/{siteId}"),
)


class RelayCounters:
    """What the upstream answered: statuses by class (``2xx`` ...), failures by kind
    (``unavailable``, ``timeout``, ``broken``: failed mid-answer), client disconnects."""

    def __init__(self) -> None:
        self._counts: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    def add(self, kind: str, label: str) -> None:
        """Count one ``kind`` (``answer``, ``failure``, ``disconnect``) with its label."""
        with self._lock:
            self._counts[(kind, label)] += 1

    def snapshot(self) -> dict[tuple[str, str], int]:
        """A copy of the counts by ``(kind, label)``."""
        with self._lock:
            return dict(self._counts)


class _ClientGoneError(Exception):
    """The client disconnected before its body ended."""


class _BodyTooLargeError(Exception):
    """A relayed body went past ``max_body_bytes``."""


def checked_header_names(names: Iterable[str]) -> tuple[bytes, ...]:
    """Header names as ASGI spells them (lower case); ``ValueError`` naming a bad one."""
    if isinstance(names, str):
        raise ValueError(f"client_address_headers must be a list of names, not the str {names!r}")
    checked: list[bytes] = []
    for name in names:
        if not isinstance(name, str) or not _TOKEN.match(name.strip().lower()):
            raise ValueError(f"client address header {name!r} is not a header name")
        raw = name.strip().lower().encode("ascii")
        if raw in HOP_BY_HOP or raw in _REQUEST_REPLACED:
            raise ValueError(f"client address header {name!r} is a header the proxy writes")
        if raw not in checked:
            checked.append(raw)
    return tuple(checked)


def end_to_end(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """``headers`` without the hop-by-hop ones and those a ``Connection`` header names; a
    message framed by ``Transfer-Encoding`` loses its ``Content-Length`` too (RFC 9112 6.3:
    h11 frames such a message by its chunks, and the length sent on with the body would
    not be its length)."""
    pairs = [(name.lower(), value) for name, value in headers]
    named = {
        token.strip().lower()
        for name, value in pairs
        if name == b"connection"
        for token in value.split(b",")
    }
    if any(name == b"transfer-encoding" for name, _ in pairs):
        named.add(b"content-length")
    return [(name, value) for name, value in pairs if name not in HOP_BY_HOP and name not in named]


def preflight_headers(scope: Scope) -> list[tuple[bytes, bytes]]:
    """A preflight's answer headers, as Rybbit's public CORS sends them."""
    return [
        *cors_headers(scope),
        (b"access-control-allow-methods", CORS_METHODS),
        (b"access-control-allow-headers", CORS_ALLOWED_HEADERS),
        (b"content-length", b"0"),
    ]


def upstream_target(scope: Scope) -> str | None:
    """The path and query to ask the upstream for: the request's own, as sent (percent
    escapes kept), without the ``root_path`` the proxy is served under (stripped only at a
    ``/`` boundary). None for a target that is not a plain origin-form path: one that does
    not start with ``/`` (``*``, ``http://...``, ``@host/...``, which would name another
    host once appended to the upstream's URL) or that holds a ``#`` (which the upstream
    would never see, so the path the filter read would not be the one relayed)."""
    raw: bytes | None = scope.get("raw_path")
    path = raw if raw else quote(scope["path"]).encode("ascii")
    root = quote(scope.get("root_path", "")).encode("ascii")
    if root and (path == root or path.startswith(root + b"/")):
        path = path[len(root) :] or b"/"
    query: bytes = scope.get("query_string", b"")
    if not path.startswith(b"/") or b"#" in path or b"#" in query:
        return None
    target = path.decode("latin-1")
    return f"{target}?{query.decode('latin-1')}" if query else target


async def answer_json(
    send: Send,
    status: int,
    body: Mapping[str, Any],
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """One JSON answer."""
    content = json.dumps(body, separators=(",", ":")).encode("utf-8")
    start = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(content)).encode("ascii")),
        *(headers or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": start})
    await send({"type": "http.response.body", "body": content})


NOT_FOUND: Final = (404, {"success": False, "error": "Not found"})
UNAVAILABLE: Final = (502, {"success": False, "error": "Upstream unavailable"})
TIMED_OUT: Final = (504, {"success": False, "error": "Upstream timed out"})
TOO_LARGE: Final = (413, {"success": False, "error": "Payload too large"})
BAD_TARGET: Final = (400, {"success": False, "error": "Invalid request target"})


class Relay:
    """Relays the ingest surface to ``upstream`` (see the module docstring).

    ``own`` maps paths the proxy answers itself (``/healthz`` ...) to ASGI apps; the
    filter (``middleware``, set once it wraps the relay) says which requests are hits.
    ``on_shutdown`` holds coroutine functions awaited at the lifespan shutdown, in order,
    before the upstream transport closes (what the proxy's owner opened for it: the rules
    source, the Sites API client, a Redis client); one that fails is logged, not raised.
    """

    def __init__(
        self,
        upstream: str,
        transport: httpx.AsyncBaseTransport,
        *,
        timeout: float = UPSTREAM_TIMEOUT,
        client_address_headers: Iterable[str] = DEFAULT_CLIENT_ADDRESS_HEADERS,
        relay_all: bool = False,
        max_body_bytes: int = MAX_RELAYED_BODY,
        own: Mapping[str, ASGIApp] | None = None,
        surface: Iterable[SurfaceRoute] = INGEST_SURFACE,
    ) -> None:
        if not upstream.startswith(("http://", "https://")):
            raise ValueError(f"upstream {upstream!r} is not an http:// or https:// URL")
        self.base = upstream.rstrip("/")
        # The transport, not an httpx client: a client keeps one cookie jar for everyone
        # (the upstream's Set-Cookie for one visitor would go out with the next's requests)
        # and costs a cookie and redirect pass per request.
        self.transport = transport
        self.timeout = httpx.Timeout(timeout)
        self._extensions = {"timeout": self.timeout.as_dict()}
        self.address_headers = checked_header_names(client_address_headers)
        self._dropped = CLIENT_ADDRESS_HEADERS | set(self.address_headers) | _REQUEST_REPLACED
        self.relay_all = bool(relay_all)
        self.max_body_bytes = max_body_bytes
        self.own: dict[str, ASGIApp] = dict(own or {})
        self.surface = tuple(surface)
        self._surface_paths = frozenset(r.template for r in self.surface if "{" not in r.template)
        self._surface_templates = tuple(r for r in self.surface if "{" in r.template)
        self.counters = RelayCounters()
        self.middleware: EdgeFilterMiddleware | None = None
        self.on_shutdown: list[Callable[[], Awaitable[object]]] = []
        self._failing = False

    def on_surface(self, path: str) -> bool:
        """Whether ``path`` is on the ingest surface."""
        return path in self._surface_paths or any(
            route.matches(path) for route in self._surface_templates
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return  # websockets: nothing to relay them to (uvicorn closes them)
        path = route_path(scope)
        method: str = scope["method"]
        own = self.own.get(path)
        if own is not None and method in ("GET", "HEAD"):
            await own(scope, receive, send)
            return
        surface = self.on_surface(path)
        if method == "OPTIONS" and surface and _is_preflight(scope):
            await send(
                {"type": "http.response.start", "status": 204, "headers": preflight_headers(scope)}
            )
            await send({"type": "http.response.body", "body": b""})
            return
        if not surface and not self.relay_all:
            await answer_json(send, *NOT_FOUND, cors_headers(scope))
            return
        outcome = scope.get("state", {}).get("edgefilter")
        if outcome is not None and not outcome.decision.tracked:  # mode="annotate"
            await answer_json(send, *DROP_ANSWERS[outcome.decision.reason], cors_headers(scope))
            return
        if outcome is None and self._is_hit(scope, method):  # never relayed undecided
            await answer_json(send, *DROP_ANSWERS[Reason.invalid_payload], cors_headers(scope))
            return
        await self.relay(scope, receive, send, outcome)

    def _is_hit(self, scope: Scope, method: str) -> bool:
        middleware = self.middleware
        return (
            middleware is not None
            and method not in PASS_THROUGH_METHODS
            and middleware.is_track_path(scope)
        )

    async def relay(self, scope: Scope, receive: Receive, send: Send, outcome: Any) -> None:
        """Send the request on and stream the answer back (see the module docstring)."""
        if _declared_length(scope) > self.max_body_bytes and outcome is None:
            await answer_json(send, *TOO_LARGE, cors_headers(scope))
            return
        target = upstream_target(scope)
        try:
            if target is None:
                raise httpx.InvalidURL("not an origin-form request target")
            request = httpx.Request(
                scope["method"],
                self.base + target,
                headers=self.request_headers(scope, outcome),
                content=self._body(scope, receive) if _has_body(scope) else None,
                extensions=self._extensions,
            )
        except httpx.InvalidURL:  # nothing is relayed that the upstream would read otherwise
            await answer_json(send, *BAD_TARGET, cors_headers(scope))
            return
        try:
            answer = await self.transport.handle_async_request(request)
        except _ClientGoneError:
            return
        except _BodyTooLargeError:
            await answer_json(send, *TOO_LARGE, cors_headers(scope))
            return
        except httpx.TimeoutException as error:
            self._failed("timeout", error)
            await answer_json(send, *TIMED_OUT, cors_headers(scope))
            return
        except httpx.HTTPError as error:
            self._failed("unavailable", error)
            await answer_json(send, *UNAVAILABLE, cors_headers(scope))
            return
        answer.request = request
        self._answered(answer.status_code)
        try:
            await self._stream(answer, receive, send)
        finally:
            await answer.aclose()

    def request_headers(self, scope: Scope, outcome: Any) -> list[tuple[bytes, bytes]]:
        """The headers for the upstream (see the module docstring)."""
        headers = [
            (name, value)
            for name, value in end_to_end(scope["headers"])
            if name not in self._dropped
        ]
        original = dict(scope["headers"])
        if outcome is not None and _is_field_value(outcome.user_agent):
            headers.append((b"user-agent", outcome.user_agent.encode("latin-1", "replace")))
        else:  # the request's own (an ingest key's payload may name anything: it stays there)
            headers.extend(pair for pair in scope["headers"] if pair[0] == b"user-agent")
        address = outcome.client_ip if outcome is not None else self._client_address(scope)
        if address and _is_address(address):  # an ingest key's payload may name anything
            encoded = address.encode("ascii")
            headers.extend((name, encoded) for name in self.address_headers)
        if b"host" in original:
            headers.append((b"x-forwarded-host", original[b"host"]))
        headers.append((b"x-forwarded-proto", str(scope.get("scheme", "http")).encode("ascii")))
        return headers

    def _client_address(self, scope: Scope) -> str | None:
        middleware = self.middleware
        if middleware is None:
            client = scope.get("client")
            return str(client[0]) if client else None
        wanted = middleware.proxy_header.encode("latin-1")
        values = [value.decode("latin-1") for name, value in scope["headers"] if name == wanted]
        headers = {middleware.proxy_header: ", ".join(values)} if values else {}
        return middleware.client_ip(scope, headers)

    async def _body(self, scope: Scope, receive: Receive) -> AsyncIterator[bytes]:
        """The request body as it arrives; a client gone or a body too large aborts it."""
        size = 0
        limited = scope.get("state", {}).get("edgefilter") is None  # a hit's was checked
        while True:
            message = await receive()
            if message["type"] != "http.request":
                raise _ClientGoneError
            chunk: bytes = message.get("body") or b""
            size += len(chunk)
            if limited and size > self.max_body_bytes:
                raise _BodyTooLargeError
            if chunk:
                yield chunk
            if not message.get("more_body", False):
                return

    async def _stream(self, answer: httpx.Response, receive: Receive, send: Send) -> None:
        """The upstream's answer to the client, chunk by chunk, until either side ends."""
        headers = [
            (name, value)
            for name, value in end_to_end(answer.headers.raw)
            if name not in _ANSWER_REPLACED
        ]
        await send(
            {"type": "http.response.start", "status": answer.status_code, "headers": headers}
        )
        try:
            if _is_short(answer):  # one small body: nothing to stop early, no watcher
                finished = await self._relay_body(answer, send)
            else:
                finished = await self._relay_watched(answer, receive, send)
        except httpx.HTTPError as error:  # the answer has started: left unfinished, uvicorn
            self._failed("broken", error)  # ends the connection; the client knows it is cut
            return
        if finished:
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _relay_body(self, answer: httpx.Response, send: Send) -> bool:
        """Every chunk of the answer to the client; True when the upstream's body ended."""
        async for chunk in answer.aiter_raw():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        return True

    async def _relay_watched(self, answer: httpx.Response, receive: Receive, send: Send) -> bool:
        """``_relay_body``, stopped when the client disconnects (False then)."""
        finished = False
        async with anyio.create_task_group() as group:
            group.start_soon(self._watch_disconnect, receive, group.cancel_scope)
            try:
                finished = await self._relay_body(answer, send)
            finally:
                group.cancel_scope.cancel()
        return finished

    async def _watch_disconnect(self, receive: Receive, scope: anyio.CancelScope) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self.counters.add("disconnect", "client")
        scope.cancel()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        """Answer the lifespan protocol; the upstream transport closes at shutdown."""
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                for closing in self.on_shutdown:
                    try:
                        await closing()
                    except Exception:  # the rest must still close
                        logger.exception("closing the proxy at shutdown failed")
                await self.transport.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _answered(self, status: int) -> None:
        self.counters.add("answer", f"{status // 100}xx")
        if self._failing:
            self._failing = False
            logger.info("the upstream answers again")

    def _failed(self, kind: str, error: BaseException) -> None:
        self.counters.add("failure", kind)
        if not self._failing:
            self._failing = True
            logger.warning("the upstream is failing (%s: %s)", kind, error or type(error).__name__)


def _is_short(answer: httpx.Response) -> bool:
    """Whether the answer declares a body of at most ``SHORT_ANSWER`` bytes (a hit's
    answer, a config): relayed without watching for the client leaving."""
    length = answer.headers.get("content-length", "")
    return length.isdigit() and int(length) <= SHORT_ANSWER


def _is_preflight(scope: Scope) -> bool:
    return any(name == b"access-control-request-method" for name, _ in scope["headers"])


def _has_body(scope: Scope) -> bool:
    """Whether the request has a body to send on (HTTP/1.1: a length or a chunked one)."""
    return (
        any(name in (b"content-length", b"transfer-encoding") for name, _ in scope["headers"])
        and _declared_length(scope) != 0
    )


def _declared_length(scope: Scope) -> int:
    """The ``Content-Length`` the request declares; -1 for none (or an unreadable one)."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else -1
    return -1


def _is_field_value(text: str) -> bool:
    """Whether ``text`` can be a header's value: no control character, no space or tab at
    either end (what h11 sends; it refuses a request with any other)."""
    return _FIELD_VALUE.fullmatch(text) is not None


def _is_address(text: str) -> bool:
    """Whether ``text`` is an IPv4 or IPv6 address, as the upstream's address headers hold."""
    family = socket.AF_INET6 if ":" in text else socket.AF_INET
    try:
        socket.inet_pton(family, text)
    except (OSError, ValueError):  # not an address; a NUL or a surrogate: ValueError
        return False
    return True
