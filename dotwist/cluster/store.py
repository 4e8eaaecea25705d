"""The coordination store: node leases, object owners with epochs, the fenced commit log, alarms.

Everything that decides who may serve or write an object lives in one PostgreSQL database, reached
through psycopg 3's asyncio API and a ``psycopg_pool`` pool. This is an asyncio client: dotwist
runs on Twisted's asyncio reactor, and Twisted code calls it through :func:`asDeferred` (that is,
``Deferred.fromFuture(asyncio.ensure_future(coro))``).

The tables (in a schema whose name is given, ``dotwist`` by default; see ``docs/cluster.md``):

``node``
    One row per node id: its current ``incarnation`` (from a sequence, so it only grows), its
    ``address``, its ``state`` (``alive``, ``draining``, ``left``) and ``lease_until``, a time of the
    database's clock. The database's ``now()`` is the one clock that decides expiry.
``owner``
    One row per object ever claimed (never deleted: its ``epoch`` must only grow): the holder
    (``node_id`` and ``incarnation``, both NULL once released), the ``epoch``, incremented on every
    change of owner, ``log_seq``, the sequence number of the object's last committed batch, and
    ``alarm_at``, the object's alarm (milliseconds since the Unix epoch) or NULL.
``log``
    The committed batches of each object by sequence number, each with the epoch that wrote it.
``snapshot`` and ``snapshot_chunk``
    At most one snapshot per object: the image of its database at a sequence number, in chunks.

How the guarantees are kept: every write that matters is one conditional statement, or a
transaction that first locks the owner row and checks it. Under READ COMMITTED a conditional
``UPDATE ... WHERE epoch = $mine`` that waits on a concurrent update re-evaluates its condition on
the new row version, so it is an atomic compare-and-set; nothing depends on advisory locks or
LISTEN/NOTIFY.

- ``claim`` takes an object's row if it is free, or its holder's lease has lapsed, or its holder
  is draining, or left, or is an older incarnation; it increments the epoch. Only a node whose own
  lease is valid can claim.
- ``commit`` appends a batch and bumps ``log_seq`` (and sets or clears the alarm) in one
  statement, only if the row still has the caller's epoch: two owners can never both commit.
- ``snapshot`` stores an image at a sequence number and deletes the log up to it, in one
  transaction that holds the row lock and checks the epoch.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Final, Self, TypeVar

from twisted.internet.defer import Deferred

from .errors import (
    ClusterError,
    CommitOutcomeUnknown,
    CoordinationUnavailable,
    Fenced,
    LeaseLost,
    LogCorrupt,
    NodeIdInUse,
    SchemaVersionError,
)

try:
    import psycopg
    from psycopg_pool import AsyncConnectionPool, PoolTimeout
except ImportError as e:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "dotwist's cluster mode needs psycopg 3 and psycopg_pool: "
        "pip install 'dotwist[cluster]'"
    ) from e

__all__ = [
    "KEEP",
    "SCHEMA_VERSION",
    "CoordinationStore",
    "DueAlarm",
    "LoadedObject",
    "LogEntry",
    "NodeInfo",
    "NodeLease",
    "OwnerInfo",
    "Ownership",
    "asDeferred",
]

#: Version of the tables this code creates and understands.
SCHEMA_VERSION: Final = 1

_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}\Z")

_T = TypeVar("_T")


class _Keep:
    def __repr__(self) -> str:
        return "KEEP"


#: Passed as ``alarm`` to :meth:`CoordinationStore.commit`: leave the object's alarm as it is.
KEEP: Final = _Keep()


def asDeferred(coro: Awaitable[_T]) -> Deferred[_T]:
    """Run an asyncio coroutine of this module from Twisted code (on the asyncio reactor)."""
    return Deferred.fromFuture(asyncio.ensure_future(coro))


# -- what the store returns -----------------------------------------------------------------------


@dataclass(frozen=True)
class NodeLease:
    """A node's membership: what ``join`` granted. Pass it to every call made as this node."""

    nodeId: str
    incarnation: int
    address: str
    leaseSeconds: float


@dataclass(frozen=True)
class NodeInfo:
    """A node as listed by :meth:`CoordinationStore.liveNodes`.

    ``leaseRemaining`` is the lease left by the database's clock when it was read (seconds).
    """

    nodeId: str
    incarnation: int
    address: str
    state: str
    leaseRemaining: float


@dataclass(frozen=True)
class Ownership:
    """A successful claim: the object is this node's, with ``epoch``; ``seq`` is its last batch."""

    namespace: str
    objectId: str
    epoch: int
    seq: int


@dataclass(frozen=True)
class OwnerInfo:
    """The owner row of an object as :meth:`CoordinationStore.lookup` found it.

    ``nodeId``/``incarnation``/``address`` are None when the object was released (or its holder's
    node row is gone). ``live`` is True only if the holder is this incarnation, ``alive`` (not
    draining), and its lease has not lapsed by the database's clock: only then does it own the object.
    """

    namespace: str
    objectId: str
    nodeId: str | None
    incarnation: int | None
    address: str | None
    epoch: int
    seq: int
    live: bool
    alarm: int | None


@dataclass(frozen=True)
class LogEntry:
    """One committed batch."""

    seq: int
    epoch: int
    body: bytes


