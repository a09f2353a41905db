"""``EdgeFilterMiddleware``: pure ASGI, in front of a Rybbit-compatible track endpoint.

Invariant: no hit on a filtered path reaches the app without a decision.

Which requests are hits: every HTTP request to one of the hit routes whose method is not
GET, HEAD or OPTIONS (those, other paths, websockets and lifespan pass straight through,
unread). The routes (``edgefilter._routes``) are Rybbit's by default (``RYBBIT_ROUTES``:
``/api/track`` and ``/api/identify``, whose site id is the JSON body's ``site_id``, and
``/api/session-replay/record/{site_id}``, whose site id is that path segment, with bodies
up to 10 MiB); ``routes=`` takes ``HitRoute`` objects (a path or a ``{site_id}`` template, a body
limit of its own) or paths, and ``paths=`` names paths as before (a ``{site_id}`` template
among them is a path route). A path matches as Starlette routes it (the ``root_path`` that
``uvicorn --root-path`` or a ``Mount`` puts in front is stripped) and also, erring on
filtering, as the loosest router would: case folded, repeated slashes, dot segments, a
trailing slash and ``;`` parameters ignored, so ``/API//track/`` is ``/api/track``.

For a hit the middleware reads the body (at most its route's ``max_body_bytes``, else the
middleware's: 413 past it, however long the declared length), reads it as a Rybbit
payload, finds the client's address and user agent, and asks the ``EdgeFilter``:

- tracked: the app gets exactly the original body and headers, the decision in
  ``scope["state"]["edgefilter"]`` (an ``EdgeDecision``);
- dropped: answered as Rybbit answers it (``DROP_ANSWERS``); it never reaches the app;
- a body the filter cannot read, or a payload whose ``site_id`` is missing, null, a boolean,
  an array or an object: 400 ``{"success": false, "error": "Invalid payload"}``
  (``Reason.invalid_payload``);
- a ``site_id`` (string or number) that ``canonical_site_id`` refuses: an unknown site (404
  ``Site not found``), with no rules lookup or fetch; a canonical id is what the filter is
  asked about;
- a client that disconnects before its body ends: nothing reaches the app, nothing is
  answered.

A session replay (a route whose site id is in its path) is decided on that segment (one
``canonical_site_id`` refuses is an unknown site), the page's path and hostname read from
the upload's ``metadata.pageUrl`` as Rybbit reads them (``page_of``), an upload sent gzip or
deflate encoded decoded first (one that decodes past the route's limit is refused as an
invalid payload; one under another ``Content-Encoding``, or that is not what it says, read
as is, as a server that ignores the header reads it); an upload the filter cannot read (not
JSON) is decided without a page, as one without a ``pageUrl``. Its drops are answered as Rybbit
answers replays: ``Session replay not recorded - IP excluded`` and so on.

Reading the payload: orjson first; when it refuses, the most lenient reading an app could
make of the same bytes: ``json.loads`` on the text decoded as ``json.detect_encoding`` says
(a UTF-8 BOM stripped, UTF-16 and UTF-32 read), invalid UTF-8 replaced by U+FFFD as Node
decodes it, with ``NaN``/``Infinity``, integers past 64 bits and lone surrogate escapes
accepted, nesting bounded by the interpreter's recursion limit. Duplicate keys: the last
one wins, as in orjson, ``json.loads`` and ``JSON.parse``. A track or identify body with a
``Content-Encoding`` other than ``identity`` is refused as unreadable.

The client address is the socket peer unless the peer is a trusted proxy; then only the
``proxy_header`` family is read (``x-forwarded-for``, ``forwarded`` (RFC 7239 ``for=``),
``x-real-ip`` or ``cf-connecting-ip``), never another. In a list, the right-most hop that is
not a trusted proxy is the client; if that hop is unreadable (``unknown``, ``_obfuscated``,
empty, not an address, an element without exactly one ``for=``), the client address is
unreadable (None, which the filter answers ``Reason.invalid_ip`` for sites with IP or country
rules): an earlier hop, which the client could have written, is never used. When every hop
is a trusted proxy, the left-most one is the client. ``x-real-ip`` and ``cf-connecting-ip``
hold one address: a comma list (or a repeated header) is unreadable. A trusted peer that
sends no such header is itself the client. Ports and IPv6 brackets are stripped.

The user agent is the one ``User-Agent`` header; a repeated one (no browser sends two) is
read as none, a bot for sites that block bots. The payload's ``ip_address``/``user_agent``
overrides count only when an ``ingest_key_verifier`` accepts the request's Bearer key; such a
request (server-side ingestion) skips every bot layer, the user agent's included, as Rybbit's.

Bot layers beyond the user agent (``bot_layers``, a ``RequestLayers``; off by default): a hit
the filter tracks, or calls a bot by its user agent, is judged by the request layers too
(headers, client signals, datacenter ranges, rates), on the awaited path; a bot's
``Decision.layers`` names every layer that matched. Without them a hit pays one test.

Cross-origin: with ``cors=True`` (the default) the middleware's own answers (drops, 400,
404, 413) are readable from any origin as Rybbit's public CORS makes its ingest answers:
the request's ``Origin`` reflected in ``Access-Control-Allow-Origin`` with
``Access-Control-Allow-Credentials: true`` (Rybbit's ``@fastify/cors`` setup has
``credentials: true``), and ``Vary: Origin``. The middleware can sit outside the app's CORS
layer (``add_middleware`` puts the last one added outermost), where that layer never sees
its answers; inside Starlette's ``CORSMiddleware``, that layer's headers replace these.
Preflights (OPTIONS) pass through to the app, whose CORS layer answers them.

``mode="annotate"`` passes every hit on (refused payloads too, but not bodies past the
limit or aborted ones), each with its decision.

Slow clients: ``body_timeout`` (seconds; None, the default, sets none) makes every request's
body due that long after the request came, whole, else ``408`` (see ``_deadline``); for a
middleware that is itself the front server, as ``edgefilter proxy``'s is.

Bad options raise ``ConfigError`` when the middleware is made. Made inside a running event
loop (Starlette builds its middleware stack lazily, in the first ASGI call: the lifespan
scope, whose exceptions uvicorn's ``lifespan="auto"`` swallows), it instead refuses to
start: it answers the lifespan startup with ``lifespan.startup.failed`` naming the bad
option, which uvicorn treats as fatal, and raises the ``ConfigError`` on any other scope.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import socket
import zlib
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from enum import Enum
from typing import Any, Final, Literal, NamedTuple, TypeVar
from urllib.parse import urlsplit

import orjson

from ._botlayers import HitRequest, RequestLayers
from ._counters import UNKNOWN_SITE_LABEL, UNRESOLVED_REASONS, DecisionCounters
from ._deadline import BodyDeadline, body_timeout_option
from ._decisions import EXCLUSION_MESSAGES, TRACKED, UNAVAILABLE_REASONS, Decision, Reason
from ._errors import ConfigError
from ._filter import EdgeFilter, in_event_loop
from ._routes import (
    RYBBIT_ROUTES,
    HitRoute,
    HitRoutes,
    RouteMatch,
    normal_path,
    page_of,
    route_path,
)
from ._signals import RawHeaders
from ._siteids import canonical_site_id
from ._tables import AddressTable

logger = logging.getLogger("edgefilter")
_inet_pton = socket.inet_pton
_AF_INET: Final = socket.AF_INET
_AF_INET6: Final = socket.AF_INET6

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
IngestKeyVerifier = Callable[[str, str], bool]
ProxyHeader = Literal["x-forwarded-for", "forwarded", "x-real-ip", "cf-connecting-ip"]

DEFAULT_MAX_BODY: Final = 64 * 1024
PROXY_HEADERS: Final = ("x-forwarded-for", "forwarded", "x-real-ip", "cf-connecting-ip")
PASS_THROUGH_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
INVALID_PAYLOAD: Final = Decision(False, Reason.invalid_payload)
NOT_A_SITE: Final = Decision(False, Reason.unknown_site)
FOREIGN_ORIGIN: Final = Decision(False, Reason.foreign_origin)
_NOT_SITE_TYPES: Final = (bool, list, dict)  # no site id at all: an invalid payload
_SINGLE_HOP_HEADERS: Final = frozenset({"x-real-ip", "cf-connecting-ip"})
# What the one scan of a hit's headers picks out (ASGI names are lower case), by kind.
_USER_AGENT: Final = 0
_FORWARDED: Final = 1
_LENGTH: Final = 2
_ENCODING: Final = 3
_AUTHORIZATION: Final = 4
_ORIGIN: Final = 5
_PEER_VERDICTS: Final = 1024  # cached peer trust verdicts; cleared when full
_new_tuple: Final = tuple.__new__  # a NamedTuple without its Python-level __new__
_orjson_loads: Final = orjson.loads
_JSONDecodeError: Final = orjson.JSONDecodeError
_TRACKED_REASON: Final = TRACKED.reason


def _python_scan(headers: object, wanted: object, limit: object) -> Literal[False]:
    """What the compiled scan answers when it is not there: Python scans (``_scan``)."""
    return False


def _compiled_scan() -> Callable[[object, object, object], _Scanned | Literal[False] | None]:
    """``_speedups.scan_headers`` (``_scan`` in C, for the usual headers), or the stand-in
    that leaves every scan to ``_scan``: not built, or ``EDGEFILTER_PURE=1``."""
    if os.environ.get("EDGEFILTER_PURE") == "1":
        return _python_scan
    try:
        from ._speedups import scan_headers  # noqa: PLC0415  (optional: hatch_build.py)
    except ImportError:
        return _python_scan
    return scan_headers


_scan_headers: Final = _compiled_scan()
_T = TypeVar("_T", bound=tuple[object, ...])


def _python_record(cls: type[_T], *items: object) -> _T:
    """``_speedups.record`` in Python: a NamedTuple without its Python-level ``__new__``."""
    return _new_tuple(cls, items)


def _compiled_record() -> Callable[..., Any]:
    """``_speedups.record`` (a NamedTuple made in one C call), or its Python stand-in."""
    if os.environ.get("EDGEFILTER_PURE") == "1":
        return _python_record
    try:
        from ._speedups import record  # noqa: PLC0415  (optional: hatch_build.py)
    except ImportError:
        return _python_record
    return record


_record: Final = _compiled_record()
_JSON_HEADERS: Final = [(b"content-type", b"application/json")]
__all__ = [  # the names other modules import from here, the routes' among them
    "DEFAULT_MAX_BODY",
    "DROP_ANSWERS",
    "PASS_THROUGH_METHODS",
    "PROXY_HEADERS",
    "REPLAY_DROP_ANSWERS",
    "RYBBIT_ROUTES",
    "EdgeDecision",
    "EdgeFilterMiddleware",
    "HitRoute",
    "normal_path",
    "page_of",
    "read_payload",
    "route_path",
]
_EVENT: Final = "Event not tracked"
_REPLAY: Final = "Session replay not recorded"
# What Rybbit answers for hits it does not track; the browser tracker ignores the body.
DROP_ANSWERS: Final[dict[Reason, tuple[int, dict[str, Any]]]] = {
    **{
        reason: (200, {"success": True, "message": message})
        for reason, message in EXCLUSION_MESSAGES.items()
    },
    Reason.invalid_ip: (200, {"success": True, "message": EXCLUSION_MESSAGES[Reason.excluded_ip]}),
    Reason.bot: (200, {"success": True}),
    Reason.unknown_site: (404, {"success": False, "error": "Site not found"}),
    Reason.invalid_payload: (400, {"success": False, "error": "Invalid payload"}),
    Reason.foreign_origin: (403, {"success": False, "error": "Origin not allowed"}),
    **{
        reason: (200, {"success": True, "message": "Event not tracked - rules unavailable"})
        for reason in UNAVAILABLE_REASONS
    },
}
# Rybbit's answers for session replays it does not record.
REPLAY_DROP_ANSWERS: Final[dict[Reason, tuple[int, dict[str, Any]]]] = {
    reason: (
        (status, {**body, "message": body["message"].replace(_EVENT, _REPLAY, 1)})
        if "message" in body
        else (status, body)
    )
    for reason, (status, body) in DROP_ANSWERS.items()
}
_TOO_LARGE_ANSWER: Final[tuple[int, dict[str, Any]]] = (
    413,
    {"success": False, "error": "Payload too large"},
)


class EdgeDecision(NamedTuple):
    """What the middleware decided for one hit, and from what (a tuple: cheap to make).

    ``site`` is the canonical site id the filter was asked about, or ``""`` when the payload
    named none it could use.
    """

    decision: Decision
    site: str
    client_ip: str | None
    user_agent: str


# What ``EdgeFilterMiddleware._scan`` picks out of a hit's headers: the user agent and the
# proxy header read as Latin-1 (the user agent "" when absent), Content-Encoding,
# Authorization and Origin raw.
_Scanned = tuple[str, str | None, bytes | None, bytes | None, bytes | None]
_FAST_ID_LENGTH: Final = 19  # shorter digit strings (no leading zero) are below 2**63


class _ColdHit(NamedTuple):
    """A hit read whole whose site's rules were not at hand, or that the request bot layers
    judge: what ``adecide`` (and ``RequestLayers.ajudge``) is given."""

    site: str
    client_ip: str | None
    user_agent: str
    path: object
    hostname: object
    origin: bytes | None
    payload: object = None  # for the request bot layers
    headers: RawHeaders = ()  # the scope's raw headers, for the header layer
    ingested: bool = False  # a verified ingest key: no bot layer applies


class _BodyFault(Enum):
    """Why a hit's body was not read whole."""

    too_large = "too_large"
    aborted = "aborted"


