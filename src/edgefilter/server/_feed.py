"""``GET /api/edge/rules``: the versioned rules feed, with deltas, ETags, gzip and push.

- ``GET /api/edge/rules`` answers every site the key may read (an ``edge`` key: every
  organisation; any other key: its own organisation) in the compact form of
  ``_store.compact_site``, with the feed's ``version`` and ``epoch``.
- ``?since=V`` answers only the sites changed after version ``V`` and the siteIds deleted
  since (``deleted``); when ``V`` is below the retained window (older than the oldest
  tombstone kept) or past the clock (another database), it answers the full snapshot
  (``"full": true``), which the client takes in place of what it holds.
- Every answer carries an ``ETag`` (the epoch, the scope and the version); ``If-None-Match``
  with it, or ``since`` equal to the version, answers 304. The body is gzip-encoded when the
  client accepts it; each body is built once per version and scope (single flight) and
  shared by every node that asks for it.
- **Push** by long poll: ``&wait=S`` holds a ``since`` request that has nothing new for up
  to ``S`` seconds (at most ``max_wait``) and answers as soon as a change commits. At most
  ``max_waiters`` requests wait at once; past that a request answers 304 at once with
  ``Retry-After``. Waiters wake on the process's own commits and, on PostgreSQL, on every
  replica's (``LISTEN`` on the epoch's channel, one connection per process, reconnected
  with backoff; on reconnection the clock is read again, so a change announced while the
  listener was down still wakes the waiters).
- A clock read behind the signal, or of another epoch (the database restored, failed over
  or replaced under a running server) restarts the signal from it and drops the bodies
  built before (``_learn``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
import math
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Any, Final

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from .._errors import ApiError
from ._store import (
    EDGE_ROLE,
    NEW_EPOCH_NOTICE,
    FeedChanges,
    FeedClock,
    SiteStore,
    feed_channel,
)

logger = logging.getLogger("edgefilter")

DEFAULT_MAX_WAIT: Final = 30.0  # seconds a long poll may be held
DEFAULT_MAX_WAITERS: Final = 10_000
RETRY_AFTER: Final = 5  # seconds a refused waiter is told to wait before asking again
DELTA_BODIES: Final = 32  # delta bodies kept (each per scope, since and version)
SNAPSHOT_BODIES: Final = 2  # full snapshots kept (100,000 sites: about 10 MB each)
GZIP_LEVEL: Final = 6
MIN_GZIP: Final = 512  # bytes below which a body is sent as it is
LISTEN_BACKOFF: Final = (0.1, 5.0)  # first and longest wait between reconnections
Built = tuple[bytes, bytes, FeedClock]  # a body, its gzip form, the clock it was built on


class FeedSignal:
    """The last committed version this process knows of; wakes the waiters past it.

    Runs on the event loop: ``announce`` may be called from any thread.
    """

    def __init__(self) -> None:
        self.version = 0
        self.timeline = 0  # one more each time the database's clock is found on another
        self._changed = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop, version: int) -> None:
        """Run on ``loop``, starting from the clock's ``version``."""
        self._loop = loop
        self.changed(version)

    def announce(self, version: int) -> None:
        """A commit of ``version`` (from any thread, e.g. the store's commit hook)."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self.changed, version)

    def changed(self, version: int) -> None:
        """On the loop: note ``version`` and wake every waiter when it is new."""
        if version > self.version:
            self.version = version
            self._wake()

    def rewound(self, version: int) -> None:
        """On the loop: the database's clock went back to ``version`` (a restore, a
        failover to a replica without the last commits): later commits, numbered from
        there, must wake the waiters again; and the waiters wake now, so that each answers
        from the new clock at once (a node waiting on the old timeline learns of the new one
        from its answer)."""
        self.version = version
        self.timeline += 1
        self._wake()

    def _wake(self) -> None:
        woken, self._changed = self._changed, asyncio.Event()
        woken.set()

    async def wait_past(self, version: int, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds until a version past ``version`` is announced, or
        the clock is found on another timeline (True for both)."""
        deadline = asyncio.get_running_loop().time() + timeout
        timeline = self.timeline
        while self.version <= version and self.timeline == timeline:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return False
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except TimeoutError:
                return self.version > version or self.timeline != timeline
        return True


def _accepts_gzip(request: Request) -> bool:
    """Whether ``Accept-Encoding`` names ``gzip`` (or ``*``) with a weight above 0 (RFC 9110:
    ``gzip;q=0`` refuses it)."""
    accepted = request.headers.get("accept-encoding", "").lower()
    weights: dict[str, float] = {}
    for part in accepted.split(","):
        coding, _, params = part.partition(";")
        weights[coding.strip()] = _weight(params)
    return weights.get("gzip", weights.get("*", 0.0)) > 0


