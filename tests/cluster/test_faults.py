"""Fault tests of the fencing: racing claimants, stale owners, connections cut mid-commit, leases
that lapse; and proof that these tests fail when the fencing is turned off."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable

import psycopg
import pytest
from clustersupport import FaultProxy, Pg, asyncioTest, opened, until

from dotwist.cluster.errors import CommitOutcomeUnknown, Fenced, LeaseLost
from dotwist.cluster.store import CoordinationStore

NS = "Room"


class UnfencedStore(CoordinationStore):
    """The store with its fences removed (test code only, never a production option): a claim
    takes the row whoever holds it, and a commit ignores the epoch."""

    CLAIM_SQL = """
        INSERT INTO {s}.owner AS o (namespace, object_id, node_id, incarnation, epoch, log_seq)
        VALUES (%(ns)s, %(oid)s, %(node)s, %(inc)s, 1, 0)
        ON CONFLICT (namespace, object_id) DO UPDATE
            SET node_id = EXCLUDED.node_id, incarnation = EXCLUDED.incarnation,
                epoch = o.epoch + 1
        RETURNING epoch, log_seq"""

    COMMIT_SQL = CoordinationStore.COMMIT_SQL.replace(" AND epoch = %(epoch)s", "")


assert UnfencedStore.COMMIT_SQL != CoordinationStore.COMMIT_SQL

MakeStore = Callable[..., CoordinationStore]


def _fenced(pg: Pg) -> MakeStore:
    return lambda conninfo=pg.conninfo, **kw: CoordinationStore(conninfo, schema=pg.schema, **kw)


def _unfenced(pg: Pg) -> MakeStore:
    return lambda conninfo=pg.conninfo, **kw: UnfencedStore(conninfo, schema=pg.schema, **kw)


async def _sql(pg: Pg, query: str, *params: object) -> list[tuple[object, ...]]:
    async with await psycopg.AsyncConnection.connect(pg.conninfo, autocommit=True) as conn:
        cur = await conn.execute(query.replace("{s}", f'"{pg.schema}"'), params)
        return await cur.fetchall() if cur.description is not None else []


async def _expire(pg: Pg, nodeId: str) -> None:
    await _sql(
        pg,
        "UPDATE {s}.node SET lease_until = now() - interval '1 second' WHERE node_id = %s",
        nodeId,
    )


async def _stored(pg: Pg, objectId: str) -> tuple[int, list[tuple[int, bytes]]]:
    """The owner row's log_seq and the stored batches; asserts they agree (nothing half-applied)."""
    seq = (await _sql(pg, "SELECT log_seq FROM {s}.owner WHERE object_id = %s", objectId))[0][0]
    rows = await _sql(
        pg, "SELECT seq, body FROM {s}.log WHERE object_id = %s ORDER BY seq", objectId
    )
    log = [(int(r[0]), bytes(r[1])) for r in rows]  # type: ignore[call-overload]
    assert [s for s, _ in log] == list(range(1, int(seq) + 1)), (seq, log)  # type: ignore[call-overload]
    return int(seq), log  # type: ignore[call-overload]


# -- the checks (run with fencing on by the tests below, and off by the proof) ---------------------


async def checkRace(make: MakeStore, pg: Pg) -> None:
    """Two nodes race to claim 100 cold ids at once, in three rounds (after releases, after lapsed
    leases): each id has exactly one winner per round, and its epoch grows every round."""
    a, b = make(maxConnections=10), make(maxConnections=10)
    async with opened(a, b):
        ids = [f"cold-{i:03d}" for i in range(100)]
        epochs: dict[str, list[int]] = defaultdict(list)
        la, lb = await a.join("a", "a", 30), await b.join("b", "b", 30)
        for round in range(3):
            claims = [(oid, s.claim(lease, NS, oid)) for oid in ids for s, lease in ((a, la), (b, lb))]
            results = await asyncio.gather(*(c for _, c in claims))
            winners: dict[str, list[int]] = defaultdict(list)
            for (oid, _), won in zip(claims, results):
                if won is not None:
                    winners[oid].append(won.epoch)
            for oid in ids:
                assert len(winners[oid]) == 1, f"round {round}: {oid} won by {len(winners[oid])}"
                epoch = winners[oid][0]
                assert not epochs[oid] or epoch > epochs[oid][-1], (oid, epochs[oid], epoch)
                epochs[oid].append(epoch)
                info = await a.lookup(NS, oid)
                assert info is not None and info.epoch == epoch
            if round == 0:
                for s, lease in ((a, la), (b, lb)):
                    await s.releaseAll(lease)
            elif round == 1:
                await _expire(pg, "a")
                await _expire(pg, "b")
                la, lb = await a.join("a", "a", 30), await b.join("b", "b", 30)