@dataclass(frozen=True)
class LoadedObject:
    """What a new owner needs to rebuild an object: the snapshot, then the log after it.

    ``snapshot`` is None if there is none (``snapshotSeq`` is then 0). ``entries`` are the batches
    ``snapshotSeq + 1`` to ``seq`` in order (checked: no gap). ``epoch`` is the owner row's epoch
    when it was read; ``alarm`` its alarm.
    """

    namespace: str
    objectId: str
    epoch: int
    seq: int
    snapshotSeq: int
    snapshot: bytes | None
    entries: tuple[LogEntry, ...]
    alarm: int | None


@dataclass(frozen=True)
class DueAlarm:
    """An object whose alarm is due, with its holder (``live`` as in :class:`OwnerInfo`)."""

    namespace: str
    objectId: str
    scheduledTime: int
    nodeId: str | None
    address: str | None
    live: bool


# -- the store ------------------------------------------------------------------------------------

_LIVE_HOLDER = """
    EXISTS (SELECT 1 FROM {s}.node n
            WHERE n.node_id = o.node_id AND n.incarnation = o.incarnation
              AND n.state = 'alive' AND n.lease_until > now())"""

_LIVE_CLAIMANT = """
    EXISTS (SELECT 1 FROM {s}.node
            WHERE node_id = %(node)s AND incarnation = %(inc)s
              AND state = 'alive' AND lease_until > now())"""


