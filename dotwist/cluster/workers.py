"""``twistd dotwist --cluster ... --workers N``: N processes on one machine and one port.

Python runs one core per process; a cluster node is one process. With ``--workers N`` the
``twistd`` process starts N worker processes and supervises them (it serves nothing itself):

- each worker is ``twistd -n dotwist`` with the same options (without ``--workers``), a node of
  the same cluster whose id is the parent's ``--node-id`` (by default the host name and the
  parent's process id) followed by ``-w<index>.<generation>``;
- every worker listens on the same ``--listen`` TCP ports with ``SO_REUSEPORT`` (Linux), so the
  kernel spreads new connections over them; each has its own internal channel port;
- a worker that exits unexpectedly is started again (with a new node id: the old one's objects
  come back at once on whichever node is asked first, once its lease lapsed), after 1 s, doubling
  up to 30 s while it keeps failing at once;
- SIGTERM to the parent is passed to every worker, each hands its objects over as a single node
  does, and the parent exits once all have; a worker whose parent is gone (killed with -9) stops
  the same way by itself.

Requests for an object that another worker owns are relayed to it over the loopback channel,
exactly as between machines.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from typing import Any, Optional

from twisted.application import service
from twisted.internet import protocol
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.logger import Logger
from zope.interface import implementer

__all__ = ["ReusePortEndpoint", "WorkersService", "reusePortEndpoint", "watchParent", "workerArgs"]

_log = Logger(namespace="dotwist.workers")


@implementer(IStreamServerEndpoint)
class ReusePortEndpoint:
    """A TCP server endpoint whose socket has ``SO_REUSEPORT``: several processes listen on one
    port, and the kernel balances connections between them."""

    def __init__(self, reactor: Any, port: int, interface: str = "", backlog: int = 50) -> None:
        self.reactor = reactor
        self.port = port
        self.interface = interface
        self.backlog = backlog

    def listen(self, factory: Any) -> Deferred[Any]:
        family = socket.AF_INET6 if ":" in self.interface else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((self.interface, self.port))
            sock.listen(self.backlog)
            sock.setblocking(False)
            port = self.reactor.adoptStreamPort(sock.fileno(), family, factory)
        except Exception:
            from twisted.internet.defer import fail

            return fail()
        finally:
            sock.close()  # the port has its own copy of the descriptor
        return succeed(port)


def reusePortEndpoint(reactor: Any, description: str) -> ReusePortEndpoint:
    """The ``SO_REUSEPORT`` endpoint for a ``tcp:PORT[:interface=X][:backlog=N]`` description;
    ``ValueError`` for any other kind."""
    parts = description.split(":")
    kind = parts[0].strip().lower()
    if kind != "tcp" or len(parts) < 2:
        raise ValueError(f"--workers needs tcp:PORT listen endpoints, not {description!r}")
    port = int(parts[1].removeprefix("port="))
    options = dict(p.split("=", 1) for p in parts[2:] if "=" in p)
    return ReusePortEndpoint(
        reactor, port, options.get("interface", ""), int(options.get("backlog", "50"))
    )


def workerArgs(argv: list[str], index: int, generation: int, baseId: str) -> list[str]:
    """The ``dotwist`` options of worker ``index``: the parent's, without ``--workers`` and
    ``--node-id``, with the worker's node id and ``--worker``."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in ("--workers", "--node-id"):
            skip = True
            continue
        if arg.startswith(("--workers=", "--node-id=")):
            continue
        out.append(arg)
    return [*out, "--node-id", f"{baseId}-w{index}.{generation}", "--worker"]


class _Worker(protocol.ProcessProtocol):
    def __init__(self, supervisor: "WorkersService", index: int) -> None:
        self.supervisor = supervisor
        self.index = index
        self.started = time.monotonic()
        self.ended: Deferred[None] = Deferred()

    def processEnded(self, reason: Any) -> None:
        self.ended.callback(None)
        self.supervisor.ended(self, reason)


class WorkersService(service.Service):
    """The parent of ``--workers N`` (see the module docstring)."""

    def __init__(self, argv: list[str], count: int, baseId: str, reactor: Any = None) -> None:
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        self.reactor = reactor
        self.argv = argv
        self.count = count
        self.baseId = baseId
        self.workers: dict[int, _Worker] = {}
        self.generations = [0] * count
        self.delays = [1.0] * count
        self.stopping = False
        #: How many times a worker was started again after it exited.
        self.restarts = 0

    def startService(self) -> None:
        service.Service.startService(self)
        # The workers' exits are noticed by polling too: under the asyncio reactor (and uvloop)
        # SIGCHLD does not always reach Twisted's process reaper.
        from twisted.internet.process import reapAllProcesses
        from twisted.internet.task import LoopingCall

        self._reaper = LoopingCall(reapAllProcesses)
        self._reaper.clock = self.reactor
        self._reaper.start(0.25, now=False)
        _log.info("Starting {count} worker processes", count=self.count)
        for index in range(self.count):
            self.spawn(index)

    def spawn(self, index: int) -> None:
        if self.stopping:
            return
        self.generations[index] += 1
        args = workerArgs(self.argv, index, self.generations[index], self.baseId)
        twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
        command = [sys.executable, twistd, "-n", "--pidfile=", "dotwist", *args]
        worker = _Worker(self, index)
        # The workers write their logs where the parent's output goes.
        self.reactor.spawnProcess(
            worker, sys.executable, command, env=dict(os.environ), childFDs={0: "w", 1: 1, 2: 2}
        )
        self.workers[index] = worker

    def ended(self, worker: _Worker, reason: Any) -> None:
        if self.workers.get(worker.index) is worker:
            del self.workers[worker.index]
        if self.stopping:
            return
        lived = time.monotonic() - worker.started
        delay = self.delays[worker.index]
        self.delays[worker.index] = 1.0 if lived > 30 else min(30.0, delay * 2)
        _log.warn(
            "Worker {index} exited ({reason}); starting it again in {delay:g} s",
            index=worker.index, reason=reason.getErrorMessage(), delay=delay,
        )
        self.restarts += 1
        self.reactor.callLater(delay, self.spawn, worker.index)

    def stopService(self) -> Deferred[Any]:
        service.Service.stopService(self)
        self.stopping = True
        waits = []
        for worker in list(self.workers.values()):
            try:
                worker.transport.signalProcess("TERM")  # type: ignore[union-attr]
            except Exception:
                continue
            waits.append(worker.ended)

        def done(result: object) -> object:
            if self._reaper.running:
                self._reaper.stop()
            return result

        return DeferredList(waits).addBoth(done)


def installSigterm(reactor: Any, stop: Any) -> None:
    """SIGTERM stops the parent gracefully (as the single-process service does)."""

    def onSigterm(signum: int, frame: Optional[Any]) -> None:
        reactor.callFromThread(stop)

    signal.signal(signal.SIGTERM, onSigterm)


def watchParent(reactor: Any, interval: float = 1.0) -> Any:
    """In a worker: stop gracefully (hand the objects over) if the supervising parent is gone
    (killed with -9, say), instead of serving on as an orphan nobody supervises."""
    from twisted.internet.task import LoopingCall

    parent = os.getppid()

    def check() -> None:
        if os.getppid() != parent:
            _log.warn("The --workers parent (process {pid}) is gone; stopping", pid=parent)
            loop.stop()
            if reactor.running:
                reactor.stop()

    loop = LoopingCall(check)
    loop.clock = reactor
    loop.start(interval, now=False)
    return loop
