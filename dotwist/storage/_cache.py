"""The value cache in front of an object's key-value data (what Cloudflare keeps in memory).

Cloudflare's storage keeps recently used key-value pairs in memory in front of SQLite, so a read of
a recently used key does no I/O. :class:`ValueCache` is that cache for one :class:`ObjectStore`: a
bounded LRU of key -> value (or "known absent") that the store consults before its backend and
updates on every write. The backend's data is always current (every write goes into the open
batch at once), so the cache is only ever a copy of what a read of the backend would return *now*;
what can make it stale is the backend's data going back in time without the cache being told,
which is why the store tells it about every such event:

* ``rollback()``, a commit that fails, and SQLite rolling the batch back by itself:
  :meth:`ValueCache.rollback` forgets every key written since the last commit;
* ``rollbackTo(savepoint)``: :meth:`ValueCache.rollbackTo` forgets the keys written since the
  savepoint's :meth:`ValueCache.mark`;
* ``deleteAll()``: the cache is emptied, and a rollback across it empties it again (reads after
  ``deleteAll`` cache "absent" for keys that a rollback brings back);
* closing the store drops its cache with it.

User SQL cannot write ``_cf_KV`` (the authorizer refuses it, in triggers too), so no SQL
statement can change what the cache mirrors; the contract tests check that it stays so.

Copies: a value read twice is two distinct copies, as in Cloudflare (where every ``get`` is a
structured clone), so a caller mutating what it got cannot change the cache or another caller's
value. Values whose every part is immutable (``None``, ``bool``, ``int``, ``float``, ``str``,
``bytes``, ``Decimal``, ``UUID``, the ``datetime`` types, and tuples and frozensets of these) are
cached as they are and returned as they are: nothing can mutate them, so sharing them is a copy
in every observable way but ``is``. Any other value (a ``dict``, a ``list``, a ``set``, ...) is
cached in its encoded form and decoded on each read, which makes the copy and costs one decode (no
SQL). (Decoding is also what the backend does on a miss; a deep copy of the decoded value in
Python measured no faster than decoding, so keeping the bytes costs nothing extra and keeps the
memory compact.)

Bounds: at most ``maxEntries`` keys and ``maxBytes`` bytes (UTF-8 key + encoded value + a fixed
overhead per entry) per store; the least recently used entries go first. ``maxEntries=0``
disables the cache.
"""

from __future__ import annotations

import datetime as _dt
import decimal as _decimal
import uuid as _uuid
from collections import OrderedDict
from typing import Any

from .codec import decode
from .errors import InvalidArgumentError
from .interface import MISSING

__all__ = [
    "DEFAULT_CACHE_BYTES",
    "DEFAULT_CACHE_ENTRIES",
    "ENTRY_OVERHEAD",
    "Encoded",
    "UNKNOWN",
    "ValueCache",
    "cacheBounds",
    "keyBytes",
    "shareable",
]

#: Default bounds per open object store.
DEFAULT_CACHE_ENTRIES = 4096
DEFAULT_CACHE_BYTES = 1024 * 1024
#: Bytes counted per entry on top of its key and encoded value (the dict slot, the entry tuple).
ENTRY_OVERHEAD = 64

_SCALARS = frozenset(
    (
        type(None), bool, int, float, str, bytes, _decimal.Decimal, _uuid.UUID,
        _dt.datetime, _dt.date, _dt.time, _dt.timedelta,
    )
)


#: What :meth:`ValueCache.get` returns when it does not know a key (pass it as ``default``).
UNKNOWN: Any = object()


def cacheBounds(entries: object, size: object) -> tuple[int, int]:
    """Check a backend's ``valueCacheEntries`` and ``valueCacheBytes`` options."""
    for name, v in (("valueCacheEntries", entries), ("valueCacheBytes", size)):
        if type(v) is not int or v < 0:
            raise InvalidArgumentError(f"{name} must be an int >= 0, not {v!r}")
    return entries, size  # type: ignore[return-value]


def keyBytes(key: str) -> int:
    """The UTF-8 size of a key that has passed validation."""
    return len(key) if key.isascii() else len(key.encode("utf-8"))


def shareable(value: Any, depth: int = 8) -> bool:
    """Whether ``value`` is immutable all the way down and of exact supported types (subclasses
    are stored as their base type, so an ``IntEnum`` read back is an ``int``: not shareable)."""
    t = type(value)
    if t in _SCALARS:
        return True
    if (t is tuple or t is frozenset) and depth > 0:
        depth -= 1
        for x in value:
            if type(x) not in _SCALARS and not shareable(x, depth):
                return False
        return True
    return False


