"""``SitesApiClient``: the Sites API over HTTP (httpx), sync and async.

Every call raises a ``SitesApiError`` subclass on failure (see ``_errors``), so callers can
tell a bad key (``ApiAuthError``) from a missing site (``SiteNotFoundError``) from an outage
(``ApiServerError``, ``ApiTimeoutError``, ``ApiUnreachableError``, ``MalformedResponseError``).

A site's rules take seven reads: the site, its excluded IPs and countries, and the lists of
Rybbit v2.7 and edgefilter (paths, hostnames, user agents, ASNs). The site is read first, so
a site that does not exist, a refused key or an outage costs one read: during a flood of
made-up ids, a seventh of the reads. A server that lacks one of the four newer endpoints
(an older Rybbit: 404 on that sub-path while the site read succeeded) has no such rules:
that list is empty, and the config is fetched without failing.

``edge_rules`` / ``aedge_rules`` read the versioned rules feed of our reference server
(``GET /api/edge/rules``, see ``edgefilter.server._feed``): every site at once, or the
changes since a version, optionally held open until a change commits (long poll). A real
Rybbit has no feed; ``RulesCache`` reads it site by site.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar
from urllib.parse import quote

import httpx

from ._errors import (
    ApiAuthError,
    ApiRequestError,
    ApiServerError,
    ApiTimeoutError,
    ApiUnreachableError,
    ConfigError,
    MalformedResponseError,
    SiteNotFoundError,
    SitesApiError,
)
from ._rules import SiteConfig

T = TypeVar("T")
Json = dict[str, Any]
# The reads that make one site's rules, and the list field each one must carry.
READS: Final = (
    ("", None),
    ("/excluded-ips", "excludedIPs"),
    ("/excluded-countries", "excludedCountries"),
    ("/excluded-paths", "excludedPaths"),
    ("/excluded-hostnames", "excludedHostnames"),
    ("/excluded-user-agents", "excludedUserAgents"),
    ("/excluded-asns", "excludedASNs"),
)
# From this index on, a read's 404 (the server predates the endpoint) means an empty list.
FIRST_OPTIONAL_READ: Final = 3
SITE_NOT_FOUND: Final = "Site not found"  # the error of a 404 for the site, not the route
# The body that stands for each optional read the server lacks: an empty list.
_LACKING: Final[dict[int, Json]] = {
    index: {field: []}
    for index, (_, field) in enumerate(READS)
    if index >= FIRST_OPTIONAL_READ and field is not None
}
DEFAULT_TIMEOUT: Final = 5.0
PRIVATE_LINK: Final = "/private-link-config"
EDGE_RULES: Final = "/api/edge/rules"


@dataclass(frozen=True, slots=True)
class FeedAnswer:
    """One answer of the rules feed.

    ``full``: ``sites`` is every site the key reads (replace what you hold); else ``sites``
    changed and ``deleted`` (siteIds) went since the version asked for. ``not_modified``
    (a 304): nothing changed, ``sites`` and ``deleted`` are empty and ``version`` is the one
    asked for. ``retry_after`` is the server's ``Retry-After`` (it holds no more waiters).
    """

    epoch: str | None
    version: int | None
    full: bool
    sites: tuple[Json, ...]
    deleted: tuple[int, ...]
    etag: str | None
    not_modified: bool = False
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class FetchedConfig:
    """One site's config as its reads (``READS``) answered, with their ETags.

    Pass it back as ``previous`` to fetch again conditionally: reads whose ETag still
    matches answer 304 and reuse the body kept here. ``not_modified`` is true when all of
    them did (a read the server lacks answers 404 each time and counts as unchanged when
    it did before), so the compiled rules need not change.
    """

    config: SiteConfig
    bodies: tuple[Json, ...]
    etags: tuple[str | None, ...]
    not_modified: bool = False


class SitesApiClient:
    """A client of the Sites API at ``base_url``, authenticated with a Bearer ``api_key``.

    Sync methods use one ``httpx.Client``; the ``a``-prefixed ones an ``httpx.AsyncClient``
    made on first use. ``transport``/``async_transport`` are for tests and custom stacks.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        headers = {"Accept": "application/json", "User-Agent": "edgefilter-sites-client"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._options: dict[str, Any] = {
            "base_url": self.base_url,
            "headers": headers,
            "timeout": timeout,
        }
        self._client = httpx.Client(transport=transport, **self._options)
        self._transport = transport
        self._async_transport = async_transport
        self._async: httpx.AsyncClient | None = None

    def copy(self) -> SitesApiClient:
        """A new client with the same URL, key, timeout and transports, and pools of its own
        (for a thread or an event loop of its own)."""
        copied = SitesApiClient(
            self.base_url,
            None,
            timeout=self._options["timeout"],
            transport=self._transport,
            async_transport=self._async_transport,
        )
        copied._options["headers"] = dict(self._options["headers"])
        copied._client.headers.update(self._options["headers"])
        return copied

    # --- plumbing -----------------------------------------------------------------------

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._client.request(method, path, **kwargs)
        except httpx.TimeoutException as error:
            raise ApiTimeoutError(f"{method} {self.base_url}{path} timed out: {error}") from error
        except httpx.TransportError as error:
            raise ApiUnreachableError(f"{method} {self.base_url}{path} failed: {error}") from error

    async def _asend(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        if self._async is None:
            self._async = httpx.AsyncClient(transport=self._async_transport, **self._options)
        try:
            return await self._async.request(method, path, **kwargs)
        except httpx.TimeoutException as error:
            raise ApiTimeoutError(f"{method} {self.base_url}{path} timed out: {error}") from error
        except httpx.TransportError as error:
            raise ApiUnreachableError(f"{method} {self.base_url}{path} failed: {error}") from error

    def _call(self, method: str, path: str, parse: Callable[[Json], T], **kwargs: Any) -> T:
        return parse(_json_body(self._send(method, path, **kwargs)))

    async def _acall(self, method: str, path: str, parse: Callable[[Json], T], **kwargs: Any) -> T:
        return parse(_json_body(await self._asend(method, path, **kwargs)))

    def close(self) -> None:
        """Close the sync connection pool (``aclose`` closes the async one)."""
        self._client.close()

    async def aclose(self) -> None:
        """Close both connection pools."""
        self._client.close()
        if self._async is not None:
            await self._async.aclose()

    def __enter__(self) -> SitesApiClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- the reads, as one config ------------------------------------------------------

    def fetch_config(self, site: str, previous: FetchedConfig | None = None) -> FetchedConfig:
        """The site's config from its reads, conditional on ``previous``'s ETags.

        The site itself is read first and each answer is checked as it comes, so a site
        that does not exist (or a refused key, or an outage) costs one read, not seven.
        """
        path = _site_path(site)
        answers: list[httpx.Response] = []
        bodies: list[Json] = []
        for index, (suffix, _) in enumerate(READS):
            answer = self._send("GET", path + suffix, headers=_conditional(previous, index))
            bodies.append(_checked_body(answer, index, previous))
            answers.append(answer)
        return _assemble(answers, bodies, previous)

    async def afetch_config(
        self, site: str, previous: FetchedConfig | None = None
    ) -> FetchedConfig:
        """``fetch_config``, with reads sent concurrently.

        A first fetch (no ``previous``) reads the site first and sends the six list reads
        together only once it exists, so an unknown site costs one read. A refresh of a
        known site (``previous`` given) sends all seven at once.
        """
        path = _site_path(site)

        def read(index: int) -> Awaitable[httpx.Response]:
            return self._asend("GET", path + READS[index][0], headers=_conditional(previous, index))

        answers: list[httpx.Response] = []
        if previous is None:
            answers.append(await read(0))
            _checked_body(answers[0], 0, previous)  # an unknown site stops here, after one read
            answers += await asyncio.gather(*(read(index) for index in range(1, len(READS))))
        else:
            answers += await asyncio.gather(*(read(index) for index in range(len(READS))))
        bodies = [_checked_body(answer, index, previous) for index, answer in enumerate(answers)]
        return _assemble(answers, bodies, previous)

    # --- the rules feed ------------------------------------------------------------------

    def edge_rules(
        self, since: int | None = None, *, wait: float = 0.0, etag: str | None = None
    ) -> FeedAnswer:
        """GET /api/edge/rules: every site (``since`` None) or the changes after ``since``,
        held up to ``wait`` seconds until one commits; ``etag`` makes a snapshot
        conditional."""
        params, headers, timeout = _feed_request(since, wait, etag, self._options["timeout"])
        answer = self._send("GET", EDGE_RULES, params=params, headers=headers, timeout=timeout)
        return _feed_answer(answer, since)

    async def aedge_rules(
        self, since: int | None = None, *, wait: float = 0.0, etag: str | None = None
    ) -> FeedAnswer:
        """``edge_rules`` on the event loop."""
        params, headers, timeout = _feed_request(since, wait, etag, self._options["timeout"])
        answer = await self._asend(
            "GET", EDGE_RULES, params=params, headers=headers, timeout=timeout
        )
        return _feed_answer(answer, since)

    # --- single endpoints, sync ----------------------------------------------------------

    def site(self, site: str) -> Json:
        """GET /api/sites/:siteId"""
        return self._call("GET", _site_path(site), _identity)

    def excluded_ips(self, site: str) -> list[str]:
        """GET /api/sites/:siteId/excluded-ips"""
        return self._call("GET", _site_path(site) + "/excluded-ips", _list("excludedIPs"))

    def excluded_countries(self, site: str) -> list[str]:
        """GET /api/sites/:siteId/excluded-countries"""
        path = _site_path(site) + "/excluded-countries"
        return self._call("GET", path, _list("excludedCountries"))

    def create_site(
        self, organization_id: str, domain: str, name: str, **flags: bool | str
    ) -> Json:
        """POST /api/sites/:orgId; the created site object (``flags`` may hold ``type``)."""
        body = {"domain": domain, "name": name, **flags}
        return self._call(
            "POST", f"/api/sites/{quote(organization_id, safe='')}", _identity, json=body
        )

    def delete_site(self, site: str) -> None:
        """DELETE /api/sites/:siteId"""
        self._call("DELETE", _site_path(site), _identity)

    def update_config(self, site: str, **fields: Any) -> Json:
        """PUT /api/sites/:siteId/config with the given API fields; the full config."""
        return self._call("PUT", _site_path(site) + "/config", _config, json=fields)

    def private_link(self, site: str) -> str | None:
        """GET .../private-link-config: the private link key, or None."""
        return self._call("GET", _site_path(site) + PRIVATE_LINK, _private_key)

    def generate_private_link(self, site: str) -> str:
        """POST .../private-link-config ``generate_private_link_key``: the new key."""
        key = self._call("POST", _site_path(site) + PRIVATE_LINK, _private_key, json=_GENERATE)
        if key is None:
            raise MalformedResponseError("generate_private_link_key answered no key")
        return key

    def revoke_private_link(self, site: str) -> None:
        """POST .../private-link-config ``revoke_private_link_key``."""
        self._call("POST", _site_path(site) + PRIVATE_LINK, _private_key, json=_REVOKE)

    # --- single endpoints, async ---------------------------------------------------------

    async def asite(self, site: str) -> Json:
        """GET /api/sites/:siteId"""
        return await self._acall("GET", _site_path(site), _identity)

    async def acreate_site(
        self, organization_id: str, domain: str, name: str, **flags: bool | str
    ) -> Json:
        """POST /api/sites/:orgId; the created site object."""
        body = {"domain": domain, "name": name, **flags}
        path = f"/api/sites/{quote(organization_id, safe='')}"
        return await self._acall("POST", path, _identity, json=body)

    async def adelete_site(self, site: str) -> None:
        """DELETE /api/sites/:siteId"""
        await self._acall("DELETE", _site_path(site), _identity)

    async def aupdate_config(self, site: str, **fields: Any) -> Json:
        """PUT /api/sites/:siteId/config with the given API fields; the full config."""
        return await self._acall("PUT", _site_path(site) + "/config", _config, json=fields)


_GENERATE: Final = {"action": "generate_private_link_key"}
_REVOKE: Final = {"action": "revoke_private_link_key"}


def _site_path(site: str) -> str:
    return f"/api/sites/{quote(str(site), safe='')}"


def _conditional(previous: FetchedConfig | None, index: int) -> dict[str, str]:
    etag = None if previous is None or index >= len(previous.etags) else previous.etags[index]
    return {"If-None-Match": etag} if etag else {}


def _raise_for_status(response: httpx.Response) -> None:
    status = response.status_code
    if 200 <= status < 300 or status == 304:
        return
    try:
        body: object = response.json()
    except ValueError:
        body = response.text[:500]
    error = body.get("error") if isinstance(body, dict) else None
    where = f"{response.request.method} {response.request.url}"
    message = f"{where} answered {status}: {error or body!r}"
    kind: type[SitesApiError] = ApiServerError
    if status in (401, 403):
        kind = ApiAuthError
    elif status == 404:
        kind = SiteNotFoundError
    elif status in (400, 413, 422):
        kind = ApiRequestError
    raise kind(message, status=status, body=body)


def _json_body(response: httpx.Response) -> Json:
    _raise_for_status(response)
    try:
        body = response.json()
    except ValueError:
        raise MalformedResponseError(
            f"{response.request.url} answered with a body that is not JSON",
            status=response.status_code,
        ) from None
    if not isinstance(body, dict):
        raise MalformedResponseError(
            f"{response.request.url} answered JSON that is not an object: {body!r:.200}",
            status=response.status_code,
        )
    return body


def _checked_body(answer: httpx.Response, index: int, previous: FetchedConfig | None) -> Json:
    """The body of read ``index``: the previous one on a 304, an empty list for a newer
    read the server lacks, else the answer's, checked."""
    if answer.status_code == 304 and previous is not None:
        return previous.bodies[index]
    if index in _LACKING and answer.status_code == 404 and not _names_site(answer):
        return dict(_LACKING[index])
    body = _json_body(answer)
    field = READS[index][1]
    if field is not None:
        _list(field)(body)
    return body


def _names_site(answer: httpx.Response) -> bool:
    """Whether a 404 says the site is not found (rather than the route)."""
    try:
        body = answer.json()
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("error") == SITE_NOT_FOUND


def _assemble(
    answers: list[httpx.Response], bodies: list[Json], previous: FetchedConfig | None = None
) -> FetchedConfig:
    """One ``FetchedConfig`` from the answers and their checked bodies."""
    site, *lists = bodies
    fields = {field: body[field] for (_, field), body in zip(READS[1:], lists, strict=True)}
    try:
        config = SiteConfig.from_api({**site, **fields})
    except ConfigError as error:
        raise MalformedResponseError(f"site config is malformed: {error}") from error
    etags = tuple(answer.headers.get("etag") for answer in answers)
    not_modified = previous is not None and all(
        _unchanged(answer, index, previous) for index, answer in enumerate(answers)
    )
    return FetchedConfig(config, tuple(bodies), etags, not_modified)


def _unchanged(answer: httpx.Response, index: int, previous: FetchedConfig) -> bool:
    """Whether read ``index`` answered what ``previous`` holds: a 304, or again the 404 of
    an endpoint the server lacks."""
    if answer.status_code == 304:
        return True
    return (
        index in _LACKING
        and index < len(previous.bodies)
        and answer.status_code == 404
        and previous.etags[index] is None
        and previous.bodies[index] == _LACKING[index]
    )


def _feed_request(
    since: int | None, wait: float, etag: str | None, timeout: float
) -> tuple[dict[str, str], dict[str, str], float]:
    """The query, headers and timeout of a feed read: a long poll may take ``wait`` more."""
    params: dict[str, str] = {}
    if since is not None:
        params["since"] = str(since)
        if wait > 0:
            params["wait"] = f"{wait:g}"
    headers = {"If-None-Match": etag} if etag else {}
    return params, headers, timeout + (wait if since is not None else 0.0)


def _feed_answer(answer: httpx.Response, since: int | None) -> FeedAnswer:
    """The feed's answer, checked: a 304, or a body with its version, epoch and sites."""
    etag = answer.headers.get("etag")
    retry = answer.headers.get("retry-after", "")
    retry_after = float(retry) if retry.isascii() and retry.isdigit() else None
    if answer.status_code == 304:
        return FeedAnswer(None, since, False, (), (), etag, True, retry_after)
    body = _json_body(answer)
    epoch, version, full = body.get("epoch"), body.get("version"), body.get("full")
    sites, deleted = body.get("sites"), body.get("deleted", [])
    if (
        not isinstance(epoch, str)
        or not isinstance(version, int)
        or isinstance(version, bool)
        or not isinstance(full, bool)
        or not isinstance(sites, list)
        or not all(isinstance(site, dict) for site in sites)
        or not isinstance(deleted, list)
        or not all(isinstance(site, int) and not isinstance(site, bool) for site in deleted)
    ):
        raise MalformedResponseError(f"the rules feed answered a malformed body: {body!r:.200}")
    return FeedAnswer(epoch, version, full, tuple(sites), tuple(deleted), etag, False, retry_after)


def _identity(body: Json) -> Json:
    return body


def _list(field: str) -> Callable[[Json], list[str]]:
    def parse(body: Json) -> list[str]:
        value = body.get(field)
        if not isinstance(value, list):
            raise MalformedResponseError(f"answer has no list {field!r}: {body!r:.200}")
        return value

    return parse


def _config(body: Json) -> Json:
    config = body.get("config")
    if not isinstance(config, dict):
        raise MalformedResponseError(f"config update answered no config: {body!r:.200}")
    return config


def _private_key(body: Json) -> str | None:
    data = body.get("data")
    key = data.get("privateLinkKey") if isinstance(data, dict) else None
    if not isinstance(data, dict) or not (key is None or isinstance(key, str)):
        raise MalformedResponseError(f"private link answer is malformed: {body!r:.200}")
    return key
