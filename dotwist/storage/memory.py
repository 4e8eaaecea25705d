"""The in-memory backend: key-value data and the alarm in Python structures, SQL in ``:memory:``.

Nothing is durable; data lives as long as the backend (closing and reopening an object keeps its
committed data). Values are kept encoded (``bytes`` from :mod:`dotwist.storage.codec`), exactly as
the SQLite backend stores them, so mutating a value after ``put`` does not change what is stored
and every read returns a fresh copy; it also makes size limits and unsupported types fail here as
they fail there.

Keys are a sorted ``list`` (``bisect``) beside a ``dict`` of values. Uncommitted writes are applied
in place and recorded in an undo log, which ``rollback()`` and ``rollbackTo()`` replay backwards
and ``commit()`` clears. SQL needs an engine, so each object also has a ``sqlite3`` ``:memory:``
database with the same rules as the SQLite backend (and its savepoints follow the key-value ones).
"""

from __future__ import annotations

import sqlite3
from bisect import bisect_left, bisect_right, insort
from typing import Any

from ._base import BaseObjectStore
from ._cache import (
    DEFAULT_CACHE_BYTES,
    DEFAULT_CACHE_ENTRIES,
    UNKNOWN,
    Encoded,
    ValueCache,
    cacheBounds,
    keyBytes,
)
from ._sql import SqlEngine, trustedSql
from ._validation import (
    alarmTime,
    checkNamespace,
    checkObjectId,
    encodeValue,
    entryRows,
    keyList,
    keySize,
    listOptions,
    prefixEnd,
)
from .codec import decode
from .errors import ObjectOpenError, StorageClosedError
from .interface import MISSING, StorageBackend
from .limits import StorageLimits, limitError

__all__ = ["MemoryBackend", "MemoryObjectStore"]

# The SQL database has the SQLite backend's internal tables too (empty: the data is in Python), so
# that user SQL sees the same schema and gets the same errors on both backends.
_INTERNAL = frozenset(("_cf_KV", "_cf_METADATA"))
_SETUP = (
    "PRAGMA foreign_keys = ON",
    "PRAGMA trusted_schema = OFF",
    "CREATE TABLE _cf_KV (key TEXT PRIMARY KEY, value BLOB) WITHOUT ROWID",
    "CREATE TABLE _cf_METADATA (key INTEGER PRIMARY KEY, value BLOB)",
)

_SET = 0  # (_SET, key, previous bytes or None)
_ALARM = 1  # (_ALARM, previous alarm)
_RESET = 2  # (_RESET, keys, values, kvBytes, alarm): deleteAll


def _keyBytes(key: str) -> int:
    return len(key) if key.isascii() else len(key.encode("utf-8"))


class _ObjectData:
    """Everything stored for one object (committed and uncommitted)."""

    __slots__ = ("keys", "values", "kvBytes", "alarm", "conn", "engine")

    def __init__(self, conn: sqlite3.Connection, engine: SqlEngine) -> None:
        self.keys: list[str] = []
        self.values: dict[str, bytes] = {}
        self.kvBytes = 0
        self.alarm: int | None = None
        self.conn = conn
        self.engine = engine


