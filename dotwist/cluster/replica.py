"""An owned object's local SQLite copy and its fenced log: what the owner node keeps per object.

:class:`ObjectReplica` puts :mod:`~dotwist.cluster.pages` and
:class:`~dotwist.cluster.store.CoordinationStore` together for one object the node has claimed:

1. :meth:`ObjectReplica.load` reads the object's snapshot and log (checking the epoch) and writes
   the local database file; the runtime then opens it with its SQLite backend.
2. After **every** local commit, the runtime calls :meth:`ObjectReplica.committed` at once (in the
   same reactor turn, before the next transaction writes). It reads the pages the commit wrote and
   returns a future that resolves with the batch's sequence number once it is durable in
   PostgreSQL. The runtime releases the object's output (its output gate) only then.
3. Commits are shipped one at a time, in order, each checked against the epoch and the previous
   sequence number. Batches collected while one is in flight go out together as the next one
   (write coalescing across turns, as Cloudflare's storage does).
4. If a commit is fenced, or its outcome is unknown, every waiting future fails with that error,
   :attr:`ObjectReplica.broken` is set and every later call fails at once: the object must be
   reset (its output dropped, its instance discarded), and, to serve it again, claimed anew
   (after an unknown outcome: ``store.reclaim``) and loaded again.

Snapshots: when :attr:`ObjectReplica.snapshotDue` (the batches shipped since the last snapshot
outweigh the database several times over) and :attr:`ObjectReplica.isIdle`, the runtime passes
the database image (``serialize()`` of its connection, between transactions) to
:meth:`ObjectReplica.snapshot`.

All of this runs on the asyncio loop under Twisted's asyncio reactor; Twisted code wraps the futures
with ``Deferred.fromFuture``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any

from .errors import ClusterError, CommitOutcomeUnknown, Fenced
from .pages import PageBatch, WalCapture, buildDatabase
from .store import KEEP, CoordinationStore, Ownership

__all__ = ["ObjectReplica"]

_Alarm = Any  # int | None | KEEP


class ObjectReplica:
    """One owned object: its local file's capture, its epoch and durable sequence number.

    Make it with :meth:`load` (or directly, for a file built already). ``compress`` zlib-compresses
    batches (less to send and store, more CPU). ``snapshotRatio`` and ``snapshotMinBytes`` set when
    :attr:`snapshotDue` turns true: once the bytes shipped since the last snapshot exceed both
    ``snapshotMinBytes`` and ``snapshotRatio`` times the database's size.
    """

    def __init__(
        self,
        store: CoordinationStore,
        ownership: Ownership,
        path: str | os.PathLike[str],
        *,
        base: PageBatch | None = None,
        seq: int | None = None,
        compress: bool = False,
        snapshotRatio: float = 4.0,
        snapshotMinBytes: int = 1 << 20,
    ) -> None:
        self.store = store
        self.namespace = ownership.namespace
        self.objectId = ownership.objectId
        self.epoch = ownership.epoch
        self.path = os.fspath(path)
        #: The sequence number of the last batch known durable.
        self.seq = ownership.seq if seq is None else seq
        #: The alarm last committed (ms since the Unix epoch), as far as this replica knows.
        self.alarm: int | None = None
        self.compress = compress
        self.snapshotRatio = snapshotRatio
        self.snapshotMinBytes = snapshotMinBytes
        #: The error that broke this replica (fenced, unknown outcome, ...), or None.
        self.broken: BaseException | None = None
        self._capture = WalCapture(self.path, base=base)
        self._queue: list[tuple[PageBatch | None, _Alarm, asyncio.Future[int]]] = []
        self._flushing: asyncio.Task[None] | None = None
        self._shippedSinceSnapshot = 0
        self._dbBytes = 0 if base is None else base.dbPages * base.pageSize
        self._snapshotting = False

    @classmethod
    async def load(
        cls,
        store: CoordinationStore,
        ownership: Ownership,
        path: str | os.PathLike[str],
        **options: Any,
    ) -> ObjectReplica:
        """Load the object (fenced by ``ownership.epoch``) and write its database at ``path``."""
        loaded = await store.load(ownership.namespace, ownership.objectId, ownership.epoch)
        base = buildDatabase(path, loaded.snapshot, [e.body for e in loaded.entries])
        replica = cls(store, ownership, path, base=base, seq=loaded.seq, **options)
        replica.alarm = loaded.alarm
        shipped = sum(len(e.body) for e in loaded.entries)
        replica._shippedSinceSnapshot = shipped
        replica._dbBytes = os.path.getsize(path)
        return replica

    # -- commits -----------------------------------------------------------------------------------

    def committed(self, alarm: _Alarm = KEEP) -> asyncio.Future[int]:
        """Call right after a local commit (or to wait for every earlier one): collects the pages
        it wrote and returns a future of the sequence number that makes them durable.

        ``alarm`` is the object's alarm after the commit (ms, or None for none), or :data:`KEEP`
        if unchanged. The future also waits for every batch collected before it.
        """
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        if self.broken is not None:
            future.set_exception(self._brokenError())
            return future
        batch = self._capture.collect()
        self._queue.append((batch, alarm, future))
        if self._flushing is None:
            self._flushing = asyncio.ensure_future(self._flush())
        return future

    @property
    def isIdle(self) -> bool:
        """Nothing collected is waiting to be shipped, and nothing is in flight."""
        return self._flushing is None and not self._queue

    def checkpoint(self, execute: Callable[[str], Any]) -> None:
        """Checkpoint the local WAL (see :meth:`~dotwist.cluster.pages.WalCapture.checkpoint`);
        ``execute`` runs a statement on the object's connection."""
        self._capture.checkpoint(execute)

    @property
    def checkpointDue(self) -> bool:
        """The local WAL has grown past 1,000 frames since the last checkpoint."""
        return self._capture.framesSinceCheckpoint > 1000

    async def _flush(self) -> None:
        try:
            while self._queue and self.broken is None:
                items, self._queue = self._queue, []
                batch: PageBatch | None = None
                alarm: _Alarm = KEEP
                for b, a, _ in items:
                    if b is not None:
                        batch = b if batch is None else batch.then(b)
                    if a is not KEEP:
                        alarm = a
                futures = [f for _, _, f in items]
                if batch is None and alarm is KEEP:
                    _resolve(futures, self.seq)
                    continue
                body = b"" if batch is None else batch.encode(compress=self.compress)
                try:
                    seq = await self.store.commit(
                        self.namespace, self.objectId, self.epoch, body, after=self.seq,
                        alarm=alarm,
                    )
                except BaseException as e:
                    self.broken = e
                    _fail(futures, e)
                    rest, self._queue = self._queue, []
                    _fail([f for _, _, f in rest], e)
                    if not isinstance(e, Exception):
                        raise
                    return
                self.seq = seq
                if alarm is not KEEP:
                    self.alarm = alarm
                self._shippedSinceSnapshot += len(body)
                if batch is not None:
                    self._dbBytes = batch.dbPages * batch.pageSize
                _resolve(futures, seq)
        finally:
            self._flushing = None

    def _brokenError(self) -> BaseException:
        if isinstance(self.broken, ClusterError):
            return self.broken
        return Fenced(
            f"the replica of {self.namespace}/{self.objectId} is broken: {self.broken!r}",
            namespace=self.namespace,
            objectId=self.objectId,
            epoch=self.epoch,
        )

    # -- snapshots ---------------------------------------------------------------------------------

    @property
    def snapshotDue(self) -> bool:
        """Enough has been shipped since the last snapshot to make a new one worth it."""
        shipped = self._shippedSinceSnapshot
        return (
            not self._snapshotting
            and shipped > self.snapshotMinBytes
            and shipped > self.snapshotRatio * self._dbBytes
        )

    def snapshot(self, image: bytes) -> asyncio.Future[bool]:
        """Store ``image``, the database as of :attr:`seq`, and let the log up to it go.

        Call only when :attr:`isIdle` (so ``image`` holds exactly the durable batches), between
        transactions. The future resolves with True once stored (False if one as recent was
        stored already); a fenced snapshot breaks the replica like a fenced commit.
        """
        if not self.isIdle:
            raise ClusterError(
                "snapshot() needs an idle replica: batches are waiting or in flight, so the image "
                "would not match the log"
            )
        if self.broken is not None:
            raise self._brokenError()
        seq = self.seq
        self._snapshotting = True
        self._shippedSinceSnapshot = 0
        self._dbBytes = len(image)
        return asyncio.ensure_future(self._snapshot(seq, image))

    async def _snapshot(self, seq: int, image: bytes) -> bool:
        try:
            return await self.store.snapshot(self.namespace, self.objectId, self.epoch, seq, image)
        except CommitOutcomeUnknown:
            raise  # stored or not, the object's state is the same: nothing to reset
        except Fenced as e:
            self.broken = e
            raise
        finally:
            self._snapshotting = False

    def __repr__(self) -> str:
        state = "broken" if self.broken is not None else ("idle" if self.isIdle else "shipping")
        return (
            f"<ObjectReplica {self.namespace}/{self.objectId} epoch={self.epoch} seq={self.seq} "
            f"{state}>"
        )


def _resolve(futures: list[asyncio.Future[int]], seq: int) -> None:
    for f in futures:
        if not f.done():
            f.set_result(seq)


def _fail(futures: list[asyncio.Future[int]], error: BaseException) -> None:
    for f in futures:
        if not f.done():
            f.set_exception(error)
