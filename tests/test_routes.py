"""Hit routes: path templates, per-route limits, matching as the loosest router would."""

from __future__ import annotations

import posixpath
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgefilter._errors import ConfigError
from edgefilter._routes import RYBBIT_ROUTES, HitRoute, HitRoutes, page_of

ROUTES = HitRoutes(RYBBIT_ROUTES, 64 * 1024)


def scope(path: str, root_path: str = "") -> dict[str, Any]:
    """An HTTP scope for ``path``."""
    return {"type": "http", "path": path, "root_path": root_path}


@pytest.mark.parametrize(
    ("path", "root_path", "expected"),
    [
        # body routes, as sent and loosely
        ("/api/track", "", ("/api/track", None)),
        ("/api/identify", "", ("/api/identify", None)),
        ("/API//track/", "", ("/api/track", None)),
        ("/api/./track", "", ("/api/track", None)),
        ("/api/track;x=1", "", ("/api/track", None)),
        ("/edge/api/track", "/edge", ("/api/track", None)),
        # the replay template: the site from the last segment
        ("/api/session-replay/record/1", "", ("/api/session-replay/record/{site_id}", "1")),
        ("/api/session-replay/record/A1B2", "", ("/api/session-replay/record/{site_id}", "A1B2")),
        ("/API/session-replay//record/A1B2/", "", ("/api/session-replay/record/{site_id}", "a1b2")),
        (
            "/edge/api/session-replay/record/7",
            "/edge",
            ("/api/session-replay/record/{site_id}", "7"),
        ),
        # not hit paths
        ("/api/session-replay/record/", "", None),
        ("/api/session-replay/record/1/2", "", None),
        ("/api/session-replay/record/..", "", None),
        ("/api/session-replay/list/1", "", None),
        ("/api/tracking", "", None),
        ("/api/script.js", "", None),
        ("/", "", None),
    ],
)
def test_matching(path: str, root_path: str, expected: tuple[str, str | None] | None) -> None:
    """Which route a path is, and the site segment of a template."""
    found = ROUTES.match(scope(path, root_path))
    assert (None if found is None else (found.route.path, found.site)) == expected


def test_each_route_has_its_limit() -> None:
    """A route's own limit, else the default."""
    routes = HitRoutes([HitRoute("/a"), HitRoute("/b/{site_id}", 10)], 99)
    assert [routes.match(scope(p)).limit for p in ("/a", "/b/1")] == [99, 10]  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("route", "message"),
    [
        ("api/track", "must be a str starting with '/'"),
        ("/a/{site_id}/b", "only as its last segment"),
        ("/a/{site_id}/{site_id}", "more than once"),
    ],
)
def test_bad_routes_are_config_errors(route: str, message: str) -> None:
    """A bad path names itself."""
    with pytest.raises(ConfigError, match=message):
        HitRoute(route)


@pytest.mark.parametrize("limit", [0, -1, True, 1.5])
def test_bad_limits_are_config_errors(limit: Any) -> None:
    """A limit must be a positive int."""
    with pytest.raises(ConfigError, match="max_body_bytes"):
        HitRoute("/a", limit)


def test_a_str_or_nothing_is_refused() -> None:
    """A str is not a list of routes; no routes would filter nothing."""
    for routes in ("/api/track", []):
        with pytest.raises(ConfigError):
            HitRoutes(routes, 1)  # type: ignore[arg-type]


def loose(path: str) -> str:
    """The plainest statement of the loosest reading: lower case, no ``;`` part, runs of
    slashes as one, dot segments resolved, no trailing slash."""
    path = "/" + path.split(";", maxsplit=1)[0].lower()
    while "//" in path:
        path = path.replace("//", "/")
    return posixpath.normpath(path)


@given(st.text(alphabet="/.;aAtrckpi", max_size=20))
def test_body_routes_match_as_the_plain_reading(path: str) -> None:
    """A body route matches exactly when the path, read loosely, is it."""
    routes = HitRoutes(["/api/track"], 1)
    assert (routes.match(scope(path)) is not None) == (
        path == "/api/track" or loose(path) == "/api/track"
    )


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://Shop.Example/a/b?x=1#y", ("/a/b", "shop.example")),
        ("https://shop.example", ("/", "shop.example")),
        ("http://[::1]:8080/p", ("/p", "::1")),
        ("/relative/p?q#f", ("/relative/p", None)),
        ("relative", (None, None)),
        ("", (None, None)),
        (None, (None, None)),
        (42, (None, None)),
        ("http://[::1/p", (None, None)),
    ],
)
def test_page_of(url: object, expected: tuple[str | None, str | None]) -> None:
    """A replay's page as Rybbit reads it from ``metadata.pageUrl``."""
    assert page_of(url) == expected
