"""Key management on the command line: create, list (never a secret), revoke; organisations."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import insert

from edgefilter.cli import main
from edgefilter.server._store import KEY_ID_LENGTH, SiteStore, api_keys, hash_key


@pytest.fixture
def db(tmp_path: Path) -> str:
    """A fresh SQLite database URL."""
    return f"sqlite:///{tmp_path / 'sites.db'}"


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``main(argv)``: the status, stdout and stderr."""
    status = main(argv)
    out, err = capsys.readouterr()
    return status, out, err


def test_list_orgs_lists_every_organisation(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    """``list-orgs`` prints each organisation's id and name under a header."""
    _, acme, _ = run(["create-org", "Acme", "--db", db], capsys)
    _, other, _ = run(["create-org", "Other Co", "--db", db], capsys)
    status, out, _ = run(["list-orgs", "--db", db], capsys)
    lines = out.splitlines()
    assert status == 0
    assert lines[0].split() == ["ORGANISATION", "NAME", "CREATED"]
    assert [line.split()[:2] for line in lines[1:]] == [
        [acme.strip(), "Acme"],
        [other.strip(), "Other"],
    ]


def test_list_keys_shows_no_secret(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    """``list-keys`` shows the start of each key's hash, its user, role and organisation, and
    neither the key nor its full hash."""
    _, org, _ = run(["create-org", "Acme", "--db", db], capsys)
    _, key, _ = run(
        ["create-key", "--org", org.strip(), "--role", "admin", "--user", "u1", "--db", db], capsys
    )
    key = key.strip()
    status, out, _ = run(["list-keys", "--db", db], capsys)
    header, row = out.splitlines()
    assert status == 0
    assert header.split() == ["KEY", "ID", "ORGANISATION", "USER", "ROLE", "CREATED"]
    assert row.split()[:4] == [hash_key(key)[:KEY_ID_LENGTH], org.strip(), "u1", "admin"]
    assert key not in out
    assert key.removeprefix("ef_")[:8] not in out
    assert hash_key(key) not in out


def test_list_keys_of_one_organisation(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    """``list-keys --org`` lists only that organisation's keys."""
    orgs = [run(["create-org", name, "--db", db], capsys)[1].strip() for name in ("A", "B")]
    for org in orgs:
        run(["create-key", "--org", org, "--db", db], capsys)
    _, out, _ = run(["list-keys", "--org", orgs[1], "--db", db], capsys)
    rows = out.splitlines()[1:]
    assert [row.split()[1] for row in rows] == [orgs[1]]


def test_revoke_key_ends_its_access(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    """``revoke-key KEY_ID`` deletes the key: the store no longer knows it; the others stay."""
    _, org, _ = run(["create-org", "Acme", "--db", db], capsys)
    keys = [run(["create-key", "--org", org.strip(), "--db", db], capsys)[1].strip() for _ in "ab"]
    key_id = hash_key(keys[0])[:KEY_ID_LENGTH]
    status, out, _ = run(["revoke-key", key_id, "--db", db], capsys)
    assert status == 0
    assert f"revoked key {key_id}" in out
    store = SiteStore(db)
    try:
        assert store.principal(keys[0]) is None
        assert store.principal(keys[1]) is not None
    finally:
        store.close()


@pytest.mark.parametrize(
    ("key_id", "said"),
    [
        ("0" * 12, "no API key has the id"),  # no such key
        ("abc", "is not 8 to 64 hex digits"),  # too short to name one
        ("%" * 12, "is not 8 to 64 hex digits"),  # a LIKE wildcard is no key id
    ],
)
def test_revoke_key_refuses_what_names_no_key(
    key_id: str, said: str, db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unknown or malformed key id is one line, status 1, and revokes nothing."""
    _, org, _ = run(["create-org", "Acme", "--db", db], capsys)
    run(["create-key", "--org", org.strip(), "--db", db], capsys)
    status, _, err = run(["revoke-key", key_id, "--db", db], capsys)
    assert status == 1
    assert said in err
    assert len(run(["list-keys", "--db", db], capsys)[1].splitlines()) == 2


def test_revoke_key_refuses_an_ambiguous_id(db: str) -> None:
    """A prefix two keys' hashes share names neither: ValueError, and both stay."""
    store = SiteStore(db)
    try:
        org = store.create_organization("Acme")
        with store.transaction() as connection:
            for last in "12":
                connection.execute(
                    insert(api_keys).values(
                        key_hash="ab" * 31 + "0" + last,
                        user_id="u",
                        organization_id=org,
                        role="member",
                        created_at="2026-01-01T00:00:00.000Z",
                    )
                )
        with pytest.raises(ValueError, match="names several keys"):
            store.revoke_key("ab" * 6)
        assert len(store.keys()) == 2
        assert store.revoke_key("ab" * 31 + "02").key_id == "ab" * 6
        assert len(store.keys()) == 1
    finally:
        store.close()


def test_create_key_for_an_unknown_organisation_is_one_line(
    db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``create-key`` for an organisation that does not exist: one line, status 1."""
    status, _, err = run(["create-key", "--org", "org_none", "--db", db], capsys)
    assert status == 1
    assert err.count("\n") == 1
    assert "'org_none' does not exist" in err


def test_an_edge_key_is_created_and_listed(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    """``create-key --role edge`` makes an edge node's key, which list-keys shows as edge and
    the store reads as one."""
    _, org, _ = run(["create-org", "Acme", "--db", db], capsys)
    status, key, _ = run(["create-key", "--org", org.strip(), "--role", "edge", "--db", db], capsys)
    assert status == 0
    _, out, _ = run(["list-keys", "--db", db], capsys)
    assert out.splitlines()[1].split()[3] == "edge"
    store = SiteStore(db)
    principal = store.principal(key.strip())
    store.close()
    assert principal is not None
    assert principal.role == "edge"
