"""The reference Sites API server: every endpoint of Rybbit's Sites API, as a Starlette app.

``create_app(db_url)`` builds the app; ``edgefilter serve-api`` serves it with uvicorn.

Where it differs from Rybbit, and why:

- A missing or unknown key answers **401**, a key without access to the site **403**, and an
  unknown site (for a key that is valid) **404**. Rybbit answers all three with a blanket
  403; separate codes let a rules client tell "fix your key" from "this site is gone", which
  decides whether it keeps serving the last good rules or forgets the site.
- A public site's ``GET /api/sites/:siteId`` needs no key; its exclusion lists and private
  link still do (office addresses and link keys are not public data).
- The private link's GET needs admin or owner, like its POST: the key grants access.
- Excluded IPs are validated by the same compiler as the hot path, so IPv6 ranges and
  mapped addresses are accepted and a reversed range is refused (Rybbit stores it and it
  never matches). Unknown fields are refused with 400 naming them.
- The reads carry an ``ETag`` and answer ``If-None-Match`` with 304.
- ``GET /api/edge/rules`` is ours: the versioned rules feed of every site a key may read,
  with deltas and push (see ``_feed``). An ``edge`` key (the role is ours) reads the rules
  of every organisation, there and on the site reads, and nothing else: no private link,
  no write. The feed remembers a key's holder for ``KEY_MEMORY`` (10 s): a revoked key
  reads it for as long.
- ``POST /api/sites/:orgId`` also takes ``type`` (``web`` or ``mobile``, default ``web``),
  checked as the config update checks it.
- Rybbit v2.7's ``excludedPaths``, ``excludedHostnames``, ``excludedUserAgents`` (its zod
  limits: at most 100 entries of 1-2048, 1-253 and 1-512 characters after trimming; stored
  trimmed) and ``type`` (``web`` or ``mobile``) are accepted, with a read endpoint per
  list as Rybbit has. ``excludedASNs`` is ours: at most 100 AS numbers, as ints or
  ``AS15169`` text (any case), between 1 and 4,294,967,295, stored and answered as ints.

Hostile input gets a 4xx and changes nothing; a 5xx means a fault of the server's own:

- The key is checked before a body is read: without one a write answers 401, and a key
  without access 403 or 404, whatever the body holds.
- Bodies are parsed by orjson, which refuses nesting past 1,024 levels, lone surrogates
  and NaN with a 400 (the stdlib parser recursed until it crashed).
- Every ``:siteId`` is read through ``canonical_site_id``: ``007`` is site 7; superscript,
  circled or Arabic-Indic digits and 5,000-digit numbers are no site id (404 with a valid
  key), nor is a number past the 32-bit column.
- A NUL byte in a path parameter or a text field answers 400 naming it (PostgreSQL cannot
  store one), on every backend alike.
- Error answers are bounded: at most ``MAX_DETAILS`` details, each quoting at most
  ``MAX_QUOTED`` characters of the client's value, and ``omittedDetails`` counts the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final, TypeVar

import idna
import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .._asn import parse_asn
from .._countries import normalize_country
from .._errors import ApiError, ConfigError
from .._rules import _SCALAR_FIELDS, SITE_FLAGS, SITE_TYPES
from .._siteids import canonical_site_id
from .._tables import AddressTable
from ._feed import DEFAULT_MAX_WAIT, DEFAULT_MAX_WAITERS, RulesFeedEndpoint, feed_scope
from ._openapi import (
    CONFIG_SCALARS,
    CREATE_FLAGS,
    CREATED_FIELDS,
    LIST_READS,
    MAX_DETAILS,
    OPENAPI,
    PATTERN_LISTS,
    SITE_FIELDS,
)
from ._store import (
    DEFAULT_MAX_TOMBSTONES,
    EDGE_ROLE,
    RULE_LISTS,
    WRITER_ROLES,
    Principal,
    SiteStore,
)

T = TypeVar("T")

__all__ = ["ApiError", "SitesApi", "create_app", "normalize_domain"]

logger = logging.getLogger("edgefilter")

DEFAULT_MAX_BODY: Final = 1 << 20
DEFAULT_MAX_IPS: Final = 10_000
DEFAULT_MAX_COUNTRIES: Final = 250
MAX_ENTRY_LENGTH: Final = 256
MAX_PATTERNS: Final = 100  # Rybbit's limit on each pattern list
MAX_NAME_LENGTH: Final = 256
LIST_FIELDS: Final = frozenset(RULE_LISTS)
MAX_ASNS: Final = 100
CREATE_FIELDS: Final = frozenset({"domain", "name", "type", *CREATE_FLAGS})
CONFIG_FIELDS: Final = frozenset(SITE_FLAGS) | {"domain", "name", "type"} | LIST_FIELDS
PRIVATE_LINK_ACTIONS: Final = frozenset({"generate_private_link_key", "revoke_private_link_key"})
MAX_QUOTED: Final = 40  # characters of a client's value an error message quotes
MAX_REASON: Final = 160  # characters of one detail's reason
READY_TIMEOUT: Final = 5.0
KEY_MEMORY: Final = 10.0  # seconds the feed remembers a key's holder (a revoked key: as long)
MAX_KEYS_REMEMBERED: Final = 10_000  # seconds /readyz waits for the database's SELECT 1


def _error_answer(error: ApiError) -> JSONResponse:
    """The answer to a refusal: its details cut to ``MAX_DETAILS``, with a count of the rest."""
    body: dict[str, Any] = {"success": False, "error": error.error}
    if error.details is not None:
        body["details"] = error.details[:MAX_DETAILS]
        if len(error.details) > MAX_DETAILS:
            body["omittedDetails"] = len(error.details) - MAX_DETAILS
    return JSONResponse(body, status_code=error.status)


def _row_json(row: Any, fields: tuple[str, ...]) -> dict[str, Any]:
    """The API fields of a site row, by the column each field's attribute names."""
    return {field: getattr(row, _SCALAR_FIELDS[field][0]) for field in fields}


