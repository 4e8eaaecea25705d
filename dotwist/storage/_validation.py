"""Argument checks shared by every backend, so that they fail the same way with the same messages."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

from .codec import encode
from .errors import InvalidArgumentError, InvalidKeyError, StorageLimitError
from .limits import StorageLimits, limitError

_NAMESPACE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,127}\Z")
_OBJECT_ID_RE = re.compile(r"[0-9a-f]{64}\Z")

#: Cloudflare's alarm times are JavaScript Dates: at most 8.64e15 ms from the epoch either way.
MAX_ALARM_MS = 8_640_000_000_000_000


def checkNamespace(namespace: object) -> str:
    if type(namespace) is not str or not _NAMESPACE_RE.match(namespace):
        raise InvalidArgumentError(
            f"invalid namespace {namespace!r}: a namespace is a class name of 1 to 128 "
            "characters: letters, digits, '_' and '-', not starting with a digit or '-'"
        )
    return namespace


def checkObjectId(objectId: object) -> str:
    if type(objectId) is not str or not _OBJECT_ID_RE.match(objectId):
        raise InvalidArgumentError(
            f"invalid object id {objectId!r}: an object id is 64 lowercase hexadecimal digits"
        )
    return objectId


def keySize(key: object, limits: StorageLimits) -> int:
    """Check ``key``; return its size in UTF-8 bytes."""
    if type(key) is not str:
        if isinstance(key, str):
            key = str(key)
        else:
            raise InvalidKeyError(f"keys must be str, not {type(key).__qualname__}")
    if key.isascii():
        n = len(key)
    else:
        try:
            n = len(key.encode("utf-8"))
        except UnicodeEncodeError:
            raise InvalidKeyError(
                "keys must be valid Unicode: this one contains a lone surrogate"
            ) from None
    if n > limits.maxKeySize:
        raise limitError(
            f"Keys cannot be larger than {limits.maxKeySize} bytes. "
            f"A key of size {n} was provided.",
            "maxKeySize",
            limits.maxKeySize,
        )
    return n


def keyList(keys: Iterable[str], limits: StorageLimits) -> list[str]:
    """Check a key list for getMany/deleteMany; return its distinct keys in order of first use."""
    if isinstance(keys, (str, bytes)):
        raise InvalidKeyError("expected a list of keys, not a single key")
    keys = list(keys)
    if len(keys) > limits.maxKeysPerCall:
        raise limitError(
            f"Maximum number of keys is {limits.maxKeysPerCall}. {len(keys)} keys were provided.",
            "maxKeysPerCall",
            limits.maxKeysPerCall,
        )
    for key in keys:
        keySize(key, limits)
    return list(dict.fromkeys(str(k) for k in keys))


def encodeValue(value: Any, keyBytes: int, limits: StorageLimits) -> bytes:
    """Encode ``value`` for storage under a key of ``keyBytes`` bytes, checking the size limit."""
    limit = limits.maxKeyValueSize
    try:
        data = encode(value, maxDepth=limits.maxValueDepth, maxSize=limit)
    except StorageLimitError:
        raise limitError(
            f"Key and value combined cannot be larger than {limit} bytes. A key of {keyBytes} "
            f"bytes and a value of more than {limit} bytes (encoded) were provided.",
            "maxKeyValueSize",
            limit,
        ) from None
    if keyBytes + len(data) > limit:
        raise limitError(
            f"Key and value combined cannot be larger than {limit} bytes. A key of {keyBytes} "
            f"bytes and a value of {len(data)} bytes (encoded) were provided.",
            "maxKeyValueSize",
            limit,
        )
    return data


def entryList(entries: Any, limits: StorageLimits) -> list[tuple[str, bytes]]:
    """Check and encode the entries of putMany; nothing is stored unless all pass."""
    return [(key, data) for key, _, data, _ in entryRows(entries, limits)]


def entryRows(entries: Any, limits: StorageLimits) -> list[tuple[str, int, bytes, Any]]:
    """Check and encode the entries of putMany: (key, its UTF-8 size, encoded value, value)."""
    if not hasattr(entries, "items"):
        raise InvalidArgumentError(
            f"putMany() takes a mapping of keys to values, not {type(entries).__qualname__}"
        )
    items = list(entries.items())
    if len(items) > limits.maxKeysPerCall:
        raise limitError(
            f"Maximum number of key value pairs is {limits.maxKeysPerCall}. "
            f"{len(items)} pairs were provided.",
            "maxKeysPerCall",
            limits.maxKeysPerCall,
        )
    out = []
    for key, value in items:
        n = keySize(key, limits)
        out.append((str(key), n, encodeValue(value, n, limits), value))
    return out


def listOptions(
    start: Any, startAfter: Any, end: Any, prefix: Any, reverse: Any, limit: Any
) -> None:
    for name, v in (("start", start), ("startAfter", startAfter), ("end", end), ("prefix", prefix)):
        if v is None:
            continue
        if not isinstance(v, str):
            raise InvalidKeyError(f"list() option {name} must be a str, not {type(v).__qualname__}")
        if not v.isascii():
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                raise InvalidKeyError(
                    f"list() option {name} must be valid Unicode: it contains a lone surrogate"
                ) from None
    if start is not None and startAfter is not None:
        raise InvalidArgumentError("list() options start and startAfter cannot be used together")
    if limit is not None and (type(limit) is not int or limit < 1):
        raise InvalidArgumentError(f"list() option limit must be a positive int, not {limit!r}")
    if type(reverse) is not bool:
        raise InvalidArgumentError(f"list() option reverse must be a bool, not {reverse!r}")


def prefixEnd(prefix: str) -> str | None:
    """The smallest string greater than every string that starts with ``prefix`` (None if none).

    Keys cannot contain surrogates, so the successor of U+D7FF is U+E000.
    """
    while prefix:
        last = ord(prefix[-1])
        if last < 0x10FFFF:
            nxt = 0xE000 if 0xD7FF <= last < 0xE000 else last + 1
            return prefix[:-1] + chr(nxt)
        prefix = prefix[:-1]
    return None


def alarmTime(scheduledTime: object) -> int:
    if type(scheduledTime) is int:
        ms = scheduledTime
    elif type(scheduledTime) is float and math.isfinite(scheduledTime):
        ms = int(scheduledTime)
    else:
        raise InvalidArgumentError(
            "setAlarm() takes a time in milliseconds since the epoch (an int), "
            f"not {scheduledTime!r}"
        )
    if not -MAX_ALARM_MS <= ms <= MAX_ALARM_MS:
        raise InvalidArgumentError(
            f"alarm time {ms} is outside the range of JavaScript Dates (+-{MAX_ALARM_MS} ms)"
        )
    return ms


__all__ = [
    "alarmTime",
    "checkNamespace",
    "checkObjectId",
    "encodeValue",
    "entryList",
    "entryRows",
    "keyList",
    "keySize",
    "listOptions",
    "prefixEnd",
]
