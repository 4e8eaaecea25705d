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

from .alarms import AlarmInfo, AlarmScheduler
from .errors import DurableObjectError
from .hibernation import HibernationRecord, WebSocketRequestResponsePair
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

    # -- the WebSocket Hibernation API -----------------------------------------------------------

    def acceptWebSocket(self, ws: Any, tags: Optional[list[str]] = None) -> None:
        """Accept ``ws`` (a server end) as hibernatable: its events go to this class's
        ``webSocketMessage``/``webSocketClose``/``webSocketError``, and the object may leave
        memory while the socket stays open."""
        self._actor._record().accept(ws, tags)
        self._actor._armIdle()  # idle now means hibernation, which comes sooner than eviction

    def getWebSockets(self, tag: Optional[str] = None) -> list[Any]:
        """The open hibernatable sockets of this object (with ``tag``, if given)."""
        record = self._actor._record(create=False)
        return record.getWebSockets(tag) if record is not None else []

    def getTags(self, ws: Any) -> list[str]:
        return self._actor._record().getTags(ws)

    def setWebSocketAutoResponse(self, pair: Optional[WebSocketRequestResponsePair] = None) -> None:
        """Answer a text message equal to ``pair.request`` with ``pair.response``, without waking
        the object; no argument removes the auto-response."""
        if pair is not None and not isinstance(pair, WebSocketRequestResponsePair):
            raise TypeError("setWebSocketAutoResponse() takes a WebSocketRequestResponsePair")
        self._actor._record().autoResponse = pair

    def getWebSocketAutoResponse(self) -> Optional[WebSocketRequestResponsePair]:
        record = self._actor._record(create=False)
        return record.autoResponse if record is not None else None

    def getWebSocketAutoResponseTimestamp(self, ws: Any) -> Any:
        """When the runtime last auto-responded on ``ws`` (a UTC datetime), or None."""
        return ws._autoResponseTimestamp

    def setHibernatableWebSocketEventTimeout(self, timeoutMs: Optional[int] = None) -> None:
        """Limit how long one webSocket* handler may run (ms); past it the object is reset."""
        if timeoutMs is not None and (not isinstance(timeoutMs, int) or timeoutMs <= 0):
            raise TypeError("The event timeout is a positive number of milliseconds, or None")
        self._actor._record().eventTimeout = timeoutMs

    def getHibernatableWebSocketEventTimeout(self) -> Optional[int]:
        record = self._actor._record(create=False)
        return record.eventTimeout if record is not None else None

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
        self._waiting: dict[Deferred[Any], float] = {}
        self._broken: Optional[BaseException] = None
        self._sockets: set[Any] = set()
        self._storage: Any = None
        self._inflight = 0
        self._pendingCalls = 0
        self._pendingBytes = 0
        self._rejected = 0
        self._lastActive = self.registry.clock.seconds()
        self._idleTimer: Any = None

    def _record(self, create: bool = True) -> Optional[HibernationRecord]:
        return self.registry.hibernationRecord(self.namespace, self.id, create)

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
        self._lastActive = self.registry.clock.seconds()
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

    def call(self, method: Callable[..., Any], *args: Any, size: int = 0) -> Deferred[Any]:
        """Deliver an event whose result the caller waits for (a request or an RPC call).

        Past the object's bound on pending calls (count or bytes), the call fails at once with an
        ``overloaded`` error instead of queueing.
        """
        limits = self.registry.limits
        if self._pendingCalls >= limits.maxPendingCalls or self._pendingBytes + size > limits.maxPendingBytes:
            self._rejected += 1
            if self._rejected & (self._rejected - 1) == 0:  # 1st, 2nd, 4th, 8th... rejection
                _log.warn(
                    "{cls} {id} is overloaded: {pending} calls ({bytes} bytes) pending; "
                    "{rejected} calls rejected so far",
                    cls=self.namespace.cls.__name__, id=self.id.toString(),
                    pending=self._pendingCalls, bytes=self._pendingBytes, rejected=self._rejected,
                )
            from .rpc import overloaded

            return fail(overloaded(self._pendingCalls, self._pendingBytes))
        self._pendingCalls += 1
        self._pendingBytes += size
        result: Deferred[Any] = Deferred()

        def settled(outcome: Any) -> Any:
            self._pendingCalls -= 1
            self._pendingBytes -= size
            return outcome

        result.addBoth(settled)
        self._submit(self._startCall, method, args, result)
        return result

    def _startCall(self, method: Callable[..., Any], args: tuple[Any, ...], result: Deferred[Any]) -> None:
        if self._broken is not None:
            result.errback(_resetError(self._broken))
            return
        self._inflight += 1
        try:
            outcome = _asDeferred(method(self.instance, *args))
        except BaseException:
            outcome = fail()
        outcome.addBoth(self._reply, result)

    def _reply(self, outcome: Any, result: Deferred[Any]) -> None:
        """Hand a call's outcome to its caller, through the output gate."""
        self._inflight -= 1
        self._lastActive = self.registry.clock.seconds()
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

    # -- hibernatable WebSocket events and alarms ----------------------------------------------

    def _hibernatedEvent(self, ws: Any, kind: str, event: Any) -> None:
        if self._broken is not None:
            return
        name = _HANDLERS[kind]
        handler = getattr(self.instance, name, None)
        if handler is None:
            if kind == "message":
                _log.warn(
                    "{cls} accepted a hibernatable WebSocket but has no webSocketMessage(); "
                    "the message is dropped",
                    cls=self.namespace.cls.__name__,
                )
            return
        if kind == "message":
            args: tuple[Any, ...] = (ws, event.data)
        elif kind == "close":
            args = (ws, event.code, event.reason, event.wasClean)
        else:
            args = (ws, event.error)
        self._inflight += 1
        try:
            outcome = _asDeferred(handler(*args))
        except BaseException:
            outcome = fail()
        record = self._record(create=False)
        timeout = record.eventTimeout if record is not None else None
        timer = None
        if timeout is not None and not outcome.called:
            timer = self.registry.clock.callLater(timeout / 1000.0, self._eventTimedOut, name, timeout)

        def done(result: Any) -> None:
            self._inflight -= 1
            self._lastActive = self.registry.clock.seconds()
            if timer is not None and timer.active():
                timer.cancel()
            if isinstance(result, Failure):
                _log.failure("{cls}.{name}() raised", result, cls=self.namespace.cls.__name__, name=name)

        outcome.addBoth(done)

    def _eventTimedOut(self, name: str, timeout: int) -> None:
        _log.error(
            "{cls}.{name}() ran longer than the hibernatable WebSocket event timeout "
            "({timeout} ms); the object is reset",
            cls=self.namespace.cls.__name__, name=name, timeout=timeout,
        )
        self._reset(DurableObjectError(f"{name}() exceeded its {timeout} ms timeout", durableObjectReset=True))

    def _runAlarm(self, retryCount: int) -> None:
        scheduler = self.registry.alarms
        ns, key = self.namespace.name, self.id.toString()
        if self._broken is not None:
            # Reset between timer and delivery: try again on the next incarnation.
            scheduler._schedule(ns, key, 0, retryCount, delay=0)
            return
        storage = self._openStorage()
        store = storage._store
        stored = store.getAlarm()
        if stored is None:
            scheduler.finished(ns, key, None)
            return
        if retryCount == 0 and stored > scheduler.nowMillis():
            scheduler.finished(ns, key, stored)
            return
        handler = getattr(self.instance, "alarm", None)
        if handler is None:
            _log.error("{cls} has an alarm set but no alarm() handler; the alarm is deleted", cls=self.namespace.cls.__name__)
            store.deleteAlarm()
            storage._wrote(confirm=False)
            storage.sync().addBoth(lambda _: scheduler.finished(ns, key, None))
            return
        self._inflight += 1
        try:
            outcome = _asDeferred(handler(AlarmInfo(retryCount)))
        except BaseException:
            outcome = fail()

        def succeeded(_: Any) -> None:
            if store.closed:
                return
            if store.getAlarm() == stored:
                store.deleteAlarm()
                storage._wrote(confirm=False)
            storage.sync().addCallbacks(
                lambda _: scheduler.finished(ns, key, None if store.closed else store.getAlarm()),
                lambda f: _log.failure("Could not record that the alarm ran", f),
            )

        def failed(f: Failure) -> None:
            _log.failure(
                "{cls}.alarm() raised (retry {retry} of {most})", f,
                cls=self.namespace.cls.__name__, retry=retryCount, most=6,
            )
            if not scheduler.failed(ns, key, retryCount, stored) and not store.closed:
                _log.error("Giving up on the alarm of {cls} {id} after 6 retries", cls=self.namespace.cls.__name__, id=key)
                if store.getAlarm() == stored:
                    store.deleteAlarm()
                    storage._wrote(confirm=False)
                storage.sync().addBoth(lambda _: scheduler.finished(ns, key, None if store.closed else store.getAlarm()))

        def settled(result: Any) -> Any:
            self._inflight -= 1
            self._lastActive = self.registry.clock.seconds()
            return result

        outcome.addBoth(settled).addCallbacks(succeeded, failed)

    # -- staying in memory, and leaving it --------------------------------------------------------

    def _armIdle(self, delay: Optional[float] = None) -> None:
        if self._idleTimer is not None and self._idleTimer.active():
            self._idleTimer.cancel()
        if delay is None:
            delay = self._idleDelay()
        self._idleTimer = self.registry.clock.callLater(delay, self._idleCheck)

    def _idleDelay(self) -> float:
        record = self._record(create=False)
        limits = self.registry.limits
        if record is not None and record.sockets:
            return limits.hibernateAfter
        return limits.evictAfter

    def _pinned(self, now: float) -> bool:
        """Whether something keeps the object in memory regardless of idleness."""
        if self._inflight or self._queue or self._gateClosed or self._outputHeld or self._sockets:
            return True
        storage = self._storage
        if storage is not None and (storage._commitCall is not None or storage._transactions):
            return True
        if self._waiting:
            cap = self.registry.limits.waitUntilTimeout
            if any(now - since < cap for since in self._waiting.values()):
                return True
        return False

    def _idleCheck(self) -> None:
        self._idleTimer = None
        if self._broken is not None or self.namespace.actors.get(self.id.toString()) is not self:
            return
        now = self.registry.clock.seconds()
        delay = self._idleDelay()
        if self._pinned(now):
            self._armIdle(delay)
            return
        remaining = self._lastActive + delay - now
        if remaining > 0:
            self._armIdle(remaining)
            return
        self._evict()

    def _evict(self) -> None:
        """Leave memory: the instance goes; storage (all committed) closes; hibernatable sockets
        stay open in the registry; the next event constructs the object again."""
        self._broken = _EVICTED
        self.registry._forget(self)
        self.instance = None
        if self._storage is not None:
            storage, self._storage = self._storage, None
            storage._close()
        record = self._record(create=False)
        if record is not None and not record.sockets:
            self.registry.dropRecord(self.namespace, self.id)
        self.registry.evictions += 1

    # -- lifetime ------------------------------------------------------------------------------

    def _waitUntil(self, d: Deferred[Any]) -> None:
        self._waiting[d] = self.registry.clock.seconds()

        def settled(result: Any) -> None:
            self._waiting.pop(d, None)
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
        if self._idleTimer is not None and self._idleTimer.active():
            self._idleTimer.cancel()
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
                # Never started: safe to retry on the next incarnation.
                args[2].errback(_resetError(error, retryable=True))
        sockets, self._sockets = self._sockets, set()
        for socket in sockets:
            socket._resetByRuntime(1011, "Durable Object reset")


