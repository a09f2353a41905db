"""Storage for the reference Sites API: SQLAlchemy Core on SQLite (default) or PostgreSQL.

The schema is created by numbered migrations applied at start-up; each runs once, recorded
in ``schema_version``. Each migration is frozen as it was written: migration 1 creates the
first tables from its own definitions, never from the tables below, and a later change is a
new migration that alters them. The tables below describe the current schema for queries; a
test checks that they equal what the migrations build.

Every write runs in one transaction, so concurrent partial updates of a site never lose each
other's fields: on SQLite each transaction takes the write lock at ``BEGIN IMMEDIATE``, on
PostgreSQL the site row is locked with ``SELECT ... FOR UPDATE``.

``sites.version`` is the site's rules version: 1 at creation, and every change to the site
(its rules, flags, name, domain or private link) adds one in the same transaction as the
change, so a reader that sees a version sees the rules of that version. The versioned rules
feed reads it to tell which sites changed since the version a client has.

The rules feed (migration 3) orders every change of every site: ``feed_clock`` holds the
last change version (one row), and each create, update or delete takes the next one with
``UPDATE feed_clock ... RETURNING`` in its own transaction. That row stays locked until the
commit, so versions commit in their order: a reader that sees version V has seen every
change up to V. ``sites.feed_version`` is the version of a site's last change;
``site_tombstones`` keeps a deleted site's version, the newest ``max_tombstones`` of them,
and ``feed_clock.floor`` is the newest version pruned, below which a delta cannot be told
(the client takes a full snapshot). ``feed_clock.epoch`` is random per database: a client
that sees another epoch has a version of another database. On PostgreSQL the committed
version is announced with ``NOTIFY`` on ``feed_channel(epoch)``.

Deleting a site deletes its rule rows by cascade: every child table's foreign key is
``ON DELETE CASCADE``, and SQLite connections enable ``foreign_keys``.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Engine,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    text,
    update,
)

from .._rules import SITE_FLAGS

ROLES: Final = ("owner", "admin", "member", "edge")
EDGE_ROLE: Final = "edge"  # read-only, the rules of every organisation, no private links
MAX_STORED_SITE_ID: Final = 2**31 - 1  # sites.site_id is a 32-bit INTEGER on PostgreSQL
WRITER_ROLES: Final = frozenset({"owner", "admin"})
KEY_ID_LENGTH: Final = 12  # hex characters of a key's hash that name it in listings
MIN_KEY_ID_LENGTH: Final = 8  # the shortest hash prefix that may name a key to revoke
_KEY_ID: Final = re.compile(f"[0-9a-f]{{{MIN_KEY_ID_LENGTH},64}}")
DEFAULT_MAX_TOMBSTONES: Final = 100_000  # deleted sites a delta can still tell
FEED_CHANNEL_PREFIX: Final = "edgefilter_rules_"
# What ``new_feed_epoch`` announces on the old epoch's channel (versions are numbers)
NEW_EPOCH_NOTICE: Final = "new-epoch"


def _organization_column() -> Column[str]:
    """The owning organisation of a row; its rows go when it goes."""
    return Column(
        "organization_id",
        String(64),
        ForeignKey("organizations.id", ondelete="CASCADE"),
        nullable=False,
    )


# The current schema, for queries. Editing it changes no database: add a migration too.
metadata = MetaData()
organizations = Table(
    "organizations",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(256), nullable=False),
    Column("created_at", String(32), nullable=False),
)
api_keys = Table(
    "api_keys",
    metadata,
    Column("key_hash", String(64), primary_key=True),
    Column("user_id", String(64), nullable=False),
    _organization_column(),
    Column("role", String(16), nullable=False),
    Column("created_at", String(32), nullable=False),
)
sites = Table(
    "sites",
    metadata,
    Column("site_id", Integer, primary_key=True, autoincrement=True),
    Column("id", String(12), unique=True, nullable=False),
    _organization_column(),
    Column("domain", String(253), nullable=False),
    Column("name", String(256), nullable=False),
    Column("created_by", String(64), nullable=False),
    Column("created_at", String(32), nullable=False),
    Column("updated_at", String(32), nullable=False),
    Column("private_link_key", String(12), nullable=True),
    Column("version", Integer, nullable=False),
    *(Column(column, Boolean, nullable=False) for column, _ in SITE_FLAGS.values()),
    Column("type", String(16), nullable=False, server_default="web"),  # migration 2
    Column("feed_version", BigInteger, nullable=False, server_default=text("0")),  # migration 3
    Index("ix_sites_feed_version", "feed_version"),
)


def _rule_list_table(name: str, column: str, width: int, into: MetaData = metadata) -> Table:
    """One of a site's ordered rule lists: ``(site_id, position) -> column``."""
    return Table(
        name,
        into,
        Column(
            "site_id", Integer, ForeignKey("sites.site_id", ondelete="CASCADE"), primary_key=True
        ),
        Column("position", Integer, primary_key=True),
        Column(column, String(width), nullable=False),
    )


