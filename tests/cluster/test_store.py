"""The coordination store against the local PostgreSQL: schema, membership, ownership, the fenced
log, snapshots, alarms, and an object moving from one owner to another with its SQLite data."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from clustersupport import Pg, asyncioTest, opened

from dotwist.cluster.errors import (
    Fenced,
    LeaseLost,
    LogCorrupt,
    NodeIdInUse,
    SchemaVersionError,
)
from dotwist.cluster.pages import PageBatch, WalCapture, buildDatabase
from dotwist.cluster.store import KEEP, CoordinationStore, LogEntry, asDeferred
from dotwist.storage import SqliteBackend

NS = "Counter"


def _store(pg: Pg, **kwargs: object) -> CoordinationStore:
    return CoordinationStore(pg.conninfo, schema=pg.schema, **kwargs)  # type: ignore[arg-type]


async def _expire(pg: Pg, nodeId: str) -> None:
    """Put a node's lease in the past, by the database's clock (instead of waiting for it)."""
    import psycopg

    async with await psycopg.AsyncConnection.connect(pg.conninfo, autocommit=True) as conn:
        await conn.execute(
            f'UPDATE "{pg.schema}".node SET lease_until = now() - interval \'1 second\' '
            "WHERE node_id = %s",
            (nodeId,),
        )


# -- schema -----------------------------------------------------------------------------------------


@asyncioTest
async def test_schemaMadeOnceByManyAtOnce(pg: Pg) -> None:
    """Five stores opening the same fresh schema at the same moment all succeed, and it holds
    version 1 exactly once."""
    stores = [_store(pg) for _ in range(5)]
    try:
        await asyncio.gather(*(s.open() for s in stores))
    finally:
        await asyncio.gather(*(s.close() for s in stores))
    with pg.sync() as conn:
        rows = conn.execute(f'SELECT version FROM "{pg.schema}".schema_version').fetchall()
    assert rows == [(1,)]


@asyncioTest
async def test_newerSchemaRefused(pg: Pg) -> None:
    """A schema made by a newer dotwist is refused with a message naming both versions."""
    async with _store(pg):
        pass
    with pg.sync() as conn:
        conn.execute(f'UPDATE "{pg.schema}".schema_version SET version = 99')
    with pytest.raises(SchemaVersionError, match="version 99.*knows 1"):
        await _store(pg).open()


def test_badSchemaNameRefused() -> None:
    """A schema name that is not a plain lowercase identifier is refused before any I/O."""
    with pytest.raises(ValueError, match="schema must be"):
        CoordinationStore("host=127.0.0.1", schema='x"; DROP')


# -- membership -------------------------------------------------------------------------------------


@asyncioTest
async def test_joinRenewLeave(pg: Pg) -> None:
    """A node joins with a new incarnation, renews, is listed live, leaves; joining again gives a
    larger incarnation, and the old incarnation can no longer renew."""
    async with _store(pg) as store:
        first = await store.join("n1", "10.0.0.1:8080", 30)
        await store.renew(first)
        assert [(n.nodeId, n.address, n.state) for n in await store.liveNodes()] == [
            ("n1", "10.0.0.1:8080", "alive")
        ]
        assert 0 < (await store.liveNodes())[0].leaseRemaining <= 30
        await store.leave(first)
        assert await store.liveNodes() == []
        second = await store.join("n1", "10.0.0.1:9090", 30)
        assert second.incarnation > first.incarnation
        with pytest.raises(LeaseLost):
            await store.renew(first)
        await store.renew(second)


@asyncioTest
async def test_liveNodeIdRefused(pg: Pg) -> None:
    """A second process cannot take a node id whose lease is live; once it lapsed, it can."""
    async with _store(pg) as store:
        await store.join("n1", "a", 30)
        with pytest.raises(NodeIdInUse, match="'n1'"):
            await store.join("n1", "b", 30)
        await _expire(pg, "n1")
        taken = await store.join("n1", "b", 30)
        assert taken.address == "b"


@asyncioTest
async def test_drainingNodeListedOnlyOnRequest(pg: Pg) -> None:
    """A draining node keeps renewing its lease but is not offered for new objects."""
    async with _store(pg) as store:
        a = await store.join("a", "a", 30)
        await store.join("b", "b", 30)
        await store.drain(a)
        await store.renew(a)
        assert [n.nodeId for n in await store.liveNodes()] == ["b"]
        listed = await store.liveNodes(includeDraining=True)
        assert [(n.nodeId, n.state) for n in listed] == [("a", "draining"), ("b", "alive")]


# -- ownership --------------------------------------------------------------------------------------


@asyncioTest
async def test_claimLookupRelease(pg: Pg) -> None:
    """The first claim wins epoch 1; another node is refused while the holder is live; after a
    release the other node claims it at epoch 2, and lookup says who and where."""
    async with _store(pg) as store:
        a = await store.join("a", "host-a:1", 30)
        b = await store.join("b", "host-b:1", 30)
        assert await store.lookup(NS, "x") is None
        won = await store.claim(a, NS, "x")
        assert won is not None and (won.epoch, won.seq) == (1, 0)
        assert await store.claim(b, NS, "x") is None
        assert await store.claim(a, NS, "x") is None  # even its own holder: reclaim is explicit
        info = await store.lookup(NS, "x")
        assert info is not None
        assert (info.nodeId, info.address, info.epoch, info.live) == ("a", "host-a:1", 1, True)
        assert not await store.release(b, NS, "x", 1)  # not b's to release
        assert await store.release(a, NS, "x", 1)
        info = await store.lookup(NS, "x")
        assert info is not None and (info.nodeId, info.live, info.epoch) == (None, False, 1)
        taken = await store.claim(b, NS, "x")
        assert taken is not None and taken.epoch == 2


@asyncioTest
async def test_claimableWhenHolderDrainsLeavesOrRejoins(pg: Pg) -> None:
    """A holder that drains, leaves, or restarts (a new incarnation) loses its objects to a claim,
    each time with a larger epoch."""
    async with _store(pg) as store:
        a = await store.join("a", "a", 30)
        b = await store.join("b", "b", 30)
        assert (await store.claim(a, NS, "1")) is not None
        assert (await store.claim(a, NS, "2")) is not None
        assert (await store.claim(a, NS, "3")) is not None
        await store.drain(a)
        got = await store.claim(b, NS, "1")
        assert got is not None and got.epoch == 2
        await store.leave(a)
        got = await store.claim(b, NS, "2")
        assert got is not None and got.epoch == 2
        await store.leave(b)
        b2 = await store.join("b", "b", 30)  # b restarts: its old incarnation's objects are free
        got = await store.claim(b2, NS, "1")
        assert got is not None and got.epoch == 3


@asyncioTest
async def test_claimantNeedsALiveLease(pg: Pg) -> None:
    """A node whose own lease lapsed cannot claim, even a free object."""
    async with _store(pg) as store:
        a = await store.join("a", "a", 30)
        await _expire(pg, "a")
        assert await store.claim(a, NS, "x") is None
        assert await store.lookup(NS, "x") is None


@asyncioTest
async def test_reclaimBumpsOwnEpoch(pg: Pg) -> None:
    """A holder can fence its own earlier tenure by reclaiming: the epoch grows, the old epoch's
    commits are refused; reclaiming at a stale epoch gives None."""
    async with _store(pg) as store:
        a = await store.join("a", "a", 30)
        first = await store.claim(a, NS, "x")
        assert first is not None
        await store.commit(NS, "x", 1, b"one")
        again = await store.reclaim(a, NS, "x", 1)
        assert again is not None and (again.epoch, again.seq) == (2, 1)
        with pytest.raises(Fenced):
            await store.commit(NS, "x", 1, b"late")
        assert await store.reclaim(a, NS, "x", 1) is None
        assert await store.commit(NS, "x", 2, b"two") == 2


# -- the log ----------------------------------------------------------------------------------------


@asyncioTest
async def test_commitAndLoad(pg: Pg) -> None:
    """Commits get sequence numbers 1, 2, 3...; load returns them in order with their epoch; a
    commit that does not follow the caller's last batch is refused."""
    async with _store(pg) as store:
        a = await store.join("a", "a", 30)
        await store.claim(a, NS, "x")
        empty = await store.load(NS, "x", 1)
        assert (empty.seq, empty.snapshot, empty.entries) == (0, None, ())
        assert await store.commit(NS, "x", 1, b"first") == 1
        assert await store.commit(NS, "x", 1, b"second", after=1) == 2
        with pytest.raises(Fenced, match="follows batch 1, but the log is at 2"):
            await store.commit(NS, "x", 1, b"stray", after=1)
        loaded = await store.load(NS, "x", 1)
        assert loaded.seq == 2 and loaded.epoch == 1
        assert loaded.entries == (LogEntry(1, 1, b"first"), LogEntry(2, 1, b"second"))
        with pytest.raises(Fenced):
            await store.load(NS, "x", 7)