def _remote(error: BaseException) -> BaseException:
    try:
        error.remote = True  # type: ignore[attr-defined]
    except AttributeError:
        pass
    return error


_HANDLERS = {"message": "webSocketMessage", "close": "webSocketClose", "error": "webSocketError"}

_EVICTED = DurableObjectError("This Durable Object left memory; a new call constructs it again.")


def _resetError(cause: BaseException, retryable: bool = False) -> DurableObjectError:
    if isinstance(cause, DurableObjectError) and cause.durableObjectReset:
        if retryable and not cause.retryable:
            copy = DurableObjectError(str(cause), durableObjectReset=True, retryable=True)
            copy.__cause__ = cause
            return copy
        return cause
    error = DurableObjectError(
        f"Durable Object reset because its code raised {cause!r}",
        remote=True,
        durableObjectReset=True,
        retryable=retryable,
    )
    error.__cause__ = cause
    return error


def _remoteFailure(failure: Failure) -> Failure:
    _remote(failure.value)
    return failure


class DurableObjectStub:
    """A client for one object: ``await stub.fetch(request)`` or ``await stub.method(...)``.

    Returned at once by ``get``. Calls through one stub arrive in the order they were made. A
    stub whose call failed because the object was reset (or overloaded the runtime) is broken: its
    later calls fail at once with the same error; make a new stub with ``get``.
    """

    def __init__(self, namespace: "Namespace", objectId: DurableObjectId) -> None:
        self._namespace = namespace
        self.id = objectId
        self.name = objectId.name
        self._brokenBy: Optional[BaseException] = None

    def _send(self, method: Callable[..., Any], *args: Any, size: int = 0) -> Deferred[Any]:
        if self._brokenBy is not None:
            return fail(self._brokenBy)
        target = self._namespace.registry.actorFor(self._namespace, self.id)
        caller = currentActor()
        if caller is None:
            d = target.call(method, *args, size=size)
        else:
            d = caller._outgoing(lambda: target.call(method, *args, size=size))
        return d.addErrback(self._maybeBreak)

    def _maybeBreak(self, failure: Failure) -> Failure:
        if getattr(failure.value, "durableObjectReset", False):
            self._brokenBy = failure.value
        return failure

    def fetch(
        self, input: Any, init: Optional[Mapping[str, Any]] = None, **kwargs: Any
    ) -> Deferred[Response]:
        """Send an HTTP request to the object; fires with its ``Response``."""
        if isinstance(input, Request) and not init and not kwargs:
            request = input
        else:
            request = Request(input, init, **kwargs)
        return self._send(_callFetch, request, size=len(request._body or b""))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return _RpcMethod(self, name)

    def __repr__(self) -> str:
        return f"<DurableObjectStub {self._namespace.name} {self.id.toString()}>"


