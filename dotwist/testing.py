"""Helpers for testing Workers and Durable Objects in-process, deterministically.

``makeRuntime`` builds a ``Runtime`` for an app on a controllable clock (``twisted.internet.task.Clock``)
with storage in memory or in a directory; ``FakeConnection`` stands in for a client's WebSocket
connection, so a test can drive a Worker's WebSockets without sockets. dotwist's own tests use
these; they are also the start of the public testing toolkit.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
from typing import Any, Callable, Mapping, Optional, Union, cast

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import Clock
from twisted.logger import Logger
from twisted.python.failure import Failure

from . import websocket
from .alarms import AlarmIndex
from .config import Limits
from .fetch import Request, Response
from .handlers import AsyncioRunner, Runner
from .objects import Actor
from .storage import CommitError, MemoryBackend, SqliteBackend
from .storage.interface import ObjectStore, StorageBackend
from .stubs import DurableObjectStub
from .worker import App, Runtime, WorkerEntrypoint

__all__ = [
    "ClockLoop",
    "FailingCommits",
    "FakeConnection",
    "LaterCommits",
    "ObjectsOnly",
    "connectWebSocket",
    "liveActor",
    "makeRuntime",
    "result",
]


_log = Logger(namespace="dotwist.testing")


class ClockLoop(asyncio.AbstractEventLoop):
    """An asyncio event loop whose time is a ``twisted.internet.task.Clock``: ``asyncio.sleep``,
    ``wait_for``, ``timeout`` and task steps run when the test advances the clock, in time order,
    interleaved with the clock's Twisted timers (commits, alarms, eviction). ``clock.advance(0)``
    runs everything that is ready, repeatedly, until nothing is.

    It does no I/O: sockets, subprocesses and executors are not available (use the real reactor
    for tests of asyncio libraries that do I/O).
    """

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._timers: dict[asyncio.TimerHandle, IDelayedCall] = {}
        self._taskFactory: Any = None
        self._exceptionHandler: Any = None

    def time(self) -> float:
        return self._clock.seconds()

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any, context: Optional[contextvars.Context] = None) -> asyncio.TimerHandle:  # type: ignore[override]
        handle = asyncio.TimerHandle(self.time() + max(delay, 0.0), callback, args, self, context)
        self._timers[handle] = self._clock.callLater(max(delay, 0.0), self._fire, handle, callback, args, context)
        return handle

    def call_at(self, when: float, callback: Callable[..., object], *args: Any, context: Optional[contextvars.Context] = None) -> asyncio.TimerHandle:  # type: ignore[override]
        return self.call_later(when - self.time(), callback, *args, context=context)

    def call_soon(self, callback: Callable[..., object], *args: Any, context: Optional[contextvars.Context] = None) -> asyncio.Handle:  # type: ignore[override]
        return self.call_later(0, callback, *args, context=context)

    def _timer_handle_cancelled(self, handle: asyncio.TimerHandle) -> None:
        call = self._timers.pop(handle, None)
        if call is not None and call.active():
            call.cancel()

    def _fire(self, handle: asyncio.TimerHandle, callback: Callable[..., object], args: tuple[Any, ...], context: Optional[contextvars.Context]) -> None:
        self._timers.pop(handle, None)
        if handle.cancelled():
            return
        previous = asyncio.events._get_running_loop()
        asyncio.events._set_running_loop(self)
        try:
            if context is not None:
                context.run(callback, *args)
            else:
                callback(*args)
        except BaseException as e:
            self.call_exception_handler({"message": "Exception in callback", "exception": e, "handle": handle})
        finally:
            asyncio.events._set_running_loop(previous)

    def create_future(self) -> "asyncio.Future[Any]":
        return asyncio.Future(loop=self)

    def create_task(self, coro: Any, *, name: Optional[str] = None, context: Optional[contextvars.Context] = None) -> "asyncio.Task[Any]":
        kwargs: dict[str, Any] = {} if context is None else {"context": context}
        if self._taskFactory is not None:
            task: asyncio.Task[Any] = self._taskFactory(self, coro, **kwargs)
        else:
            task = asyncio.Task(coro, loop=self, **kwargs)
        if name is not None:
            task.set_name(name)
        return task

    def set_task_factory(self, factory: Any) -> None:
        self._taskFactory = factory

    def get_task_factory(self) -> Any:
        return self._taskFactory

    def call_exception_handler(self, context: dict[str, Any]) -> None:
        if self._exceptionHandler is not None:
            self._exceptionHandler(self, context)
            return
        self.default_exception_handler(context)

    def default_exception_handler(self, context: dict[str, Any]) -> None:
        error = context.get("exception")
        _log.failure(
            "asyncio: {message}",
            Failure(error) if error is not None else None,
            message=context.get("message", ""),
        ) if error is not None else _log.error("asyncio: {message}", message=context.get("message", ""))

    def set_exception_handler(self, handler: Any) -> None:
        self._exceptionHandler = handler

    def get_exception_handler(self) -> Any:
        return self._exceptionHandler

    def get_debug(self) -> bool:
        return False

    def is_running(self) -> bool:
        return True

    def is_closed(self) -> bool:
        return False

    def close(self) -> None:
        for call in self._timers.values():
            if call.active():
                call.cancel()
        self._timers.clear()


class ObjectsOnly(WorkerEntrypoint):
    """A Worker for apps under test that are only Durable Objects: it answers 404."""

    async def fetch(self, request: Request) -> Response:
        return Response("Not found", status=404)


def makeRuntime(
    app: Union[App, Mapping[str, type]],
    *,
    clock: Optional[IReactorTime] = None,
    storage: Union[None, str, os.PathLike[str], StorageBackend] = None,
    limits: Union[None, Limits, Mapping[str, Any]] = None,
    alarmIndex: Optional[AlarmIndex] = None,
    asyncio: bool = False,
) -> Runtime:
    """A runtime for ``app`` (or for ``{binding: DurableObjectClass}`` behind a Worker that
    answers 404), on ``clock`` (a new ``Clock`` if not given), with ``storage`` in memory (the
    default), in SQLite files under a directory path, or the given backend; ``limits`` as a
    ``Limits`` or a mapping of the limits to change.

    With ``asyncio=True`` the Worker's and objects' coroutines run as asyncio tasks on a
    ``ClockLoop`` of the same clock, as they do in production under the asyncio reactor, so they
    can use asyncio; a call completes when the test advances the clock (``clock.advance(0)``
    runs everything that is ready). Without it, coroutines run by Twisted's driver, synchronously
    up to their first wait."""
    if not isinstance(app, App):
        app = App(ObjectsOnly, durableObjects=dict(app))
    backend: StorageBackend
    if storage is None:
        backend = MemoryBackend()
    elif isinstance(storage, (str, os.PathLike)):
        backend = SqliteBackend(storage)
    else:
        backend = storage
    if limits is not None and not isinstance(limits, Limits):
        limits = Limits().replace(**limits)
    if clock is None:
        clock = Clock()
    runner: Optional[Runner] = None
    if asyncio:
        if not isinstance(clock, Clock):
            raise TypeError("makeRuntime(asyncio=True) needs a twisted.internet.task.Clock")
        chosen = limits if limits is not None else Limits()
        # The loop's I/O methods are abstract in typeshed; it has none (see its docstring).
        loop = ClockLoop(clock)  # type: ignore[abstract]
        runner = AsyncioRunner(chosen.cpuTimeLimit, chosen.blockedLoopWarning, loop=loop)
    return Runtime(app, clock, limits=limits, storage=backend, alarmIndex=alarmIndex, runner=runner)


def liveActor(runtime: Runtime, stub: DurableObjectStub) -> Actor:
    """The object's incarnation in memory (constructed now if it is not)."""
    namespace = runtime.registry.namespaces[stub.id.namespace]
    return runtime.registry.actorFor(namespace, stub.id)


