"""Serving ASGI apps with uvicorn: the one uvicorn config everything here runs with.

``uvicorn_config`` turns uvicorn's proxy headers off (``proxy_headers=False``): with them
on, uvicorn's ``ProxyHeadersMiddleware`` rewrites ``scope["client"]`` from
``X-Forwarded-For`` for any peer in ``forwarded_allow_ips`` (``FORWARDED_ALLOW_IPS``,
127.0.0.1 and ::1 by default) before ``EdgeFilterMiddleware`` runs, so a forwarder on
loopback would let every client choose its own address, and ``trusted_proxies`` would judge
the already-rewritten one. Client addresses are the middleware's job alone.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any, Final

import uvicorn

# Settings no caller may change: see the module docstring.
FIXED_SETTINGS: Final[dict[str, Any]] = {"proxy_headers": False}


def uvicorn_config(
    app: Any, *, host: str = "127.0.0.1", port: int = 8000, **options: Any
) -> uvicorn.Config:
    """The uvicorn config to serve ``app`` with: ``options`` as given, proxy headers off."""
    return uvicorn.Config(app, host=host, port=port, **{**options, **FIXED_SETTINGS})


def serve(app: Any, *, host: str, port: int, workers: int = 1, **options: Any) -> bool:
    """Serve ``app`` in the foreground until interrupted (the CLI's servers); False when it
    did not start. uvicorn exits the process (status 3) when the app's startup fails.

    With ``workers`` over 1, ``app`` must be an import string (``factory=True`` for a
    factory): uvicorn's supervisor starts that many processes, each importing it, with the
    same fixed settings.
    """
    if workers > 1:
        if not isinstance(app, str):
            raise TypeError("serving with several workers needs the app as an import string")
        uvicorn.run(app, host=host, port=port, workers=workers, **{**options, **FIXED_SETTINGS})
        return True
    server = uvicorn.Server(uvicorn_config(app, host=host, port=port, **options))
    server.run()
    return server.started


@contextmanager
def serve_in_thread(
    app: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    startup_timeout: float = 10.0,
    **options: Any,
) -> Iterator[str]:
    """Serve ``app`` on ``host:port`` (0: a free port) until the block ends; yields its URL.

    ``options`` go to ``uvicorn_config`` (log level warning and no websockets unless given).
    Raises ``RuntimeError`` when the server does not start (its lifespan startup failed).
    """
    settings = {"log_level": "warning", "ws": "none", **options}
    server = uvicorn.Server(uvicorn_config(app, host=host, port=port, **settings))
    thread = threading.Thread(
        target=_run_quietly, args=(server,), name="edgefilter-uvicorn", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            server.should_exit = True
            raise RuntimeError(f"uvicorn did not start on {host}:{port}")
        time.sleep(0.005)
    bound = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{bound}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _run_quietly(server: uvicorn.Server) -> None:
    """``server.run`` in a thread: uvicorn's exit on a failed startup ends only the thread
    (``server.started`` stays False, which ``serve_in_thread`` reports)."""
    with suppress(SystemExit):
        server.run()
