"""Helpers shared by the benchmark scripts: timing, seeded data, paths."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
CITY_DB = ROOT / "data" / "geo" / "GeoLite2-City-Test.mmdb"
ASN_DB = ROOT / "data" / "geo" / "GeoLite2-ASN-Test.mmdb"


def use_reader(compiled: bool) -> None:
    """Put the compiled reader (when built) or the pure-Python one on the hot path: the
    benchmarks time both in one run by swapping them between interleaved rounds."""
    from edgefilter import _filter, _tables  # noqa: PLC0415

    if compiled:
        _filter._layer_of_text = _tables.compiled_layer_of_text
        _filter._decision_of_hit = _tables.compiled_decision_of_hit(
            _filter.SiteRules, _filter._EXCLUSIONS
        )
    else:
        _filter._layer_of_text = _filter._decision_of_hit = None


def per_call_ns(
    call: Callable[..., object], arguments: Sequence[tuple[object, ...]], *, repeats: int = 5
) -> float:
    """Median over ``repeats`` runs of the time per call of ``call(*args)``, in nanoseconds."""
    runs = []
    collecting = gc.isenabled()
    gc.disable()  # as timeit does: a collection mid-run is noise, not the code's cost
    try:
        for _ in range(repeats):
            start = time.perf_counter_ns()
            for args in arguments:
                call(*args)
            runs.append((time.perf_counter_ns() - start) / len(arguments))
    finally:
        if collecting:
            gc.enable()
    return statistics.median(runs)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A plain, aligned text table."""
    cells = [list(map(str, headers))] + [[str(cell) for cell in row] for row in rows]
    widths = [max(len(row[column]) for row in cells) for column in range(len(headers))]
    for index, row in enumerate(cells):
        print("  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)))
        if index == 0:
            print("  ".join("-" * width for width in widths))


def fmt_ns(nanoseconds: float) -> str:
    """A duration in the unit that reads best."""
    if nanoseconds >= 1_000_000:
        return f"{nanoseconds / 1_000_000:.2f} ms"
    if nanoseconds >= 1_000:
        return f"{nanoseconds / 1_000:.2f} us"
    return f"{nanoseconds:.0f} ns"
