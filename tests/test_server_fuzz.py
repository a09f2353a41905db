"""Fuzz the reference Sites API over loopback: hostile requests get a bounded 4xx, never a 5xx.

Every route, with and without a valid key, with random paths, site ids, bodies and headers
(deep and huge JSON, non-JSON, wrong types, unknown fields, NUL bytes, lone surrogates), on
SQLite and PostgreSQL. A failed request must leave the organisation's sites exactly as they
were, read back from the database.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from edgefilter._serving import serve_in_thread
from edgefilter.server import create_app
from edgefilter.server._app import CONFIG_FIELDS, CREATE_FIELDS
from edgefilter.server._openapi import OPENAPI
from edgefilter.server._store import RULE_LISTS, SiteStore, sites

from .test_server import postgres_url
from .test_server_spec import check_answer

pytestmark = pytest.mark.adversarial

MAX_BODY = 16 * 1024
MAX_IPS = 50
# Bounds on an answer: an error quotes at most 20 short details; a success answer is at most
# a site with MAX_IPS entries of 256 characters, v2.7's lists at their limits (100 entries
# of 2,048, 253 and 512 characters, 100 ASNs), a name and a domain; or the OpenAPI document.
MAX_ERROR_ANSWER = 8 * 1024
MAX_SUCCESS_ANSWER = max(
    MAX_IPS * 260 + 100 * (2051 + 256 + 515 + 11) + 4 * 1024,
    len(json.dumps(OPENAPI, separators=(",", ":"))) + 1024,
)


@dataclass
class Target:
    """A live server with one organisation under attack and the keys that reach it."""

    url: str
    store: SiteStore
    org_id: str
    keys: dict[str, str]
    site: dict[str, Any]
    public_site: dict[str, Any]

    def create(self, **fields: Any) -> dict[str, Any]:
        """A new site of the organisation, created through the API."""
        body = {"domain": "example.com", "name": "Target", **fields}
        headers = {"Authorization": f"Bearer {self.keys['owner']}"}
        answer = httpx.post(f"{self.url}/api/sites/{self.org_id}", json=body, headers=headers)
        assert answer.status_code == 201, answer.text
        created: dict[str, Any] = answer.json()
        config = {"excludedIPs": ["10.0.0.0/8", "2001:db8::/32"], "excludedCountries": ["FR"]}
        path = f"{self.url}/api/sites/{created['siteId']}/config"
        httpx.put(path, json=config, headers=headers).raise_for_status()
        return created

    def state(self) -> list[tuple[Any, ...]]:
        """Every stored row of the organisation's sites and their lists, in a fixed order."""
        with self.store.transaction(write=False) as connection:
            rows = connection.execute(
                select(sites)
                .where(sites.c.organization_id == self.org_id)
                .order_by(sites.c.site_id)
            ).all()
            ids = [row.site_id for row in rows]
            lists = [
                connection.execute(
                    select(table).where(table.c.site_id.in_(ids)).order_by(*table.primary_key)
                ).all()
                for table, _ in RULE_LISTS.values()
            ]
        return [tuple(row) for row in rows] + [tuple(row) for rows in lists for row in rows]

    def restore(self) -> None:
        """Recreate the target sites when a request with a valid key deleted them."""
        for name in ("site", "public_site"):
            site = getattr(self, name)
            with self.store.transaction(write=False) as connection:
                if self.store.find_site(connection, str(site["siteId"])) is None:
                    setattr(self, name, self.create(public=name == "public_site"))


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def target(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Target]:
    """A server per backend with small limits, one organisation, its keys and two sites."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'sites.db'}"
    else:
        url = postgres_url()
    app = create_app(url, max_body_bytes=MAX_BODY, max_excluded_ips=MAX_IPS)
    store: SiteStore = app.state.store
    org_id = store.create_organization("Fuzzed")
    stranger_org = store.create_organization("Stranger")
    keys = {role: store.create_key(org_id, role) for role in ("owner", "admin", "member")}
    keys["stranger"] = store.create_key(stranger_org, "owner")
    with serve_in_thread(app) as base_url:
        target = Target(base_url, store, org_id, keys, {}, {})
        target.site = target.create()
        target.public_site = target.create(public=True)
        yield target


# --- strategies ----------------------------------------------------------------------------

# Text as a client may send it: NUL, controls, astral characters (surrogates cannot be sent
# as text; they come as escapes in raw bodies and as percent-encoded bytes in paths).
texts = st.text(st.characters(codec="utf-8"), max_size=30) | st.sampled_from(
    ["", " ", "\x00", "a\x00b", "10.0.0.1\x00", "x" * 300, "²", "①", "\u0661", "\ufeff"]
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(texts, children, max_size=4),
    max_leaves=12,
)
field_values = (
    json_values
    | st.lists(st.sampled_from(["10.0.0.1", "::1", "1.2.3.9-1.2.3.1", "bogus", "\x00"]) | texts)
    | st.lists(st.sampled_from(["FR", "cn", "XX", "usa", " de "]) | texts)
    | st.sampled_from(["generate_private_link_key", "revoke_private_link_key", "example.com"])
)
field_names = st.sampled_from(sorted(CONFIG_FIELDS | CREATE_FIELDS | {"action"})) | texts
object_bodies = st.dictionaries(field_names, field_values, max_size=6).map(
    lambda body: json.dumps(body).encode("utf-8")
)
raw_bodies = st.sampled_from(
    [
        b"",
        b"null",
        b"[]",
        b'"text"',
        b"{",
        b"\xff\xfe{}",
        b"\xef\xbb\xbf{}",
        b'{"name": NaN}',
        b'{"name": 1e999}',
        b'{"public": 123456789012345678901234567890}',
        b'{"excludedIPs": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        b'{"\\ud800": true}',
        b'{"name": "\\udc00"}',
        b'{"excludedIPs": ["\\ud83d"]}',
        b'{"action": "generate_private_link_key", "action": "steal"}',
        b'{"name": "' + b"x" * (MAX_BODY + 10) + b'"}',
        b'{"excludedIPs": [' + b",".join(b'"bogus%d"' % i for i in range(MAX_IPS)) + b"]}",
        b'{"excludedCountries": [' + b",".join(b'"Q%d"' % i for i in range(250)) + b"]}",
        json.dumps({f"unknown{i}" + "z" * 40: i for i in range(300)}).encode(),
    ]
)
bodies = st.none() | object_bodies | raw_bodies

# Site ids: the real ones (named, resolved per example), spellings of them, and odd ones,
# already percent-encoded for the path.
site_ids = (
    st.sampled_from(["{siteId}", "{id}", "{ID}", "00{siteId}", "{publicSiteId}", "{publicId}"])
    | st.sampled_from(
        [
            quote(text, safe="")
            for text in ["²", "①", "\u0661", "1²", "-1", "0", "0x1f", "abcdefabcdefa", " 1"]
        ]
        + ["9" * 5000, str(2**31), str(2**31 - 1), str(2**63), str(2**63 - 1), "%00", "1%00"]
        + ["%ED%A0%80", "%ff", "%C0%80", "{id}%00"]
    )
    | texts.map(lambda text: quote(text, safe=""))
)
suffixes = st.sampled_from(
    ["", "/config", "/excluded-ips", "/excluded-countries", "/private-link-config", "/", "/x"]
)
org_ids = st.sampled_from(["{orgId}", "{orgId}%00", "org_nope", "%00", "%ED%A0%80"]) | texts.map(
    lambda text: quote(text, safe="")
)
paths = (
    st.tuples(site_ids, suffixes).map(lambda parts: f"/api/sites/{parts[0]}{parts[1]}")
    | org_ids.map(lambda org: f"/api/sites/{org}")
    | st.sampled_from(["/openapi.json", "/", "/api", "/api/sites", "/api/sites/"])
)
methods = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"])
keys = st.sampled_from(["owner", "admin", "member", "stranger", None])
printable = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
authorizations = st.one_of(
    keys,
    st.sampled_from(["Bearer", "Bearer ", "Basic abc", "bearer ef_nope", "ef_x"]),
    printable.map(lambda text: "Bearer " + text),
)
extra_headers = st.dictionaries(
    st.sampled_from(["content-type", "if-none-match", "accept", "x-forwarded-for"]),
    printable | st.sampled_from(["*", "application/json", "text/plain", '"abc", W/"def"']),
    max_size=3,
)


class Probe(NamedTuple):
    """One request: the path may name the target's ids as ``{siteId}``, ``{id}``, ``{orgId}``."""

    method: str
    path: str
    authorization: str | None
    body: bytes | None = None
    headers: dict[str, str] = {}  # noqa: RUF012 - a NamedTuple default, never mutated