@asyncioTest
async def test_neverClaimedLoadsEmpty(pg: Pg) -> None:
    """An object nobody ever claimed loads as empty without an epoch, and is fenced with one."""
    async with _store(pg) as store:
        loaded = await store.load(NS, "nobody")
        assert (loaded.seq, loaded.entries, loaded.snapshot) == (0, (), None)
        with pytest.raises(Fenced, match="no owner"):
            await store.load(NS, "nobody", 1)


@asyncioTest
async def test_snapshotReplacesTheLog(pg: Pg) -> None:
    """A snapshot at batch 2 deletes batches 1-2; load returns it (reassembled from many chunks)
    and batch 3; an older snapshot is ignored; a snapshot past the log's end is refused."""
    async with _store(pg) as store:
        store.SNAPSHOT_CHUNK = 1000
        a = await store.join("a", "a", 30)
        await store.claim(a, NS, "x")
        for body in (b"1", b"2", b"3"):
            await store.commit(NS, "x", 1, body)
        image = bytes(range(256)) * 20  # 5,120 bytes: six chunks
        assert await store.snapshot(NS, "x", 1, 2, image)
        loaded = await store.load(NS, "x")
        assert (loaded.snapshotSeq, loaded.snapshot, loaded.seq) == (2, image, 3)
        assert loaded.entries == (LogEntry(3, 1, b"3"),)
        assert not await store.snapshot(NS, "x", 1, 1, b"old")
        with pytest.raises(ValueError, match="log ends at 3"):
            await store.snapshot(NS, "x", 1, 4, b"future")
        with pg.sync() as conn:
            count = conn.execute(f'SELECT count(*) FROM "{pg.schema}".log').fetchone()[0]
        assert count == 1