def result(d: "Deferred[Any]") -> Any:
    """The result of a Deferred that has already fired (raises its failure)."""
    out: list[Any] = []
    d.addBoth(out.append)
    assert out, "the Deferred has not fired"
    if isinstance(out[0], Failure):
        out[0].raiseException()
    return out[0]


class FakeConnection:
    """A client's WebSocket connection, in memory: records what the server sent (``sent``,
    ``closes``) and delivers what the test ``send``s."""

    def __init__(self, clientEnd: websocket.WebSocket, earlyLimit: int) -> None:
        self.clientEnd = clientEnd
        self.sent: list[tuple[bytes, bool]] = []
        self.closes: list[tuple[Optional[int], Optional[str]]] = []
        websocket.attach(clientEnd, self, earlyLimit)

    # What the server end's side calls.
    def wsSend(self, payload: bytes, isBinary: bool) -> None:
        self.sent.append((payload, isBinary))

    def wsClose(self, code: Optional[int], reason: Optional[str]) -> None:
        self.closes.append((code, reason))

    # What a test does as the client.
    @property
    def messages(self) -> list[Union[str, bytes]]:
        """What the server sent, text decoded."""
        return [payload if isBinary else payload.decode("utf-8") for payload, isBinary in self.sent]

    def send(self, message: Union[str, bytes]) -> None:
        websocket.received(self.clientEnd, message)

    def close(self, code: Optional[int] = 1000, reason: str = "", wasClean: bool = True) -> None:
        """The client closed (or, with ``wasClean=False`` and no code, vanished)."""
        websocket.connectionClosed(self.clientEnd, wasClean, code, reason)


