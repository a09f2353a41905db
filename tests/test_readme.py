"""README.md's code runs as written.

Every ```python block runs on its own, from an empty temporary folder, in a namespace that
holds the names of ``PREAMBLE_NAMES`` (a live reference Sites API on loopback and what it
holds, a sample hit, an app to wrap); top-level ``await`` is allowed. Every ```sh block
line that starts with ``edgefilter`` or ``.venv/bin/edgefilter`` must parse, and its
command's ``--help`` must answer. ``<!-- readme-test: skip (reason) -->`` on the line
right before a fence skips that block. The conventions are in notes/ops-readme.md.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import os
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette

from edgefilter import EdgeFilter, RulesCache, SiteConfig, SitesApiClient
from edgefilter.cli import build_parser

from .conftest import CHROME, LiveApi

# EDGEFILTER_README checks a draft instead (KNOWN_BROKEN still applies by heading).
README = Path(
    os.environ.get("EDGEFILTER_README") or Path(__file__).resolve().parents[1] / "README.md"
)
FENCE = re.compile(r"^(?P<indent>\s*)```\s*(?P<language>[\w+-]*)\s*$")
SKIP = re.compile(r"<!--\s*readme-test:\s*skip\s*\((?P<reason>[^)]+)\)\s*-->")
COMMAND = re.compile(r"^(?:\.venv/bin/)?edgefilter(?:\s|$)")
PREAMBLE_NAMES = (
    "api_url",  # the reference Sites API on loopback
    "api_key",  # an owner key of its organisation
    "org_id",  # that organisation
    "site_id",  # a site in it, as a str
    "ip",  # a client address
    "user_agent",  # a browser's user agent
    "app",  # a Starlette app (for middleware blocks)
    "edge_filter",  # an EdgeFilter with site "1" and no rules
)
# Blocks of today's README.md that break the conventions, by heading: expected to fail
# (strictly: once the README is rewritten to run, the entry must go).
KNOWN_BROKEN: dict[str, str] = {}


@dataclass(frozen=True, slots=True)
class Block:
    """One fenced code block of a Markdown file."""

    language: str
    code: str
    line: int  # where its first line of code is
    heading: str  # the section it is in
    skip: str | None  # the reason of a skip marker right before it


def code_blocks(text: str) -> list[Block]:
    """Every fenced block of ``text``, its code dedented by the fence's indent."""
    blocks: list[Block] = []
    lines = text.splitlines()
    heading, index = "", 0
    while index < len(lines):
        line = lines[index]
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        fence = FENCE.match(line)
        if fence is None:
            index += 1
            continue
        previous = next((text for text in reversed(lines[:index]) if text.strip()), "")
        marker = SKIP.search(previous)
        body, index = [], index + 1
        while index < len(lines) and lines[index].strip() != "```":
            body.append(lines[index].removeprefix(fence["indent"]))
            index += 1
        start = index - len(body) + 1
        blocks.append(
            Block(
                fence["language"].lower(),
                "\n".join(body) + "\n",
                start,
                heading,
                marker["reason"] if marker else None,
            )
        )
        index += 1
    return blocks


def command_lines(code: str) -> list[str]:
    """The ``edgefilter`` commands of a shell block, continuation lines joined."""
    joined = re.sub(r"\s*\\\n\s*", " ", code)
    return [line.strip() for line in joined.splitlines() if COMMAND.match(line.strip())]


def _marks(block: Block) -> list[Any]:
    if block.skip:
        return [pytest.mark.skip(reason=block.skip)]
    if block.language.startswith("py") and block.heading in KNOWN_BROKEN:
        return [pytest.mark.xfail(reason=KNOWN_BROKEN[block.heading], strict=True)]
    return []


def _params(language: tuple[str, ...]) -> list[Any]:
    blocks = code_blocks(README.read_text("utf-8"))
    return [
        pytest.param(block, id=f"line {block.line}: {block.heading}", marks=_marks(block))
        for block in blocks
        if block.language in language
    ]


