"""Headless Chromium for the tests, driven over its DevTools protocol (CDP).

A small client over ``websockets``: no tool that downloads its own browser build works on
these machines, so the tests use Debian's ``chromium`` (``.ci/run`` installs it) and skip
with a reason where it is absent. One ``Browser`` per test module; each test opens a
``Page`` (a target with its own session), navigates, and evaluates JavaScript in it.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

from websockets.sync.client import ClientConnection, connect

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
# As the machine's notes say: without the background-networking flags Chromium keeps
# trying hosts this closed network refuses.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--remote-debugging-port=0",
)
_LISTENING = re.compile(r"DevTools listening on (ws://\S+)")


def chromium_path() -> str | None:
    """The Chromium binary on this machine, or None."""
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


class CdpError(RuntimeError):
    """The browser answered a command with an error, or did not answer in time."""


class Browser:
    """One headless Chromium process and the CDP connection to it."""

    def __init__(self, binary: str, *, timeout: float = 20.0) -> None:
        self.timeout = timeout
        self._profile = tempfile.TemporaryDirectory(
            prefix="edgefilter-chromium-", ignore_cleanup_errors=True
        )
        self.process = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={self._profile.name}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._stack = contextlib.ExitStack()
        try:
            self._ws: ClientConnection = self._stack.enter_context(
                connect(self._endpoint(), max_size=None, open_timeout=timeout)
            )
        except BaseException:  # no browser half-started: end the process, drop the profile
            self.process.kill()
            self.process.wait()
            if self.process.stderr is not None:
                self.process.stderr.close()
            self._profile.cleanup()
            raise
        self.failure: BaseException | None = None
        self._ids = itertools.count(1)
        self._answers: dict[int, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, name="cdp-reader", daemon=True)
        self._reader.start()

    def _endpoint(self) -> str:
        """The browser's websocket URL, read from its stderr."""
        assert self.process.stderr is not None
        deadline = time.monotonic() + self.timeout
        lines: list[str] = []
        while time.monotonic() < deadline:
            line = self.process.stderr.readline()
            if not line and self.process.poll() is not None:
                break
            lines.append(line)
            match = _LISTENING.search(line)
            if match:
                return match.group(1)
        self.process.kill()
        raise CdpError("Chromium did not start: " + "".join(lines[-20:]))

    def _read(self) -> None:
        try:
            for raw in self._ws:
                message = json.loads(raw)
                with self._changed:
                    if "id" in message:
                        self._answers[message["id"]] = message
                    else:
                        self.events.append(message)
                    self._changed.notify_all()
        except Exception as error:  # kept for send() to report; closing ends the loop too
            self.failure = error

    def send(self, method: str, params: dict[str, Any] | None = None, **where: Any) -> Any:
        """Send one command (to ``sessionId`` when given) and return its result."""
        number = next(self._ids)
        self._ws.send(json.dumps({"id": number, "method": method, "params": params or {}, **where}))
        with self._changed:
            ready = self._changed.wait_for(lambda: number in self._answers, self.timeout)
            if not ready:
                raise CdpError(
                    f"{method} had no answer within {self.timeout} s"
                    + (f" (reader failed: {self.failure!r})" if self.failure else "")
                )
            answer = self._answers.pop(number)
        if "error" in answer:
            raise CdpError(f"{method} failed: {answer['error']}")
        return answer.get("result", {})

    def wait_for_event(self, method: str, session: str | None, since: int) -> dict[str, Any]:
        """The first event ``method`` (of ``session``) at or after index ``since``."""

        def found() -> dict[str, Any] | None:
            for event in self.events[since:]:
                if event["method"] == method and event.get("sessionId") == session:
                    return event
            return None

        with self._changed:
            self._changed.wait_for(lambda: found() is not None, self.timeout)
            event = found()
        if event is None:
            raise CdpError(f"no {method} event within {self.timeout} s")
        return event

    @contextlib.contextmanager
    def page(self) -> Iterator[Page]:
        """A new tab, closed when the block ends."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})
        page = Page(self, session["sessionId"])
        page.send("Page.enable")
        page.send("Runtime.enable")
        try:
            yield page
        finally:
            self.send("Target.closeTarget", {"targetId": target})

    def close(self) -> None:
        """Quit the browser and remove its profile."""
        with contextlib.suppress(Exception):
            self._stack.close()
        self._reader.join(timeout=5)
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stderr is not None:
            self.process.stderr.close()
        self._profile.cleanup()


class Page:
    """One tab, addressed through its CDP session."""

    def __init__(self, browser: Browser, session: str) -> None:
        self.browser = browser
        self.session = session

    def send(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """A command for this tab."""
        return self.browser.send(method, params, sessionId=self.session)

    def navigate(self, url: str) -> None:
        """Open ``url`` and wait for its load event."""
        since = len(self.browser.events)
        answer = self.send("Page.navigate", {"url": url})
        if answer.get("errorText"):
            raise CdpError(f"navigation to {url} failed: {answer['errorText']}")
        self.browser.wait_for_event("Page.loadEventFired", self.session, since)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression (promises awaited), as JSON."""
        answer = self.send(
            "Runtime.evaluate",
            {"expression": expression, "awaitPromise": True, "returnByValue": True},
        )
        if "exceptionDetails" in answer:
            raise CdpError(f"script failed: {answer['exceptionDetails']}")
        return answer["result"].get("value")

    def console_messages(self) -> list[str]:
        """What the page logged to its console so far."""
        texts = []
        for event in self.browser.events:
            if event.get("sessionId") == self.session and event["method"] == (
                "Runtime.consoleAPICalled"
            ):
                texts.append(" ".join(str(arg.get("value")) for arg in event["params"]["args"]))
        return texts
