"""Calls between cluster nodes: the router that sends a stub's call to the object's owner, and the
node-to-node channel it uses.

Any node accepts any request. The Worker runs on the node that received it; when it (or an
object) calls a Durable Object through a stub, :class:`ClusterRouter` (the registry's ``router``)
asks the node where the object is served (:meth:`~dotwist.cluster.node.ClusterNode.acquire`):

- here: the call runs in the local registry exactly as in one process;
- on another node: the call is encoded as data (:mod:`dotwist.cluster.calls`) and POSTed to that
  node's channel (HTTP/1.1 with persistent connections, treq on the calling side, a
  ``twisted.web`` resource on the owner's internal endpoint), which runs it there and sends the
  outcome back. If that node does not own the object (it moved), it says where it went, and the
  caller tries again there, a bounded number of times.

The channel authenticates the calling node with the cluster's shared secret (a header compared in
constant time). Every ``Response`` an object returns through the cluster carries the node that
ran it and the owner's epoch (``dotwist-node``, ``dotwist-epoch`` headers).

WebSocket upgrades answered by a remote object (``stub.fetch`` returning a 101 with a
``webSocket``) are proxied by :mod:`dotwist.cluster.wsproxy`.
"""

from __future__ import annotations

import asyncio
import hmac
from typing import TYPE_CHECKING, Any, Callable, Optional

from twisted.internet.defer import Deferred, fail
from twisted.internet.error import ConnectError, ConnectionClosed
from twisted.logger import Logger
from twisted.web.client import HTTPConnectionPool, ResponseFailed
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from ..errors import DurableObjectError
from ..fetch import Response
from ..ids import DurableObjectId
from .. import websocket
from ..context import CURRENT
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
from .wsproxy import WS_PATH, ParkedSockets, connectRelay

if TYPE_CHECKING:  # pragma: no cover
    from ..registry import Namespace, ObjectRegistry

__all__ = ["CALL_PATH", "ClusterRouter", "NodeClient", "NodeResource", "SECRET_HEADER"]

_log = Logger(namespace="dotwist.cluster")

SECRET_HEADER = "Dotwist-Cluster-Secret"
CALL_PATH = "/dotwist-cluster/call"
NODE_HEADER = "dotwist-node"
EPOCH_HEADER = "dotwist-epoch"


class NodeClient:
    """The calling side of the channel: one pool of persistent connections to the other nodes."""

    def __init__(self, reactor: Any, secret: str, *, timeout: float = 120.0, perHost: int = 32) -> None:
        import treq

        self.reactor = reactor
        self.secret = secret
        self.timeout = timeout
        self.pool = HTTPConnectionPool(reactor, persistent=True)
        self.pool.maxPersistentPerHost = perHost
        self.pool.retryAutomatically = False
        self._treq = treq

    async def call(self, address: str, body: bytes, method: Callable[..., Any]) -> tuple[Any, dict[str, Any]]:
        """POST the call to ``address``; (result, reply). Raises the call's error, ``Moved``, or
        ``NodeUnreachable``."""
        treq = self._treq
        try:
            response = await treq.post(
                f"http://{address}{CALL_PATH}",
                data=body,
                headers={SECRET_HEADER: self.secret, "Content-Type": "application/octet-stream"},
                pool=self.pool,
                reactor=self.reactor,
                timeout=self.timeout,
            )
            data = await treq.content(response)
        except (ConnectError, ConnectionClosed, ResponseFailed, OSError) as e:
            raise NodeUnreachable(address, e) from None
        except Exception as e:
            if type(e).__name__ in ("CancelledError", "TimeoutError"):
                raise NodeUnreachable(address, e) from None
            raise
        if response.code != 200:
            raise unavailable(f"cluster node {address} refused the call: HTTP {response.code} {data[:200]!r}")
        return decodeReply(data, method)

    def close(self) -> Deferred[None]:
        return self.pool.closeCachedConnections()  # type: ignore[no-any-return]


class NodeUnreachable(Exception):
    """The node at ``address`` could not be reached, or the connection broke mid-call."""

    def __init__(self, address: str, cause: BaseException) -> None:
        super().__init__(f"cluster node {address} is unreachable: {cause}")
        self.address = address


