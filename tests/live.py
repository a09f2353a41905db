"""Real servers on loopback for the tests: uvicorn in a thread, on a free (or given) port."""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from typing import Any


def unused_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class FaultInjector:
    """ASGI wrapper: counts requests per path, and answers faults instead of the app.

    ``mode`` is ``ok`` (pass through), ``500``, ``403``, ``malformed`` (200 with a non-JSON
    body) or ``slow`` (sleep ``delay`` seconds, then pass through).
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.mode = "ok"
        self.delay = 0.0
        self.requests: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/api/"):
            await self.app(scope, receive, send)
            return
        self.requests[f"{scope['method']} {scope['path']}"] += 1
        if self.mode == "slow":
            await asyncio.sleep(self.delay)
        elif self.mode in ("500", "403", "malformed"):
            status = 200 if self.mode == "malformed" else int(self.mode)
            body = b"<html>oops" if self.mode == "malformed" else b'{"error": "injected"}'
            await send({"type": "http.response.start", "status": status, "headers": []})
            await send({"type": "http.response.body", "body": body})
            self.statuses[status] += 1
            return

        async def counting_send(message: Any) -> None:
            if message["type"] == "http.response.start":
                self.statuses[message["status"]] += 1
            await send(message)

        await self.app(scope, receive, counting_send)
