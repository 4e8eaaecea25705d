"""Calls between cluster nodes: the router that sends a stub's call to the object's owner.

Any node accepts any request. The Worker runs on the node that received it; when it (or an
object) calls a Durable Object through a stub, :class:`ClusterRouter` (the registry's ``router``)
asks the node where the object is served (:meth:`~dotwist.cluster.node.ClusterNode.acquire`):

- here: the call runs in the local registry exactly as in one process;
- on another node: the call is encoded as data (:mod:`dotwist.cluster.calls`) and sent to that
  node on the node-to-node channel (:mod:`dotwist.cluster.wire`: one persistent, authenticated
  connection per pair of nodes), which runs it there and sends the outcome back. If that node
  does not own the object (it moved), it says where it went, and the caller tries again there, a
  bounded number of times.

Every ``Response`` an object returns through the cluster carries the node that ran it and the
owner's epoch (``dotwist-node``, ``dotwist-epoch`` headers). A ``101`` with a ``webSocket`` from
an object on another node is relayed on the same channel (:mod:`dotwist.cluster.wsproxy`).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, Callable, Optional

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectError, ConnectionClosed
from twisted.logger import Logger

from ..errors import DurableObjectError, DurableObjectUnavailable, unavailableIn
from ..fetch import Response
from ..ids import DurableObjectId
from ..stubs import callFetch
from .calls import (
    Call,
    Moved,
    Upgrade,
    decodeCall,
    decodeReply,
    encodeCall,
    encodeError,
    encodeMoved,
    encodeReply,
    encodeUpgrade,
)
from .node import ClusterNode, Owned, unavailable
from .store import asDeferred
from .wire import CallClient, CallOutcomeUnknown, Channel, WireBroken
from .wsproxy import OwnerSockets, relay

if TYPE_CHECKING:  # pragma: no cover
    from ..registry import Namespace, ObjectRegistry

__all__ = ["CallLost", "ClusterRouter", "NodeClient", "NodeUnreachable"]

_log = Logger(namespace="dotwist.cluster")

NODE_HEADER = "dotwist-node"
EPOCH_HEADER = "dotwist-epoch"


class NodeClient:
    """The calling side of the channel: one persistent connection to each other node
    (``dotwist.cluster.wire``), many calls in flight on it."""

    def __init__(self, reactor: Any, secret: str, *, timeout: float = 120.0) -> None:
        self.reactor = reactor
        self.wire = CallClient(reactor, secret, callTimeout=timeout)

    @property
    def secret(self) -> str:
        return self.wire.secret

    @secret.setter
    def secret(self, value: str) -> None:
        self.wire.secret = value

    async def call(self, address: str, body: bytes, method: Callable[..., Any]) -> tuple[Any, dict[str, Any], Channel]:
        """Send the call to ``address``; (result, reply, the channel it went on). Raises the
        call's error, ``Moved``, ``NodeUnreachable`` (not sent) or ``CallLost`` (sent, outcome
        unknown)."""
        try:
            channel, data = await Deferred.asFuture(self.wire.call(address, body), asyncio.get_running_loop())
        except CallOutcomeUnknown as e:
            raise CallLost(address, e) from None
        except (WireBroken, ConnectError, ConnectionClosed, OSError) as e:
            raise NodeUnreachable(address, e) from None
        result, reply = decodeReply(data, method)
        return result, reply, channel

    def close(self) -> Deferred[None]:
        self.wire.close()
        return succeed(None)


class NodeUnreachable(Exception):
    """The node at ``address`` could not be reached: the call was not sent."""

    def __init__(self, address: str, cause: BaseException) -> None:
        super().__init__(f"cluster node {address} is unreachable: {cause}")
        self.address = address


class CallLost(Exception):
    """The call was sent to ``address`` and its connection broke (or its time ran out) before
    the reply: it may have run there, whole or in part."""

    def __init__(self, address: str, cause: BaseException) -> None:
        super().__init__(f"lost the call to cluster node {address}: {cause}")
        self.address = address


class ClusterRouter:
    """The registry's ``router`` in a cluster: see the module docstring."""

    def __init__(self, node: ClusterNode, registry: "ObjectRegistry", client: NodeClient, *, maxHops: int = 4) -> None:
        self.node = node
        self.registry = registry
        self.client = client
        self.maxHops = maxHops
        #: WebSockets of objects here whose clients reached other nodes.
        self.ownerSockets = OwnerSockets(node.reactor, registry.limits.closeHandshakeTimeout)
        #: Calls sent to other nodes, and calls other nodes sent here.
        self.forwarded = 0
        self.served = 0
        #: Where objects served by other nodes were last found, and when (monotonic seconds):
        #: for half a lease after a call there succeeded, the next call goes there at once (a
        #: node that no longer owns it says so, and the entry is corrected); after that the
        #: owner is looked up again, so that an owner that stopped answering (paused, cut off)
        #: is found out once its lease lapsed.
        self.locations: dict[tuple[str, str], tuple[str, float]] = {}
        self.maxLocations = 100_000

    # -- a stub's call ---------------------------------------------------------------------------

    def send(
        self,
        namespace: "Namespace",
        objectId: DurableObjectId,
        method: Callable[..., Any],
        args: tuple[Any, ...],
        size: int,
    ) -> Deferred[Any]:
        owned = self.node.ownedHere(namespace.name, objectId.toString())
        if owned is not None:
            return self.runHere(namespace, objectId, owned, method, args, size)
        return asDeferred(self._route(namespace, objectId, method, args, size))

    def runHere(
        self,
        namespace: "Namespace",
        objectId: DurableObjectId,
        owned: Owned,
        method: Callable[..., Any],
        args: tuple[Any, ...],
        size: int,
    ) -> Deferred[Any]:
        """Run the call in this node's instance of the object; its outcome is given only if the
        node still owns the object when it is ready."""
        node = self.node
        key = (namespace.name, objectId.toString())
        try:
            actor = self.registry.actorFor(namespace, objectId)
        except Exception:
            if node.owned.get(key) is not owned or not node.serving():
                # The node stopped serving it in between (its lease clock ran out).
                return fail(unavailable("The Durable Object moved to another node; try again."))
            return fail()

        def stamp(result: Any) -> Any:
            if node.owned.get(key) is not owned or not node.serving():
                raise unavailable("The Durable Object moved to another node before answering; try again.")
            if isinstance(result, Response):
                result.headers.set(NODE_HEADER, node.nodeId)
                result.headers.set(EPOCH_HEADER, str(owned.epoch))
            return result

        return actor.call(method, *args, size=size).addCallback(stamp)

    async def _route(
        self,
        namespace: "Namespace",
        objectId: DurableObjectId,
        method: Callable[..., Any],
        args: tuple[Any, ...],
        size: int,
    ) -> Any:
        node = self.node
        key = objectId.toString()
        loop = asyncio.get_running_loop()
        where = (namespace.name, key)
        address: Optional[str] = None
        known = self.locations.get(where)
        if known is not None:
            if time.monotonic() - known[1] < node.leaseSeconds / 2:
                address = known[0]
            else:
                del self.locations[where]
        body: Optional[bytes] = None
        problem = "no node could take it"
        for hop in range(self.maxHops):
            if address is None:
                address = await Deferred.asFuture(node.acquire(namespace.name, key), loop)
                if address is None:
                    owned = node.ownedHere(namespace.name, key)
                    if owned is None:
                        continue
                    return await Deferred.asFuture(
                        self.runHere(namespace, objectId, owned, method, args, size), loop
                    )
            if body is None:
                body = encodeCall(namespace.name, key, objectId.name, method, args)
            self.forwarded += 1
            try:
                result, _, channel = await self.client.call(address, body, method)
                self._remember(where, address)
                if isinstance(result, Upgrade):
                    return relay(channel, bytes.fromhex(result.token), result.headers)
                return result
            except Moved as moved:
                problem = f"it moved ({moved})"
                self.locations.pop(where, None)
                address = moved.address if moved.address and moved.address != node.address else None
            except CallLost:
                # The owner may have run the call (and committed its writes) before the
                # connection broke: sending it again could run it twice. As on Cloudflare, the
                # caller gets a retryable error and decides.
                self.locations.pop(where, None)
                raise unavailable(
                    "The connection to the Durable Object's node broke before its answer; the call "
                    "may or may not have run. Try again if that is safe."
                ) from None
            except NodeUnreachable as e:
                problem = str(e)
                self.locations.pop(where, None)
                address = None
                if hop + 1 < self.maxHops:
                    # The owner may be gone: its lease has to lapse before another node takes
                    # the object, so wait a little (bounded by the hops) before asking again.
                    await asyncio.sleep(min(1.0, node.leaseSeconds / 4))
        raise unavailable(
            f"The Durable Object could not be reached after {self.maxHops} attempts ({problem}); "
            "try again."
        )

    def _remember(self, where: tuple[str, str], address: str) -> None:
        locations = self.locations
        if where not in locations and len(locations) >= self.maxLocations:
            locations.clear()  # simple and bounded; entries are found again at one lookup each
        locations[where] = (address, time.monotonic())

    # -- a call another node sent here -----------------------------------------------------------

    def serve(self, body: bytes, channel: Channel) -> Deferred[bytes]:
        """Run a call another node sent on ``channel``; fires with the encoded reply."""
        self.served += 1
        return asDeferred(self._serve(body, channel))

    async def _serve(self, body: bytes, channel: Channel) -> bytes:
        try:
            call = decodeCall(body)
        except Exception as e:
            return encodeError(ValueError(f"malformed cluster call: {e}"))
        try:
            namespace, objectId = self._target(call)
        except Exception as e:
            return encodeError(e)
        node = self.node
        loop = asyncio.get_running_loop()
        key = call.objectId
        try:
            address = await Deferred.asFuture(node.acquire(namespace.name, key, forwarded=True), loop)
        except Exception as e:
            return encodeError(_moving(e))
        if address is not None:
            return encodeMoved(address)
        owned = node.ownedHere(namespace.name, key)
        if owned is None:
            return encodeMoved(None)
        try:
            outcome = await Deferred.asFuture(
                self.runHere(namespace, objectId, owned, call.method, call.args, call.size), loop
            )
            if call.method is callFetch and isinstance(outcome, Response) and outcome.webSocket is not None:
                limits = self.registry.limits
                number = self.ownerSockets.attach(
                    channel, outcome, limits.maxPendingBytes, limits.maxOutgoingMessageSize
                )
                return encodeUpgrade(number.hex(), outcome)
            return encodeReply(call, outcome, {"node": node.nodeId, "epoch": owned.epoch})
        except Exception as e:
            return encodeError(_moving(e))

    def _target(self, call: Call) -> tuple["Namespace", DurableObjectId]:
        namespace = self.registry.namespaces.get(call.namespace)
        if namespace is None:
            raise DurableObjectError(f"this node's app has no Durable Object namespace {call.namespace!r}")
        if call.name is not None:
            objectId = namespace.minter.fromName(call.name)
        else:
            objectId = namespace.minter.fromString(call.objectId)
        if objectId.toString() != call.objectId:
            raise DurableObjectError("the Durable Object ID does not match its name on this node")
        return namespace, objectId


def _moving(error: BaseException) -> BaseException:
    """The error to send back for a call: as it is, unless the object's move caused it (a call
    cut short because this node stopped serving the object resets it with an error caused by a
    :class:`DurableObjectUnavailable`); then a ``DurableObjectUnavailable`` with its flags, since
    the cause does not cross between nodes and the caller must see a retryable move, not a
    failure of the object's code."""
    moving = unavailableIn(error)
    if moving is None or moving is error:
        return error
    flags = error if isinstance(error, DurableObjectError) else moving
    return DurableObjectUnavailable(
        str(error), remote=flags.remote, durableObjectReset=flags.durableObjectReset, retryAfter=moving.retryAfter
    )