@asyncioTest
async def test_snapshotIsFenced(pg: Pg) -> None:
    """A stale owner's snapshot is refused and changes nothing."""
    async with _store(pg) as store:
        a = await store.join("a", "a", 30)
        b = await store.join("b", "b", 30)
        await store.claim(a, NS, "x")
        await store.commit(NS, "x", 1, b"1")
        await store.release(a, NS, "x", 1)
        await store.claim(b, NS, "x")
        with pytest.raises(Fenced, match="epoch 1 is not current, now epoch 2"):
            await store.snapshot(NS, "x", 1, 1, b"stale image")
        loaded = await store.load(NS, "x")
        assert loaded.snapshot is None and loaded.entries == (LogEntry(1, 1, b"1"),)


@asyncioTest
async def test_gapInTheLogIsReported(pg: Pg) -> None:
    """A log with a missing batch is refused at load, not replayed wrong."""
    async with _store(pg) as store:
        a = await store.join("a", "a", 30)
        await store.claim(a, NS, "x")
        for body in (b"1", b"2", b"3"):
            await store.commit(NS, "x", 1, body)
        with pg.sync() as conn:
            conn.execute(f'DELETE FROM "{pg.schema}".log WHERE seq = 2')
        with pytest.raises(LogCorrupt, match="gap.*1, 3"):
            await store.load(NS, "x")


# -- alarms -----------------------------------------------------------------------------------------


@asyncioTest
async def test_alarmsCommitWithTheBatch(pg: Pg) -> None:
    """An alarm set in a commit is due once its time comes, kept by KEEP, cleared by None, and a
    fenced commit changes no alarm."""
    async with _store(pg) as store:
        a = await store.join("a", "addr-a", 30)
        b = await store.join("b", "addr-b", 30)
        await store.claim(a, NS, "x")
        await store.claim(b, NS, "y")
        await store.commit(NS, "x", 1, b"", alarm=1_000)
        await store.commit(NS, "y", 1, b"", alarm=2_000)
        assert await store.nextAlarm() == 1_000
        due = await store.dueAlarms(now=1_500)
        assert [(d.objectId, d.scheduledTime, d.nodeId, d.address, d.live) for d in due] == [
            ("x", 1_000, "a", "addr-a", True)
        ]
        assert [d.objectId for d in await store.dueAlarms()] == ["x", "y"]  # database clock
        await store.commit(NS, "x", 1, b"", alarm=KEEP)
        assert len(await store.dueAlarms(now=1_500)) == 1
        await store.commit(NS, "x", 1, b"", alarm=None)
        assert await store.dueAlarms(now=1_500) == []
        await store.release(b, NS, "y", 1)
        with pytest.raises(Fenced):
            await store.commit(NS, "y", 2, b"", alarm=None)
        due = await store.dueAlarms(now=5_000)
        assert [(d.objectId, d.nodeId, d.live) for d in due] == [("y", None, False)]
        info = await store.lookup(NS, "y")
        assert info is not None and info.alarm == 2_000


@asyncioTest
async def test_badAlarmRefused(pg: Pg) -> None:
    """An alarm that is not an int of milliseconds is refused before anything is sent."""
    async with _store(pg) as store:
        with pytest.raises(TypeError, match="alarm must be an int"):
            await store.commit(NS, "x", 1, b"", alarm=1.5)  # type: ignore[arg-type]


# -- one object, two owners, real SQLite ------------------------------------------------------------


