"""``create_proxy_app``: the proxy as one ASGI app, the filter in front of the relay.

``EdgeFilterMiddleware`` decides every hit (track, identify, session replay) and answers the
drops itself, as Rybbit answers them, readable cross-origin; the ``Relay`` behind it relays
the tracked hits and the rest of Rybbit's ingest surface to the upstream, streamed both
ways (see ``edgefilter.proxy._relay``), and answers ``/healthz``, ``/readyz`` and
``/metrics`` (see ``edgefilter.proxy._health``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final

import httpx

from .._counters import DecisionCounters
from .._errors import ConfigError
from .._filter import EdgeFilter
from .._routes import MAX_REPLAY_BODY, HitRoute
from .._seconds import as_seconds
from ..middleware import DEFAULT_MAX_BODY, EdgeFilterMiddleware
from ._health import ProxyHealth
from ._relay import DEFAULT_CLIENT_ADDRESS_HEADERS, MAX_RELAYED_BODY, UPSTREAM_TIMEOUT, Relay

BODY_TIMEOUT: Final = 30.0  # seconds for a whole body: a 10 MiB replay at about 3 Mbit/s


def create_proxy_app(
    upstream: str,
    edge_filter: EdgeFilter,
    *,
    trusted_proxies: Iterable[str] = (),
    client_address_headers: Iterable[str] = DEFAULT_CLIENT_ADDRESS_HEADERS,
    upstream_timeout: float = UPSTREAM_TIMEOUT,
    relay_all: bool = False,
    max_body_bytes: int = DEFAULT_MAX_BODY,
    max_replay_body_bytes: int = MAX_REPLAY_BODY,
    body_timeout: float | None = BODY_TIMEOUT,
    transport: httpx.AsyncBaseTransport | None = None,
    counters: DecisionCounters | None = None,
    on_shutdown: Iterable[Callable[[], Awaitable[object]]] = (),
    **middleware_options: Any,
) -> EdgeFilterMiddleware:
    """The proxy: ``EdgeFilterMiddleware`` in front of a ``Relay`` to ``upstream``.

    ``max_body_bytes`` bounds track and identify bodies, ``max_replay_body_bytes`` session
    replay uploads (413 past either); other relayed bodies are bounded by Rybbit's own
    10 MB. ``body_timeout``: the seconds a request's whole body may take to arrive (408
    past it; None: no deadline), since the proxy is the front server that slow clients
    meet. ``client_address_headers`` are the headers the upstream reads the visitor's
    address from (``()`` sends none). ``relay_all`` relays paths off the ingest surface too,
    unfiltered. ``on_shutdown``: coroutine functions awaited at the lifespan shutdown (what
    the caller opened for the proxy: its rules source, a Redis client). The other keywords
    go to the middleware. Bad options raise ``ConfigError``.
    """
    if as_seconds(upstream_timeout) is None:
        raise ConfigError(f"upstream_timeout {upstream_timeout!r} must be a finite number above 0")
    counters = counters if counters is not None else DecisionCounters()
    try:
        relay = Relay(
            upstream,
            transport if transport is not None else httpx.AsyncHTTPTransport(),
            timeout=upstream_timeout,
            client_address_headers=client_address_headers,
            relay_all=relay_all,
            max_body_bytes=MAX_RELAYED_BODY,
        )
    except ValueError as error:
        raise ConfigError(str(error)) from None
    proxy = EdgeFilterMiddleware(
        relay,
        edge_filter=edge_filter,
        trusted_proxies=trusted_proxies,
        routes=(
            HitRoute("/api/track"),
            HitRoute("/api/identify"),
            HitRoute("/api/session-replay/record/{site_id}", max_replay_body_bytes),
        ),
        max_body_bytes=max_body_bytes,
        counters=counters,
        body_timeout=body_timeout,
        **middleware_options,
    )
    relay.middleware = proxy
    relay.on_shutdown.extend(on_shutdown)
    health = ProxyHealth(edge_filter, counters, relay.counters)
    relay.own.update(
        {"/healthz": health.healthz, "/readyz": health.readyz, "/metrics": health.metrics}
    )
    return proxy
