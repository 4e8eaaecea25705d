"""Storage limits: Cloudflare's numbers for SQLite-backed Durable Objects, changeable per deployment."""

from __future__ import annotations

from dataclasses import dataclass, fields

from .errors import InvalidArgumentError, StorageLimitError

__all__ = ["StorageLimits", "limitError"]


@dataclass(frozen=True)
class StorageLimits:
    """Every limit the storage layer enforces, with Cloudflare's defaults.

    Sources: https://developers.cloudflare.com/durable-objects/platform/limits/ (SQLite-backed
    Durable Objects) and workerd's source (``ActorStorageLimits``, ``SqliteDatabase::setupSecurity``).
    Sizes are in bytes; strings are measured in UTF-8.
    """

    #: Largest key. workerd's API layer checks 2048 bytes (``ActorStorageLimits::MAX_KEY_SIZE``);
    #: Cloudflare's limits page for SQLite-backed objects only states the combined 2 MB limit.
    maxKeySize: int = 2048
    #: Key and value combined ("Key and value combined cannot exceed 2 MB"); the value is measured
    #: encoded (see ``dotwist.storage.codec``).
    maxKeyValueSize: int = 2 * 1024 * 1024
    #: Keys in one ``getMany``/``putMany``/``deleteMany`` ("Supports up to 128 keys at a time").
    maxKeysPerCall: int = 128
    #: Largest string, BLOB or row in SQL ("Maximum string, BLOB or table row size: 2 MB").
    maxSqlRowSize: int = 2 * 1024 * 1024
    #: Length of the query given to one ``sql.exec`` ("Maximum SQL statement length: 100 KB").
    maxSqlStatementLength: int = 100_000
    #: Bound parameters of one ``sql.exec`` ("Maximum bound parameters per query: 100").
    maxSqlBindings: int = 100
    #: Columns of a table, an index or a result ("Maximum number of columns per table: 100").
    maxSqlColumns: int = 100
    #: Arguments of a SQL function call ("Maximum arguments per SQL function: 32").
    maxSqlFunctionArgs: int = 32
    #: Bytes of a LIKE or GLOB pattern ("Maximum characters (bytes) in a LIKE or GLOB pattern: 50").
    maxSqlLikePatternLength: int = 50
    #: Size of one object's database, key-value data included ("Storage per Durable Object: 10 GB").
    maxDatabaseSize: int = 10 * 1000**3
    #: Nesting depth of a stored value (not a Cloudflare limit; V8's is its stack). Guards recursion.
    maxValueDepth: int = 100
    #: Wall-clock milliseconds one ``sql.exec`` call (all its statements) may run before SQLite
    #: interrupts it (:class:`~dotwist.storage.errors.SqlTimeLimitError`). Cloudflare limits CPU
    #: per request: "CPU per request: 30 seconds (default) / configurable to 5 minutes" (Durable
    #: Objects limits page), and D1's "Maximum SQL query duration: 30 seconds". Here every object
    #: shares one thread, so for as long as a statement runs, every other object waits: that is
    #: why the clock is wall time, not CPU time. Lower it where a stall of that length matters more
    #: than a long query.
    maxSqlQueryDurationMs: int = 30_000

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if type(value) is not int or value < 1:
                raise InvalidArgumentError(
                    f"StorageLimits.{f.name} must be a positive int, not {value!r}"
                )


def limitError(what: str, limit: str, value: int) -> StorageLimitError:
    """Build the error for exceeding ``StorageLimits.<limit>`` (whose value is ``value``)."""
    return StorageLimitError(
        f"{what} (limit StorageLimits.{limit} = {value})", limit=limit, value=value
    )
