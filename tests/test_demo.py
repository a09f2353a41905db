"""The offline demo that ``make demo`` runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgefilter.cli import main
from edgefilter.demo import DEMO_DATA

from .conftest import CITY_DB


def test_demo_decides_every_hit_as_expected(capsys: pytest.CaptureFixture[str]) -> None:
    """The sample traffic gets exactly the expected reasons; exit status 0."""
    status = main(
        [
            "demo",
            "--offline",
            "--data",
            str(DEMO_DATA),
            "--geoip",
            str(CITY_DB),
            "--repeat",
            "1",
        ]
    )
    out = capsys.readouterr().out
    assert "all decisions as expected" in out
    assert status == 0


def test_demo_fails_on_a_mismatch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A traffic line whose expectation is wrong makes the demo exit non-zero."""
    (tmp_path / "sites.json").write_text((DEMO_DATA / "sites.json").read_text())
    (tmp_path / "traffic.tsv").write_text(
        "site\tip\tuser_agent\texpected\n1\t10.1.1.1\tMozilla/5.0\ttracked\n"
    )
    status = main(
        ["demo", "--offline", "--data", str(tmp_path), "--geoip", str(CITY_DB), "--repeat", "1"]
    )
    assert "MISMATCH" in capsys.readouterr().out
    assert status == 1


def test_live_demo_end_to_end(capsys: pytest.CaptureFixture[str]) -> None:
    """The full demo over loopback: every hit answered as expected, the change applied."""
    status = main(["demo", "--data", str(DEMO_DATA), "--geoip", str(CITY_DB), "--rounds", "2"])
    out = capsys.readouterr().out
    assert "MISMATCH" not in out, out  # the whole report: which reasons, answers or counts
    assert "the new rule applied after" in out
    assert "all decisions as expected" in out
    assert status == 0