@asyncioTest
async def test_objectMovesToANewOwnerWithItsData(pg: Pg, tmp_path: Path) -> None:
    """Owner A writes through dotwist's SQLite storage and ships each commit; its lease lapses;
    owner B claims the object, rebuilds the file from the snapshot and the log, and finds every
    committed key, row and alarm, byte for byte what A had."""
    oid = "cd" * 32
    async with _store(pg) as store:
        a = await store.join("a", "a", 30)
        b = await store.join("b", "b", 30)
        own = await store.claim(a, NS, oid)
        assert own is not None
        loaded = await store.load(NS, oid, own.epoch)
        backendA = SqliteBackend(tmp_path / "a", deleteEmpty=False)
        path = backendA.pathFor(NS, oid)
        assert path is not None
        os.makedirs(os.path.dirname(path))
        base = buildDatabase(path, loaded.snapshot, [e.body for e in loaded.entries])
        storeA = backendA.open(NS, oid)
        capture = WalCapture(path, base=base)
        seq = loaded.seq
        shipped: list[PageBatch] = []

        async def ship() -> None:
            nonlocal seq
            storeA.commit()
            batch = capture.collect()
            if batch is not None:
                shipped.append(batch)
                seq = await store.commit(
                    NS, oid, own.epoch, batch.encode(), after=seq, alarm=storeA.getAlarm()
                )

        await ship()  # the schema the backend made
        for i in range(20):
            storeA.put(f"k{i}", {"i": i, "blob": b"x" * (i * 500)})
            await ship()
            if i == 10:
                # (an owner would use its connection's serialize(); the same bytes, see test_pages)
                buildDatabase(tmp_path / "snap", None, shipped, sync=False)
                image = (tmp_path / "snap").read_bytes()
                await store.snapshot(NS, oid, own.epoch, seq, image)
        storeA.sql.exec("CREATE TABLE t (v TEXT)")
        storeA.sql.exec("INSERT INTO t VALUES ('row')")
        storeA.setAlarm(1_900_000_000_000)
        await ship()
        expected = storeA.list()
        storeA.close()  # checkpoints A's WAL into its file, for the comparison below
        backendA.close()
        image = Path(path).read_bytes()
        # A stops without a word; its lease lapses.
        await _expire(pg, "a")

        taken = await store.claim(b, NS, oid)
        assert taken is not None and taken.epoch == own.epoch + 1 and taken.seq == seq
        moved = await store.load(NS, oid, taken.epoch)
        assert moved.snapshotSeq > 0 and moved.alarm == 1_900_000_000_000
        backendB = SqliteBackend(tmp_path / "b", deleteEmpty=False)
        pathB = backendB.pathFor(NS, oid)
        assert pathB is not None
        os.makedirs(os.path.dirname(pathB))
        assert buildDatabase(pathB, moved.snapshot, [e.body for e in moved.entries]) is None
        assert Path(pathB).read_bytes() == image
        storeB = backendB.open(NS, oid)
        assert storeB.list() == expected
        assert storeB.sql.exec("SELECT v FROM t").toArray() == [{"v": "row"}]
        assert storeB.getAlarm() == 1_900_000_000_000
        # and A, if it comes back, cannot write
        with pytest.raises(Fenced):
            await store.commit(NS, oid, own.epoch, PageBatch(4096, 1, {}).encode())
        storeB.close()
        backendB.close()


def test_asDeferredRunsACoroutineFromTwisted(pg: Pg) -> object:
    """Twisted code drives the store through asDeferred: a Deferred that fires with the result."""

    async def work() -> list[str]:
        async with _store(pg) as store:
            await store.join("t", "t", 30)
            return [n.nodeId for n in await store.liveNodes()]

    d = asDeferred(work())
    d.addCallback(lambda ids: ids == ["t"] or pytest.fail(f"got {ids}"))
    return d


def test_unreachableDatabaseIsReported() -> None:
    """A store that cannot reach PostgreSQL says so with CoordinationUnavailable, quickly."""
    from dotwist.cluster.errors import CoordinationUnavailable

    async def work() -> None:
        store = CoordinationStore(
            "host=127.0.0.1 port=1 dbname=test user=postgres connect_timeout=1",
            connectTimeout=1.0,
        )
        try:
            await store.open()
        except CoordinationUnavailable:
            return
        raise AssertionError("open() succeeded against a closed port")

    return asDeferred(work())  # type: ignore[return-value]


@asyncioTest
async def test_the_shared_secret_is_made_once_whoever_asks_first(pg: Pg) -> None:
    """Eight stores asking for the cluster's secret at the same moment on a new schema all get
    the same one, and asking again gives it again."""
    stores = [CoordinationStore(pg.conninfo, schema=pg.schema) for _ in range(8)]
    async with opened(*stores):
        secrets = await asyncio.gather(*(s.sharedSecret() for s in stores))
        assert len(set(secrets)) == 1 and len(secrets[0]) == 64
        assert await stores[0].sharedSecret() == secrets[0]