class Encoded:
    """A cached value kept encoded: every read decodes a fresh copy."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


#: Marks, in the list of keys written in the batch, a ``deleteAll`` (or any change to every key).
_EVERYTHING = None


class ValueCache:
    """The LRU of one object store (see the module docstring)."""

    __slots__ = ("entries", "_bytes", "maxEntries", "maxBytes", "maxDepth", "_written", "hits", "misses")

    def __init__(self, maxEntries: int, maxBytes: int, maxDepth: int) -> None:
        #: key -> (value, or :class:`Encoded`, or MISSING; its size). Stores read hits straight from
        #: it (see :meth:`get` for what a hit does); everything else goes through the methods.
        self.entries: OrderedDict[str, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self.maxEntries = maxEntries
        self.maxBytes = maxBytes
        self.maxDepth = maxDepth
        # Keys written since the last commit, in order (None: everything), for rollbacks.
        self._written: list[str | None] = []
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def size(self) -> int:
        """Bytes counted against ``maxBytes``."""
        return self._bytes

    # -- reads ------------------------------------------------------------------------------

    def get(self, key: str, default: Any, touch: bool = True) -> Any:
        """The value cached for ``key`` (a fresh copy if it is mutable), :data:`MISSING` if the key
        is known to be absent, or ``default`` if the cache does not know it. ``touch=False``
        (``noCache``) leaves its place in the LRU order alone."""
        entry = self.entries.get(key)
        if entry is None:
            self.misses += 1
            return default
        self.hits += 1
        if touch:
            self.entries.move_to_end(key)
        value = entry[0]
        if type(value) is Encoded:
            return decode(value.data, maxDepth=self.maxDepth)
        return value

    # -- filling ----------------------------------------------------------------------------

    def _store(self, key: str, value: Any, size: int) -> None:
        entries = self.entries
        old = entries.pop(key, None)
        if old is not None:
            self._bytes -= old[1]
        if size > self.maxBytes or not self.maxEntries:
            return
        entries[key] = (value, size)
        self._bytes += size
        while len(entries) > self.maxEntries or self._bytes > self.maxBytes:
            _, (_, dropped) = entries.popitem(last=False)
            self._bytes -= dropped

    def loaded(self, key: str, keyBytes: int, data: bytes | None, value: Any) -> None:
        """Remember what a read of the backend found: ``value`` decoded from ``data``, or
        absence (``data`` None). ``value`` has gone to the caller, so a mutable one is kept as
        ``data``."""
        if data is None:
            self._store(key, MISSING, keyBytes + ENTRY_OVERHEAD)
        elif shareable(value):
            self._store(key, value, keyBytes + len(data) + ENTRY_OVERHEAD)
        else:
            self._store(key, Encoded(data), keyBytes + len(data) + ENTRY_OVERHEAD)

    # -- writes -----------------------------------------------------------------------------

    def put(self, key: str, keyBytes: int, data: bytes, value: Any, keep: bool = True) -> None:
        """``key`` now holds ``value`` (encoded as ``data``); ``keep=False`` (``noCache``) drops
        it from the cache instead."""
        self._written.append(key)
        if keep and self.maxEntries:
            if shareable(value):
                self._store(key, value, keyBytes + len(data) + ENTRY_OVERHEAD)
            else:
                self._store(key, Encoded(data), keyBytes + len(data) + ENTRY_OVERHEAD)
        else:
            self.forget(key)

    def deleted(self, key: str, keyBytes: int, keep: bool = True) -> None:
        """``key`` is now absent."""
        self._written.append(key)
        if keep and self.maxEntries:
            self._store(key, MISSING, keyBytes + ENTRY_OVERHEAD)
        else:
            self.forget(key)

    def forget(self, key: str) -> None:
        old = self.entries.pop(key, None)
        if old is not None:
            self._bytes -= old[1]

    def clear(self) -> None:
        self.entries.clear()
        self._bytes = 0

    def changedEverything(self) -> None:
        """Every key may have changed (``deleteAll``): empty the cache, and empty it again if the
        change is rolled back."""
        self._written.append(_EVERYTHING)
        self.clear()

    # -- transactions -----------------------------------------------------------------------

    def mark(self) -> int:
        """A position to roll back to (for a savepoint)."""
        return len(self._written)

    def committed(self) -> None:
        """The batch is durable: what the cache holds is now the committed state."""
        self._written.clear()

    def rollbackTo(self, mark: int) -> None:
        """The writes since ``mark`` were undone in the backend: forget what they cached."""
        written = self._written
        if len(written) <= mark:
            return
        undone = written[mark:]
        del written[mark:]
        if _EVERYTHING in undone:
            self.clear()
            return
        for key in undone:
            self.forget(key)  # type: ignore[arg-type]

    def rollback(self) -> None:
        """The whole batch was undone (rollback, failed commit, SQLite's own rollback)."""
        self.rollbackTo(0)
