"""The reference Sites API against a live uvicorn server on loopback, SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, select, text

from edgefilter._serving import serve_in_thread
from edgefilter.server import create_app
from edgefilter.server._openapi import OPENAPI
from edgefilter.server._store import SiteStore, excluded_ips, sites

from .conftest import DATA
from .test_server_spec import response_hook

SEED = json.loads((DATA / "seed" / "sites-api-examples.json").read_text(encoding="utf-8"))
HEX12 = re.compile(r"^[0-9a-f]{12}$")


def postgres_url() -> str:
    """The test PostgreSQL URL; skips outside CI when there is none, fails inside CI."""
    url = os.environ.get("EDGEFILTER_TEST_POSTGRES_URL", "")
    problem = "EDGEFILTER_TEST_POSTGRES_URL is not set"
    if url:
        try:
            engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
            with engine.connect() as connection:
                connection.execute(text("select 1"))
            engine.dispose()
            return url
        except Exception as error:  # any failure to reach it means: not reachable
            problem = f"PostgreSQL at {url} is not reachable: {error}"
    if os.environ.get("CI"):
        pytest.fail(f"CI must provide PostgreSQL: {problem}")
    pytest.skip(f"no PostgreSQL server ({problem}); .ci/run starts one")


@dataclass
class Org:
    """An organisation with one key per role."""

    id: str
    owner: str
    admin: str
    member: str


@dataclass
class Api:
    """A live server and its store."""

    url: str
    store: SiteStore

    def org(self) -> Org:
        org_id = self.store.create_organization("Test org")
        keys = [self.store.create_key(org_id, role) for role in ("owner", "admin", "member")]
        return Org(org_id, *keys)

    def client(self, key: str | None = None) -> httpx.Client:
        """A client with ``key``; every answer it gets is checked against the OpenAPI spec."""
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        hooks = {"response": [response_hook]}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, event_hooks=hooks)

    def site(self, org: Org, **fields: Any) -> dict[str, Any]:
        body = {"domain": "example.com", "name": "My Website", **fields}
        with self.client(org.owner) as client:
            answer = client.post(f"/api/sites/{org.id}", json=body)
        assert answer.status_code == 201, answer.text
        return answer.json()  # type: ignore[no-any-return]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def api(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """A server per backend, shared by the module's tests (each test makes its own org)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'sites.db'}"
    else:
        url = postgres_url()
    app = create_app(url, max_body_bytes=64 * 1024, max_excluded_ips=500)
    with serve_in_thread(app) as base_url:
        yield Api(base_url, app.state.store)


@pytest.fixture
def org(api: Api) -> Org:
    """A fresh organisation with an owner, an admin and a member key."""
    return api.org()


def without(body: dict[str, Any], *keys: str) -> dict[str, Any]:
    """The body less the keys that differ per run (ids, times)."""
    return {key: value for key, value in body.items() if key not in keys}


# --- the seed's examples, replayed ---------------------------------------------------------

# What Rybbit v2.7 (and our ASN rules) add to the seed's v2.2.4 answers, for a new site.
V27_SITE: dict[str, Any] = {"type": "web"}
V27_CONFIG: dict[str, Any] = {
    "type": "web",
    "excludedPaths": [],
    "excludedHostnames": [],
    "excludedUserAgents": [],
    "excludedASNs": [],
}


def test_seed_create_site(api: Api, org: Org) -> None:
    """POST /api/sites/:orgId answers with the seed's site object."""
    with api.client(org.owner) as client:
        answer = client.post(f"/api/sites/{org.id}", json=SEED["create"]["request"])
    assert answer.status_code == 201
    created = answer.json()
    assert set(created) == set(SEED["create"]["response"])
    assert without(created, "siteId", "id", "organizationId", "createdBy") == without(
        SEED["create"]["response"], "siteId", "id", "organizationId", "createdBy"
    )
    assert HEX12.match(created["id"])
    assert created["organizationId"] == org.id


def test_seed_get_site(api: Api, org: Org) -> None:
    """GET /api/sites/:siteId answers with the seed's fields and values, and v2.7's type."""
    site = api.site(org, **SEED["create"]["request"])
    with api.client(org.owner) as client:
        body = client.get(f"/api/sites/{site['siteId']}").json()
    varying = ("id", "siteId", "createdAt", "updatedAt", "createdBy", "organizationId")
    expected = {**SEED["get"]["response"], **V27_SITE}
    assert set(body) == set(expected)
    assert without(body, *varying) == without(expected, *varying)
    assert body["createdAt"].endswith("Z")


