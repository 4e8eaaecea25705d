"""The value codec: what ``ctx.storage.put`` stores, and RPC arguments and WebSocket attachments.

A compact, self-describing binary format that never executes code on decode (no pickle). It is
dotwist's stand-in for the structured clone (V8 serializer) format Cloudflare uses.

Supported types (exact round trip, unless noted)::

    None, bool, int (any size), float (nan, inf and -0.0 bit-exact), str (lone surrogates too),
    bytes (bytearray and memoryview are accepted and stored as bytes), list, tuple, dict,
    set, frozenset, datetime.datetime, datetime.date, datetime.time, datetime.timedelta,
    decimal.Decimal (NaN, sNaN, -0, exponent kept), uuid.UUID

* ``dict`` keys may be any supported hashable value (``str``, ``int``, ``tuple``, ``frozenset``,
  ``datetime``, ...), not only ``str``. Insertion order is kept. Values that cross into JavaScript
  (none today) should keep to ``str`` keys.
* ``datetime`` and ``time`` may be naive or carry a ``datetime.timezone`` (a fixed offset, to the
  microsecond, with its name if it has a custom one) or a ``zoneinfo.ZoneInfo`` that has a key
  (stored by key, so it is looked up again on decode). Other ``tzinfo`` classes are refused.
  Microseconds and ``fold`` are kept.
* An instance of a subclass of a supported type (``IntEnum``, ``StrEnum``, ``OrderedDict``,
  ``defaultdict``, a ``namedtuple``, a ``datetime`` subclass) is stored as the base type and
  decodes as the base type, like the structured clone algorithm drops prototypes.
* Shared references are stored once per reference (a list holding the same dict twice decodes to
  two equal dicts); reference cycles are refused. Nesting is limited (``maxDepth``, 100 by default)
  so that neither encode nor decode can exhaust the stack.
* The encoding of a set depends on its iteration order, so equal sets may encode differently; the
  format is not canonical.

Anything else (an ``object()``, a function, a class instance, a generator) raises
:class:`~dotwist.storage.errors.InvalidValueError` at encode time, naming the type and where it was
found in the value.

Format: one format byte (``FORMAT_VERSION``, currently 1), then one value. A value is a tag byte
and its payload::

    0x00 None   0x01 False   0x02 True
    0x03 int         varint n, then n bytes of two's complement, little-endian
    0x04 float       8 bytes IEEE 754 binary64, big-endian
    0x05 str         varint n, then n bytes UTF-8 (surrogatepass)
    0x06 bytes       varint n, then n bytes
    0x07 list        varint count, then count values
    0x08 tuple       varint count, then count values
    0x09 dict        varint count, then count (key, value) pairs
    0x0A set         varint count, then count values
    0x0B frozenset   varint count, then count values
    0x0C datetime    year u16 BE, month, day, hour, minute, second u8, microsecond u32 BE, flags u8,
                     then the time zone (see below)
    0x0D date        year u16 BE, month u8, day u8
    0x0E time        hour, minute, second u8, microsecond u32 BE, flags u8, then the time zone
    0x0F timedelta   an int value (tagged): the total number of microseconds
    0x10 Decimal     varint n, then n bytes ASCII (``str(d)``)
    0x11 UUID        16 bytes
    0x12-0x1F        reserved
    0x20-0x2F list of 0-15 values         0x30-0x3F dict of 0-15 pairs
    0x40-0x7F str of 0-63 UTF-8 bytes     0x80-0xFF int -32..95 (tag - 0xA0)

    flags: bit 0 fold; bit 1 fixed offset follows (an int value: microseconds east of UTC);
    bit 2 the fixed offset has a custom name (a str value follows the offset);
    bit 3 a ZoneInfo key follows (a str value).
    varint: unsigned LEB128.

Decoding untrusted bytes is safe: no code runs, lengths are checked against the data, nesting is
limited, and any malformation raises :class:`~dotwist.storage.errors.CorruptValueError`.
"""

from __future__ import annotations

import datetime as _dt
import decimal as _decimal
import struct as _struct
import uuid as _uuid
from typing import Any, Callable

from .errors import CorruptValueError, InvalidValueError, StorageLimitError

__all__ = [
    "DEFAULT_MAX_DEPTH",
    "DEFAULT_MAX_SIZE",
    "FORMAT_VERSION",
    "SUPPORTED_TYPES",
    "decode",
    "encode",
    "encodedSize",
]

