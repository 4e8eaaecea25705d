"""The synchronous storage interface beneath ``ctx.storage``.

Backends implement :class:`StorageBackend`, which opens one :class:`ObjectStore` per live Durable
Object. Everything here is synchronous, does no networking and is called from one thread (the
reactor's); the asynchronous Cloudflare-style API (input/output gates, write coalescing, caching)
is built on top by the runtime.

Names that mirror Cloudflare's API keep its camelCase spelling.

Transactions
    An object store always has an implicit, open write batch. Every write (key-value, alarm, SQL)
    joins it and is visible to later reads at once. :meth:`ObjectStore.commit` makes the batch
    durable and returns only once it is (a crash after ``commit()`` returns cannot lose it; a crash
    before loses the whole batch, never part of it). :meth:`ObjectStore.rollback` discards the
    batch. The runtime commits at the end of each turn, which gives Cloudflare's automatic write
    coalescing: writes with no ``await`` between them commit atomically.

    Savepoints nest inside the batch, for ``storage.transaction()`` / ``transactionSync()``:
    :meth:`ObjectStore.savepoint` returns a token; :meth:`ObjectStore.release` keeps what was done
    since (it stays part of the batch, still uncommitted) and :meth:`ObjectStore.rollbackTo`
    discards it. Both end the savepoint and every savepoint opened after it. ``commit()`` refuses to
    run while a savepoint is open; ``rollback()`` discards them all.

Sizes and limits come from a :class:`~dotwist.storage.StorageLimits`. A call that fails (a limit,
a bad argument, a SQL error) changes nothing.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Awaitable, Final, Optional, Union

__all__ = [
    "MISSING",
    "Missing",
    "ObjectStore",
    "Savepoint",
    "SqlCursor",
    "SqlRawIterator",
    "SqlDatabase",
    "SqlValue",
    "StorageBackend",
]

#: What SQL stores and returns: SQLite's five storage classes.
SqlValue = Union[None, int, float, str, bytes]


class Missing:
    """The type of :data:`MISSING`: what :meth:`ObjectStore.get` returns for an absent key.

    (``None`` is a value that can be stored, so absence needs its own sentinel; Cloudflare returns
    ``undefined``.)
    """

    _instance: Missing | None = None

    def __new__(cls) -> Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return "MISSING"


MISSING: Final = Missing()


class Savepoint:
    """An opaque token from :meth:`ObjectStore.savepoint`; valid until released or rolled back."""

    __slots__ = ("depth", "name", "store", "state", "active")

    def __init__(self, store: object, depth: int, name: str, state: Any) -> None:
        self.store = store
        self.depth = depth
        self.name = name
        self.state = state  # backend-private
        self.active = True

    def __repr__(self) -> str:
        return f"<Savepoint {self.name} depth={self.depth}{'' if self.active else ' (ended)'}>"


class SqlRawIterator(ABC):
    """What :meth:`SqlCursor.raw` returns: the cursor's remaining rows as lists of values."""

    @abstractmethod
    def __iter__(self) -> Iterator[list[SqlValue]]: ...

    @abstractmethod
    def __next__(self) -> list[SqlValue]:
        """The next row as a list; ``StopIteration`` at the end."""

    @abstractmethod
    def toArray(self) -> list[list[SqlValue]]:
        """The remaining rows, as lists."""