def test_seed_update_config(api: Api, org: Org) -> None:
    """PUT .../config with the seed's body answers the seed's response, with v2.7's fields."""
    site = api.site(org, **SEED["create"]["request"])
    with api.client(org.owner) as client:
        answer = client.put(f"/api/sites/{site['siteId']}/config", json=SEED["config"]["request"])
    assert answer.status_code == 200
    expected = SEED["config"]["response"]
    assert answer.json() == {**expected, "config": {**expected["config"], **V27_CONFIG}}


def test_seed_exclusion_reads(api: Api, org: Org) -> None:
    """The two exclusion reads answer exactly the seed's responses."""
    site = api.site(org)
    ips = SEED["excluded_ips"]["response"]["excludedIPs"]
    countries = SEED["excluded_countries"]["response"]["excludedCountries"]
    with api.client(org.admin) as client:
        client.put(
            f"/api/sites/{site['id']}/config",
            json={"excludedIPs": ips, "excludedCountries": countries},
        ).raise_for_status()
    with api.client(org.member) as client:
        assert (
            client.get(f"/api/sites/{site['siteId']}/excluded-ips").json()
            == SEED["excluded_ips"]["response"]
        )
        assert (
            client.get(f"/api/sites/{site['id']}/excluded-countries").json()
            == SEED["excluded_countries"]["response"]
        )


def test_seed_private_link_and_delete(api: Api, org: Org) -> None:
    """Private link generate/read/revoke and delete answer in the seed's shapes."""
    site = api.site(org)
    path = f"/api/sites/{site['siteId']}/private-link-config"
    with api.client(org.owner) as client:
        assert client.get(path).json() == {"success": True, "data": {"privateLinkKey": None}}
        generated = client.post(path, json=SEED["private_link_post"]["request"]).json()
        key = generated["data"]["privateLinkKey"]
        assert HEX12.match(key)
        assert set(generated) == set(SEED["private_link_post"]["response"])
        assert client.get(path).json() == {"success": True, "data": {"privateLinkKey": key}}
        revoked = client.post(path, json={"action": "revoke_private_link_key"}).json()
        assert revoked == {"success": True, "data": {"privateLinkKey": None}}
        assert client.delete(f"/api/sites/{site['id']}").json() == SEED["delete"]["response"]


# --- behaviour -----------------------------------------------------------------------------


def test_both_ids_address_a_site(api: Api, org: Org) -> None:
    """The numeric siteId and the 12-hex id reach the same site."""
    site = api.site(org)
    with api.client(org.member) as client:
        by_number = client.get(f"/api/sites/{site['siteId']}").json()
        by_hex = client.get(f"/api/sites/{site['id']}").json()
    assert by_number == by_hex


def test_config_update_is_partial(api: Api, org: Org) -> None:
    """Fields left out of a PUT keep their values; the answer is the full config."""
    site = api.site(org)
    with api.client(org.owner) as client:
        path = f"/api/sites/{site['siteId']}/config"
        client.put(path, json={"excludedIPs": ["10.0.0.0/8"], "webVitals": False})
        config = client.put(path, json={"blockBots": False}).json()["config"]
        name = client.get(f"/api/sites/{site['siteId']}").json()["name"]
    assert config["excludedIPs"] == ["10.0.0.0/8"]
    assert config["webVitals"] is False
    assert config["blockBots"] is False
    assert name == "My Website"


def test_normalisation(api: Api, org: Org) -> None:
    """Countries are upper-cased and deduplicated; domains lose scheme and slash, IDNA-encoded."""
    site = api.site(org, domain="HTTPS://Bücher.Example/")
    assert site["domain"] == "xn--bcher-kva.example"
    with api.client(org.owner) as client:
        config = client.put(
            f"/api/sites/{site['siteId']}/config",
            json={"excludedCountries": ["cn", "CN", " ru "], "excludedIPs": [" 10.0.0.1 "]},
        ).json()["config"]
    assert config["excludedCountries"] == ["CN", "RU"]
    assert config["excludedIPs"] == ["10.0.0.1"]


