"""A wheel install is enough: ``edgefilter demo --offline`` and ``--version`` run from a
built wheel, outside the repository, reading their data from the package."""

from __future__ import annotations

import os
import site
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
QUICK_START = """
from edgefilter import EdgeFilter, SiteConfig
from edgefilter.demo import TEST_GEOIP
config = {"siteId": 1, "excludedIPs": ["10.0.0.0/8"], "excludedCountries": ["US"]}
edge_filter = EdgeFilter({"1": SiteConfig.from_api(config)}, geoip=str(TEST_GEOIP))
print(edge_filter.should_track("1", "10.1.2.3", "Mozilla/5.0").reason.value)
print(edge_filter.should_track("1", "216.160.83.56", "Mozilla/5.0").reason.value)
import edgefilter; print(edgefilter.__file__)
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``bin`` folder of a fresh venv with only the wheel installed (``--no-deps``); its
    dependencies come from this environment's site-packages, put on its path."""
    tmp = tmp_path_factory.mktemp("wheel")
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp / "dist")]
    if find_spec("hatchling") is not None:
        build.append("--no-build-isolation")  # offline: the installed backend
    built = subprocess.run([*build, str(ROOT)], capture_output=True, text=True, check=False)
    if built.returncode != 0:
        pytest.skip(f"cannot build a wheel here: {built.stderr.strip()[-300:]}")
    (wheel,) = (tmp / "dist").glob("edgefilter-*.whl")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    install = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q"]
    subprocess.run([*install, "--no-deps", "--no-index", str(wheel)], check=True)
    (purelib,) = (venv / "lib").glob("python3*/site-packages")
    # Plain folders on the path: this environment's .pth files (an editable edgefilter) do
    # not run, so the only edgefilter there is the wheel's.
    (purelib / "dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return venv / "bin"


def run_elsewhere(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """``argv`` from an empty folder, without this checkout on PYTHONPATH."""
    environ = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    return subprocess.run(
        argv, cwd=tmp_path, env=environ, capture_output=True, text=True, check=False, timeout=60
    )


def test_the_wheel_runs_the_offline_demo_from_another_folder(
    installed: Path, tmp_path: Path
) -> None:
    """``edgefilter demo --offline`` finds its sample data and GeoIP database in the package."""
    result = run_elsewhere(
        tmp_path, str(installed / "edgefilter"), "demo", "--offline", "--repeat", "1"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all decisions as expected" in result.stdout


def test_the_wheel_prints_its_version(installed: Path, tmp_path: Path) -> None:
    """``edgefilter --version`` of the installed script prints the wheel's version."""
    result = run_elsewhere(tmp_path, str(installed / "edgefilter"), "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "edgefilter 0.1.0"


def test_the_quick_start_runs_from_the_wheel(installed: Path, tmp_path: Path) -> None:
    """The quick start's filter, with the packaged test database, decides from the wheel."""
    result = run_elsewhere(tmp_path, str(installed / "python"), "-c", QUICK_START)
    assert result.returncode == 0, result.stderr
    ip, country, module = result.stdout.split()
    assert (ip, country) == ("excluded_ip", "excluded_country")
    assert module.startswith(str(installed.parent))