any_probes = st.builds(Probe, methods, paths, authorizations, bodies, extra_headers)
# Writes with a writer's key on a real site: the requests that reach body parsing.
writes = st.sampled_from(
    [
        ("PUT", "/api/sites/{site}/config"),
        ("POST", "/api/sites/{site}/private-link-config"),
        ("POST", "/api/sites/{orgId}"),
    ]
)
write_probes = st.builds(
    lambda route, site, key, body, headers: Probe(
        route[0], route[1].replace("{site}", site), key, body, headers
    ),
    writes,
    st.sampled_from(["{siteId}", "{id}", "{ID}", "00{siteId}", "{publicId}"]),
    st.sampled_from(["owner", "admin"]),
    raw_bodies | object_bodies,
    extra_headers,
)
reads = st.sampled_from(["GET", "HEAD", "DELETE"])
read_probes = st.builds(
    lambda method, site, suffix, key, headers: Probe(
        method, f"/api/sites/{site}{suffix}", key, None, headers
    ),
    reads,
    site_ids,
    suffixes,
    keys,
    extra_headers,
)
probes = write_probes | read_probes | any_probes
DEEP = b'{"excludedIPs": ' + b"[" * 5000 + b"]" * 5000 + b"}"


# --- the invariants ------------------------------------------------------------------------