class _RpcMethod:
    """``stub.name``: calling it sends the call to the object."""

    __slots__ = ("_stub", "_name")

    def __init__(self, stub: DurableObjectStub, name: str) -> None:
        self._stub = stub
        self._name = name

    def __call__(self, *args: Any, **kwargs: Any) -> Deferred[Any]:
        from . import rpc

        try:
            rpc.checkCallable(self._name)
            payload = rpc.encodeCall(args, kwargs)
        except TypeError:
            return fail()
        d = self._stub._send(_callRpc, self._name, payload, size=rpc.payloadSize(payload))
        return d.addCallback(rpc.decodeResult)

    def __repr__(self) -> str:
        return f"<RPC method {self._name} of {self._stub!r}>"


def _callRpc(instance: Any, name: str, payload: bytes) -> Any:
    from .rpc import invoke

    return invoke(instance, name, payload)


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
        alarmIndex: Any = None,
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
        self.records: dict[tuple[str, str], HibernationRecord] = {}
        self.alarms = AlarmScheduler(self, alarmIndex)
        self.evictions = 0

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
            actor._armIdle()
        return actor

    def hibernationRecord(self, namespace: Namespace, objectId: DurableObjectId, create: bool = True) -> Optional[HibernationRecord]:
        key = (namespace.name, objectId.toString())
        record = self.records.get(key)
        if record is None and create:
            record = self.records[key] = HibernationRecord(namespace, objectId)
        return record

    def dropRecord(self, namespace: Namespace, objectId: DurableObjectId) -> None:
        self.records.pop((namespace.name, objectId.toString()), None)

    def _deliverHibernated(self, record: HibernationRecord, ws: Any, kind: str, event: Any) -> None:
        """An event on a hibernatable socket: auto-respond, or wake the object and deliver."""
        if kind == "message" and record.autoResponse is not None:
            if record.autoRespond(ws, event.data, self.clock.seconds()):
                return
        if kind == "close":
            record.remove(ws)
        actor = self.actorFor(record.namespace, record.objectId)
        actor._submit(actor._hibernatedEvent, ws, kind, event)

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

