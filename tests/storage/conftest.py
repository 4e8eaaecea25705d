"""Fixtures of the storage tests.

``makeBackend`` is parametrized over every backend; a new backend (PostgreSQL, say) joins the
contract suite by adding one entry to ``BACKENDS`` and one branch to ``_make``.
"""

from __future__ import annotations

import datetime
import decimal
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dotwist.storage import (
    MemoryBackend,
    ObjectStore,
    SqliteBackend,
    StorageBackend,
    StorageLimits,
)

OBJECT_ID = "0123456789abcdef" * 4
OTHER_ID = "fedcba9876543210" * 4
NAMESPACE = "TestObject"

BACKENDS = ["memory", "sqlite-memory", "sqlite-file", "sqlite-file-one-open"]


def _make(
    kind: str, directory: Path, limits: StorageLimits | None, options: dict[str, Any]
) -> StorageBackend:
    if kind == "memory":
        return MemoryBackend(limits, **options)
    if kind == "sqlite-memory":
        return SqliteBackend.inMemory(limits, **options)
    if kind == "sqlite-file":
        return SqliteBackend(directory, limits, **options)
    if kind == "sqlite-file-one-open":
        # One open database at a time: opening another closes the connection of an idle one,
        # which opens again when used (what a busy server does with its oldest idle objects).
        return SqliteBackend(directory, limits, maxOpenDatabases=1, **options)
    raise AssertionError(kind)


MakeBackend = Callable[..., StorageBackend]


@pytest.fixture(params=BACKENDS)
def makeBackend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeBackend]:
    """A factory of backends of one kind; every backend made is closed after the test. Keyword
    arguments are backend options every backend takes (``valueCacheEntries``, ...)."""
    made: list[StorageBackend] = []

    def make(limits: StorageLimits | None = None, **options: Any) -> StorageBackend:
        backend = _make(request.param, tmp_path / f"data{len(made)}", limits, options)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()


@pytest.fixture
def backend(makeBackend: MakeBackend) -> StorageBackend:
    return makeBackend()


@pytest.fixture
def store(backend: StorageBackend) -> ObjectStore:
    return backend.open(NAMESPACE, OBJECT_ID)


def assertSame(actual: Any, expected: Any) -> None:
    """Equal, of exactly the same types all the way down (nan equals nan, -0.0 is not 0.0)."""
    assert type(actual) is type(expected), (actual, expected)
    if isinstance(expected, float):
        if math.isnan(expected):
            assert math.isnan(actual)
        else:
            assert actual == expected and math.copysign(1, actual) == math.copysign(1, expected)
    elif isinstance(expected, decimal.Decimal):
        assert str(actual) == str(expected)
    elif isinstance(expected, (list, tuple)):
        assert len(actual) == len(expected)
        for a, e in zip(actual, expected):
            assertSame(a, e)
    elif isinstance(expected, dict):
        assert list(actual.keys()) == list(expected.keys())
        for k in expected:
            assertSame(actual[k], expected[k])
    elif isinstance(expected, (datetime.datetime, datetime.time)):
        assert actual == expected
        assert actual.tzinfo == expected.tzinfo
        assert actual.fold == expected.fold
        if expected.tzinfo is not None:
            assert actual.tzname() == expected.tzname()
    else:
        assert actual == expected


@pytest.fixture
def same() -> Callable[[Any, Any], None]:
    return assertSame


