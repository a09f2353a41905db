"""The OpenAPI description against the app: a valid spec, the same routes, live answers that fit.

``check_answer`` validates one live answer against the spec's schema for its path, method
and status; the server tests install it as a response hook on their clients, so every answer
they see is checked.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator, ValidationError
from openapi_spec_validator import validate
from starlette.routing import Route

from edgefilter._rules import SITE_FLAGS, SiteConfig
from edgefilter.server import create_app
from edgefilter.server._app import LIST_FIELDS
from edgefilter.server._openapi import OPENAPI
from edgefilter.server._store import sites


@cache
def _templates() -> tuple[tuple[re.Pattern[str], str], ...]:
    """Each spec path as a pattern over a raw request path (one segment per parameter)."""

    def segment(part: str) -> str:
        return "[^/]+" if part.startswith("{") else re.escape(part)

    return tuple(
        (re.compile("^" + "/".join(segment(part) for part in path.split("/")) + "$"), path)
        for path in OPENAPI["paths"]
    )


def operation_for(method: str, raw_path: str) -> tuple[str, str] | None:
    """The spec's path and method for a request, or None when the spec describes none."""
    for pattern, path in _templates():
        if pattern.match(raw_path) and method.lower() in OPENAPI["paths"][path]:
            return path, method.lower()
    return None


@cache
def _validator(path: str, method: str, status: str) -> Draft202012Validator | None:
    """The validator of the documented answer's body; None when it has no body."""
    content = OPENAPI["paths"][path][method]["responses"][status].get("content")
    if content is None:
        return None
    schema = {**content["application/json"]["schema"], "components": OPENAPI["components"]}
    return Draft202012Validator(schema)


def check_answer(answer: httpx.Response) -> None:
    """Assert that a live answer has a status and a body the spec documents for its request."""
    request = answer.request
    raw_path = request.url.raw_path.split(b"?", 1)[0].decode("ascii")
    operation = operation_for(request.method, raw_path)
    if operation is None:
        return
    path, method = operation
    status = str(answer.status_code)
    assert status in OPENAPI["paths"][path][method]["responses"], (method, raw_path, status)
    validator = _validator(path, method, status)
    if validator is None or request.method == "HEAD":
        assert not answer.content
        return
    validator.validate(answer.json())


def response_hook(answer: httpx.Response) -> None:
    """An httpx response hook: read the answer and check it against the spec."""
    answer.read()
    check_answer(answer)


def test_spec_is_valid_openapi() -> None:
    """The served description is a valid OpenAPI 3.1 document."""
    validate(OPENAPI)


def test_spec_and_routes_agree(tmp_path: Path) -> None:
    """Every route of the app is described, and every described operation is a route."""
    app = create_app(f"sqlite:///{tmp_path / 'sites.db'}")
    routes = {
        (route.path, method.lower())
        for route in app.routes
        if isinstance(route, Route)
        for method in route.methods or ()
        if method != "HEAD"
    }
    described = {(path, method) for path, item in OPENAPI["paths"].items() for method in item}
    assert routes == described
    app.state.store.close()


@pytest.mark.parametrize(
    ("answer", "request_"),
    [
        # a field the schema does not know, a missing field, a wrong type, an undocumented status
        ({"success": True, "excludedIPs": [], "more": 1}, ("GET", "/api/sites/1/excluded-ips")),
        ({"success": True}, ("GET", "/api/sites/1/excluded-countries")),
        ({"success": False, "error": 1}, ("GET", "/api/sites/1", 404)),
        ({"success": False, "error": "x"}, ("DELETE", "/api/sites/1", 413)),
    ],
)
def test_check_answer_refuses_what_the_spec_does_not_say(
    answer: dict[str, Any], request_: tuple[Any, ...]
) -> None:
    """The checker itself fails on answers that do not fit the spec."""
    method, path, *status = request_
    response = httpx.Response(
        status[0] if status else 200, json=answer, request=httpx.Request(method, "http://x" + path)
    )
    with pytest.raises((AssertionError, ValidationError)):
        check_answer(response)


def test_site_flags_are_declared_once() -> None:
    """SiteConfig, the store's columns and the spec's schemas all carry exactly SITE_FLAGS."""
    attributes = {attribute for attribute, _ in SITE_FLAGS.values()}
    assert attributes <= set(SiteConfig.__dataclass_fields__)
    assert attributes <= {column.name for column in sites.columns}
    schemas = OPENAPI["components"]["schemas"]
    assert set(schemas["Config"]["properties"]) == set(SITE_FLAGS) | LIST_FIELDS | {"type"}
    assert set(SITE_FLAGS) <= set(schemas["Site"]["required"])
    assert set(SITE_FLAGS) <= set(schemas["ConfigUpdate"]["properties"])
