"""One cluster node: its membership and lease, the objects it owns, and where other objects are.

:class:`ClusterNode` joins the cluster (``CoordinationStore.join``), renews its lease on a timer
and checks its :class:`~dotwist.cluster.lease.LeaseClock` before every answer: once the clock says
the lease may have lapsed, the node drops every object it owns (their instances are reset, nothing
more is answered for them) and, if PostgreSQL says the lease is gone, joins again with a new
incarnation.

Ownership: :meth:`ClusterNode.acquire` says where an object is served. If this node owns it (and
may answer), here; if a live node holds it, there; if nobody does, the *preferred* node
(rendezvous hashing over the live nodes) should take it: this node claims it if it is the
preferred one (or if another node sent the call here), loads it from PostgreSQL into its local
SQLite file (``ObjectReplica.load``) and owns it from then on. The registry sees all of this as
its :class:`~dotwist.placement.Placement` (``isLocal``) and the storage backend as ``replicaOf``.

A replica whose commit was fenced, or whose outcome is unknown, is broken: its object was reset
by the storage session, and the next call claims it again (``reclaim`` if this node still holds
it: a new epoch fences the write that may still be on its way) and reloads it.

Alarms: each object's alarm time is in its owner row. While the node owns an object its alarm is
timed locally (the registry's scheduler); every ``alarmPoll`` seconds the node also asks which
alarms are due cluster-wide, and takes (claims, loads, fires) those whose holder is not live and
whose preferred node it is.

Graceful hand-off (:meth:`ClusterNode.handOff`): once the service stopped delivering events and
committed what the objects wrote, the node marks itself draining, releases every object and
leaves; other nodes take them at once.

Runs on Twisted's asyncio reactor: the store is asyncio (psycopg 3), everything here is
coroutines wrapped with ``asDeferred``.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from .. import websocket
from ..errors import DurableObjectError, DurableObjectUnavailable
from .errors import ClusterError, CoordinationUnavailable, LeaseLost
from .lease import LeaseClock
from .rendezvous import preferredNode
from .replica import ObjectReplica
from .store import CoordinationStore, NodeLease, Ownership, asDeferred

if TYPE_CHECKING:  # pragma: no cover
    from ..registry import ObjectRegistry

__all__ = ["ClusterNode", "Owned", "safeNodeDirectory"]

_log = Logger(namespace="dotwist.cluster")


@dataclass
class Owned:
    """An object this node owns: the claim and the replica of its storage."""

    ownership: Ownership
    replica: ObjectReplica

    @property
    def epoch(self) -> int:
        return self.ownership.epoch


def safeNodeDirectory(nodeId: str) -> str:
    """A directory name for a node id (anything but letters, digits, ``.``, ``_``, ``-`` becomes
    ``_``)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", nodeId) or "_"


def unavailable(message: str) -> DurableObjectUnavailable:
    """The error of a call that cannot reach its object now because the object is moving (or the
    cluster cannot place it): retryable, and a ``503`` with ``Retry-After`` from the Worker."""
    return DurableObjectUnavailable(message)