def connectWebSocket(response: Response, earlyLimit: int = Limits.maxPendingBytes) -> FakeConnection:
    """Join the client end of a ``101`` response to a ``FakeConnection``."""
    if response.status != 101 or response.webSocket is None:
        raise AssertionError(f"expected a 101 response with a webSocket, got {response!r}")
    return FakeConnection(response.webSocket, earlyLimit)


class FailingCommits(StorageBackend):
    """A memory backend whose commits fail while ``failing`` is set."""

    failing = False

    def __init__(self) -> None:
        self._memory = MemoryBackend()

    def open(self, namespace: str, objectId: str) -> ObjectStore:
        return cast(ObjectStore, _FailingStore(self._memory.open(namespace, objectId), self))

    def close(self) -> None:
        self._memory.close()


class _FailingStore:
    def __init__(self, store: ObjectStore, backend: FailingCommits) -> None:
        self._store = store
        self._backend = backend

    def commit(self) -> None:
        if self._backend.failing:
            self._store.rollback()
            raise CommitError("disk full (simulated)")
        self._store.commit()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


class LaterCommits(StorageBackend):
    """A memory backend whose commits become durable only when the test says so, as a replicated
    store's would: ``commit()`` returns a Deferred, and ``complete()`` (or ``fail()``) fires the
    oldest one. ``pending`` counts the commits in flight."""

    def __init__(self) -> None:
        self._memory = MemoryBackend()
        self.inFlight: list[Deferred[None]] = []

    def close(self) -> None:
        self._memory.close()

    @property
    def pending(self) -> int:
        return len(self.inFlight)

    def open(self, namespace: str, objectId: str) -> ObjectStore:
        return cast(ObjectStore, _LaterStore(self._memory.open(namespace, objectId), self))

    def complete(self) -> None:
        self.inFlight.pop(0).callback(None)

    def fail(self, error: Optional[BaseException] = None) -> None:
        self.inFlight.pop(0).errback(error or OSError("replica lost"))


class _LaterStore:
    def __init__(self, store: ObjectStore, backend: LaterCommits) -> None:
        self._store = store
        self._backend = backend

    def commit(self) -> Deferred[None]:
        self._store.commit()
        d: Deferred[None] = Deferred()
        self._backend.inFlight.append(d)
        return d

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)
