"""``RulesFeed``: every site's rules from the versioned rules feed, kept current by push.

A ``RulesSource`` for a fleet of edge nodes in front of our reference Sites API (see
``edgefilter.server._feed``); against a server without the feed (a real Rybbit), use the
per-site ``RulesCache``.

- **One snapshot, then deltas.** A background thread reads every site once
  (``GET /api/edge/rules``), then only what changed since the version it holds
  (``?since=V``), held open by the server until a change commits (``wait`` seconds, long
  poll), or every ``poll_interval`` seconds with ``wait=0``. A delta compiles only the
  sites that changed, in that thread, and swaps each one into the hot dict whole; a
  deleted site leaves it. A snapshot (the first, or one the server sends because the node
  was away past its retained window, or changed database) is compiled aside, then swapped
  in a slice at a time, then the sites it no longer has are dropped: the hot path goes on
  deciding throughout (see ``_replace`` for what it does with the garbage collector).
- **It knows every site.** The hot path reads a plain dict (``rules_for`` is its ``get``);
  once a state is held, a site that is not in it is unknown at once (``resolve`` answers
  None): a flood of made-up ids makes no API request at all.
- **Outages.** A failed read keeps the last good state, whatever its age, and retries with
  backoff (doubling from 0.1 s to ``max_backoff``, jittered). ``stats()["stale_seconds"]``
  says how long ago the server last confirmed the state current. Before any state is held,
  ``resolve`` answers ``Reason.rules_pending`` (or the failure's reason:
  ``rules_unavailable``, ``rules_unauthorized``).
- **Restart.** With ``snapshot_path``, the state is written there (atomically, at most
  every ``snapshot_interval`` seconds while it changes) and read at start-up, so a node
  comes up deciding even when the API is down, then asks only for what changed since.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import math
import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Final

import orjson

from ._client import FeedAnswer, SitesApiClient
from ._decisions import Reason
from ._errors import ApiAuthError, ConfigError, MalformedResponseError
from ._filter import RulesSource, in_event_loop
from ._rules import SiteConfig, SiteRules, compile_rules
from ._seconds import as_seconds
from ._siteids import canonical_site_id

logger = logging.getLogger("edgefilter")

Json = dict[str, Any]
SNAPSHOT_FORMAT: Final = 1
FIRST_BACKOFF: Final = 0.1
# A 304 that comes back this soon (as a share of ``wait``) was not held: poll instead.
UNHELD_SHARE: Final = 0.1
# The longest ``Retry-After`` obeyed (ours says 5): a box in the way that says a day would
# leave the node on its rules for that long, its reads neither failing nor confirmed.
MAX_RETRY_AFTER: Final = 60.0
QUIET_GC_AT: Final = 10_000  # sites in a snapshot past which it is built with the GC off
SWAP_SLICE: Final = 4096  # hot-dict entries swapped in per call
COUNTERS: Final = (
    "requests",
    "snapshots",
    "deltas",
    "not_modified",
    "failures",
    "sites_compiled",
    "sites_deleted",
    "snapshot_saves",
    "snapshot_loads",
)


def _is_feed_version(value: object) -> bool:
    """Whether ``value`` is a version the feed can be asked ``since=``: an int in 0..2**63-1."""
    return type(value) is int and 0 <= value < 2**63


def _refuse(name: str, value: object, rule: str) -> ConfigError:
    return ConfigError(f"RulesFeed option {name}={value!r} is invalid: it must be {rule}")


def _seconds(name: str, value: object, *, positive: bool = False) -> float:
    seconds = as_seconds(value, zero=not positive)
    if seconds is None:
        raise _refuse(name, value, "a finite number of seconds " + ("> 0" if positive else ">= 0"))
    return seconds


def write_durably(path: Path, partial: Path, data: bytes) -> None:
    """``data`` as ``path``, whole or not at all, and on disk when this returns: written to
    ``partial``, flushed to disk, renamed over ``path``, then the rename flushed too (a
    crash at any point leaves the old file or the new one, never a torn or empty one)."""
    with open(partial, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(partial, path)
    try:
        folder = os.open(path.parent, os.O_RDONLY)
    except OSError:  # a folder that cannot be opened (some platforms): the rename stands
        return
    try:
        os.fsync(folder)
    except OSError:
        pass
    finally:
        os.close(folder)


class _Held:
    """The state a node holds: the feed's epoch and version, each site's compact form,
    compiled rules and the ids it answers to."""

    __slots__ = ("epoch", "sites", "version")

    def __init__(self) -> None:
        self.epoch: str | None = None
        self.version: int | None = None
        self.sites: dict[int, tuple[Json, SiteRules, tuple[str, ...]]] = {}


class RulesFeed(RulesSource):
    """Every site's compiled rules from ``client``'s rules feed; a ``RulesSource``.

    ``wait`` (seconds a read is held open by the server, 0 to poll), ``poll_interval``
    (seconds between reads when polling, or when the server holds no more waiters),
    ``max_backoff``, ``snapshot_interval`` and ``cold_wait`` are checked here (a
    ``ConfigError`` names the bad one). ``compact_tables`` is ``compile_rules``'s
    ``compact``: True compact, False packed, None (the default) compact when the compiled
    reader is active. ``start=False`` leaves the thread to
    ``start()``.
    """

    def __init__(
        self,
        client: SitesApiClient,
        *,
        wait: float = 25.0,
        poll_interval: float = 30.0,
        max_backoff: float = 10.0,
        snapshot_path: str | os.PathLike[str] | None = None,
        snapshot_interval: float = 5.0,
        compact_tables: bool | None = None,
        cold_wait: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
        start: bool = True,
    ) -> None:
        self.wait = _seconds("wait", wait)
        self.poll_interval = _seconds("poll_interval", poll_interval, positive=True)
        self.max_backoff = _seconds("max_backoff", max_backoff, positive=True)
        self.snapshot_interval = _seconds("snapshot_interval", snapshot_interval)
        self.cold_wait = _seconds("cold_wait", cold_wait)
        if compact_tables is not None and not isinstance(compact_tables, bool):
            raise _refuse("compact_tables", compact_tables, "a bool or None")
        if not callable(clock):
            raise _refuse("clock", clock, "a callable answering seconds")
        self.client, self.clock, self.compact_tables = client, clock, compact_tables
        self.snapshot_path = None if snapshot_path is None else Path(snapshot_path)
        self._hot: dict[str, SiteRules] = {}
        self.rules_for: Callable[[str], SiteRules | None] = self._hot.get
        self._held = _Held()
        self._ready = threading.Event()
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._save_lock = threading.Lock()
        self._counts = dict.fromkeys(COUNTERS, 0)
        self._failure: Reason | None = None
        self._error: BaseException | None = None
        self._confirmed_at: float | None = None
        self._saved_at = -math.inf
        self._resynced_at = -math.inf  # when a snapshot was last read at once (``_pause``)
        self._dirty = False
        self._async_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._thread: threading.Thread | None = None
        self._stop: Callable[[], object] | None = None
        if self.snapshot_path is not None:
            self._load_snapshot(self.snapshot_path)
        if start:
            self.start()

    # --- the RulesSource protocol -----------------------------------------------------------

    def resolve(self, site: str) -> SiteRules | Reason | None:
        """A site the hot dict missed: None (unknown) once a state is held, else the reason
        none is; from a thread without an event loop, waits up to ``cold_wait`` first."""
        key = canonical_site_id(site)
        if key is None:
            return None
        waits = not self._ready.is_set() and self._failure is None and self.cold_wait > 0
        if waits and not in_event_loop():
            self._ready.wait(self.cold_wait)
        rules = self._hot.get(key)
        if rules is not None or self._ready.is_set():
            return rules
        return self._failure or Reason.rules_pending

    async def aensure(self, site: str, timeout: float | None = None) -> None:
        """Wait (up to ``timeout``) until a state is held or the first read failed."""
        if self._ready.is_set() or self._failure is not None:
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self._ready.is_set() or self._failure is not None:
                return
            self._async_waiters.append((loop, future))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(future), timeout)

    def known_sites(self) -> Mapping[str, SiteRules]:
        """Every site held now, by each of its ids (a copy)."""
        return dict(self._hot)

    # --- running --------------------------------------------------------------------------

    def start(self) -> None:
        """Start the feed's thread (once)."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="edgefilter-rules-feed", daemon=True
            )
            self._thread.start()

    def check(self, timeout: float = 10.0) -> None:
        """Block until a state is held (at once when the snapshot file gave one); raise the
        read's error (``ApiAuthError``, ``ApiUnreachableError``, ...) when it failed first,
        ``TimeoutError`` past ``timeout``."""
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.01):
            error = self._error
            if error is not None and self._failure is not None:
                raise error
            if time.monotonic() > deadline:
                raise TimeoutError(f"the rules feed held no state within {timeout:g} s")

    def close(self) -> None:
        """Stop the thread (its read in flight is cancelled) and save the state; the client
        stays open (the thread reads through a copy of it)."""
        with self._lock:
            self._closed.set()
            stop = self._stop
        if stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has ended already
                stop()
        self._wake_async_waiters()
        self._save_snapshot(force=True)

    def _run(self) -> None:
        """The feed's thread: an event loop of its own, so that ``close`` can cancel a held
        read at once (the server then frees its place)."""
        asyncio.run(self._arun())

    async def _arun(self) -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        reading = True

        def cancel_read() -> None:  # on this loop: never once the reads are over
            if reading:
                task.cancel()

        with self._lock:
            if self._closed.is_set():
                return
            self._stop = lambda: loop.call_soon_threadsafe(cancel_read)
        client = self.client.copy()  # its async pool lives and dies with this loop
        try:
            await self._read_forever(client)
        except asyncio.CancelledError:
            pass
        finally:
            reading = False
            await client.aclose()

    async def _read_forever(self, client: SitesApiClient) -> None:
        failures = 0
        while not self._closed.is_set():
            held = self._held
            since = held.version if held.epoch is not None else None
            started = self.clock()
            self._bump("requests")
            try:
                answer = await client.aedge_rules(since, wait=self.wait)
                self._apply(answer)
            except Exception as error:  # any failure: keep the state, back off, retry
                failures += 1
                self._failed(error, failures)
                await asyncio.sleep(_backoff(failures, self.max_backoff))
                continue
            if failures:
                logger.info("the rules feed answers again: rules are current")
            failures = 0
            self._save_snapshot()
            await asyncio.sleep(self._pause(answer, self.clock() - started))

    def _pause(self, answer: FeedAnswer, took: float) -> float:
        """Seconds to wait before the next read."""
        if answer.retry_after is not None:
            return min(max(answer.retry_after, FIRST_BACKOFF), MAX_RETRY_AFTER)
        if self._held.epoch is None and self.clock() - self._resynced_at >= self.poll_interval:
            # the answer named another database: its snapshot now, once a poll interval (a
            # box in the way whose 304s name no epoch would have it read snapshots in a loop)
            self._resynced_at = self.clock()
            return 0.0
        if self.wait == 0:
            return self.poll_interval
        if answer.not_modified and took < UNHELD_SHARE * self.wait:
            return self.poll_interval  # a server that does not hold reads
        return 0.0

    def _failed(self, error: BaseException, failures: int) -> None:
        reason = (
            Reason.rules_unauthorized
            if isinstance(error, ApiAuthError)
            else Reason.rules_unavailable
        )
        with self._lock:
            self._counts["failures"] += 1
            self._failure, self._error = reason, error
        if failures == 1:
            logger.warning(
                "the rules feed failed (%s): %s; retrying with backoff",
                error,
                "the last good rules stay in use"
                if self._ready.is_set()
                else f"sites answer {reason.value} until it answers",
            )
        self._wake_async_waiters()

    # --- applying answers -----------------------------------------------------------------

    def _apply(self, answer: FeedAnswer) -> None:
        """Take one answer of the feed into the hot dict."""
        held = self._held
        if not answer.not_modified and not _is_feed_version(answer.version):
            # held, it would be the next read's since=, which the server refuses forever
            raise MalformedResponseError(f"the rules feed answered version {answer.version!r}")
        if answer.not_modified and not _same_epoch(answer.etag, held.epoch):
            logger.warning("the rules feed changed database (ETag); taking a full snapshot")
            held.epoch = None
            return
        if answer.not_modified:
            self._bump("not_modified")
        elif answer.full:
            self._replace(answer)
            self._bump("snapshots")
        elif answer.epoch != held.epoch:  # a version of another database: take a snapshot
            logger.warning("the rules feed changed database (epoch); taking a full snapshot")
            held.epoch = None
            return
        else:
            self._patch(answer.sites, answer.deleted)
            held.version = answer.version
            self._bump("deltas")
        with self._lock:
            self._failure, self._error = None, None
            self._confirmed_at = self.clock()
        if not self._ready.is_set():
            self._ready.set()
            self._wake_async_waiters()

    def _replace(self, answer: FeedAnswer) -> None:
        """A full snapshot: compiled aside, swapped in a slice at a time, then what it lacks
        dropped. A large one (``QUIET_GC_AT`` sites or more) is built with the collector off
        and its objects frozen (``gc.freeze``): the collector's full passes over a million new
        objects would stop every thread for a third of a second (``bench_feed.py``); frozen,
        they are still freed by reference counting when replaced."""
        quiet = len(answer.sites) >= QUIET_GC_AT and gc.isenabled()
        if quiet:
            gc.disable()
        try:
            sites: dict[int, tuple[Json, SiteRules, tuple[str, ...]]] = {}
            fresh: dict[str, SiteRules] = {}
            for site in answer.sites:
                compiled = self._compile(site)
                if compiled is not None:
                    sites[compiled[0]] = compiled[1]
                    fresh.update(dict.fromkeys(compiled[1][2], compiled[1][1]))
            pairs = list(fresh.items())
            for start in range(0, len(pairs), SWAP_SLICE):  # each slice: one short C call
                self._hot.update(pairs[start : start + SWAP_SLICE])
            for alias in [alias for alias in self._hot if alias not in fresh]:
                self._hot.pop(alias, None)
            held = self._held
            held.sites, held.epoch, held.version = sites, answer.epoch, answer.version
            self._dirty = True
        finally:
            if quiet:
                gc.freeze()
                gc.enable()

    def _patch(self, changed: Iterable[Json], deleted: Iterable[int]) -> None:
        """A delta: each changed site swapped in whole, each deleted one dropped."""
        held = self._held
        for site in changed:
            compiled = self._compile(site)
            if compiled is None:
                self._forget(site)
                continue
            site_id, entry = compiled
            old = held.sites.get(site_id)
            self._hot.update(dict.fromkeys(entry[2], entry[1]))
            for alias in () if old is None else set(old[2]) - set(entry[2]):
                self._hot.pop(alias, None)
            held.sites[site_id] = entry
        for site_id in deleted:
            old = held.sites.pop(site_id, None)
            for alias in () if old is None else old[2]:
                self._hot.pop(alias, None)
            if old is not None:
                self._bump("sites_deleted")
        self._dirty = True

    def _forget(self, site: Json) -> None:
        """A delta's malformed site leaves the state, as a snapshot leaves it out: its old
        rules must not stay in force past the change it was. One whose siteId does not
        read cannot be told from the rest: a full snapshot is taken next."""
        site_id = site.get("siteId")
        if type(site_id) is not int:
            self._held.epoch = None
            return
        old = self._held.sites.pop(site_id, None)
        for alias in () if old is None else old[2]:
            self._hot.pop(alias, None)

    def _compile(self, site: Json) -> tuple[int, tuple[Json, SiteRules, tuple[str, ...]]] | None:
        """A site's siteId and its held entry; None (logged) for a malformed one."""
        try:
            config = SiteConfig.from_api(site)
        except ConfigError as error:
            logger.error("the rules feed sent a malformed site (skipped): %s", error)
            return None
        if config.site_id is None:
            logger.error("the rules feed sent a site without a siteId (skipped): %.200r", site)
            return None
        rules = compile_rules(config, compact=self.compact_tables)
        names = (canonical_site_id(config.site_id), canonical_site_id(config.id))
        aliases = tuple(dict.fromkeys(name for name in names if name is not None))
        self._bump("sites_compiled")
        return config.site_id, (site, rules, aliases)

    # --- the snapshot file ----------------------------------------------------------------

    def _load_snapshot(self, path: Path) -> None:
        """Start from the state saved at ``path``, if there is one that reads."""
        try:
            saved = orjson.loads(path.read_bytes())
            epoch, version, sites = saved["epoch"], saved["version"], saved["sites"]
            if saved.get("format") != SNAPSHOT_FORMAT or not isinstance(sites, list):
                raise ValueError(f"format {saved.get('format')!r} is not {SNAPSHOT_FORMAT}")
            if not _is_feed_version(version) or not isinstance(epoch, str):  # sent as since=
                raise ValueError(f"version {version!r} of epoch {epoch!r} is not a feed's")
            age = max(0.0, time.time() - float(saved["saved_at"]))
        except FileNotFoundError:
            return
        except Exception as error:  # a torn or foreign file: start from the API instead
            logger.warning("rules snapshot %s is unreadable (%s): ignored", path, error)
            return
        self._replace(FeedAnswer(epoch, version, True, tuple(sites), (), None))
        self._dirty = False
        self._confirmed_at = self.clock() - age
        self._bump("snapshot_loads")
        self._ready.set()
        logger.info(
            "rules snapshot %s: %d sites at version %s, saved %.0f s ago",
            path,
            len(self._held.sites),
            version,
            age,
        )

    def _save_snapshot(self, *, force: bool = False) -> None:
        """Write the state to ``snapshot_path`` (atomically) when it changed, at most every
        ``snapshot_interval`` seconds unless ``force``."""
        path = self.snapshot_path
        if path is None:
            return
        with self._save_lock:  # close() saves from another thread than the feed's
            self._save_to(path, force=force)

    def _save_to(self, path: Path, *, force: bool) -> None:
        now = self.clock()
        if not self._dirty or self._held.epoch is None:
            return
        if not force and now - self._saved_at < self.snapshot_interval:
            return
        held = self._held
        body = {
            "format": SNAPSHOT_FORMAT,
            "epoch": held.epoch,
            "version": held.version,
            "saved_at": time.time(),
            "sites": [entry[0] for entry in list(held.sites.values())],
        }
        # One partial file per process: proxy workers share one snapshot path.
        partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
        try:
            write_durably(path, partial, orjson.dumps(body))
        except OSError as error:
            logger.warning("rules snapshot %s could not be written: %s", path, error)
            with contextlib.suppress(OSError):
                partial.unlink(missing_ok=True)
            return
        self._dirty, self._saved_at = False, now
        self._bump("snapshot_saves")

    # --- metrics ----------------------------------------------------------------------------

    def stats(self) -> dict[str, float]:
        """Counters for metrics, and the state: ``version``, ``sites_held``, ``ready`` (1
        once a state is held), ``failing`` (1 while reads fail) and ``stale_seconds``
        (since the server last confirmed the state current; ``inf`` before any state).

        ``requests`` (reads sent), ``snapshots``, ``deltas`` and ``not_modified`` (304s)
        answered, ``failures``, ``sites_compiled``, ``sites_deleted``, and
        ``snapshot_saves`` / ``snapshot_loads`` of the snapshot file.
        """
        with self._lock:
            confirmed = self._confirmed_at
            return {
                **self._counts,
                "version": self._held.version or 0,
                "sites_held": len(self._held.sites),
                "ready": int(self._ready.is_set()),
                "failing": int(self._failure is not None),
                "stale_seconds": math.inf if confirmed is None else self.clock() - confirmed,
            }

    def __len__(self) -> int:
        """Sites held."""
        return len(self._held.sites)

    def _bump(self, counter: str) -> None:
        with self._lock:
            self._counts[counter] += 1

    def _wake_async_waiters(self) -> None:
        with self._lock:
            waiters, self._async_waiters = self._async_waiters, []
        for loop, future in waiters:
            if not loop.is_closed():
                loop.call_soon_threadsafe(_settle, future)


def _same_epoch(etag: str | None, epoch: str | None) -> bool:
    """Whether a 304's ETag (``"epoch.scope.version"``) is of the epoch held (or says none)."""
    if etag is None or epoch is None:
        return True
    return etag.removeprefix("W/").strip('"').split(".", 1)[0] == epoch


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _backoff(failures: int, cap: float) -> float:
    """Seconds before the next read after ``failures`` in a row: doubling, jittered."""
    return min(cap, FIRST_BACKOFF * 2.0 ** min(failures - 1, 30)) * random.uniform(0.5, 1.0)