class SqlCursor(ABC):
    """The result of :meth:`SqlDatabase.exec`, like Cloudflare's ``SqlStorageCursor``.

    The statement has run to completion when ``exec`` returns (so a SQL error is raised by
    ``exec``, never while iterating); the cursor iterates over the buffered rows. Iterating the
    cursor, :meth:`raw`, :meth:`toArray` and :meth:`one` all consume the same rows.
    """

    #: Names of the result columns of the last statement (``[]`` if it returns none).
    columnNames: list[str]

    @abstractmethod
    def __iter__(self) -> Iterator[dict[str, SqlValue]]:
        """Iterate the remaining rows, each as a dict of column name to value."""

    @abstractmethod
    def __next__(self) -> dict[str, SqlValue]:
        """The next row as a dict; ``StopIteration`` at the end."""

    @abstractmethod
    def toArray(self) -> list[dict[str, SqlValue]]:
        """The remaining rows, as dicts."""

    @abstractmethod
    def one(self) -> dict[str, SqlValue]:
        """The only remaining row; :class:`SqlError` if there are none or several (Cloudflare's
        messages: "Expected exactly one result from SQL query, but got no results." / "... but got
        multiple results.")."""

    @abstractmethod
    def raw(self) -> SqlRawIterator:
        """An iterator over the remaining rows as lists of values (with a ``toArray()`` too)."""

    @property
    @abstractmethod
    def rowsRead(self) -> int:
        """Rows read by the statements of this ``exec`` (see the backend for what is counted)."""

    @property
    @abstractmethod
    def rowsWritten(self) -> int:
        """Rows written by the statements of this ``exec`` (see the backend)."""


class SqlDatabase(ABC):
    """An object's SQLite database, beneath ``ctx.storage.sql`` (``dotwist.durable_storage.SqlStorage``)."""

    @abstractmethod
    def exec(self, query: str, *bindings: Any) -> SqlCursor:
        """Run ``query``: one or more ``;``-separated statements.

        ``bindings`` bind the ``?`` parameters of the last statement, whose rows the cursor returns;
        earlier statements must have no parameters. The whole call is atomic: if a statement fails,
        :class:`SqlError` is raised and the statements before it in this call are undone.
        Transaction statements (``BEGIN``, ``COMMIT``, ``ROLLBACK``, ``SAVEPOINT``, ``RELEASE``),
        ``ATTACH``/``DETACH``, temporary tables and names starting with ``_cf_`` are refused.
        """

    @property
    @abstractmethod
    def databaseSize(self) -> int:
        """Size of the object's database in bytes (key-value data included)."""