def _asn_list_table(into: MetaData = metadata) -> Table:
    """A site's ordered excluded AS numbers (up to 2**32 - 1: a 64-bit column)."""
    return Table(
        "excluded_asns",
        into,
        Column(
            "site_id", Integer, ForeignKey("sites.site_id", ondelete="CASCADE"), primary_key=True
        ),
        Column("position", Integer, primary_key=True),
        Column("asn", BigInteger, nullable=False),
    )


excluded_ips = _rule_list_table("excluded_ips", "entry", 256)
excluded_countries = _rule_list_table("excluded_countries", "code", 2)
excluded_paths = _rule_list_table("excluded_paths", "pattern", 2048)
excluded_hostnames = _rule_list_table("excluded_hostnames", "pattern", 253)
excluded_user_agents = _rule_list_table("excluded_user_agents", "pattern", 512)
excluded_asns = _asn_list_table()
# A site's rule lists by API field: the table and the column of its entries.
RULE_LISTS: Final[Mapping[str, tuple[Table, str]]] = {
    "excludedIPs": (excluded_ips, "entry"),
    "excludedCountries": (excluded_countries, "code"),
    "excludedPaths": (excluded_paths, "pattern"),
    "excludedHostnames": (excluded_hostnames, "pattern"),
    "excludedUserAgents": (excluded_user_agents, "pattern"),
    "excludedASNs": (excluded_asns, "asn"),
}
schema_version = Table("schema_version", metadata, Column("version", Integer, primary_key=True))


def _feed_tables(into: MetaData) -> tuple[Table, Table]:
    """The feed's clock (one row) and its tombstones (migration 3)."""
    clock = Table(
        "feed_clock",
        into,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("epoch", String(16), nullable=False),
        Column("version", BigInteger, nullable=False),
        Column("floor", BigInteger, nullable=False),
    )
    tombstones = Table(
        "site_tombstones",
        into,
        Column("site_id", Integer, primary_key=True, autoincrement=False),
        Column("id", String(12), nullable=False),
        Column("organization_id", String(64), nullable=False),
        Column("feed_version", BigInteger, nullable=False),
        Index("ix_site_tombstones_feed_version", "feed_version"),
    )
    return clock, tombstones


feed_clock, site_tombstones = _feed_tables(metadata)


def _migration_1(connection: Connection) -> None:
    """The first schema, frozen as it was written: never edit it, add a migration instead."""
    frozen = MetaData()
    Table(
        "organizations",
        frozen,
        Column("id", String(64), primary_key=True),
        Column("name", String(256), nullable=False),
        Column("created_at", String(32), nullable=False),
    )
    Table(
        "api_keys",
        frozen,
        Column("key_hash", String(64), primary_key=True),
        Column("user_id", String(64), nullable=False),
        _organization_column(),
        Column("role", String(16), nullable=False),
        Column("created_at", String(32), nullable=False),
    )
    Table(
        "sites",
        frozen,
        Column("site_id", Integer, primary_key=True, autoincrement=True),
        Column("id", String(12), unique=True, nullable=False),
        _organization_column(),
        Column("domain", String(253), nullable=False),
        Column("name", String(256), nullable=False),
        Column("created_by", String(64), nullable=False),
        Column("created_at", String(32), nullable=False),
        Column("updated_at", String(32), nullable=False),
        Column("private_link_key", String(12), nullable=True),
        Column("version", Integer, nullable=False),
        *(
            Column(column, Boolean, nullable=False)
            for column in (
                "public",
                "salt_user_ids",
                "block_bots",
                "session_replay",
                "web_vitals",
                "track_errors",
                "track_outbound",
                "track_url_params",
            )
        ),
    )
    _rule_list_table("excluded_ips", "entry", 256, frozen)
    _rule_list_table("excluded_countries", "code", 2, frozen)
    frozen.create_all(connection, checkfirst=True)