def test_etag_and_not_modified(api: Api, org: Org) -> None:
    """The three reads carry an ETag; If-None-Match answers 304 until the data changes."""
    site = api.site(org)
    with api.client(org.member) as member, api.client(org.owner) as owner:
        for step, suffix in enumerate(("", "/excluded-ips", "/excluded-countries")):
            path = f"/api/sites/{site['siteId']}{suffix}"
            first = member.get(path)
            etag = first.headers["etag"]
            again = member.get(path, headers={"If-None-Match": etag})
            assert again.status_code == 304
            assert again.content == b""
            owner.put(
                f"/api/sites/{site['siteId']}/config",
                json={
                    "excludedIPs": [f"10.{step}.0.0/16"],
                    "excludedCountries": [["FR", "DE", "IT"][step]],
                },
            ).raise_for_status()
            changed = member.get(path, headers={"If-None-Match": etag})
            assert changed.status_code == 200
            assert changed.headers["etag"] != etag


def test_delete_removes_every_row(api: Api, org: Org) -> None:
    """After DELETE the site is 404 and its rule rows are gone."""
    site = api.site(org)
    with api.client(org.owner) as client:
        client.put(f"/api/sites/{site['siteId']}/config", json={"excludedIPs": ["1.2.3.4"]})
        assert client.delete(f"/api/sites/{site['siteId']}").status_code == 200
        assert client.get(f"/api/sites/{site['siteId']}").status_code == 404
        assert client.delete(f"/api/sites/{site['siteId']}").status_code == 404
    with api.store.engine.connect() as connection:
        query = select(excluded_ips).where(excluded_ips.c.site_id == site["siteId"])
        assert connection.execute(query).first() is None


def test_concurrent_config_updates_lose_nothing(api: Api, org: Org) -> None:
    """100 concurrent partial updates, ten fields: every field ends at its new value."""
    site = api.site(org)
    path = f"/api/sites/{site['siteId']}/config"
    changes: list[dict[str, Any]] = [
        {"public": True},
        {"saltUserIds": True},
        {"blockBots": False},
        {"sessionReplay": False},
        {"webVitals": False},
        {"trackErrors": False},
        {"trackOutbound": False},
        {"trackUrlParams": True},
        {"excludedIPs": ["192.0.2.0/24", "2001:db8::/32"]},
        {"excludedCountries": ["FR", "DE"]},
    ]
    with api.client(org.owner) as client, ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(lambda i: client.put(path, json=changes[i % 10]), range(100)))
        assert [answer.status_code for answer in answers] == [200] * 100
        final = client.put(path, json={}).json()["config"]
    for change in changes:
        for field, value in change.items():
            assert final[field] == value, field
    with api.store.engine.connect() as connection:
        version = connection.execute(
            select(sites.c.version).where(sites.c.site_id == site["siteId"])
        ).scalar_one()
    assert version == 1 + 100 + 1


def test_openapi_is_served(api: Api) -> None:
    """/openapi.json serves the spec the answers are checked against."""
    with api.client() as client:
        spec = client.get("/openapi.json").json()
    assert spec == json.loads(json.dumps(OPENAPI))
    for schema in ("Site", "CreatedSite", "Config", "ConfigUpdate", "Error", "PrivateLink"):
        assert schema in spec["components"]["schemas"]


# --- auth ----------------------------------------------------------------------------------


def test_auth_errors(api: Api, org: Org) -> None:
    """401 without a valid key, 403 without access, 404 for an unknown site."""
    site = api.site(org)
    other = api.org()
    path = f"/api/sites/{site['siteId']}"
    with api.client() as anonymous:
        assert anonymous.get(path).status_code == 401
        assert anonymous.get(path + "/excluded-ips").status_code == 401
    with api.client("ef_not-a-key") as unknown:
        assert unknown.get(path).json() == {"success": False, "error": "Unauthorized"}
    with api.client(other.owner) as stranger:
        assert stranger.get(path).status_code == 403
        assert stranger.put(path + "/config", json={"public": True}).status_code == 403
        assert (
            stranger.post(f"/api/sites/{org.id}", json={"domain": "a.b", "name": "x"}).status_code
            == 403
        )
        assert (
            stranger.post("/api/sites/org_nope", json={"domain": "a.b", "name": "x"}).status_code
            == 404
        )
    with api.client(org.member) as member:
        assert member.get(path).status_code == 200
        assert member.get(path).json()["isOwner"] is False
        assert member.put(path + "/config", json={"public": True}).status_code == 403
        assert member.delete(path).status_code == 403
        assert member.get(path + "/private-link-config").status_code == 403
        assert (
            member.post(f"/api/sites/{org.id}", json={"domain": "a.b", "name": "x"}).status_code
            == 403
        )
        assert member.get("/api/sites/999999999").status_code == 404
        assert member.get("/api/sites/ffffffffffff").status_code == 404
        assert member.get("/api/sites/not-a-site").status_code == 404


