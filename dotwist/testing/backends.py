"""Storage backends that misbehave on request, for testing what the runtime does when commits fail
or take time: ``FailingCommits`` and ``LaterCommits`` (both keep their data in memory)."""

from __future__ import annotations

from typing import Any, Optional, cast

from twisted.internet.defer import Deferred

from ..storage import CommitError, MemoryBackend
from ..storage.interface import ObjectStore, StorageBackend

__all__ = ["FailingCommits", "LaterCommits"]


class FailingCommits(StorageBackend):
    """A memory backend whose commits fail while ``failing`` is set."""

    failing = False

    def __init__(self) -> None:
        self._memory = MemoryBackend()

    def open(self, namespace: str, objectId: str) -> ObjectStore:
        return cast(ObjectStore, _FailingStore(self._memory.open(namespace, objectId), self))

    def objectIds(self, namespace: str) -> list[str]:
        return self._memory.objectIds(namespace)

    def close(self) -> None:
        self._memory.close()


class _FailingStore:
    def __init__(self, store: ObjectStore, backend: FailingCommits) -> None:
        self._store = store
        self._backend = backend

    def commit(self) -> None:
        if self._backend.failing:
            self._store.rollback()
            raise CommitError("disk full (simulated)")
        self._store.commit()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


class LaterCommits(StorageBackend):
    """A memory backend whose commits become durable only when the test says so, as a replicated
    store's would: ``commit()`` returns a Deferred, and ``complete()`` (or ``fail()``) fires the
    oldest one. ``pending`` counts the commits in flight."""

    def __init__(self) -> None:
        self._memory = MemoryBackend()
        self.inFlight: list[Deferred[None]] = []

    def close(self) -> None:
        self._memory.close()

    @property
    def pending(self) -> int:
        return len(self.inFlight)

    def open(self, namespace: str, objectId: str) -> ObjectStore:
        return cast(ObjectStore, _LaterStore(self._memory.open(namespace, objectId), self))

    def objectIds(self, namespace: str) -> list[str]:
        return self._memory.objectIds(namespace)

    def complete(self) -> None:
        self.inFlight.pop(0).callback(None)

    def fail(self, error: Optional[BaseException] = None) -> None:
        self.inFlight.pop(0).errback(error or OSError("replica lost"))


class _LaterStore:
    def __init__(self, store: ObjectStore, backend: LaterCommits) -> None:
        self._store = store
        self._backend = backend

    def commit(self) -> Deferred[None]:
        self._store.commit()
        d: Deferred[None] = Deferred()
        self._backend.inFlight.append(d)
        return d

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)