class MemoryObjectStore(BaseObjectStore):
    """The storage of one object of a :class:`MemoryBackend`."""

    def __init__(
        self, backend: MemoryBackend, namespace: str, objectId: str, data: _ObjectData
    ) -> None:
        limits = backend.limits
        cache = ValueCache(backend.valueCacheEntries, backend.valueCacheBytes, limits.maxValueDepth)
        super().__init__(namespace, objectId, limits, data.engine, cache)
        self._backend = backend
        self._d = data
        self._log: list[tuple[Any, ...]] = []

    # -- the undo log -------------------------------------------------------------------------

    def _rawSet(self, key: str, data: bytes | None) -> bytes | None:
        """Set (or with None, delete) ``key``; return its previous bytes (None if absent)."""
        d = self._d
        old = d.values.get(key)
        if data is None:
            if old is not None:
                del d.values[key]
                del d.keys[bisect_left(d.keys, key)]
                d.kvBytes -= _keyBytes(key) + len(old)
        else:
            if old is None:
                insort(d.keys, key)
                d.kvBytes += _keyBytes(key) + len(data)
            else:
                d.kvBytes += len(data) - len(old)
            d.values[key] = data
        return old

    def _undoTo(self, mark: int) -> None:
        log = self._log
        d = self._d
        while len(log) > mark:
            entry = log.pop()
            kind = entry[0]
            if kind == _SET:
                self._rawSet(entry[1], entry[2])
            elif kind == _ALARM:
                d.alarm = entry[1]
            else:
                _, d.keys, d.values, d.kvBytes, d.alarm = entry

    def _kvMark(self) -> int:
        return len(self._log)

    def _kvRollbackTo(self, mark: Any) -> None:
        self._undoTo(mark)

    def _kvCommit(self) -> None:
        self._log.clear()

    def _kvRollback(self) -> None:
        self._undoTo(0)

    def _databaseSize(self) -> int:
        """Key-value bytes (UTF-8 keys and encoded values) plus the SQL database's pages."""
        self._check()
        return self._d.kvBytes + self._engine.databaseSize()

    def _checkSize(self, growth: int) -> None:
        limit = self.limits.maxDatabaseSize
        if self._d.kvBytes + growth > limit:
            raise limitError(
                f"the database is full: {self._d.kvBytes} bytes of key-value data are stored",
                "maxDatabaseSize",
                limit,
            )

    # -- key-value ----------------------------------------------------------------------------

    def get(self, key: str, *, noCache: bool = False) -> Any:
        if self._closed:
            self._check()
        cache = self._cache
        if type(key) is str:
            entry = cache.entries.get(key)
            if entry is not None:  # a hit, inlined: this is the hot path of every read
                cache.hits += 1
                if not noCache:
                    cache.entries.move_to_end(key)
                value = entry[0]
                if type(value) is Encoded:
                    return decode(value.data, maxDepth=cache.maxDepth)
                return value
            cache.misses += 1
        n = keySize(key, self.limits)
        data = self._d.values.get(key)
        if data is None:
            if not noCache and type(key) is str:
                cache.loaded(key, n, None, MISSING)
            return MISSING
        self.bytesRead += len(data)
        value = decode(data, maxDepth=self.limits.maxValueDepth)
        if not noCache and type(key) is str:
            cache.loaded(key, n, data, value)
        return value

    def getMany(self, keys: Any, *, noCache: bool = False) -> dict[str, Any]:
        self._check()
        cache = self._cache
        values = self._d.values
        depth = self.limits.maxValueDepth
        found: dict[str, Any] = {}
        for key in keyList(keys, self.limits):
            value = cache.get(key, UNKNOWN, not noCache)
            if value is UNKNOWN:
                data = values.get(key)
                if data is None:
                    if not noCache:
                        cache.loaded(key, keyBytes(key), None, MISSING)
                    continue
                value = decode(data, maxDepth=depth)
                if not noCache:
                    cache.loaded(key, keyBytes(key), data, value)
            if value is not MISSING:
                found[key] = value
        return {key: found[key] for key in sorted(found)}

    def put(self, key: str, value: Any, *, noCache: bool = False) -> None:
        if self._closed:
            self._check()
        n = keySize(key, self.limits)
        data = encodeValue(value, n, self.limits)
        self._checkSize(n + len(data))
        self.bytesWritten += n + len(data)
        skey = key if type(key) is str else str(key)
        self._log.append((_SET, skey, self._rawSet(skey, data)))
        self._pending = True
        self._cache.put(skey, n, data, value, not noCache)

    def putMany(self, entries: Any, *, noCache: bool = False) -> None:
        self._check()
        rows = entryRows(entries, self.limits)
        self._checkSize(sum(n + len(data) for _, n, data, _ in rows))
        log = self._log
        cache = self._cache
        for key, n, data, value in rows:
            log.append((_SET, key, self._rawSet(key, data)))
            cache.put(key, n, data, value, not noCache)
        if rows:
            self._pending = True

    def delete(self, key: str, *, noCache: bool = False) -> bool:
        if self._closed:
            self._check()
        n = keySize(key, self.limits)
        skey = key if type(key) is str else str(key)
        self._cache.deleted(skey, n, not noCache)
        old = self._rawSet(skey, None)
        if old is None:
            return False
        self._log.append((_SET, skey, old))
        self._pending = True
        return True

    def deleteMany(self, keys: Any, *, noCache: bool = False) -> int:
        self._check()
        count = 0
        log = self._log
        cache = self._cache
        for key in keyList(keys, self.limits):
            cache.deleted(key, keyBytes(key), not noCache)
            old = self._rawSet(key, None)
            if old is not None:
                log.append((_SET, key, old))
                count += 1
        if count:
            self._pending = True
        return count

    def list(
        self,
        start: str | None = None,
        startAfter: str | None = None,
        end: str | None = None,
        prefix: str | None = None,
        reverse: bool = False,
        limit: int | None = None,
    ) -> dict[str, Any]:
        self._check()
        listOptions(start, startAfter, end, prefix, reverse, limit)
        keys = self._d.keys
        lo = 0
        hi = len(keys)
        if start is not None:
            lo = bisect_left(keys, start)
        elif startAfter is not None:
            lo = bisect_right(keys, startAfter)
        if end is not None:
            hi = bisect_left(keys, end, lo)
        if prefix:
            lo = max(lo, bisect_left(keys, prefix))
            upper = prefixEnd(prefix)
            if upper is not None:
                hi = min(hi, bisect_left(keys, upper))
        if lo >= hi:
            return {}
        if reverse:
            if limit is not None:
                lo = max(lo, hi - limit)
            selected = keys[lo:hi]
            selected.reverse()
        else:
            if limit is not None:
                hi = min(hi, lo + limit)
            selected = keys[lo:hi]
        values = self._d.values
        depth = self.limits.maxValueDepth
        return {key: decode(values[key], maxDepth=depth) for key in selected}

    def deleteAll(self) -> None:
        self._check()
        self._engine.atomically(self._engine.dropUserObjects)
        d = self._d
        self._log.append((_RESET, d.keys, d.values, d.kvBytes, d.alarm))
        d.keys = []
        d.values = {}
        d.kvBytes = 0
        d.alarm = None
        self._pending = True
        self._cache.changedEverything()

    # -- alarm --------------------------------------------------------------------------------

    def getAlarm(self) -> int | None:
        self._check()
        return self._d.alarm

    def setAlarm(self, scheduledTime: int | float) -> None:
        self._check()
        ms = alarmTime(scheduledTime)
        self._log.append((_ALARM, self._d.alarm))
        self._d.alarm = ms
        self._pending = True

    def deleteAlarm(self) -> None:
        self._check()
        self._log.append((_ALARM, self._d.alarm))
        self._d.alarm = None
        self._pending = True

    def _closeResources(self) -> None:
        self._backend._closed(self)


