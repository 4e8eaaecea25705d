"""What the backends' object stores share: savepoint bookkeeping, SQL, lifetime."""

from __future__ import annotations

from typing import Any

from ._cache import ValueCache
from ._sql import Cursor, SqlEngine, SqlDatabaseImpl
from .errors import CommitError, InvalidArgumentError, StorageClosedError, StorageError
from .interface import ObjectStore, Savepoint, SqlDatabase
from .limits import StorageLimits


class BaseObjectStore(ObjectStore):
    """An object store whose SQL (and, for SQLite, everything) runs on a :class:`SqlEngine`.

    Subclasses keep the key-value data and implement the ``_kv*`` hooks so that savepoints,
    commit and rollback cover it too. They read through and write through ``self._cache`` (a
    :class:`~dotwist.storage._cache.ValueCache`), which this class keeps in step with every
    commit, rollback, savepoint and the store's closing.
    """

    def __init__(
        self,
        namespace: str,
        objectId: str,
        limits: StorageLimits,
        engine: SqlEngine,
        cache: ValueCache,
    ) -> None:
        self.namespace = namespace
        self.objectId = objectId
        self.limits = limits
        self._engine = engine
        engine.onTransactionLost = self._transactionLost
        self._savepoints: list[Savepoint] = []
        #: Key-value bytes (keys and encoded values) read and written through this store.
        self.bytesRead = 0
        self.bytesWritten = 0
        self._pending = False
        self._closed = False
        self._cache = cache
        self._sql = SqlDatabaseImpl(self._execSql, self._databaseSize)

    # -- hooks --------------------------------------------------------------------------------

    def _kvMark(self) -> Any:
        """State to return to on ``rollbackTo`` of a savepoint opened now."""
        return None

    def _kvRollbackTo(self, mark: Any) -> None:
        """Undo key-value writes made since ``mark``."""

    def _kvCommit(self) -> None:
        """Forget the undo information of the committed batch."""

    def _kvRollback(self) -> None:
        """Undo every key-value write of the batch."""

    def _databaseSize(self) -> int:
        self._check()
        return self._engine.databaseSize()

    def _closeResources(self) -> None:
        """Release the connection (or park it, for in-memory backends)."""

    # -- common -------------------------------------------------------------------------------

    def _check(self) -> None:
        if self._closed:
            raise StorageClosedError(
                f"the storage of {self.namespace}/{self.objectId} is closed"
            )

    def _transactionLost(self) -> None:
        """SQLite rolled back the batch by itself (``INSERT OR ROLLBACK``, I/O error, ...)."""
        self._cache.rollback()
        self._kvRollback()
        self._endSavepoints(0)
        self._pending = False

    def _endSavepoints(self, depth: int) -> None:
        for sp in self._savepoints[depth:]:
            sp.active = False
        del self._savepoints[depth:]

    def _execSql(self, query: str, bindings: tuple[Any, ...]) -> Cursor:
        if self._closed:
            self._check()
        cursor, wrote = self._engine.exec(query, bindings)
        if wrote:
            self._pending = True
        return cursor

    @property
    def sql(self) -> SqlDatabase:
        self._check()
        return self._sql

    @property
    def cacheStats(self) -> dict[str, int]:
        """The value cache's state: ``entries``, ``bytes`` counted, ``hits`` and ``misses``."""
        cache = self._cache
        return {"entries": len(cache), "bytes": cache.size, "hits": cache.hits, "misses": cache.misses}

    @property
    def hasPendingWrites(self) -> bool:
        return self._pending

    @property
    def closed(self) -> bool:
        return self._closed

    def commit(self) -> None:
        self._check()
        if self._savepoints:
            raise StorageError(
                f"cannot commit while {len(self._savepoints)} savepoint(s) are open: release or "
                "roll back the savepoints (end the transaction) first"
            )
        try:
            self._engine.commit()
        except CommitError:
            self._cache.rollback()
            self._kvRollback()
            self._pending = False
            raise
        self._cache.committed()
        self._kvCommit()
        self._pending = False

    def rollback(self) -> None:
        self._check()
        self._endSavepoints(0)
        self._engine.rollback()
        self._cache.rollback()
        self._kvRollback()
        self._pending = False

    def savepoint(self) -> Savepoint:
        self._check()
        depth = len(self._savepoints)
        name = f"_cf_sp{depth}"
        self._engine.savepoint(name)
        sp = Savepoint(self, depth, name, (self._pending, self._kvMark(), self._cache.mark()))
        self._savepoints.append(sp)
        return sp

    def _checkSavepoint(self, sp: Savepoint) -> None:
        self._check()
        if not isinstance(sp, Savepoint) or sp.store is not self:
            raise InvalidArgumentError(f"{sp!r} is not a savepoint of this object store")
        if not sp.active or sp.depth >= len(self._savepoints) or self._savepoints[sp.depth] is not sp:
            raise InvalidArgumentError(f"{sp!r} has already ended (released or rolled back)")

    def release(self, savepoint: Savepoint) -> None:
        self._checkSavepoint(savepoint)
        self._engine.release(savepoint.name)
        self._endSavepoints(savepoint.depth)

    def rollbackTo(self, savepoint: Savepoint) -> None:
        self._checkSavepoint(savepoint)
        self._engine.rollbackTo(savepoint.name)
        pending, mark, cacheMark = savepoint.state
        self._cache.rollbackTo(cacheMark)
        self._kvRollbackTo(mark)
        self._pending = pending
        self._endSavepoints(savepoint.depth)

    def close(self) -> None:
        if self._closed:
            return
        try:
            self._endSavepoints(0)
            self._engine.rollback()
            self._kvRollback()
            self._pending = False
        finally:
            self._cache.clear()
            self._closed = True
            self._closeResources()

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("pending writes" if self._pending else "clean")
        return f"<{type(self).__name__} {self.namespace}/{self.objectId} {state}>"