class ObjectStore(ABC):
    """The storage of one live Durable Object. All methods are synchronous.

    Keys are ``str``; values are anything :mod:`dotwist.storage.codec` encodes, stored encoded (so
    mutating an object after ``put`` does not change what is stored, and every ``get`` returns a
    fresh copy; immutable values may come back as the same object). Keys order by their UTF-8
    bytes (code point order), as Cloudflare's.

    Caching: like Cloudflare's, a store keeps recently used key-value pairs in memory, so reading
    a recently used key does no I/O. The cache is invisible but for speed. ``noCache=True`` on a
    read or write is Cloudflare's hint of that name: a read with it does not add the key to the
    cache (a cached value is still returned, without refreshing its place in the LRU order), and a
    write with it drops the key from the cache instead of keeping the new value there.
    """

    namespace: str
    objectId: str

    # -- key-value --------------------------------------------------------------------------

    @abstractmethod
    def get(self, key: str, *, noCache: bool = False) -> Any:
        """The value stored under ``key``, or :data:`MISSING`."""

    @abstractmethod
    def getMany(self, keys: Iterable[str], *, noCache: bool = False) -> dict[str, Any]:
        """The stored values of ``keys`` (at most ``maxKeysPerCall``), ordered by key; absent
        keys are omitted."""

    @abstractmethod
    def put(self, key: str, value: Any, *, noCache: bool = False) -> None:
        """Store ``value`` under ``key``."""

    @abstractmethod
    def putMany(self, entries: Mapping[str, Any], *, noCache: bool = False) -> None:
        """Store every entry (at most ``maxKeysPerCall``); all or none."""

    @abstractmethod
    def delete(self, key: str, *, noCache: bool = False) -> bool:
        """Delete ``key``; return whether it existed."""

    @abstractmethod
    def deleteMany(self, keys: Iterable[str], *, noCache: bool = False) -> int:
        """Delete ``keys`` (at most ``maxKeysPerCall``); return how many existed."""

    @abstractmethod
    def list(
        self,
        start: str | None = None,
        startAfter: str | None = None,
        end: str | None = None,
        prefix: str | None = None,
        reverse: bool = False,
        limit: int | None = None,
    ) -> dict[str, Any]:
        """Key-value pairs in key order (descending if ``reverse``).

        ``start`` is inclusive, ``startAfter`` exclusive (the two cannot be combined), ``end``
        exclusive, ``prefix`` keeps keys that start with it, and ``limit`` (>= 1) caps the count,
        taken from the start of the order (the largest keys when ``reverse``). The options
        combine (intersection); ``reverse`` does not change what ``start``/``end`` mean.
        """

    @abstractmethod
    def deleteAll(self) -> None:
        """Delete every key, the alarm and every SQL table, view, index and trigger.

        Part of the current batch like any write (so ``rollback()`` undoes it).
        """

    # -- alarm ------------------------------------------------------------------------------

    @abstractmethod
    def getAlarm(self) -> int | None:
        """The alarm time in milliseconds since the epoch, or None."""

    @abstractmethod
    def setAlarm(self, scheduledTime: int | float) -> None:
        """Set the alarm (milliseconds since the epoch; a float is truncated)."""

    @abstractmethod
    def deleteAlarm(self) -> None:
        """Remove the alarm, if any."""

    # -- the object's name (operations: dotwist.names) ------------------------------------------

    def storedName(self) -> str | None:
        """The name recorded with the object's data by :meth:`recordName`, or None. Backends
        that keep no name return None."""
        return None

    def recordName(self, name: str) -> None:
        """Record the object's name (from ``idFromName``) in the current batch, so it commits with
        the object's data; invisible to ``list``, ``sql`` and ``deleteAll`` alike. Backends that
        keep no name ignore it."""

    # -- SQL --------------------------------------------------------------------------------

    @property
    @abstractmethod
    def sql(self) -> SqlDatabase:
        """The SQL API (``ctx.storage.sql``)."""

    # -- transactions -----------------------------------------------------------------------

    @abstractmethod
    def commit(self) -> Optional[Awaitable[None]]:
        """Make every write since the last commit durable; return once it is (None), or return an
        awaitable that completes once it is (a store whose commits are replicated elsewhere: the
        runtime holds the object's output until then, and a failure there counts as a failed
        commit). The embedded backends return None.

        Raises :class:`~dotwist.storage.errors.StorageError` if a savepoint is open, and
        :class:`~dotwist.storage.errors.CommitError` if the write fails (the batch is then
        discarded).
        """

    @abstractmethod
    def rollback(self) -> None:
        """Discard every write since the last commit, and every open savepoint."""

    @abstractmethod
    def savepoint(self) -> Savepoint:
        """Open a (nested) savepoint in the current batch."""

    @abstractmethod
    def release(self, savepoint: Savepoint) -> None:
        """End ``savepoint`` (and those opened after it), keeping their writes in the batch."""

    @abstractmethod
    def rollbackTo(self, savepoint: Savepoint) -> None:
        """Discard the writes since ``savepoint`` and end it (and those opened after it)."""

    @property
    @abstractmethod
    def hasPendingWrites(self) -> bool:
        """Whether anything was written since the last commit or rollback (SQL statements count
        when they can write: DDL and DML, whether or not rows changed)."""

    # -- lifetime ---------------------------------------------------------------------------

    @abstractmethod
    def close(self) -> None:
        """Release the object's resources. Uncommitted writes are discarded (commit first).

        Idempotent. Later calls raise :class:`~dotwist.storage.errors.StorageClosedError`; the
        object can be opened again from its backend.
        """

    @property
    @abstractmethod
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""


class StorageBackend(ABC):
    """Where objects' storage lives. One backend serves every namespace of a deployment."""

    @abstractmethod
    def open(self, namespace: str, objectId: str) -> ObjectStore:
        """Open the storage of object ``objectId`` (64 lowercase hex digits) of ``namespace``
        (a class name: letters, digits, ``_`` and ``-``, at most 128 characters).

        Raises :class:`~dotwist.storage.errors.InvalidArgumentError` for a malformed name or id,
        :class:`~dotwist.storage.errors.ObjectOpenError` if the object is already open or its data
        cannot be opened (only that object is affected).
        """

    @abstractmethod
    def close(self) -> None:
        """Close every open object store (discarding uncommitted writes) and the backend."""