FORMAT_VERSION = 1
DEFAULT_MAX_DEPTH = 100
#: Encoding stops with InvalidValueError once the output passes this many bytes (guards against
#: values whose shared references make the encoding explode). Callers with a limit pass their own.
DEFAULT_MAX_SIZE = 256 * 1024 * 1024

SUPPORTED_TYPES = (
    "None, bool, int, float, str, bytes (bytearray and memoryview are stored as bytes), list, "
    "tuple, dict, set, frozenset, datetime.datetime, datetime.date, datetime.time, "
    "datetime.timedelta, decimal.Decimal, uuid.UUID (and subclasses of these, stored as the base "
    "type)"
)

_NONE = 0x00
_FALSE = 0x01
_TRUE = 0x02
_INT = 0x03
_FLOAT = 0x04
_STR = 0x05
_BYTES = 0x06
_LIST = 0x07
_TUPLE = 0x08
_DICT = 0x09
_SET = 0x0A
_FROZENSET = 0x0B
_DATETIME = 0x0C
_DATE = 0x0D
_TIME = 0x0E
_TIMEDELTA = 0x0F
_DECIMAL = 0x10
_UUID = 0x11
_SHORT_LIST = 0x20
_SHORT_DICT = 0x30
_SHORT_STR = 0x40
_SMALL_INT = 0x80
_SMALL_INT_ZERO = 0xA0  # tag of the int 0
_SMALL_INT_MIN = _SMALL_INT - _SMALL_INT_ZERO  # -32
_SMALL_INT_END = 0x100 - _SMALL_INT_ZERO  # 96, exclusive

_FOLD = 1
_HAS_OFFSET = 2
_HAS_NAME = 4
_HAS_ZONE = 8

_packDouble = _struct.Struct(">d").pack
_unpackDouble = _struct.Struct(">d").unpack_from
_DATETIME_STRUCT = _struct.Struct(">HBBBBBIB")
_DATE_STRUCT = _struct.Struct(">HBB")
_TIME_STRUCT = _struct.Struct(">BBBIB")
_HEADER = bytes([FORMAT_VERSION])

_datetime = _dt.datetime
_date = _dt.date
_time = _dt.time
_timedelta = _dt.timedelta
_timezone = _dt.timezone
_Decimal = _decimal.Decimal
_UUIDType = _uuid.UUID
_ONE_MICROSECOND = _dt.timedelta(microseconds=1)

try:  # zoneinfo needs the system tz database or the tzdata package; it is optional here
    from zoneinfo import ZoneInfo as _ZoneInfo
except ImportError:  # pragma: no cover
    _ZoneInfo = None  # type: ignore[assignment,misc]


class _TooDeep(Exception):
    pass


class _TooBig(Exception):
    pass


class _Unsupported(Exception):
    def __init__(self, value: Any, reason: str | None = None) -> None:
        super().__init__()
        self.value = value
        self.reason = reason


# --------------------------------------------------------------------------------------------
# encoding


def _varint(out: bytearray, n: int) -> None:
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _encInt(v: int, out: bytearray) -> None:
    if _SMALL_INT_MIN <= v < _SMALL_INT_END:
        out.append(v + _SMALL_INT_ZERO)
        return
    n = (v.bit_length() + 8) >> 3
    out.append(_INT)
    if n < 0x80:
        out.append(n)
    else:
        _varint(out, n)
    out += v.to_bytes(n, "little", signed=True)


def _strBytes(v: str) -> bytes:
    """The complete encoding of the str ``v`` (tag, length, UTF-8)."""
    try:
        b = v.encode()
    except UnicodeEncodeError:
        b = v.encode("utf-8", "surrogatepass")
    n = len(b)
    if n < 64:
        return bytes((_SHORT_STR + n,)) + b
    out = bytearray((_STR,))
    _varint(out, n)
    out += b
    return bytes(out)


# Encoded dict keys: most dicts stored reuse a few key names. Bounded (short keys only, and a full
# cache simply stops growing), and only str keys go in, so 1, 1.0 and True cannot collide.
_KEY_CACHE_SIZE = 4096
_KEY_CACHE_MAX_LEN = 65
_keyCache: dict[str, bytes] = {}