def _weight(params: str) -> float:
    """The ``q`` of a coding's parameters: 1 when absent, 0 when unreadable."""
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip() == "q":
            try:
                weight = float(value.strip())
            except ValueError:
                return 0.0
            return weight if 0 <= weight <= 1 else 0.0
    return 1.0


class RulesFeedEndpoint:
    """The feed's endpoint over a ``SiteStore``, its signal and its PostgreSQL listener."""

    def __init__(
        self,
        store: SiteStore,
        *,
        max_wait: float = DEFAULT_MAX_WAIT,
        max_waiters: int = DEFAULT_MAX_WAITERS,
    ) -> None:
        self.store = store
        self.max_wait = max_wait
        self.max_waiters = max_waiters
        self.waiting = 0
        self.epoch = ""  # the database's, read with its clock
        self.signal = FeedSignal()
        self._bodies: OrderedDict[tuple[Any, ...], asyncio.Future[Built]] = OrderedDict()
        self._snapshots: OrderedDict[tuple[Any, ...], asyncio.Future[Built]] = OrderedDict()
        self.floor = 0  # the database's, as last read: below it a since gets a snapshot
        store.on_commit.append(self.signal.announce)

    # --- the endpoint -----------------------------------------------------------------

    async def rules(self, request: Request, scope: str | None) -> Response:
        """GET /api/edge/rules for a key whose sites are ``scope`` (None: every org).

        A held read that a commit wakes answers from the signal's version and the shared
        body, without a query of its own; the database's clock is read for a snapshot, a
        read that does not wait, a ``since`` past the signal, and a wait that timed out
        (so a change the signal missed, e.g. on SQLite served by several workers, is seen
        at the latest when the wait ends).
        """
        since = _since(request.query_params.get("since"))
        wait = min(_wait(request.query_params.get("wait")), self.max_wait)
        version = self.signal.version
        if since is None or wait == 0 or since > version:
            version = await self._read_clock()
        etag = self._etag(scope, version)
        if since is None and etag in {
            tag.strip() for tag in request.headers.get("if-none-match", "").split(",")
        }:
            return _not_modified(etag)
        if since == version and wait > 0:
            if self.waiting >= self.max_waiters:
                return _not_modified(etag, retry_after=RETRY_AFTER)
            self.waiting += 1
            try:
                woken = await self._held(request, since, wait)
            finally:
                self.waiting -= 1
            version = self.signal.version if woken else await self._read_clock()
            etag = self._etag(scope, version)
        if since == version:
            return _not_modified(etag)
        raw, packed = await self._body(scope, since, version)
        headers = {"ETag": etag, "Cache-Control": "no-cache", "Vary": "Accept-Encoding"}
        if packed and _accepts_gzip(request):
            headers["Content-Encoding"] = "gzip"
            return Response(packed, media_type="application/json", headers=headers)
        return Response(raw, media_type="application/json", headers=headers)

    async def _read_clock(self) -> int:
        """The database's version now; the signal learns it too."""
        return (await self._clock()).version

    async def _clock(self) -> FeedClock:
        """The database's clock now; the signal learns it too."""
        known, epoch = self.signal.version, self.epoch  # before the read
        clock = await run_in_threadpool(self.store.feed_clock)
        self._learn(clock, known, epoch)
        return clock

    def _learn(self, clock: FeedClock, known: int | None = None, epoch: str | None = None) -> None:
        """Take the database's clock as read. One behind what the signal knew when the read
        began (``known``, default now), or of another epoch, is another timeline (the
        database restored, failed over or replaced): the bodies built on the old one go, and
        the signal starts again from the clock, else every delta would be answered from the
        old version's cache until the clock passed it. A read that a commit or an epoch
        learned during it overtook (behind the signal only by what it learned since, or of
        the epoch it began on, ``epoch``, when another is known now) is stale: ignored, as
        a rewind would wake every held read."""
        known = self.signal.version if known is None else known
        epoch = self.epoch if epoch is None else epoch
        if clock.epoch == self.epoch and known <= clock.version < self.signal.version:
            return  # begun before a commit the signal learned meanwhile
        if self.epoch and epoch != self.epoch and clock.epoch == epoch:
            return  # begun before the new epoch the signal learned meanwhile
        if clock.version < known or (self.epoch and clock.epoch != self.epoch):
            logger.warning(
                "rules feed: the database's clock went from %s to %s (epoch %s): "
                "restored or replaced; answering from its clock",
                self.signal.version,
                clock.version,
                clock.epoch,
            )
            self._bodies.clear()
            self._snapshots.clear()
            self.signal.rewound(clock.version)
        self.epoch, self.floor = clock.epoch, clock.floor
        self.signal.changed(clock.version)

    def _etag(self, scope: str | None, version: int) -> str:
        return f'"{self.epoch}.{scope or "all"}.{version}"'

    async def _held(self, request: Request, since: int, wait: float) -> bool:
        """Hold until a version past ``since`` commits (True), ``wait`` ends or the client
        goes away (False): a node that hangs up frees its place at once."""
        woken = asyncio.ensure_future(self.signal.wait_past(since, wait))
        gone = asyncio.ensure_future(_disconnected(request))
        try:
            await asyncio.wait({woken, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            woken.cancel()
            gone.cancel()
        return woken.done() and not woken.cancelled() and woken.result()

    async def _body(
        self, scope: str | None, since: int | None, version: int
    ) -> tuple[bytes, bytes]:
        """The answer's body and its gzip form (empty when too small), built once per scope,
        since and version, however many nodes ask at once."""
        if since is not None and not self.floor <= since <= version:
            since = None  # below the window or past the clock: the same full snapshot for all
        bodies = self._snapshots if since is None else self._bodies
        key = (scope, since, version)
        future = bodies.get(key)
        if future is None:
            future = asyncio.ensure_future(run_in_threadpool(self._build, scope, since))
            bodies[key] = future
            while len(bodies) > (SNAPSHOT_BODIES if since is None else DELTA_BODIES):
                bodies.popitem(last=False)
        try:
            raw, packed, clock = await asyncio.shield(future)
        except BaseException:
            if bodies.get(key) is future and future.done():
                del bodies[key]  # a failed build is not kept: the next request retries
            raise
        if clock.version < version:  # built on a clock behind the signal: it went back
            self._learn(clock, version)
        return raw, packed

    def _build(self, scope: str | None, since: int | None) -> tuple[bytes, bytes, FeedClock]:
        changes = self.store.feed_changes(scope, since)
        raw = orjson.dumps(_answer(changes))
        packed = gzip.compress(raw, GZIP_LEVEL, mtime=0) if len(raw) >= MIN_GZIP else b""
        return raw, packed, changes.clock

    # --- push ---------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """For the app's lifespan: bind the signal, and listen on PostgreSQL."""
        try:
            clock = await run_in_threadpool(self.store.feed_clock)
        except Exception as error:  # the server starts without its database (readyz says so)
            logger.warning("rules feed: the clock cannot be read at start-up (%s)", error)
            clock = FeedClock("", 0, 0)
        self.epoch = clock.epoch
        self.signal.bind(asyncio.get_running_loop(), clock.version)
        listener = None
        if self.store.is_postgresql:
            listener = asyncio.ensure_future(self._listen())
        try:
            yield
        finally:
            if listener is not None:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listener

    async def _listen(self) -> None:
        """``LISTEN`` on the epoch's channel for ever, reconnecting with backoff."""
        import psycopg  # noqa: PLC0415  (the postgres extra, only on PostgreSQL)

        conninfo = self.store.engine.url.set(drivername="postgresql").render_as_string(
            hide_password=False
        )
        backoff, failing = LISTEN_BACKOFF[0], False
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    conninfo, autocommit=True
                ) as connection:
                    clock = await self._clock()
                    await connection.execute(f'LISTEN "{feed_channel(clock.epoch)}"')
                    # What was missed while away (read after LISTEN: nothing falls between),
                    # and a new epoch committed before the LISTEN: listen again, on its channel.
                    if (await self._clock()).epoch != clock.epoch:
                        continue
                    if failing:
                        logger.info("rules feed: listening for changes again")
                    backoff, failing = LISTEN_BACKOFF[0], False
                    async for notice in connection.notifies():
                        if notice.payload == NEW_EPOCH_NOTICE:
                            break  # listen again, on the new epoch's channel
                        with contextlib.suppress(ValueError):
                            self.signal.changed(int(notice.payload))
            except asyncio.CancelledError:
                raise
            except Exception as error:  # any failure: reconnect, waiters fall back to timeouts
                if not failing:
                    logger.warning(
                        "rules feed: the PostgreSQL listener failed (%s); reconnecting",
                        type(error).__name__,
                    )
                failing = True
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, LISTEN_BACKOFF[1])


async def _disconnected(request: Request) -> None:
    """Return when the client disconnects (the request has no body left to read)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def feed_scope(role: str, organization_id: str) -> str | None:
    """The organisation whose sites a key's feed holds; None (every one) for an edge key."""
    return None if role == EDGE_ROLE else organization_id


def _answer(changes: FeedChanges) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "epoch": changes.clock.epoch,
        "version": changes.clock.version,
        "full": changes.full,
        "sites": changes.sites,
    }
    if not changes.full:
        answer["deleted"] = changes.deleted
    return answer


def _not_modified(etag: str, *, retry_after: int | None = None) -> Response:
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    return Response(status_code=304, headers=headers)


def _since(value: str | None) -> int | None:
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()) or len(value) > 19:
        raise ApiError(400, f"since {value[:40]!r} is not a feed version (digits)")
    return int(value)


def _wait(value: str | None) -> float:
    if value is None:
        return 0.0
    try:
        seconds = float(value[:40])
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds < 0:
        raise ApiError(400, f"wait {value[:40]!r} is not a number of seconds >= 0")
    return seconds
