"""The storage of the objects a cluster node owns: local SQLite files whose commits are shipped to
the fenced log in PostgreSQL before they count as done.

:class:`ReplicatedBackend` is dotwist's SQLite backend (one file per object, under the node's own
directory) with three differences:

- it opens only objects this node owns, each with its :class:`~dotwist.cluster.replica.ObjectReplica`
  (``replicaOf``; the node loads the file from PostgreSQL when it claims the object);
- ``commit()`` commits locally, then hands the pages the commit wrote to the replica, and returns
  a Deferred that fires once they are durable in PostgreSQL: the object's output gate holds what
  depended on the write until then, and a fenced (or unknown) outcome fails the commit, which
  resets the object (``dotwist.durable_storage.StorageSession``);
- SQLite checkpoints only when the capture says so (``wal_autocheckpoint = 0``), and the local
  file is not fsynced (``synchronous = NORMAL``): PostgreSQL makes writes durable, and a node that
  restarts rebuilds its objects from it.
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable, Optional, cast

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from ..storage.errors import ObjectOpenError
from ..storage.sqlite import SqliteBackend, SqliteObjectStore
from .replica import ObjectReplica
from .store import KEEP

__all__ = ["ReplicatedBackend", "ReplicatedStore"]

_log = Logger(namespace="dotwist.cluster")


class ReplicatedStore(SqliteObjectStore):
    """One owned object's store: local commits, then shipped (see the module docstring)."""

    replica: ObjectReplica

    def commit(self) -> Optional[Awaitable[None]]:  # type: ignore[override]
        wrote = self.hasPendingWrites
        super().commit()
        if not wrote:
            return None
        return self.ship()

    def ship(self) -> Deferred[None]:
        """Hand what the local commits wrote to the replica; fires once it is durable."""
        replica = self.replica
        alarm = self.getAlarm()
        future = replica.committed(alarm=KEEP if alarm == replica.alarm else alarm)
        if replica.checkpointDue:
            # Upkeep of the local WAL, not part of this commit, whose pages are collected and on
            # their way already: a checkpoint that fails is logged and tried again at the next
            # commit, and does not fail a write that will be durable.
            try:
                replica.checkpoint(self.runOwnStatement)
            except Exception as e:
                _log.warn(
                    "The checkpoint of the local WAL of {namespace}/{objectId} failed; it will be "
                    "tried again at the next commit: {error}",
                    namespace=self.namespace,
                    objectId=self.objectId,
                    error=repr(e),
                )
        d: Deferred[Any] = Deferred.fromFuture(future)
        return d.addCallback(self._durable)

    def _durable(self, _: object) -> None:
        """A commit is durable: when the log has grown enough, and nothing is pending here or
        on its way, store a snapshot (which lets the log up to it go)."""
        replica = self.replica
        if self.closed or self.hasPendingWrites or not replica.isIdle or not replica.snapshotDue:
            return
        try:
            image = self.serializeDatabase()
        except Exception:
            return
        _consume(replica.snapshot(image), f"The snapshot of {self.namespace}/{self.objectId}")


class ReplicatedBackend(SqliteBackend):
    """The SQLite backend of a cluster node; ``replicaOf(namespace, objectId)`` is the replica of
    an object the node owns now, or None."""

    storeClass = ReplicatedStore
    connectionPragmas = ("PRAGMA wal_autocheckpoint = 0", "PRAGMA synchronous = NORMAL")

    def __init__(
        self,
        dataDir: str,
        replicaOf: Callable[[str, str], Optional[ObjectReplica]],
        limits: Any = None,
        **options: Any,
    ) -> None:
        # An empty object's file must stay: it is the base the next commit's pages apply to.
        super().__init__(dataDir, limits, deleteEmpty=False, **options)
        self.replicaOf = replicaOf

    def open(self, namespace: str, objectId: str) -> ReplicatedStore:
        replica = self.replicaOf(namespace, objectId)
        if replica is None or replica.broken is not None:
            raise ObjectOpenError(
                f"the storage of {namespace}/{objectId} is not owned by this node",
                path=self.pathFor(namespace, objectId),
            )
        store = cast(ReplicatedStore, super().open(namespace, objectId))
        store.replica = replica
        # Opening may have committed dotwist's tables into a new database: those pages go out
        # first, ahead of the object's own writes.
        _consume(replica.committed())
        return store


def _consume(future: "asyncio.Future[Any]", what: str = "") -> None:
    """Nobody waits for this future; a failure that matters reaches the next commit through the
    replica (``what`` names it in the log)."""

    def done(f: "asyncio.Future[Any]") -> None:
        if f.cancelled():
            return
        error = f.exception()
        if error is not None and what:
            _log.warn("{what} failed: {error}", what=what, error=repr(error))

    future.add_done_callback(done)
