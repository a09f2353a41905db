"""The rate-anomaly layer: local sliding windows, Redis counts, failing open to local ones."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgefilter._errors import ConfigError
from edgefilter._rates import LocalRates, RateLimits, RedisRates, rate_keys

from .redis_server import RedisServer, started_redis


class Clock:
    """A settable clock (cachetools' test timer)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


SMALL = RateLimits(events=3, events_window=10.0, paths=2, paths_window=60.0)


def test_events_past_the_limit_in_the_window_are_anomalies() -> None:
    """The fourth hit within 10 s of one site+IP+UA is an anomaly; the first three are not."""
    rates = LocalRates(SMALL, clock=Clock())
    assert [rates.hit("1", "1.2.3.4", "ua") for _ in range(5)] == [False] * 3 + [True] * 2


def test_the_events_window_slides() -> None:
    """Hits older than the window no longer count."""
    clock = Clock()
    rates = LocalRates(SMALL, clock=clock)
    for _ in range(3):
        rates.hit("1", "ip", "ua")
        clock.now += 4
    assert not rates.hit("1", "ip", "ua")  # at 12 s: the first hit (0 s) is out
    assert rates.hit("1", "ip", "ua")  # 4 hits between 4 s and 12 s


def test_keys_are_apart() -> None:
    """Another site, IP or user agent is another count."""
    rates = LocalRates(SMALL, clock=Clock())
    for _ in range(3):
        rates.hit("1", "ip", "ua")
    assert not rates.hit("2", "ip", "ua")
    assert not rates.hit("1", "ip2", "ua")
    assert not rates.hit("1", "ip", "ua2")
    assert rates.hit("1", "ip", "ua")


def test_distinct_paths_per_site_and_ip() -> None:
    """More than 2 distinct paths in 60 s from one site+IP (any UA) is an anomaly;
    repeating a path is not a new one."""
    clock = Clock()
    rates = LocalRates(RateLimits(events=100, paths=2), clock=clock)
    assert not rates.hit("1", "ip", "a", "/x")
    assert not rates.hit("1", "ip", "b", "/x")
    assert not rates.hit("1", "ip", "c", "/y")
    assert rates.hit("1", "ip", "d", "/z")
    assert not rates.hit("1", "other", "d", "/z")
    clock.now += 61
    assert not rates.hit("1", "ip", "d", "/w")


def test_memory_is_bounded() -> None:
    """Past max_keys, idle keys go first, then the oldest: the table never grows past it."""
    clock = Clock()
    rates = LocalRates(SMALL, clock=clock, max_keys=10)
    for number in range(100):
        rates.hit("1", str(number), "ua", "/p")
        clock.now += 0.001
    assert len(rates) <= 20
    for _ in range(500):  # one key flooding keeps at most events + 1 times
        rates.hit("1", "flood", "ua", "/p")
    assert max(len(times) for times in rates._events.values()) == SMALL.events + 1


@given(
    st.lists(
        st.tuples(
            st.floats(min_value=0, max_value=5),
            st.sampled_from(["a", "b"]),
            st.sampled_from(["/1", "/2", "/3", "/4"]),
        ),
        max_size=60,
    )
)
def test_local_counts_agree_with_a_naive_log(hits: list[tuple[float, str, str]]) -> None:
    """Against a plain log of every hit: the verdict is 'more than N in the window'."""
    clock = Clock()
    limits = RateLimits(events=4, events_window=3.0, paths=2, paths_window=4.0)
    rates = LocalRates(limits, clock=clock)
    log: list[tuple[float, str, str]] = []
    for step, ua, path in hits:
        clock.now += step
        log.append((clock.now, ua, path))
        events = sum(1 for at, each, _ in log if each == ua and at > clock.now - 3.0)
        paths = {p for at, _, p in log if at > clock.now - 4.0}
        expected = events > 4 or len(paths) > 2
        assert rates.hit("1", "ip", ua, path) == expected


@pytest.mark.parametrize(
    "options",
    [
        {"events": 0},
        {"events": True},
        {"paths": 1.5},
        {"events_window": 0},
        {"paths_window": -1},
        {"events_window": "10"},
    ],
)
def test_bad_limits_are_config_errors(options: dict[str, Any]) -> None:
    """Limits are ints >= 1 and windows positive numbers of seconds."""
    with pytest.raises(ConfigError):
        RateLimits(**options)


def test_keys_share_a_cluster_slot_and_hide_the_user_agent() -> None:
    """Both keys of a hit carry the same hash tag; the UA is hashed to a fixed length."""
    events, paths = rate_keys("p:", "1", "::1", "x" * 5000)
    assert events.startswith("p:e:{1|::1}:") and paths == "p:p:{1|::1}"
    assert len(events) < 64


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    server = started_redis()
    yield server
    server.close()


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def test_redis_counts_like_the_local_ones(redis_server: RedisServer) -> None:
    """In Redis: the fourth hit of a site+IP+UA is an anomaly, and the third distinct path."""

    async def scenario() -> list[bool]:
        rates = RedisRates(redis_server.url, SMALL, prefix="t1:")
        try:
            verdicts = [await rates.ahit("1", "ip", "ua") for _ in range(4)]
            verdicts += [await rates.ahit("1", "ip", f"ua{n}", f"/{n}") for n in range(3)]
            assert not rates.is_down
            return verdicts
        finally:
            await rates.aclose()

    assert run(scenario()) == [False, False, False, True, False, False, True]


def test_redis_counts_are_shared_between_counters(redis_server: RedisServer) -> None:
    """Two counters (two workers) on one Redis see each other's hits."""

    async def scenario() -> bool:
        first = RedisRates(redis_server.url, SMALL, prefix="t2:")
        second = RedisRates(redis_server.url, SMALL, prefix="t2:")
        try:
            for _ in range(3):
                await first.ahit("1", "ip", "ua")
            return await second.ahit("1", "ip", "ua")
        finally:
            await first.aclose()
            await second.aclose()

    assert run(scenario())


def test_redis_window_slides(redis_server: RedisServer) -> None:
    """In Redis, hits older than the window (here 0.2 s) no longer count."""
    limits = RateLimits(events=1, events_window=0.2)

    async def scenario() -> list[bool]:
        rates = RedisRates(redis_server.url, limits, prefix="t3:")
        try:
            verdicts = [await rates.ahit("1", "ip", "ua"), await rates.ahit("1", "ip", "ua")]
            await asyncio.sleep(0.3)
            return [*verdicts, await rates.ahit("1", "ip", "ua")]
        finally:
            await rates.aclose()

    assert run(scenario()) == [False, True, False]


def test_redis_window_slides_while_the_key_lives(redis_server: RedisServer) -> None:
    """Hits 0.3 s apart with a 0.5 s window: the key never expires, and the third hit is
    not an anomaly because the first has left the window."""
    limits = RateLimits(events=2, events_window=0.5)

    async def scenario() -> list[bool]:
        rates = RedisRates(redis_server.url, limits, prefix="t5:")
        verdicts = []
        try:
            for _ in range(3):
                verdicts.append(await rates.ahit("1", "ip", "ua"))
                await asyncio.sleep(0.3)
            return verdicts
        finally:
            await rates.aclose()

    assert run(scenario()) == [False, False, False]


def test_redis_paths_window_slides_while_the_key_lives(redis_server: RedisServer) -> None:
    """Three distinct paths 0.3 s apart with a 0.5 s window: never more than two in it."""
    limits = RateLimits(events=100, paths=2, paths_window=0.5)

    async def scenario() -> list[bool]:
        rates = RedisRates(redis_server.url, limits, prefix="t6:")
        verdicts = []
        try:
            for number in range(3):
                verdicts.append(await rates.ahit("1", "ip", "ua", f"/{number}"))
                await asyncio.sleep(0.3)
            return verdicts
        finally:
            await rates.aclose()

    assert run(scenario()) == [False, False, False]


def test_redis_keys_are_bounded(redis_server: RedisServer) -> None:
    """However many hits and paths, a key holds at most events + 1 times and paths + 1 paths."""

    async def scenario() -> tuple[int, int]:
        rates = RedisRates(redis_server.url, SMALL, prefix="t7:")
        try:
            for number in range(50):
                await rates.ahit("1", "ip", "ua", f"/{number}")
            events, paths = rate_keys("t7:", "1", "ip", "ua")
            return await rates.client.llen(events), await rates.client.zcard(paths)
        finally:
            await rates.aclose()

    assert run(scenario()) == (SMALL.events + 1, SMALL.paths + 1)


_PREFIXES = itertools.count()


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.tuples(st.sampled_from(["a", "b"]), st.sampled_from(["/1", "/2", "/3", "/4", None])),
        max_size=25,
    )
)
def test_redis_verdicts_agree_with_local_ones(
    redis_server: RedisServer, hits: list[tuple[str, str | None]]
) -> None:
    """Any sequence of hits (within the windows): Redis answers what LocalRates answers."""
    limits = RateLimits(events=3, paths=2)
    local = LocalRates(limits)
    prefix = f"h{next(_PREFIXES)}:"

    async def scenario() -> list[bool]:
        rates = RedisRates(redis_server.url, limits, prefix=prefix, timeout=2.0)
        try:
            return [await rates.ahit("1", "ip", ua, path) for ua, path in hits]
        finally:
            await rates.aclose()

    assert run(scenario()) == [local.hit("1", "ip", ua, path) for ua, path in hits]


