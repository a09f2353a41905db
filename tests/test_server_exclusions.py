"""The server's v2.7 exclusions and ASN rules: Rybbit's limits replayed, reads, ETags."""

from __future__ import annotations

from typing import Any

import pytest

from .test_server import Api, Org, api, org

__all__ = ["api", "org"]  # the fixtures, shared with test_server

READS = {
    "excludedPaths": "excluded-paths",
    "excludedHostnames": "excluded-hostnames",
    "excludedUserAgents": "excluded-user-agents",
    "excludedASNs": "excluded-asns",
}
GOOD: dict[str, Any] = {
    "excludedPaths": [" /admin* ", "/health"],
    "excludedHostnames": ["*.internal.example"],
    "excludedUserAgents": ["UptimeRobot"],
    "excludedASNs": [15169, "AS209", "as7018", 15169],
    "type": "mobile",
}
STORED: dict[str, Any] = {
    "excludedPaths": ["/admin*", "/health"],
    "excludedHostnames": ["*.internal.example"],
    "excludedUserAgents": ["UptimeRobot"],
    "excludedASNs": [15169, 209, 7018],
}


def put_config(api: Api, org: Org, body: dict[str, Any]) -> tuple[int, dict[str, Any], str]:
    """PUT a config to a new site: the status, the body and the site's id."""
    site = api.site(org)
    with api.client(org.admin) as client:
        answer = client.put(f"/api/sites/{site['siteId']}/config", json=body)
    return answer.status_code, answer.json(), str(site["siteId"])


def test_the_new_fields_are_stored_and_answered(api: Api, org: Org) -> None:
    """PUT /config stores the lists trimmed (ASNs as ints, once) and the type, and answers them."""
    status, body, site = put_config(api, org, GOOD)
    assert status == 200, body
    assert {field: body["config"][field] for field in STORED} == STORED
    assert body["config"]["type"] == "mobile"
    with api.client(org.member) as client:
        for field, suffix in READS.items():
            answer = client.get(f"/api/sites/{site}/{suffix}")
            assert answer.json() == {"success": True, field: STORED[field]}
        assert client.get(f"/api/sites/{site}").json()["type"] == "mobile"


def test_the_new_reads_carry_etags(api: Api, org: Org) -> None:
    """Each new read answers If-None-Match with 304, and a change moves its ETag."""
    status, _, site = put_config(api, org, GOOD)
    assert status == 200
    with api.client(org.member) as member, api.client(org.admin) as admin:
        for field, suffix in READS.items():
            first = member.get(f"/api/sites/{site}/{suffix}")
            etag = first.headers["etag"]
            again = member.get(f"/api/sites/{site}/{suffix}", headers={"If-None-Match": etag})
            assert again.status_code == 304
            admin.put(f"/api/sites/{site}/config", json={field: []}).raise_for_status()
            changed = member.get(f"/api/sites/{site}/{suffix}", headers={"If-None-Match": etag})
            assert changed.status_code == 200
            assert changed.json() == {"success": True, field: []}


def test_the_new_reads_need_access(api: Api, org: Org) -> None:
    """Without a key 401, with another organisation's key 403, for an unknown site 404."""
    site = api.site(org)
    other = api.org()
    for suffix in READS.values():
        with api.client() as anonymous:
            assert anonymous.get(f"/api/sites/{site['siteId']}/{suffix}").status_code == 401
        with api.client(other.owner) as stranger:
            assert stranger.get(f"/api/sites/{site['siteId']}/{suffix}").status_code == 403
            assert stranger.get(f"/api/sites/999999999/{suffix}").status_code == 404


