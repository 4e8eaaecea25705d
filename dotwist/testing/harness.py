"""``Harness``: one app running for one test, isolated from every other test.

A harness owns a runtime (its own registry, alarm scheduler and storage: nothing is shared with
another harness), a ``TestClock`` (time moves only when the test moves it), a data directory when
storage is SQLite, and a client for the Worker (``SELF``): in-process by default, or over a real
listening port (``transport="tcp"``: twisted.web and Autobahn, the whole stack) with the same
API, so one test can run both ways. ``close()`` stops it all: alarms, timers and tasks of one test
never reach the next.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import random
import tempfile
from typing import Any, Awaitable, Coroutine, Literal, Mapping, Optional, Sequence, Union

from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.interfaces import IReactorTime

from ..alarms import AlarmIndex, MemoryAlarmIndex
from ..compat_flags import Compatibility, parseDate
from ..config import Limits
from ..fetch import Request, Response
from ..handlers import RUNNER, AsyncioRunner, DeferredRunner, Runner
from ..lifecycle import ObjectLifecycle
from ..storage import MemoryBackend, SqliteBackend
from ..storage.interface import StorageBackend
from ..worker import App, Env, Runtime, loadApp
from .client import BASE_URL, ClientWebSocket, InProcessClient, WorkerClient
from .clock import ClockLoop, TestClock
from .durable_objects import evictActor
from .runtime import ObjectsOnly, makeRuntime, result

__all__ = ["Harness", "NotReady"]

Transport = Literal["memory", "tcp"]
StorageChoice = Union[Literal["memory", "sqlite"], StorageBackend]


class NotReady(AssertionError):
    """What a test waited for needs time to pass on the test's clock: nothing that is due now
    brings it. The message lists the timers that are pending."""


class Harness:
    """One app running for a test: ``runtime``, ``env`` (its bindings), ``clock`` (a
    ``TestClock``), ``SELF`` (a client for its Worker: ``fetch``, ``webSocket``), and the
    helpers to run things and tear down.

    - ``app``: an ``App``, a spec (``"module"`` or ``"module:attribute"``), or a mapping
      ``{binding: DurableObjectClass}`` (behind a Worker that answers 404).
    - ``transport``: ``"memory"`` (the client calls the runtime in-process) or ``"tcp"`` (the app
      is served on 127.0.0.1, a free port, by the same service ``twistd dotwist`` runs, and the
      client talks HTTP and WebSockets to it; needs a running reactor, as under pytest-twisted).
    - ``storage``: ``"memory"`` (the default), ``"sqlite"`` (files under ``dataDir``: a new
      temporary directory, removed by ``close()``, if not given), or a ``StorageBackend``.
    - ``limits``: a ``Limits``, or a mapping of the limits to change.
    - ``start``: the clock's first time (seconds since the epoch; the real time now by default).
    - ``compatibility``: the Worker's compatibility date (``"YYYY-MM-DD"``) or a
      ``Compatibility`` (date and flags); today's behaviour by default.
    - ``realTime``: with ``transport="tcp"``, run the runtime on the reactor itself, exactly as
      production does (asyncio libraries that do I/O work in handlers); the clock cannot be moved
      then.

    Handlers run as asyncio tasks on a ``ClockLoop`` of the clock, as in production under the
    asyncio reactor; alarm retry jitter is seeded with ``seed``.
    """

    __test__ = False

    def __init__(
        self,
        app: Union[App, str, Mapping[str, type]],
        *,
        transport: Transport = "memory",
        storage: StorageChoice = "memory",
        dataDir: Union[None, str, "os.PathLike[str]"] = None,
        limits: Union[None, Limits, Mapping[str, Any]] = None,
        start: Optional[float] = None,
        realTime: bool = False,
        reactor: Optional[IReactorTime] = None,
        seed: int = 0,
        baseUrl: str = BASE_URL,
        compatibility: Union[None, str, Compatibility] = None,
    ) -> None:
        if transport not in ("memory", "tcp"):
            raise ValueError(f'transport must be "memory" or "tcp", not {transport!r}')
        if not isinstance(storage, StorageBackend) and storage not in ("memory", "sqlite"):
            raise ValueError(f'storage must be "memory", "sqlite" or a StorageBackend, not {storage!r}')
        if realTime and transport != "tcp":
            raise ValueError('realTime=True serves the app on the reactor: it needs transport="tcp"')
        if isinstance(app, str):
            app = loadApp(app)
        elif not isinstance(app, App):
            app = App(ObjectsOnly, durableObjects=dict(app))
        self.app: App = app
        self.transport: Transport = transport
        self.limits: Limits = limits if isinstance(limits, Limits) else Limits().replace(**dict(limits or {}))
        self.baseUrl = baseUrl
        self.seed = seed
        self.realTime = realTime
        self.compatibility = (
            Compatibility(parseDate(compatibility)) if isinstance(compatibility, str) else compatibility
        )
        self._storage = storage
        self._tempDir: Optional[tempfile.TemporaryDirectory[str]] = None
        if storage == "sqlite" and dataDir is None:
            self._tempDir = tempfile.TemporaryDirectory(prefix="dotwist-test-")
            dataDir = self._tempDir.name
        #: Where SQLite storage lives (None for other storage).
        self.dataDir: Optional[str] = os.fspath(dataDir) if dataDir is not None and storage == "sqlite" else None
        self._clock: Optional[TestClock] = None if realTime else TestClock(start)
        self._reactor = reactor
        if transport == "tcp" and reactor is None:
            from twisted.internet import reactor as globalReactor

            self._reactor = globalReactor
        self._service: Any = None
        self._port = 0
        self._closed = False
        self.runtime: Runtime
        self.env: Env
        #: The Worker, as a client calls it: ``SELF.fetch(...)``, ``SELF.webSocket(...)``.
        self.SELF: WorkerClient
        # The test's own coroutines run as tasks on a loop of their own (on the same clock), so
        # that a restart, which stops the runtime's loop, does not stop the test.
        self._testLoop: Optional[ClockLoop] = None
        self._testRunner: Runner
        if transport == "memory":
            assert self._clock is not None
            self._testLoop = ClockLoop(self._clock)  # type: ignore[abstract]  # no I/O methods
            self._testRunner = AsyncioRunner(None, None, loop=self._testLoop)
        else:
            from twisted.internet.asyncioreactor import AsyncioSelectorReactor

            asyncioReactor = isinstance(self._reactor, AsyncioSelectorReactor)
            # Over a real port, on the reactor's own loop (started from the reactor's thread).
            self._testRunner = AsyncioRunner(None, None) if asyncioReactor else DeferredRunner()
        self._build()

    # -- what a test uses --------------------------------------------------------------------

    @property
    def clock(self) -> TestClock:
        """The runtime's clock: nothing happens with time until the test moves it."""
        if self._clock is None:
            raise TypeError("this harness runs on the reactor's real time (realTime=True): it has no clock to move")
        return self._clock

    @property
    def service(self) -> Any:
        """The ``dotwist.service.DotwistService`` serving the app (transport "tcp")."""
        if self._service is None:
            raise TypeError('an in-process harness has no service (use transport="tcp")')
        return self._service

    @property
    def port(self) -> int:
        """The port the app is served on (transport "tcp")."""
        if self.transport != "tcp":
            raise TypeError('an in-process harness listens on no port (use transport="tcp")')
        return self._port

    def fetch(self, input: Union[str, Request], init: Optional[Mapping[str, Any]] = None, **kwargs: Any) -> "Deferred[Response]":
        """``SELF.fetch``: send a request to the Worker (relative URLs are relative to
        ``http://example.com``)."""
        return self.SELF.fetch(input, init, **kwargs)

    def webSocket(
        self, url: Union[str, Request], protocols: Sequence[str] = (), headers: Optional[Mapping[str, str]] = None
    ) -> "Deferred[ClientWebSocket]":
        """``SELF.webSocket``: open a WebSocket to the Worker."""
        return self.SELF.webSocket(url, protocols, headers)

    def run(self, awaitable: Awaitable[Any], seconds: float = 0.0) -> Any:
        """For synchronous tests, in-process: run ``awaitable`` (a ``Deferred``, or a coroutine,
        run as an asyncio task on the test clock), let ``seconds`` of time pass
        (``clock.settle``), run what is due, and return its result (or raise its error). Raises
        ``NotReady`` if it is still waiting: for time that was not let pass, or for something
        nothing will bring."""
        if self.transport != "memory":
            raise TypeError(
                'run() drives an in-process harness; against a real port, write the test as '
                '"async def" and await'
            )
        d = self.start(awaitable)
        self.clock.settle(seconds)
        if not d.called:
            raise NotReady(self._waiting("the awaited call"))
        return result(d)

    def settle(self, seconds: float = 0.0) -> None:
        """``clock.settle(seconds)``: let time pass, timer by timer."""
        self.clock.settle(seconds)

    def start(self, awaitable: Awaitable[Any]) -> "Deferred[Any]":
        """Start ``awaitable`` without waiting for it; the ``Deferred`` fires with its result. A
        coroutine runs as an asyncio task (in-process, on a loop of the test clock; over a real
        port, on the reactor's loop: call this from the reactor), where it can await Deferreds
        and asyncio alike, in tasks it creates too."""
        if isinstance(awaitable, Deferred):
            return awaitable
        if isinstance(awaitable, asyncio.Future):
            return Deferred.fromFuture(awaitable)
        if not inspect.isawaitable(awaitable):
            raise TypeError(f"expected a Deferred, a coroutine or another awaitable, not {type(awaitable).__name__}")
        coroutine = awaitable if inspect.iscoroutine(awaitable) else _await(awaitable)
        # As the runtime does around a Worker: tasks this code creates can await Deferreds too.
        token = RUNNER.set(self._testRunner)
        try:
            return self._testRunner.start(coroutine)
        finally:
            RUNNER.reset(token)

    def evictAllDurableObjects(self) -> "Deferred[list[ObjectLifecycle]]":
        """Evict (or hibernate) every object in memory, as ``evictDurableObject`` does each."""
        actors = [a for ns in self.runtime.registry.namespaces.values() for a in list(ns.actors.values())]
        d: Deferred[list[ObjectLifecycle]] = gatherResults([evictActor(a) for a in actors], consumeErrors=True)
        return d

    def restart(self) -> "Deferred[None]":
        """Stop the runtime as ``twistd dotwist`` stops (what objects wrote is committed; open
        sockets close with 1001 over a real port) and start a new one on the same storage: with
        SQLite storage, everything stored is still there and stored alarms are scheduled again;
        with memory storage, nothing is (as with ``--storage memory``). The clock goes on. Take
        ``env`` again afterwards: the old stubs belong to the old runtime. Over a real port, the
        new server listens on the same port."""
        if isinstance(self._storage, StorageBackend):
            raise TypeError("restart() needs storage \"memory\" or \"sqlite\": a given backend cannot be reopened")
        if self._closed:
            raise TypeError("this harness is closed")
        return self._stop().addCallback(lambda _: self._build())

    def close(self) -> "Deferred[None]":
        """Stop everything (the runtime, its storage, the port, tasks still running) and remove a
        temporary data directory; fires when done."""
        if self._closed:
            return succeed(None)
        self._closed = True

        def cleanUp(outcome: object) -> object:
            if self._clock is not None:
                self._clock.runOn(None)
                # Nothing of this test may run later: its clock is dead.
                for call in list(self._clock.getDelayedCalls()):
                    if call.active():
                        call.cancel()
            if self._tempDir is not None:
                self._tempDir.cleanup()
            return outcome

        if self._testLoop is not None:
            _cancelTasks(self._testLoop)
        return self._stop().addBoth(cleanUp)

    # -- driving an async test ---------------------------------------------------------------

    def runTest(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        """Run an ``async def`` test in-process: start it as a task on the runtime's loop and run
        what is due, repeatedly, until it is done. Raises ``NotReady`` if it waits for something
        that only time would bring (the test moves time itself: ``clock.settle``)."""
        d = self.start(coroutine)
        self.clock.runReady()
        if not d.called:
            message = self._waiting("the test")
            d.cancel()
            d.addErrback(lambda _: None)
            raise NotReady(message)
        return result(d)

    def _waiting(self, what: str) -> str:
        clock = self.clock
        return (
            f"{what} is still waiting, with nothing due now on the test clock (t={clock.seconds():.3f}). "
            "If it waits for time to pass, start it without awaiting, move the clock "
            "(clock.settle(seconds)), then await it. Pending timers:\n" + clock.describe()
        )

    # -- building and stopping ---------------------------------------------------------------

    def _openStorage(self) -> tuple[StorageBackend, AlarmIndex]:
        if isinstance(self._storage, StorageBackend):
            return self._storage, MemoryAlarmIndex()
        if self._storage == "memory":
            return MemoryBackend(), MemoryAlarmIndex()
        from ..storage.alarmindex import SqliteAlarmIndex

        assert self.dataDir is not None
        os.makedirs(self.dataDir, exist_ok=True)
        return SqliteBackend(self.dataDir), SqliteAlarmIndex(os.path.join(self.dataDir, "alarms.sqlite"))

    def _build(self) -> None:
        backend, index = self._openStorage()
        if self._clock is None:
            runtime = Runtime(
                self.app, self._reactor, limits=self.limits, storage=backend, alarmIndex=index,  # type: ignore[arg-type]
                compatibility=self.compatibility,
            )
        else:
            runtime = makeRuntime(
                self.app, clock=self._clock, storage=backend, limits=self.limits, alarmIndex=index, asyncio=True,
                compatibility=self.compatibility,
            )
        runtime.registry.alarms.rng = random.Random(self.seed)
        self.runtime = runtime
        self.env = runtime.env
        if self.transport == "tcp":
            self._serve(runtime)
        else:
            runtime.start()
            self.SELF = InProcessClient(runtime, self.baseUrl, self._clock)

    def _serve(self, runtime: Runtime) -> None:
        from .._reactors import isolateContexts
        from ..service import DotwistService
        from .tcp import TcpClient

        reactor = self._reactor
        isolateContexts(reactor)
        if self._clock is not None:
            self._clock.runOn(reactor)
        service = DotwistService(runtime, [f"tcp:{self._port}:interface=127.0.0.1"], reactor=reactor)
        service.startService()
        listening = service.ports[0].listening
        if not listening.called:
            raise RuntimeError("the test server did not start listening at once")
        self._port = result(listening).getHost().port
        self._service = service
        self.SELF = TcpClient(reactor, self._port, self.baseUrl)

    def _stop(self) -> "Deferred[None]":
        runtime = self.runtime
        clock = self._clock
        runner = runtime.runner
        loop = runner.loop() if clock is not None and isinstance(runner, AsyncioRunner) else None

        def stopLoop(_: object) -> None:
            # As when the process exits: what the old runtime's code still runs goes, and its
            # objects' idle timers with it (the clock goes on for the next runtime).
            for namespace in runtime.registry.namespaces.values():
                for actor in list(namespace.actors.values()):
                    timer = actor.idleTimer
                    if timer is not None and timer.active():
                        timer.cancel()
            if loop is not None:
                _cancelTasks(loop)
                assert clock is not None
                clock.runReady()
                loop.close()

        if self._service is not None:
            service, self._service = self._service, None
            stopped: Deferred[Any] = service.stopService()
            return stopped.addBoth(stopLoop)
        if clock is not None:
            clock.runReady()
            closed = runtime.close()
            clock.runReady()
            return closed.addBoth(stopLoop)
        return runtime.close().addBoth(lambda _: None)


async def _await(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def _cancelTasks(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel the tasks still running on ``loop`` (not the one running now, if any)."""
    current = asyncio.current_task(loop)
    for task in asyncio.all_tasks(loop):
        if task is not current:
            task.cancel()