def test_public_site_is_readable_without_a_key(api: Api, org: Org) -> None:
    """A public site's GET needs no key; its lists and private link still do."""
    site = api.site(org, public=True)
    with api.client() as anonymous:
        answer = anonymous.get(f"/api/sites/{site['id']}")
        assert answer.status_code == 200
        assert answer.json()["isOwner"] is False
        assert anonymous.get(f"/api/sites/{site['id']}/excluded-ips").status_code == 401
        assert anonymous.get(f"/api/sites/{site['id']}/private-link-config").status_code == 401


# --- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"excludedIPs": ["10.0.0.0/8", "bogus", "1.2.3.9-1.2.3.1"]}, "Invalid IP patterns"),
        ({"excludedCountries": ["CN", "XX", "usa"]}, "Invalid country codes"),
        ({"excludedIPs": "10.0.0.0/8"}, "excludedIPs must be a list of strings"),
        ({"excludedIPs": [f"10.0.{i // 256}.{i % 256}" for i in range(501)]}, "limit is 500"),
        ({"blockBots": "yes"}, "blockBots must be true or false"),
        ({"favourite": 1, "colour": 2}, "Unknown fields: colour, favourite"),
        ({"domain": "exa mple.com"}, "not a valid domain"),
        ({"name": ""}, "name must be"),
    ],
)
def test_config_validation(api: Api, org: Org, body: dict[str, Any], error: str) -> None:
    """A bad config update answers 400 with the reason, and changes nothing."""
    site = api.site(org)
    with api.client(org.owner) as client:
        answer = client.put(f"/api/sites/{site['siteId']}/config", json=body)
        after = client.get(f"/api/sites/{site['siteId']}/excluded-ips").json()
    assert answer.status_code == 400
    assert answer.json()["success"] is False
    assert error in answer.json()["error"]
    assert after["excludedIPs"] == []


def test_invalid_ip_details_name_each_entry(api: Api, org: Org) -> None:
    """Each rejected IP entry gets a '<entry>: <reason>' detail, as Rybbit writes them."""
    site = api.site(org)
    with api.client(org.owner) as client:
        body = client.put(
            f"/api/sites/{site['siteId']}/config",
            json={"excludedIPs": ["10.0.0.0/8", "bogus", "1.2.3.4/33"]},
        ).json()
    assert body["error"] == "Invalid IP patterns"
    assert [detail.split(": ", 1)[0] for detail in body["details"]] == ["bogus", "1.2.3.4/33"]


@pytest.mark.parametrize(
    ("content", "status", "error"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"[1, 2]", 400, "JSON object"),
        (b'{"name": "' + b"x" * 70_000 + b'"}', 413, "over 65536 bytes"),
    ],
)
def test_bad_bodies(api: Api, org: Org, content: bytes, status: int, error: str) -> None:
    """Invalid JSON and non-objects are 400; a body past the limit is 413."""
    site = api.site(org)
    with api.client(org.owner) as client:
        answer = client.put(f"/api/sites/{site['siteId']}/config", content=content)
    assert answer.status_code == status
    assert error in answer.json()["error"]


def test_create_validation(api: Api, org: Org) -> None:
    """Create needs a domain and a name, and refuses unknown fields."""
    with api.client(org.owner) as client:
        path = f"/api/sites/{org.id}"
        assert client.post(path, json={"name": "x"}).status_code == 400
        assert client.post(path, json={"domain": "a.example"}).status_code == 400
        unknown = client.post(path, json={"domain": "a.example", "name": "x", "excludedIPs": []})
        assert unknown.json()["error"] == "Unknown fields: excludedIPs"
    with api.client(org.admin) as admin:
        assert admin.post(path, json={"domain": "a.example", "name": "x"}).status_code == 201


def test_private_link_rejects_unknown_actions(api: Api, org: Org) -> None:
    """An action other than generate or revoke is a 400."""
    site = api.site(org)
    with api.client(org.owner) as client:
        path = f"/api/sites/{site['siteId']}/private-link-config"
        assert client.post(path, json={"action": "steal"}).status_code == 400
        assert client.post(path, json={}).status_code == 400


# --- hostile input (issue 11): a 4xx, and nothing stored ------------------------------------