@pytest.mark.parametrize(
    ("body", "error", "detail"),
    [
        # more than 100 entries (Rybbit's zod: max(100))
        ({"excludedPaths": [f"/p{n}" for n in range(101)]}, "101 entries", None),
        ({"excludedHostnames": [f"h{n}.example" for n in range(101)]}, "101 entries", None),
        ({"excludedUserAgents": [f"agent {n}" for n in range(101)]}, "101 entries", None),
        ({"excludedASNs": list(range(1, 102))}, "101 entries", None),
        # longer than the limit after trimming
        ({"excludedPaths": ["/" + "a" * 2048]}, "Invalid path patterns", "longer than 2048"),
        ({"excludedHostnames": ["a" * 254]}, "Invalid hostname patterns", "longer than 253"),
        ({"excludedUserAgents": ["a" * 513]}, "Invalid user agent patterns", "longer than 512"),
        # empty after trimming
        ({"excludedPaths": ["/ok", "   "]}, "Invalid path patterns", "empty after trimming"),
        ({"excludedHostnames": [""]}, "Invalid hostname patterns", "empty after trimming"),
        ({"excludedUserAgents": ["\t\n"]}, "Invalid user agent patterns", "empty after trimming"),
        # not lists of strings
        ({"excludedPaths": "/admin"}, "must be a list of strings", None),
        ({"excludedHostnames": [7]}, "must be a list of strings", None),
        ({"excludedUserAgents": [None]}, "must be a list of strings", None),
        # ASNs: out of range, not a number, not an int
        ({"excludedASNs": [0]}, "Invalid ASNs", "between 1 and 4294967295"),
        ({"excludedASNs": [2**32]}, "Invalid ASNs", "between 1 and 4294967295"),
        ({"excludedASNs": ["AS0"]}, "Invalid ASNs", "between 1 and 4294967295"),
        ({"excludedASNs": ["AS"]}, "Invalid ASNs", "is not an AS number"),
        ({"excludedASNs": ["ASN15169"]}, "Invalid ASNs", "is not an AS number"),
        ({"excludedASNs": [True]}, "Invalid ASNs", "is not an AS number"),
        ({"excludedASNs": [15169.0]}, "Invalid ASNs", "is not an AS number"),
        ({"excludedASNs": 15169}, "must be a list of AS numbers", None),
        # the type
        ({"type": "tv"}, "type must be one of web, mobile", None),
        ({"type": "Mobile"}, "type must be one of web, mobile", None),
        ({"type": None}, "type must be one of web, mobile", None),
    ],
)
def test_rybbits_limits_are_refused_with_400(
    api: Api, org: Org, body: dict[str, Any], error: str, detail: str | None
) -> None:
    """Each value past Rybbit's limits (or not an AS number) is a 400 naming it."""
    status, answer, _ = put_config(api, org, body)
    assert status == 400
    assert answer["success"] is False
    assert error in answer["error"]
    if detail is not None:
        assert any(detail in each for each in answer["details"])


@pytest.mark.parametrize(
    "body",
    [
        # exactly at the limits: 100 entries, 2048/253/512 characters after trimming
        {"excludedPaths": [f"/p{n}" for n in range(100)]},
        {"excludedPaths": ["  /" + "a" * 2047 + "  "]},
        {"excludedHostnames": ["a" * 253]},
        {"excludedUserAgents": ["a" * 512]},
        {"excludedASNs": [1, 2**32 - 1, "AS4294967295"]},
        {"type": "web"},
    ],
)
def test_values_at_the_limits_are_accepted(api: Api, org: Org, body: dict[str, Any]) -> None:
    """Values exactly at Rybbit's limits are stored."""
    status, answer, _ = put_config(api, org, body)
    assert status == 200, answer


def test_a_refused_update_changes_nothing(api: Api, org: Org) -> None:
    """One bad list refuses the whole update: the valid fields beside it are not stored."""
    status, _, site = put_config(api, org, {"excludedPaths": ["/a"]})
    assert status == 200
    with api.client(org.admin) as client:
        bad = {"excludedPaths": ["/b"], "excludedASNs": [0]}
        assert client.put(f"/api/sites/{site}/config", json=bad).status_code == 400
        paths = client.get(f"/api/sites/{site}/excluded-paths").json()["excludedPaths"]
    assert paths == ["/a"]


def test_many_bad_entries_are_answered_with_bounded_details(api: Api, org: Org) -> None:
    """100 empty patterns answer at most MAX_DETAILS details and count the rest."""
    status, answer, _ = put_config(api, org, {"excludedUserAgents": [" "] * 100})
    assert status == 400
    assert len(answer["details"]) == 20
    assert answer["omittedDetails"] == 80


@pytest.mark.parametrize("suffix", ["/", "%2F", "/excluded-paths/"])
def test_a_trailing_slash_is_a_404_not_a_redirect(api: Api, org: Org, suffix: str) -> None:
    """A site path with a trailing slash answers 404 JSON (it was an undocumented 307)."""
    site = api.site(org)
    with api.client(org.member) as client:
        answer = client.get(f"/api/sites/{site['siteId']}{suffix}", follow_redirects=False)
    assert answer.status_code == 404
    assert answer.json()["success"] is False


@pytest.mark.parametrize("kind", ["web", "mobile"])
def test_create_takes_the_site_type(api: Api, org: Org, kind: str) -> None:
    """POST create site stores ``type``, which the site read then answers."""
    site = api.site(org, type=kind)
    with api.client(org.member) as client:
        assert client.get(f"/api/sites/{site['siteId']}").json()["type"] == kind


def test_create_without_a_type_makes_a_web_site(api: Api, org: Org) -> None:
    """A site created without ``type`` is a web site, as in Rybbit."""
    site = api.site(org)
    with api.client(org.member) as client:
        assert client.get(f"/api/sites/{site['siteId']}").json()["type"] == "web"


@pytest.mark.parametrize("kind", ["desktop", "Mobile", "", 1, None, True, ["web"]])
def test_create_refuses_a_type_that_is_not_web_or_mobile(api: Api, org: Org, kind: Any) -> None:
    """A create with any other ``type`` is a 400 naming the field, and makes no site."""
    with api.client(org.owner) as client:
        body = {"domain": "example.com", "name": "x", "type": kind}
        answer = client.post(f"/api/sites/{org.id}", json=body)
    assert answer.status_code == 400
    assert answer.json()["error"] == "type must be one of web, mobile"
    assert api.store.feed_changes(org.id, None).sites == []