def test_redis_down_fails_open_to_local_counts_and_comes_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Redis stopped: hits are counted locally (the limits still apply), logged once; once it
    is back and retry_after has passed, Redis counts again."""
    server = started_redis()
    clock = Clock()
    caplog.set_level(logging.WARNING, logger="edgefilter")

    async def scenario() -> None:
        rates = RedisRates(server.url, SMALL, prefix="t4:", clock=clock, retry_after=5)
        try:
            assert not await rates.ahit("1", "ip", "ua")
            server.stop()
            verdicts = [await rates.ahit("1", "ip", "ua") for _ in range(4)]
            assert rates.is_down
            assert verdicts == [False, False, False, True]  # the local counts, from zero
            server.start()
            assert await rates.ahit("1", "ip", "ua2") is False  # still local: not retried yet
            assert rates.is_down
            clock.now += 6
            assert not await rates.ahit("1", "ip", "ua3")
            assert not rates.is_down
        finally:
            await rates.aclose()

    try:
        run(scenario())
    finally:
        server.close()
    messages = [record.getMessage() for record in caplog.records]
    assert sum("failed" in message for message in messages) == 1
    assert sum("are back" in message for message in messages) == 1


def test_redis_unreachable_from_the_start_counts_locally() -> None:
    """A URL where nothing listens: every hit is counted locally, none raises."""

    async def scenario() -> list[bool]:
        rates = RedisRates("redis://127.0.0.1:1/0", SMALL)
        try:
            return [await rates.ahit("1", "ip", "ua") for _ in range(4)]
        finally:
            await rates.aclose()

    assert run(scenario()) == [False, False, False, True]


@pytest.mark.parametrize(
    ("url", "options"),
    [("", {}), ("redis://x", {"timeout": 0}), ("redis://x", {"retry_after": -1})],
)
def test_bad_redis_options_are_config_errors(url: str, options: dict[str, Any]) -> None:
    """An empty URL or a non-positive timeout is refused when the counter is made."""
    with pytest.raises(ConfigError):
        RedisRates(url, **options)
