"""The CLI's servers as an operator runs them: several workers, the upstream timeout."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import edgefilter
from edgefilter._serving import serve_in_thread
from edgefilter.cli import build_proxy, close_proxy, parse_args

from .conftest import CHROME, LiveApi

SRC = Path(edgefilter.__file__).resolve().parents[1]
STARTUP = 60.0  # seconds a server process may take to answer its first request


def free_port() -> int:
    """A port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def edgefilter_process(argv: list[str], **env: str) -> Iterator[list[str]]:
    """``edgefilter ARGV`` as its own process group until the block ends; then interrupted,
    and the list yielded holds its stderr lines."""
    environ = {**os.environ, "PYTHONPATH": str(SRC), **env}
    process = subprocess.Popen(
        [sys.executable, "-m", "edgefilter.cli", *argv],
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    try:
        yield lines
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            _, err = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            _, err = process.communicate()
        lines.extend(err.splitlines())


def first_answer(url: str, send: str = "GET", **request: object) -> httpx.Response:
    """The first answer from a server that is still starting (connection refusals retried)."""
    deadline = time.monotonic() + STARTUP
    while True:
        try:
            return httpx.request(send, url, timeout=5, **request)  # type: ignore[arg-type]
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_serve_api_with_workers_serves_from_each(tmp_path: Path) -> None:
    """``serve-api --workers 2`` starts two worker processes that build the app from
    EDGEFILTER_DB, and they answer /readyz."""
    port = free_port()
    argv = ["serve-api", "--workers", "2", "--port", str(port), "--log-level", "info"]
    with edgefilter_process(argv, EDGEFILTER_DB=f"sqlite:///{tmp_path / 's.db'}") as err:
        ready = first_answer(f"http://127.0.0.1:{port}/readyz")
    assert (ready.status_code, ready.json()) == (200, {"status": "ready"}), err
    assert sum("Started server process" in line for line in err) == 2, err


def test_proxy_with_workers_builds_the_filter_from_the_environment(sites_api: LiveApi) -> None:
    """``proxy --workers 2`` with the key in EDGEFILTER_API_KEY: a worker decides a hit by
    the site's rules (and a loopback X-Forwarded-For is not believed)."""
    site = str(sites_api.new_site(excludedIPs=["127.0.0.1"])["siteId"])
    port = free_port()
    argv = ["proxy", "--workers", "2", "--port", str(port), "--upstream", "http://127.0.0.1:9"]
    argv += ["--api", sites_api.url, "--ttl", "5"]
    body = {"type": "pageview", "site_id": site}
    headers = {"User-Agent": CHROME, "X-Forwarded-For": "216.160.83.56"}
    url = f"http://127.0.0.1:{port}/api/track"
    with edgefilter_process(argv, EDGEFILTER_API_KEY=sites_api.key) as err:
        deadline = time.monotonic() + STARTUP
        while True:  # the first hits of a cold site may pass before its rules arrive
            answer = first_answer(url, "POST", json=body, headers=headers)
            if answer.status_code == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    assert answer.json() == {"success": True, "message": "Event not tracked - IP excluded"}, err


def test_upstream_timeout_answers_504(sites_api: LiveApi) -> None:
    """``--upstream-timeout``: an upstream that holds the hit past it gets the visitor a 504;
    one that answers in time is relayed."""
    release = threading.Event()

    async def track(request: Request) -> JSONResponse:
        if (await request.json()).get("pathname") == "/slow":
            while not release.is_set():
                await asyncio.sleep(0.01)
        return JSONResponse({"success": True, "upstream": True})

    upstream = Starlette(routes=[Route("/api/track", track, methods=["POST"])])
    site = str(sites_api.new_site()["siteId"])
    with serve_in_thread(upstream) as upstream_url:
        argv = ["proxy", "--upstream", upstream_url, "--api", sites_api.url]
        args = parse_args(
            [*argv, "--upstream-timeout", "0.2"], {"EDGEFILTER_API_KEY": sites_api.key}
        )
        proxy = build_proxy(args)
        try:
            proxy.edge_filter.source.ensure(site, None)
            with serve_in_thread(proxy) as url, httpx.Client(base_url=url, timeout=5) as client:
                headers = {"User-Agent": CHROME}
                fast = client.post(
                    "/api/track", json={"site_id": site, "pathname": "/"}, headers=headers
                )
                slow = client.post(
                    "/api/track", json={"site_id": site, "pathname": "/slow"}, headers=headers
                )
        finally:
            release.set()
            close_proxy(proxy)
    assert fast.json() == {"success": True, "upstream": True}
    assert (slow.status_code, slow.json()["error"]) == (504, "Upstream timed out")