def resolve(template: str, target: Target) -> str:
    """The path with the real ids filled in."""
    site, public = target.site, target.public_site
    return (
        template.replace("{siteId}", str(site["siteId"]))
        .replace("{ID}", site["id"].upper())
        .replace("{id}", site["id"])
        .replace("{publicSiteId}", str(public["siteId"]))
        .replace("{publicId}", public["id"])
        .replace("{orgId}", target.org_id)
    )


def headers_for(target: Target, authorization: str | None, extra: dict[str, str]) -> dict[str, str]:
    """The request headers: a role's key, a raw Authorization value, or none.

    Values are stripped: HTTP allows no white space around a header value.
    """
    headers = {name: value.strip() for name, value in extra.items()}
    if authorization in target.keys:
        headers["authorization"] = f"Bearer {target.keys[authorization]}"
    elif authorization is not None:
        headers["authorization"] = authorization.strip()
    return headers


@settings(
    max_examples=120,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(probe=probes)
# Issue 11's classes, always tried whatever the random draw.
@example(Probe("PUT", "/api/sites/{siteId}/config", "owner", DEEP))
@example(Probe("POST", "/api/sites/{orgId}", "owner", b'{"\\ud800": true}'))
@example(Probe("PUT", "/api/sites/{id}/config", "admin", b'{"name": "a\\u0000b"}'))
@example(Probe("GET", "/api/sites/%C2%B2", "member"))
@example(Probe("GET", "/api/sites/" + "9" * 5000, "member"))
@example(Probe("GET", f"/api/sites/{2**31}/excluded-ips", "owner"))
@example(Probe("GET", "/api/sites/{siteId}%00", "member"))
@example(Probe("POST", "/api/sites/{orgId}%00", "owner", b"{}"))
@example(
    Probe(
        "PUT", "/api/sites/{siteId}/config", "owner", b'{"excludedIPs": ["x"%s]}' % (b', "y"' * 49)
    )
)
def test_no_request_gets_a_5xx(target: Target, probe: Probe) -> None:
    """Any request answers below 500, errors as bounded JSON, failures changing nothing."""
    before = target.state()
    with httpx.Client(base_url=target.url, timeout=30) as client:
        answer = client.request(
            probe.method,
            resolve(probe.path, target),
            content=probe.body,
            headers=headers_for(target, probe.authorization, probe.headers),
        )
    assert answer.status_code < 500, answer.text[:500]
    check_answer(answer)
    if answer.status_code >= 400:
        assert len(answer.content) <= MAX_ERROR_ANSWER
        if probe.method != "HEAD":
            error = answer.json()
            assert error["success"] is False
            assert isinstance(error["error"], str)
        assert target.state() == before
    else:
        assert len(answer.content) <= MAX_SUCCESS_ANSWER
    target.restore()
