"""Durable Objects: namespaces, stubs, and the one live instance per ID with its input gate.

This is the core of the runtime and does no I/O. Time comes from an injected ``IReactorTime``.

An ``Actor`` is the runtime's record of one live object: the user's instance, its
``DurableObjectState`` (``ctx``), and the queue of events waiting at its input gate. Every event
(an HTTP request, a WebSocket message, later an alarm or an RPC call) enters through ``_submit``.
While the gate is open and nothing waits, the event starts at once, synchronously; while it is
closed (``blockConcurrencyWhile``), events wait in arrival order. Because events enter the queue at
the moment they are sent, calls through one stub arrive in the order they were made.
"""

from __future__ import annotations

import contextvars
import inspect
from collections import deque
from typing import Any, Awaitable, Callable, Mapping, Optional, TYPE_CHECKING

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from .errors import DurableObjectError
from .fetch import Request, Response
from .ids import DEFAULT_SECRET, DurableObjectId, IdMinter
from .placement import LocalPlacement, Placement

if TYPE_CHECKING:  # pragma: no cover
    from .config import Limits

_log = Logger(namespace="dotwist.objects")

_current: contextvars.ContextVar[Optional["Actor"]] = contextvars.ContextVar(
    "dotwist_current_actor", default=None
)


def currentActor() -> Optional["Actor"]:
    """The object whose code is running now, or None in a Worker."""
    return _current.get()


def _asDeferred(result: Any) -> Deferred[Any]:
    if isinstance(result, Deferred):
        return result
    if inspect.iscoroutine(result):
        return Deferred.fromCoroutine(result)
    if inspect.isawaitable(result):
        return Deferred.fromCoroutine(_await(result))
    return succeed(result)