def _cut(text: str, limit: int = MAX_QUOTED) -> str:
    """``text`` cut to ``limit`` characters, marked with ``...`` when it was longer."""
    return text if len(text) <= limit else text[:limit] + "..."


def _quoted(value: object) -> str:
    """A client's value as an error message quotes it: its repr, cut short."""
    return _cut(repr(value))


def _refuse_nul(field: str, value: str) -> None:
    """400 naming ``field`` when ``value`` holds a NUL byte (PostgreSQL text cannot)."""
    if "\x00" in value:
        raise ApiError(400, f"{field} contains a NUL byte")


def _refuse_nul_in_body(body: dict[str, Any]) -> None:
    """400 naming the first field name, text value or list entry that holds a NUL byte."""
    for key, value in body.items():
        _refuse_nul("a field name", key)
        if isinstance(value, str):
            _refuse_nul(_cut(key), value)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                if isinstance(item, str):
                    _refuse_nul(f"{_cut(key)}[{index}]", item)


def normalize_domain(value: object) -> str:
    """Strip scheme, path and trailing slash, lower-case, IDNA-encode; ApiError if invalid."""
    if not isinstance(value, str) or not value.strip():
        raise ApiError(400, "domain must be a non-empty string")
    text = value.strip().lower()
    for scheme in ("https://", "http://"):
        text = text.removeprefix(scheme)
    text = text.split("/", 1)[0].rstrip(".")
    try:
        domain = idna.encode(text, uts46=True).decode("ascii")
    except idna.IDNAError as error:
        reason = _cut(str(error), MAX_REASON)
        message = f"domain {_quoted(value)} is not a valid domain name: {reason}"
        raise ApiError(400, message) from None
    if len(domain) > 253:
        raise ApiError(400, f"domain {_quoted(value)} is longer than 253 characters")
    return domain


