"""The owner's replica of an object: every local commit shipped in order, coalesced while one is in
flight, fenced, and rebuilt exactly by the next owner."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from pathlib import Path

import psycopg
import pytest
from clustersupport import FaultProxy, Pg, asyncioTest, opened
from twisted.internet.defer import Deferred

from dotwist.cluster.errors import ClusterError, CommitOutcomeUnknown, Fenced
from dotwist.cluster.replica import ObjectReplica
from dotwist.cluster.storage import ReplicatedBackend, ReplicatedStore
from dotwist.cluster.store import CoordinationStore
from dotwist.storage import SqliteBackend

NS = "Doc"
OID = "ef" * 32


def _store(pg: Pg, **kwargs: object) -> CoordinationStore:
    return CoordinationStore(pg.conninfo, schema=pg.schema, **kwargs)  # type: ignore[arg-type]


async def _expire(pg: Pg, nodeId: str) -> None:
    async with await psycopg.AsyncConnection.connect(pg.conninfo, autocommit=True) as conn:
        await conn.execute(
            f'UPDATE "{pg.schema}".node SET lease_until = now() - interval \'1 second\' '
            "WHERE node_id = %s",
            (nodeId,),
        )


def _backend(directory: Path) -> tuple[SqliteBackend, str]:
    backend = SqliteBackend(directory, deleteEmpty=False)
    path = backend.pathFor(NS, OID)
    assert path is not None
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return backend, path


@asyncioTest
async def test_everyCommitShippedAndTheNextOwnerHasIt(pg: Pg, tmp_path: Path) -> None:
    """An owner writes through dotwist's storage, waiting for each commit to be durable; the next
    owner, after the first one's lease lapsed, loads a database with every key, row and alarm."""
    async with _store(pg) as store:
        a = await store.join("a", "a", 30)
        b = await store.join("b", "b", 30)
        own = await store.claim(a, NS, OID)
        assert own is not None
        backend, path = _backend(tmp_path / "a")
        replica = await ObjectReplica.load(store, own, path)
        objectStore = backend.open(NS, OID)
        assert await replica.committed() == 1  # the new database and the backend's schema
        for i in range(30):
            objectStore.put(f"k{i}", "x" * (i * 300))
            if i % 7 == 0:
                objectStore.setAlarm(1_800_000_000_000 + i)
            objectStore.commit()
            seq = await replica.committed(alarm=objectStore.getAlarm())
            assert seq == replica.seq == i + 2
        expected = objectStore.list()
        objectStore.close()
        backend.close()
        await _expire(pg, "a")

        taken = await store.claim(b, NS, OID)
        assert taken is not None
        backendB, pathB = _backend(tmp_path / "b")
        replicaB = await ObjectReplica.load(store, taken, pathB)
        assert replicaB.seq == 31 and replicaB.alarm == 1_800_000_000_028
        copy = backendB.open(NS, OID)
        assert copy.list() == expected
        assert copy.getAlarm() == 1_800_000_000_028
        copy.close()
        backendB.close()


@asyncioTest
async def test_commitsMadeWhileOneIsInFlightGoOutTogether(pg: Pg, tmp_path: Path) -> None:
    """Ten local commits whose shipping is asked for in one turn go to PostgreSQL as fewer
    batches; every waiter learns a sequence number only once its commit is durable, and the log
    rebuilds the same database."""
    async with _store(pg) as store:
        a = await store.join("a", "a", 30)
        own = await store.claim(a, NS, OID)
        assert own is not None
        backend, path = _backend(tmp_path / "a")
        replica = await ObjectReplica.load(store, own, path)
        objectStore = backend.open(NS, OID)
        await replica.committed()
        before = replica.seq
        futures = []
        for i in range(10):
            objectStore.put(f"k{i}", i)
            objectStore.commit()
            futures.append(replica.committed())
        assert not replica.isIdle
        assert not any(f.done() for f in futures)
        seqs = await asyncio.gather(*futures)
        assert seqs == sorted(seqs) and seqs[-1] == replica.seq
        assert replica.seq - before < 10, f"ten commits took {replica.seq - before} batches"
        assert replica.isIdle
        expected = objectStore.list()
        objectStore.close()
        backend.close()
        again = await store.reclaim(a, NS, OID, own.epoch)
        assert again is not None
        backendB, pathB = _backend(tmp_path / "b")
        await ObjectReplica.load(store, again, pathB)
        copy = backendB.open(NS, OID)
        assert copy.list() == expected
        copy.close()
        backendB.close()


