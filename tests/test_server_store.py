"""The Sites API store: frozen migrations, the rules version, deletes by cascade; both backends."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Boolean, Column, Engine, MetaData, inspect, select, text

from edgefilter._errors import ApiError as TreeApiError
from edgefilter._errors import EdgeFilterError
from edgefilter.server import ApiError, _store, create_app
from edgefilter.server._store import (
    MIGRATIONS,
    RULE_LISTS,
    SiteStore,
    engine_for,
    metadata,
    new_public_id,
    sites,
)

from .test_server import postgres_url

Database = Callable[[], str]


@pytest.fixture(params=["sqlite", "postgresql"])
def new_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A maker of empty databases: SQLite files, or PostgreSQL schemas dropped afterwards."""
    made: list[str] = []
    if request.param == "sqlite":
        yield lambda: f"sqlite:///{tmp_path / f'{secrets.token_hex(4)}.db'}"
        return
    base = postgres_url()
    admin = engine_for(base)

    def make() -> str:
        schema = f"test_{secrets.token_hex(6)}"
        with admin.begin() as connection:
            connection.execute(text(f"CREATE SCHEMA {schema}"))
        made.append(schema)
        return f"{base}?options=-csearch_path%3D{schema}"

    yield make
    with admin.begin() as connection:
        for schema in made:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


def schema_of(engine: Engine) -> dict[str, Any]:
    """Every table's columns, keys, constraints and indexes, as the database reports them."""
    found = inspect(engine)
    schema: dict[str, Any] = {}
    for table in sorted(found.get_table_names()):
        schema[table] = {
            "columns": {
                column["name"]: (
                    str(column["type"].compile(dialect=engine.dialect)),
                    column["nullable"],
                    column.get("default"),
                )
                for column in found.get_columns(table)
            },
            "primary key": found.get_pk_constraint(table)["constrained_columns"],
            "foreign keys": sorted(
                (
                    tuple(key["constrained_columns"]),
                    key["referred_table"],
                    tuple(key["referred_columns"]),
                    key.get("options", {}).get("ondelete"),
                )
                for key in found.get_foreign_keys(table)
            ),
            "unique": sorted(
                tuple(unique["column_names"]) for unique in found.get_unique_constraints(table)
            ),
            "indexes": sorted(
                (tuple(index["column_names"]), bool(index["unique"]))
                for index in found.get_indexes(table)
            ),
        }
    return schema


def migrated_schema(url: str, upto: int | None = None) -> dict[str, Any]:
    """The schema of a database at ``url`` after the migrations (up to ``upto``)."""
    store = SiteStore(url, migrate=False)
    store.migrate(upto)
    try:
        return schema_of(store.engine)
    finally:
        store.close()


def test_migrations_build_the_current_tables(new_database: Database) -> None:
    """A database made by the migrations has exactly the tables the store's queries use."""
    declared = engine_for(new_database())
    metadata.create_all(declared)
    try:
        assert migrated_schema(new_database()) == schema_of(declared)
    finally:
        declared.dispose()


@pytest.mark.parametrize("start", range(1, len(MIGRATIONS) + 1))
def test_an_upgraded_database_equals_a_fresh_one(new_database: Database, start: int) -> None:
    """A database made by migrations 1..start, then upgraded, equals a fresh one."""
    url = new_database()
    at_start = migrated_schema(url, start)
    assert set(at_start) >= {"organizations", "api_keys", "sites", "schema_version"}
    assert migrated_schema(url) == migrated_schema(new_database())


