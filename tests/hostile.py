"""Hypothesis strategies for any argument value: odd builtins and hostile objects.

A hostile object is a ``str``, ``bytes`` or ``int`` subclass, or a plain object, whose
methods raise an arbitrary exception or answer lies (wrong types, other values).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import strategies as st


class HostileError(Exception):
    """An exception no caller would expect."""


ERRORS: list[type[Exception]] = [
    HostileError,
    RuntimeError,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    UnicodeError,
    OverflowError,
    RecursionError,
    MemoryError,
    ZeroDivisionError,
    NotImplementedError,
    OSError,
]
LIES: list[object] = [None, 0, 1, -1, True, "", "1", "10.0.0.1", b"1", [], object()]

STR_METHODS = [
    "__contains__",
    "__hash__",
    "__eq__",
    "__ne__",
    "__str__",
    "__repr__",
    "__format__",
    "__len__",
    "__getitem__",
    "__iter__",
    "__bool__",
    "__add__",
    "__radd__",
    "__mod__",
    "__lt__",
    "strip",
    "lstrip",
    "lower",
    "isdigit",
    "isascii",
    "startswith",
    "endswith",
    "partition",
    "encode",
    "split",
    "translate",
]
BYTES_METHODS = [
    "__bytes__",
    "__hash__",
    "__eq__",
    "__len__",
    "__contains__",
    "__getitem__",
    "__iter__",
    "decode",
    "strip",
    "startswith",
]
INT_METHODS = [
    "__str__",
    "__repr__",
    "__format__",
    "__index__",
    "__int__",
    "__hash__",
    "__eq__",
    "__ge__",
    "__le__",
    "__lt__",
    "__gt__",
    "__bool__",
]
OBJECT_METHODS = [
    "__hash__",
    "__eq__",
    "__contains__",
    "__str__",
    "__repr__",
    "__len__",
    "__iter__",
    "__fspath__",
    "__index__",
    "__bytes__",
    "__getattr__",
]


def raiser(error: type[Exception]) -> Callable[..., Any]:
    def boom(*args: object, **kwargs: object) -> Any:
        raise error("hostile")

    return boom


def liar(value: object) -> Callable[..., Any]:
    def lie(*args: object, **kwargs: object) -> Any:
        return value

    return lie


@st.composite
def behaviours(draw: st.DrawFn, methods: list[str]) -> dict[str, Any]:
    """Some of ``methods``, each raising an arbitrary exception or answering a lie."""
    chosen = draw(st.lists(st.sampled_from(methods), min_size=1, max_size=4, unique=True))
    namespace: dict[str, Any] = {}
    for name in chosen:
        if draw(st.booleans()):
            namespace[name] = raiser(draw(st.sampled_from(ERRORS)))
        else:
            namespace[name] = liar(draw(st.sampled_from(LIES)))
    if "__hash__" in namespace and draw(st.booleans()):
        namespace["__hash__"] = None  # unhashable
    return namespace


def masked_class(error: type[Exception]) -> object:
    """An object whose ``__class__`` raises, which is what ``isinstance`` reads."""

    class Masked:
        @property  # type: ignore[misc]
        def __class__(self) -> type:
            raise error("hostile")

    return Masked()


texts = st.text(st.one_of(st.characters(), st.characters(categories=["Cs"])), max_size=60)
seeds = st.one_of(
    texts,
    st.sampled_from(
        ["1", "007", "a1b2c3d4e5f6", "A1B2C3D4E5F6", "10.0.0.1", "2001:db8::1", "Googlebot"]
    ),
)


@st.composite
def hostile_strs(draw: st.DrawFn) -> object:
    """A str subclass over a seed text, with hostile methods."""
    cls = type("HostileStr", (str,), draw(behaviours(STR_METHODS)))
    return cls(draw(seeds))


@st.composite
def hostile_bytes(draw: st.DrawFn) -> object:
    """A bytes subclass over a seed, with hostile methods."""
    cls = type("HostileBytes", (bytes,), draw(behaviours(BYTES_METHODS)))
    return cls(draw(seeds).encode("utf-8", "surrogatepass"))


@st.composite
def hostile_ints(draw: st.DrawFn) -> object:
    """An int subclass with hostile methods."""
    cls = type("HostileInt", (int,), draw(behaviours(INT_METHODS)))
    return cls(draw(st.sampled_from([0, 1, 7, -1, 2**63, 10**30])))


@st.composite
def hostile_objects(draw: st.DrawFn) -> object:
    """A plain object with hostile methods, or one whose ``__class__`` raises."""
    if draw(st.booleans()):
        return masked_class(draw(st.sampled_from(ERRORS)))
    cls = type("HostileObject", (), draw(behaviours(OBJECT_METHODS)))
    return cls()


def _released() -> memoryview:
    view = memoryview(b"10.0.0.1")
    view.release()
    return view


HUGE: list[Callable[[], object]] = [
    lambda: "x" * 1_000_000,
    lambda: "1" * 100_000,
    lambda: "0" * 1_000 + "1",
    lambda: "Googlebot" + "x" * 1_000_000,
    lambda: "10.0.0.1" + " " * 100_000,
    lambda: b"1" * 1_000_000,
    lambda: 10**5000,
    lambda: -(10**5000),
]


def huge_values() -> st.SearchStrategy[object]:
    """Huge text, bytes and ints (``str`` of an int this long raises in Python 3.11)."""
    return st.sampled_from(HUGE).map(lambda make: make())


def odd_builtins() -> st.SearchStrategy[object]:
    """Builtin values of every kind, plain text included (with lone surrogates)."""
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(),
        st.complex_numbers(),
        seeds,
        st.binary(max_size=40),
        st.binary(max_size=40).map(bytearray),
        st.binary(max_size=40).map(memoryview),
        st.binary(max_size=40).map(lambda data: memoryview(bytearray(data))),  # unhashable
        st.binary(min_size=2, max_size=40).map(lambda data: memoryview(data)[::2]),
        st.builds(_released),
        st.builds(lambda: memoryview(b"\x00\x00\x00\x01").cast("i")),
        st.just(NotImplemented),
        st.just(Ellipsis),
        st.just(object()),
        st.just(str),
        huge_values(),
    )


leaves = st.one_of(
    odd_builtins(), hostile_strs(), hostile_bytes(), hostile_ints(), hostile_objects()
)
any_values = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.lists(children, max_size=3).map(tuple),  # hashing a tuple hashes its items
        st.dictionaries(st.text(max_size=3), children, max_size=2),
    ),
    max_leaves=4,
)
