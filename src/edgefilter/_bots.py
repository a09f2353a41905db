"""Bot verdicts for user-agent strings, cached per string."""

from __future__ import annotations

import threading
from typing import Final

import user_agents
from cachetools import LRUCache

# Rybbit stores at most 512 characters of a user agent; nothing past that decides a verdict,
# and capping the key keeps a flood of huge headers from filling the cache with megabytes.
MAX_UA_LENGTH: Final = 512
DEFAULT_CACHE_SIZE: Final = 10_000


class BotDetector:
    """Tells bots from people by the user-agent string, caching each verdict.

    ``is_bot`` never raises. An empty or missing user agent is a bot (browsers always send
    one); bytes are decoded as Latin-1, as HTTP headers are; anything else that is not a
    string is a bot. Verdicts are cached per string (first 512 characters) in a bounded LRU
    cache shared by all threads.
    """

    __slots__ = ("_lock", "_verdicts")

    def __init__(self, *, cache_size: int = DEFAULT_CACHE_SIZE) -> None:
        self._verdicts: LRUCache[str, bool] = LRUCache(maxsize=cache_size)
        self._lock = threading.Lock()

    def is_bot(self, ua: object) -> bool:
        """Whether ``ua`` belongs to a bot; cached."""
        try:
            return self._verdicts[ua]  # type: ignore[index]
        except (KeyError, TypeError):
            return self._is_bot_uncached(ua)

    def _is_bot_uncached(self, ua: object) -> bool:
        if isinstance(ua, bytes | bytearray):
            ua = bytes(ua).decode("latin-1")
        if not isinstance(ua, str):
            return True
        key = ua[:MAX_UA_LENGTH]
        verdict = self.detect(key)
        with self._lock:  # cachetools caches are not thread-safe for writes
            self._verdicts[key] = verdict
        return verdict

    def detect(self, ua: str) -> bool:
        """The uncached verdict for one user-agent string."""
        text = ua.strip()
        if not text:
            return True
        return bool(user_agents.parse(text).is_bot)