async def checkStaleOwner(make: MakeStore, pg: Pg) -> None:
    """An owner whose lease lapsed while it was paused, and whose object another node claimed,
    commits at the same moment as the new owner: its commit is refused, the new owner's lands, and
    the log holds exactly the old owner's earlier batch and the new owner's."""
    a, b = make(), make()
    async with opened(a, b):
        la, lb = await a.join("a", "a", 30), await b.join("b", "b", 30)
        old = await a.claim(la, NS, "x")
        assert old is not None
        await a.commit(NS, "x", old.epoch, b"a1")
        await _expire(pg, "a")  # a is paused past its lease
        new = await b.claim(lb, NS, "x")
        assert new is not None and new.epoch > old.epoch
        stale, fresh = await asyncio.gather(
            a.commit(NS, "x", old.epoch, b"a-stale"),
            b.commit(NS, "x", new.epoch, b"b1"),
            return_exceptions=True,
        )
        assert isinstance(stale, Fenced), f"the stale owner's commit was accepted: {stale!r}"
        assert fresh == 2
        loaded = await b.load(NS, "x", new.epoch)
        assert [e.body for e in loaded.entries] == [b"a1", b"b1"]


async def checkLateRequest(make: MakeStore, pg: Pg) -> None:
    """A commit whose link was cut while its request was still on the way is reported unknown; the
    owner reclaims (a new epoch) and reloads; when the old request reaches PostgreSQL after that,
    it is refused, so what the owner reloaded stays the truth."""
    proxy = FaultProxy()
    await proxy.start()
    direct = make()
    proxied = make(proxy.conninfo(pg.conninfo), minConnections=1, maxConnections=1)
    try:
        async with opened(direct, proxied):
            lease = await proxied.join("a", "a", 30)
            own = await proxied.claim(lease, NS, "x")
            assert own is not None
            await proxied.commit(NS, "x", own.epoch, b"1")
            proxy.arm("hold")
            outcome: BaseException | int
            try:
                outcome = await proxied.commit(NS, "x", own.epoch, b"late")
            except CommitOutcomeUnknown as e:
                outcome = e
            assert isinstance(outcome, CommitOutcomeUnknown), outcome
            again = await direct.reclaim(lease, NS, "x", own.epoch)
            assert again is not None and again.epoch > own.epoch
            reloaded = await direct.load(NS, "x", again.epoch)
            await proxy.releaseHeld()
            await asyncio.wait_for(proxy.answered.wait(), 10)
            seq, log = await _stored(pg, "x")
            assert (seq, [body for _, body in log]) == (reloaded.seq, [b"1"]), (
                "a request that arrived after the reclaim was applied"
            )
    finally:
        await proxy.close()


CHECKS = {"race": checkRace, "staleOwner": checkStaleOwner, "lateRequest": checkLateRequest}

#: What each check says when the fence it tests is missing.
MISSING_FENCE = {
    "race": "won by 2",
    "staleOwner": "the stale owner's commit was accepted",
    "lateRequest": "arrived after the reclaim was applied",
}


@pytest.mark.parametrize("name", sorted(CHECKS))
@asyncioTest
async def test_fencedStoreHolds(pg: Pg, name: str) -> None:
    """The fault check passes against the store as shipped (with its fences)."""
    await CHECKS[name](_fenced(pg), pg)


@pytest.mark.parametrize("name", sorted(CHECKS))
@asyncioTest
async def test_faultChecksCatchAMissingFence(pg: Pg, name: str) -> None:
    """With fencing turned off (a test-only subclass), the same fault check fails: the tests can
    catch a missing fence."""
    try:
        await CHECKS[name](_unfenced(pg), pg)
    except AssertionError as e:
        assert MISSING_FENCE[name] in str(e), f"the check failed for another reason: {e}"
        return
    pytest.fail(f"the {name} check passed with fencing turned off")


# -- connections cut mid-commit -------------------------------------------------------------------


@pytest.mark.parametrize("where", ["dropRequest", "dropResponse"])
@asyncioTest
async def test_commitCutIsReportedUnknownAndNeverHalfApplied(pg: Pg, where: str) -> None:
    """A commit whose connection is cut before the request reaches PostgreSQL, or after PostgreSQL
    committed but before the answer reaches the node, is reported as CommitOutcomeUnknown (a
    Fenced); the log holds it whole (cut after) or not at all (cut before); the owner recovers by
    reclaiming, which fences the old epoch, and reloading."""
    proxy = FaultProxy()
    await proxy.start()
    store = CoordinationStore(
        proxy.conninfo(pg.conninfo), schema=pg.schema, minConnections=1, maxConnections=1
    )
    try:
        async with opened(store):
            lease = await store.join("a", "a", 30)
            own = await store.claim(lease, NS, "x")
            assert own is not None
            await store.commit(NS, "x", own.epoch, b"1")
            proxy.arm(where)
            with pytest.raises(CommitOutcomeUnknown, match="may or may not have been applied"):
                await store.commit(NS, "x", own.epoch, b"2" * 10_000)
            assert proxy.triggered.is_set()
            seq, log = await _stored(pg, "x")
            if where == "dropRequest":
                assert (seq, log) == (1, [(1, b"1")])
            else:
                assert (seq, log) == (2, [(1, b"1"), (2, b"2" * 10_000)])
            # the owner's recovery: a new epoch (through a fresh connection), then reload
            again = await store.reclaim(lease, NS, "x", own.epoch)
            assert again is not None and again.epoch == own.epoch + 1 and again.seq == seq
            with pytest.raises(Fenced):
                await store.commit(NS, "x", own.epoch, b"3")
            reloaded = await store.load(NS, "x", again.epoch)
            assert [e.seq for e in reloaded.entries] == list(range(1, seq + 1))
    finally:
        await proxy.close()