class MemoryBackend(StorageBackend):
    """Objects' storage in this process's memory, for tests and ephemeral deployments.

    ``valueCacheEntries`` and ``valueCacheBytes`` bound each open object's cache of decoded values
    (see :mod:`dotwist.storage._cache`; 0 entries turns it off), as in :class:`SqliteBackend`.
    """

    def __init__(
        self,
        limits: StorageLimits | None = None,
        *,
        valueCacheEntries: int = DEFAULT_CACHE_ENTRIES,
        valueCacheBytes: int = DEFAULT_CACHE_BYTES,
    ) -> None:
        self.limits = limits if limits is not None else StorageLimits()
        self.valueCacheEntries, self.valueCacheBytes = cacheBounds(valueCacheEntries, valueCacheBytes)
        self._data: dict[tuple[str, str], _ObjectData] = {}
        self._open: dict[tuple[str, str], MemoryObjectStore] = {}
        self._isClosed = False

    @property
    def openObjectCount(self) -> int:
        return len(self._open)

    def open(self, namespace: str, objectId: str) -> MemoryObjectStore:
        if self._isClosed:
            raise StorageClosedError("the storage backend is closed")
        checkNamespace(namespace)
        checkObjectId(objectId)
        key = (namespace, objectId)
        if key in self._open:
            raise ObjectOpenError(f"the storage of {namespace}/{objectId} is already open")
        data = self._data.get(key)
        if data is None:
            conn = sqlite3.connect(":memory:", isolation_level=None, cached_statements=256)
            for sql in _SETUP:
                conn.execute(trustedSql(sql))
            pageSize = conn.execute(trustedSql("PRAGMA page_size")).fetchone()[0]
            conn.execute(
                trustedSql(
                    f"PRAGMA max_page_count = {max(1, self.limits.maxDatabaseSize // pageSize)}"
                )
            )
            engine = SqlEngine(conn, self.limits, internalNames=_INTERNAL)
            data = self._data[key] = _ObjectData(conn, engine)
        store = MemoryObjectStore(self, namespace, objectId, data)
        self._open[key] = store
        return store

    def objectIds(self, namespace: str) -> list[str]:
        """The IDs of ``namespace``'s objects that hold data (a key, an alarm or a SQL table),
        sorted: what a data directory would have files for (for ``dotwist.testing``'s
        ``listDurableObjectIds``)."""
        return sorted(
            objectId
            for (ns, objectId), data in self._data.items()
            if ns == namespace
            and (data.keys or data.alarm is not None or data.engine.hasUserObjects())
        )

    def _closed(self, store: MemoryObjectStore) -> None:
        key = (store.namespace, store.objectId)
        if self._open.get(key) is store:
            del self._open[key]

    def close(self) -> None:
        if self._isClosed:
            return
        self._isClosed = True
        for store in list(self._open.values()):
            store.close()
        for data in self._data.values():
            data.conn.close()
        self._data.clear()

    def __repr__(self) -> str:
        return f"<MemoryBackend objects={len(self._data)} open={len(self._open)}>"
