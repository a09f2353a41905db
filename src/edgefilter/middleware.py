"""``EdgeFilterMiddleware``: pure ASGI, in front of a Rybbit-compatible track endpoint.

For a POST to one of ``paths`` it reads the body (at most ``max_body_bytes``; 413 past it),
takes ``site_id`` from the Rybbit track payload, finds the client's address and user agent,
and asks the ``EdgeFilter``. A dropped hit is answered the way Rybbit answers it and never
reaches the app; a tracked hit reaches the app with exactly the original body and headers.
Every other request (other paths and methods, websockets, lifespan) passes straight
through, unbuffered. A body that is not JSON, or has no ``site_id``, is handed to the app
unchanged (Rybbit answers it with 400); the middleware itself never answers 500.

The client address is the socket peer, unless the peer is a trusted proxy: then it is the
right-most ``Forwarded`` ``for=`` (RFC 7239) or ``X-Forwarded-For`` entry that is not itself
a trusted proxy. The payload's ``ip_address``/``user_agent`` overrides count only when an
``ingest_key_verifier`` accepts the request's Bearer key for the site.

``mode="annotate"`` passes every hit on; either way the decision is in
``scope["state"]["edgefilter"]`` (an ``EdgeDecision``) for hits that reach the app.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any, Final, Literal, NamedTuple

import orjson

from ._counters import DecisionCounters
from ._decisions import UNAVAILABLE_REASONS, Decision, Reason
from ._errors import ConfigError
from ._filter import EdgeFilter
from ._tables import AddressTable

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
IngestKeyVerifier = Callable[[str, str], bool]

DEFAULT_MAX_BODY: Final = 64 * 1024
_JSON_HEADERS: Final = [(b"content-type", b"application/json")]
# What Rybbit answers for hits it does not track; the browser tracker ignores the body.
DROP_ANSWERS: Final[dict[Reason, tuple[int, dict[str, Any]]]] = {
    Reason.excluded_ip: (200, {"success": True, "message": "Event not tracked - IP excluded"}),
    Reason.invalid_ip: (200, {"success": True, "message": "Event not tracked - IP excluded"}),
    Reason.excluded_country: (
        200,
        {"success": True, "message": "Event not tracked - country excluded"},
    ),
    Reason.bot: (200, {"success": True}),
    Reason.unknown_site: (404, {"success": False, "error": "Site not found"}),
    **{
        reason: (200, {"success": True, "message": "Event not tracked - rules unavailable"})
        for reason in UNAVAILABLE_REASONS
    },
}
_TOO_LARGE_ANSWER: Final[tuple[int, dict[str, Any]]] = (
    413,
    {"success": False, "error": "Payload too large"},
)


class EdgeDecision(NamedTuple):
    """What the middleware decided for one hit, and from what (a tuple: cheap to make)."""

    decision: Decision
    site: str
    client_ip: str | None
    user_agent: str


class EdgeFilterMiddleware:
    """Drops the track hits an ``EdgeFilter`` excludes; see the module docstring."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        edge_filter: EdgeFilter,
        trusted_proxies: Iterable[str] = (),
        paths: Iterable[str] = ("/api/track",),
        max_body_bytes: int = DEFAULT_MAX_BODY,
        mode: Literal["drop", "annotate"] = "drop",
        ingest_key_verifier: IngestKeyVerifier | None = None,
        counters: DecisionCounters | None = None,
    ) -> None:
        if mode not in ("drop", "annotate"):
            raise ConfigError(f"mode {mode!r} is not 'drop' or 'annotate'")
        if max_body_bytes <= 0:
            raise ConfigError(f"max_body_bytes {max_body_bytes!r} must be positive")
        proxies = list(trusted_proxies)
        if isinstance(trusted_proxies, str):
            raise ConfigError("trusted_proxies must be a list of addresses or CIDRs, not a str")
        self.trust_all = "*" in proxies
        self.trusted, rejected = AddressTable.from_entries(p for p in proxies if p != "*")
        if rejected:
            reasons = "; ".join(reason for _, reason in rejected)
            raise ConfigError(f"trusted_proxies has invalid entries: {reasons}")
        self.app = app
        self.edge_filter = edge_filter
        self.paths = frozenset(paths)
        self.max_body_bytes = max_body_bytes
        self.annotate = mode == "annotate"
        self.ingest_key_verifier = ingest_key_verifier
        self.counters = counters if counters is not None else DecisionCounters()
        self.rules_for = edge_filter.source.rules_for
        self.cold_wait: float = getattr(edge_filter.source, "cold_wait", 0.25)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        body, complete = await self._read_body(scope, receive)
        if not complete:
            await _answer(send, _TOO_LARGE)
            return
        outcome = await self._decide(scope, body)
        if outcome is not None:
            self.counters.add(outcome.site, outcome.decision.reason)
            if not outcome.decision.tracked and not self.annotate:
                await _answer(send, _ENCODED_DROPS[outcome.decision.reason])
                return
            scope.setdefault("state", {})["edgefilter"] = outcome
        await self.app(scope, _replay(body, receive), send)

    async def _read_body(self, scope: Scope, receive: Receive) -> tuple[bytes, bool]:
        """The whole body, or (partial, False) once it exceeds the limit."""
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_body_bytes:
                return b"", False
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # disconnected: nothing to decide
                return b"".join(chunks), True
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return b"", False
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks), True

    async def _decide(self, scope: Scope, body: bytes) -> EdgeDecision | None:
        """The decision for a track payload, or None when it is not one (the app answers)."""
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:  # also invalid UTF-8, nesting past 1,024, huge ints
            return None
        site = payload.get("site_id") if isinstance(payload, dict) else None
        if isinstance(site, int) and not isinstance(site, bool):
            site = str(site)
        if not isinstance(site, str) or not site:
            return None
        headers = _headers(scope)
        client_ip = self.client_ip(scope, headers)
        user_agent = headers.get("user-agent", "")
        verifier = self.ingest_key_verifier
        if verifier is not None and _key_accepted(verifier, headers, site):
            override_ip = payload.get("ip_address")
            override_ua = payload.get("user_agent")
            client_ip = override_ip if isinstance(override_ip, str) else client_ip
            user_agent = override_ua if isinstance(override_ua, str) else user_agent
        if self.rules_for(site) is None:  # cold: wait for the fetch without blocking the loop
            await self.edge_filter.ensure(site, self.cold_wait)
        decision = self.edge_filter.should_track(site, client_ip, user_agent)
        return EdgeDecision(decision, site, client_ip, user_agent)

    def client_ip(self, scope: Scope, headers: dict[str, str]) -> str | None:
        """The client's address: the peer, or what trusted proxies say it was."""
        client = scope.get("client")
        peer = str(client[0]) if client else None
        if peer is None or not self._is_trusted(peer):
            return peer
        if "forwarded" in headers:
            hops = _forwarded_for(headers["forwarded"])
        elif "x-forwarded-for" in headers:
            hops = [hop.strip() for hop in headers["x-forwarded-for"].split(",")]
        else:
            return peer
        for hop in reversed(hops):
            address = _strip_port(hop)
            if not self._is_trusted(address):
                return address
        return _strip_port(hops[0]) if hops else peer

    def _is_trusted(self, address: str) -> bool:
        return self.trust_all or address in self.trusted