def test_migration_1_is_frozen(new_database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """Migration 1 builds its own tables: a column added to today's tables does not leak in."""
    edited = MetaData()
    for name in ("organizations", "api_keys", "sites", "excluded_ips", "excluded_countries"):
        table = getattr(_store, name).to_metadata(edited)
        monkeypatch.setattr(_store, name, table)
    _store.sites.append_column(Column("added_later", Boolean, nullable=True))
    monkeypatch.setattr(_store, "metadata", edited)
    engine = engine_for(new_database())
    with engine.begin() as connection:
        MIGRATIONS[0](connection)
        columns = {column["name"] for column in inspect(connection).get_columns("sites")}
    engine.dispose()
    assert "added_later" not in columns
    assert columns == {column.name for column in sites.columns} - ADDED_AFTER_MIGRATION_1


ADDED_AFTER_MIGRATION_1 = frozenset({"type", "feed_version"})  # by migrations 2 and 3


def test_migration_2_adds_the_v27_lists_and_the_site_type(new_database: Database) -> None:
    """Migration 2 adds four rule tables and sites.type, which is 'web' for existing sites."""
    url = new_database()
    store = SiteStore(url, migrate=False)
    store.migrate(1)
    organization_id = store.create_organization("Before")
    with store.transaction() as connection:
        connection.execute(
            text(
                "INSERT INTO sites (id, organization_id, domain, name, created_by, created_at,"
                " updated_at, version, public, salt_user_ids, block_bots, session_replay,"
                " web_vitals, track_errors, track_outbound, track_url_params)"
                " VALUES ('ab12cd34ef56', :org, 'a.b', 'x', 'u', 't', 't', 1,"
                " false, false, true, true, true, true, true, false)"
            ),
            {"org": organization_id},
        )
    before = set(inspect(store.engine).get_table_names())
    store.migrate(2)
    after = set(inspect(store.engine).get_table_names())
    assert after - before == {
        "excluded_paths",
        "excluded_hostnames",
        "excluded_user_agents",
        "excluded_asns",
    }
    store.migrate()
    with store.transaction(write=False) as connection:
        row = store.find_site(connection, "ab12cd34ef56")
        assert row.type == "web"
        assert store.site_lists(connection, row.site_id)["excludedASNs"] == []
    store.close()


def test_asns_past_32_bits_signed_are_stored(store: SiteStore) -> None:
    """The largest AS number (2**32 - 1) fits its column on both backends."""
    site_id = new_site(store)
    with store.transaction() as connection:
        store.update_site(connection, site_id, {}, {"excludedASNs": [2**32 - 1, 15169]})
    with store.transaction(write=False) as connection:
        assert store.site_lists(connection, site_id)["excludedASNs"] == [2**32 - 1, 15169]


# --- the rules version and deletes ---------------------------------------------------------


@pytest.fixture
def store(new_database: Database) -> Iterator[SiteStore]:
    """A migrated store on an empty database."""
    store = SiteStore(new_database())
    yield store
    store.close()


def new_site(store: SiteStore) -> int:
    """A site of a new organisation; its siteId."""
    organization_id = store.create_organization("Versions")
    return int(store.create_site(organization_id, "user_1", {"domain": "a.b", "name": "x"}).site_id)


def version_of(store: SiteStore, site_id: int) -> int:
    """The stored rules version of a site."""
    with store.transaction(write=False) as connection:
        query = select(sites.c.version).where(sites.c.site_id == site_id)
        return int(connection.execute(query).scalar_one())


def test_version_moves_with_the_change_in_one_transaction(store: SiteStore) -> None:
    """Each change adds one to the version; a change rolled back takes its bump with it."""
    site_id = new_site(store)
    assert version_of(store, site_id) == 1
    with store.transaction() as connection:
        store.update_site(
            connection,
            site_id,
            {"block_bots": False},
            {"excludedIPs": ["10.0.0.0/8"], "excludedCountries": ["FR"]},
        )
    assert version_of(store, site_id) == 2
    with pytest.raises(RuntimeError), store.transaction() as connection:
        store.update_site(connection, site_id, {}, {"excludedIPs": ["192.0.2.1"]})
        raise RuntimeError("the rest of the change failed")
    assert version_of(store, site_id) == 2
    with store.transaction(write=False) as connection:
        lists = store.site_lists(connection, site_id)
        assert (lists["excludedIPs"], lists["excludedCountries"]) == (["10.0.0.0/8"], ["FR"])


def test_delete_removes_the_rule_rows_by_cascade(store: SiteStore) -> None:
    """Deleting the site row alone removes its excluded IPs and countries."""
    site_id = new_site(store)
    with store.transaction() as connection:
        store.update_site(
            connection,
            site_id,
            {},
            {
                "excludedIPs": ["10.0.0.0/8", "::1"],
                "excludedCountries": ["FR", "DE"],
                "excludedPaths": ["/admin*"],
                "excludedHostnames": ["*.internal"],
                "excludedUserAgents": ["bot"],
                "excludedASNs": [15169],
            },
        )
    with store.transaction() as connection:
        store.delete_site(connection, site_id)
    with store.transaction(write=False) as connection:
        for table, _ in RULE_LISTS.values():
            query = select(table).where(table.c.site_id == site_id)
            assert connection.execute(query).first() is None


def test_api_error_is_in_the_exception_tree() -> None:
    """The server's ApiError is the one of _errors, an EdgeFilterError."""
    assert ApiError is TreeApiError
    assert issubclass(ApiError, EdgeFilterError)
    error = ApiError(400, "bad", ["x: y"])
    assert (error.status, error.error, error.details, str(error)) == (400, "bad", ["x: y"], "bad")


def test_sqlite_connections_enforce_foreign_keys(tmp_path: Path) -> None:
    """Cascades need foreign_keys=ON on every SQLite connection the store opens."""
    store = SiteStore(f"sqlite:///{tmp_path / 'fk.db'}")
    with store.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
    store.close()


@pytest.mark.parametrize("declared", ["9" * 5000, "²", "99999999999999999999999999"])
def test_odd_content_lengths_are_413_or_read(tmp_path: Path, declared: str) -> None:
    """A Content-Length of 5,000 digits (past int()) or non-ASCII digits never crashes the app.

    uvicorn refuses such headers itself, so the app is called as ASGI, as another server
    that passes them on would call it.
    """
    app = create_app(f"sqlite:///{tmp_path / 'sites.db'}", max_body_bytes=1024)
    store: SiteStore = app.state.store
    organization_id = store.create_organization("Lengths")
    key = store.create_key(organization_id, "owner")
    site = store.create_site(organization_id, "user_1", {"domain": "a.b", "name": "x"})
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "PUT",
        "scheme": "http",
        "path": f"/api/sites/{site.site_id}/config",
        "raw_path": f"/api/sites/{site.site_id}/config".encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"authorization", f"Bearer {key}".encode()),
            (b"content-length", declared.encode()),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    store.close()
    status = sent[0]["status"]
    assert status == (200 if declared == "²" else 413), sent


def test_public_ids_always_have_a_letter() -> None:
    """A drawn id of twelve digits is drawn again: it would read as a numeric siteId."""
    draws = iter(["123456789012", "0000000000a1"])
    assert new_public_id(lambda _size: next(draws)) == "0000000000a1"
    assert all(not new_public_id().isdigit() for _ in range(2000))