def _encStr(v: str, out: bytearray) -> None:
    try:
        b = v.encode()
    except UnicodeEncodeError:
        b = v.encode("utf-8", "surrogatepass")
    n = len(b)
    if n < 64:
        out.append(_SHORT_STR + n)
    else:
        out.append(_STR)
        _varint(out, n)
    out += b


def _encTz(tz: Any, value: Any, flags: int) -> int:
    """Return ``flags`` with the time zone bits for ``tz`` set (the payload comes later)."""
    if tz is None:
        return flags
    if type(tz) is _timezone:
        offset = tz.utcoffset(None)
        flags |= _HAS_OFFSET
        if tz.tzname(None) != _timezone(offset).tzname(None):
            flags |= _HAS_NAME
        return flags
    if _ZoneInfo is not None and isinstance(tz, _ZoneInfo) and tz.key is not None:
        return flags | _HAS_ZONE
    raise _Unsupported(
        value,
        f"its tzinfo is a {type(tz).__module__}.{type(tz).__qualname__}; only datetime.timezone "
        "(fixed offsets, UTC) and zoneinfo.ZoneInfo with a key are supported",
    )


def _encTzPayload(tz: Any, flags: int, out: bytearray) -> None:
    if flags & _HAS_OFFSET:
        _encInt(tz.utcoffset(None) // _ONE_MICROSECOND, out)
        if flags & _HAS_NAME:
            _encStr(tz.tzname(None), out)
    elif flags & _HAS_ZONE:
        _encStr(tz.key, out)


def _encOther(v: Any, t: type, out: bytearray, depth: int, maxSize: int) -> None:
    """Encode the less common exact types, then subclasses of supported types."""
    if t is bytearray:
        out.append(_BYTES)
        _varint(out, len(v))
        out += v
    elif t is memoryview:
        b = v.tobytes()
        out.append(_BYTES)
        _varint(out, len(b))
        out += b
    elif t is _datetime:
        flags = _encTz(v.tzinfo, v, v.fold)
        out.append(_DATETIME)
        out += _DATETIME_STRUCT.pack(v.year, v.month, v.day, v.hour, v.minute, v.second, v.microsecond, flags)
        if flags > 1:
            _encTzPayload(v.tzinfo, flags, out)
    elif t is _date:
        out.append(_DATE)
        out += _DATE_STRUCT.pack(v.year, v.month, v.day)
    elif t is _time:
        flags = _encTz(v.tzinfo, v, v.fold)
        out.append(_TIME)
        out += _TIME_STRUCT.pack(v.hour, v.minute, v.second, v.microsecond, flags)
        if flags > 1:
            _encTzPayload(v.tzinfo, flags, out)
    elif t is _timedelta:
        out.append(_TIMEDELTA)
        _encInt(v // _ONE_MICROSECOND, out)
    elif t is _Decimal:
        b = str(v).encode("ascii")
        out.append(_DECIMAL)
        _varint(out, len(b))
        out += b
    elif t is _UUIDType:
        out.append(_UUID)
        out += v.bytes
    elif t is set or t is frozenset:
        if depth <= 0:
            raise _TooDeep
        if len(out) > maxSize:
            raise _TooBig
        out.append(_SET if t is set else _FROZENSET)
        _varint(out, len(v))
        depth -= 1
        for x in v:
            _enc(x, out, depth, maxSize)
    else:
        for base in t.__mro__[1:]:
            if base in _BASES:
                _enc(_BASES[base](v), out, depth, maxSize)
                return
        raise _Unsupported(v)


def _enc(v: Any, out: bytearray, depth: int, maxSize: int) -> None:
    t = type(v)
    if t is str:
        try:
            b = v.encode()
        except UnicodeEncodeError:
            b = v.encode("utf-8", "surrogatepass")
        n = len(b)
        if n < 64:
            out.append(_SHORT_STR + n)
        else:
            out.append(_STR)
            _varint(out, n)
        out += b
    elif t is int:
        if _SMALL_INT_MIN <= v < _SMALL_INT_END:
            out.append(v + _SMALL_INT_ZERO)
        else:
            _encInt(v, out)
    elif t is dict:
        if depth <= 0:
            raise _TooDeep
        if len(out) > maxSize:
            raise _TooBig
        n = len(v)
        if n < 16:
            out.append(_SHORT_DICT + n)
        else:
            out.append(_DICT)
            _varint(out, n)
        depth -= 1
        for k, x in v.items():
            if type(k) is str:
                kb = _keyCache.get(k)
                if kb is None:
                    kb = _strBytes(k)
                    if len(kb) <= _KEY_CACHE_MAX_LEN and len(_keyCache) < _KEY_CACHE_SIZE:
                        _keyCache[k] = kb
                out += kb
            else:
                _enc(k, out, depth, maxSize)
            tx = type(x)
            if tx is str:
                try:
                    b = x.encode()
                except UnicodeEncodeError:
                    b = x.encode("utf-8", "surrogatepass")
                n = len(b)
                if n < 64:
                    out.append(_SHORT_STR + n)
                    out += b
                else:
                    out.append(_STR)
                    _varint(out, n)
                    out += b
            elif tx is int and _SMALL_INT_MIN <= x < _SMALL_INT_END:
                out.append(x + _SMALL_INT_ZERO)
            elif tx is bool:
                out.append(_TRUE if x else _FALSE)
            elif x is None:
                out.append(_NONE)
            else:
                _enc(x, out, depth, maxSize)
    elif t is list:
        if depth <= 0:
            raise _TooDeep
        if len(out) > maxSize:
            raise _TooBig
        n = len(v)
        if n < 16:
            out.append(_SHORT_LIST + n)
        else:
            out.append(_LIST)
            _varint(out, n)
        depth -= 1
        for x in v:
            tx = type(x)
            if tx is str:
                try:
                    b = x.encode()
                except UnicodeEncodeError:
                    b = x.encode("utf-8", "surrogatepass")
                n = len(b)
                if n < 64:
                    out.append(_SHORT_STR + n)
                    out += b
                else:
                    out.append(_STR)
                    _varint(out, n)
                    out += b
            elif tx is int and _SMALL_INT_MIN <= x < _SMALL_INT_END:
                out.append(x + _SMALL_INT_ZERO)
            else:
                _enc(x, out, depth, maxSize)
    elif v is None:
        out.append(_NONE)
    elif t is bool:
        out.append(_TRUE if v else _FALSE)
    elif t is float:
        out.append(_FLOAT)
        out += _packDouble(v)
    elif t is bytes:
        out.append(_BYTES)
        n = len(v)
        if n < 0x80:
            out.append(n)
        else:
            _varint(out, n)
        out += v
    elif t is tuple:
        if depth <= 0:
            raise _TooDeep
        if len(out) > maxSize:
            raise _TooBig
        out.append(_TUPLE)
        _varint(out, len(v))
        depth -= 1
        for x in v:
            _enc(x, out, depth, maxSize)
    else:
        _encOther(v, t, out, depth, maxSize)


# Base types a subclass instance is converted to before encoding (most derived wins: the MRO is
# walked in order, so a datetime subclass becomes a datetime, not a date).
_BASES: dict[type, Callable[[Any], Any]] = {
    int: int,
    float: float,
    str: str,
    bytes: bytes,
    bytearray: bytes,
    list: list,
    tuple: tuple,
    dict: dict,
    set: set,
    frozenset: frozenset,
    _datetime: lambda v: _datetime(
        v.year, v.month, v.day, v.hour, v.minute, v.second, v.microsecond, v.tzinfo, fold=v.fold
    ),
    _date: lambda v: _date(v.year, v.month, v.day),
    _time: lambda v: _time(v.hour, v.minute, v.second, v.microsecond, v.tzinfo, fold=v.fold),
    _timedelta: lambda v: _timedelta(v.days, v.seconds, v.microseconds),
    _Decimal: lambda v: _Decimal(str(v)),
    _UUIDType: lambda v: _UUIDType(int=v.int),
}


def _typeName(v: Any) -> str:
    t = type(v)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def _children(v: Any) -> list[tuple[str, Any]]:
    """(path suffix, child) pairs of a container, for the slow error-reporting paths."""
    if isinstance(v, dict):
        items: list[tuple[str, Any]] = []
        for k, x in v.items():
            items.append((f"[{k!r}] (a key)", k))
            items.append((f"[{k!r}]", x))
        return items
    if isinstance(v, (list, tuple)):
        return [(f"[{i}]", x) for i, x in enumerate(v)]
    if isinstance(v, (set, frozenset)):
        return [(" (a member)", x) for x in v]
    return []


def _pathTo(root: Any, target: Any, limit: int) -> str | None:
    """Where ``target`` (by identity) sits in ``root``, as ``value[...]...``; None if not found."""
    stack: list[tuple[Any, str, int]] = [(root, "value", 0)]
    seen: set[int] = set()
    while stack:
        v, path, depth = stack.pop()
        if v is target:
            return path
        if depth > limit + 1 or id(v) in seen:
            continue
        seen.add(id(v))
        for suffix, child in reversed(_children(v)):
            stack.append((child, path + suffix, depth + 1))
    return None


def _findCycle(root: Any, limit: int) -> str | None:
    """The path of a container that contains itself, or None when there is no reference cycle."""
    onPath: set[int] = set()

    def visit(v: Any, path: str, depth: int) -> str | None:
        if depth > limit + 2:
            return None
        kids = _children(v)
        if not kids:
            return None
        if id(v) in onPath:
            return path
        onPath.add(id(v))
        try:
            for suffix, child in kids:
                found = visit(child, path + suffix, depth + 1)
                if found is not None:
                    return found
        finally:
            onPath.discard(id(v))
        return None

    try:
        return visit(root, "value", 0)
    except RecursionError:  # pragma: no cover - limit keeps it shallow
        return None


def encode(value: Any, *, maxDepth: int = DEFAULT_MAX_DEPTH, maxSize: int = DEFAULT_MAX_SIZE) -> bytes:
    """Encode ``value`` to bytes.

    Raises :class:`InvalidValueError` for an unsupported type, a reference cycle or nesting deeper
    than ``maxDepth`` containers, and :class:`StorageLimitError` once the encoding passes
    ``maxSize`` bytes (checked as containers are entered, so it stops early on huge values; callers
    with an exact limit compare ``len()`` of the result as well).
    """
    if type(value) is str:  # the commonest stored value: no buffer, no recursion
        try:
            b = value.encode()
        except UnicodeEncodeError:
            b = value.encode("utf-8", "surrogatepass")
        n = len(b)
        if n < 64:
            return bytes((FORMAT_VERSION, _SHORT_STR + n)) + b
        if n < 0x80:
            return bytes((FORMAT_VERSION, _STR, n)) + b
    out = bytearray(_HEADER)
    try:
        _enc(value, out, maxDepth, maxSize)
    except _Unsupported as e:
        where = _pathTo(value, e.value, maxDepth) or "value"
        if e.reason is not None:
            raise InvalidValueError(
                f"cannot store {where} (a {_typeName(e.value)}): {e.reason}"
            ) from None
        raise InvalidValueError(
            f"cannot store {where}: values of type {_typeName(e.value)} are not supported; "
            f"supported types are {SUPPORTED_TYPES}"
        ) from None
    except (_TooDeep, RecursionError):
        cycle = _findCycle(value, maxDepth)
        if cycle is not None:
            raise InvalidValueError(
                f"cannot store value: it contains a reference cycle ({cycle} contains itself)"
            ) from None
        raise InvalidValueError(
            f"cannot store value: it is nested more than {maxDepth} containers deep"
        ) from None
    except _TooBig:
        raise StorageLimitError(
            f"cannot store value: its encoding is larger than {maxSize} bytes",
            limit="maxSize",
            value=maxSize,
        ) from None
    except (UnicodeEncodeError, OverflowError, ValueError) as e:  # pragma: no cover - defensive
        raise InvalidValueError(f"cannot store value: {e}") from None
    return bytes(out)


def encodedSize(value: Any, *, maxDepth: int = DEFAULT_MAX_DEPTH) -> int:
    """The number of bytes :func:`encode` produces for ``value`` (raising what it raises)."""
    return len(encode(value, maxDepth=maxDepth))


# --------------------------------------------------------------------------------------------
# decoding


def _decVarint(data: bytes, pos: int) -> tuple[int, int]:
    shift = 0
    n = 0
    while True:
        b = data[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        if b < 0x80:
            return n, pos
        shift += 7
        if shift > 63:
            raise CorruptValueError("invalid encoded value: a length is too large")


def _decTz(data: bytes, pos: int, flags: int) -> tuple[Any, int]:
    if flags & _HAS_OFFSET:
        micro, pos = _dec(data, pos, 0)
        if type(micro) is not int:
            raise CorruptValueError("invalid encoded value: a time zone offset is not an int")
        offset = _timedelta(microseconds=micro)
        if flags & _HAS_NAME:
            name, pos = _dec(data, pos, 0)
            if type(name) is not str:
                raise CorruptValueError("invalid encoded value: a time zone name is not a str")
            return _timezone(offset, name), pos
        return _timezone(offset), pos
    if flags & _HAS_ZONE:
        key, pos = _dec(data, pos, 0)
        if type(key) is not str or _ZoneInfo is None:
            raise CorruptValueError("invalid encoded value: bad time zone key")
        try:
            return _ZoneInfo(key), pos
        except Exception as e:  # ZoneInfoNotFoundError, ValueError for a malformed key
            raise CorruptValueError(f"invalid encoded value: time zone {key!r}: {e}") from None
    return None, pos


def _dec(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    t = data[pos]
    pos += 1
    if t >= _SMALL_INT:
        return t - _SMALL_INT_ZERO, pos
    if t >= _SHORT_STR:
        end = pos + t - _SHORT_STR
        try:
            return data[pos:end].decode(), end
        except UnicodeDecodeError:
            return data[pos:end].decode("utf-8", "surrogatepass"), end
    if t >= _SHORT_DICT:
        if depth <= 0:
            raise _TooDeep
        depth -= 1
        d: dict[Any, Any] = {}
        for _ in range(t - _SHORT_DICT):
            kt = data[pos]
            if _SHORT_STR <= kt < _SMALL_INT:
                end = pos + 1 + kt - _SHORT_STR
                try:
                    k = data[pos + 1 : end].decode()
                except UnicodeDecodeError:
                    k = data[pos + 1 : end].decode("utf-8", "surrogatepass")
                pos = end
            else:
                k, pos = _dec(data, pos, depth)
            vt = data[pos]
            if vt >= _SHORT_STR:
                if vt >= _SMALL_INT:
                    d[k] = vt - _SMALL_INT_ZERO
                    pos += 1
                else:
                    end = pos + 1 + vt - _SHORT_STR
                    try:
                        d[k] = data[pos + 1 : end].decode()
                    except UnicodeDecodeError:
                        d[k] = data[pos + 1 : end].decode("utf-8", "surrogatepass")
                    pos = end
            elif vt == _TRUE:
                d[k] = True
                pos += 1
            elif vt == _FALSE:
                d[k] = False
                pos += 1
            elif vt == _NONE:
                d[k] = None
                pos += 1
            else:
                d[k], pos = _dec(data, pos, depth)
        return d, pos
    if t >= _SHORT_LIST:
        if depth <= 0:
            raise _TooDeep
        depth -= 1
        items: list[Any] = []
        append = items.append
        for _ in range(t - _SHORT_LIST):
            vt = data[pos]
            if vt >= _SHORT_STR:
                if vt >= _SMALL_INT:
                    append(vt - _SMALL_INT_ZERO)
                    pos += 1
                else:
                    end = pos + 1 + vt - _SHORT_STR
                    try:
                        append(data[pos + 1 : end].decode())
                    except UnicodeDecodeError:
                        append(data[pos + 1 : end].decode("utf-8", "surrogatepass"))
                    pos = end
            else:
                x, pos = _dec(data, pos, depth)
                append(x)
        return items, pos
    if t == _NONE:
        return None, pos
    if t == _TRUE:
        return True, pos
    if t == _FALSE:
        return False, pos
    if t == _FLOAT:
        return _unpackDouble(data, pos)[0], pos + 8
    if t == _INT:
        n = data[pos]
        if n < 0x80:
            pos += 1
        else:
            n, pos = _decVarint(data, pos)
        end = pos + n
        if end > len(data):
            raise CorruptValueError("invalid encoded value: truncated")
        return int.from_bytes(data[pos:end], "little", signed=True), end
    if t == _STR or t == _BYTES or t == _DECIMAL:
        n, pos = _decVarint(data, pos)
        end = pos + n
        if end > len(data):
            raise CorruptValueError("invalid encoded value: truncated")
        if t == _STR:
            try:
                return data[pos:end].decode(), end
            except UnicodeDecodeError:
                return data[pos:end].decode("utf-8", "surrogatepass"), end
        if t == _BYTES:
            return data[pos:end], end
        return _Decimal(data[pos:end].decode("ascii")), end
    if t <= _FROZENSET:  # _LIST, _TUPLE, _DICT, _SET, _FROZENSET
        if depth <= 0:
            raise _TooDeep
        depth -= 1
        n, pos = _decVarint(data, pos)
        if n > len(data) - pos:
            raise CorruptValueError("invalid encoded value: truncated")
        if t == _DICT:
            d = {}
            for _ in range(n):
                k, pos = _dec(data, pos, depth)
                d[k], pos = _dec(data, pos, depth)
            return d, pos
        items = []
        append = items.append
        for _ in range(n):
            vt = data[pos]
            if vt >= _SHORT_STR:
                if vt >= _SMALL_INT:
                    append(vt - _SMALL_INT_ZERO)
                    pos += 1
                else:
                    end = pos + 1 + vt - _SHORT_STR
                    try:
                        append(data[pos + 1 : end].decode())
                    except UnicodeDecodeError:
                        append(data[pos + 1 : end].decode("utf-8", "surrogatepass"))
                    pos = end
            else:
                x, pos = _dec(data, pos, depth)
                append(x)
        if t == _LIST:
            return items, pos
        if t == _TUPLE:
            return tuple(items), pos
        if t == _SET:
            return set(items), pos
        return frozenset(items), pos
    if t == _DATETIME:
        y, mo, d_, h, mi, s, us, flags = _DATETIME_STRUCT.unpack_from(data, pos)
        tz, pos = _decTz(data, pos + _DATETIME_STRUCT.size, flags)
        return _datetime(y, mo, d_, h, mi, s, us, tz, fold=flags & _FOLD), pos
    if t == _DATE:
        y, mo, d_ = _DATE_STRUCT.unpack_from(data, pos)
        return _date(y, mo, d_), pos + _DATE_STRUCT.size
    if t == _TIME:
        h, mi, s, us, flags = _TIME_STRUCT.unpack_from(data, pos)
        tz, pos = _decTz(data, pos + _TIME_STRUCT.size, flags)
        return _time(h, mi, s, us, tz, fold=flags & _FOLD), pos
    if t == _TIMEDELTA:
        micro, pos = _dec(data, pos, 0)
        if type(micro) is not int:
            raise CorruptValueError("invalid encoded value: a timedelta is not an int")
        return _timedelta(microseconds=micro), pos
    if t == _UUID:
        end = pos + 16
        if end > len(data):
            raise CorruptValueError("invalid encoded value: truncated")
        return _UUIDType(bytes=data[pos:end]), end
    raise CorruptValueError(f"invalid encoded value: unknown tag 0x{t:02x}")


def decode(data: bytes | bytearray | memoryview, *, maxDepth: int = DEFAULT_MAX_DEPTH) -> Any:
    """Decode bytes made by :func:`encode`. Raises :class:`CorruptValueError` for anything else."""
    if type(data) is not bytes:
        data = bytes(data)
    n = len(data)
    if n >= 2 and data[0] == FORMAT_VERSION:  # fast paths: a whole value that is one str or int
        t = data[1]
        if t >= _SMALL_INT:
            if n == 2:
                return t - _SMALL_INT_ZERO
        elif t >= _SHORT_STR:
            if n == 2 + t - _SHORT_STR:
                try:
                    return data[2:].decode()
                except UnicodeDecodeError:
                    pass  # a lone surrogate: the general path decodes it
        elif t == _STR and n > 2 and data[2] < 0x80 and n == 3 + data[2]:
            try:
                return data[3:].decode()
            except UnicodeDecodeError:
                pass
    if not data:
        raise CorruptValueError("invalid encoded value: empty")
    if data[0] != FORMAT_VERSION:
        raise CorruptValueError(
            f"invalid encoded value: unknown format version {data[0]} "
            f"(this dotwist reads version {FORMAT_VERSION})"
        )
    try:
        value, pos = _dec(data, 1, maxDepth)
    except CorruptValueError:
        raise
    except (_TooDeep, RecursionError):
        raise CorruptValueError(
            f"invalid encoded value: nested more than {maxDepth} containers deep"
        ) from None
    except IndexError:
        raise CorruptValueError("invalid encoded value: truncated") from None
    except (ValueError, TypeError, OverflowError, ArithmeticError, _struct.error) as e:
        # UnicodeDecodeError, an unhashable dict key or set member, a date out of range, ...
        raise CorruptValueError(f"invalid encoded value: {e}") from None
    if pos != len(data):
        raise CorruptValueError("invalid encoded value: trailing bytes after the value")
    return value
