"""Workers: the ``WorkerEntrypoint`` users subclass, the ``App`` that binds classes to names, and
the ``Runtime`` that runs one app: its env, its object registry, its Worker's ``fetch``.
"""

from __future__ import annotations

import importlib
import inspect
from types import CoroutineType
from typing import Any, Coroutine, Mapping, Optional, TypeVar

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from .compat_flags import Compatibility
from .config import Limits
from .context import WORKER, WorkerCall
from .errors import ConfigError
from .fetch import Request, Response
from .ids import DEFAULT_SECRET
from . import rpc
from .alarms import AlarmIndex
from .handlers import RUNNER, AsyncioRunner, DeferredRunner, Runner, asDeferred
from .objects import DurableObject
from .registry import ObjectRegistry
from .storage.interface import StorageBackend
from .stubs import DurableObjectNamespace
from .placement import Placement
from .relaxed import trim

_log = Logger(namespace="dotwist.worker")


class ExecutionContext:
    """A Worker invocation's ``ctx``: ``waitUntil`` and ``passThroughOnException``."""

    def __init__(self) -> None:
        self._passThrough = False
        self._tasks: list[Deferred[Any]] = []

    def waitUntil(self, awaitable: Any) -> None:
        """Let ``awaitable`` finish after the response is sent; its errors are logged."""
        d = asDeferred(awaitable)
        d.addErrback(lambda f: _log.failure("waitUntil() task failed", f))
        self._tasks.append(d)

    def passThroughOnException(self) -> None:
        """Accepted for compatibility. dotwist has no origin behind it to fall through to, so an
        exception still gives a 500 response."""
        self._passThrough = True


class WorkerEntrypoint:
    """Base class of a Worker: subclass it and define ``async def fetch(self, request)``."""

    def __init__(self, ctx: ExecutionContext, env: Any) -> None:
        self.ctx = ctx
        self.env = env

    async def fetch(self, request: Request) -> Response:
        return Response("No fetch handler is defined for this Worker.", status=500)


class ServiceStub:
    """``env.SERVICE``: a binding to a ``WorkerEntrypoint`` class (Cloudflare's service bindings).

    ``await env.SERVICE.fetch(request)`` runs its ``fetch``; ``await env.SERVICE.method(...)``
    calls a public method by RPC, arguments and result copied by value. Each call gets a fresh
    instance with its own ``ctx``, as each Worker invocation does.
    """

    def __init__(self, cls: type, runtime: "Runtime") -> None:
        self._cls = cls
        self._runtime = runtime

    def fetch(self, input: Any, init: Optional[Mapping[str, Any]] = None, **kwargs: Any) -> Deferred[Response]:
        request = input if isinstance(input, Request) and not init and not kwargs else Request(input, init, **kwargs)
        return self._runtime.run(self._runtime.entry(self._cls, "fetch", request))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)

        def call(*args: Any, **kwargs: Any) -> Deferred[Any]:
            async def run() -> Any:
                rpc.checkCallable(name)
                payload = rpc.encodeCall(args, kwargs)
                ctx = ExecutionContext()
                token = WORKER.set(WorkerCall(self._runtime, ctx))  # whose code runs
                try:
                    entry = self._cls(ctx, self._runtime.env)
                    result = rpc.invoke(entry, name, payload)
                    if inspect.isawaitable(result):
                        result = await result
                    return rpc.decodeResult(result)
                finally:
                    WORKER.reset(token)

            return self._runtime.run(run())

        return call

    def __repr__(self) -> str:
        return f"<ServiceStub {self._cls.__name__}>"


class Env:
    """``env``: one attribute per binding (a Durable Object namespace, or a plain variable)."""

    def __init__(self, bindings: Mapping[str, Any]) -> None:
        self.__dict__.update(bindings)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        known = ", ".join(sorted(self.__dict__)) or "none"
        raise AttributeError(f"env has no binding named {name!r} (bindings: {known})")

    def __repr__(self) -> str:
        return f"<Env {sorted(self.__dict__)}>"


