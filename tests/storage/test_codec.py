"""The value codec: exact round trips, refusals at encode time, and safe decoding of any bytes."""

from __future__ import annotations

import datetime
import random
from typing import Any, Callable

import pytest

from dotwist.storage import (
    CorruptValueError,
    InvalidValueError,
    StorageLimitError,
    decode,
    encode,
    encodedSize,
)
from dotwist.storage.codec import FORMAT_VERSION


def test_roundTripIsExact(sampleValue: tuple[Any, Any], same: Callable[[Any, Any], None]) -> None:
    """Every supported value decodes to an equal value of exactly the same types."""
    value, expected = sampleValue
    same(decode(encode(value)), expected)


def test_decodeAcceptsBytesLikeInput() -> None:
    """decode() takes bytearray and memoryview as well as bytes."""
    data = encode({"a": [1, 2]})
    assert decode(bytearray(data)) == decode(memoryview(data)) == {"a": [1, 2]}


def test_leadingFormatByte() -> None:
    """Every encoding starts with the format version byte, and other versions are refused."""
    assert encode(None)[0] == FORMAT_VERSION == 1
    with pytest.raises(CorruptValueError, match="unknown format version 2"):
        decode(b"\x02\x00")
    with pytest.raises(CorruptValueError, match="empty"):
        decode(b"")


def test_encodingIsCompact() -> None:
    """Small ints, short strings and small containers take one tag byte (plus the format byte)."""
    assert len(encode(5)) == 2
    assert len(encode(-32)) == 2
    assert len(encode("abc")) == 5
    assert len(encode([])) == 2
    assert len(encode({})) == 2
    assert len(encode(True)) == 2
    assert len(encode(2**62)) == 2 + 1 + 8


def test_encodedSizeIsTheLengthOfTheEncoding() -> None:
    """encodedSize() is len(encode())."""
    value = {"k": ["v" * 100, 1.5, None]}
    assert encodedSize(value) == len(encode(value))


def test_sharedReferencesDecodeAsCopies() -> None:
    """A container referenced twice is stored twice and decodes to two distinct equal objects."""
    inner = [1]
    out = decode(encode([inner, inner]))
    assert out == [[1], [1]] and out[0] is not out[1]


@pytest.mark.parametrize(
    "value, typeName, where",
    [
        (object(), "object", "value"),
        (lambda: 1, "function", "value"),
        ({"a": [1, object()]}, "object", "value['a'][1]"),
        ([1, {2: {3, print}}], "builtin_function_or_method", "value[1][2] (a member)"),
        ({object(): 1}, "object", "(a key)"),
        (Exception("x"), "Exception", "value"),
        (iter([1]), "list_iterator", "value"),
        (type, "type", "value"),
    ],
)
def test_unsupportedTypesAreRefusedWithTypeAndPlace(value: Any, typeName: str, where: str) -> None:
    """An unsupported value raises InvalidValueError naming its type, its place and the supported types."""
    with pytest.raises(InvalidValueError) as info:
        encode(value)
    message = str(info.value)
    assert typeName in message and where in message and "supported types are" in message
    assert isinstance(info.value, TypeError)


def test_foreignTzinfoIsRefused() -> None:
    """A datetime whose tzinfo is neither datetime.timezone nor a keyed ZoneInfo is refused."""

    class Custom(datetime.tzinfo):
        def utcoffset(self, dt: Any) -> datetime.timedelta:
            return datetime.timedelta(hours=1)

        def dst(self, dt: Any) -> datetime.timedelta:
            return datetime.timedelta(0)

        def tzname(self, dt: Any) -> str:
            return "Custom"

    with pytest.raises(InvalidValueError, match="tzinfo"):
        encode(datetime.datetime(2020, 1, 1, tzinfo=Custom()))


@pytest.mark.parametrize("kind", ["list", "dict", "deep"])
def test_cyclesAreRefused(kind: str) -> None:
    """A value that contains itself raises InvalidValueError saying so, at any depth."""
    if kind == "list":
        value: Any = [1]
        value.append(value)
    elif kind == "dict":
        value = {"a": {}}
        value["a"]["b"] = value
    else:
        value = [[[[{"x": []}]]]]
        value[0][0][0][0]["x"].append(value[0])
    with pytest.raises(InvalidValueError, match="reference cycle"):
        encode(value)