@asyncioTest
async def test_fencedReplicaFailsEveryWaiterAndStaysBroken(pg: Pg, tmp_path: Path) -> None:
    """Once another node has claimed the object, the old owner's next commit fails with Fenced for
    every waiter, and every later one fails at once, without reaching PostgreSQL."""
    async with _store(pg) as store:
        a = await store.join("a", "a", 30)
        b = await store.join("b", "b", 30)
        own = await store.claim(a, NS, OID)
        assert own is not None
        backend, path = _backend(tmp_path / "a")
        replica = await ObjectReplica.load(store, own, path)
        objectStore = backend.open(NS, OID)
        await replica.committed()
        await _expire(pg, "a")
        assert await store.claim(b, NS, OID) is not None
        objectStore.put("lost", 1)
        objectStore.commit()
        first = replica.committed()
        objectStore.put("lost too", 2)
        objectStore.commit()
        second = replica.committed()
        for future in (first, second):
            with pytest.raises(Fenced, match="epoch 1 is not current"):
                await future
        assert isinstance(replica.broken, Fenced)
        with pytest.raises(Fenced):
            await replica.committed()
        with pytest.raises(Fenced):
            replica.snapshot(b"")
        loaded = await store.load(NS, OID)
        assert loaded.seq == 1
        objectStore.close()
        backend.close()


@asyncioTest
async def test_unknownOutcomeBreaksTheReplicaAndReloadHasTheWholeWrite(
    pg: Pg, tmp_path: Path
) -> None:
    """A commit whose answer is lost (PostgreSQL applied it) breaks the replica with
    CommitOutcomeUnknown; after a reclaim, the reloaded database has the write whole."""
    proxy = FaultProxy()
    await proxy.start()
    store = CoordinationStore(
        proxy.conninfo(pg.conninfo), schema=pg.schema, minConnections=1, maxConnections=1
    )
    try:
        async with opened(store):
            a = await store.join("a", "a", 30)
            own = await store.claim(a, NS, OID)
            assert own is not None
            backend, path = _backend(tmp_path / "a")
            replica = await ObjectReplica.load(store, own, path)
            objectStore = backend.open(NS, OID)
            await replica.committed()
            objectStore.put("big", b"\x07" * 100_000)
            objectStore.commit()
            proxy.arm("dropResponse")
            with pytest.raises(CommitOutcomeUnknown):
                await replica.committed()
            assert isinstance(replica.broken, CommitOutcomeUnknown)
            objectStore.close()
            backend.close()
            again = await store.reclaim(a, NS, OID, own.epoch)
            assert again is not None and again.seq == 2
            backendB, pathB = _backend(tmp_path / "b")
            await ObjectReplica.load(store, again, pathB)
            copy = backendB.open(NS, OID)
            assert copy.get("big") == b"\x07" * 100_000
            copy.close()
            backendB.close()
    finally:
        await proxy.close()


@asyncioTest
async def test_snapshotWhenDueLetsTheLogGo(pg: Pg, tmp_path: Path) -> None:
    """After enough has been shipped, a snapshot of the idle replica replaces the log; the next
    owner rebuilds from it and the batches after it, byte for byte."""
    async with _store(pg) as store:
        a = await store.join("a", "a", 30)
        own = await store.claim(a, NS, OID)
        assert own is not None
        path = tmp_path / "raw.sqlite"
        replica = await ObjectReplica.load(
            store, own, path, snapshotMinBytes=10_000, snapshotRatio=1.0
        )
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA locking_mode = EXCLUSIVE")
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        conn.execute("CREATE TABLE t (v BLOB)")
        await replica.committed()
        i = 0
        while not replica.snapshotDue:
            conn.execute("INSERT INTO t VALUES (?)", (os.urandom(3000),))
            await replica.committed()
            i += 1
            assert i < 100, "the snapshot never came due"
        with pytest.raises(ClusterError, match="idle"):
            conn.execute("INSERT INTO t VALUES (x'00')")
            pending = replica.committed()
            replica.snapshot(conn.serialize())
        await pending
        assert await replica.snapshot(conn.serialize())
        assert not replica.snapshotDue
        conn.execute("DELETE FROM t WHERE rowid % 2 = 0")
        await replica.committed()
        image = conn.serialize()
        loaded = await store.load(NS, OID)
        assert loaded.snapshotSeq == replica.seq - 1 and len(loaded.entries) == 1
        again = await store.reclaim(a, NS, OID, own.epoch)
        assert again is not None
        await ObjectReplica.load(store, again, tmp_path / "copy.sqlite")
        assert (tmp_path / "copy.sqlite").read_bytes() == image
        conn.close()


