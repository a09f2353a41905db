"""A throwaway ``redis-server`` for the tests: its own port and directory, no persistence.

Debian's ``redis-server`` (``.ci/redis.sh`` installs it); tests skip with a reason where it
is absent (and fail in CI, which must provide it).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time

import pytest


def redis_server_path() -> str | None:
    """The ``redis-server`` binary on this machine, or None."""
    return shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisServer:
    """One ``redis-server`` process on loopback; ``stop`` and ``start`` keep its port."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.port = free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="edgefilter-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                self._dir.name,
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not answer on port {self.port}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()


def started_redis() -> RedisServer:
    """A started server, or a skip (a failure in CI) where ``redis-server`` is absent."""
    binary = redis_server_path()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("CI must provide redis-server: .ci/redis.sh installs it")
        pytest.skip("no redis-server on this machine; .ci/redis.sh installs Debian's")
    server = RedisServer(binary)
    server.start()
    return server
