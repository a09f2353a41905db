"""The compiled header scan (``_speedups.scan_headers``) gives ``EdgeFilterMiddleware._scan``'s
answers, or leaves the scan to it (False); it never raises, and it answers the usual
headers itself. ``_speedups.record`` makes the NamedTuple ``tuple.__new__`` makes. Skipped
when the compiled reader is not built (or turned off), except under
``EDGEFILTER_REQUIRE_COMPILED=1``, where a missing build fails instead."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgefilter import EdgeFilter, SiteConfig
from edgefilter._routes import HitRoute, RouteMatch
from edgefilter.middleware import PROXY_HEADERS, EdgeDecision, EdgeFilterMiddleware

from .compiled_module import speedups_or_skip
from .hostile import any_values

_speedups = speedups_or_skip()

scan_headers = _speedups.scan_headers
WANTED = [b"user-agent", b"content-length", b"content-encoding", b"authorization", b"origin"]
OTHERS = [b"host", b"accept", b"User-Agent", b"x-forwarded-host", b"", b"content-length2"]
NAMES = st.sampled_from([*WANTED, *(name.encode() for name in PROXY_HEADERS), *OTHERS])
VALUES = st.one_of(
    st.binary(max_size=30),
    st.from_regex(rb"\A[0-9]{0,25}\Z"),
    st.from_regex(rb"\A0{0,5}[1-9][0-9]{0,20}\Z"),
    st.sampled_from([b"", b"0", b"18", b"19", b"00019", b"9" * 19, b"1" + b"0" * 19, b"+5"]),
)
HEADERS = st.lists(st.tuples(NAMES, VALUES), max_size=12)
LIMITS = st.one_of(st.integers(1, 40), st.integers(1, 2**63 - 1), st.just(2**63 - 1))


def middleware(proxy_header: Any) -> EdgeFilterMiddleware:
    edge_filter = EdgeFilter({"1": SiteConfig(site_id=1)})
    return EdgeFilterMiddleware(
        lambda *_: None,  # type: ignore[arg-type,return-value]
        edge_filter=edge_filter,
        proxy_header=proxy_header,
    )


MIDDLEWARES = {header: middleware(header) for header in PROXY_HEADERS}


@settings(max_examples=600, deadline=None)
@given(headers=HEADERS, limit=LIMITS, proxy_header=st.sampled_from(PROXY_HEADERS))
def test_the_compiled_scan_answers_as_the_python_one(
    headers: list[tuple[bytes, bytes]], limit: int, proxy_header: str
) -> None:
    asgi = MIDDLEWARES[proxy_header]
    expected = asgi._scan(headers, RouteMatch(HitRoute("/api/track"), limit, None))
    answer = scan_headers(headers, asgi._wanted_names, limit)
    names = [name for name, _ in headers if name in asgi._wanted and name != b"content-length"]
    if len(names) == len(set(names)):
        assert answer is not False  # the usual headers: answered in C
    if answer is not False:
        assert answer == expected


@given(
    headers=st.one_of(any_values, HEADERS, st.lists(any_values)),
    wanted=st.one_of(
        any_values,
        st.just(MIDDLEWARES["forwarded"]._wanted_names),
        st.lists(st.one_of(any_values, st.binary(max_size=20)), min_size=6, max_size=6).map(tuple),
    ),
    limit=st.one_of(any_values, LIMITS),
)
def test_the_compiled_scan_never_raises(headers: object, wanted: object, limit: object) -> None:
    scan_headers(headers, wanted, limit)


def test_odd_headers_are_left_to_python() -> None:
    wanted = MIDDLEWARES["x-forwarded-for"]._wanted_names
    for headers in (
        [[b"user-agent", b"x"]],
        [(b"user-agent", "x")],
        [("user-agent", b"x")],
        [(b"user-agent", b"x", b"y")],
        iter([(b"user-agent", b"x")]),
    ):
        assert scan_headers(headers, wanted, 10) is False
    assert scan_headers([], wanted, -1) is False
    assert scan_headers([], wanted, 2**64) is False
    assert scan_headers(((b"user-agent", b"x"),), wanted, 10) == ("x", None, None, None, None)
    assert scan_headers([(b"user-agent", b"\xe9")], wanted, 10) == ("\xe9", None, None, None, None)
    assert scan_headers([], wanted, 10) == ("", None, None, None, None)


def test_an_odd_wanted_is_left_to_python() -> None:
    """Names that are not a tuple of six bytes (the kinds'): Python scans."""
    names = MIDDLEWARES["x-forwarded-for"]._wanted_names
    headers = [(b"user-agent", b"x")]
    for wanted in (list(names), names[:5], (*names, b"x"), (*names[:5], "origin"), {}):
        assert scan_headers(headers, wanted, 10) is False


def test_the_wanted_names_are_the_kinds_in_order() -> None:
    """The compiled scan's names by kind are the Python scan's dict, in kind order."""
    for asgi in MIDDLEWARES.values():
        assert dict(zip(asgi._wanted_names, range(6), strict=True)) == asgi._wanted


@given(items=st.lists(any_values, min_size=4, max_size=4))
def test_record_makes_the_tuple_tuple_new_makes(items: list[object]) -> None:
    made = _speedups.record(EdgeDecision, *items)
    expected = tuple.__new__(EdgeDecision, items)  # what the Python stand-in makes
    assert type(made) is EdgeDecision
    assert [id(item) for item in made] == [id(item) for item in expected]
    assert made.site is items[1]


def test_record_refuses_what_is_not_a_tuple_class() -> None:
    for cls in (list, object(), "EdgeDecision"):
        with pytest.raises(TypeError):
            _speedups.record(cls, 1)
    with pytest.raises(TypeError):
        _speedups.record()