def test_depthIsLimited() -> None:
    """Nesting up to maxDepth containers encodes and decodes; one more is refused both ways."""
    value: Any = 0
    for _ in range(100):
        value = [value]
    assert decode(encode(value)) == value
    with pytest.raises(InvalidValueError, match="nested more than 100"):
        encode([value])
    with pytest.raises(InvalidValueError, match="nested more than 3"):
        encode([[[[1]]]], maxDepth=3)
    deep = bytes([FORMAT_VERSION]) + b"\x21" * 1000 + b"\xa0"  # 1000 nested one-item lists
    with pytest.raises(CorruptValueError, match="nested more than 100"):
        decode(deep)


def test_maxSizeStopsValuesThatExplode() -> None:
    """A value whose shared references make its encoding huge is stopped at maxSize, quickly."""
    value: Any = []
    for _ in range(60):
        value = [value, value]
    with pytest.raises(StorageLimitError):
        encode(value, maxSize=10_000)


def test_truncatedEncodingsAreRefused(sampleValue: tuple[Any, Any]) -> None:
    """Every strict prefix of a valid encoding raises CorruptValueError (never anything else)."""
    data = encode(sampleValue[0])
    for end in range(1, min(len(data), 300)):
        with pytest.raises(CorruptValueError):
            decode(data[:end])


def test_trailingBytesAreRefused() -> None:
    """Bytes after the value make the input invalid."""
    with pytest.raises(CorruptValueError, match="trailing"):
        decode(encode(1) + b"\x00")


@pytest.mark.parametrize(
    "payload",
    [
        b"\x12",  # reserved tag
        b"\x1f",  # reserved tag
        b"\x05\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",  # absurd length varint
        b"\x07\xff\xff\xff\xff\x0f",  # list claiming 4 billion items
        b"\x0a\x01\x20",  # a set holding a list (unhashable)
        b"\x31\x20\x80",  # a dict keyed by a list (unhashable)
        b"\x0d\x00\x00\x0d\x01",  # date with month 13
        b"\x10\x03abc",  # Decimal("abc")
        b"\x05\x02\xc3\x28",  # invalid UTF-8
        b"\x0f\x40",  # timedelta that is not an int
        b"\x0c\x07\xe4\x01\x01\x00\x00\x00\x00\x00\x00\x00\x08\x46Nowhere",  # unknown time zone
        b"\x0c\x07\xe4\x01\x01\x00\x00\x00\x00\x00\x00\x00\x02"
        + encode(86_400 * 10**6)[1:],  # a time zone offset of 24 hours
    ],
)
def test_malformedInputsRaiseCorruptValueError(payload: bytes) -> None:
    """Malformed payloads (bad tags, lengths, types, values) raise CorruptValueError."""
    with pytest.raises(CorruptValueError):
        decode(bytes([FORMAT_VERSION]) + payload)


def test_randomBytesNeverCrashTheDecoder() -> None:
    """Decoding random and mutated bytes either succeeds or raises CorruptValueError."""
    rng = random.Random(1234)
    seeds = [encode(v) for v in ([1, "a", {"b": 2.5}], {"x": (1, 2), "y": {3}}, "s" * 70)]
    for i in range(3000):
        if i % 2:
            data = bytes([FORMAT_VERSION]) + rng.randbytes(rng.randrange(0, 40))
        else:
            mutated = bytearray(rng.choice(seeds))
            for _ in range(rng.randrange(1, 4)):
                mutated[rng.randrange(1, len(mutated))] = rng.randrange(256)
            data = bytes(mutated)
        try:
            decode(data)
        except CorruptValueError:
            pass


def test_topLevelStrAndIntFollowTheFormat() -> None:
    """A whole value that is one str or small int (which encode and decode take by a short path)
    has exactly the documented layout, and a str inside a list is encoded the same way."""
    for n in range(0, 300, 7):
        s = "é" * (n // 2) + "a" * (n - 2 * (n // 2))
        body = s.encode()
        m = len(body)
        if m < 64:
            layout = bytes([FORMAT_VERSION, 0x40 + m]) + body
        elif m < 0x80:
            layout = bytes([FORMAT_VERSION, 0x05, m]) + body
        else:
            layout = bytes([FORMAT_VERSION, 0x05, (m & 0x7F) | 0x80, m >> 7]) + body
        assert encode(s) == layout
        assert encode([s])[2:] == layout[1:]
        assert decode(layout) == s and type(decode(layout)) is str
    surrogate = "a\ud800b"
    assert decode(encode(surrogate)) == surrogate
    assert [decode(encode(i)) for i in range(-40, 100)] == list(range(-40, 100))
    for bad in (b"\x01\x43ab", b"\x01\x42abc", b"\x01\x05\x03ab", b"\x01\x42\xff\xfe", b"\x01\xa0\x00"):
        with pytest.raises(CorruptValueError):
            decode(bad)
