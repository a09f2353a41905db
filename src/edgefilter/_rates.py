"""The rate-anomaly layer: sliding-window counters per site+IP+UA and per site+IP.

``RateLimits`` holds Rybbit v2.7's thresholds as defaults: more than ``events`` (30) hits in
``events_window`` (10 s) from one site+IP+UA, or more than ``paths`` (25) distinct paths in
``paths_window`` (60 s) from one site+IP, is an anomaly. Both windows slide exactly: a key
keeps the times of its last ``events + 1`` hits (and its last ``paths + 1`` distinct paths
with the time each was last seen), so its memory is bounded however fast it sends; the UA
and the paths are kept as their hashes, so neither a long UA nor long paths grow it.

``LocalRates`` counts in this process (the default; every worker counts on its own), with
an injectable clock and at most ``max_keys`` keys (past it, keys idle for a whole window go
first, then the oldest, a quarter of them at least). ``RedisRates`` counts in Redis
(redis-py's asyncio client, ``pip install edgefilter[redis]``), so every worker and node
shares the counts: one hit is one round trip (one Lua script over both keys, timed by the
server's clock). When Redis fails (down, slow past ``timeout``, refusing), the hit is
counted by its ``LocalRates`` instead (fail open to the local counts, never to an error),
and Redis is tried again after ``retry_after`` seconds; going down and coming back are
logged once each.

Keys: ``<prefix>e:{<site>|<ip>}:<hash of the UA>`` and ``<prefix>p:{<site>|<ip>}``; the
braces make a Redis Cluster keep both in one slot.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from ._errors import ConfigError

logger = logging.getLogger("edgefilter")

DEFAULT_MAX_KEYS: Final = 100_000
DEFAULT_REDIS_TIMEOUT: Final = 0.1  # seconds: past it a hit is counted locally
DEFAULT_RETRY_AFTER: Final = 5.0  # seconds before a failed Redis is tried again
DEFAULT_PREFIX: Final = "edgefilter:rate:"
MAX_PATH: Final = 2048  # Rybbit's limit on pathname; longer ones are cut there

Clock = Callable[[], float]
Key = tuple[str, str, int]  # site, IP, hash of the UA


@dataclass(frozen=True, slots=True)
class RateLimits:
    """The rate-anomaly thresholds (Rybbit v2.7's by default)."""

    events: int = 30
    events_window: float = 10.0
    paths: int = 25
    paths_window: float = 60.0

    def __post_init__(self) -> None:
        for name in ("events", "paths"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"rate limit {name}={value!r} is not an int >= 1")
        for name in ("events_window", "paths_window"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ConfigError(f"rate window {name}={value!r} is not a number of seconds > 0")


class LocalRates:
    """Sliding-window counts in this process; ``hit`` answers whether a hit is an anomaly."""

    __slots__ = ("_clock", "_events", "_paths", "limits", "max_keys")

    def __init__(
        self,
        limits: RateLimits | None = None,
        *,
        clock: Clock = time.monotonic,
        max_keys: int = DEFAULT_MAX_KEYS,
    ) -> None:
        if isinstance(max_keys, bool) or not isinstance(max_keys, int) or max_keys < 1:
            raise ConfigError(f"max_keys {max_keys!r} is not an int >= 1")
        self.limits = limits if limits is not None else RateLimits()
        self.max_keys = max_keys
        self._clock = clock
        self._events: dict[Key, deque[float]] = {}
        self._paths: dict[tuple[str, str], dict[int, float]] = {}  # path hashes

    def __len__(self) -> int:
        """How many keys are counted (both kinds)."""
        return len(self._events) + len(self._paths)

    def hit(self, site: str, ip: str, ua: str, path: str | None = None) -> bool:
        """Count one hit; whether it is past either limit. Never raises on text arguments."""
        now = self._clock()
        limits = self.limits
        key = (site, ip, hash(ua))  # the UA's hash: a long UA costs no memory per key
        times = self._events.get(key)
        if times is None:
            if len(self._events) >= self.max_keys:
                _shrink(self._events, now - limits.events_window, _last_of_deque)
            times = self._events[key] = deque(maxlen=limits.events + 1)
        times.append(now)
        too_many = len(times) > limits.events and times[0] > now - limits.events_window
        if path is None:
            return too_many
        return self._count_path((site, ip), hash(path[:MAX_PATH]), now) or too_many

    def _count_path(self, key: tuple[str, str], path: int, now: float) -> bool:
        """Keep the last ``paths + 1`` distinct paths by last time, oldest first: more than
        ``paths`` were seen in the window exactly when all of them are in it."""
        limits = self.limits
        seen = self._paths.get(key)
        if seen is None:
            if len(self._paths) >= self.max_keys:
                _shrink(self._paths, now - limits.paths_window, _last_of_dict)
            seen = self._paths[key] = {}
        seen.pop(path, None)
        seen[path] = now
        if len(seen) > limits.paths + 1:
            del seen[next(iter(seen))]
        return len(seen) > limits.paths and next(iter(seen.values())) > now - limits.paths_window


def _last_of_deque(times: deque[float]) -> float:
    return times[-1] if times else float("-inf")


def _last_of_dict(seen: dict[int, float]) -> float:
    return next(reversed(seen.values()), float("-inf"))


def _shrink(table: dict[Any, Any], idle_before: float, last: Callable[[Any], float]) -> None:
    """Make room in a full table: drop keys idle since ``idle_before``, and when they are
    fewer than a quarter of it, the oldest keys too up to a quarter: a scan of the whole
    table then pays for that many new keys (freeing one key per scan would make each new
    key cost a scan of the whole table)."""
    idle = [key for key, value in table.items() if last(value) <= idle_before]
    for key in idle:
        del table[key]
    wanted = max(1, (len(table) + len(idle)) // 4) - len(idle)
    if wanted > 0:
        for key in list(itertools.islice(table, wanted)):
            del table[key]


# KEYS[1]: the site+IP+UA list of hit times (newest first, at most events + 1);
# KEYS[2]: the site+IP sorted set of its last paths + 1 distinct paths by last time.
# ARGV: events, events window (ms), paths, paths window (ms), path ("" for none).
# Answers {events past the limit, paths past the limit}.
RATE_SCRIPT: Final = """
local clock = redis.call('TIME')
local now = clock[1] * 1000 + math.floor(clock[2] / 1000)
local events, events_ms = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('LPUSH', KEYS[1], now)
redis.call('LTRIM', KEYS[1], 0, events)
redis.call('PEXPIRE', KEYS[1], events_ms)
local oldest = redis.call('LINDEX', KEYS[1], events)
local too_many = 0
if oldest and now - tonumber(oldest) < events_ms then too_many = 1 end
local too_wide = 0
if ARGV[5] ~= '' then
  local paths, paths_ms = tonumber(ARGV[3]), tonumber(ARGV[4])
  redis.call('ZADD', KEYS[2], now, ARGV[5])
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -(paths + 2))
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - paths_ms)
  redis.call('PEXPIRE', KEYS[2], paths_ms)
  if redis.call('ZCARD', KEYS[2]) > paths then too_wide = 1 end
end
return {too_many, too_wide}
"""


def rate_keys(prefix: str, site: str, ip: str, ua: str) -> list[str]:
    """The Redis keys of a hit: its site+IP+UA list and its site+IP set of paths."""
    slot = f"{{{site}|{ip}}}"
    digest = hashlib.blake2b(ua.encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()
    return [f"{prefix}e:{slot}:{digest}", f"{prefix}p:{slot}"]


class RedisRates:
    """Sliding-window counts shared in Redis, failing open to a ``LocalRates``.

    ``url`` is a redis-py URL (``redis://host:6379/0``, ``rediss://``, ``unix://``); the
    client is made here (no connection until the first hit) and closed by ``aclose``.
    """

    __slots__ = (
        "_clock",
        "_down_until",
        "_script",
        "client",
        "limits",
        "local",
        "prefix",
        "retry_after",
        "url",
    )

    def __init__(
        self,
        url: str,
        limits: RateLimits | None = None,
        *,
        timeout: float = DEFAULT_REDIS_TIMEOUT,
        retry_after: float = DEFAULT_RETRY_AFTER,
        prefix: str = DEFAULT_PREFIX,
        clock: Clock = time.monotonic,
        local: LocalRates | None = None,
    ) -> None:
        try:
            import redis.asyncio as redis_asyncio  # noqa: PLC0415 - an optional extra
        except ImportError as error:  # pragma: no cover - the extra is missing
            raise ConfigError(
                "rate counters in Redis need redis-py: pip install 'edgefilter[redis]'"
            ) from error
        if not isinstance(url, str) or not url:
            raise ConfigError(f"Redis URL {url!r} is not a redis:// URL")
        for name, value in (("timeout", timeout), ("retry_after", retry_after)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ConfigError(f"Redis {name} {value!r} is not a number of seconds > 0")
        self.url = url
        self.limits = limits if limits is not None else RateLimits()
        self.local = local if local is not None else LocalRates(self.limits, clock=clock)
        self.prefix = prefix
        self.retry_after = float(retry_after)
        self._clock = clock
        self._down_until: float | None = None  # while set, hits are counted locally
        try:
            self.client: Any = redis_asyncio.Redis.from_url(
                url,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                retry_on_timeout=False,
                health_check_interval=0,
            )
        except ValueError as error:
            raise ConfigError(f"Redis URL {url!r} is not valid: {error}") from error
        self._script = self.client.register_script(RATE_SCRIPT)

    @property
    def is_down(self) -> bool:
        """Whether hits are being counted locally because Redis failed."""
        return self._down_until is not None

    async def ahit(self, site: str, ip: str, ua: str, path: str | None = None) -> bool:
        """Count one hit in Redis (one round trip); whether it is past either limit. When
        Redis fails, counted locally instead. Never raises (cancellation aside)."""
        down_until = self._down_until
        if down_until is not None and self._clock() < down_until:
            return self.local.hit(site, ip, ua, path)
        limits = self.limits
        args = (
            limits.events,
            int(limits.events_window * 1000),
            limits.paths,
            int(limits.paths_window * 1000),
            "" if path is None else path[:MAX_PATH],
        )
        try:
            answer = await self._script(keys=rate_keys(self.prefix, site, ip, ua), args=args)
            too_many, too_wide = int(answer[0]), int(answer[1])
        except Exception as error:  # down, slow, refused, a bad answer: count locally
            if self._down_until is None:
                logger.warning(
                    "Redis rate counters at %s failed (%s); counting in this process, "
                    "retrying every %s s",
                    self.url,
                    error,
                    self.retry_after,
                )
            self._down_until = self._clock() + self.retry_after
            return self.local.hit(site, ip, ua, path)
        if self._down_until is not None:
            logger.warning("Redis rate counters at %s are back", self.url)
            self._down_until = None
        return bool(too_many or too_wide)

    async def aclose(self) -> None:
        """Close the client's connections."""
        await self.client.aclose()