def _migration_2(connection: Connection) -> None:
    """Rybbit v2.7's exclusions and our ASN rules: four rule lists and the site's ``type``.
    Frozen as it was written: never edit it, add a migration instead."""
    frozen = MetaData()
    Table("sites", frozen, Column("site_id", Integer, primary_key=True))  # for the keys only
    created = [
        _rule_list_table("excluded_paths", "pattern", 2048, frozen),
        _rule_list_table("excluded_hostnames", "pattern", 253, frozen),
        _rule_list_table("excluded_user_agents", "pattern", 512, frozen),
        _asn_list_table(frozen),
    ]
    frozen.create_all(connection, tables=created, checkfirst=True)
    connection.execute(text("ALTER TABLE sites ADD COLUMN type VARCHAR(16) DEFAULT 'web' NOT NULL"))


def _migration_3(connection: Connection) -> None:
    """The rules feed: a change version per site, the clock, tombstones of deleted sites.
    Frozen as it was written: never edit it, add a migration instead."""
    frozen = MetaData()
    clock, tombstones = _feed_tables(frozen)
    frozen.create_all(connection, tables=[clock, tombstones], checkfirst=True)
    connection.execute(text("ALTER TABLE sites ADD COLUMN feed_version BIGINT DEFAULT 0 NOT NULL"))
    connection.execute(text("UPDATE sites SET feed_version = site_id"))
    connection.execute(text("CREATE INDEX ix_sites_feed_version ON sites (feed_version)"))
    last = connection.execute(text("SELECT COALESCE(MAX(site_id), 0) FROM sites")).scalar_one()
    connection.execute(
        insert(clock).values(id=1, epoch=secrets.token_hex(8), version=int(last), floor=0)
    )


MIGRATIONS: Final[Sequence[Callable[[Connection], None]]] = (
    _migration_1,
    _migration_2,
    _migration_3,
)


def now() -> str:
    """The current time as the API writes it: ISO 8601, UTC, milliseconds, ``Z``."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_public_id(token: Callable[[int], str] = secrets.token_hex) -> str:
    """A random 12-hex site ``id`` with at least one letter: twelve digits would read as a
    numeric ``siteId`` (about 1 draw in 280), and the site could not be addressed by it."""
    while True:
        candidate = token(6)
        if not candidate.isdigit():
            return candidate


def hash_key(key: str) -> str:
    """The stored form of an API key (keys are random and long: a plain SHA-256 suffices)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class Principal:
    """Who an API key belongs to."""

    user_id: str
    organization_id: str
    role: str


@dataclass(frozen=True, slots=True)
class FeedClock:
    """The feed's clock: the database's epoch, its last change version, its floor."""

    epoch: str
    version: int
    floor: int


@dataclass(frozen=True, slots=True)
class FeedChanges:
    """What the feed answers: every readable site (``full``) or those changed since a version,
    in the compact form (``compact_site``), and the siteIds deleted since then."""

    clock: FeedClock
    full: bool
    sites: list[dict[str, Any]]
    deleted: list[int]


def feed_channel(epoch: str) -> str:
    """The ``NOTIFY`` channel of a database's feed: per epoch, so that schemas sharing one
    PostgreSQL database never wake each other's waiters."""
    return FEED_CHANNEL_PREFIX + epoch


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """An API key as listings show it: never the key, only the start of its hash."""

    key_id: str
    organization_id: str
    user_id: str
    role: str
    created_at: str