@pytest.fixture
def preamble(sites_api: LiveApi) -> Iterator[dict[str, Any]]:
    """The names a README block may use without defining them (``PREAMBLE_NAMES``)."""
    site = sites_api.new_site(excludedIPs=["10.0.0.0/8"])
    names: dict[str, Any] = {
        "api_url": sites_api.url,
        "api_key": sites_api.key,
        "org_id": sites_api.org_id,
        "site_id": str(site["siteId"]),
        "ip": "192.0.2.10",
        "user_agent": CHROME,
        "app": Starlette(),
        "edge_filter": EdgeFilter({"1": SiteConfig(site_id=1, block_bots=False)}),
        "__name__": "__readme__",
    }
    assert set(PREAMBLE_NAMES) <= set(names)
    yield names
    close_sources(names)


def close_sources(namespace: dict[str, Any]) -> None:
    """Stop the rules caches and close the clients a block left in its namespace."""
    for value in list(namespace.values()):
        source = value.source if isinstance(value, EdgeFilter) else value
        if isinstance(source, RulesCache):
            source.close()
            source.client.close()
        elif isinstance(source, SitesApiClient):
            source.close()


def run_block(code: str, namespace: dict[str, Any], where: str) -> None:
    """Run ``code`` in ``namespace``, awaiting it when it awaits at top level."""
    compiled = compile(code, where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    result = eval(compiled, namespace)
    if inspect.iscoroutine(result):
        asyncio.run(result)


@pytest.mark.parametrize("block", _params(("python", "py", "python3")))
def test_python_block_runs(
    block: Block,
    preamble: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The block runs without error from an empty folder, with the preamble's names."""
    monkeypatch.chdir(tmp_path)
    run_block(block.code, preamble, f"README.md:{block.line}")


@pytest.mark.parametrize("block", _params(("sh", "bash", "shell", "console")))
def test_edgefilter_commands_parse(block: Block) -> None:
    """Each ``edgefilter`` line of the block parses, and its command's ``--help`` answers."""
    for line in command_lines(block.code):
        argv = shlex.split(line.split(" #", 1)[0])[1:]
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as stop:  # --version or --help: answered, status 0
            assert stop.code == 0, line
            continue
        with pytest.raises(SystemExit) as stop:
            build_parser().parse_args([args.command, "--help"])
        assert stop.value.code == 0, line


# --- the extraction itself -------------------------------------------------------------------

SAMPLE = """# Title

```python
x = 1
```

## Section

<!-- readme-test: skip (needs a real Rybbit) -->
```python
raise SystemExit
```

- a list item:

  ```sh
  .venv/bin/edgefilter serve-api --db sqlite:///s.db \\
      --port 8000   # comment
  curl http://127.0.0.1:8000/healthz
  edgefilter --version
  ```
"""


def test_code_blocks_reads_fences_markers_and_headings() -> None:
    """Blocks come with their language, heading, first line and skip reason; indented
    fences are dedented."""
    blocks = code_blocks(SAMPLE)
    assert [(b.language, b.heading, b.line, b.skip) for b in blocks] == [
        ("python", "Title", 4, None),
        ("python", "Section", 11, "needs a real Rybbit"),
        ("sh", "Section", 17, None),
    ]
    assert blocks[0].code == "x = 1\n"
    assert blocks[2].code.startswith(".venv/bin/edgefilter serve-api")


def test_command_lines_joins_continuations_and_keeps_only_edgefilter() -> None:
    """A command split with backslashes is one line; other commands are left out."""
    assert command_lines(code_blocks(SAMPLE)[2].code) == [
        ".venv/bin/edgefilter serve-api --db sqlite:///s.db --port 8000   # comment",
        "edgefilter --version",
    ]


def test_run_block_awaits_top_level_await() -> None:
    """A block with a top-level ``await`` is run to its end."""
    namespace: dict[str, Any] = {}
    run_block("import asyncio\nawait asyncio.sleep(0)\ndone = True\n", namespace, "sample")
    assert namespace["done"] is True