class App:
    """One deployable app: its Worker class and its bindings, in one place.

    ``durableObjects`` maps binding names to Durable Object classes (Cloudflare's
    ``[[durable_objects.bindings]]``); ``vars`` maps binding names to plain values (``[vars]``).
    A deployment changes bindings with ``withBindings`` (or ``--binding`` on the command line).
    """

    def __init__(
        self,
        worker: type,
        durableObjects: Optional[Mapping[str, type]] = None,
        vars: Optional[Mapping[str, Any]] = None,
        services: Optional[Mapping[str, type]] = None,
    ) -> None:
        if not (isinstance(worker, type) and issubclass(worker, WorkerEntrypoint)):
            raise ConfigError(f"An App's worker must be a WorkerEntrypoint subclass, not {worker!r}")
        self.worker = worker
        self.durableObjects = dict(durableObjects or {})
        self.vars = dict(vars or {})
        self.services = dict(services or {})
        for name, cls in self.services.items():
            _checkBindingName(name)
            if not (isinstance(cls, type) and issubclass(cls, WorkerEntrypoint)):
                raise ConfigError(f"Service binding {name}: {cls!r} is not a WorkerEntrypoint subclass")
        names = list(self.durableObjects) + list(self.vars) + list(self.services)
        if len(names) != len(set(names)):
            raise ConfigError("A binding name is used twice: " + ", ".join(sorted(n for n in set(names) if names.count(n) > 1)))
        for name, cls in self.durableObjects.items():
            _checkBindingName(name)
            if not (isinstance(cls, type) and issubclass(cls, DurableObject)):
                raise ConfigError(
                    f"Binding {name}: {cls!r} is not a DurableObject subclass"
                )
        for name in self.vars:
            _checkBindingName(name)

    def withBindings(
        self,
        durableObjects: Optional[Mapping[str, type]] = None,
        vars: Optional[Mapping[str, Any]] = None,
    ) -> "App":
        """A copy with some bindings added or replaced."""
        return App(
            self.worker,
            {**self.durableObjects, **(durableObjects or {})},
            {**self.vars, **(vars or {})},
            self.services,
        )


def _checkBindingName(name: str) -> None:
    if not isinstance(name, str) or not name.isidentifier():
        raise ConfigError(f"Binding name {name!r} is not a valid identifier")


def loadObject(spec: str, default: Optional[str] = None) -> Any:
    """Import ``module`` or ``module:attribute`` (dotted attributes allowed)."""
    moduleName, _, attribute = spec.partition(":")
    attribute = attribute or (default or "")
    if not moduleName or not attribute:
        raise ConfigError(f"{spec!r} is not of the form module or module:attribute")
    try:
        module = importlib.import_module(moduleName)
    except Exception as e:
        raise ConfigError(f"cannot import {moduleName!r}: {type(e).__name__}: {e}") from e
    value: Any = module
    for part in attribute.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise ConfigError(f"module {moduleName!r} has no attribute {attribute!r}") from None
    return value


def loadApp(spec: str) -> App:
    """Load an app from ``module`` (its ``app`` attribute) or ``module:attribute``."""
    value = loadObject(spec, default="app")
    if isinstance(value, App):
        return value
    raise ConfigError(f"{spec!r} is {type(value).__name__}, not a dotwist.App")


T = TypeVar("T")


def defaultRunner(clock: IReactorTime, limits: Limits) -> Runner:
    """asyncio tasks if ``clock`` is Twisted's asyncio reactor, else Twisted's coroutine driver."""
    from twisted.internet.asyncioreactor import AsyncioSelectorReactor

    if isinstance(clock, AsyncioSelectorReactor):
        from ._reactors import isolateContexts

        isolateContexts(clock)
        return AsyncioRunner(limits.cpuTimeLimit, limits.blockedLoopWarning)
    return DeferredRunner()