_WANTED_HEADERS: Final = {
    name.encode("latin-1"): name
    for name in ("user-agent", "x-forwarded-for", "forwarded", "authorization")
}


def _key_accepted(verifier: IngestKeyVerifier, headers: dict[str, str], site: str) -> bool:
    """Whether the request's Bearer key is one the verifier accepts for ``site``."""
    scheme, _, key = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        return False
    try:
        return bool(verifier(key.strip(), site))
    except Exception:  # a failing verifier accepts nothing
        return False


def _headers(scope: Scope) -> dict[str, str]:
    """The headers the middleware reads, by lower-case name; repeats joined with commas.

    ASGI requires lower-case names; one pass, and only these four are decoded.
    """
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope["headers"]:
        name = _WANTED_HEADERS.get(raw_name)
        if name is not None:
            value = raw_value.decode("latin-1")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


def _forwarded_for(value: str) -> list[str]:
    """The ``for=`` values of an RFC 7239 ``Forwarded`` header, in order."""
    hops = []
    for element in value.split(","):
        for pair in element.split(";"):
            name, _, token = pair.strip().partition("=")
            if name.strip().lower() == "for":
                hops.append(token.strip().strip('"'))
    return hops


def _strip_port(hop: str) -> str:
    """``1.2.3.4:80`` -> ``1.2.3.4``; ``[2001:db8::1]:80`` -> ``2001:db8::1``; else as is."""
    if hop.startswith("["):
        return hop[1:].partition("]")[0]
    if hop.count(":") == 1:  # IPv4 with a port; bare IPv6 has two colons or more
        return hop.partition(":")[0]
    return hop


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that gives the buffered body once, then defers to the real one."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _encode(status: int, body: dict[str, Any]) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """A JSON answer as ASGI wants it: status, headers, body bytes (made once, at import)."""
    content = json.dumps(body, separators=(",", ":")).encode("utf-8")
    headers = [*_JSON_HEADERS, (b"content-length", str(len(content)).encode("ascii"))]
    return status, headers, content


_ENCODED_DROPS: Final = {reason: _encode(*answer) for reason, answer in DROP_ANSWERS.items()}
_TOO_LARGE: Final = _encode(*_TOO_LARGE_ANSWER)


async def _answer(send: Send, answer: tuple[int, list[tuple[bytes, bytes]], bytes]) -> None:
    status, headers, content = answer
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": content})
