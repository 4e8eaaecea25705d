"""dotwist's storage layer: the synchronous engine beneath ``ctx.storage``.

This package stores what Cloudflare's SQLite-backed Durable Objects store: key-value pairs, an
alarm time, and a private SQL database, per object. It is synchronous, does no networking, has no
Twisted dependency, and is called from the reactor thread only; the runtime builds the asynchronous
Cloudflare API on top (``await ctx.storage.get(...)``, input and output gates, write coalescing)
by calling :meth:`ObjectStore.commit` at the end of each turn.

Interface (:mod:`dotwist.storage.interface`)
    A :class:`StorageBackend` opens one :class:`ObjectStore` per live object. The store has the
    key-value API (``get``/``getMany``/``put``/``putMany``/``delete``/``deleteMany``/``list``/
    ``deleteAll``), the alarm (``getAlarm``/``setAlarm``/``deleteAlarm``), the SQL API (``sql``:
    ``exec`` returning a :class:`SqlCursor`, ``databaseSize``), and transactions: an implicit
    write batch made durable by ``commit()`` or discarded by ``rollback()``, with nested
    ``savepoint()``/``release()``/``rollbackTo()`` for ``transaction()``/``transactionSync()``.
    :class:`StorageLimits` holds every limit (Cloudflare's numbers by default); exceeding one
    raises :class:`StorageLimitError`, naming the limit and its value, and changes nothing.

Backends
    :class:`SqliteBackend` (durable), :class:`MemoryBackend` (pure Python key-value, SQL in
    ``:memory:``), and ``SqliteBackend.inMemory()`` (the SQLite code on ``:memory:`` databases).
    All pass one contract test suite (``tests/storage/test_contract.py``); a networked backend
    (PostgreSQL, say) would implement the same two classes and join that suite as one more
    parameter. The interface has no SQLite-isms except the SQL API, which is SQLite by definition.

Layout: one SQLite database per object
    ``<dataDir>/<namespace>/<objectId>.sqlite``, like workerd: directories are created on first
    use; each database holds the object's key-value pairs (table ``_cf_KV``, ``WITHOUT ROWID``,
    values encoded by :mod:`dotwist.storage.codec`), its alarm (``_cf_METADATA``) and its SQL
    tables, so one SQLite transaction commits all three atomically, and deleting an object is
    deleting a file. Objects never share a database, so they never contend for a lock, a
    corrupt file breaks only its own object (opening it raises :class:`ObjectOpenError`), and an
    object can be moved to another machine by moving one file.

    Durability: WAL mode with ``synchronous=FULL``; ``commit()`` returns after the WAL is fsynced,
    so a committed batch survives ``kill -9`` and power loss, and an uncommitted one vanishes
    entirely. New directories are fsynced into their parent. ``locking_mode=EXCLUSIVE`` locks the
    file for as long as the object is open, so a second process (or backend) cannot open the same
    object, and no ``-shm`` file is needed.

    Scaling to a million objects:

    * Files: one per object at rest (plus a ``-wal`` while it is open). Objects that hold nothing
      when closed (never written, or emptied by ``deleteAll()``) have their file removed, so
      reads of non-existent objects leave nothing behind. A million files in one directory works
      on ext4/XFS (hashed directory indexes) but makes listing and backups slow; pass
      ``SqliteBackend(..., shardLevels=1)`` (or 2) to fan out into 256 (or 65,536)
      subdirectories named by the id's leading hex digits: ``<namespace>/ab/<id>.sqlite``. Ids
      are uniformly distributed, so the fan-out is even. (Changing ``shardLevels`` of an existing
      data directory needs the files moved.)
    * Open connections are bounded by *live* objects, not stored ones: a store holds one
      connection (two file descriptors: the database and its WAL) from ``open`` to ``close``.
      The runtime must close idle objects (as Cloudflare evicts them) and size ``RLIMIT_NOFILE``
      for about twice the number of live objects.
      Memory per open object is SQLite's page cache, up to ``cacheSizeKiB`` (2 MB by default; it
      only grows with use).
    * WAL checkpoints: SQLite checkpoints a WAL into its database whenever the WAL passes 1000
      pages (about 4 MB) at a commit, and on close, after which the ``-wal`` file is deleted;
      ``journalSizeLimit`` (4 MiB) truncates an oversized WAL after a checkpoint. Each object
      checkpoints its own small WAL, so there is no global checkpoint stall; the cost is one
      fsync per commit per object (group commit across objects is not possible with separate
      files). Commit latency is therefore the disk's fsync latency.

Values: :mod:`dotwist.storage.codec`
    A compact, self-describing, versioned binary format (never pickle; decoding runs no code), used
    for stored values, RPC arguments and WebSocket attachments. Supported types: ``None``,
    ``bool``, ``int`` (any size), ``float`` (nan, inf and -0.0 exact), ``str``, ``bytes``
    (``bytearray`` and ``memoryview`` stored as ``bytes``), ``list``, ``tuple`` (stays a tuple),
    ``dict`` (keys: any supported hashable value), ``set``, ``frozenset``, ``datetime.datetime``,
    ``datetime.date``, ``datetime.time`` (naive or with a fixed-offset ``datetime.timezone`` or a
    ``zoneinfo.ZoneInfo``; microseconds and ``fold`` exact), ``datetime.timedelta``,
    ``decimal.Decimal``, ``uuid.UUID``; instances of subclasses of these are stored as the base
    type. Reference cycles, unsupported types (with their place in the value) and nesting deeper
    than ``maxValueDepth`` (100) are refused at encode time with :class:`InvalidValueError`.
"""

from __future__ import annotations

from .codec import decode, encode, encodedSize
from .errors import (
    CommitError,
    CorruptValueError,
    InvalidArgumentError,
    InvalidKeyError,
    InvalidValueError,
    ObjectOpenError,
    StorageOverloadedError,
    SqlError,
    SqlTimeLimitAbortedError,
    SqlTimeLimitError,
    StorageClosedError,
    StorageError,
    StorageLimitError,
    TransactionAbortedError,
)
from .interface import (
    MISSING,
    Missing,
    ObjectStore,
    Savepoint,
    SqlCursor,
    SqlRawIterator,
    SqlDatabase,
    SqlValue,
    StorageBackend,
)
from .limits import StorageLimits
from .memory import MemoryBackend, MemoryObjectStore
from .sqlite import SqliteBackend, SqliteObjectStore

__all__ = [
    "MISSING",
    "CommitError",
    "CorruptValueError",
    "InvalidArgumentError",
    "InvalidKeyError",
    "InvalidValueError",
    "MemoryBackend",
    "MemoryObjectStore",
    "Missing",
    "ObjectOpenError",
    "StorageOverloadedError",
    "ObjectStore",
    "Savepoint",
    "SqlCursor",
    "SqlError",
    "SqlRawIterator",
    "SqlDatabase",
    "SqlTimeLimitAbortedError",
    "SqlTimeLimitError",
    "SqlValue",
    "SqliteBackend",
    "SqliteObjectStore",
    "StorageBackend",
    "StorageClosedError",
    "StorageError",
    "StorageLimitError",
    "StorageLimits",
    "TransactionAbortedError",
    "decode",
    "encode",
    "encodedSize",
]
