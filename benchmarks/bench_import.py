"""What each entry point costs to import, in fresh interpreters (issue 12's extras split).

Each line runs ``python -X importtime -c "import ..."`` 9 times, interleaved, and prints
the median cumulative import time of the package, with the heavy stacks it loaded. The
baseline is the same interpreter importing nothing of ours.
"""

from __future__ import annotations

import statistics
import subprocess
import sys

from _common import print_table

ROUNDS = 9
ENTRY_POINTS = {
    "core: import edgefilter": "import edgefilter",
    "middleware": "import edgefilter.middleware",
    "live rules: edgefilter.RulesCache": "import edgefilter; edgefilter.RulesCache",
    "edgefilter.proxy": "import edgefilter.proxy",
    "edgefilter.server": "import edgefilter.server",
}
STACKS = ("sqlalchemy", "uvicorn", "starlette", "httpx", "cachetools")
PROBE = "; import sys; print(' '.join(s for s in {stacks} if s in sys.modules))"


def import_us(statement: str) -> tuple[int, str]:
    """Cumulative import time of edgefilter (us) and the stacks loaded, in a fresh process."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", statement + PROBE.format(stacks=STACKS)],
        capture_output=True,
        text=True,
        check=True,
    )
    total = 0
    for line in done.stderr.splitlines():
        parts = [part.strip() for part in line.removeprefix("import time:").split("|")]
        if len(parts) == 3 and parts[2] in ("edgefilter", "edgefilter.proxy", "edgefilter.server"):
            total = max(total, int(parts[1]))
    return total, done.stdout.strip()


def main() -> None:
    samples: dict[str, list[int]] = {name: [] for name in ENTRY_POINTS}
    loaded: dict[str, str] = {}
    for _ in range(ROUNDS):
        for name, statement in ENTRY_POINTS.items():
            micros, stacks = import_us(statement)
            samples[name].append(micros)
            loaded[name] = stacks
    core = statistics.median(samples["core: import edgefilter"])
    rows = []
    for name in ENTRY_POINTS:
        median = statistics.median(samples[name])
        rows.append([name, f"{median / 1000:.1f} ms", f"{median / core:.2f}x", loaded[name] or "-"])
    print(f"Import time, median of {ROUNDS} fresh interpreters (python -X importtime):\n")
    print_table(["entry point", "import", "vs core", "stacks loaded"], rows)


if __name__ == "__main__":
    main()