class ClusterRouter:
    """The registry's ``router`` in a cluster: see the module docstring."""

    def __init__(self, node: ClusterNode, registry: "ObjectRegistry", client: NodeClient, *, maxHops: int = 4) -> None:
        self.node = node
        self.registry = registry
        self.client = client
        self.maxHops = maxHops
        #: ``101`` responses of objects here, waiting for the calling node to connect.
        self.parked = ParkedSockets(node.reactor)
        #: Calls sent to other nodes, and calls other nodes sent here.
        self.forwarded = 0
        self.served = 0

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
        try:
            actor = self.registry.actorFor(namespace, objectId)
        except Exception:
            return fail()
        node = self.node
        key = (namespace.name, objectId.toString())

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
        address: Optional[str] = None
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
                result, _ = await self.client.call(address, body, method)
                if isinstance(result, Upgrade):
                    return await Deferred.asFuture(self._relay(address, result, args), loop)
                return result
            except Moved as moved:
                problem = f"it moved ({moved})"
                address = moved.address if moved.address and moved.address != node.address else None
            except NodeUnreachable as e:
                problem = str(e)
                address = None
                if hop + 1 < self.maxHops:
                    # The owner may be gone: its lease has to lapse before another node takes
                    # the object, so wait a little (bounded by the hops) before asking again.
                    await asyncio.sleep(min(1.0, node.leaseSeconds / 4))
        raise unavailable(
            f"The Durable Object could not be reached after {self.maxHops} attempts ({problem}); "
            "try again."
        )

    def _relay(self, address: str, upgrade: Upgrade, args: tuple[Any, ...]) -> Deferred[Response]:
        (request,) = args
        offered = request.headers.get("sec-websocket-protocol") or ""
        protocols = [p.strip() for p in offered.split(",") if p.strip()]
        token = CURRENT.set(None)  # the relay belongs to no object, whoever asked for it
        try:
            return connectRelay(
                self.node.reactor, address, upgrade.token, self.client.secret, upgrade.headers, protocols
            )
        finally:
            CURRENT.reset(token)

    # -- a call another node sent here -----------------------------------------------------------

    def serve(self, body: bytes) -> Deferred[bytes]:
        """Run a call another node sent; fires with the encoded reply."""
        self.served += 1
        return asDeferred(self._serve(body))

    async def _serve(self, body: bytes) -> bytes:
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
            return encodeError(e)
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
                return encodeUpgrade(self.parked.park(outcome), outcome)
            return encodeReply(call, outcome, {"node": node.nodeId, "epoch": owned.epoch})
        except Exception as e:
            return encodeError(e)

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


class NodeResource(Resource):
    """The node's internal endpoint: ``POST /dotwist-cluster/call`` with the shared secret."""

    isLeaf = True

    def __init__(self, router: ClusterRouter, secret: str, webSockets: Any = None) -> None:
        Resource.__init__(self)
        self.router = router
        self.secret = secret.encode("utf-8")
        #: The server's WebSocket factory (``dotwist.server``): parked sockets are handed to it.
        self.webSockets = webSockets

    def _refused(self, request: Any) -> Optional[bytes]:
        given = request.getHeader(SECRET_HEADER) or ""
        if not hmac.compare_digest(given.encode("utf-8"), self.secret):
            request.setResponseCode(403)
            return b"wrong or missing cluster secret\n"
        return None

    def render_GET(self, request: Any) -> Any:
        refused = self._refused(request)
        if refused is not None:
            return refused
        path = request.path.decode("latin-1")
        if not path.startswith(WS_PATH) or self.webSockets is None:
            request.setResponseCode(404)
            return b"not found\n"
        response = self.router.parked.take(path[len(WS_PATH):])
        if response is None or response.webSocket is None:
            request.setResponseCode(404)
            return b"no such WebSocket waiting\n"
        if not websocket.claimForHandover(response.webSocket):
            request.setResponseCode(409)
            return b"WebSocket already handed over\n"
        return self.webSockets.buildHandover(response).render(request)

    def render_POST(self, request: Any) -> Any:
        refused = self._refused(request)
        if refused is not None:
            return refused
        if request.path != CALL_PATH.encode():
            request.setResponseCode(404)
            return b"not found\n"
        body = request.content.read()
        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))

        def reply(data: bytes) -> None:
            if gone:
                return
            request.setHeader(b"Content-Type", b"application/octet-stream")
            request.write(data)
            request.finish()

        def failed(failure: Any) -> None:
            _log.failure("Serving a cluster call failed", failure)
            if gone:
                return
            request.setResponseCode(500)
            request.write(b"internal error\n")
            request.finish()

        self.router.serve(body).addCallbacks(reply, failed)
        return NOT_DONE_YET
