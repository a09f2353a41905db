"""Hit routes: which paths carry hits, where each takes its site id from, how large a body.

A ``HitRoute`` is a path (``/api/track``) or a path template whose last segment is
``{site_id}`` (``/api/session-replay/record/{site_id}``): the site id comes from the JSON
body's ``site_id`` for the first kind, from that path segment for the second. Each route
may bound its own body (``max_body_bytes``; None: the middleware's). ``RYBBIT_ROUTES`` are
Rybbit v2.7's: track and identify (64 KiB by default), session replay (10 MiB, Rybbit's).

``HitRoutes`` matches a request to its route as Starlette routes it (``root_path``
stripped) and, erring on filtering, as the loosest router would (case folded, repeated
slashes, dot segments, a trailing slash and ``;`` parameters ignored). A template's
segment must be one, non-empty segment; read from the loosest form it is lower case, which
``canonical_site_id`` reads the same.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass
from typing import Any, Final, Literal
from urllib.parse import urlsplit

from ._errors import ConfigError

Scope = MutableMapping[str, Any]
SITE_ID_SEGMENT: Final = "{site_id}"
MAX_REPLAY_BODY: Final = 10 * 1024 * 1024  # Rybbit's bodyLimit, for session replays
_SLASH_RUNS: Final = re.compile("/{2,}")
_QUERY_OR_FRAGMENT: Final = re.compile("[?#]")


@dataclass(frozen=True, slots=True)
class HitRoute:
    """A path that carries hits; ``{site_id}`` as its last segment takes the site id from
    the path instead of the body. ``max_body_bytes`` None: the middleware's limit."""

    path: str
    max_body_bytes: int | None = None

    def __post_init__(self) -> None:
        path = self.path
        if not isinstance(path, str) or not path.startswith("/"):
            raise ConfigError(f"path {path!r} must be a str starting with '/'")
        if SITE_ID_SEGMENT in path and not path.endswith("/" + SITE_ID_SEGMENT):
            raise ConfigError(f"path {path!r} may hold {SITE_ID_SEGMENT} only as its last segment")
        if path.count(SITE_ID_SEGMENT) > 1:
            raise ConfigError(f"path {path!r} holds {SITE_ID_SEGMENT} more than once")
        limit = self.max_body_bytes
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
            raise ConfigError(f"max_body_bytes {limit!r} of {path!r} must be an int")
        if limit is not None and limit <= 0:
            raise ConfigError(f"max_body_bytes {limit!r} of {path!r} must be positive")

    @property
    def site_id_from(self) -> Literal["body", "path"]:
        """Where the route's hits name their site."""
        return "path" if self.path.endswith(SITE_ID_SEGMENT) else "body"


RYBBIT_ROUTES: Final = (
    HitRoute("/api/track"),
    HitRoute("/api/identify"),
    HitRoute("/api/session-replay/record/{site_id}", MAX_REPLAY_BODY),
)


class RouteMatch:
    """A request's route, its body limit (and that limit's digit count, for a quick check
    of a ``Content-Length``) and, for a template, the site id segment (else None)."""

    __slots__ = ("digits", "limit", "route", "site")

    def __init__(self, route: HitRoute, limit: int, site: str | None) -> None:
        self.route = route
        self.limit = limit
        self.digits = len(str(limit))
        self.site = site


class HitRoutes:
    """The routes compiled for matching (see the module docstring)."""

    def __init__(self, routes: Iterable[HitRoute | str], default_limit: int) -> None:
        if isinstance(routes, str):
            raise ConfigError(
                f"routes must be a list of paths or HitRoutes, not the str {routes!r}"
            )
        checked = [route if isinstance(route, HitRoute) else HitRoute(route) for route in routes]
        if not checked:
            raise ConfigError("no hit routes: the middleware would filter nothing")
        self.routes = tuple(dict.fromkeys(checked))
        self.paths = frozenset(route.path for route in self.routes)
        self.exact: dict[str, RouteMatch] = {}  # body routes by path as given
        self._normal: dict[str, RouteMatch] = {}
        self._templates: list[tuple[str, str, HitRoute, int]] = []
        for route in self.routes:
            limit = route.max_body_bytes or default_limit
            if route.site_id_from == "body":
                self.exact.setdefault(route.path, RouteMatch(route, limit, None))
                self._normal.setdefault(normal_path(route.path), RouteMatch(route, limit, None))
            else:
                prefix = route.path[: -len(SITE_ID_SEGMENT)]
                self._templates.append((prefix, normal_path(prefix) + "/", route, limit))
        # Every template's prefix, as given and read loosely: one C call tells a miss.
        self._prefixes = tuple(prefix for prefix, _, _, _ in self._templates)
        self._normal_prefixes = tuple(normal for _, normal, _, _ in self._templates)

    def match(self, scope: Scope) -> RouteMatch | None:
        """The route of the request in ``scope``, or None when it is not a hit path."""
        path: str = scope["path"]
        found = self.exact.get(path)
        if found is not None:
            return found
        route = route_path(scope)
        if route != path:
            found = self.exact.get(route)
        if found is None and route.startswith(self._prefixes):
            found = self._match_template(route, normal=False)
        if found is not None:
            return found
        for form in (route, path) if route != path else (route,):
            loose = normal_path(form)
            found = self._normal.get(loose)
            if found is None and loose.startswith(self._normal_prefixes):
                found = self._match_template(loose, normal=True)
            if found is not None:
                return found
        return None

    def _match_template(self, path: str, *, normal: bool) -> RouteMatch | None:
        for prefix, normal_prefix, route, limit in self._templates:
            start = normal_prefix if normal else prefix
            if path.startswith(start):
                segment = path[len(start) :]
                if segment and "/" not in segment and segment not in (".", ".."):
                    return RouteMatch(route, limit, segment)
        return None


def route_path(scope: Scope) -> str:
    """The path as Starlette routes it: ``root_path`` stripped from the front when there
    (``starlette._utils.get_route_path``)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        return path[len(root) :]
    return path


def normal_path(path: str) -> str:
    """A path as the loosest router reads it: ``;`` parameters dropped, repeated slashes
    folded, dot segments resolved, no trailing slash, lower case."""
    path = _SLASH_RUNS.sub("/", "/" + path.partition(";")[0])
    return posixpath.normpath(path).lower()


def page_of(page_url: object) -> tuple[str | None, str | None]:
    """The path and hostname of a session replay's ``metadata.pageUrl``, as Rybbit reads
    them: an absolute URL's path and host; a relative one starting with ``/``, its path up
    to ``?`` or ``#`` and no host; anything else (or not text), neither."""
    if not isinstance(page_url, str) or not page_url:
        return None, None
    try:
        parts = urlsplit(page_url.strip())
        host = parts.hostname
    except ValueError:  # an unclosed IPv6 bracket, a bad port
        parts, host = None, None
    if parts is not None and parts.scheme and parts.netloc:
        return parts.path or "/", host
    if page_url.startswith("/"):
        return _QUERY_OR_FRAGMENT.split(page_url, maxsplit=1)[0], None
    return None, None
