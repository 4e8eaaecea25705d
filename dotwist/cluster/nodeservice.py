"""``twistd dotwist --cluster ...``: a cluster node as a part of the dotwist service.

:class:`NodeService` puts the pieces together for one process: the coordination store, the
:class:`~dotwist.cluster.node.ClusterNode`, the replicated storage backend, the router the stubs
send their calls through, and the node's internal endpoint (the channel other nodes call). The
runtime's service (``dotwist.service.DotwistService``) starts it with the public ports and, when
stopping, calls :meth:`NodeService.handOff` once the objects are idle and their writes committed,
then :meth:`NodeService.close`.
"""

from __future__ import annotations

import os
import socket
from typing import Any, Optional

from twisted.internet.defer import Deferred, DeferredList, maybeDeferred, succeed
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger

from .channel import ClusterRouter, NodeClient
from .node import ClusterNode, safeNodeDirectory
from .storage import ReplicatedBackend
from .store import asDeferred, storeClass
from .wire import WireServerFactory

__all__ = ["NodeService", "defaultNodeId"]

_log = Logger(namespace="dotwist.cluster")


def defaultNodeId() -> str:
    """A node id unique on this machine for this process: host name and process id."""
    return f"{socket.gethostname()}-{os.getpid()}"


class NodeService:
    """One process's membership of a cluster (see the module docstring).

    ``conninfo``/``schema``: the PostgreSQL database and schema; ``listen``: the endpoint of the
    node's internal channel; ``advertise``: the ``host:port`` other nodes reach it at (default:
    the listening interface, or 127.0.0.1, and the port bound); ``secret``: the shared secret of
    the channel (default: the one kept in the schema). ``dataDir`` holds the node's local copies
    (in ``nodes/<node id>`` below it).
    """

    def __init__(
        self,
        conninfo: str,
        *,
        nodeId: Optional[str] = None,
        schema: str = "dotwist",
        listen: str = "tcp:0:interface=127.0.0.1",
        advertise: Optional[str] = None,
        leaseSeconds: float = 10.0,
        secret: Optional[str] = None,
        dataDir: str = "dotwist-data",
        storageLimits: Any = None,
        maxOpenDatabases: Optional[int] = None,
        reactor: Any = None,
        alarmPoll: float = 1.0,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        self.reactor = reactor
        self.nodeId = nodeId or defaultNodeId()
        self.listen = listen
        self.advertise = advertise
        self.secret = secret
        self.store = storeClass()(
            conninfo, schema=schema, applicationName=f"dotwist {self.nodeId}",
            reconnectTimeout=max(2.0, leaseSeconds),
        )
        self.node = ClusterNode(
            self.store, self.nodeId, leaseSeconds=leaseSeconds, reactor=reactor, alarmPoll=alarmPoll
        )
        #: The node's own directory: its objects' local copies, its lock and name index.
        self.dataDir = os.path.join(dataDir, "nodes", safeNodeDirectory(self.nodeId))
        options: dict[str, Any] = {}
        if maxOpenDatabases is not None:
            options["maxOpenDatabases"] = maxOpenDatabases
        self.storage = ReplicatedBackend(
            os.path.join(self.dataDir, "objects"), self.node.replicaOf, storageLimits, **options
        )
        self.router: Optional[ClusterRouter] = None
        self.client: Optional[NodeClient] = None
        self._port: Optional[IListeningPort] = None
        #: Fires once the node has joined and its channel listens.
        self.started: Deferred[None] = Deferred()

    def attach(self, registry: Any) -> None:
        """Serve ``registry`` (the runtime's): placement, storage and stub calls go through the
        cluster."""
        self.node.attach(registry, self.storage)
        # The secret is known only once the store is open: the client and resource read it then.
        self.client = NodeClient(self.reactor, "")
        self.router = ClusterRouter(self.node, registry, self.client)
        registry.router = self.router

    # -- starting ----------------------------------------------------------------------------------

    def start(self) -> Deferred[None]:
        """Listen on the internal endpoint, open the store, join. Fires when serving."""
        d = asDeferred(self._start())

        def done(result: object) -> object:
            from twisted.python.failure import Failure

            if isinstance(result, Failure):
                _log.failure("Cluster node {node} could not start", result, node=self.nodeId)
                self.started.errback(result)
                return None
            self.started.callback(None)
            return None

        return d.addBoth(done)

    async def _start(self) -> None:
        assert self.router is not None and self.client is not None, "attach() first"
        os.makedirs(self.dataDir, exist_ok=True)
        await self.store.open()
        secret = self.secret or os.environ.get("DOTWIST_CLUSTER_SECRET") or await self.store.sharedSecret()
        self.client.secret = secret
        endpoint = serverFromString(self.reactor, self.listen)
        factory = WireServerFactory(self.router.serve, secret)
        port = await Deferred.asFuture(endpoint.listen(factory), _loop())
        self._port = port
        address = self.advertise or _addressOf(port, self.listen)
        await self.node.start(address)

    # -- stopping ----------------------------------------------------------------------------------

    def handOff(self) -> Deferred[None]:
        """Release every object and leave the cluster (graceful shutdown)."""
        if not self.started.called or self.node.lease is None:
            return succeed(None)
        if self.router is not None:
            # The objects' sockets relayed to other nodes' clients: those nodes close them with
            # 1001, as this node's own clients are.
            self.router.ownerSockets.closeAll(1001, "Server shutting down")
        return self.node.handOff()

    def close(self) -> Deferred[Any]:
        """Stop the internal endpoint, the channel's connections and the store."""
        steps: list[Deferred[Any]] = []
        if self._port is not None:
            steps.append(maybeDeferred(self._port.stopListening))
        if self.client is not None:
            steps.append(self.client.close())
        steps.append(self.node.close())
        return DeferredList(steps, consumeErrors=True)


def _addressOf(port: IListeningPort, description: str) -> str:
    host = port.getHost()
    interface = getattr(host, "host", "127.0.0.1")
    if interface in ("0.0.0.0", "::", ""):
        interface = socket.gethostname()
    return f"{interface}:{host.port}"  # type: ignore[attr-defined]


def _loop() -> Any:
    import asyncio

    return asyncio.get_running_loop()