async def _await(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


class DurableObject:
    """Base class for Durable Objects: ``__init__(self, ctx, env)`` keeps both as attributes."""

    def __init__(self, ctx: "DurableObjectState", env: Any) -> None:
        self.ctx = ctx
        self.env = env


class DurableObjectState:
    """What an object knows of itself and the runtime: ``ctx`` in Cloudflare's API."""

    def __init__(self, actor: "Actor") -> None:
        self._actor = actor
        self.id: DurableObjectId = actor.id

    @property
    def storage(self) -> Any:
        """This object's durable storage (opened on first use)."""
        return self._actor._openStorage()

    def blockConcurrencyWhile(self, callback: Callable[[], Any]) -> Deferred[Any]:
        """Run ``callback`` with the input gate closed: no other event reaches the object.

        If the callback raises, or runs past the time limit, the object is reset.
        """
        return self._actor._blockConcurrencyWhile(callback)

    def waitUntil(self, awaitable: Any) -> None:
        """Keep the object alive until ``awaitable`` settles; errors are logged."""
        self._actor._waitUntil(_asDeferred(awaitable))

    def abort(self, reason: Optional[str] = None) -> None:
        """Reset the object now: in-memory state is dropped, pending events fail."""
        self._actor._reset(
            DurableObjectError(
                f"Durable Object was aborted: {reason}" if reason else "Durable Object was aborted.",
                durableObjectReset=True,
            )
        )


class Actor:
    """The runtime side of one live object."""

    def __init__(self, namespace: "Namespace", objectId: DurableObjectId) -> None:
        self.namespace = namespace
        self.id = objectId
        self.registry = namespace.registry
        self.instance: Any = None
        self.state = DurableObjectState(self)
        self._gateClosed = 0
        self._queue: deque[tuple[Callable[..., Any], tuple[Any, ...]]] = deque()
        self._draining = False
        self._outputHeld = False
        # (send, args, onFail): what waits at the output gate, and how to fail it instead.
        self._heldOutput: list[tuple[Callable[..., Any], tuple[Any, ...], Optional[Callable[[Any], Any]]]] = []
        self._waiting: set[Deferred[Any]] = set()
        self._broken: Optional[BaseException] = None
        self._sockets: set[Any] = set()
        self._storage: Any = None

    def _openStorage(self) -> Any:
        if self._storage is None:
            if self._broken is not None:
                raise DurableObjectError(
                    "This Durable Object was reset; its storage is closed.", durableObjectReset=True
                )
            from .durable_storage import DurableObjectStorage

            store = self.registry.storage.open(self.namespace.name, self.id.toString())
            self._storage = DurableObjectStorage(self, store)
        return self._storage

    # -- construction ------------------------------------------------------------------------

    def _construct(self) -> None:
        token = _current.set(self)
        try:
            self.instance = self.namespace.cls(self.state, self.registry.env)
        finally:
            _current.reset(token)

    # -- the input gate ------------------------------------------------------------------------

    def _submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` as an event of this object, now or when the gate opens.

        The object is constructed first, so that a ``blockConcurrencyWhile`` in its constructor
        holds back this very event.
        """
        if self.instance is None and self._broken is None:
            try:
                self._construct()
            except BaseException as e:
                _log.failure("Durable Object constructor raised; the object is reset")
                self._reset(e)
        if self._gateClosed or self._queue:
            self._queue.append((fn, args))
            return
        token = _current.set(self)
        try:
            fn(*args)
        finally:
            _current.reset(token)

    def _closeGate(self) -> None:
        self._gateClosed += 1

    def _openGate(self) -> None:
        if self._gateClosed:
            self._gateClosed -= 1
            if not self._gateClosed:
                self._drain()

    def _drain(self) -> None:
        if self._draining:
            return
        self._draining = True
        try:
            while self._queue and not self._gateClosed:
                fn, args = self._queue.popleft()
                token = _current.set(self)
                try:
                    fn(*args)
                finally:
                    _current.reset(token)
        finally:
            self._draining = False

    def call(self, method: Callable[..., Any], *args: Any) -> Deferred[Any]:
        """Deliver an event whose result the caller waits for (a request, later an RPC)."""
        result: Deferred[Any] = Deferred()
        self._submit(self._startCall, method, args, result)
        return result

    def _startCall(self, method: Callable[..., Any], args: tuple[Any, ...], result: Deferred[Any]) -> None:
        if self._broken is not None:
            result.errback(_resetError(self._broken))
            return
        try:
            outcome = _asDeferred(method(self.instance, *args))
        except BaseException:
            outcome = fail()
        outcome.addBoth(self._reply, result)

    def _reply(self, outcome: Any, result: Deferred[Any]) -> None:
        """Hand a call's outcome to its caller, through the output gate."""
        if isinstance(outcome, Failure):
            _remoteFailure(outcome)
        if self._outputHeld:
            self._heldOutput.append((result.callback, (outcome,), result.errback))
        else:
            result.callback(outcome)

    def _blockConcurrencyWhile(self, callback: Callable[[], Any]) -> Deferred[Any]:
        self._gateClosed += 1
        limit = self.registry.limits.blockConcurrencyTimeout
        done: Deferred[Any] = Deferred()
        over = False

        def timedOut() -> None:
            nonlocal over
            over = True
            error = DurableObjectError(
                f"blockConcurrencyWhile() callback did not finish within {limit:g} seconds; "
                "the Durable Object was reset.",
                durableObjectReset=True,
            )
            self._reset(error)
            done.errback(error)

        timer = self.registry.clock.callLater(limit, timedOut)

        def finished(result: Any) -> None:
            nonlocal over
            if over:
                if isinstance(result, Failure):
                    _log.failure("blockConcurrencyWhile() callback failed after its timeout", result)
                return
            over = True
            timer.cancel()
            self._gateClosed -= 1
            if isinstance(result, Failure):
                self._reset(
                    DurableObjectError(
                        f"blockConcurrencyWhile() callback raised {result.value!r}; "
                        "the Durable Object was reset.",
                        durableObjectReset=True,
                    )
                )
                done.errback(result)
            else:
                done.callback(result)
                self._drain()

        try:
            outcome = _asDeferred(callback())
        except BaseException:
            outcome = fail()
        outcome.addBoth(finished)
        return done

    # -- the output gate (held while writes are in flight; see storage) ----------------------

    def _holdOutput(self, fn: Callable[..., Any], *args: Any) -> None:
        self._heldOutput.append((fn, args, None))

    def _releaseOutput(self) -> None:
        """The writes the held output depended on are durable: send it, in order."""
        self._outputHeld = False
        held, self._heldOutput = self._heldOutput, []
        for fn, args, _ in held:
            fn(*args)

    def _outputFailed(self, error: BaseException) -> None:
        """A write failed: the held output is never sent; waiting callers get ``error``; the
        object is reset."""
        held, self._heldOutput = self._heldOutput, []
        self._outputHeld = False
        for _, _, onFail in held:
            if onFail is not None:
                onFail(error)
        self._reset(error)

    def _outgoing(self, send: Callable[[], Deferred[Any]]) -> Deferred[Any]:
        """A call this object makes to another: it leaves only once this object's earlier writes
        are durable (output gate), and its reply comes back through this object's input gate."""
        reply: Deferred[Any] = Deferred()

        def go() -> None:
            send().addBoth(self._incoming, reply)

        if self._outputHeld:
            self._heldOutput.append((go, (), reply.errback))
        else:
            go()
        return reply

    def _incoming(self, outcome: Any, reply: Deferred[Any]) -> None:
        if self._broken is not None or self.namespace.actors.get(self.id.toString()) is not self:
            reply.callback(outcome)
        else:
            self._submit(reply.callback, outcome)

    # -- lifetime ------------------------------------------------------------------------------

    def _waitUntil(self, d: Deferred[Any]) -> None:
        self._waiting.add(d)

        def settled(result: Any) -> None:
            self._waiting.discard(d)
            if isinstance(result, Failure):
                _log.failure("waitUntil() task failed", result)

        d.addBoth(settled)

    def _reset(self, error: BaseException) -> None:
        """Drop the instance and everything that waited on it; the next call constructs anew.

        Events still queued at the gate fail with a ``durableObjectReset`` error (the caller may
        retry them), and the object's WebSockets are closed with 1011: a reset object's
        in-memory state, listeners included, is gone.
        """
        if self._broken is not None:
            return
        self._broken = error
        self.registry._forget(self)
        self.instance = None
        for _, _, onFail in self._heldOutput:
            if onFail is not None:
                onFail(_resetError(error))
        self._heldOutput = []
        self._outputHeld = False
        if self._storage is not None:
            storage, self._storage = self._storage, None
            storage._close()
        self._gateClosed = 0
        queued, self._queue = self._queue, deque()
        for fn, args in queued:
            if fn == self._startCall:
                args[2].errback(_resetError(error))
        sockets, self._sockets = self._sockets, set()
        for socket in sockets:
            socket._resetByRuntime(1011, "Durable Object reset")


def _remote(error: BaseException) -> BaseException:
    try:
        error.remote = True  # type: ignore[attr-defined]
    except AttributeError:
        pass
    return error


def _resetError(cause: BaseException) -> DurableObjectError:
    if isinstance(cause, DurableObjectError) and cause.durableObjectReset:
        return cause
    error = DurableObjectError(
        f"Durable Object reset because its code raised {cause!r}",
        remote=True,
        durableObjectReset=True,
    )
    error.__cause__ = cause
    return error


def _remoteFailure(failure: Failure) -> Failure:
    _remote(failure.value)
    return failure


class DurableObjectStub:
    """A client for one object: ``await stub.fetch(request)``. Returned at once by ``get``."""

    def __init__(self, namespace: "Namespace", objectId: DurableObjectId) -> None:
        self._namespace = namespace
        self.id = objectId
        self.name = objectId.name

    def fetch(
        self, input: Any, init: Optional[Mapping[str, Any]] = None, **kwargs: Any
    ) -> Deferred[Response]:
        """Send an HTTP request to the object; fires with its ``Response``."""
        if isinstance(input, Request) and not init and not kwargs:
            request = input
        else:
            request = Request(input, init, **kwargs)
        target = self._namespace.registry.actorFor(self._namespace, self.id)
        caller = currentActor()
        if caller is None:
            return target.call(_callFetch, request)
        return caller._outgoing(lambda: target.call(_callFetch, request))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        raise AttributeError(
            f"Durable Object stubs support fetch() only for now; {name!r} is not available "
            "(RPC methods are not implemented yet)."
        )

    def __repr__(self) -> str:
        return f"<DurableObjectStub {self._namespace.name} {self.id.toString()}>"


def _callFetch(instance: Any, request: Request) -> Any:
    fetch = getattr(instance, "fetch", None)
    if fetch is None:
        raise TypeError(
            f"Durable Object class {type(instance).__name__} has no fetch() method."
        )
    return fetch(request)


class Namespace:
    """The runtime's side of one Durable Object class: its IDs and its live objects."""

    def __init__(self, registry: "ObjectRegistry", name: str, cls: type) -> None:
        self.registry = registry
        self.name = name
        self.cls = cls
        self.minter = IdMinter(name, registry.idSecret)
        self.actors: dict[str, Actor] = {}


class DurableObjectNamespace:
    """``env.BINDING``: mint IDs and get stubs for one Durable Object class."""

    def __init__(self, namespace: Namespace) -> None:
        self._namespace = namespace

    def idFromName(self, name: str) -> DurableObjectId:
        return self._namespace.minter.fromName(name)

    def newUniqueId(self, options: Optional[Mapping[str, Any]] = None) -> DurableObjectId:
        return self._namespace.minter.unique()

    def idFromString(self, id: str) -> DurableObjectId:
        return self._namespace.minter.fromString(id)

    def get(self, id: DurableObjectId, options: Optional[Mapping[str, Any]] = None) -> DurableObjectStub:
        if not isinstance(id, DurableObjectId):
            raise TypeError(
                f"get() expects a DurableObjectId (from idFromName, newUniqueId or idFromString), "
                f"not {type(id).__name__}"
            )
        if id._namespace != self._namespace.name:
            raise TypeError(
                f"get() was given an ID of namespace {id._namespace!r}, "
                f"not of this namespace {self._namespace.name!r}."
            )
        return DurableObjectStub(self._namespace, id)

    def getByName(self, name: str, options: Optional[Mapping[str, Any]] = None) -> DurableObjectStub:
        return self.get(self.idFromName(name))

    def __repr__(self) -> str:
        return f"<DurableObjectNamespace {self._namespace.name}>"


class ObjectRegistry:
    """Every namespace and live object of one process: the one instance per ID lives here.

    The HTTP resource and the WebSocket factory both reach objects through one registry.
    """

    def __init__(
        self,
        clock: IReactorTime,
        limits: "Limits",
        placement: Optional[Placement] = None,
        idSecret: bytes = DEFAULT_SECRET,
        storage: Any = None,
    ) -> None:
        if storage is None:
            from .storage import MemoryBackend

            storage = MemoryBackend()
        self.storage = storage
        self.clock = clock
        self.limits = limits
        self.placement = placement or LocalPlacement()
        self.idSecret = idSecret
        self.namespaces: dict[str, Namespace] = {}
        self.env: Any = None

    def namespace(self, cls: type, name: Optional[str] = None) -> Namespace:
        name = name or cls.__name__
        existing = self.namespaces.get(name)
        if existing is not None:
            if existing.cls is not cls:
                raise TypeError(
                    f"Namespace {name!r} is already bound to class {existing.cls.__qualname__}"
                )
            return existing
        ns = self.namespaces[name] = Namespace(self, name, cls)
        return ns

    def actorFor(self, namespace: Namespace, objectId: DurableObjectId) -> Actor:
        key = objectId.toString()
        actor = namespace.actors.get(key)
        if actor is None:
            if not self.placement.isLocal(namespace.name, key):
                raise DurableObjectError(
                    f"Durable Object {key} of {namespace.name} is owned by another process, "
                    "and remote objects are not supported by this deployment.",
                    retryable=True,
                )
            actor = namespace.actors[key] = Actor(namespace, objectId)
        return actor

    def flush(self) -> None:
        """Commit every live object's pending writes now (used at shutdown)."""
        for ns in self.namespaces.values():
            for actor in list(ns.actors.values()):
                storage = actor._storage
                if storage is not None and storage._commitCall is not None:
                    storage._commitCall.cancel()
                    storage._commit()

    def liveObjects(self) -> int:
        return sum(len(ns.actors) for ns in self.namespaces.values())

    def _forget(self, actor: Actor) -> None:
        if actor.namespace.actors.get(actor.id.toString()) is actor:
            del actor.namespace.actors[actor.id.toString()]