def _name(value: object) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_NAME_LENGTH:
        raise ApiError(400, f"name must be a non-empty string of at most {MAX_NAME_LENGTH}")
    return value.strip()


def _strings(field: str, value: object, limit: int) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ApiError(400, f"{field} must be a list of strings")
    if len(value) > limit:
        raise ApiError(400, f"{field} has {len(value)} entries; the limit is {limit}")
    return value


class SitesApi:
    """The endpoints, over a ``SiteStore``; limits are per instance."""

    def __init__(
        self,
        store: SiteStore,
        *,
        max_body_bytes: int = DEFAULT_MAX_BODY,
        max_excluded_ips: int = DEFAULT_MAX_IPS,
        max_excluded_countries: int = DEFAULT_MAX_COUNTRIES,
        feed_max_wait: float = DEFAULT_MAX_WAIT,
        feed_max_waiters: int = DEFAULT_MAX_WAITERS,
    ) -> None:
        self.store = store
        self._feed_keys: dict[str, tuple[Principal, float]] = {}
        self.feed = RulesFeedEndpoint(store, max_wait=feed_max_wait, max_waiters=feed_max_waiters)
        self.max_body_bytes = max_body_bytes
        self.max_excluded_ips = max_excluded_ips
        self.max_excluded_countries = max_excluded_countries

    # --- request plumbing -------------------------------------------------------------

    async def json_body(self, request: Request) -> dict[str, Any]:
        """The JSON object body, read up to the size limit (413 past it)."""
        declared = request.headers.get("content-length", "")
        if declared.isascii() and declared.isdigit() and int(declared[:20]) > self.max_body_bytes:
            raise ApiError(413, f"request body over {self.max_body_bytes} bytes")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body_bytes:
                raise ApiError(413, f"request body over {self.max_body_bytes} bytes")
            chunks.append(chunk)
        try:
            body = orjson.loads(b"".join(chunks) or b"null")
        except orjson.JSONDecodeError as error:
            reason = _cut(str(error), MAX_REASON)
            raise ApiError(400, f"request body is not valid JSON: {reason}") from None
        if not isinstance(body, dict):
            raise ApiError(400, "request body must be a JSON object")
        _refuse_nul_in_body(body)
        return body

    def principal(
        self, request: Request, connection: Any = None, *, required: bool = True
    ) -> Principal | None:
        """The key's holder; 401 for a missing or unknown key when ``required``."""
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        found = None
        if scheme.lower() == "bearer" and key.strip():
            found = self.store.principal(key.strip(), connection)
        if found is None and required:
            raise ApiError(401, "Unauthorized")
        return found

    def site(
        self,
        connection: Any,
        request: Request,
        *,
        write: bool,
        public_ok: bool = False,
        lock: bool = False,
    ) -> tuple[Any, Principal | None]:
        """The addressed site and the caller, with 401/403/404 as the module explains."""
        principal = self.principal(request, connection, required=not public_ok)
        raw = request.path_params["siteId"]
        if principal is not None:
            _refuse_nul("path parameter siteId", raw)
        ref = canonical_site_id(raw)
        row = None if ref is None else self.store.find_site(connection, ref, lock=lock)
        if principal is None:
            if row is not None and row.public:
                return row, None
            raise ApiError(401, "Unauthorized")
        if row is None:
            raise ApiError(404, "Site not found")
        if write and principal.role == EDGE_ROLE:
            raise ApiError(403, "Forbidden: an edge key reads rules only")
        if row.organization_id != principal.organization_id and principal.role != EDGE_ROLE:
            raise ApiError(403, "Forbidden")
        if write and principal.role not in WRITER_ROLES:
            raise ApiError(403, "Forbidden: admin or owner role required")
        return row, principal

    # --- endpoints ----------------------------------------------------------------------

    async def create_site(self, request: Request) -> Response:
        """POST /api/sites/:orgId"""
        principal = await run_in_threadpool(self._may_create, request)
        body = await self.json_body(request)
        return await run_in_threadpool(self._create_site, principal, body)

    def _may_create(self, request: Request) -> Principal:
        """The caller, when it may create a site in the path's organisation (before the body)."""
        principal = self.principal(request)
        assert principal is not None
        organization_id = request.path_params["orgId"]
        _refuse_nul("path parameter orgId", organization_id)
        if principal.organization_id != organization_id:
            if not self.store.organization_exists(organization_id):
                raise ApiError(404, "Organization not found")
            raise ApiError(403, "Forbidden")
        if principal.role not in WRITER_ROLES:
            raise ApiError(403, "Forbidden: admin or owner role required")
        return principal

    def _create_site(self, principal: Principal, body: dict[str, Any]) -> Response:
        organization_id = principal.organization_id
        _refuse_unknown(body, CREATE_FIELDS)
        values: dict[str, Any] = {
            "domain": normalize_domain(body.get("domain")),
            "name": _name(body.get("name")),
        }
        values.update(_flags(body))
        if "type" in body:
            values["type"] = _site_type(body["type"])
        row = self.store.create_site(organization_id, principal.user_id, values)
        return JSONResponse(_row_json(row, CREATED_FIELDS), status_code=201)

    async def get_site(self, request: Request) -> Response:
        """GET /api/sites/:siteId"""
        return await run_in_threadpool(self._read, request, self._site_body, True)

    def _site_body(self, row: Any, principal: Principal | None, _lists: Any) -> dict[str, Any]:
        return {
            **_row_json(row, SITE_FIELDS),
            "isOwner": principal is not None and principal.role == "owner",
        }

    def list_read(self, field: str) -> Callable[[Request], Awaitable[Response]]:
        """The endpoint ``GET /api/sites/:siteId/<list>`` of one rule list (``LIST_READS``)."""

        def render(_row: Any, _principal: Principal | None, lists: Any) -> dict[str, Any]:
            return {"success": True, field: lists[field]}

        async def read(request: Request) -> Response:
            return await run_in_threadpool(self._read, request, render)

        read.__doc__ = f"GET /api/sites/:siteId/{LIST_READS[field]}"
        return read

    def _read(
        self,
        request: Request,
        render: Callable[[Any, Principal | None, Any], dict[str, Any]],
        public_ok: bool = False,
    ) -> Response:
        with self.store.transaction(write=False) as connection:
            row, principal = self.site(connection, request, write=False, public_ok=public_ok)
            lists = self.store.site_lists(connection, row.site_id)
        return _with_etag(request, render(row, principal, lists))

    async def delete_site(self, request: Request) -> Response:
        """DELETE /api/sites/:siteId"""
        return await run_in_threadpool(self._delete_site, request)

    def _delete_site(self, request: Request) -> Response:
        with self.store.transaction() as connection:
            row, _ = self.site(connection, request, write=True, lock=True)
            self.store.delete_site(connection, row.site_id)
        return JSONResponse({"success": True})

    async def edge_rules(self, request: Request) -> Response:
        """GET /api/edge/rules; the key's holder is remembered for ``KEY_MEMORY`` seconds,
        so that a fleet woken at once by a change costs no query per node."""
        header = request.headers.get("authorization", "")
        now = time.monotonic()
        remembered = self._feed_keys.get(header)
        if remembered is not None and remembered[1] > now:
            principal: Principal | None = remembered[0]
        else:
            principal = await run_in_threadpool(self.principal, request)
            if len(self._feed_keys) >= MAX_KEYS_REMEMBERED:
                self._feed_keys.clear()
            self._feed_keys[header] = (principal, now + KEY_MEMORY)  # type: ignore[assignment]
        assert principal is not None
        scope = feed_scope(principal.role, principal.organization_id)
        return await self.feed.rules(request, scope)

    def _may_write(self, request: Request) -> None:
        """401/403/404 unless the caller may write the addressed site (before the body)."""
        with self.store.transaction(write=False) as connection:
            self.site(connection, request, write=True)

    async def update_config(self, request: Request) -> Response:
        """PUT /api/sites/:siteId/config"""
        await run_in_threadpool(self._may_write, request)
        body = await self.json_body(request)
        return await run_in_threadpool(self._update_config, request, body)

    def _update_config(self, request: Request, body: dict[str, Any]) -> Response:
        _refuse_unknown(body, CONFIG_FIELDS)
        columns: dict[str, Any] = dict(_flags(body))
        if "domain" in body:
            columns["domain"] = normalize_domain(body["domain"])
        if "name" in body:
            columns["name"] = _name(body["name"])
        if "type" in body:
            columns["type"] = _site_type(body["type"])
        lists = self._valid_lists(body)
        with self.store.transaction() as connection:
            row, _ = self.site(connection, request, write=True, lock=True)
            self.store.update_site(connection, row.site_id, columns, lists)
            row = self.store.find_site(connection, str(row.site_id))
            stored = self.store.site_lists(connection, row.site_id)
        config = {**_row_json(row, CONFIG_SCALARS), **stored}
        return JSONResponse(
            {
                "success": True,
                "message": "Site configuration updated successfully",
                "config": config,
            }
        )

    def _valid_lists(self, body: dict[str, Any]) -> dict[str, list[Any]]:
        """Each rule list the body sets, checked (400 with details for bad entries)."""
        lists: dict[str, list[Any]] = {}
        if "excludedIPs" in body:
            lists["excludedIPs"] = self._valid_ips(body["excludedIPs"])
        if "excludedCountries" in body:
            lists["excludedCountries"] = self._valid_countries(body["excludedCountries"])
        for field, (max_length, error) in PATTERN_LISTS.items():
            if field in body:
                lists[field] = _valid_patterns(field, body[field], max_length, error)
        if "excludedASNs" in body:
            lists["excludedASNs"] = _valid_asns(body["excludedASNs"])
        return lists

    def _valid_ips(self, value: object) -> list[str]:
        entries = _strings("excludedIPs", value, self.max_excluded_ips)
        details = []
        for entry in entries:
            if len(entry.strip()) > MAX_ENTRY_LENGTH:
                details.append(f"{_cut(entry)}: longer than {MAX_ENTRY_LENGTH} characters")
                continue
            _, rejected = AddressTable.from_entries([entry])
            details += [f"{_cut(entry)}: {_cut(reason, MAX_REASON)}" for _, reason in rejected]
        if details:
            raise ApiError(400, "Invalid IP patterns", details)
        return [entry.strip() for entry in entries]

    def _valid_countries(self, value: object) -> list[str]:
        codes = _strings("excludedCountries", value, self.max_excluded_countries)
        return _parsed(codes, normalize_country, "Invalid country codes", show=_cut)

    async def private_link(self, request: Request) -> Response:
        """GET and POST /api/sites/:siteId/private-link-config"""
        body = None
        if request.method == "POST":
            await run_in_threadpool(self._may_write, request)
            body = await self.json_body(request)
        return await run_in_threadpool(self._private_link, request, body)

    def _private_link(self, request: Request, body: dict[str, Any] | None) -> Response:
        if body is not None:
            _refuse_unknown(body, frozenset({"action"}))
            if body.get("action") not in PRIVATE_LINK_ACTIONS:
                raise ApiError(400, f"action must be one of {sorted(PRIVATE_LINK_ACTIONS)}")
        with self.store.transaction() as connection:
            row, _ = self.site(connection, request, write=True, lock=True)
            key = row.private_link_key
            if body is not None:
                generate = body["action"] == "generate_private_link_key"
                key = secrets.token_hex(6) if generate else None
                self.store.update_site(connection, row.site_id, {"private_link_key": key})
        return JSONResponse({"success": True, "data": {"privateLinkKey": key}})


