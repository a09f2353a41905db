"""Log records about a site carry its id in ``extra`` (``record.site``), for log pipelines."""

from __future__ import annotations

import logging

import pytest

from edgefilter import EdgeFilter, SiteConfig


def test_a_skipped_rule_warning_names_its_site(caplog: pytest.LogCaptureFixture) -> None:
    """Country and ASN rules skipped for want of a database are logged with the site id."""
    site = SiteConfig(site_id=7, excluded_countries=("CN",), excluded_asns=(15169,))
    with caplog.at_level(logging.WARNING, logger="edgefilter"):
        EdgeFilter({"7": site})
    records = [record for record in caplog.records if "skipped" in record.getMessage()]
    assert len(records) == 2
    assert {getattr(record, "site", None) for record in records} == {"7"}