def _sampleValues() -> list[tuple[str, Any]]:
    """Values of every supported type, with the edge cases that break naive codecs."""
    import collections
    import enum
    import uuid
    import zoneinfo

    utc = datetime.timezone.utc
    plus530 = datetime.timezone(datetime.timedelta(hours=5, minutes=30))
    named = datetime.timezone(datetime.timedelta(hours=-3), "BRT")
    odd = datetime.timezone(datetime.timedelta(seconds=-3601, microseconds=7))
    try:
        paris: Any = zoneinfo.ZoneInfo("Europe/Paris")
    except zoneinfo.ZoneInfoNotFoundError:  # pragma: no cover - no tz database on this machine
        paris = plus530
    nested: dict[Any, Any] = {"a": [1, (2, 3), {"b": {4, 5}}], "c": {"d": [[[]]]}}
    values: list[tuple[str, Any]] = [
        ("None", None),
        ("True", True),
        ("False", False),
        ("zero", 0),
        ("smallNegative", -32),
        ("belowSmall", -33),
        ("smallPositive", 95),
        ("aboveSmall", 96),
        ("int64max", 2**63 - 1),
        ("int64min", -(2**63)),
        ("int64maxPlus1", 2**63),
        ("hugeInt", 3**2000),
        ("hugeNegativeInt", -(7**1500)),
        ("float", 1.5),
        ("floatPrecise", 0.1 + 0.2),
        ("negativeZero", -0.0),
        ("nan", float("nan")),
        ("inf", float("inf")),
        ("negativeInf", float("-inf")),
        ("tinyFloat", 5e-324),
        ("emptyStr", ""),
        ("str63", "x" * 63),
        ("str64", "x" * 64),
        ("unicode", "héllo wörld \u2603 \U0001f600 \u0000"),
        ("loneSurrogate", "a\ud800b"),
        ("longStr", "abc" * 10_000),
        ("emptyBytes", b""),
        ("bytes", bytes(range(256))),
        ("emptyList", []),
        ("list", [1, "two", 3.0, None, True]),
        ("list16", list(range(16))),
        ("emptyTuple", ()),
        ("tuple", (1, (2, (3,)))),
        ("emptyDict", {}),
        ("dict", {"x": 1, "y": [1, 2], "z": {"w": None}}),
        ("dict16", {str(i): i for i in range(16)}),
        ("dictNonStrKeys", {1: "int", (1, 2): "tuple", None: "none", frozenset({1}): "fs", 2.5: "f"}),
        ("dictOrder", {"b": 1, "a": 2, "c": 3}),
        ("set", {1, "a", (2, 3)}),
        ("emptySet", set()),
        ("frozenset", frozenset({1, 2, 3})),
        ("nested", nested),
        ("naiveDatetime", datetime.datetime(2024, 2, 29, 23, 59, 58, 999_999)),
        ("datetimeFold", datetime.datetime(2024, 10, 27, 2, 30, fold=1)),
        ("utcDatetime", datetime.datetime(1970, 1, 1, tzinfo=utc)),
        ("offsetDatetime", datetime.datetime(2000, 1, 1, 12, 0, 0, 1, tzinfo=plus530)),
        ("namedOffsetDatetime", datetime.datetime(2020, 5, 5, tzinfo=named)),
        ("oddOffsetDatetime", datetime.datetime(2020, 5, 5, tzinfo=odd)),
        ("zoneInfoDatetime", datetime.datetime(2024, 7, 1, 12, tzinfo=paris)),
        ("minDatetime", datetime.datetime.min),
        ("maxDatetime", datetime.datetime.max),
        ("date", datetime.date(1, 1, 1)),
        ("maxDate", datetime.date.max),
        ("time", datetime.time(23, 59, 59, 123_456)),
        ("awareTime", datetime.time(1, 2, 3, tzinfo=plus530)),
        ("timedelta", datetime.timedelta(days=-3, seconds=5, microseconds=7)),
        ("maxTimedelta", datetime.timedelta.max),
        ("minTimedelta", datetime.timedelta.min),
        ("decimal", decimal.Decimal("3.14159265358979323846264338327950288")),
        ("decimalExponent", decimal.Decimal("1.500E+10")),
        ("decimalNegativeZero", decimal.Decimal("-0")),
        ("decimalNaN", decimal.Decimal("NaN")),
        ("decimalInfinity", decimal.Decimal("-Infinity")),
        ("uuid", uuid.UUID("12345678-1234-5678-1234-567812345678")),
        ("listOfDatetimes", [datetime.date(2020, 1, 1), datetime.timedelta(0)]),
    ]

    class Color(enum.IntEnum):
        RED = 1

    Point = collections.namedtuple("Point", "x y")
    return values + [
        # Subclasses are stored as their base type: the expected value is the base type.
        ("intEnumAsInt", (Color.RED, 1)),
        ("namedtupleAsTuple", (Point(1, 2), (1, 2))),
        ("orderedDictAsDict", (collections.OrderedDict(a=1), {"a": 1})),
        ("defaultdictAsDict", (collections.defaultdict(list, a=[1]), {"a": [1]})),
        ("bytearrayAsBytes", (bytearray(b"abc"), b"abc")),
        ("memoryviewAsBytes", (memoryview(b"xyz"), b"xyz")),
    ]


SUBCLASS_CASES = {
    "intEnumAsInt",
    "namedtupleAsTuple",
    "orderedDictAsDict",
    "defaultdictAsDict",
    "bytearrayAsBytes",
    "memoryviewAsBytes",
}


def _sampleCases() -> list[tuple[str, Any, Any]]:
    """(name, what is stored, what must come back) for every sample value."""
    return [
        (name, *(v if name in SUBCLASS_CASES else (v, v))) for name, v in _sampleValues()
    ]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize ``sampleValue`` (a pair: what is stored, what must come back)."""
    if "sampleValue" in metafunc.fixturenames:
        cases = _sampleCases()
        metafunc.parametrize(
            "sampleValue", [(v, e) for _, v, e in cases], ids=[name for name, _, _ in cases]
        )


@pytest.fixture
def sampleValues() -> list[tuple[str, Any, Any]]:
    """Every sample value as (name, what is stored, what must come back)."""
    return _sampleCases()