def snapshot(api: Api, org: Org, site: dict[str, Any]) -> list[Any]:
    """Everything the API tells about a site: its object, both lists and its private link."""
    base = f"/api/sites/{site['siteId']}"
    with api.client(org.owner) as client:
        answers = [client.get(base + suffix) for suffix in SITE_READS]
    assert [answer.status_code for answer in answers] == [200] * len(SITE_READS)
    return [answer.json() for answer in answers]


SITE_READS = ("", "/excluded-ips", "/excluded-countries", "/private-link-config")
DEEP = b'{"excludedIPs": ' + b"[" * 5000 + b"]" * 5000 + b"}"


@pytest.mark.parametrize(
    "content",
    [
        # nesting past any parser's stack
        DEEP,
        b'{"name": ' + b'{"a": ' * 5000 + b"1" + b"}" * 5000 + b"}",
        # lone surrogates in a key, a list entry, a name
        b'{"\\ud800": true}',
        b'{"excludedIPs": ["10.0.0.1", "\\udc00"]}',
        b'{"name": "Shop \\ud83d"}',
        b'{"excludedCountries": ["\\udfff"]}',
        # not JSON numbers
        b'{"name": NaN}',
    ],
)
def test_unparsable_bodies_are_400(api: Api, org: Org, content: bytes) -> None:
    """Deep nesting and lone surrogates answer 400 on update and create; nothing changes."""
    site = api.site(org)
    before = snapshot(api, org, site)
    with api.client(org.owner) as client:
        updated = client.put(f"/api/sites/{site['siteId']}/config", content=content)
        created = client.post(f"/api/sites/{org.id}", content=content)
    for answer in (updated, created):
        assert answer.status_code == 400, answer.text
        assert answer.json()["success"] is False
        assert "not valid JSON" in answer.json()["error"]
    assert snapshot(api, org, site) == before


@pytest.mark.parametrize(
    "site_id",
    [
        # str.isdigit() but not ASCII digits
        "²",
        "①",
        "\u0661",
        "1²",
        # past int()'s 4,300 digits, and past 64 bits
        "9" * 5000,
        str(2**63),
        # past the 32-bit column on PostgreSQL
        str(2**31),
        str(2**31 + 1),
        str(2**63 - 1),
        # neither form
        "0x1f",
        "abcdefabcdefa",
        "-1",
    ],
)
def test_odd_site_ids_are_not_found(api: Api, org: Org, site_id: str) -> None:
    """A path site id that is no canonical site id answers 404 with a key, 401 without."""
    for suffix in ("", "/excluded-ips", "/private-link-config"):
        with api.client(org.owner) as client:
            answer = client.get(f"/api/sites/{site_id}{suffix}")
            put = client.put(f"/api/sites/{site_id}/config", json={"public": True})
        assert (answer.status_code, put.status_code) == (404, 404), answer.text
        assert answer.json() == {"success": False, "error": "Site not found"}
        with api.client() as anonymous:
            assert anonymous.get(f"/api/sites/{site_id}{suffix}").status_code == 401


def test_zero_padded_site_id_addresses_the_site(api: Api, org: Org) -> None:
    """``007`` addresses site 7: leading zeros are dropped, as canonical_site_id says."""
    site = api.site(org)
    padded = f"000{site['siteId']}"
    with api.client(org.owner) as client:
        assert client.get(f"/api/sites/{padded}").json()["id"] == site["id"]
        changed = client.put(f"/api/sites/{padded}/config", json={"excludedIPs": ["10.0.0.1"]})
        assert changed.status_code == 200
        upper = site["id"].upper()
        assert client.get(f"/api/sites/{upper}/excluded-ips").json()["excludedIPs"] == ["10.0.0.1"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "Sh\x00op"}, "name"),
        ({"domain": "exa\x00mple.com"}, "domain"),
        ({"excludedIPs": ["10.0.0.1", "10.0.0.2\x00"]}, "excludedIPs[1]"),
        ({"excludedCountries": ["F\x00R"]}, "excludedCountries[0]"),
        ({"na\x00me": "x"}, "a field name"),
    ],
)
def test_nul_in_a_text_field_is_400(api: Api, org: Org, body: dict[str, Any], field: str) -> None:
    """A NUL byte in a text field answers 400 naming the field, on every backend."""
    site = api.site(org)
    before = snapshot(api, org, site)
    with api.client(org.owner) as client:
        answer = client.put(f"/api/sites/{site['siteId']}/config", json=body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == f"{field} contains a NUL byte"
    assert snapshot(api, org, site) == before


def test_nul_in_a_create_body_is_400(api: Api, org: Org) -> None:
    """A NUL byte in a new site's name answers 400 and creates nothing."""
    with api.client(org.owner) as client:
        answer = client.post(f"/api/sites/{org.id}", json={"domain": "a.example", "name": "\x00"})
    assert answer.status_code == 400
    assert answer.json()["error"] == "name contains a NUL byte"
    with api.store.engine.connect() as connection:
        query = select(sites).where(sites.c.organization_id == org.id)
        assert connection.execute(query).first() is None


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/api/sites/1%00", "siteId"),
        ("/api/sites/%00/excluded-ips", "siteId"),
        ("/api/sites/abcdefabcdef%00/config", "siteId"),
    ],
)
def test_nul_in_a_path_parameter_is_400(api: Api, org: Org, path: str, field: str) -> None:
    """A NUL byte in a site id answers 400 naming it for a valid key, 401 without one."""
    method = "PUT" if path.endswith("/config") else "GET"
    with api.client(org.member) as client:
        answer = client.request(method, path, json={})
    assert (answer.status_code, answer.json()["error"]) == (
        400,
        f"path parameter {field} contains a NUL byte",
    )
    with api.client() as anonymous:
        assert anonymous.request(method, path, json={}).status_code == 401


