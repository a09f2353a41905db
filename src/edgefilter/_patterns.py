"""Path, hostname and user-agent exclusions (Rybbit v2.7), compiled once per site and kind.

Rybbit's semantics, stated once:

- **Globs** (``excludedPaths``, ``excludedHostnames``): case-insensitive; ``*`` matches any
  run of characters (``/`` and line breaks included), everything else is literal (``.``,
  ``?``, ``[``, ``\\`` and every other regex metacharacter match themselves); anchored at
  both ends. ``/admin*`` matches ``/admin`` and ``/admin/x``; ``*.internal.example``
  matches ``a.internal.example``.
- **Substrings** (``excludedUserAgents``): case-insensitive; a user agent is excluded when
  it contains any entry.

"Case-insensitive" means both sides are compared after ``str.lower()`` (what JavaScript's
``toLowerCase`` does too, for all but a handful of characters). Entries are trimmed; an
entry empty after trimming is rejected with a reason, like every entry that is not a
string.

Compiled, not scanned: the entries of a kind become one matcher. Globs without ``*`` go
to a frozenset (one hash lookup), the rest into one RE2 ``Set`` anchored at both ends;
substrings into one unanchored RE2 ``Set``. RE2 runs in time linear in the input whatever
the patterns, so no entry can make a hit slow. Each matcher keeps a bounded cache of its
verdicts: real traffic repeats its hostnames and user agents, so a warm verdict is one dict
lookup. Text that RE2 cannot take (lone surrogates) has them replaced by U+FFFD first: a
pattern's literal characters never match a surrogate either way.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable
from typing import Any, Final

import re2

__all__ = [
    "MAX_CACHED_VERDICTS",
    "GlobMatcher",
    "SubstringMatcher",
    "compile_globs",
    "compile_substrings",
]

MAX_CACHED_VERDICTS: Final = 4096
MAX_VALUE_LENGTH: Final = 4096  # longer values are judged, never cached
STAR: Final = "*"
_SURROGATES: Final = re.compile("[\ud800-\udfff]")


def _options() -> Any:
    options = re2.Options()
    options.case_sensitive = True  # both sides are lower-cased first
    options.dot_nl = True  # "any run of characters" includes line breaks
    options.never_capture = True
    options.max_mem = 64 << 20
    return options


def _rybbit_text(value: str) -> str:
    """``value`` lower-cased, with lone surrogates (which RE2 cannot encode) replaced."""
    lowered = value.lower()
    try:
        lowered.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATES.sub("\ufffd", lowered)
    return lowered


def _entries(kind: str, raw: Iterable[object]) -> tuple[list[str], list[tuple[object, str]]]:
    """The trimmed, lower-cased, de-duplicated entries, and the rejected ones with reasons."""
    kept: dict[str, None] = {}
    rejected: list[tuple[object, str]] = []
    for entry in raw:
        if not isinstance(entry, str):
            rejected.append((entry, f"excluded {kind} entry {entry!r} is not a string"))
            continue
        text = entry.strip()
        if not text:
            rejected.append((entry, f"excluded {kind} entry {entry!r} is empty"))
            continue
        kept[_rybbit_text(text)] = None
    return list(kept), rejected


def _plain_text(value: object) -> str | None:
    """``value`` as plain text: a ``str`` subclass copied without calling its methods,
    bytes-like values decoded as Latin-1; None for anything else. Never raises."""
    try:
        if isinstance(value, str):
            return "".join((value,))
        if isinstance(value, bytes | bytearray | memoryview):
            return bytes(value).decode("latin-1")
    except Exception:  # a released memoryview, a hostile __class__, ...
        return None
    return None


class _CachedMatcher:
    """A verdict cache in front of ``_judge``; bounded by dropping its older half."""

    __slots__ = ("verdicts",)
    patterns: tuple[str, ...]  # a slot of each subclass

    def __init__(self) -> None:
        self.verdicts: dict[str, bool] = {}

    def matches(self, value: object) -> bool:
        """Whether ``value`` is excluded. Never raises: text (a ``str`` subclass as its
        plain value, without calling its methods) and bytes-like values (decoded as
        Latin-1) are judged; anything else (None, numbers, ...) is not excluded."""
        if type(value) is not str:
            text = _plain_text(value)
            return False if text is None else self.matches(text)
        verdict = self.verdicts.get(value)
        if verdict is None:
            verdict = self._judge(_rybbit_text(value))
            if len(value) <= MAX_VALUE_LENGTH:
                if len(self.verdicts) >= MAX_CACHED_VERDICTS:
                    for key in list(itertools.islice(self.verdicts, MAX_CACHED_VERDICTS // 2)):
                        del self.verdicts[key]
                self.verdicts[value] = verdict
        return verdict

    def __eq__(self, other: object) -> bool:
        """Matchers are equal when they are of one kind with the same patterns."""
        return isinstance(other, _CachedMatcher) and (
            type(other) is type(self) and other.patterns == self.patterns
        )

    def __hash__(self) -> int:
        return hash((type(self), self.patterns))

    def _judge(self, text: str) -> bool:
        raise NotImplementedError


class GlobMatcher(_CachedMatcher):
    """Case-insensitive, anchored globs in which only ``*`` is special."""

    __slots__ = ("literals", "patterns", "wildcards")

    def __init__(self, patterns: Iterable[str]) -> None:
        super().__init__()
        self.patterns = tuple(patterns)
        self.literals = frozenset(p for p in self.patterns if STAR not in p)
        starred = [p for p in self.patterns if STAR in p]
        self.wildcards: Any = None
        if starred:
            self.wildcards = re2.Set.FullMatchSet(_options())
            for pattern in starred:
                self.wildcards.Add(".*".join(re2.escape(part) for part in pattern.split(STAR)))
            self.wildcards.Compile()

    def _judge(self, text: str) -> bool:
        if text in self.literals:
            return True
        return self.wildcards is not None and bool(self.wildcards.Match(text))

    def __bool__(self) -> bool:
        return bool(self.patterns)


class SubstringMatcher(_CachedMatcher):
    """Case-insensitive substrings: a value matches when it contains any of them."""

    __slots__ = ("patterns", "searcher")

    def __init__(self, patterns: Iterable[str]) -> None:
        super().__init__()
        self.patterns = tuple(patterns)
        self.searcher: Any = None
        if self.patterns:
            self.searcher = re2.Set.SearchSet(_options())
            for pattern in self.patterns:
                self.searcher.Add(re2.escape(pattern))
            self.searcher.Compile()

    def _judge(self, text: str) -> bool:
        return self.searcher is not None and bool(self.searcher.Match(text))

    def __bool__(self) -> bool:
        return bool(self.patterns)


def compile_globs(kind: str, raw: Iterable[object]) -> tuple[GlobMatcher, list[tuple[object, str]]]:
    """One matcher for a site's globs of ``kind`` (``path``, ``hostname``), and the rejects."""
    patterns, rejected = _entries(kind, raw)
    return GlobMatcher(patterns), rejected


def compile_substrings(
    kind: str, raw: Iterable[object]
) -> tuple[SubstringMatcher, list[tuple[object, str]]]:
    """One matcher for a site's substrings of ``kind`` (``user agent``), and the rejects."""
    patterns, rejected = _entries(kind, raw)
    return SubstringMatcher(patterns), rejected
