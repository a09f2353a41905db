"""Shared fixtures: paths into the project's own ``data/``."""

from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[1] / "data"
CITY_DB = DATA / "geo" / "GeoLite2-City-Test.mmdb"

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


@pytest.fixture(scope="session")
def city_db() -> Path:
    """MaxMind's GeoLite2 City test database (Apache-2.0 or MIT, see data/README.md)."""
    return CITY_DB
