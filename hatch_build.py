"""Build edgefilter's optional compiled reader, ``edgefilter._speedups``, best effort.

As a hatchling build hook, it compiles ``src/edgefilter/_speedups.c`` into a wheel for this
platform; when that fails (no compiler, no Python headers) or ``EDGEFILTER_PURE_BUILD=1``
is set, the wheel is pure Python and gives the same answers, as markupsafe's speedups do.
Run as a script (``python hatch_build.py``), it builds the module in place, in ``src/``,
for a checkout (``make compiled``); there a failure is an error.
"""

from __future__ import annotations

import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
SOURCE = "src/edgefilter/_speedups.c"
MODULE = "edgefilter._speedups"


# ``python hatch_build.py --sanitize`` (``make asan``): AddressSanitizer and UBSan, every
# finding fatal, frames kept for the reports.
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
SANITIZE_COMPILE = [*SANITIZE, "-O1", "-g", "-fno-omit-frame-pointer"]


def build_extension(build_lib: Path, build_temp: Path, *, sanitize: bool = False) -> Path:
    """Compile the module into ``build_lib``; the path of the built file. Raises on failure."""
    from setuptools import Distribution, Extension  # noqa: PLC0415  (only when building)
    from setuptools.command.build_ext import build_ext  # noqa: PLC0415

    extension = Extension(
        MODULE,
        [str(ROOT / SOURCE)],
        extra_compile_args=SANITIZE_COMPILE if sanitize else ["-O2"],
        extra_link_args=SANITIZE if sanitize else [],
    )
    command = build_ext(Distribution({"name": "edgefilter", "ext_modules": [extension]}))
    command.build_lib, command.build_temp = str(build_lib), str(build_temp)
    command.ensure_finalized()
    command.run()
    return Path(command.get_ext_fullpath(MODULE))


try:
    from hatchling.builders.hooks.plugin.interface import BuildHookInterface
except ImportError:  # run as a script without hatchling
    BuildHookInterface = object  # type: ignore[assignment,misc]


class SpeedupsBuildHook(BuildHookInterface):  # type: ignore[misc,valid-type]
    """Adds the compiled reader to a wheel when it builds; a pure wheel when it does not."""

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel" or version == "editable":
            return  # an editable install builds in place: make compiled
        if os.environ.get("EDGEFILTER_PURE_BUILD") == "1":
            return
        work = Path(tempfile.mkdtemp(prefix="edgefilter-speedups-"))
        try:
            built = build_extension(work / "lib", work / "temp")
        except Exception as error:  # any compiler failure: the pure wheel
            warnings.warn(
                f"edgefilter's compiled reader did not build ({error}); this wheel is pure "
                "Python, with the same answers",
                stacklevel=1,
            )
            return
        build_data["force_include"][str(built)] = f"edgefilter/{built.name}"
        build_data["pure_python"] = False
        build_data["infer_tag"] = True


def main() -> int:
    """Build the module in place, next to the sources (with the sanitizers given
    ``--sanitize``); exit 0."""
    work = Path(tempfile.mkdtemp(prefix="edgefilter-speedups-"))
    built = build_extension(work / "lib", work / "temp", sanitize="--sanitize" in sys.argv)
    target = ROOT / "src" / "edgefilter" / built.name
    staged = target.with_suffix(".new")
    staged.write_bytes(built.read_bytes())
    staged.replace(target)  # a new file: a process that loaded the old one keeps it
    print(f"built {target.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
