"""The middleware's added cost per tracked hit against another revision's, in one process.

``PYTHONPATH=../src:. python compare_middleware.py [REV]`` (from ``benchmarks/``; REV
defaults to ``HEAD``): ``git show REV:src/edgefilter/middleware.py`` is loaded beside the
working tree's as a module of the same package (so both use this tree's filter, rules and
compiled reader), and the bare app, REV's middleware and this one are timed in interleaved
rounds, best of each, with bench_middleware's hit and headers. Only the middleware module
differs between the two; a REV whose middleware imports names this tree lacks fails. A REV
before b832690 hands the compiled scan its ``_wanted`` dict, which this tree's scan leaves
to Python (it takes the names by kind, a tuple): such a REV is timed slower than it ran;
count instructions against a build of REV itself instead (``bench_middleware.py
--instructions`` with ``PYTHONPATH`` on REV's built tree).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path

import bench_middleware as bench
from edgefilter import CountryResolver, EdgeFilter
from edgefilter.middleware import EdgeFilterMiddleware

ROUNDS = 9


def middleware_of(revision: str) -> type[EdgeFilterMiddleware]:
    """``EdgeFilterMiddleware`` as ``revision``'s middleware module defines it."""
    source = subprocess.run(
        ["git", "show", f"{revision}:src/edgefilter/middleware.py"],
        capture_output=True,
        check=True,
        cwd=Path(__file__).resolve().parent,
    ).stdout
    with tempfile.NamedTemporaryFile("wb", suffix=".py", delete=False) as handle:
        handle.write(source)
    name = "edgefilter._middleware_of_revision"
    spec = importlib.util.spec_from_file_location(name, handle.name)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    Path(handle.name).unlink()
    return module.EdgeFilterMiddleware  # type: ignore[no-any-return]


def main() -> int:
    revision = sys.argv[1] if len(sys.argv) > 1 else "HEAD"
    resolver = CountryResolver(bench.CITY_DB)
    resolver.wait_compiled()
    edge_filter = EdgeFilter({"1": bench.SITE}, geoip=resolver)
    apps = {
        "bare": bench.bare_app,
        revision: middleware_of(revision)(
            bench.bare_app, edge_filter=edge_filter, trusted_proxies=["127.0.0.1"]
        ),
        "this tree": EdgeFilterMiddleware(
            bench.bare_app, edge_filter=edge_filter, trusted_proxies=["127.0.0.1"]
        ),
    }
    print(f"Added per tracked hit, best of {ROUNDS} interleaved rounds:\n")
    for label, headers in (
        ("wrk's 4 headers", bench.WRK_HEADERS),
        ("a browser's 14", bench.BROWSER_HEADERS),
    ):
        best = dict.fromkeys(apps, float("inf"))
        for _ in range(ROUNDS):
            for name, app in apps.items():
                best[name] = min(best[name], bench.in_process(app, headers))
        old, new = best[revision] - best["bare"], best["this tree"] - best["bare"]
        print(
            f"{label}: {revision} adds {old:,.0f} ns, this tree {new:,.0f} ns"
            f" ({new / old:.2f}x; the bare app {best['bare']:,.0f} ns)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
