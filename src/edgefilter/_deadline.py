"""A deadline on a request's body: the slow-client guard of the front server.

A client that sends its headers and then its body a byte at a time holds a connection, a
task and its buffers for as long as it likes; in front of the collectors (``edgefilter
proxy``) nothing else bounds that. ``BodyDeadline`` wraps one request's ``receive`` and
``send``: the whole body must have arrived ``seconds`` after the request came, else the
client is answered ``408 Request Timeout`` (``Connection: close``), the app behind is told
the client is gone (``http.disconnect``, which the middleware and the relay already handle:
nothing is decided, nothing is relayed) and what it sends after that is dropped. Once the
body is whole, ``receive`` passes through untouched (an app may wait on it for a
disconnect for as long as it answers). A response that starts before the body is whole
(a 413 on a declared length, ``/healthz``, a path nobody reads the body of) says
``Connection: close``: the server reads on what is left of the body once the request's task
is gone, every byte restarting its keep-alive clock, so a client dripping it held the
connection for ever.
"""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from typing import Any, Final

from ._errors import ConfigError
from ._seconds import as_seconds

Message = MutableMapping[str, Any]
TIMED_OUT_BODY: Final = b'{"success":false,"error":"Request body timeout"}'
DISCONNECT: Final = {"type": "http.disconnect"}


def body_timeout_option(value: object) -> float | None:
    """``body_timeout`` as the middleware takes it: None (no deadline) or seconds > 0."""
    if value is None:
        return None
    seconds = as_seconds(value)
    if seconds is None:
        raise ConfigError(f"body_timeout {value!r} must be None or a finite number above 0")
    return seconds


def has_body(headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether a request with ``headers`` comes with a body (HTTP/1.1 frames one by
    ``Transfer-Encoding`` or a ``Content-Length`` above 0; without either it has none)."""
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"transfer-encoding" or (
            lowered == b"content-length" and value.strip() != b"0"
        ):
            return True
    return False


class BodyDeadline:
    """One request's ``receive`` and ``send``, its body due ``seconds`` from now."""

    __slots__ = (
        "_answered",
        "_body_done",
        "_deadline",
        "_headers",
        "_receive",
        "_send",
        "_started",
    )

    def __init__(
        self, receive: Any, send: Any, seconds: float, headers: list[tuple[bytes, bytes]]
    ) -> None:
        self._receive = receive
        self._send = send
        self._deadline = asyncio.get_running_loop().time() + seconds
        self._body_done = False
        self._headers = headers  # the request's: read only if it is answered before its body
        self._started = False  # a response begun: a 408 can no longer be sent
        self._answered = False  # the 408 went out: what the app sends is dropped

    async def receive(self) -> Message:
        """The next message; ``http.disconnect`` (after the 408) once the body is late."""
        if self._body_done:
            message: Message = await self._receive()
            return message
        try:
            async with asyncio.timeout_at(self._deadline):
                message = await self._receive()
        except TimeoutError:
            await self._time_out()
            return dict(DISCONNECT)
        if message.get("type") != "http.request" or not message.get("more_body", False):
            self._body_done = True
        return message

    async def send(self, message: Message) -> None:
        """Send on, unless the 408 answered the request already."""
        if self._answered:
            return
        if message.get("type") == "http.response.start":
            self._started = True
            # Answered before its body is whole: the rest would hold the connection. Its
            # framing is read only then, not on every request.
            if not self._body_done and has_body(self._headers):
                headers = [*message.get("headers", ()), (b"connection", b"close")]
                message = {**message, "headers": headers}
        await self._send(message)

    async def _time_out(self) -> None:
        self._body_done = True
        if self._started:  # the app answered before reading all of it: nothing to add
            return
        self._answered = True
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(TIMED_OUT_BODY)).encode()),
            (b"connection", b"close"),
        ]
        await self._send({"type": "http.response.start", "status": 408, "headers": headers})
        await self._send({"type": "http.response.body", "body": TIMED_OUT_BODY})