def _valid_patterns(field: str, value: object, max_length: int, error: str) -> list[str]:
    """Rybbit's limits on a pattern list: at most ``MAX_PATTERNS`` strings of 1 to
    ``max_length`` characters after trimming; the entries trimmed, in order."""
    entries = _strings(field, value, MAX_PATTERNS)
    details = []
    for entry in entries:
        text = entry.strip()
        if not text:
            details.append(f"{_quoted(entry)}: empty after trimming")
        elif len(text) > max_length:
            details.append(f"{_cut(entry)}: longer than {max_length} characters")
    if details:
        raise ApiError(400, error, details)
    return [entry.strip() for entry in entries]


def _valid_asns(value: object) -> list[int]:
    """At most ``MAX_ASNS`` AS numbers (ints or ``AS15169`` text), as ints, first kept."""
    if not isinstance(value, list):
        raise ApiError(400, "excludedASNs must be a list of AS numbers")
    if len(value) > MAX_ASNS:
        raise ApiError(400, f"excludedASNs has {len(value)} entries; the limit is {MAX_ASNS}")
    return _parsed(value, parse_asn, "Invalid ASNs", show=_quoted)


def _parsed(
    entries: list[Any], parse: Callable[[Any], T], error: str, *, show: Callable[[Any], str]
) -> list[T]:
    """Each entry as ``parse`` reads it (duplicates dropped, first kept); 400 ``error`` with a
    detail (``show(entry)``: the reason) for every entry it refuses with ``ConfigError``."""
    valid, details = [], []
    for entry in entries:
        try:
            valid.append(parse(entry))
        except ConfigError as problem:
            details.append(f"{show(entry)}: {_cut(str(problem), MAX_REASON)}")
    if details:
        raise ApiError(400, error, details)
    return list(dict.fromkeys(valid))


