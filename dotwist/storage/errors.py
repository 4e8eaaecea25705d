"""Exceptions raised by the storage layer.

Every exception derives from :class:`StorageError`. Where Cloudflare's runtime throws a JavaScript
``RangeError`` (a limit) or ``TypeError`` (a wrong type), the matching class here also derives from
Python's ``ValueError`` or ``TypeError``, so that code written against either reads the same.

An operation that raises any of these leaves the stored data exactly as it was before the call
(except :class:`TransactionAbortedError`, which says that SQLite itself discarded the uncommitted
batch, and :class:`CommitError`).
"""

from __future__ import annotations

from ..errors import DurableObjectError, RangeError  # a ValueError, like Cloudflare's RangeError

__all__ = [
    "CommitError",
    "CorruptValueError",
    "InvalidArgumentError",
    "InvalidKeyError",
    "InvalidValueError",
    "ObjectOpenError",
    "SqlError",
    "SqlTimeLimitAbortedError",
    "SqlTimeLimitError",
    "StorageClosedError",
    "StorageError",
    "StorageLimitError",
    "StorageOverloadedError",
    "TransactionAbortedError",
]


class StorageError(Exception):
    """Base class of every error raised by ``dotwist.storage``."""


class StorageLimitError(StorageError, RangeError):
    """A limit of :class:`~dotwist.storage.StorageLimits` was exceeded (Cloudflare's ``RangeError``).

    ``limit`` is the name of the :class:`~dotwist.storage.StorageLimits` field and ``value`` its
    configured value; the message says both.
    """

    def __init__(self, message: str, *, limit: str, value: int) -> None:
        super().__init__(message)
        self.limit = limit
        self.value = value


class InvalidValueError(StorageError, TypeError):
    """A value cannot be encoded: unsupported type, a reference cycle, or nested too deep."""


class CorruptValueError(StorageError, ValueError):
    """Bytes given to :func:`~dotwist.storage.codec.decode` are not a valid encoded value."""


class InvalidKeyError(StorageError, TypeError):
    """A key-value key is not a ``str`` (or is not valid Unicode: it contains a lone surrogate)."""


class InvalidArgumentError(StorageError, ValueError):
    """An argument is malformed (list options, an alarm time, a namespace, an object id, ...)."""


class SqlError(StorageError):
    """A SQL statement failed.

    The message is SQLite's, followed by the SQLite result code name in Cloudflare's style
    (``"no such table: foo: SQLITE_ERROR"``), or Cloudflare's own message where it has one (for
    example the one refusing ``BEGIN TRANSACTION``). ``code`` is the SQLite result code name
    (``"SQLITE_ERROR"``, ``"SQLITE_CONSTRAINT_UNIQUE"``, ``"SQLITE_AUTH"``, ...) or ``None`` when
    the error was detected before reaching SQLite.
    """

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class TransactionAbortedError(SqlError):
    """SQLite rolled back the whole uncommitted batch (for example ``INSERT OR ROLLBACK``).

    Every write since the last ``commit()`` is gone, key-value writes included, and every open
    savepoint is invalid. The store stays usable.
    """


class SqlTimeLimitError(SqlError):
    """A ``sql.exec`` ran longer than ``StorageLimits.maxSqlQueryDurationMs`` and SQLite interrupted
    it (``code`` is ``"SQLITE_INTERRUPT"``).

    The call is undone as a whole and the store stays usable. A query that only reads leaves
    everything else as it was; one that writes raises :class:`SqlTimeLimitAbortedError` instead,
    because SQLite then rolls back the whole uncommitted batch. ``limit`` and ``value`` name the
    limit and its configured value, as :class:`StorageLimitError` does.
    """

    def __init__(self, message: str, *, limit: str, value: int) -> None:
        super().__init__(message, code="SQLITE_INTERRUPT")
        self.limit = limit
        self.value = value


class SqlTimeLimitAbortedError(SqlTimeLimitError, TransactionAbortedError):
    """A ``sql.exec`` that writes ran past its time limit: SQLite interrupted it and rolled back
    the whole uncommitted batch (SQLite does that for any interrupted write), so every write since
    the last commit is gone, key-value writes included (see :class:`TransactionAbortedError`)."""


class CommitError(StorageError):
    """``commit()`` failed (disk full, I/O error). The uncommitted batch was discarded.

    The runtime should treat this like Cloudflare treats a failed write: reset the object.
    """


class StorageClosedError(StorageError):
    """The object store (or its backend) was closed."""


class ObjectOpenError(StorageError):
    """An object's storage cannot be opened: its database is corrupt, unreadable, or in use.

    Only that object is affected; others open normally. ``path`` is the database file (or ``None``
    for in-memory backends).
    """

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class StorageOverloadedError(ObjectOpenError, DurableObjectError):
    """No database can be opened now: as many are open as the backend may keep open (or the
    process is out of file descriptors), and none of them can be closed, because each has writes
    waiting for their commit. Nothing was lost; a later attempt can succeed. A
    ``DurableObjectError`` with ``overloaded`` set, like Cloudflare's overload errors, so that a
    request that fails with it gets 503."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        ObjectOpenError.__init__(self, message, path=path)
        DurableObjectError.__init__(self, message, overloaded=True)
