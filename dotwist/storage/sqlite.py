"""The SQLite backend: one SQLite database per object, like workerd.

Layout: ``<dataDir>/<namespace>/<objectId>.sqlite`` (with ``shardLevels=1``:
``<dataDir>/<namespace>/<objectId[:2]>/<objectId>.sqlite``, and so on). Directories are created on
first use. In a database, key-value pairs live in ``_cf_KV (key TEXT PRIMARY KEY, value BLOB)
WITHOUT ROWID`` (values encoded by :mod:`dotwist.storage.codec`) and the alarm in
``_cf_METADATA (key INTEGER PRIMARY KEY, value)`` under key 1, as workerd names them; user SQL
tables sit beside them, so one transaction covers all three.

Each database runs in WAL mode with ``synchronous=FULL`` (the WAL is fsynced at every commit, so
``commit()`` returning means the batch survives power loss and ``kill -9``) and
``locking_mode=EXCLUSIVE`` (the file is locked while its connection is open, so no other process
or backend can open it at the same time, and SQLite needs no ``-shm`` file).

Open databases are bounded (``maxOpenDatabases``): each holds two file descriptors (the database
and its WAL) and SQLite's page cache. When a database must be opened and the bound is reached, the
backend closes the connection of the object store used least recently (by its last commit or
opening) that has nothing uncommitted; that store stays open for its object, and its next
operation opens the database again. So the number of live objects is limited by memory and disk,
not by descriptors. While a store's connection is closed, its file is not locked.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import weakref
from collections import OrderedDict
from typing import Any, cast

from ..datadir import fsyncDirectory
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
from ._sql import SqlEngine, sqliteMessage, trustedSql
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
from .errors import InvalidArgumentError, ObjectOpenError, StorageClosedError, StorageOverloadedError
from .interface import MISSING, StorageBackend
from .limits import StorageLimits, limitError

__all__ = [
    "DEFAULT_MAX_OPEN_DATABASES",
    "SCHEMA_VERSION",
    "SqliteBackend",
    "SqliteObjectStore",
    "descriptorShare",
]

#: ``PRAGMA user_version`` of databases this code writes.
SCHEMA_VERSION = 1
#: ``maxOpenDatabases`` by default (``dotwist.Limits.maxOpenDatabases``): each open connection
#: also holds about 150 KiB of SQLite's memory (page cache, and the WAL index, which exclusive
#: locking keeps in the heap), so 2,048 of them are about 300 MiB.
DEFAULT_MAX_OPEN_DATABASES = 2048
_ALARM_KEY = 1
#: The object's name (from ``idFromName``), recorded by the runtime (``dotwist.names``).
_NAME_KEY = 2
_INTERNAL = frozenset(("_cf_KV", "_cf_METADATA"))

_Q_GET = trustedSql("SELECT value FROM _cf_KV WHERE key = ?")
_Q_PUT = trustedSql("INSERT OR REPLACE INTO _cf_KV (key, value) VALUES (?, ?)")
_Q_DELETE = trustedSql("DELETE FROM _cf_KV WHERE key = ?")
_Q_DELETE_ALL = trustedSql("DELETE FROM _cf_KV")
_Q_ANY_KEY = trustedSql("SELECT EXISTS(SELECT 1 FROM _cf_KV)")
_Q_GET_META = trustedSql("SELECT value FROM _cf_METADATA WHERE key = ?")
_Q_PUT_META = trustedSql("INSERT OR REPLACE INTO _cf_METADATA (key, value) VALUES (?, ?)")
_Q_DELETE_META = trustedSql("DELETE FROM _cf_METADATA WHERE key = ?")
_Q_ADD_META = trustedSql("INSERT OR IGNORE INTO _cf_METADATA (key, value) VALUES (?, ?)")
_Q_SCHEMA = [
    trustedSql(
        "CREATE TABLE IF NOT EXISTS _cf_KV (key TEXT PRIMARY KEY, value BLOB) WITHOUT ROWID"
    ),
    trustedSql("CREATE TABLE IF NOT EXISTS _cf_METADATA (key INTEGER PRIMARY KEY, value BLOB)"),
    trustedSql(f"PRAGMA user_version = {SCHEMA_VERSION}"),
]
_Q_HAS_SCHEMA = trustedSql(
    "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ('_cf_KV', '_cf_METADATA')"
)

_listQueries: dict[tuple[bool, ...], str] = {}


def _listQuery(
    start: bool, startAfter: bool, end: bool, lower: bool, upper: bool, reverse: bool, limit: bool
) -> str:
    flags = (start, startAfter, end, lower, upper, reverse, limit)
    sql = _listQueries.get(flags)
    if sql is None:
        conditions = [
            cond
            for cond, on in (
                ("key >= ?", start),
                ("key > ?", startAfter),
                ("key < ?", end),
                ("key >= ?", lower),
                ("key < ?", upper),
            )
            if on
        ]
        sql = "SELECT key, value FROM _cf_KV"
        if conditions:
            sql += " WHERE " + " AND ".join(conditions)
        sql += " ORDER BY key DESC" if reverse else " ORDER BY key"
        if limit:
            sql += " LIMIT ?"
        sql = _listQueries[flags] = trustedSql(sql)
    return sql


class _Asleep:
    """Stands in for the engine of a store whose connection the backend closed (to stay within
    ``maxOpenDatabases``): the first use of the engine opens the database again. The store is
    held weakly, so the two make no reference cycle."""

    __slots__ = ("_store",)

    def __init__(self, store: "SqliteObjectStore") -> None:
        self._store = weakref.ref(store)

    def __getattr__(self, name: str) -> Any:
        store = self._store()
        if store is None:  # pragma: no cover - the engine outlived its store
            raise StorageClosedError("the storage of this object is closed")
        return getattr(store._wake(), name)


def _fileState(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


class SqliteObjectStore(BaseObjectStore):
    """The storage of one object, in its own SQLite database (whose connection the backend may
    close while the store is idle, and opens again on its next use)."""

    def __init__(
        self,
        backend: SqliteBackend,
        namespace: str,
        objectId: str,
        conn: sqlite3.Connection,
        engine: SqlEngine,
        path: str | None,
    ) -> None:
        limits = backend.limits
        cache = ValueCache(backend.valueCacheEntries, backend.valueCacheBytes, limits.maxValueDepth)
        super().__init__(namespace, objectId, limits, engine, cache)
        self._backend = backend
        self._conn: sqlite3.Connection | None = conn
        self.path = path
        # While asleep (connection closed by the backend): whether the database held nothing, and
        # the file's identity, size and time, to see whether something else wrote it meanwhile.
        self._asleepEmpty = False
        self._asleepFile: tuple[int, int, int] | None = None
        # For the database size limit: the size last measured (None: measure again) and the bytes
        # put since. SQLite's own limit (max_page_count) is the backstop, but hitting it makes
        # SQLite roll back the whole batch, so key-value writes are refused a little earlier.
        self._knownSize: int | None = None
        self._putSince = 0

    def _reattach(self, conn: sqlite3.Connection, engine: SqlEngine, changed: bool) -> None:
        """The backend opened this store's database again: use ``conn`` and ``engine``.
        ``changed``: the file was written by someone else while it was closed."""
        engine.onTransactionLost = self._transactionLost
        if changed:
            self._cache.changedEverything()
        self._conn = conn
        self._engine = engine
        self._knownSize = None

    def _reserve(self, growth: int) -> None:
        """Refuse a key-value write of about ``growth`` bytes that could fill the database."""
        limit = self.limits.maxDatabaseSize
        margin = 2 * growth + self._engine.pageSize
        if self._knownSize is None or self._knownSize + 2 * self._putSince + margin > limit:
            self._knownSize = self._engine.databaseSize()
            self._putSince = 0
            if self._knownSize + margin > limit:
                raise limitError(
                    f"the database is full: it holds {self._knownSize} bytes, and {growth} more "
                    "could not be stored",
                    "maxDatabaseSize",
                    limit,
                )
        self._putSince += growth

    def _execSql(self, query: str, bindings: tuple[Any, ...]) -> Any:
        cursor = super()._execSql(query, bindings)
        if self._pending:
            self._knownSize = None
        return cursor

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
        row = self._engine.trusted(_Q_GET, (key,)).fetchone()
        if row is None:
            if not noCache and type(key) is str:
                cache.loaded(key, n, None, MISSING)
            return MISSING
        data = row[0]
        self.bytesRead += len(data)
        value = decode(data, maxDepth=self.limits.maxValueDepth)
        if not noCache and type(key) is str:
            cache.loaded(key, n, data, value)
        return value

    def getMany(self, keys: Any, *, noCache: bool = False) -> dict[str, Any]:
        self._check()
        cache = self._cache
        found: dict[str, Any] = {}
        trusted = self._engine.trusted
        depth = self.limits.maxValueDepth
        for key in keyList(keys, self.limits):
            value = cache.get(key, UNKNOWN, not noCache)
            if value is UNKNOWN:
                row = trusted(_Q_GET, (key,)).fetchone()
                if row is None:
                    if not noCache:
                        cache.loaded(key, keyBytes(key), None, MISSING)
                    continue
                self.bytesRead += len(row[0])
                value = decode(row[0], maxDepth=depth)
                if not noCache:
                    cache.loaded(key, keyBytes(key), row[0], value)
            if value is not MISSING:
                found[key] = value
        return {key: found[key] for key in sorted(found)}

    def put(self, key: str, value: Any, *, noCache: bool = False) -> None:
        if self._closed:
            self._check()
        n = keySize(key, self.limits)
        data = encodeValue(value, n, self.limits)
        self._reserve(n + len(data))
        self.bytesWritten += n + len(data)
        engine = self._engine
        engine.begin()
        engine.trusted(_Q_PUT, (key, data))
        self._pending = True
        self._cache.put(key if type(key) is str else str(key), n, data, value, not noCache)

    def putMany(self, entries: Any, *, noCache: bool = False) -> None:
        self._check()
        rows = entryRows(entries, self.limits)
        if not rows:
            return
        growth = sum(n + len(data) for _, n, data, _ in rows)
        self._reserve(growth)
        self.bytesWritten += growth
        params = [(key, data) for key, _, data, _ in rows]
        self._engine.atomically(lambda: self._engine.trustedMany(_Q_PUT, params))
        self._pending = True
        cache = self._cache
        for key, n, data, value in rows:
            cache.put(key, n, data, value, not noCache)

    def delete(self, key: str, *, noCache: bool = False) -> bool:
        if self._closed:
            self._check()
        n = keySize(key, self.limits)
        engine = self._engine
        engine.begin()
        deleted = engine.trusted(_Q_DELETE, (key,)).rowcount > 0
        if deleted:
            self._pending = True
        self._cache.deleted(key if type(key) is str else str(key), n, not noCache)
        return deleted

    def deleteMany(self, keys: Any, *, noCache: bool = False) -> int:
        self._check()
        keys = keyList(keys, self.limits)
        if not keys:
            return 0
        trusted = self._engine.trusted

        def run() -> int:
            return sum(trusted(_Q_DELETE, (key,)).rowcount for key in keys)

        count: int = self._engine.atomically(run)
        if count:
            self._pending = True
        cache = self._cache
        for key in keys:
            cache.deleted(key, keyBytes(key), not noCache)
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
        params: list[Any] = []
        upper = None
        for value in (start, startAfter, end):
            if value is not None:
                params.append(value)
        if prefix:
            params.append(prefix)
            upper = prefixEnd(prefix)
            if upper is not None:
                params.append(upper)
        if limit is not None:
            params.append(limit)
        sql = _listQuery(
            start is not None,
            startAfter is not None,
            end is not None,
            bool(prefix),
            upper is not None,
            reverse,
            limit is not None,
        )
        depth = self.limits.maxValueDepth
        rows = self._engine.trusted(sql, params).fetchall()
        self.bytesRead += sum(len(data) for _, data in rows)
        return {key: decode(data, maxDepth=depth) for key, data in rows}

    def deleteAll(self) -> None:
        self._check()
        engine = self._engine

        def run() -> None:
            engine.trusted(_Q_DELETE_ALL)
            engine.trusted(_Q_DELETE_META, (_ALARM_KEY,))
            engine.dropUserObjects()

        engine.atomically(run)
        self._pending = True
        self._cache.changedEverything()

    # -- alarm --------------------------------------------------------------------------------

    def getAlarm(self) -> int | None:
        self._check()
        row = self._engine.trusted(_Q_GET_META, (_ALARM_KEY,)).fetchone()
        return None if row is None else int(row[0])

    def setAlarm(self, scheduledTime: int | float) -> None:
        self._check()
        ms = alarmTime(scheduledTime)
        self._engine.begin()
        self._engine.trusted(_Q_PUT_META, (_ALARM_KEY, ms))
        self._pending = True

    def deleteAlarm(self) -> None:
        self._check()
        self._engine.begin()
        self._engine.trusted(_Q_DELETE_META, (_ALARM_KEY,))
        self._pending = True

    # -- the object's name ---------------------------------------------------------------------

    def storedName(self) -> str | None:
        self._check()
        row = self._engine.trusted(_Q_GET_META, (_NAME_KEY,)).fetchone()
        return None if row is None else str(row[0])

    def recordName(self, name: str) -> None:
        self._check()
        self._engine.begin()
        self._engine.trusted(_Q_ADD_META, (_NAME_KEY, name))
        self._pending = True

    def backup(self, path: str) -> None:
        """Copy the committed database into a new file at ``path`` (SQLite's online backup API,
        through this store's own connection, so the object stays open and locked). Refused while
        writes are pending: commit first."""
        self._check()
        if self._pending or self._savepoints:
            raise InvalidArgumentError(
                f"the storage of {self.namespace}/{self.objectId} has uncommitted writes; "
                "back it up after they commit"
            )
        self._wakeUp()
        assert self._conn is not None
        target = sqlite3.connect(path, isolation_level=None)
        try:
            target.execute("PRAGMA synchronous = FULL")
            self._conn.backup(target)
        finally:
            target.close()

    def runOwnStatement(self, sql: str) -> sqlite3.Cursor:
        """Run one of dotwist's own statements (a pragma, a checkpoint) on this store's
        connection, between transactions; never user SQL (the authorizer lets it through)."""
        self._check()
        self._wakeUp()
        return self._engine.trusted(trustedSql(sql))

    def serializeDatabase(self) -> bytes:
        """The committed database as one image (SQLite's ``serialize()``); refused while writes
        are pending."""
        self._check()
        if self._pending or self._savepoints:
            raise InvalidArgumentError(
                f"the storage of {self.namespace}/{self.objectId} has uncommitted writes"
            )
        self._wakeUp()
        return self._engine.serialize()

    # -- lifetime -----------------------------------------------------------------------------

    def _isEmpty(self) -> bool:
        return _isEmpty(self._engine)

    def _closeResources(self) -> None:
        self._backend._closed(self)

    # -- asleep: the backend closed the connection ------------------------------------------------

    @property
    def asleep(self) -> bool:
        """The backend closed this store's connection; its next operation opens it again."""
        return self._conn is None and not self._closed

    def _idle(self) -> bool:
        """Nothing would be lost by closing the connection now: no uncommitted write, savepoint
        or transaction (a transaction only read in, ended by a rollback, loses nothing)."""
        return not self._pending and not self._savepoints

    def _wakeUp(self) -> None:
        if self._conn is None:
            self._check()
            self._wake()

    def _wake(self) -> SqlEngine:
        """Open the database again (the first use of the engine while asleep comes here)."""
        return self._backend._reopen(self)

    def commit(self) -> None:
        if self._conn is None and not self._closed:
            return  # asleep: nothing uncommitted
        super().commit()
        self._backend._used(self)

    def rollback(self) -> None:
        if self._conn is None and not self._closed:
            return  # asleep: nothing uncommitted
        super().rollback()

    def close(self) -> None:
        if self._conn is None and not self._closed:
            self._endSavepoints(0)
            self._pending = False
            self._markClosed()
            self._backend._closed(self)
            return
        super().close()


class SqliteBackend(StorageBackend):
    """One SQLite database per object under ``dataDir``; see the module docstring.

    ``dataDir=None`` (or :meth:`inMemory`) keeps each object in a ``:memory:`` database for the
    backend's lifetime instead: same code, no files, nothing durable (for tests).

    Options: ``shardLevels`` adds that many directory levels of two hex digits of the object id
    between the namespace and the file (0, workerd's flat layout, by default); ``cacheSizeKiB`` is
    SQLite's page cache per open object (SQLite's default, 2000 KiB, if None);
    ``journalSizeLimit`` caps the bytes a WAL keeps after a checkpoint; ``deleteEmpty`` removes the
    database file of an object that holds nothing (no key, no alarm, no table) when it is closed,
    so that objects that were only read, or emptied by ``deleteAll()``, leave no file behind;
    ``valueCacheEntries`` and ``valueCacheBytes`` bound each open object's cache of recently used
    key-value pairs (see :mod:`dotwist.storage._cache`; ``valueCacheEntries=0`` turns it off);
    ``maxOpenDatabases`` bounds the SQLite connections open at once (see the module docstring;
    2,048 by default, and never more than a quarter of the process's open-file limit, read again
    at each opening, so that databases use at most half the descriptors and sockets keep the rest).
    """

    #: The class of the object stores ``open`` makes (a subclass may ship commits elsewhere).
    storeClass: type[SqliteObjectStore] = SqliteObjectStore
    #: Statements run on each database connection after dotwist's own settings (a subclass's).
    connectionPragmas: tuple[str, ...] = ()

    def __init__(
        self,
        dataDir: str | os.PathLike[str] | None,
        limits: StorageLimits | None = None,
        *,
        shardLevels: int = 0,
        cacheSizeKiB: int | None = None,
        journalSizeLimit: int = 4 * 1024 * 1024,
        deleteEmpty: bool = True,
        valueCacheEntries: int = DEFAULT_CACHE_ENTRIES,
        valueCacheBytes: int = DEFAULT_CACHE_BYTES,
        maxOpenDatabases: int = DEFAULT_MAX_OPEN_DATABASES,
    ) -> None:
        self.dataDir = None if dataDir is None else os.fspath(dataDir)
        self.limits = limits if limits is not None else StorageLimits()
        if type(shardLevels) is not int or not 0 <= shardLevels <= 4:
            raise InvalidArgumentError(f"shardLevels must be an int from 0 to 4, not {shardLevels!r}")
        self.shardLevels = shardLevels
        self.cacheSizeKiB = cacheSizeKiB
        self.journalSizeLimit = journalSizeLimit
        self.deleteEmpty = deleteEmpty
        self.valueCacheEntries, self.valueCacheBytes = cacheBounds(valueCacheEntries, valueCacheBytes)
        self._open: dict[tuple[str, str], SqliteObjectStore] = {}
        self._parked: dict[tuple[str, str], tuple[sqlite3.Connection, SqlEngine]] = {}
        self._isClosed = False
        if type(maxOpenDatabases) is not int or maxOpenDatabases < 1:
            raise InvalidArgumentError(
                f"maxOpenDatabases must be a positive int, not {maxOpenDatabases!r}"
            )
        self.maxOpenDatabases = maxOpenDatabases
        # Stores of database files with an open connection, least recently used first.
        self._awake: OrderedDict[tuple[str, str], SqliteObjectStore] = OrderedDict()
        #: Connections closed to stay within the bound, and opened again on demand.
        self.closedIdle = 0
        self.reopened = 0

    @classmethod
    def inMemory(cls, limits: StorageLimits | None = None, **options: Any) -> SqliteBackend:
        """A backend whose objects live in ``:memory:`` databases (kept until the backend closes)."""
        return cls(None, limits, **options)

    def pathFor(self, namespace: str, objectId: str) -> str | None:
        """The database file of an object (None for an in-memory backend)."""
        checkNamespace(namespace)
        checkObjectId(objectId)
        if self.dataDir is None:
            return None
        shards = [objectId[2 * i : 2 * i + 2] for i in range(self.shardLevels)]
        return os.path.join(self.dataDir, namespace, *shards, objectId + ".sqlite")

    @property
    def openObjectCount(self) -> int:
        return len(self._open)

    @property
    def openDatabaseCount(self) -> int:
        """Database files with an open connection (at most ``openDatabaseBound``)."""
        return len(self._awake)

    @property
    def openDatabaseBound(self) -> int:
        """``maxOpenDatabases``, or a quarter of the process's open-file limit now if that is
        smaller."""
        return min(self.maxOpenDatabases, descriptorShare())

    def open(self, namespace: str, objectId: str) -> SqliteObjectStore:
        if self._isClosed:
            raise StorageClosedError("the storage backend is closed")
        path = self.pathFor(namespace, objectId)
        key = (namespace, objectId)
        if key in self._open:
            raise ObjectOpenError(
                f"the storage of {namespace}/{objectId} is already open", path=path
            )
        if path is None:
            parked = self._parked.pop(key, None)
            if parked is None:
                conn = sqlite3.connect(":memory:", isolation_level=None, cached_statements=256)
                parked = (conn, self._setUp(conn, namespace, objectId, None))
            conn, engine = parked
        else:
            self._makeDirs(os.path.dirname(path))
            self._makeRoom(path)
            conn = self._connect(path, namespace, objectId)
            try:
                engine = self._setUp(conn, namespace, objectId, path)
            except BaseException:
                conn.close()
                raise
        store = self.storeClass(self, namespace, objectId, conn, engine, path)
        self._open[key] = store
        if path is not None:
            self._awake[key] = store
        return store

    # -- the bound on open databases ------------------------------------------------------------

    def _used(self, store: SqliteObjectStore) -> None:
        """``store`` committed: it is the most recently used."""
        key = (store.namespace, store.objectId)
        if key in self._awake:
            self._awake.move_to_end(key)

    def _makeRoom(self, path: str) -> None:
        """Before opening a connection: if the bound is reached, close the connection of the
        least recently used idle store; if none is idle, refuse."""
        bound = self.openDatabaseBound
        awake = self._awake
        if len(awake) < bound:
            return
        excess = len(awake) - bound + 1
        chosen = []
        for store in awake.values():
            if store._idle():
                chosen.append(store)
                if len(chosen) == excess:
                    break
        for store in chosen:
            self._sleep(store)
        if len(awake) >= bound:
            raise StorageOverloadedError(
                f"Durable Object storage is overloaded: {len(awake)} databases are open with "
                f"writes not yet committed, the most this process keeps open ({bound}: "
                "Limits.maxOpenDatabases, at most a quarter of the open-file limit). "
                "Please back off and try again later.",
                path=path,
            )

    def _sleep(self, store: SqliteObjectStore) -> None:
        """Close an idle store's connection; the store stays open (``_reopen``)."""
        key = (store.namespace, store.objectId)
        del self._awake[key]
        conn = store._conn
        assert conn is not None and store.path is not None
        empty = False
        try:
            store._engine.rollback()  # a transaction that only read
            if self.deleteEmpty:
                empty = store._isEmpty()
        except Exception:
            empty = False
        conn.close()
        store._conn = None
        store._engine = cast(SqlEngine, _Asleep(store))
        store._asleepEmpty = empty
        store._asleepFile = _fileState(store.path)
        self.closedIdle += 1

    def _reopen(self, store: SqliteObjectStore) -> SqlEngine:
        if self._isClosed or store._closed:
            raise StorageClosedError(f"the storage of {store.namespace}/{store.objectId} is closed")
        path = store.path
        assert path is not None and store._conn is None
        self._makeRoom(path)
        changed = _fileState(path) != store._asleepFile
        conn = self._connect(path, store.namespace, store.objectId)
        try:
            engine = self._setUp(conn, store.namespace, store.objectId, path)
        except BaseException:
            conn.close()
            raise
        store._reattach(conn, engine, changed)
        self._awake[(store.namespace, store.objectId)] = store
        self.reopened += 1
        return engine

    def _makeDirs(self, directory: str) -> None:
        if os.path.isdir(directory):
            return
        assert self.dataDir is not None
        # Create level by level, fsyncing each parent so the new entries survive power loss.
        missing = []
        d = directory
        while not os.path.isdir(d):
            missing.append(d)
            parent = os.path.dirname(d)
            if parent == d:
                break
            d = parent
        for d in reversed(missing):
            try:
                os.mkdir(d)
            except FileExistsError:
                continue
            fsyncDirectory(os.path.dirname(d))

    def _connect(self, path: str, namespace: str, objectId: str) -> sqlite3.Connection:
        try:
            return sqlite3.connect(path, isolation_level=None, timeout=0, cached_statements=256)
        except sqlite3.Error as e:
            _raiseIfOutOfDescriptors(e, namespace, objectId, path)
            raise ObjectOpenError(
                f"cannot open the storage of {namespace}/{objectId} ({path}): {sqliteMessage(e)}",
                path=path,
            ) from None

    def _setUp(
        self, conn: sqlite3.Connection, namespace: str, objectId: str, path: str | None
    ) -> SqlEngine:
        # Every statement carries the trusted prefix: sqlite3 caches prepared statements by text, and
        # a user statement that hit one of these in the cache would skip the authorizer.
        def run(sql: str) -> sqlite3.Cursor:
            return conn.execute(trustedSql(sql))

        try:
            if path is not None:
                run("PRAGMA locking_mode = EXCLUSIVE")
                mode = run("PRAGMA journal_mode = WAL").fetchone()[0]
                if mode != "wal":
                    raise ObjectOpenError(
                        f"cannot open the storage of {namespace}/{objectId} ({path}): "
                        f"WAL mode is unavailable (journal_mode is {mode})",
                        path=path,
                    )
                run("PRAGMA synchronous = FULL")
                run(f"PRAGMA journal_size_limit = {int(self.journalSizeLimit)}")
                for pragma in self.connectionPragmas:
                    run(pragma)
            run("PRAGMA foreign_keys = ON")
            run("PRAGMA trusted_schema = OFF")
            if self.cacheSizeKiB is not None:
                run(f"PRAGMA cache_size = {-int(self.cacheSizeKiB)}")
            version = run("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise ObjectOpenError(
                    f"cannot open the storage of {namespace}/{objectId} ({path}): it was written "
                    f"by a newer dotwist (schema version {version}, this one knows "
                    f"{SCHEMA_VERSION})",
                    path=path,
                )
            pageSize = run("PRAGMA page_size").fetchone()[0]
            run(f"PRAGMA max_page_count = {max(1, self.limits.maxDatabaseSize // pageSize)}")
            if conn.execute(_Q_HAS_SCHEMA).fetchone()[0] != 2:
                run("BEGIN")
                for statement in _Q_SCHEMA:
                    conn.execute(statement)
                run("COMMIT")
            return SqlEngine(conn, self.limits, internalNames=_INTERNAL)
        except sqlite3.Error as e:
            _raiseIfOutOfDescriptors(e, namespace, objectId, path)
            what = "in use elsewhere" if getattr(e, "sqlite_errorcode", None) == sqlite3.SQLITE_BUSY else "unreadable or corrupt"
            raise ObjectOpenError(
                f"cannot open the storage of {namespace}/{objectId} ({path or ':memory:'}): "
                f"the database is {what}: {sqliteMessage(e)}",
                path=path,
            ) from None

    def _closed(self, store: SqliteObjectStore) -> None:
        key = (store.namespace, store.objectId)
        if self._open.get(key) is store:
            del self._open[key]
        if self._awake.get(key) is store:
            del self._awake[key]
        conn = store._conn
        if conn is None:  # asleep: the connection is closed already
            if store.path is not None and self.deleteEmpty and store._asleepEmpty:
                if _fileState(store.path) == store._asleepFile:
                    _unlinkDatabase(store.path)
            return
        # The engine refers back to the store (onTransactionLost); the store lets go of it.
        engine, store._engine = store._engine, cast(SqlEngine, _CLOSED)
        engine.onTransactionLost = None
        if store.path is None:
            if not self._isClosed:
                self._parked[key] = (conn, engine)
                return
            conn.close()
            return
        empty = False
        if self.deleteEmpty:
            try:
                empty = _isEmpty(engine)
            except Exception:
                empty = False
        store._conn = None
        conn.close()
        if empty:
            _unlinkDatabase(store.path)

    def close(self) -> None:
        """Close every open object (discarding uncommitted writes), then the backend."""
        if self._isClosed:
            return
        self._isClosed = True
        for store in list(self._open.values()):
            store.close()
        for conn, _ in self._parked.values():
            conn.close()
        self._parked.clear()

    def __repr__(self) -> str:
        where = self.dataDir if self.dataDir is not None else ":memory:"
        return f"<SqliteBackend {where} open={len(self._open)}>"


def _isEmpty(engine: SqlEngine) -> bool:
    return not (
        engine.trusted(_Q_ANY_KEY).fetchone()[0]
        or engine.trusted(_Q_GET_META, (_ALARM_KEY,)).fetchone() is not None
        or engine.hasUserObjects()
    )


def _unlinkDatabase(path: str) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        try:
            os.unlink(path + suffix)
        except FileNotFoundError:
            pass


class _Closed:
    """The engine of a closed store: any use says it is closed."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        raise StorageClosedError("the storage of this object is closed")


_CLOSED = _Closed()


def descriptorShare() -> int:
    """A quarter of the process's soft open-file limit, at least 1: the most databases (two
    descriptors each) that leave half of the descriptors to sockets and everything else."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, OSError, ValueError):  # pragma: no cover - not Unix
        return DEFAULT_MAX_OPEN_DATABASES
    if soft == resource.RLIM_INFINITY or soft < 0:
        return 1 << 30
    return max(1, soft // 4)


def _outOfDescriptors() -> bool:
    """Whether the process has no file descriptor left (SQLite reports that as SQLITE_CANTOPEN,
    "unable to open database file", without the errno)."""
    try:
        fd = os.open(os.devnull, os.O_RDONLY)
    except OSError as e:
        return e.errno in (errno.EMFILE, errno.ENFILE)
    os.close(fd)
    return False


def _raiseIfOutOfDescriptors(e: sqlite3.Error, namespace: str, objectId: str, path: str | None) -> None:
    if getattr(e, "sqlite_errorcode", None) == sqlite3.SQLITE_CANTOPEN and _outOfDescriptors():
        raise StorageOverloadedError(
            f"Durable Object storage is overloaded: cannot open the storage of "
            f"{namespace}/{objectId}: the process has no file descriptor left (its open-file "
            "limit is reached: raise it with ulimit -n, or lower Limits.maxOpenDatabases). "
            "Please back off and try again later.",
            path=path,
        ) from None