@asyncioTest
async def test_commitWhoseBackendIsTerminatedIsUnknownAndNotApplied(pg: Pg) -> None:
    """A commit waiting on the owner row's lock has its PostgreSQL backend terminated
    (pg_terminate_backend from another connection): the caller gets CommitOutcomeUnknown, nothing
    of the batch is stored, and the store keeps working on a new connection."""
    name = f"victim-{pg.schema}"
    store = CoordinationStore(pg.conninfo, schema=pg.schema, applicationName=name)
    async with opened(store):
        lease = await store.join("a", "a", 30)
        own = await store.claim(lease, NS, "x")
        assert own is not None
        await store.commit(NS, "x", own.epoch, b"1")
        async with await psycopg.AsyncConnection.connect(pg.conninfo) as holder:
            await holder.execute(
                f'SELECT 1 FROM "{pg.schema}".owner WHERE object_id = %s FOR UPDATE', ("x",)
            )
            task = asyncio.ensure_future(store.commit(NS, "x", own.epoch, b"2"))
            pids: list[int] = []

            async def waiting() -> bool:
                rows = await _sql(
                    pg,
                    "SELECT pid FROM pg_stat_activity WHERE application_name = %s "
                    "AND wait_event_type = 'Lock'",
                    name,
                )
                pids[:] = [int(r[0]) for r in rows]  # type: ignore[call-overload]
                return bool(pids)

            await until(waiting, "the commit to wait on the row lock")
            assert (await _sql(pg, "SELECT pg_terminate_backend(%s)", pids[0])) == [(True,)]
            with pytest.raises(CommitOutcomeUnknown):
                await task
            await holder.rollback()
        assert await _stored(pg, "x") == (1, [(1, b"1")])
        assert await store.commit(NS, "x", own.epoch, b"2") == 2


# -- leases ----------------------------------------------------------------------------------------


@asyncioTest
async def test_lapsedLeaseCannotRenewAndItsObjectsAreClaimable(pg: Pg) -> None:
    """A node whose lease lapsed cannot renew (LeaseLost), cannot claim, and its objects are
    claimed by another node, after which its commits are fenced."""
    a, b = _fenced(pg)(), _fenced(pg)()
    async with opened(a, b):
        la, lb = await a.join("a", "a", 30), await b.join("b", "b", 30)
        owned = [await a.claim(la, NS, f"o{i}") for i in range(5)]
        assert all(o is not None for o in owned)
        assert all([await b.claim(lb, NS, f"o{i}") is None for i in range(5)])
        await _expire(pg, "a")
        with pytest.raises(LeaseLost):
            await a.renew(la)
        assert await a.claim(la, NS, "new") is None
        taken = [await b.claim(lb, NS, f"o{i}") for i in range(5)]
        assert all(t is not None and t.epoch == 2 for t in taken)
        with pytest.raises(Fenced):
            await a.commit(NS, "o0", 1, b"stale")


@asyncioTest
async def test_leaseLapsesByTheDatabaseClock(pg: Pg) -> None:
    """With a short lease and no renewal, the database's own clock ends it: the node drops out of
    the live list, cannot renew, and its object is claimable (polled with a deadline, no sleep)."""
    a, b = _fenced(pg)(), _fenced(pg)()
    async with opened(a, b):
        la = await a.join("a", "a", 0.3)
        lb = await b.join("b", "b", 30)
        assert await a.claim(la, NS, "x") is not None
        assert await b.claim(lb, NS, "x") is None

        async def gone() -> bool:
            return [n.nodeId for n in await b.liveNodes()] == ["b"]

        await until(gone, "node a's lease to lapse")
        with pytest.raises(LeaseLost):
            await a.renew(la)
        taken = await b.claim(lb, NS, "x")
        assert taken is not None and taken.epoch == 2


@pytest.mark.parametrize("check", [False, True])
@asyncioTest
async def test_connectionThatBrokeWhileIdle(pg: Pg, check: bool) -> None:
    """When PostgreSQL ends a pooled connection while it is idle, the next commit on it is
    reported unknown (it cannot tell), unless the store checks connections before use, in which
    case the commit goes through on a fresh connection."""
    name = f"idle-{check}-{pg.schema}"[:60]
    store = CoordinationStore(
        pg.conninfo, schema=pg.schema, applicationName=name, minConnections=1,
        maxConnections=1, checkConnections=check,
    )
    async with opened(store):
        lease = await store.join("a", "a", 30)
        own = await store.claim(lease, NS, "x")
        assert own is not None
        killed = await _sql(
            pg,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            name,
        )
        assert killed == [(True,)]
        if check:
            assert await store.commit(NS, "x", own.epoch, b"1") == 1
        else:
            with pytest.raises(CommitOutcomeUnknown):
                await store.commit(NS, "x", own.epoch, b"1")
            assert await _stored(pg, "x") == (0, [])
