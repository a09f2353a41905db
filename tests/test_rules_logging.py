"""The "rule entries rejected" warning: once per change of a site's rejected entries."""

from __future__ import annotations

import logging

import pytest

from edgefilter import SiteConfig, _rules, compile_rules


def rejected_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The records of the warning, in order."""
    return [r for r in caplog.records if "rule entries rejected" in r.getMessage()]


def test_the_same_rejected_entries_are_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    """Recompiling a site with the same bad entries (every refresh) logs nothing new."""
    config = SiteConfig(site_id=900001, excluded_ips=("10.0.0.0/40", "10.0.0.1"))
    with caplog.at_level(logging.WARNING, logger="edgefilter"):
        for _ in range(3):
            compile_rules(config)
    (record,) = rejected_warnings(caplog)
    assert record.site == "900001"  # type: ignore[attr-defined]


def test_a_change_of_rejected_entries_is_logged_again(caplog: pytest.LogCaptureFixture) -> None:
    """New bad entries, or the same ones back after a clean config, are logged."""
    bad = SiteConfig(site_id=900002, excluded_ips=("nope",))
    worse = SiteConfig(site_id=900002, excluded_ips=("nope",), excluded_countries=("XX",))
    clean = SiteConfig(site_id=900002, excluded_ips=("10.0.0.1",))
    with caplog.at_level(logging.WARNING, logger="edgefilter"):
        for config in (bad, bad, worse, worse, clean, worse):
            compile_rules(config)
    counts = [record.getMessage().split(": ")[1] for record in rejected_warnings(caplog)]
    assert counts == [
        "1 rule entries rejected",
        "2 rule entries rejected",
        "2 rule entries rejected",
    ]


def test_other_sites_are_logged_apart(caplog: pytest.LogCaptureFixture) -> None:
    """The same bad entry in two sites is logged for each."""
    with caplog.at_level(logging.WARNING, logger="edgefilter"):
        for site_id in (900003, 900004, 900003):
            compile_rules(SiteConfig(site_id=site_id, excluded_ips=("nope",)))
    sites = [record.site for record in rejected_warnings(caplog)]  # type: ignore[attr-defined]
    assert sites == ["900003", "900004"]


def test_the_memory_of_logged_sites_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past REJECTED_MEMORY sites the oldest is forgotten: memory stays bounded."""
    monkeypatch.setattr(_rules, "REJECTED_MEMORY", 3)
    monkeypatch.setattr(_rules, "_logged_rejected", {})
    for site_id in range(900010, 900016):
        compile_rules(SiteConfig(site_id=site_id, excluded_ips=("nope",)))
    assert list(_rules._logged_rejected) == ["900013", "900014", "900015"]