def _site_type(value: object) -> str:
    if value not in SITE_TYPES:
        raise ApiError(400, f"type must be one of {', '.join(SITE_TYPES)}")
    assert isinstance(value, str)
    return value


def _refuse_unknown(body: dict[str, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        named = ", ".join(_cut(name) for name in unknown[:MAX_DETAILS])
        more = len(unknown) - MAX_DETAILS
        raise ApiError(400, f"Unknown fields: {named}" + (f" and {more} more" if more > 0 else ""))


def _flags(body: dict[str, Any]) -> dict[str, bool]:
    columns = {}
    for flag, (column, _) in SITE_FLAGS.items():
        if flag in body:
            if not isinstance(body[flag], bool):
                raise ApiError(400, f"{flag} must be true or false")
            columns[column] = body[flag]
    return columns


def _with_etag(request: Request, body: dict[str, Any]) -> Response:
    content = json.dumps(body, separators=(",", ":")).encode("utf-8")
    etag = '"' + hashlib.sha256(content).hexdigest()[:32] + '"'
    wanted = {tag.strip() for tag in request.headers.get("if-none-match", "").split(",")}
    if etag in wanted or f"W/{etag}" in wanted or "*" in wanted:
        return Response(status_code=304, headers={"ETag": etag})
    return Response(content, media_type="application/json", headers={"ETag": etag})


def _guard(
    handler: Callable[[Request], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    async def guarded(request: Request) -> Response:
        try:
            return await handler(request)
        except ApiError as error:
            return _error_answer(error)

    return guarded


async def _http_error(_request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    text = {404: "Not found", 405: "Method not allowed"}.get(error.status_code, error.detail)
    return JSONResponse({"success": False, "error": text}, status_code=error.status_code)


class Health:
    """``/healthz`` (the process answers) and ``/readyz`` (the database answers ``SELECT 1``).

    ``/readyz`` answers 503 with a reason when the database cannot be reached or does not
    answer within ``timeout`` seconds; the database's own error is logged, once per change
    of state, not put in the answer (it may name hosts and users).
    """

    def __init__(self, store: SiteStore, *, timeout: float = READY_TIMEOUT) -> None:
        self.store = store
        self.timeout = timeout
        self._failing = False

    async def healthz(self, _request: Request) -> Response:
        """GET /healthz"""
        return JSONResponse({"status": "ok"})

    async def readyz(self, _request: Request) -> Response:
        """GET /readyz"""
        try:
            await asyncio.wait_for(run_in_threadpool(self.store.ping), self.timeout)
        except TimeoutError:
            return self._unready(f"the database did not answer within {self.timeout:g} s", None)
        except Exception as error:  # any failure of the database is "not ready", never a 500
            return self._unready(f"the database cannot be reached ({type(error).__name__})", error)
        if self._failing:
            self._failing = False
            logger.info("readyz: the database answers again")
        return JSONResponse({"status": "ready"})

    def _unready(self, reason: str, error: BaseException | None) -> Response:
        if not self._failing:
            self._failing = True
            logger.warning("readyz: %s: %s", reason, error)
        return JSONResponse({"status": "unavailable", "reason": reason}, status_code=503)


def create_app(
    db_url: str = "sqlite:///edgefilter.db",
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY,
    max_excluded_ips: int = DEFAULT_MAX_IPS,
    max_excluded_countries: int = DEFAULT_MAX_COUNTRIES,
    max_tombstones: int = DEFAULT_MAX_TOMBSTONES,
    feed_max_wait: float = DEFAULT_MAX_WAIT,
    feed_max_waiters: int = DEFAULT_MAX_WAITERS,
) -> Starlette:
    """The Sites API app over the database at ``db_url`` (migrated on start-up).

    ``max_tombstones`` bounds the deleted sites the feed's deltas can tell (an older
    ``since`` gets a full snapshot); ``feed_max_wait`` and ``feed_max_waiters`` bound the
    long polls (seconds each waits, how many wait at once).
    """
    store = SiteStore(db_url, max_tombstones=max_tombstones)
    api = SitesApi(
        store,
        max_body_bytes=max_body_bytes,
        max_excluded_ips=max_excluded_ips,
        max_excluded_countries=max_excluded_countries,
        feed_max_wait=feed_max_wait,
        feed_max_waiters=feed_max_waiters,
    )

    health = Health(store)

    async def openapi(_request: Request) -> Response:
        return JSONResponse(OPENAPI)

    site = "/api/sites/{siteId}"
    routes = [
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/healthz", health.healthz, methods=["GET"]),
        Route("/readyz", health.readyz, methods=["GET"]),
        Route("/api/sites/{orgId}", _guard(api.create_site), methods=["POST"]),
        Route(site, _guard(api.get_site), methods=["GET"]),
        Route(site, _guard(api.delete_site), methods=["DELETE"]),
        Route(site + "/config", _guard(api.update_config), methods=["PUT"]),
        *(
            Route(f"{site}/{suffix}", _guard(api.list_read(field)), methods=["GET"])
            for field, suffix in LIST_READS.items()
        ),
        Route(site + "/private-link-config", _guard(api.private_link), methods=["GET", "POST"]),
        Route("/api/edge/rules", _guard(api.edge_rules), methods=["GET"]),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        async with api.feed.running():
            yield
        store.close()

    app = Starlette(
        routes=routes, exception_handlers={HTTPException: _http_error}, lifespan=lifespan
    )
    # No 307 to the path without its trailing slash: an answer the spec does not describe
    # (hypothesis found GET /api/sites/0%2F); such a path is a 404 like any unknown one.
    app.router.redirect_slashes = False
    app.state.store = store
    app.state.health = health
    app.state.feed = api.feed
    return app
