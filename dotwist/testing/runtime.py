"""Building a runtime for a test: ``makeRuntime`` (an app on a controllable clock, storage in
memory, in a directory or any backend), and two small helpers, ``liveActor`` and ``result``."""

from __future__ import annotations

import os
from typing import Any, Mapping, Optional, Union

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from ..alarms import AlarmIndex
from ..compat_flags import Compatibility, parseDate
from ..config import Limits
from ..fetch import Request, Response
from ..handlers import AsyncioRunner, Runner
from ..objects import Actor
from ..storage import MemoryBackend, SqliteBackend
from ..storage.interface import StorageBackend
from ..stubs import DurableObjectStub, namespaceOf
from ..worker import App, Runtime, WorkerEntrypoint
from .clock import ClockLoop, TestClock

__all__ = ["ObjectsOnly", "liveActor", "makeRuntime", "result"]


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
    compatibility: Union[None, str, Compatibility] = None,
) -> Runtime:
    """A runtime for ``app`` (or for ``{binding: DurableObjectClass}`` behind a Worker that
    answers 404), on ``clock`` (a new ``TestClock`` at time 0 if not given), with ``storage`` in
    memory (the default), in SQLite files under a directory path, or the given backend;
    ``limits`` as a ``Limits`` or a mapping of the limits to change.

    With ``asyncio=True`` the Worker's and objects' coroutines run as asyncio tasks on a
    ``ClockLoop`` of the same clock, as they do in production under the asyncio reactor, so they
    can use asyncio; a call completes when the test advances the clock (``clock.advance(0)``
    runs everything that is ready). Without it, coroutines run by Twisted's driver, synchronously
    up to their first wait.

    ``compatibility``: the Worker's compatibility date (``"YYYY-MM-DD"``) or a
    ``Compatibility`` (date and flags); today's behaviour by default.

    ``Harness`` builds on this and adds a client, a data directory and teardown; use this for a
    runtime wired by hand."""
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
        clock = TestClock(start=0)
    runner: Optional[Runner] = None
    if asyncio:
        if not isinstance(clock, Clock):
            raise TypeError("makeRuntime(asyncio=True) needs a twisted.internet.task.Clock")
        chosen = limits if limits is not None else Limits()
        # The loop's I/O methods are abstract in typeshed; it has none (see its docstring).
        loop = ClockLoop(clock)  # type: ignore[abstract]
        runner = AsyncioRunner(chosen.cpuTimeLimit, chosen.blockedLoopWarning, loop=loop)
    if isinstance(compatibility, str):
        compatibility = Compatibility(parseDate(compatibility))
    return Runtime(
        app, clock, limits=limits, storage=backend, alarmIndex=alarmIndex, runner=runner,
        compatibility=compatibility,
    )


def liveActor(runtime: Runtime, stub: DurableObjectStub) -> Actor:
    """The object's incarnation in memory (constructed now if it is not)."""
    namespace = namespaceOf(stub)
    if namespace.registry is not runtime.registry:
        raise TypeError(f"{stub!r} belongs to another runtime")
    return runtime.registry.actorFor(namespace, stub.id)


def result(d: "Deferred[Any]") -> Any:
    """The result of a Deferred that has already fired (raises its failure, which is then handled;
    a value stays the Deferred's, for whoever else waits on it)."""
    out: list[Any] = []

    def take(outcome: Any) -> Any:
        out.append(outcome)
        return None if isinstance(outcome, Failure) else outcome

    d.addBoth(take)
    assert out, "the Deferred has not fired"
    if isinstance(out[0], Failure):
        out[0].raiseException()
    return out[0]