@asyncioTest
async def test_twistedWaitsThroughADeferred(pg: Pg, tmp_path: Path) -> None:
    """Twisted code waits for durability with Deferred.fromFuture(replica.committed())."""
    async with _store(pg) as store:
        a = await store.join("a", "a", 30)
        own = await store.claim(a, NS, OID)
        assert own is not None
        replica = await ObjectReplica.load(store, own, tmp_path / "d.sqlite")
        conn = sqlite3.connect(tmp_path / "d.sqlite", isolation_level=None)
        conn.execute("CREATE TABLE t (v)")
        d = Deferred.fromFuture(replica.committed())
        results: list[int] = []
        d.addCallback(results.append)
        assert await d.asFuture(asyncio.get_running_loop()) is None  # (the callback's result)
        assert results == [1]
        conn.close()


async def _replicatedStore(
    store: CoordinationStore, directory: Path
) -> tuple[ReplicatedBackend, ReplicatedStore, ObjectReplica]:
    """A node's backend with one owned object open in it."""
    a = await store.join("a", "a", 30)
    own = await store.claim(a, NS, OID)
    assert own is not None
    replicas: dict[tuple[str, str], ObjectReplica] = {}
    backend = ReplicatedBackend(str(directory), lambda ns, oid: replicas.get((ns, oid)))
    path = backend.pathFor(NS, OID)
    assert path is not None
    os.makedirs(os.path.dirname(path), exist_ok=True)
    replica = replicas[NS, OID] = await ObjectReplica.load(store, own, path)
    objectStore = backend.open(NS, OID)
    assert isinstance(objectStore, ReplicatedStore)
    await replica.committed()
    return backend, objectStore, replica


async def _commit(objectStore: ReplicatedStore, key: str, value: object) -> None:
    """One write, committed and waited for until it is durable."""
    objectStore.put(key, value)
    d = objectStore.commit()
    assert d is not None
    await d.asFuture(asyncio.get_running_loop())


async def _nextOwnerHas(store: CoordinationStore, directory: Path, expected: object) -> None:
    b = await store.join("b", "b", 30)
    taken = await store.claim(b, NS, OID)
    assert taken is not None
    backendB, pathB = _backend(directory)
    await ObjectReplica.load(store, taken, pathB)
    copy = backendB.open(NS, OID)
    assert copy.list() == expected
    copy.close()
    backendB.close()


@asyncioTest
async def test_replicatedStoreCheckpointsItsWalWhenDue(pg: Pg, tmp_path: Path) -> None:
    """A node's store checkpoints the object's local WAL once it has grown past its bound (1,000
    frames), at the commit that finds it due, and the next owner still rebuilds every write from
    PostgreSQL."""
    async with _store(pg) as store:
        backend, objectStore, replica = await _replicatedStore(store, tmp_path / "a")
        path = backend.pathFor(NS, OID)
        assert path is not None
        sizes = [0]
        for i in range(200):
            await _commit(objectStore, f"k{i}", os.urandom(20_000).hex())  # ten pages or so
            sizes.append(os.path.getsize(path + "-wal"))
            assert not replica.checkpointDue  # the commit that found it due checkpointed
            if sizes[-1] < sizes[-2]:
                break
        else:
            pytest.fail("the local WAL was never checkpointed")
        assert sizes[-2] > 1000 * 4096 and sizes[-1] < sizes[-2] // 10
        expected = objectStore.list()
        assert len(expected) == len(sizes) - 1
        objectStore.close()
        backend.close()
        await _expire(pg, "a")
        await _nextOwnerHas(store, tmp_path / "b", expected)


@asyncioTest
async def test_aFailedCheckpointDoesNotFailTheCommit(pg: Pg, tmp_path: Path) -> None:
    """A checkpoint that fails (a full disk, say) is upkeep, not the commit's outcome: the write
    it came with is still durable and acknowledged, the checkpoint is tried again at the next
    commit, and nothing is lost."""
    async with _store(pg) as store:
        backend, objectStore, replica = await _replicatedStore(store, tmp_path / "a")
        tried: list[int] = []
        checkpoint = replica.checkpoint

        def failing(execute: object) -> None:
            tried.append(replica.seq)
            raise sqlite3.OperationalError("database or disk is full")

        replica.checkpoint = failing  # type: ignore[method-assign]
        i = 0
        while not tried:
            await _commit(objectStore, f"k{i}", os.urandom(20_000).hex())  # durable, not failed
            i += 1
            assert i < 200, "the checkpoint never came due"
        await _commit(objectStore, "during", 1)
        assert len(tried) == 2 and replica.checkpointDue and replica.broken is None
        replica.checkpoint = checkpoint  # type: ignore[method-assign]
        await _commit(objectStore, "after", 2)
        assert not replica.checkpointDue
        expected = objectStore.list()
        assert len(expected) == i + 2
        objectStore.close()
        backend.close()
        await _expire(pg, "a")
        await _nextOwnerHas(store, tmp_path / "b", expected)