class CoordinationStore:
    """The PostgreSQL side of a cluster: see the module docstring.

    ``conninfo`` is a libpq connection string or URI (``postgresql://user@host/db``). ``schema`` is
    the PostgreSQL schema that holds the tables (letters, digits, ``_``; made if missing).
    ``minConnections``/``maxConnections`` size the pool; ``connectTimeout`` bounds how long an
    operation waits for a connection (then :class:`CoordinationUnavailable`). ``applicationName``
    is shown in ``pg_stat_activity``. ``checkConnections`` tests each pooled connection before
    use (one more round trip per operation): without it, a connection that broke while idle (say,
    PostgreSQL restarted) is found broken by the next operation, which for a commit means
    :class:`CommitOutcomeUnknown` and a reset of the object, although nothing was sent.
    ``reconnectTimeout`` bounds how long the pool keeps retrying a connection that failed (with
    a backoff that doubles each time) before it gives up on that attempt and starts afresh when
    a connection is next needed: a node uses about its lease, so that it is connected again
    within seconds of PostgreSQL coming back.

    Call :meth:`open` (it makes or checks the tables) before anything else, and :meth:`close` at
    the end; or use ``async with store:``.

    The statements are class attributes (``CLAIM_SQL``, ``COMMIT_SQL``, ...) with ``{s}`` standing
    for the schema. Production code never changes them; the tests replace the fenced ones with
    unfenced ones in a subclass, to prove that the fault tests catch a missing fence.
    """

    #: Size of the chunks a snapshot image is stored in (bytes).
    SNAPSHOT_CHUNK: int = 1 << 20

    JOIN_SQL = """
        INSERT INTO {s}.node AS n (node_id, incarnation, address, state, lease_until)
        VALUES (%(node)s, nextval('{s}.incarnation'), %(address)s, 'alive',
                now() + make_interval(secs => %(lease)s))
        ON CONFLICT (node_id) DO UPDATE
            SET incarnation = EXCLUDED.incarnation, address = EXCLUDED.address, state = 'alive',
                lease_until = EXCLUDED.lease_until, joined_at = now()
            WHERE n.state = 'left' OR n.lease_until <= now()
        RETURNING incarnation"""

    RENEW_SQL = """
        UPDATE {s}.node SET lease_until = now() + make_interval(secs => %(lease)s)
        WHERE node_id = %(node)s AND incarnation = %(inc)s AND state IN ('alive', 'draining')
          AND lease_until > now()
        RETURNING incarnation"""

    DRAIN_SQL = """
        UPDATE {s}.node SET state = 'draining'
        WHERE node_id = %(node)s AND incarnation = %(inc)s AND state IN ('alive', 'draining')
          AND lease_until > now()
        RETURNING incarnation"""

    LEAVE_SQL = """
        UPDATE {s}.node SET state = 'left', lease_until = least(lease_until, now())
        WHERE node_id = %(node)s AND incarnation = %(inc)s"""

    LIVE_NODES_SQL = """
        SELECT node_id, incarnation, address, state,
               extract(epoch FROM lease_until - now())::float8
        FROM {s}.node
        WHERE state = ANY(%(states)s) AND lease_until > now()
        ORDER BY node_id"""

    CLAIM_SQL = (
        """
        INSERT INTO {s}.owner AS o (namespace, object_id, node_id, incarnation, epoch, log_seq)
        SELECT %(ns)s, %(oid)s, %(node)s, %(inc)s, 1, 0
        WHERE """
        + _LIVE_CLAIMANT
        + """
        ON CONFLICT (namespace, object_id) DO UPDATE
            SET node_id = EXCLUDED.node_id, incarnation = EXCLUDED.incarnation,
                epoch = o.epoch + 1
            WHERE o.node_id IS NULL OR NOT """
        + _LIVE_HOLDER
        + """
        RETURNING epoch, log_seq"""
    )

    RECLAIM_SQL = (
        """
        UPDATE {s}.owner AS o SET epoch = o.epoch + 1
        WHERE namespace = %(ns)s AND object_id = %(oid)s AND epoch = %(epoch)s
          AND node_id = %(node)s AND incarnation = %(inc)s AND """
        + _LIVE_CLAIMANT
        + """
        RETURNING epoch, log_seq"""
    )

    RELEASE_SQL = """
        UPDATE {s}.owner SET node_id = NULL, incarnation = NULL
        WHERE namespace = %(ns)s AND object_id = %(oid)s AND epoch = %(epoch)s
          AND node_id = %(node)s AND incarnation = %(inc)s
        RETURNING epoch"""

    RELEASE_ALL_SQL = """
        UPDATE {s}.owner SET node_id = NULL, incarnation = NULL
        WHERE node_id = %(node)s AND incarnation = %(inc)s"""

    LOOKUP_SQL = (
        """
        SELECT o.node_id, o.incarnation, n.address, o.epoch, o.log_seq, """
        + _LIVE_HOLDER
        + """, o.alarm_at
        FROM {s}.owner o
        LEFT JOIN {s}.node n ON n.node_id = o.node_id AND n.incarnation = o.incarnation
        WHERE o.namespace = %(ns)s AND o.object_id = %(oid)s"""
    )

    COMMIT_SQL = """
        WITH o AS (
            UPDATE {s}.owner
            SET log_seq = log_seq + 1,
                alarm_at = CASE WHEN %(setAlarm)s THEN %(alarm)s::bigint ELSE alarm_at END
            WHERE namespace = %(ns)s AND object_id = %(oid)s AND epoch = %(epoch)s
              AND (%(after)s::bigint IS NULL OR log_seq = %(after)s::bigint)
            RETURNING log_seq)
        INSERT INTO {s}.log (namespace, object_id, seq, epoch, body)
        SELECT %(ns)s, %(oid)s, log_seq, %(epoch)s, %(body)b FROM o
        RETURNING seq"""

    #: Locks the owner row for a snapshot (the epoch is checked on the locked row).
    SNAPSHOT_LOCK_SQL = """
        SELECT epoch, log_seq FROM {s}.owner
        WHERE namespace = %(ns)s AND object_id = %(oid)s
        FOR UPDATE"""

    DUE_ALARMS_SQL = (
        """
        SELECT o.namespace, o.object_id, o.alarm_at, o.node_id, n.address, """
        + _LIVE_HOLDER
        + """
        FROM {s}.owner o
        LEFT JOIN {s}.node n ON n.node_id = o.node_id AND n.incarnation = o.incarnation
        WHERE o.alarm_at IS NOT NULL
          AND o.alarm_at <= coalesce(%(now)s::bigint,
                                     (extract(epoch FROM now()) * 1000)::bigint)
        ORDER BY o.alarm_at, o.namespace, o.object_id
        LIMIT %(limit)s"""
    )

    def __init__(
        self,
        conninfo: str,
        *,
        schema: str = "dotwist",
        minConnections: int = 1,
        maxConnections: int = 10,
        connectTimeout: float = 10.0,
        applicationName: str = "dotwist",
        checkConnections: bool = False,
        reconnectTimeout: float = 300.0,
    ) -> None:
        if not isinstance(schema, str) or not _SCHEMA_NAME.match(schema):
            raise ValueError(
                f"schema must be a lowercase PostgreSQL name (letters, digits, _; at most 63), "
                f"not {schema!r}"
            )
        if not 1 <= minConnections <= maxConnections:
            raise ValueError(
                f"need 1 <= minConnections <= maxConnections, not {minConnections} and "
                f"{maxConnections}"
            )
        self.schema = schema
        self.connectTimeout = connectTimeout
        self._sql: dict[str, str] = {}
        self._pool: AsyncConnectionPool[psycopg.AsyncConnection[tuple[Any, ...]]] = (
            AsyncConnectionPool(
                conninfo,
                min_size=minConnections,
                max_size=maxConnections,
                timeout=connectTimeout,
                kwargs={"autocommit": True, "application_name": applicationName},
                check=AsyncConnectionPool.check_connection if checkConnections else None,
                reconnect_timeout=reconnectTimeout,
                open=False,
                name=f"dotwist-{schema}",
            )
        )

    def _q(self, name: str) -> str:
        sql = self._sql.get(name)
        if sql is None:
            sql = self._sql[name] = getattr(self, name).replace("{s}", f'"{self.schema}"')
        return sql

    # -- lifetime -------------------------------------------------------------------------------

    async def open(self) -> None:
        """Open the pool (waiting up to ``connectTimeout`` for a first connection), then make or
        check the tables."""
        try:
            await self._pool.open(wait=True, timeout=self.connectTimeout)
        except PoolTimeout as e:
            await self._pool.close()
            raise CoordinationUnavailable(f"cannot connect to PostgreSQL: {e}") from None
        try:
            await self.ensureSchema()
        except BaseException:
            await self._pool.close()
            raise

    async def close(self) -> None:
        await self._pool.close()

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[psycopg.AsyncConnection[tuple[Any, ...]]]:
        try:
            cm = self._pool.connection()
            conn = await cm.__aenter__()
        except PoolTimeout as e:
            raise CoordinationUnavailable(f"no connection to PostgreSQL: {e}") from None
        except psycopg.OperationalError as e:
            raise CoordinationUnavailable(f"cannot connect to PostgreSQL: {e}") from None
        try:
            yield conn
        except BaseException as e:
            await cm.__aexit__(type(e), e, e.__traceback__)
            raise
        else:
            await cm.__aexit__(None, None, None)

    async def _fetch(self, name: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """Run a statement whose failure changes nothing (a read, or a write whose outcome the
        caller re-checks), mapping connection failures to :class:`CoordinationUnavailable`."""
        async with self._connection() as conn:
            try:
                cur = await conn.execute(self._q(name), params)
                return await cur.fetchall() if cur.description is not None else []
            except psycopg.Error as e:
                if conn.broken or conn.closed or e.sqlstate is None:
                    raise CoordinationUnavailable(f"PostgreSQL failed: {e}") from None
                raise ClusterError(f"PostgreSQL refused the statement: {e}") from None

    async def _fenced(
        self,
        what: str,
        namespace: str,
        objectId: str,
        epoch: int,
        run: Callable[[psycopg.AsyncConnection[tuple[Any, ...]]], Awaitable[_T]],
    ) -> _T:
        """Run a fenced write; a failure whose outcome is unknown raises
        :class:`CommitOutcomeUnknown`, one the server reported (nothing applied) :class:`ClusterError`."""
        async with self._connection() as conn:
            try:
                return await run(conn)
            except psycopg.Error as e:
                if conn.broken or conn.closed or e.sqlstate is None:
                    raise CommitOutcomeUnknown(
                        f"the {what} of {namespace}/{objectId} at epoch {epoch} may or may not "
                        f"have been applied: the connection to PostgreSQL failed ({e}); treat "
                        "the object as fenced",
                        namespace=namespace,
                        objectId=objectId,
                        epoch=epoch,
                    ) from None
                raise ClusterError(
                    f"the {what} of {namespace}/{objectId} was refused by PostgreSQL and not "
                    f"applied: {e}"
                ) from None

    # -- schema ---------------------------------------------------------------------------------

    def _schemaStatements(self) -> list[str]:
        return [
            "CREATE SEQUENCE {s}.incarnation",
            """CREATE TABLE {s}.node (
                node_id text PRIMARY KEY,
                incarnation bigint NOT NULL,
                address text NOT NULL,
                state text NOT NULL CHECK (state IN ('alive', 'draining', 'left')),
                lease_until timestamptz NOT NULL,
                joined_at timestamptz NOT NULL DEFAULT now())""",
            """CREATE TABLE {s}.owner (
                namespace text NOT NULL,
                object_id text NOT NULL,
                node_id text,
                incarnation bigint,
                epoch bigint NOT NULL CHECK (epoch > 0),
                log_seq bigint NOT NULL DEFAULT 0 CHECK (log_seq >= 0),
                alarm_at bigint,
                PRIMARY KEY (namespace, object_id))""",
            (
                "CREATE INDEX owner_holder ON {s}.owner (node_id, incarnation) "
                "WHERE node_id IS NOT NULL"
            ),
            "CREATE INDEX owner_alarm ON {s}.owner (alarm_at) WHERE alarm_at IS NOT NULL",
            """CREATE TABLE {s}.log (
                namespace text NOT NULL,
                object_id text NOT NULL,
                seq bigint NOT NULL,
                epoch bigint NOT NULL,
                body bytea NOT NULL,
                PRIMARY KEY (namespace, object_id, seq))""",
            """CREATE TABLE {s}.snapshot (
                namespace text NOT NULL,
                object_id text NOT NULL,
                seq bigint NOT NULL,
                epoch bigint NOT NULL,
                size bigint NOT NULL,
                chunks integer NOT NULL,
                PRIMARY KEY (namespace, object_id))""",
            """CREATE TABLE {s}.snapshot_chunk (
                namespace text NOT NULL,
                object_id text NOT NULL,
                idx integer NOT NULL,
                body bytea NOT NULL,
                PRIMARY KEY (namespace, object_id, idx))""",
        ]

    async def ensureSchema(self) -> None:
        """Make the schema and its tables if missing (safe to run from many processes at once);
        refuse one made by a newer dotwist."""
        s = f'"{self.schema}"'
        for attempt in range(5):
            try:
                async with self._connection() as conn, conn.transaction():
                    await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {s}")
                    await conn.execute(
                        f"CREATE TABLE IF NOT EXISTS {s}.schema_version (version integer NOT NULL)"
                    )
                    await conn.execute(f"LOCK TABLE {s}.schema_version IN EXCLUSIVE MODE")
                    cur = await conn.execute(f"SELECT max(version) FROM {s}.schema_version")
                    row = await cur.fetchone()
                    version = row[0] if row is not None else None
                    if version is None:
                        for statement in self._schemaStatements():
                            await conn.execute(statement.replace("{s}", s))
                        await conn.execute(
                            f"INSERT INTO {s}.schema_version (version) VALUES (%s)",
                            (SCHEMA_VERSION,),
                        )
                    elif version > SCHEMA_VERSION:
                        raise SchemaVersionError(
                            f"the coordination schema {self.schema!r} has version {version}, "
                            f"made by a newer dotwist (this one knows {SCHEMA_VERSION})"
                        )
                return
            except (psycopg.errors.UniqueViolation, psycopg.errors.DuplicateObject,
                    psycopg.errors.DuplicateSchema, psycopg.errors.DuplicateTable):
                # Another process made the same objects at the same moment: look again.
                if attempt == 4:
                    raise
            except psycopg.OperationalError as e:
                raise CoordinationUnavailable(f"cannot set up the schema: {e}") from None

    # -- membership -----------------------------------------------------------------------------

    async def join(self, nodeId: str, address: str, leaseSeconds: float) -> NodeLease:
        """Join as ``nodeId`` with a new incarnation and a lease of ``leaseSeconds``.

        Raises :class:`NodeIdInUse` if another process holds ``nodeId`` with a lease that has not
        lapsed (a node that left, or whose lease lapsed, can be joined again).
        """
        _checkName("nodeId", nodeId)
        if not leaseSeconds > 0:
            raise ValueError(f"leaseSeconds must be positive, not {leaseSeconds!r}")
        rows = await self._fetch(
            "JOIN_SQL", {"node": nodeId, "address": address, "lease": float(leaseSeconds)}
        )
        if not rows:
            raise NodeIdInUse(
                f"node id {nodeId!r} is held by another live process (its lease has not lapsed)"
            )
        return NodeLease(nodeId, int(rows[0][0]), address, float(leaseSeconds))

    async def renew(self, lease: NodeLease) -> None:
        """Extend the lease by its length from the database's ``now()``.

        Raises :class:`LeaseLost` if it had already lapsed, or the node left or rejoined: the node
        must stop answering for its objects. Note the local monotonic time *before* calling, and
        give it to :meth:`~dotwist.cluster.lease.LeaseClock.renewed` when this returns.
        """
        rows = await self._fetch(
            "RENEW_SQL",
            {"node": lease.nodeId, "inc": lease.incarnation, "lease": lease.leaseSeconds},
        )
        if not rows:
            raise LeaseLost(
                f"the lease of node {lease.nodeId!r} (incarnation {lease.incarnation}) has lapsed"
            )

    async def drain(self, lease: NodeLease) -> None:
        """Mark the node draining: it keeps its lease, but other nodes may claim its objects at
        once. Call it only once the node has stopped delivering events to its objects."""
        rows = await self._fetch("DRAIN_SQL", {"node": lease.nodeId, "inc": lease.incarnation})
        if not rows:
            raise LeaseLost(
                f"the lease of node {lease.nodeId!r} (incarnation {lease.incarnation}) has lapsed"
            )

    async def leave(self, lease: NodeLease) -> None:
        """Leave the cluster: the lease ends now, and every object still held becomes claimable."""
        await self._fetch("LEAVE_SQL", {"node": lease.nodeId, "inc": lease.incarnation})

    async def liveNodes(self, *, includeDraining: bool = False) -> list[NodeInfo]:
        """The nodes whose lease has not lapsed by the database's clock, by node id."""
        states = ["alive", "draining"] if includeDraining else ["alive"]
        rows = await self._fetch("LIVE_NODES_SQL", {"states": states})
        return [NodeInfo(r[0], int(r[1]), r[2], r[3], float(r[4])) for r in rows]

    # -- ownership ------------------------------------------------------------------------------

    async def claim(self, lease: NodeLease, namespace: str, objectId: str) -> Ownership | None:
        """Take ownership of an object, with a new epoch; None if a live node holds it.

        The row is taken if the object was never claimed, was released, or its holder is not a
        live ``alive`` node (lease lapsed, draining, left, or an older incarnation). The claimant's
        own lease must be valid (else None too). A node that already holds the object gets None:
        to fence its own earlier tenure, it calls :meth:`reclaim`.
        """
        _checkObject(namespace, objectId)
        rows = await self._fetch(
            "CLAIM_SQL",
            {"ns": namespace, "oid": objectId, "node": lease.nodeId, "inc": lease.incarnation},
        )
        if not rows:
            return None
        return Ownership(namespace, objectId, int(rows[0][0]), int(rows[0][1]))

    async def reclaim(
        self, lease: NodeLease, namespace: str, objectId: str, epoch: int
    ) -> Ownership | None:
        """Bump the epoch of an object this node holds at ``epoch``: after an unknown commit
        outcome, this fences the write if it is still in flight. None if the node no longer holds
        it at that epoch."""
        rows = await self._fetch(
            "RECLAIM_SQL",
            {
                "ns": namespace,
                "oid": objectId,
                "epoch": epoch,
                "node": lease.nodeId,
                "inc": lease.incarnation,
            },
        )
        if not rows:
            return None
        return Ownership(namespace, objectId, int(rows[0][0]), int(rows[0][1]))

    async def release(self, lease: NodeLease, namespace: str, objectId: str, epoch: int) -> bool:
        """Hand an object back (graceful hand-off): any node may claim it at once. False if this
        node did not hold it at ``epoch``. The epoch stays; the next claim increments it."""
        rows = await self._fetch(
            "RELEASE_SQL",
            {
                "ns": namespace,
                "oid": objectId,
                "epoch": epoch,
                "node": lease.nodeId,
                "inc": lease.incarnation,
            },
        )
        return bool(rows)

    async def releaseAll(self, lease: NodeLease) -> int:
        """Release every object this incarnation holds; returns how many."""
        async with self._connection() as conn:
            try:
                cur = await conn.execute(
                    self._q("RELEASE_ALL_SQL"), {"node": lease.nodeId, "inc": lease.incarnation}
                )
            except psycopg.OperationalError as e:
                raise CoordinationUnavailable(f"PostgreSQL failed: {e}") from None
            return cur.rowcount

    async def lookup(self, namespace: str, objectId: str) -> OwnerInfo | None:
        """Who holds the object, where, at which epoch; None if it was never claimed."""
        rows = await self._fetch("LOOKUP_SQL", {"ns": namespace, "oid": objectId})
        if not rows:
            return None
        node, inc, address, epoch, seq, live, alarm = rows[0]
        return OwnerInfo(
            namespace,
            objectId,
            node,
            None if inc is None else int(inc),
            address,
            int(epoch),
            int(seq),
            bool(live),
            None if alarm is None else int(alarm),
        )

    # -- the log --------------------------------------------------------------------------------

    async def commit(
        self,
        namespace: str,
        objectId: str,
        epoch: int,
        body: bytes,
        *,
        after: int | None = None,
        alarm: int | None | _Keep = KEEP,
    ) -> int:
        """Append ``body`` to the object's log, if the object still has ``epoch``; return its
        sequence number.

        One statement, so it applies whole or not at all: it bumps ``log_seq``, inserts the batch
        at the new number, and sets the alarm (``alarm``: milliseconds since the Unix epoch; None
        clears it; :data:`KEEP` leaves it). With ``after``, it applies only if the last batch is
        number ``after`` (a check that the caller's copy is the log's).

        Raises :class:`Fenced` (nothing written) if the epoch is not current or ``after`` does
        not match; :class:`CommitOutcomeUnknown` if the connection failed with the statement in
        flight; :class:`CoordinationUnavailable` if no connection could be had (nothing sent).
        """
        setAlarm = not isinstance(alarm, _Keep)
        if setAlarm and alarm is not None and type(alarm) is not int:
            raise TypeError(f"alarm must be an int (ms), None or KEEP, not {alarm!r}")
        params = {
            "ns": namespace,
            "oid": objectId,
            "epoch": epoch,
            "after": after,
            "setAlarm": setAlarm,
            "alarm": alarm if setAlarm else None,
            "body": bytes(body),
        }
        sql = self._q("COMMIT_SQL")

        async def run(conn: psycopg.AsyncConnection[tuple[Any, ...]]) -> int | None:
            cur = await conn.execute(sql, params)
            row = await cur.fetchone()
            return None if row is None else int(row[0])

        seq = await self._fenced("commit", namespace, objectId, epoch, run)
        if seq is None:
            raise await self._fencedError("commit", namespace, objectId, epoch, after)
        return seq

    async def _fencedError(
        self, what: str, namespace: str, objectId: str, epoch: int, after: int | None = None
    ) -> Fenced:
        try:
            info = await self.lookup(namespace, objectId)
        except ClusterError:
            info = None
        if info is not None and info.epoch == epoch and after is not None:
            message = (
                f"{what} of {namespace}/{objectId} refused: it follows batch {after}, but the "
                f"log is at {info.seq}"
            )
        else:
            where = "" if info is None else f", now epoch {info.epoch} held by {info.nodeId!r}"
            message = f"{what} of {namespace}/{objectId} fenced: epoch {epoch} is not current{where}"
        return Fenced(
            message,
            namespace=namespace,
            objectId=objectId,
            epoch=epoch,
            currentEpoch=None if info is None else info.epoch,
        )

    async def snapshot(
        self, namespace: str, objectId: str, epoch: int, seq: int, image: bytes
    ) -> bool:
        """Store ``image``, the object's database after batch ``seq``, and delete the log up to it.

        Fenced like :meth:`commit` (one transaction that locks the owner row and checks
        ``epoch``). Returns False, changing nothing, if a snapshot at ``seq`` or later is already
        stored. An unknown outcome (:class:`CommitOutcomeUnknown`) leaves the object consistent
        either way (the image and the batches it replaces hold the same state), so unlike a
        commit it needs no reset.
        """
        if seq < 0:
            raise ValueError(f"seq must be >= 0, not {seq}")
        image = bytes(image)
        chunk = self.SNAPSHOT_CHUNK
        chunks = [image[i : i + chunk] for i in range(0, len(image), chunk)] or [b""]
        key = {"ns": namespace, "oid": objectId}
        s = f'"{self.schema}"'
        lockSql = self._q("SNAPSHOT_LOCK_SQL")

        async def run(conn: psycopg.AsyncConnection[tuple[Any, ...]]) -> bool | None:
            async with conn.transaction():
                cur = await conn.execute(lockSql, key)
                row = await cur.fetchone()
                if row is None or int(row[0]) != epoch:
                    return None
                if seq > int(row[1]):
                    raise ValueError(
                        f"snapshot at batch {seq} of {namespace}/{objectId}, but its log ends "
                        f"at {row[1]}"
                    )
                cur = await conn.execute(
                    f"SELECT seq FROM {s}.snapshot WHERE namespace = %(ns)s AND object_id = %(oid)s",
                    key,
                )
                old = await cur.fetchone()
                if old is not None and int(old[0]) >= seq:
                    return False
                await conn.execute(
                    f"DELETE FROM {s}.snapshot_chunk "
                    "WHERE namespace = %(ns)s AND object_id = %(oid)s",
                    key,
                )
                await conn.execute(
                    f"""INSERT INTO {s}.snapshot (namespace, object_id, seq, epoch, size, chunks)
                    VALUES (%(ns)s, %(oid)s, %(seq)s, %(epoch)s, %(size)s, %(chunks)s)
                    ON CONFLICT (namespace, object_id) DO UPDATE
                    SET seq = EXCLUDED.seq, epoch = EXCLUDED.epoch, size = EXCLUDED.size,
                        chunks = EXCLUDED.chunks""",
                    {**key, "seq": seq, "epoch": epoch, "size": len(image), "chunks": len(chunks)},
                )
                async with conn.cursor() as cur:
                    await cur.executemany(
                        f"INSERT INTO {s}.snapshot_chunk (namespace, object_id, idx, body) "
                        "VALUES (%s, %s, %s, %b)",
                        [(namespace, objectId, i, c) for i, c in enumerate(chunks)],
                    )
                await conn.execute(
                    f"DELETE FROM {s}.log "
                    "WHERE namespace = %(ns)s AND object_id = %(oid)s AND seq <= %(seq)s",
                    {**key, "seq": seq},
                )
            return True

        stored = await self._fenced("snapshot", namespace, objectId, epoch, run)
        if stored is None:
            raise await self._fencedError("snapshot", namespace, objectId, epoch)
        return stored

    async def load(self, namespace: str, objectId: str, epoch: int | None = None) -> LoadedObject:
        """Read the object's snapshot and the log after it, in one consistent read.

        With ``epoch``, raises :class:`Fenced` unless it is the object's current epoch (a new
        owner passes the epoch it just claimed). An object never claimed or never written loads
        as empty (no snapshot, no entries, ``seq`` 0). Raises :class:`LogCorrupt` if the stored
        log has a gap or a snapshot lacks chunks.
        """
        s = f'"{self.schema}"'
        key = {"ns": namespace, "oid": objectId}
        where = "WHERE namespace = %(ns)s AND object_id = %(oid)s"
        async with self._connection() as conn:
            try:
                async with conn.transaction():
                    await conn.execute(
                        "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"
                    )
                    cur = await conn.execute(
                        f"SELECT epoch, log_seq, alarm_at FROM {s}.owner {where}", key
                    )
                    owner = await cur.fetchone()
                    cur = await conn.execute(
                        f"SELECT seq, size, chunks FROM {s}.snapshot {where}", key
                    )
                    snap = await cur.fetchone()
                    chunks: list[bytes] = []
                    if snap is not None:
                        cur = await conn.execute(
                            f"SELECT idx, body FROM {s}.snapshot_chunk {where} ORDER BY idx",
                            key,
                            binary=True,
                        )
                        chunks = [bytes(r[1]) for r in await cur.fetchall()]
                    snapSeq = 0 if snap is None else int(snap[0])
                    cur = await conn.execute(
                        f"SELECT seq, epoch, body FROM {s}.log {where} AND seq > %(after)s "
                        "ORDER BY seq",
                        {**key, "after": snapSeq},
                        binary=True,
                    )
                    rows = await cur.fetchall()
            except psycopg.OperationalError as e:
                raise CoordinationUnavailable(f"PostgreSQL failed: {e}") from None
        if owner is None:
            if epoch is not None:
                raise Fenced(
                    f"load of {namespace}/{objectId} fenced: it has no owner",
                    namespace=namespace,
                    objectId=objectId,
                    epoch=epoch,
                )
            return LoadedObject(namespace, objectId, 0, 0, 0, None, (), None)
        currentEpoch, seq, alarm = int(owner[0]), int(owner[1]), owner[2]
        if epoch is not None and epoch != currentEpoch:
            raise Fenced(
                f"load of {namespace}/{objectId} fenced: epoch {epoch} is not current "
                f"({currentEpoch})",
                namespace=namespace,
                objectId=objectId,
                epoch=epoch,
                currentEpoch=currentEpoch,
            )
        image: bytes | None = None
        if snap is not None:
            image = b"".join(chunks)
            if len(chunks) != int(snap[2]) or len(image) != int(snap[1]):
                raise LogCorrupt(
                    f"the snapshot of {namespace}/{objectId} at batch {snapSeq} is incomplete: "
                    f"{len(chunks)} of {snap[2]} chunks, {len(image)} of {snap[1]} bytes"
                )
        entries = tuple(LogEntry(int(r[0]), int(r[1]), bytes(r[2])) for r in rows)
        expected = list(range(snapSeq + 1, seq + 1))
        if [e.seq for e in entries] != expected:
            found = [e.seq for e in entries]
            raise LogCorrupt(
                f"the log of {namespace}/{objectId} has a gap: the snapshot is at batch "
                f"{snapSeq} and the log at {seq}, but the stored batches are "
                f"{_ranges(found) or 'none'}"
            )
        return LoadedObject(
            namespace,
            objectId,
            currentEpoch,
            seq,
            snapSeq,
            image,
            entries,
            None if alarm is None else int(alarm),
        )

    # -- the cluster's shared secret ------------------------------------------------------------

    async def sharedSecret(self) -> str:
        """The secret nodes authenticate each other's calls with: made (random) by the first node
        that asks, kept in the schema's ``secret`` table."""
        import secrets

        s = f'"{self.schema}"'
        async with self._connection() as conn:
            for attempt in range(5):
                try:
                    try:
                        await conn.execute(
                            f"CREATE TABLE IF NOT EXISTS {s}.secret (id integer PRIMARY KEY "
                            "CHECK (id = 1), value text NOT NULL)"
                        )
                    except (psycopg.errors.UniqueViolation, psycopg.errors.DuplicateTable,
                            psycopg.errors.DuplicateObject):
                        pass  # another node made it at the same moment
                    await conn.execute(
                        f"INSERT INTO {s}.secret (id, value) VALUES (1, %s) ON CONFLICT (id) DO NOTHING",
                        (secrets.token_hex(32),),
                    )
                    cur = await conn.execute(f"SELECT value FROM {s}.secret WHERE id = 1")
                    row = await cur.fetchone()
                except psycopg.errors.UndefinedTable:
                    continue  # made by another node, not committed yet: look again
                except psycopg.OperationalError as e:
                    raise CoordinationUnavailable(f"PostgreSQL failed: {e}") from None
                if row is not None:
                    return str(row[0])
        raise ClusterError("could not read or make the cluster's shared secret")

    # -- alarms ---------------------------------------------------------------------------------

    async def dueAlarms(self, limit: int = 100, *, now: int | None = None) -> list[DueAlarm]:
        """Objects whose alarm is at or before ``now`` (ms since the Unix epoch; the database's
        clock if None), earliest first, at most ``limit``."""
        rows = await self._fetch("DUE_ALARMS_SQL", {"now": now, "limit": limit})
        return [DueAlarm(r[0], r[1], int(r[2]), r[3], r[4], bool(r[5])) for r in rows]

    async def nextAlarm(self) -> int | None:
        """The earliest alarm set in the cluster (ms since the Unix epoch), or None."""
        async with self._connection() as conn:
            try:
                cur = await conn.execute(
                    f'SELECT min(alarm_at) FROM "{self.schema}".owner WHERE alarm_at IS NOT NULL'
                )
                row = await cur.fetchone()
            except psycopg.OperationalError as e:
                raise CoordinationUnavailable(f"PostgreSQL failed: {e}") from None
        return None if row is None or row[0] is None else int(row[0])

    def __repr__(self) -> str:
        return f"<CoordinationStore schema={self.schema!r}>"


class UnfencedStore(CoordinationStore):
    """FOR TESTS ONLY: the store with its fences removed (a claim takes the row whoever holds
    it, a commit ignores the epoch). ``tests/cluster`` runs its fault tests against it to prove
    that they catch a missing fence; :func:`storeClass` returns it only when the environment
    variable ``DOTWIST_TESTS_ONLY_UNFENCED`` is ``1``. Never set that variable in production:
    two owners could then commit, and acknowledged writes be lost."""

    CLAIM_SQL = """
        INSERT INTO {s}.owner AS o (namespace, object_id, node_id, incarnation, epoch, log_seq)
        VALUES (%(ns)s, %(oid)s, %(node)s, %(inc)s, 1, 0)
        ON CONFLICT (namespace, object_id) DO UPDATE
            SET node_id = EXCLUDED.node_id, incarnation = EXCLUDED.incarnation,
                epoch = o.epoch + 1
        RETURNING epoch, log_seq"""

    COMMIT_SQL = CoordinationStore.COMMIT_SQL.replace(" AND epoch = %(epoch)s", "").replace(
        "AND (%(after)s::bigint IS NULL OR log_seq = %(after)s::bigint)", ""
    )


def storeClass() -> type[CoordinationStore]:
    """The store class a node uses: :class:`CoordinationStore`, or, for the fault tests' proof
    only, :class:`UnfencedStore` (see there)."""
    import os

    if os.environ.get("DOTWIST_TESTS_ONLY_UNFENCED") == "1":
        return UnfencedStore
    return CoordinationStore


def _checkName(what: str, value: object) -> None:
    if not isinstance(value, str) or not value or len(value) > 256 or "\x00" in value:
        raise ValueError(f"{what} must be a non-empty str of at most 256 characters, not {value!r}")


def _checkObject(namespace: object, objectId: object) -> None:
    _checkName("namespace", namespace)
    _checkName("objectId", objectId)


def _ranges(seqs: Sequence[int]) -> str:
    out: list[str] = []
    for n in seqs:
        if out and out[-1].split("-")[-1] == str(n - 1):
            out[-1] = out[-1].split("-")[0] + f"-{n}"
        else:
            out.append(str(n))
    return ", ".join(out)