def test_nul_in_the_organisation_id_is_400(api: Api, org: Org) -> None:
    """A NUL byte in the create path's orgId answers 400 naming it."""
    with api.client(org.owner) as client:
        answer = client.post(f"/api/sites/{org.id}%00", json={"domain": "a.b", "name": "x"})
    assert answer.status_code == 400
    assert answer.json()["error"] == "path parameter orgId contains a NUL byte"


BAD_BODY = b'{"excludedIPs": "not a list", "favourite": 1'


@pytest.mark.parametrize(
    ("method", "suffix"),
    [("PUT", "/config"), ("POST", "/private-link-config")],
)
def test_the_key_is_checked_before_the_body(api: Api, org: Org, method: str, suffix: str) -> None:
    """Writes answer 401/403/404 by the key, before the body is parsed or validated."""
    site = api.site(org)
    other = api.org()
    path = f"/api/sites/{site['siteId']}{suffix}"
    for key, status in [
        (None, 401),
        ("ef_not-a-key", 401),
        (other.owner, 403),
        (org.member, 403),
    ]:
        for content in (BAD_BODY, b'{"unknown": true}', DEEP):
            with api.client(key) as client:
                answer = client.request(method, path, content=content)
            assert answer.status_code == status, (key, answer.text)
            assert "details" not in answer.json()
    with api.client(org.owner) as client:
        missing = client.request(method, f"/api/sites/999999{suffix}", content=BAD_BODY)
    assert missing.status_code == 404


def test_create_checks_the_key_before_the_body(api: Api, org: Org) -> None:
    """POST create answers 401, 403 or 404 by the key and organisation, before the body."""
    other = api.org()
    for key, org_id, status in [
        (None, org.id, 401),
        ("ef_not-a-key", org.id, 401),
        (other.owner, org.id, 403),
        (org.member, org.id, 403),
        (org.owner, "org_nope", 404),
    ]:
        with api.client(key) as client:
            answer = client.post(f"/api/sites/{org_id}", content=BAD_BODY)
        assert answer.status_code == status, (key, answer.text)


def test_error_answers_are_bounded(api: Api, org: Org) -> None:
    """500 bad entries answer 20 short details and a count of the rest, not an echo."""
    site = api.site(org)
    entries = ["y" * 300] + [f"bogus-{i}-" + "x" * 100 for i in range(499)]
    with api.client(org.owner) as client:
        answer = client.put(f"/api/sites/{site['siteId']}/config", json={"excludedIPs": entries})
    body = answer.json()
    assert answer.status_code == 400
    assert len(body["details"]) == 20
    assert body["omittedDetails"] == 480
    assert all(len(detail) < 250 for detail in body["details"])
    assert body["details"][0].startswith("yyy")
    assert body["details"][1].startswith("bogus-0-x")
    assert len(answer.content) < 6_000


def test_unknown_field_errors_are_bounded(api: Api, org: Org) -> None:
    """Thousands of long unknown fields are named 20 at a time, each cut short."""
    site = api.site(org)
    body = {f"field{i:04}" + "y" * 100: True for i in range(400)}
    with api.client(org.owner) as client:
        answer = client.put(f"/api/sites/{site['siteId']}/config", json=body)
    assert answer.status_code == 400
    assert answer.json()["error"].endswith(" and 380 more")
    assert len(answer.content) < 2_000