class EdgeFilterMiddleware:
    """Drops the track hits an ``EdgeFilter`` excludes; see the module docstring."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        edge_filter: EdgeFilter,
        trusted_proxies: Iterable[str] = (),
        proxy_header: ProxyHeader = "x-forwarded-for",
        paths: Iterable[str] | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY,
        routes: Iterable[HitRoute | str] | None = None,
        mode: Literal["drop", "annotate"] = "drop",
        ingest_key_verifier: IngestKeyVerifier | None = None,
        counters: DecisionCounters | None = None,
        cors: bool = True,
        check_origin: bool = False,
        bot_layers: RequestLayers | None = None,
        body_timeout: float | None = None,
    ) -> None:
        self.app = app
        self.body_timeout: float | None = None  # validated below, with the other options
        # The request bot layers: None when none is on, so that a hit pays one test for them.
        self.bot_layers = (
            bot_layers if isinstance(bot_layers, RequestLayers) and bot_layers else None
        )
        self._bot_layers_option: object = bot_layers
        self._await_bots = self.bot_layers is not None and self.bot_layers.needs_await
        self.cors = bool(cors)
        self.check_origin = bool(check_origin)
        self.edge_filter = edge_filter
        self.ingest_key_verifier = ingest_key_verifier
        self.counters = counters if counters is not None else DecisionCounters()
        self._counts: dict[Reason, dict[str, itertools.count[int]]] = {
            reason: {} for reason in Reason
        }
        self._tracked_counts = self._counts[_TRACKED_REASON]  # the usual hit's, bound
        # Whether a warm hit needs more than the filter's decision (request layers, origins).
        self._judges = self.bot_layers is not None or self.check_origin
        self.startup_error: ConfigError | None = None
        try:
            self._configure(
                trusted_proxies,
                proxy_header,
                paths=paths,
                routes=routes,
                max_body_bytes=max_body_bytes,
                mode=mode,
            )
            self.body_timeout = body_timeout_option(body_timeout)
        except ConfigError as error:
            if not in_event_loop():
                raise
            logger.error("EdgeFilterMiddleware refuses to start: %s", error)
            self.startup_error = error

    def _configure(
        self,
        trusted_proxies: Iterable[str],
        proxy_header: str,
        *,
        paths: Iterable[str] | None,
        routes: Iterable[HitRoute | str] | None,
        max_body_bytes: int,
        mode: str,
    ) -> None:
        """Validate and precompute the options; ``ConfigError`` names the first bad one."""
        source = getattr(self.edge_filter, "source", None)
        if not callable(getattr(self.edge_filter, "should_track", None)) or source is None:
            kind = type(self.edge_filter).__name__
            raise ConfigError(f"edge_filter must be an EdgeFilter, not a {kind}")
        layers = self._bot_layers_option
        if layers is not None and not isinstance(layers, RequestLayers):
            raise ConfigError(f"bot_layers {layers!r} is not a RequestLayers")
        if mode not in ("drop", "annotate"):
            raise ConfigError(f"mode {mode!r} is not 'drop' or 'annotate'")
        if isinstance(max_body_bytes, bool) or not isinstance(max_body_bytes, int):
            raise ConfigError(f"max_body_bytes {max_body_bytes!r} must be an int")
        if max_body_bytes <= 0:
            raise ConfigError(f"max_body_bytes {max_body_bytes!r} must be positive")
        if proxy_header not in PROXY_HEADERS:
            raise ConfigError(
                f"proxy_header {proxy_header!r} is not one of {', '.join(PROXY_HEADERS)}"
            )
        if isinstance(trusted_proxies, str):
            raise ConfigError("trusted_proxies must be a list of addresses or CIDRs, not a str")
        proxies = list(trusted_proxies)
        trusted, rejected = AddressTable.from_entries(p for p in proxies if p != "*")
        if rejected:
            reasons = "; ".join(
                f"{entry!r} {reason.removeprefix(f'excluded IP entry {entry!r} ')}"
                for entry, reason in rejected
            )
            raise ConfigError(f"trusted_proxies has invalid entries: {reasons}")
        if paths is not None and routes is not None:
            raise ConfigError("give paths or routes, not both (routes take paths too)")
        if isinstance(paths, str):
            raise ConfigError(f"paths must be a list of paths, not the str {paths!r}")
        chosen = routes if routes is not None else paths if paths is not None else RYBBIT_ROUTES
        self.routes = HitRoutes(chosen, max_body_bytes)
        self.paths = self.routes.paths
        # The hot path's one route lookup, a dict (``self._exact_routes.get(path)`` is a
        # specialized method call; a callable kept on the instance is looked up unspecialized).
        self._exact_routes = self.routes.exact
        self.trust_all = "*" in proxies
        self.trusted = trusted
        self.proxy_header = proxy_header
        self.max_body_bytes = max_body_bytes
        self.annotate = mode == "annotate"
        self._wanted: dict[bytes, int] = {
            b"user-agent": _USER_AGENT,
            proxy_header.encode("latin-1"): _FORWARDED,
            b"content-length": _LENGTH,
            b"content-encoding": _ENCODING,
            b"authorization": _AUTHORIZATION,
            b"origin": _ORIGIN,
        }
        # The same names by kind, for the compiled scan (matched by their bytes, not hashed).
        self._wanted_names = tuple(sorted(self._wanted, key=self._wanted.__getitem__))
        self._peer_verdicts: dict[str, bool] = {}
        # Proxy header values seen to be one plain address (not with ``forwarded``'s syntax).
        self._plain_hops: set[str] = set()
        self.rules_for = source.rules_for
        self._should_track = self.edge_filter.should_track

    async def __call__(  # noqa: PLR0912 - the pass path kept flat
        self, scope: Scope, receive: Receive, send: Send
    ) -> None:
        """Pass through what is not a hit; decide a hit, then answer it or pass it on.

        The pass path is flat on purpose: one scan of the headers, the body kept as the
        message that brought it when it came whole (and replayed as that same message), the
        decision taken without a coroutine when the site's rules are at hand.
        """
        if self.startup_error is not None:
            await self._refuse_to_start(scope, receive, send)
            return
        if self.body_timeout is not None and scope["type"] == "http":  # the slow-client guard
            deadline = BodyDeadline(receive, send, self.body_timeout, scope["headers"])
            receive, send = deadline.receive, deadline.send
        if scope["type"] != "http" or scope["method"] in PASS_THROUGH_METHODS:
            await self.app(scope, receive, send)
            return
        route = self._exact_routes.get(scope["path"]) or self.routes.match(scope)
        if route is None:
            await self.app(scope, receive, send)
            return
        headers = scope["headers"]
        hit = _scan_headers(headers, self._wanted_names, route.limit)  # False: Python scans
        if hit is False:
            hit = self._scan(headers, route)
        if hit is None:  # a declared length past the limit: the body is not read
            await self._refuse_too_large(scope, send)
            return
        message = await receive()
        if message["type"] != "http.request":  # the client is gone: there is no hit to decide
            return
        body = message.get("body") or b""
        if message.get("more_body", False) or len(body) > route.limit:
            whole = await self._read_rest(message, receive, route.limit)
            if whole is _BodyFault.aborted:
                return
            if whole is _BodyFault.too_large:
                await self._refuse_too_large(scope, send)
                return
            body = whole
            message = {"type": "http.request", "body": body, "more_body": False}
        site = route.site  # a session replay's, from its path; else the body names it
        outcome = (
            self._decide(scope, body, hit)
            if site is None
            else self._decide_replay(scope, body, hit, site, route.limit)
        )
        if isinstance(outcome, _ColdHit):  # the site's rules are not at hand: await them
            outcome = await self._decide_cold(outcome)
        decision = outcome[0]  # its decision (an index, cheaper than the field), counted
        if not decision.tracked and not self.annotate:
            answers = _ENCODED_DROPS if site is None else _ENCODED_REPLAY_DROPS
            await _answer(send, answers[decision.reason], self._cors_headers(scope))
            return
        state = scope.get("state")
        if state is None:
            scope["state"] = {"edgefilter": outcome}
        else:
            state["edgefilter"] = outcome
        app = self.app  # a callable attribute called as a local: a specialized call
        await app(scope, _replay(message, receive), send)

    async def _refuse_too_large(self, scope: Scope, send: Send) -> None:
        """Count and answer a body past ``max_body_bytes`` (413), unread or read in part."""
        self.counters.add(UNKNOWN_SITE_LABEL, Reason.invalid_payload)
        await _answer(send, _TOO_LARGE, self._cors_headers(scope))

    def _cors_headers(self, scope: Scope) -> list[tuple[bytes, bytes]]:
        """The CORS headers of the middleware's own answers, as Rybbit's ``@fastify/cors``
        setup answers its ingest paths: the request's ``Origin`` reflected, with
        ``Access-Control-Allow-Credentials: true``, and ``Vary: Origin``; none when
        ``cors=False``."""
        return cors_headers(scope) if self.cors else []

    def is_track_path(self, scope: Scope) -> bool:
        """Whether the request's path is a hit route's (see the module docstring)."""
        return self.routes.match(scope) is not None

    def _scan(self, headers: Iterable[tuple[bytes, bytes]], route: RouteMatch) -> _Scanned | None:
        """The headers a hit is decided on (``_Scanned``), in one pass; None when a
        ``Content-Length`` declares more than the route's limit. List headers repeated are
        joined with commas; a repeated singleton (``User-Agent``, ``Authorization``) is
        empty. The reference of ``_speedups.scan_headers``, and what reads the headers it
        leaves to Python."""
        wanted = self._wanted
        agent = forwarded = encoding = authorization = origin = None
        for name, value in headers:
            kind = wanted.get(name)
            if kind is None:
                continue
            if kind == _USER_AGENT:
                agent = value if agent is None else b""
            elif kind == _FORWARDED:
                forwarded = value if forwarded is None else b"%b, %b" % (forwarded, value)
            elif kind == _LENGTH:
                if value.isdigit() and (
                    int(value) > route.limit
                    if len(value) <= route.digits
                    else _declared_too_large(value, route.limit)
                ):
                    return None
            elif kind == _ENCODING:
                encoding = value if encoding is None else b"%b, %b" % (encoding, value)
            elif kind == _AUTHORIZATION:
                authorization = value if authorization is None else b""
            else:
                origin = value if origin is None else b"%b, %b" % (origin, value)
        return (
            "" if agent is None else agent.decode("latin-1"),
            None if forwarded is None else forwarded.decode("latin-1"),
            encoding,
            authorization,
            origin,
        )

    async def _read_rest(
        self, message: Message, receive: Receive, limit: int
    ) -> bytes | _BodyFault:
        """The whole body from its first ``message`` on; too large past the limit (counted);
        aborted when the client disconnects before its last chunk."""
        chunks: list[bytes] = []
        size = 0
        while True:
            chunk = message.get("body") or b""
            size += len(chunk)
            if size > limit:
                return _BodyFault.too_large
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)
            message = await receive()
            if message["type"] != "http.request":
                return _BodyFault.aborted

    def _decide(  # noqa: PLR0912, PLR0915 - the hot path kept flat: every call costs on it
        self, scope: Scope, body: bytes, hit: _Scanned
    ) -> EdgeDecision | _ColdHit:
        """The decision for a hit's body (see the module docstring for odd payloads), or
        what ``adecide`` needs when the site's rules are not at hand."""
        user_agent, forwarded, encoding, authorization, origin = hit
        client = scope.get("client")  # _client_address inline for a peer and a hop seen before
        peer = client[0] if type(client) is tuple and client else None
        trusted = self._peer_verdicts.get(peer) if type(peer) is str else None
        client_ip: str | None
        if trusted is not None and (not trusted or forwarded is None):
            client_ip = peer
        elif trusted and forwarded in self._plain_hops:
            client_ip = forwarded
        else:
            client_ip = self._client_address(client, forwarded)
        if encoding is not None and encoding.decode("latin-1").strip().lower() != "identity":
            return self._refused(INVALID_PAYLOAD, client_ip, user_agent)
        try:
            payload = _orjson_loads(body)
        except _JSONDecodeError:
            payload = read_payload(body)
        if type(payload) is not dict:
            return self._refused(INVALID_PAYLOAD, client_ip, user_agent)
        raw_site = payload.get("site_id")
        site: str
        if (  # the usual id, already canonical: ASCII digits, no leading zero, < 2**63
            type(raw_site) is str
            and 0 < len(raw_site) < _FAST_ID_LENGTH
            and raw_site[0] != "0"
            and raw_site.isdigit()
            and raw_site.isascii()
        ):
            site = raw_site
        else:
            if raw_site is None or isinstance(raw_site, _NOT_SITE_TYPES):
                return self._refused(INVALID_PAYLOAD, client_ip, user_agent)
            canonical = canonical_site_id(raw_site)
            if canonical is None:  # not a site id at all: no lookup, no fetch
                return self._refused(NOT_A_SITE, client_ip, user_agent)
            site = canonical
        verifier = self.ingest_key_verifier
        ingested = (
            verifier is not None
            and authorization is not None
            and _key_accepted(verifier, authorization.decode("latin-1"), site)
        )
        if ingested:
            override_ip = payload.get("ip_address")
            override_ua = payload.get("user_agent")
            client_ip = override_ip if isinstance(override_ip, str) else client_ip
            user_agent = override_ua if isinstance(override_ua, str) else user_agent
        path = payload.get("pathname")
        hostname = payload.get("hostname")
        try:
            rules_for = self.rules_for  # called as a local: a specialized call
            rules = rules_for(site)
        except Exception:  # a source's read must not break the hot path: adecide asks again
            rules = None
        judged = ingested or self.bot_layers is not None
        read: _ColdHit | None = None
        if rules is None or judged:  # what adecide or the request layers are given
            read = _new_tuple(
                _ColdHit,
                (
                    site,
                    client_ip,
                    user_agent,
                    path,
                    hostname,
                    origin,
                    payload,
                    scope["headers"],
                    ingested,
                ),
            )
            if rules is None or (self._await_bots and not ingested):  # the awaited path
                return read
        should_track = self._should_track  # called as a local: a specialized call
        decision = should_track(site, client_ip, user_agent, path=path, hostname=hostname)
        if ingested or self._judges:  # the request layers, the origin check
            if read is not None:
                decision = self._judged(read, decision)
            outcome = self._outcome(decision, site, client_ip, user_agent, origin)
            self._count(outcome[0], site)
            return outcome
        if decision is TRACKED:  # the usual hit: its count without the reason's lookups
            counter = self._tracked_counts.get(site)  # by the id the hit used: known sites
            if counter is None:  # its label is the site's own id, whichever form was used
                label = rules.site_id or rules.id or site
                counter = self._tracked_counts[site] = self.counters.counter(label, _TRACKED_REASON)
            next(counter)
        else:
            self._count(decision, site)
        edge_decision: EdgeDecision = _record(EdgeDecision, decision, site, client_ip, user_agent)
        return edge_decision

    def _refused(self, decision: Decision, client_ip: str | None, user_agent: str) -> EdgeDecision:
        """A hit refused before any rules lookup (an invalid payload, not a site id), counted."""
        self._count(decision, UNKNOWN_SITE_LABEL)
        return _new_tuple(EdgeDecision, (decision, UNKNOWN_SITE_LABEL, client_ip, user_agent))

    def _decide_replay(
        self, scope: Scope, body: bytes, hit: _Scanned, segment: str, limit: int
    ) -> EdgeDecision | _ColdHit:
        """The decision for a session replay: the site from the path's ``segment``, the
        page from the upload's ``metadata.pageUrl`` when the body can be read (sent as is,
        or gzip or deflate: an upload that decodes past ``limit`` is refused)."""
        user_agent, forwarded, encoding, _, origin = hit
        client_ip = self._client_address(scope.get("client"), forwarded)
        site = canonical_site_id(segment)
        if site is None:  # not a site id at all: no lookup, no fetch
            return self._refused(NOT_A_SITE, client_ip, user_agent)
        path = hostname = None
        payload = replay_payload(body, encoding, limit)
        if payload is _BodyFault.too_large:
            return self._refused(INVALID_PAYLOAD, client_ip, user_agent)
        metadata = payload.get("metadata") if isinstance(payload, dict) else None
        if isinstance(metadata, dict):
            path, hostname = page_of(metadata.get("pageUrl"))
        try:
            at_hand = self.rules_for(site) is not None
        except Exception:  # a source's read must not break the hot path: adecide asks again
            at_hand = False
        cold = _ColdHit(
            site, client_ip, user_agent, path, hostname, origin, payload, scope["headers"]
        )
        if not at_hand or self._await_bots:  # the awaited path from here
            return cold
        decision = self.edge_filter.should_track(
            site, client_ip, user_agent, path=path, hostname=hostname
        )
        if self.bot_layers is not None:  # the request layers judge replays as they do hits
            decision = self._judged(cold, decision)
        outcome = self._outcome(decision, site, client_ip, user_agent, origin)
        self._count(outcome[0], site)
        return outcome

    async def _decide_cold(self, hit: _ColdHit) -> EdgeDecision:
        """The decision for a hit whose site's rules were not at hand: ``adecide`` awaits
        them (up to the source's ``cold_wait``)."""
        decision = await self.edge_filter.adecide(
            hit.site, hit.client_ip, hit.user_agent, path=hit.path, hostname=hit.hostname
        )
        if (
            self._await_bots
            and not hit.ingested
            and (decision.tracked or decision.reason is Reason.bot)
        ):
            decision = await self._ajudged(hit, decision)
        elif hit.ingested or self.bot_layers is not None:
            decision = self._judged(hit, decision)
        outcome = self._outcome(decision, hit.site, hit.client_ip, hit.user_agent, hit.origin)
        self._count(outcome[0], hit.site)
        return outcome

    def _judged(self, hit: _ColdHit, decision: Decision) -> Decision:
        """``decision`` after the bot layers that need no await: for server-side ingestion
        none (a user-agent bot is tracked); else, for a hit the filter tracks or calls a bot
        by its user agent, a bot naming every layer that matched."""
        if hit.ingested:  # server-side ingestion skips every bot layer, as Rybbit's does
            return TRACKED if decision.reason is Reason.bot else decision
        layers = self.bot_layers
        if layers is None or not (decision.tracked or decision.reason is Reason.bot):
            return decision
        request = _new_tuple(
            HitRequest, (hit.headers, hit.payload, hit.client_ip, hit.user_agent, hit.path)
        )
        site = hit.site
        matched = layers.judge(
            site, self.rules_for(site), request, user_agent_bot=not decision.tracked
        )
        return Decision(False, Reason.bot, matched) if matched else decision

    async def _ajudged(self, hit: _ColdHit, decision: Decision) -> Decision:
        """``_judged`` when the rates are in Redis: the request layers awaited."""
        assert self.bot_layers is not None
        request = _new_tuple(
            HitRequest, (hit.headers, hit.payload, hit.client_ip, hit.user_agent, hit.path)
        )
        matched = await self.bot_layers.ajudge(
            hit.site, self.rules_for(hit.site), request, user_agent_bot=not decision.tracked
        )
        return Decision(False, Reason.bot, matched) if matched else decision

    def _outcome(
        self,
        decision: Decision,
        site: str,
        client_ip: str | None,
        user_agent: str,
        origin: bytes | None,
    ) -> EdgeDecision:
        """The hit's ``EdgeDecision``, the filter's ``decision`` checked against the
        ``Origin`` with ``check_origin``."""
        if self.check_origin and decision.tracked and not self._origin_allowed(site, origin):
            decision = FOREIGN_ORIGIN
        return _new_tuple(EdgeDecision, (decision, site, client_ip, user_agent))

    def _origin_allowed(self, site: str, origin: bytes | None) -> bool:
        """``check_origin``: whether the hit's ``Origin`` is the site's domain or one of its
        subdomains (``www.`` aside). A hit without ``Origin`` (server-side, an app) and a
        site without a domain, or a mobile one, are not checked."""
        rules = self.rules_for(site)
        if origin is None or rules is None or rules.domain is None or rules.mobile:
            return True
        return origin_matches(origin.decode("latin-1"), rules.domain)

    def _count(self, decision: Decision, site: str) -> None:
        """Count the decision under its label: the known site's own id (one per site,
        whichever form of it the hit used), or the one shared label of unknown and
        unresolved ids. The counts are kept by reason and label, bounded as the labels are."""
        reason = decision.reason
        if reason in UNRESOLVED_REASONS:
            label = UNKNOWN_SITE_LABEL
        else:
            rules = self.rules_for(site)
            label = site if rules is None else rules.site_id or rules.id or site
        counts = self._counts[reason]
        counter = counts.get(label)
        if counter is None:
            counter = counts[label] = self.counters.counter(label, reason)
        next(counter)

    def client_ip(self, scope: Scope, headers: Mapping[str, str]) -> str | None:
        """The client's address: the peer, or what trusted proxies say it was; None when it
        cannot be read (see the module docstring). ``headers`` by lower-case name."""
        value = headers.get(self.proxy_header)
        if value is not None:  # read as the header's bytes are: Latin-1
            value = value.encode("latin-1", errors="replace").decode("latin-1")
        return self._client_address(scope.get("client"), value)

    def _client_address(self, client: object, forwarded: str | None) -> str | None:
        """``client_ip`` from the scope's ``client`` and the ``proxy_header`` value (its
        bytes read as Latin-1)."""
        if not client:
            return None
        peer = client[0]  # type: ignore[index]
        if type(peer) is not str:
            peer = str(peer)
        verdicts = self._peer_verdicts  # the peers are few (proxies, or the clients)
        trusted = verdicts.get(peer)
        if trusted is None:
            trusted = self._is_trusted(peer)
            if len(verdicts) >= _PEER_VERDICTS:
                verdicts.clear()
            verdicts[peer] = trusted
        if not trusted or forwarded is None:
            return peer
        value = forwarded
        if self.proxy_header != "forwarded":
            try:  # one plain address (the usual case): the client whether trusted or not
                _inet_pton(_AF_INET6 if ":" in value else _AF_INET, value)
            except (OSError, ValueError):
                pass
            else:
                plain = self._plain_hops  # what _decide reads without this call
                if len(plain) >= _PEER_VERDICTS:
                    plain.clear()
                plain.add(value)
                return value
        return self._forwarded_client(value)

    def _forwarded_client(self, value: str) -> str | None:
        """The client named by a trusted peer's ``proxy_header`` value (whole, joined)."""
        if self.proxy_header in _SINGLE_HOP_HEADERS:
            return None if "," in value else hop_address(value)
        hops = forwarded_hops(value) if self.proxy_header == "forwarded" else value.split(",")
        addresses = []
        for hop in reversed(hops):
            address = None if hop is None else hop_address(hop)
            if address is None or not self._is_trusted(address):
                return address
            addresses.append(address)
        return addresses[-1]  # every hop is a trusted proxy: the left-most one is the client

    def _is_trusted(self, address: str) -> bool:
        return self.trust_all or address in self.trusted

    async def _refuse_to_start(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Fail the lifespan startup with the configuration error; raise it on other scopes."""
        error = self.startup_error
        assert error is not None
        if scope["type"] != "lifespan":
            raise error
        message = await receive()
        if message["type"] == "lifespan.startup":
            text = f"EdgeFilterMiddleware refuses to start: {error}"
            await send({"type": "lifespan.startup.failed", "message": text})


def cors_headers(scope: Scope) -> list[tuple[bytes, bytes]]:
    """Rybbit's public CORS for an answer to ``scope``: ``Vary: Origin``, and the request's
    ``Origin`` reflected with ``Access-Control-Allow-Credentials: true`` when it sent one."""
    headers = [(b"vary", b"Origin")]
    for name, value in scope["headers"]:
        if name == b"origin":
            headers.append((b"access-control-allow-origin", value))
            headers.append((b"access-control-allow-credentials", b"true"))
            break
    return headers


def read_payload(body: bytes) -> object:
    """The JSON value in ``body`` as the most lenient parser would read it; None if none can.

    orjson first (the common case); then ``json.loads`` on the text as
    ``json.detect_encoding`` finds it, invalid bytes read as U+FFFD.
    """
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(body.decode(json.detect_encoding(body), errors="replace"))
    except (ValueError, RecursionError):  # not JSON, digits past the int limit, too deep
        return None


# The encodings a replay upload is decoded from to read its page (zlib's window bits).
_GZIP_WBITS: Final = 16 + zlib.MAX_WBITS
_DECODED_ENCODINGS: Final = {"gzip": _GZIP_WBITS, "x-gzip": _GZIP_WBITS, "deflate": zlib.MAX_WBITS}


def replay_payload(body: bytes, encoding: bytes | None, limit: int) -> object:
    """A session replay upload's JSON value (None when it cannot be read), its body sent
    as is or gzip or deflate encoded; ``_BodyFault.too_large`` when it decodes past ``limit``
    bytes (decoded in bounded steps, so a small bomb stays small). A client that compresses
    its upload does not get its page past the path and hostname rules: an origin that decodes
    it would read that page."""
    name = "identity" if encoding is None else encoding.decode("latin-1").strip().lower()
    if name == "identity":
        return read_payload(body)
    wbits = _DECODED_ENCODINGS.get(name)
    # br, a list of encodings, one it is not: read as is, as a server that ignores the
    # header reads it (Fastify does); encoded bytes are no JSON, so that adds only a page
    decoded = body if wbits is None else _decoded(body, wbits, limit)
    if decoded is None or len(decoded) > limit:
        return _BodyFault.too_large
    return read_payload(decoded or body)


_GZIP_MEMBER: Final = b"\x1f\x8b"
_MAX_GZIP_MEMBERS: Final = 8  # a client sends one; each one more costs a copy of the rest


def _decoded(body: bytes, wbits: int, limit: int) -> bytes | None:
    """``body`` decoded, at most ``limit + 1`` bytes of it; every member of a gzip body, as
    every gzip reader decodes them (what follows the last that is no member is ignored, as
    Node's gunzip ignores it); None past ``_MAX_GZIP_MEMBERS``; ``b""`` when it is not what
    it says it is (then read as is)."""
    decoded = b""
    rest = body
    for _ in range(_MAX_GZIP_MEMBERS):
        decoder = zlib.decompressobj(wbits)
        try:
            decoded += decoder.decompress(rest, limit + 1 - len(decoded))
        except zlib.error:
            return b""
        rest = decoder.unused_data
        if len(decoded) > limit or wbits != _GZIP_WBITS or not decoder.eof:
            return decoded
        if not rest.startswith(_GZIP_MEMBER):
            return decoded
    return None


def origin_matches(origin: str, domain: str) -> bool:
    """Whether an ``Origin`` header names ``domain`` (bare: lower case, no ``www.``) or a
    subdomain of it; ``null``, an opaque or unparsable origin never does."""
    try:
        host = urlsplit(origin.strip()).hostname
    except ValueError:
        return False
    if not host:
        return False
    host = host.rstrip(".")
    return host == domain or host.endswith("." + domain)


def forwarded_hops(value: str) -> list[str | None]:
    """The ``for=`` value of each element of an RFC 7239 ``Forwarded`` header, in order;
    None for an element without exactly one ``for=``."""
    hops: list[str | None] = []
    for element in value.split(","):
        tokens = [
            token
            for name, _, token in (pair.strip().partition("=") for pair in element.split(";"))
            if name.strip().lower() == "for"
        ]
        if len(tokens) != 1:
            hops.append(None)
            continue
        token = tokens[0].strip()
        if len(token) >= 2 and token[0] == token[-1] == '"':
            token = token[1:-1]
        hops.append(token)
    return hops


def hop_address(hop: str) -> str | None:
    """The address of one forwarding hop, its port and IPv6 brackets stripped; None when it
    is not an address (``unknown``, ``_obfuscated``, empty, garbage)."""
    text = hop.strip()
    if text.startswith("["):
        inner, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            return None
        text = inner
    elif text.count(":") == 1:  # IPv4 with a port; bare IPv6 has two colons or more
        text = text.partition(":")[0]
    try:
        _inet_pton(_AF_INET6 if ":" in text else _AF_INET, text)
    except (OSError, ValueError):  # ValueError: an embedded NUL
        return None
    return text


def _declared_too_large(value: bytes, limit: int) -> bool:
    """Whether a ``Content-Length`` value declares more than ``limit`` bytes (any digits)."""
    if not value.isdigit():
        return False
    digits = value.lstrip(b"0")
    return len(digits) > len(str(limit)) or int(digits or b"0") > limit


def _key_accepted(verifier: IngestKeyVerifier, authorization: str, site: str) -> bool:
    """Whether the request's Bearer key is one the verifier accepts for ``site``."""
    scheme, _, key = authorization.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        return False
    try:
        return bool(verifier(key.strip(), site))
    except Exception:  # a failing verifier accepts nothing
        return False


def _replay(message: Message, receive: Receive) -> Receive:
    """A receive that gives the message holding the whole body once (the very one the
    server sent, when it came whole), then defers to the real one."""
    pending: Message | None = message

    async def replay() -> Message:
        nonlocal pending
        if pending is not None:
            given, pending = pending, None
            return given
        return await receive()

    return replay


def _encode(status: int, body: dict[str, Any]) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """A JSON answer as ASGI wants it: status, headers, body bytes (made once, at import)."""
    content = json.dumps(body, separators=(",", ":")).encode("utf-8")
    headers = [*_JSON_HEADERS, (b"content-length", str(len(content)).encode("ascii"))]
    return status, headers, content


_ENCODED_DROPS: Final = {reason: _encode(*answer) for reason, answer in DROP_ANSWERS.items()}
_ENCODED_REPLAY_DROPS: Final = {
    reason: _encode(*answer) for reason, answer in REPLAY_DROP_ANSWERS.items()
}
_TOO_LARGE: Final = _encode(*_TOO_LARGE_ANSWER)


async def _answer(
    send: Send,
    answer: tuple[int, list[tuple[bytes, bytes]], bytes],
    extra_headers: list[tuple[bytes, bytes]],
) -> None:
    status, headers, content = answer
    await send(
        {"type": "http.response.start", "status": status, "headers": [*headers, *extra_headers]}
    )
    await send({"type": "http.response.body", "body": content})