@dataclass(frozen=True, slots=True)
class OrganizationRecord:
    """An organisation as listings show it."""

    id: str
    name: str
    created_at: str


def engine_for(url: str) -> Engine:
    """An engine for ``sqlite:///path`` (WAL, foreign keys, immediate transactions) or
    ``postgresql://...`` (psycopg 3)."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if not url.startswith("sqlite"):
        return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # let SQLAlchemy's BEGIN below decide
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        # Writers take the write lock up front, so two writers never deadlock on upgrade.
        write = connection.info.get("write", True)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


class SiteStore:
    """Organisations, API keys, sites and their rule lists."""

    def __init__(
        self, url: str, *, migrate: bool = True, max_tombstones: int = DEFAULT_MAX_TOMBSTONES
    ) -> None:
        self.url = url
        self.engine = engine_for(url)
        self._is_sqlite = self.engine.dialect.name == "sqlite"
        self.max_tombstones = max_tombstones
        # Called with each committed feed version, after the commit (the server's waiters).
        self.on_commit: list[Callable[[int], None]] = []
        if migrate:
            self.migrate()

    @property
    def is_postgresql(self) -> bool:
        """Whether the database is PostgreSQL (LISTEN/NOTIFY announce the feed's changes)."""
        return self.engine.dialect.name == "postgresql"

    def migrate(self, upto: int | None = None) -> None:
        """Apply every migration not applied yet (up to number ``upto`` when given)."""
        with self.transaction() as connection:
            schema_version.create(connection, checkfirst=True)
            done = {row.version for row in connection.execute(select(schema_version.c.version))}
            for number, migration in enumerate(MIGRATIONS[:upto], start=1):
                if number not in done:
                    migration(connection)
                    connection.execute(insert(schema_version).values(version=number))

    def close(self) -> None:
        """Release the connection pool."""
        self.engine.dispose()

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[Connection]:
        """One transaction; committed on success, rolled back on error.

        On SQLite a writing transaction holds the write lock from its start; reading ones
        run beside it (WAL).
        """
        with self.engine.connect() as connection:
            connection.info["write"] = write
            connection.info.pop("feed_version", None)
            with connection.begin():
                yield connection
            committed = connection.info.pop("feed_version", None)
        if committed is not None:
            for hook in self.on_commit:
                hook(committed)

    def _next_feed_version(self, connection: Connection) -> int:
        """Take the next change version: the clock's row stays locked until the commit, so
        versions commit in order; on PostgreSQL the commit also announces it (NOTIFY)."""
        query = (
            update(feed_clock)
            .where(feed_clock.c.id == 1)
            .values(version=feed_clock.c.version + 1)
            .returning(feed_clock.c.version, feed_clock.c.epoch)
        )
        version, epoch = connection.execute(query).one()
        if self.is_postgresql:
            connection.execute(select(func.pg_notify(feed_channel(epoch), str(version))))
        connection.info["feed_version"] = int(version)
        return int(version)

    # --- organisations and keys -------------------------------------------------------

    def create_organization(self, name: str) -> str:
        """A new organisation; its id."""
        organization_id = f"org_{secrets.token_hex(6)}"
        with self.transaction() as connection:
            connection.execute(
                insert(organizations).values(id=organization_id, name=name, created_at=now())
            )
        return organization_id

    def organization_exists(self, organization_id: str) -> bool:
        """Whether the organisation exists."""
        with self.transaction(write=False) as connection:
            query = select(organizations.c.id).where(organizations.c.id == organization_id)
            return connection.execute(query).first() is not None

    def create_key(self, organization_id: str, role: str, user_id: str | None = None) -> str:
        """A new API key for a user (new unless named) with ``role`` in the organisation.

        The key is returned once; only its hash is stored.
        """
        if role not in ROLES:
            raise ValueError(f"role {role!r} is not one of {', '.join(ROLES)}")
        if not self.organization_exists(organization_id):
            raise LookupError(f"organisation {organization_id!r} does not exist")
        key = f"ef_{secrets.token_urlsafe(32)}"
        with self.transaction() as connection:
            connection.execute(
                insert(api_keys).values(
                    key_hash=hash_key(key),
                    user_id=user_id or f"user_{secrets.token_hex(6)}",
                    organization_id=organization_id,
                    role=role,
                    created_at=now(),
                )
            )
        return key

    def principal(self, key: str, connection: Connection | None = None) -> Principal | None:
        """Who holds ``key``, or None for an unknown key; in ``connection`` when given."""
        if connection is None:
            with self.transaction(write=False) as own:
                return self.principal(key, own)
        row = connection.execute(
            select(api_keys).where(api_keys.c.key_hash == hash_key(key))
        ).first()
        return None if row is None else Principal(row.user_id, row.organization_id, row.role)

    # --- sites ------------------------------------------------------------------------

    def find_site(self, connection: Connection, ref: str, *, lock: bool = False) -> Any:
        """The site row addressed by its numeric ``siteId`` or its 12-hex ``id``, or None.

        ``ref`` is canonical (the server reads every path id through ``canonical_site_id``);
        a number past the 32-bit ``site_id`` column (``MAX_STORED_SITE_ID``) names no site.
        """
        if ref.isdigit():
            if int(ref) > MAX_STORED_SITE_ID:
                return None
            query = select(sites).where(sites.c.site_id == int(ref))
        else:
            query = select(sites).where(sites.c.id == ref)
        if lock and not self._is_sqlite:
            query = query.with_for_update()
        return connection.execute(query).first()

    def site_lists(self, connection: Connection, site_id: int) -> dict[str, list[Any]]:
        """Every rule list of a site by API field (``RULE_LISTS``), in the order given."""
        lists = {}
        for field, (table, column) in RULE_LISTS.items():
            query = (
                select(table.c[column]).where(table.c.site_id == site_id).order_by(table.c.position)
            )
            lists[field] = list(connection.execute(query).scalars())
        return lists

    def create_site(self, organization_id: str, created_by: str, values: dict[str, Any]) -> Any:
        """Insert a site (``values`` holds domain, name and flags by column); its row."""
        stamp = now()
        row = {column: default for column, default in SITE_FLAGS.values()}
        row.update(values)
        with self.transaction() as connection:
            for _ in range(8):  # a 12-hex id collides with odds of 1 in 2**48; retry anyway
                public_id = new_public_id()
                if self.find_site(connection, public_id) is None:
                    break
            result = connection.execute(
                insert(sites).values(
                    id=public_id,
                    organization_id=organization_id,
                    created_by=created_by,
                    created_at=stamp,
                    updated_at=stamp,
                    version=1,
                    feed_version=self._next_feed_version(connection),
                    **row,
                )
            )
            assert result.inserted_primary_key is not None
            site_id = result.inserted_primary_key[0]
            # SQLite may reuse a deleted site's rowid: that site's tombstone goes, and the
            # floor rises past it, so a node that has not seen the delete takes a snapshot
            # (the new site may be of another organisation: a node of the old one's scope
            # would find neither the site nor its tombstone in a delta, and keep it).
            reused = connection.execute(
                select(site_tombstones.c.feed_version).where(site_tombstones.c.site_id == site_id)
            ).scalar()
            if reused is not None:
                connection.execute(
                    delete(site_tombstones).where(site_tombstones.c.site_id == site_id)
                )
                self._raise_floor(connection, int(reused))
            return connection.execute(select(sites).where(sites.c.site_id == site_id)).first()

    def delete_site(self, connection: Connection, site_id: int) -> None:
        """Delete a site; its rule rows go by cascade (``ON DELETE CASCADE``), and a tombstone
        keeps its change version for the feed (the oldest past ``max_tombstones`` pruned)."""
        row = connection.execute(
            select(sites.c.id, sites.c.organization_id).where(sites.c.site_id == site_id)
        ).first()
        if row is None:
            return
        connection.execute(delete(sites).where(sites.c.site_id == site_id))
        connection.execute(
            insert(site_tombstones).values(
                site_id=site_id,
                id=row.id,
                organization_id=row.organization_id,
                feed_version=self._next_feed_version(connection),
            )
        )
        self._prune_tombstones(connection)

    def _prune_tombstones(self, connection: Connection) -> None:
        """Keep the newest ``max_tombstones`` tombstones; raise the floor past the rest."""
        newest_pruned = connection.execute(
            select(site_tombstones.c.feed_version)
            .order_by(site_tombstones.c.feed_version.desc())
            .offset(self.max_tombstones)
            .limit(1)
        ).scalar()
        if newest_pruned is None:
            return
        connection.execute(
            delete(site_tombstones).where(site_tombstones.c.feed_version <= newest_pruned)
        )
        self._raise_floor(connection, newest_pruned)

    def _raise_floor(self, connection: Connection, version: int) -> None:
        """A ``since`` below ``version`` can no longer be told as a delta: a full snapshot."""
        connection.execute(
            update(feed_clock)
            .where(feed_clock.c.id == 1, feed_clock.c.floor < version)
            .values(floor=version)
        )

    def update_site(
        self,
        connection: Connection,
        site_id: int,
        columns: dict[str, Any],
        lists: Mapping[str, Sequence[object]] | None = None,
    ) -> None:
        """Apply a partial update inside the caller's transaction, adding one to the version.

        ``lists`` replaces the rule lists it names (API fields of ``RULE_LISTS``).
        """
        connection.execute(
            update(sites)
            .where(sites.c.site_id == site_id)
            .values(
                **columns,
                updated_at=now(),
                version=sites.c.version + 1,
                feed_version=self._next_feed_version(connection),
            )
        )
        for field, entries in (lists or {}).items():
            table, column = RULE_LISTS[field]
            connection.execute(delete(table).where(table.c.site_id == site_id))
            if entries:
                connection.execute(
                    insert(table),
                    [
                        {"site_id": site_id, "position": index, column: entry}
                        for index, entry in enumerate(entries)
                    ],
                )

    # --- the rules feed ---------------------------------------------------------------

    def feed_clock(self, connection: Connection | None = None) -> FeedClock:
        """The feed's clock now (in ``connection`` when given)."""
        if connection is None:
            with self.transaction(write=False) as own:
                return self.feed_clock(own)
        row = connection.execute(select(feed_clock).where(feed_clock.c.id == 1)).one()
        return FeedClock(row.epoch, int(row.version), int(row.floor))

    def new_feed_epoch(self) -> FeedClock:
        """Give the database a new random feed epoch; the clock after. Every node then
        holds a version of another database, and takes a full snapshot: the step after a
        restore, whose old clock a node that was away cannot tell from the one it knew."""
        with self.transaction() as connection:
            old = self.feed_clock(connection).epoch
            connection.execute(
                update(feed_clock).where(feed_clock.c.id == 1).values(epoch=secrets.token_hex(8))
            )
            if self.is_postgresql:  # the listeners are on the old epoch's channel: move them
                connection.execute(select(func.pg_notify(feed_channel(old), NEW_EPOCH_NOTICE)))
            return self.feed_clock(connection)

    def feed_changes(self, organization_id: str | None, since: int | None) -> FeedChanges:
        """The sites of ``organization_id`` (None: every organisation) changed after version
        ``since``, and those deleted; every site (``full``) when ``since`` is None, below the
        floor, or past the clock (a version of another database).

        The clock is read first: on PostgreSQL each later statement sees at least what it
        saw, so the answer holds every change up to its version (and maybe newer ones, which
        the next delta sends again).
        """
        with self.transaction(write=False) as connection:
            clock = self.feed_clock(connection)
            full = since is None or since < clock.floor or since > clock.version
            after = 0 if full or since is None else since
            found = self._feed_sites(connection, organization_id, after, full=full)
            deleted: list[int] = []
            if not full:
                query = select(site_tombstones.c.site_id).where(
                    site_tombstones.c.feed_version > after
                )
                if organization_id is not None:
                    query = query.where(site_tombstones.c.organization_id == organization_id)
                deleted = sorted(int(site_id) for site_id in connection.execute(query).scalars())
        return FeedChanges(clock, full, found, deleted)

    def _feed_sites(
        self, connection: Connection, organization_id: str | None, after: int, *, full: bool
    ) -> list[dict[str, Any]]:
        """The compact form of each site in scope changed after ``after`` (all when ``full``),
        by siteId; seven queries whatever their number."""
        conditions = []
        if organization_id is not None:
            conditions.append(sites.c.organization_id == organization_id)
        if not full:
            conditions.append(sites.c.feed_version > after)
        columns = (sites.c.site_id, sites.c.id, sites.c.domain, sites.c.type, sites.c.block_bots)
        found: dict[int, dict[str, Any]] = {}
        for row in connection.execute(
            select(*columns).where(*conditions).order_by(sites.c.site_id)
        ):
            found[row.site_id] = compact_site(row)
        for field, (table, column) in RULE_LISTS.items():
            query = (
                select(table.c.site_id, table.c[column])
                .join(sites, sites.c.site_id == table.c.site_id)
                .where(*conditions)
                .order_by(table.c.site_id, table.c.position)
            )
            for site_id, entry in connection.execute(query):
                site = found.get(site_id)
                if site is not None:  # a site created after the sites' read: the next delta
                    site.setdefault(field, []).append(entry)
        return list(found.values())

    # --- operations -------------------------------------------------------------------

    def ping(self) -> None:
        """Run ``SELECT 1``; raises the database's error when it cannot be reached."""
        with self.transaction(write=False) as connection:
            connection.execute(text("SELECT 1"))

    def organizations(self) -> list[OrganizationRecord]:
        """Every organisation, oldest first."""
        query = select(organizations).order_by(organizations.c.created_at, organizations.c.id)
        with self.transaction(write=False) as connection:
            return [
                OrganizationRecord(row.id, row.name, row.created_at)
                for row in connection.execute(query)
            ]

    def keys(self, organization_id: str | None = None) -> list[KeyRecord]:
        """Every API key (of one organisation when given), oldest first; no secret in them."""
        query = select(api_keys).order_by(api_keys.c.created_at, api_keys.c.key_hash)
        if organization_id is not None:
            query = query.where(api_keys.c.organization_id == organization_id)
        with self.transaction(write=False) as connection:
            return [_key_record(row) for row in connection.execute(query)]

    def revoke_key(self, key_id: str) -> KeyRecord:
        """Delete the one key whose hash starts with ``key_id``; the key it was.

        ``ValueError`` when ``key_id`` is not 8 to 64 hex digits or names several keys,
        ``LookupError`` when it names none.
        """
        prefix = key_id.strip().lower()
        if not _KEY_ID.fullmatch(prefix):
            raise ValueError(
                f"key id {key_id!r} is not {MIN_KEY_ID_LENGTH} to 64 hex digits "
                "(the KEY ID column of list-keys)"
            )
        with self.transaction() as connection:
            query = select(api_keys).where(api_keys.c.key_hash.startswith(prefix)).limit(2)
            rows = connection.execute(query).all()
            if not rows:
                raise LookupError(f"no API key has the id {prefix!r}")
            if len(rows) > 1:
                raise ValueError(f"key id {prefix!r} names several keys: give more of it")
            connection.execute(delete(api_keys).where(api_keys.c.key_hash == rows[0].key_hash))
        return _key_record(rows[0])


def compact_site(row: Any) -> dict[str, Any]:
    """A site as the feed sends it: only what an edge decides on, defaults left out
    (``blockBots`` true, ``type`` web, empty lists); ``SiteConfig.from_api`` reads it."""
    site: dict[str, Any] = {"siteId": row.site_id, "id": row.id, "domain": row.domain}
    if not row.block_bots:
        site["blockBots"] = False
    if row.type != "web":
        site["type"] = row.type
    return site


def _key_record(row: Any) -> KeyRecord:
    """The listing form of an ``api_keys`` row."""
    return KeyRecord(
        row.key_hash[:KEY_ID_LENGTH], row.organization_id, row.user_id, row.role, row.created_at
    )