class ClusterNode:
    """See the module docstring. ``dataDir`` holds this node's local copies of its objects
    (``storage``, a :class:`~dotwist.cluster.storage.ReplicatedBackend` over it, is set by
    :meth:`attach`)."""

    def __init__(
        self,
        store: CoordinationStore,
        nodeId: str,
        *,
        leaseSeconds: float = 10.0,
        reactor: Optional[IReactorTime] = None,
        alarmPoll: float = 1.0,
        maxDrift: float = 0.01,
        margin: Optional[float] = None,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        self.reactor: Any = reactor
        self.store = store
        self.nodeId = nodeId
        self.leaseSeconds = float(leaseSeconds)
        self.alarmPoll = alarmPoll
        self.maxDrift = maxDrift
        #: Kept back from the lease on top of the drift (default: 0.5 s, less for short leases).
        self.margin = margin if margin is not None else min(0.5, self.leaseSeconds / 8)
        self.clock = self._newClock()
        self.lease: Optional[NodeLease] = None
        #: The address other nodes reach this node's channel at (host:port).
        self.address = ""
        self.owned: dict[tuple[str, str], Owned] = {}
        self.registry: Optional["ObjectRegistry"] = None
        self.storage: Any = None
        #: Fires once the node has joined (or fails if it could not).
        self.ready: Deferred[None] = Deferred()
        self.draining = False
        self.stopped = False
        self._acquiring: dict[tuple[str, str], list[Deferred[Optional[str]]]] = {}
        self._ticker: Optional[LoopingCall] = None
        self._alarmLoop: Optional[LoopingCall] = None
        self._renewing = False
        self._rejoining = False
        self._polling = False
        #: How many times the node found its lease gone and joined again.
        self.rejoins = 0

    def _newClock(self) -> LeaseClock:
        return LeaseClock(self.leaseSeconds, maxDrift=self.maxDrift, margin=self.margin)

    def attach(self, registry: "ObjectRegistry", storage: Any) -> None:
        """Serve ``registry``'s objects: its placement is this node, its storage ``storage``."""
        self.registry = registry
        self.storage = storage
        registry.placement = self

    # -- what the runtime asks -------------------------------------------------------------------

    def serving(self) -> bool:
        """The node may answer for its objects now (joined, not draining, the lease holds)."""
        return (
            self.lease is not None
            and not self.draining
            and self.clock.mayAnswer(time.monotonic())
        )

    def ownedHere(self, namespace: str, objectId: str) -> Optional[Owned]:
        """The object if this node owns it and may answer for it now."""
        owned = self.owned.get((namespace, objectId))
        if owned is None or owned.replica.broken is not None or not self.serving():
            return None
        return owned

    def isLocal(self, namespace: str, objectId: str) -> bool:
        """``Placement``: only an object this node owns, while it may answer, runs here."""
        return self.ownedHere(namespace, objectId) is not None

    def replicaOf(self, namespace: str, objectId: str) -> Optional[ObjectReplica]:
        owned = self.ownedHere(namespace, objectId)
        return owned.replica if owned is not None else None

    # -- lifetime --------------------------------------------------------------------------------

    async def start(self, address: str) -> None:
        """Open the store, join, and start the timers."""
        self.address = address
        await self.store.open()
        await self._join()
        interval = max(0.05, self.leaseSeconds / 10)
        self._ticker = LoopingCall(self._tick)
        self._ticker.clock = self.reactor
        self._ticker.start(interval, now=False)
        if self.alarmPoll > 0:
            self._alarmLoop = LoopingCall(self._pollAlarms)
            self._alarmLoop.clock = self.reactor
            self._alarmLoop.start(self.alarmPoll, now=False)
        _log.info(
            "Cluster node {node} joined (incarnation {incarnation}, lease {lease:g} s), "
            "reachable at {address}",
            node=self.nodeId, incarnation=self.lease.incarnation if self.lease else None,
            lease=self.leaseSeconds, address=address,
        )
        if not self.ready.called:
            self.ready.callback(None)

    async def _join(self) -> None:
        clock = self._newClock()
        sent = time.monotonic()
        try:
            lease = await asyncio.wait_for(
                self.store.join(self.nodeId, self.address, self.leaseSeconds),
                timeout=max(5.0, self.leaseSeconds),
            )
        except asyncio.TimeoutError:
            raise CoordinationUnavailable("joining the cluster timed out") from None
        clock.renewed(sent)
        self.clock = clock
        self.lease = lease

    def _tick(self) -> None:
        """The lease's timer: drop the objects when the lease may have lapsed; renew when due."""
        if self.stopped:
            return
        now = time.monotonic()
        if self.owned and not self.clock.mayAnswer(now):
            self.dropAll("the node's lease may have lapsed (no renewal in time)")
        if self.lease is None or self._renewing or self._rejoining:
            return
        if self.clock.isLost:
            self._rejoin()
            return
        if self.clock.renewDue(now):
            self._renewing = True
            asDeferred(self._renew()).addBoth(self._renewed)

    async def _renew(self) -> None:
        lease = self.lease
        assert lease is not None
        sent = time.monotonic()
        try:
            # Bounded: a renewal stuck on a broken link must not keep the next one from being
            # sent once the link is back.
            await asyncio.wait_for(self.store.renew(lease), timeout=max(1.0, self.leaseSeconds))
        except asyncio.TimeoutError:
            raise CoordinationUnavailable(
                f"renewing the lease took longer than {max(1.0, self.leaseSeconds):g} s"
            ) from None
        except LeaseLost:
            if lease is self.lease:
                self.clock.lost()
                self.dropAll("the node's lease lapsed")
            raise
        if lease is self.lease:
            self.clock.renewed(sent)

    def _renewed(self, result: object) -> None:
        self._renewing = False
        if isinstance(result, Failure):
            if result.check(LeaseLost):
                _log.warn("Cluster node {node}: lease lost; joining again", node=self.nodeId)
                self._rejoin()
            elif result.check(CoordinationUnavailable, ClusterError, OSError):
                _log.warn(
                    "Cluster node {node}: renewing the lease failed: {error}",
                    node=self.nodeId, error=result.getErrorMessage(),
                )
            else:
                _log.failure("Cluster node {node}: renewing the lease failed", result, node=self.nodeId)

    def _rejoin(self) -> None:
        if self._rejoining or self.stopped or self.draining:
            return
        self._rejoining = True
        self.lease = None

        def done(result: object) -> None:
            self._rejoining = False
            if isinstance(result, Failure):
                _log.warn(
                    "Cluster node {node}: joining again failed ({error}); trying again",
                    node=self.nodeId, error=result.getErrorMessage(),
                )
            else:
                self.rejoins += 1
                _log.info(
                    "Cluster node {node} joined again (incarnation {incarnation})",
                    node=self.nodeId, incarnation=self.lease.incarnation if self.lease else None,
                )

        asDeferred(self._join()).addBoth(done)

    def dropAll(self, why: str) -> None:
        """Stop serving every owned object at once: reset the live instances, forget the claims
        (PostgreSQL still names this node until another claims them)."""
        if not self.owned:
            return
        _log.warn(
            "Cluster node {node} drops its {count} objects: {why}",
            node=self.nodeId, count=len(self.owned), why=why,
        )
        for namespace, objectId in list(self.owned):
            self.drop(namespace, objectId, why)

    def drop(self, namespace: str, objectId: str, why: str, closeCode: int = 1012) -> None:
        """Stop serving one object: reset its instance (if live), close its hibernatable
        WebSockets (with ``closeCode``: the clients reconnect and reach the new owner), forget its
        claim here."""
        self.owned.pop((namespace, objectId), None)
        registry = self.registry
        if registry is None:
            return
        registry.alarms.cancel(namespace, objectId)
        actor = registry.liveActor(namespace, objectId)
        if actor is not None:
            actor.reset(unavailable(f"The Durable Object moved to another node ({why})."))
        record = registry.records.pop((namespace, objectId), None)
        if record is not None:
            for ws in list(record.sockets):
                websocket.closeByRuntime(ws, closeCode, "The Durable Object moved; reconnect")

    # -- where an object is served ---------------------------------------------------------------

    def acquire(self, namespace: str, objectId: str, forwarded: bool = False) -> Deferred[Optional[str]]:
        """Fires with None once the object is served here, or with the address of the node that
        serves it (or should). ``forwarded``: another node sent the call here, so this node takes
        a free object itself instead of sending it on. Fails with a retryable
        ``DurableObjectError`` when no node can serve it now."""
        if self.ownedHere(namespace, objectId) is not None:
            return succeed(None)
        key = (namespace, objectId)
        waiter: Deferred[Optional[str]] = Deferred()
        waiters = self._acquiring.get(key)
        if waiters is not None:
            waiters.append(waiter)
            return waiter
        waiters = self._acquiring[key] = [waiter]

        def finished(result: Any) -> None:
            if self._acquiring.get(key) is waiters:
                del self._acquiring[key]
            for w in waiters:
                if isinstance(result, Failure):
                    w.errback(result)
                else:
                    w.callback(result)

        asDeferred(self._acquire(namespace, objectId, forwarded)).addBoth(finished)
        return waiter

    async def _acquire(self, namespace: str, objectId: str, forwarded: bool) -> Optional[str]:
        if not self.ready.called:
            await Deferred.asFuture(_chained(self.ready), asyncio.get_running_loop())
        if self.ownedHere(namespace, objectId) is not None:
            return None
        if not self.serving():
            raise unavailable(f"Cluster node {self.nodeId} cannot serve objects now (lease or drain).")
        lease = self.lease
        assert lease is not None
        store = self.store
        try:
            info = await store.lookup(namespace, objectId)
            if info is not None and info.live and info.nodeId is not None:
                if info.nodeId == lease.nodeId and info.incarnation == lease.incarnation:
                    # Held by this very node, but not served (its replica broke, or the lease
                    # clock ran out in between): a new epoch fences anything still in flight.
                    mine = await store.reclaim(lease, namespace, objectId, info.epoch)
                    if mine is None:
                        raise unavailable("The Durable Object changed owner; try again.")
                    return await self._load(mine)
                return info.address
            if not forwarded:
                live = await store.liveNodes()
                if live:
                    preferred = preferredNode([n.nodeId for n in live], namespace, objectId)
                    if preferred != self.nodeId:
                        return next(n.address for n in live if n.nodeId == preferred)
            mine = await store.claim(lease, namespace, objectId)
            if mine is None:
                info = await store.lookup(namespace, objectId)
                if info is not None and info.live and info.nodeId != self.nodeId:
                    return info.address
                raise unavailable("The Durable Object is being taken over; try again.")
            return await self._load(mine)
        except ClusterError as e:
            raise unavailable(f"The cluster cannot place the Durable Object now: {e}") from None

    async def _load(self, ownership: Ownership) -> Optional[str]:
        namespace, objectId = ownership.namespace, ownership.objectId
        registry, storage = self.registry, self.storage
        assert registry is not None and storage is not None
        old = registry.liveActor(namespace, objectId)
        if old is not None:
            old.reset(unavailable("The Durable Object is being loaded again."))
        path = storage.pathFor(namespace, objectId)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        replica = await ObjectReplica.load(self.store, ownership, path)
        if self.lease is None or not self.serving():
            raise unavailable("The node lost its lease while loading the Durable Object.")
        self.owned[(namespace, objectId)] = Owned(ownership, replica)
        if replica.alarm is not None:
            registry.alarms.schedule(namespace, objectId, replica.alarm, 0)
        return None

    # -- alarms ----------------------------------------------------------------------------------

    def _pollAlarms(self) -> None:
        if self._polling or not self.serving() or self.registry is None:
            return
        self._polling = True

        def done(result: object) -> None:
            self._polling = False
            if isinstance(result, Failure) and not result.check(ClusterError, DurableObjectError):
                _log.failure("Cluster node {node}: polling alarms failed", result, node=self.nodeId)

        asDeferred(self._pollOnce()).addBoth(done)

    async def _pollOnce(self) -> None:
        registry = self.registry
        assert registry is not None
        due = await self.store.dueAlarms(limit=100)
        if not due:
            return
        live: Optional[list[str]] = None
        for alarm in due:
            if alarm.namespace not in registry.namespaces:
                continue
            key = (alarm.namespace, alarm.objectId)
            if key in self.owned:
                if registry.alarms.scheduled(*key) is None and self.ownedHere(*key) is not None:
                    registry.alarms.schedule(alarm.namespace, alarm.objectId, alarm.scheduledTime, 0)
                continue
            if alarm.live:
                continue  # its holder fires it
            if live is None:
                live = [n.nodeId for n in await self.store.liveNodes()]
            if not live or preferredNode(live, alarm.namespace, alarm.objectId) != self.nodeId:
                continue
            try:
                where = await Deferred.asFuture(
                    _chained(self.acquire(alarm.namespace, alarm.objectId, forwarded=True)),
                    asyncio.get_running_loop(),
                )
            except DurableObjectError:
                continue
            if where is None:
                _log.info(
                    "Cluster node {node} took {namespace}/{objectId} over for its alarm",
                    node=self.nodeId, namespace=alarm.namespace, objectId=alarm.objectId,
                )

    # -- graceful hand-off -----------------------------------------------------------------------

    def handOff(self) -> Deferred[None]:
        """Mark draining, release every object, leave (the service calls this once nothing
        runs in the objects and their writes are committed)."""
        return asDeferred(self._handOff())

    async def _handOff(self) -> None:
        lease = self.lease
        self.draining = True
        self._stopTimers()
        if lease is None:
            return
        try:
            await self.store.drain(lease)
        except ClusterError as e:
            _log.warn("Cluster node {node}: marking itself draining failed: {error}", node=self.nodeId, error=e)
        released = 0
        for (namespace, objectId), owned in list(self.owned.items()):
            replica = owned.replica
            if replica.broken is None and not replica.isIdle:
                try:
                    await replica.committed()
                except Exception:
                    pass
            self.drop(namespace, objectId, "the node is shutting down", closeCode=1001)
            try:
                if await self.store.release(lease, namespace, objectId, owned.epoch):
                    released += 1
            except ClusterError:
                pass
        try:
            await self.store.leave(lease)
        except ClusterError as e:
            _log.warn("Cluster node {node}: leaving failed: {error}", node=self.nodeId, error=e)
        _log.info(
            "Cluster node {node} released {count} objects and left", node=self.nodeId, count=released
        )

    def _stopTimers(self) -> None:
        for loop in (self._ticker, self._alarmLoop):
            if loop is not None and loop.running:
                loop.stop()
        self._ticker = self._alarmLoop = None

    def close(self) -> Deferred[None]:
        """Stop the timers and close the store (after :meth:`handOff`)."""
        self.stopped = True
        self._stopTimers()
        return asDeferred(self.store.close())

    def __repr__(self) -> str:
        return f"<ClusterNode {self.nodeId} owns={len(self.owned)} serving={self.serving()}>"


def _relay(waiter: "Deferred[Any]") -> Any:
    def relay(result: object) -> object:
        if isinstance(result, Failure):
            waiter.errback(result)
        else:
            waiter.callback(result)
        return result

    return relay


def _chained(d: "Deferred[Any]") -> "Deferred[Any]":
    """A new Deferred with ``d``'s outcome (so waiting on it does not consume ``d``'s)."""
    out: Deferred[Any] = Deferred()
    d.addBoth(_relay(out))
    return out
