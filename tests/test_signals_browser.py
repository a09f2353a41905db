"""The header layer against live browsers: today's Chromium and Firefox, not only fixtures.

The same capture as ``tests/capture_requests.py`` (a cross-origin tracker ``fetch`` POST to
a recording server on loopback): every Chromium variant and one Firefox run must break no
rule; headless Chromium with its own user agent is scored ``headless``. Skipped where the
browser is absent (CI installs both: .ci/chromium.sh and .ci/firefox.sh).
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from edgefilter._signals import HeaderHeuristics, header_map

from . import capture_requests
from .browser import chromium_path

LAYER = HeaderHeuristics()


def findings(record: dict[str, Any]) -> tuple[str, ...]:
    headers = header_map((n.lower().encode(), v.encode("latin-1")) for n, v in record["headers"])
    return LAYER.findings(headers, headers.get("user-agent", ""))


def test_live_chromium_breaks_no_rule() -> None:
    """Every emulated Chromium (desktop, mobile, UA overrides) breaks no rule."""
    if chromium_path() is None:
        if os.environ.get("CI"):
            pytest.fail("CI must provide Chromium: .ci/chromium.sh installs it")
        pytest.skip("no Chromium on this machine; .ci/chromium.sh installs Debian's")
    browsers: list[dict[str, Any]] = []
    clients: list[dict[str, Any]] = []
    with capture_requests.recording() as recorder:
        capture_requests.capture_chromium(recorder, browsers, clients)
    assert len(browsers) >= 9
    assert {record["client"]: findings(record) for record in browsers} == {
        record["client"]: () for record in browsers
    }
    headless = next(record for record in clients if record["client"] == "headless-chromium")
    assert "headless" in findings(headless)


def test_live_firefox_breaks_no_rule() -> None:
    """Firefox ESR, headless, with its own user agent, breaks no rule."""
    if capture_requests.firefox_binary() is None:
        if os.environ.get("CI"):
            pytest.fail("CI must provide Firefox: .ci/firefox.sh installs Firefox ESR")
        pytest.skip("no Firefox on this machine (apt-get install firefox-esr)")
    browsers: list[dict[str, Any]] = []
    with capture_requests.recording() as recorder:
        capture_requests.capture_firefox(recorder, browsers, only=("firefox-linux",))
    assert [findings(record) for record in browsers] == [()]