class Runtime:
    """One app running: its env and object registry, and the entry point for requests."""

    def __init__(
        self,
        app: App,
        clock: IReactorTime,
        limits: Optional[Limits] = None,
        placement: Optional[Placement] = None,
        idSecret: bytes = DEFAULT_SECRET,
        storage: Optional[StorageBackend] = None,
        alarmIndex: Optional[AlarmIndex] = None,
        runner: Optional[Runner] = None,
        compatibility: Optional[Compatibility] = None,
        idKeys: Optional[Mapping[str, str]] = None,
    ) -> None:
        """``compatibility``: the Worker's compatibility date and flags (default: today's
        Cloudflare behaviour). ``idKeys``: class name -> the key its IDs are minted under, from
        the data directory's migrations (default: the class name)."""
        self.app = app
        self.limits = limits or Limits()
        #: How Worker and object code runs: asyncio tasks under Twisted's asyncio reactor,
        #: Twisted's own driver otherwise (see ``dotwist.handlers``).
        self.runner: Runner = runner if runner is not None else defaultRunner(clock, self.limits)
        self.compatibility = compatibility if compatibility is not None else Compatibility(None)
        self.registry = ObjectRegistry(
            clock, self.limits, placement, idSecret, storage=storage, alarmIndex=alarmIndex,
            runner=self.runner,
        )
        self.registry.runtime = self
        keys = dict(idKeys or {})
        bindings: dict[str, Any] = dict(app.vars)
        for name, cls in app.durableObjects.items():
            bindings[name] = DurableObjectNamespace(
                self.registry.namespace(cls, idKey=keys.get(cls.__name__))
            )
        for name, cls in app.services.items():
            bindings[name] = ServiceStub(cls, self)
        self.env = Env(bindings)
        self.registry.env = self.env

    def start(self) -> None:
        """Schedule the alarms stored before this process started."""
        self.registry.alarms.start(self.registry.namespaces)

    def close(self) -> Deferred[None]:
        """Stop the alarms, commit what live objects wrote, then close the storage backend;
        fires when done."""
        registry = self.registry
        registry.alarms.stop()

        def closeStorage(_: object) -> None:
            registry.storage.close()
            registry.alarms.index.close()

        return registry.flush().addBoth(closeStorage)

    def fetch(self, request: Request) -> Deferred[Response]:
        """Run the Worker's ``fetch`` for one request; fires with its ``Response``."""
        done, outcome = self.fetchFirst(request)
        if done:
            return succeed(outcome)
        answer: Deferred[Response] = outcome
        return answer

    def fetchFirst(self, request: Request) -> tuple[bool, Any]:
        """As ``fetch``, without a ``Deferred`` for a Worker that answers in its first step:
        ``(True, response)`` if it did, else ``(False, deferred)`` (``Runner.runFirst``)."""
        token = RUNNER.set(self.runner)
        try:
            return self.runner.runFirst(self.entry(self.app.worker, "fetch", request))
        finally:
            RUNNER.reset(token)

    def run(self, coro: Coroutine[Any, Any, T]) -> Deferred[T]:
        """Run Worker code (a coroutine) with this runtime's runner."""
        token = RUNNER.set(self.runner)
        try:
            return self.runner.start(coro)
        finally:
            RUNNER.reset(token)

    async def entry(self, cls: type, method: str, request: Request) -> Response:
        """One invocation of a Worker class's ``method`` (a new instance, as each Cloudflare
        invocation gets), called relaxed (``def fetch(self)`` is legal)."""
        ctx = ExecutionContext()
        token = WORKER.set(WorkerCall(self, ctx))  # whose code runs (dotwist.context)
        try:
            entry = cls(ctx, self.env)
            handler = getattr(entry, method)
            result: Any = handler(*trim(entry, method, handler, (request,)))
            if type(result) is CoroutineType:  # ``async def fetch``, the usual case
                result = await result
            if type(result) is not Response:  # a Response is not awaitable: nothing to ask
                while inspect.isawaitable(result):
                    result = await result
        finally:
            WORKER.reset(token)
        if not isinstance(result, Response):
            raise TypeError(
                f"The Worker's fetch() returned {type(result).__name__}, not a Response"
            )
        return result
