"""Durable Objects: the class users subclass, its ``ctx``, and the ``Actor`` that runs one
incarnation of one object.

An ``Actor`` is the runtime's record of one live object: the user's instance, its ``ctx``, its
gates (``dotwist.gates``) and its lifecycle state (``dotwist.lifecycle``). It constructs the
instance, delivers events through the input gate, runs calls and hands their replies back through
the output gate, runs ``blockConcurrencyWhile``, and resets the object when its code or its
storage fails. When an object stays in memory, and alarms, are decided elsewhere
(``dotwist.registry``, ``dotwist.alarms``).

Core: no I/O of its own. Time comes from the registry's injected clock, which schedules the
``blockConcurrencyWhile`` and event time limits; sockets are reached only through the functions
their owners registered.
"""

from __future__ import annotations

import asyncio
import inspect
import weakref
from types import CoroutineType
from typing import TYPE_CHECKING, Any, Callable, NoReturn, Optional

from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from .context import CURRENT, currentActor
from .durable_storage import DurableObjectStorage, StorageSession
from .errors import DurableObjectAbort, DurableObjectError, markRemote, overloaded, resetError
from .gates import InputGate, OutputGate
from .handlers import CpuTimeLimitExceeded, asDeferred, invoke
from .hibernation import HibernationRecord, WebSocketRequestResponsePair
from .ids import DurableObjectId
from .lifecycle import ObjectLifecycle, transition
from .relaxed import trim
from . import rpc
from .stubs import callFetch
from .rpc import invoke as _rpcInvoke
from .stats import NamespaceStats

if TYPE_CHECKING:  # pragma: no cover
    from .fetch import Request
    from .registry import Namespace, ObjectRegistry
    from .websocket import WebSocket

_log = Logger(namespace="dotwist.objects")

#: Handler names run with ``runHandler`` -> the event kind metrics count them as.
_HANDLER_KINDS = {
    "alarm": "alarm",
    "webSocketMessage": "websocket_message",
    "webSocketClose": "websocket_close",
    "webSocketError": "websocket_error",
}


class DurableObject:
    """Base class for Durable Objects: ``__init__(self, ctx, env)`` keeps both as attributes."""

    def __init__(self, ctx: "DurableObjectState", env: Any) -> None:
        self.ctx = ctx
        self.env = env


class DurableObjectState:
    """What an object knows of itself and the runtime: ``ctx`` in Cloudflare's API."""

    def __init__(self, actor: "Actor") -> None:
        # Held weakly: the Actor holds this ctx, and an evicted object must be freed by reference
        # counting, not wait in a cycle for a garbage collection.
        self._actorRef = weakref.ref(actor)
        self.id: DurableObjectId = actor.id
        #: ``storage``, once opened; the Actor forgets it when it closes the session.
        self._storage: Optional[DurableObjectStorage] = None

    @property
    def _actor(self) -> "Actor":
        actor = self._actorRef()
        if actor is None:
            raise DurableObjectError(
                "This Durable Object left memory; its ctx belongs to a past incarnation.",
                durableObjectReset=True,
            )
        return actor

    @property
    def storage(self) -> DurableObjectStorage:
        """This object's durable storage (opened on first use)."""
        storage = self._storage
        if storage is None:
            storage = self._storage = self._actor.storage().api
        return storage

    def blockConcurrencyWhile(self, callback: Callable[[], Any]) -> Deferred[Any]:
        """Run ``callback`` with the input gate locked: no other event reaches the object.

        If the callback raises, or runs past the time limit, the object is reset.
        """
        return self._actor.blockConcurrencyWhile(callback)

    # -- the WebSocket Hibernation API -----------------------------------------------------------

    def acceptWebSocket(self, ws: "WebSocket", tags: Optional[list[str]] = None) -> None:
        """Accept ``ws`` (a server end) as hibernatable: its events go to this class's
        ``webSocketMessage``/``webSocketClose``/``webSocketError``, and the object may leave
        memory while the socket stays open."""
        actor = self._actor
        actor.hibernation().accept(ws, tags)
        actor.registry.armIdle(actor)  # idle now means hibernation, which comes sooner

    def getWebSockets(self, tag: Optional[str] = None) -> list["WebSocket"]:
        """The open hibernatable sockets of this object (with ``tag``, if given)."""
        record = self._actor.existingHibernation()
        return record.getWebSockets(tag) if record is not None else []

    def getTags(self, ws: "WebSocket") -> list[str]:
        return self._actor.hibernation().getTags(ws)

    def setWebSocketAutoResponse(self, pair: Optional[WebSocketRequestResponsePair] = None) -> None:
        """Answer a text message equal to ``pair.request`` with ``pair.response``, without waking
        the object; no argument removes the auto-response."""
        if pair is not None and not isinstance(pair, WebSocketRequestResponsePair):
            raise TypeError("setWebSocketAutoResponse() takes a WebSocketRequestResponsePair")
        self._actor.hibernation().autoResponse = pair

    def getWebSocketAutoResponse(self) -> Optional[WebSocketRequestResponsePair]:
        record = self._actor.existingHibernation()
        return record.autoResponse if record is not None else None

    def getWebSocketAutoResponseTimestamp(self, ws: "WebSocket") -> Any:
        """When the runtime last auto-responded on ``ws`` (a UTC datetime), or None."""
        return self._actor.hibernation().autoResponseTimestamp(ws)

    def setHibernatableWebSocketEventTimeout(self, timeoutMs: Optional[int] = None) -> None:
        """Limit how long one webSocket* handler may run (ms); past it the object is reset."""
        if timeoutMs is not None and (not isinstance(timeoutMs, int) or timeoutMs <= 0):
            raise TypeError("The event timeout is a positive number of milliseconds, or None")
        self._actor.hibernation().eventTimeout = timeoutMs

    def getHibernatableWebSocketEventTimeout(self) -> Optional[int]:
        record = self._actor.existingHibernation()
        return record.eventTimeout if record is not None else None

    def waitUntil(self, awaitable: Any) -> None:
        """Keep the object alive until ``awaitable`` settles; errors are logged."""
        self._actor.waitUntil(asDeferred(awaitable, self._actor.registry.runner))

    def abort(self, reason: Optional[str] = None) -> NoReturn:
        """Reset the object now and stop the code that called it: in-memory state and
        uncommitted writes are dropped, pending events fail, and this raises
        ``DurableObjectAbort`` (a ``BaseException``), so nothing after the call runs. The caller
        of the running call gets a ``DurableObjectError`` with ``durableObjectReset`` and the
        reason, not the call's result."""
        self._actor.reset(
            DurableObjectError(
                f"Durable Object was aborted: {reason}" if reason else "Durable Object was aborted.",
                durableObjectReset=True,
            )
        )
        raise DurableObjectAbort(reason or "Durable Object abort requested")


class Actor:
    """The runtime side of one incarnation of one object."""

    def __init__(self, namespace: "Namespace", objectId: DurableObjectId) -> None:
        self.namespace = namespace
        self.id = objectId
        self.key = objectId.toString()
        self.registry: "ObjectRegistry" = namespace.registry
        self._clock = self.registry.clock
        #: The namespace's counts (``dotwist.stats``); plain sockets' events count into
        #: ``socketEvents`` on the message path.
        self.stats: NamespaceStats = namespace.stats
        self.socketEvents = self.stats.socketEvents
        self.lifecycle = ObjectLifecycle.CONSTRUCTING
        self.instance: Any = None
        self.ctx = DurableObjectState(self)
        self.inputGate = InputGate(CURRENT, self)
        self.outputGate = OutputGate()
        #: Why the object broke (set with the BROKEN state).
        self.brokenBy: Optional[BaseException] = None
        #: Events running now (calls, hibernated events, alarms), for residency decisions.
        self.running = 0
        self.pendingCalls = 0
        self.pendingBytes = 0
        self.rejectedCalls = 0
        self.lastActive = self.registry.clock.seconds()
        #: A timer the registry keeps for residency decisions.
        self.idleTimer: Any = None
        self._session: Optional[StorageSession] = None
        self._sockets: dict["WebSocket", Callable[[int, str], None]] = {}
        self._waitUntil: dict[Deferred[Any], float] = {}
        self._tasks: set["asyncio.Future[Any]"] = set()
        #: Names ``callNow`` found callable through RPC on this incarnation's class.
        self._methods: set[str] = set()

    def __repr__(self) -> str:
        return f"<Actor {self.namespace.name} {self.key} {self.lifecycle.value}>"

    @property
    def name(self) -> Optional[str]:
        """The object's name, if it is known: from ``idFromName``, or recorded with its data."""
        if self.id.name is not None:
            return self.id.name
        return self.registry.names.get(self.namespace.name, self.key)

    def logFields(self) -> dict[str, Any]:
        """Who this object is, for log events: ``cls``, ``namespace``, ``objectId``,
        ``objectName`` (None if not known), and ``who``, all of it as one short phrase."""
        name = self.name
        cls = self.namespace.cls.__name__
        return {
            "cls": cls,
            "namespace": self.namespace.name,
            "objectId": self.key,
            "objectName": name,
            "who": f"{cls} {self.key}" + (f" ({name!r})" if name is not None else ""),
        }

    # -- what the runtime asks about ---------------------------------------------------------

    @property
    def inMemory(self) -> bool:
        return self.lifecycle.inMemory

    @property
    def liveSockets(self) -> int:
        """Plain (non-hibernatable) WebSockets this incarnation accepted: they pin it in memory."""
        return len(self._sockets)

    @property
    def openSession(self) -> Optional[StorageSession]:
        """This incarnation's storage session if it is open (never opens it)."""
        return self._session

    @property
    def storageBusy(self) -> bool:
        return self._session is not None and self._session.busy

    def waitUntilStarts(self) -> list[float]:
        return list(self._waitUntil.values())

    def hibernation(self) -> HibernationRecord:
        """This object's ``HibernationRecord`` (kept by the registry across incarnations)."""
        record = self.registry.hibernationRecord(self.namespace, self.id, True)
        assert record is not None
        return record

    def existingHibernation(self) -> Optional[HibernationRecord]:
        """This object's ``HibernationRecord``, if it has one (nothing is created)."""
        return self.registry.hibernationRecord(self.namespace, self.id, False)

    def storage(self) -> StorageSession:
        """This incarnation's storage session, opened on first use."""
        if self._session is None:
            if self.lifecycle.final:
                raise DurableObjectError(
                    "This Durable Object was reset; its storage is closed.", durableObjectReset=True
                )
            registry = self.registry
            ns, key, name = self.namespace.name, self.key, self.id.name
            self._session = StorageSession(
                registry.storage.open(ns, key),
                clock=registry.clock,
                inputGate=self.inputGate,
                outputGate=self.outputGate,
                onFailure=self.reset,
                onAlarmSet=lambda millis: registry.alarms.alarmSet(ns, key, millis),
                hasAlarmHandler=self._hasAlarmHandler,
                stats=self.stats,
                name=name,
                onNamed=None if name is None else lambda: registry.names.add(ns, key, name),
            )
        return self._session

    def _hasAlarmHandler(self) -> bool:
        return self.instance is None or getattr(self.instance, "alarm", None) is not None

    # -- construction ------------------------------------------------------------------------

    def construct(self) -> None:
        """Build the user's instance (CONSTRUCTING → LIVE, or BROKEN if the constructor raises).
        A ``blockConcurrencyWhile`` in the constructor holds back every event after it."""
        token = CURRENT.set(self)
        self.stats.constructed += 1
        try:
            instance = self.namespace.cls(self.ctx, self.registry.env)
        except BaseException as e:
            self.stats.errors["constructor"] += 1
            _log.failure("{who}: constructor raised; the object is reset", **self.logFields())
            self.reset(e)
            return
        finally:
            CURRENT.reset(token)
        if self.lifecycle is ObjectLifecycle.CONSTRUCTING:  # not reset by its own constructor
            self.instance = instance
            self.lifecycle = transition(self.lifecycle, ObjectLifecycle.LIVE)

    # -- events --------------------------------------------------------------------------------

    def deliver(self, fn: Callable[..., object], *args: Any) -> None:
        """Run ``fn(*args)`` as an event of this object, now or when the input gate opens."""
        self.lastActive = self._clock.seconds()
        self.inputGate.submit(fn, args)

    def call(self, method: Callable[..., Any], *args: Any, size: int = 0) -> Deferred[Any]:
        """Deliver an event whose result the caller waits for (a request or an RPC call):
        ``method(instance, *args)``.

        Past the object's bound on pending calls (count or bytes), the call fails at once with an
        ``overloaded`` error instead of queueing.
        """
        limits = self.registry.limits
        if self.pendingCalls >= limits.maxPendingCalls or self.pendingBytes + size > limits.maxPendingBytes:
            self.rejectedCalls += 1
            self.stats.overloaded += 1
            if self.rejectedCalls & (self.rejectedCalls - 1) == 0:  # 1st, 2nd, 4th, 8th...
                _log.warn(
                    "{who} is overloaded: {pending} calls ({bytes} bytes) pending; "
                    "{rejected} calls rejected so far",
                    pending=self.pendingCalls, bytes=self.pendingBytes, rejected=self.rejectedCalls,
                    **self.logFields(),
                )
            return fail(overloaded(self.pendingCalls, self.pendingBytes))
        self.stats.events["rpc" if method is _rpcInvoke else "fetch"] += 1
        self.pendingCalls += 1
        self.pendingBytes += size
        result: Deferred[Any] = Deferred()

        def settled(outcome: object) -> object:
            self.pendingCalls -= 1
            self.pendingBytes -= size
            return outcome

        result.addBoth(settled)
        self.deliver(self._startCall, method, args, result)
        return result

    def callNow(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Optional[Deferred[Any]]:
        """An RPC call ``name(*args, **kwargs)`` from outside any object (a Worker), run now if
        the object can take it now: live, its input gate open with nothing waiting, and under its
        bound on pending calls. Returns None if it cannot (the caller then sends the call the
        general way, ``call``, which queues it or refuses it).

        This is ``call(rpc.invoke, ...)`` without the layers a call that runs at once does not
        need: the arguments and the result are copied in memory (``rpc.clone``) instead of
        encoded, and a method that returns in its first step gives its result without a chain of
        ``Deferred`` callbacks. What the caller sees is the same: copies both ways, errors copied
        with their type and message, a result held by the output gate until the writes before it
        are durable, a reset's error if the object was reset while the call ran.
        """
        gate = self.inputGate
        if self.lifecycle is not _LIVE or gate.locked or gate.waiting:
            return None
        limits = self.registry.limits
        if self.pendingCalls >= limits.maxPendingCalls:
            return None
        try:
            args, kwargs, size = rpc.cloneCall(args, kwargs)
        except TypeError:
            return fail()
        if self.pendingBytes + size > limits.maxPendingBytes:
            return None
        self.stats.events["rpc"] += 1
        self.pendingCalls += 1
        self.pendingBytes += size
        self.running += 1
        self.lastActive = self._clock.seconds()
        pending: Optional[Deferred[Any]] = None
        outcome: Any = None
        token = CURRENT.set(self)
        try:
            try:
                if name in self._methods:
                    method = getattr(self.instance, name)
                else:
                    method = rpc.methodOf(self.instance, name)
                    self._methods.add(name)
            except TypeError:
                pending = fail()
            else:
                try:
                    outcome = method(*args, **kwargs) if kwargs else method(*args)
                except BaseException as e:
                    pending = fail(rpc.remote(e))
                else:
                    if type(outcome) is CoroutineType:
                        done, outcome = self.registry.runner.runFirst(outcome, gate)
                        if not done:
                            pending = outcome.addCallbacks(
                                _copyResult, _remoteFailure, callbackArgs=(name,)
                            )
                    elif inspect.isawaitable(outcome):
                        pending = asDeferred(rpc.finishCopy(name, outcome), self.registry.runner, gate)
        finally:
            CURRENT.reset(token)
        if pending is None:
            try:
                if type(outcome) not in rpc.IMMUTABLE:
                    outcome = rpc.cloneResult(name, outcome)
            except TypeError:
                pending = fail()
            else:
                if self.brokenBy is None and not self.outputGate.held:
                    # Done, and nothing holds the reply: the common case, with no callbacks.
                    self.running -= 1
                    self.pendingCalls -= 1
                    self.pendingBytes -= size
                    return succeed(outcome)
                pending = succeed(outcome)
        return self._settleLater(pending, size, _rpcInvoke)

    def fetchNow(self, request: Request, size: int) -> Optional[Deferred[Any]]:
        """``stub.fetch(request)`` from outside any object (a Worker), run now if the object can
        take it now: live, its input gate open with nothing waiting, and under its bound on
        pending calls (count and bytes). Returns None if it cannot (the caller then sends the
        request the general way, ``call``, which queues it or refuses it).

        This is ``call(callFetch, request)`` without the layers a request that runs at once does
        not need: the object's ``fetch`` runs its first step here (through the runner's
        ``runFirst``, as ``invoke`` would), and a ``fetch`` that answers without waiting gives its
        ``Response`` as a fired ``Deferred``, with no chain of callbacks. Everything else (a
        ``fetch`` that waits or fails, a reply held by the output gate until the writes before it
        are durable, an object reset while it ran) goes through ``_reply``, as on the general
        path.
        """
        gate = self.inputGate
        if self.lifecycle is not _LIVE or gate.locked or gate.waiting:
            return None
        limits = self.registry.limits
        if self.pendingCalls >= limits.maxPendingCalls or self.pendingBytes + size > limits.maxPendingBytes:
            return None
        self.stats.events["fetch"] += 1
        self.pendingCalls += 1
        self.pendingBytes += size
        self.running += 1
        self.lastActive = self._clock.seconds()
        pending: Optional[Deferred[Any]] = None
        outcome: Any = None
        token = CURRENT.set(self)
        try:
            try:
                outcome = callFetch(self.instance, request)
            except BaseException:
                pending = fail()
            else:
                if type(outcome) is CoroutineType:
                    done, outcome = self.registry.runner.runFirst(outcome, gate)
                    if not done:
                        pending = outcome
                elif isinstance(outcome, (Deferred, Failure)) or inspect.isawaitable(outcome):
                    pending = asDeferred(outcome, self.registry.runner, gate)
        finally:
            CURRENT.reset(token)
        if pending is None:
            if self.brokenBy is None and not self.outputGate.held:
                # Done, and nothing holds the reply: the common case, with no callbacks.
                self.running -= 1
                self.lastActive = self._clock.seconds()
                self.pendingCalls -= 1
                self.pendingBytes -= size
                return succeed(outcome)
            pending = succeed(outcome)
        return self._settleLater(pending, size, callFetch)

    def _settleLater(self, pending: Deferred[Any], size: int, method: object) -> Deferred[Any]:
        """The caller's ``Deferred`` for a call run at once whose reply is not ready (it waits, it
        failed, or the output gate holds it): ``_reply`` hands it over, and the call stops counting
        as pending when it fires."""
        result: Deferred[Any] = Deferred()

        def settled(outcome: object) -> object:
            self.pendingCalls -= 1
            self.pendingBytes -= size
            return outcome

        result.addBoth(settled)
        pending.addBoth(self._reply, result, method)
        return result

    def _startCall(self, method: Callable[..., Any], args: tuple[Any, ...], result: Deferred[Any]) -> None:
        if self.brokenBy is not None:
            result.errback(resetError(self.brokenBy))
            return
        if not self.inMemory:
            result.errback(
                DurableObjectError(
                    "This Durable Object left memory; a new call constructs it again.", retryable=True
                )
            )
            return
        self.running += 1
        invoke(method, self.instance, *args, runner=self.registry.runner, gate=self.inputGate).addBoth(
            self._reply, result, method
        )

    def _reply(self, outcome: object, result: Deferred[Any], method: object = None) -> None:
        """Hand a call's outcome to its caller, through the output gate. A call that ends after
        its object was reset (``ctx.abort()``, a failed write, a timeout) fails with the reset,
        whatever it returned: its object's output gate is broken, as on Cloudflare."""
        self.running -= 1
        self.lastActive = self.registry.clock.seconds()
        if self.brokenBy is not None:
            # The object was reset while this call ran (a failed write, abort(), a timeout):
            # whatever the call returned may depend on state that is gone.
            result.errback(resetError(self.brokenBy))
            return
        if isinstance(outcome, Failure) and outcome.value is not None:
            kind = "rpc" if method is _rpcInvoke else "fetch"
            self.stats.errors[kind] += 1
            # One line: the caller gets the exception, and logs its traceback if it does not
            # handle it (the Worker's unhandled exceptions are logged with the request).
            _log.warn(
                "{who}: {kind} raised {error}", kind=kind, error=_describe(outcome.value),
                **self.logFields(),
            )
            markRemote(outcome.value)
        self.outputGate.sendOrFail(result.callback, outcome, result.errback)
        if isinstance(outcome, Failure) and isinstance(outcome.value, CpuTimeLimitExceeded):
            self.reset(outcome.value)

    def runHandler(
        self, name: str, args: tuple[Any, ...], timeoutMs: Optional[int] = None
    ) -> Optional[Deferred[Any]]:
        """Run the instance's handler ``name(*args)`` as part of the current event (alarms,
        hibernated WebSocket events); None if the instance has no such handler. Arguments the
        handler does not declare are dropped (``dotwist.relaxed``). Past ``timeoutMs``, the
        object is reset."""
        handler = getattr(self.instance, name, None)
        if handler is None:
            return None
        kind = _HANDLER_KINDS.get(name, name)
        self.stats.events[kind] = self.stats.events.get(kind, 0) + 1
        self.running += 1
        # Relaxed call, as Cloudflare's Python Workers: `async def alarm(self)` is legal.
        outcome = invoke(
            handler, *trim(self.instance, name, handler, args), runner=self.registry.runner, gate=self.inputGate
        )
        timer = None
        if timeoutMs is not None and not outcome.called:
            timer = self.registry.clock.callLater(timeoutMs / 1000.0, self._handlerTimedOut, name, timeoutMs)

        def settled(result: object) -> object:
            self.running -= 1
            self.lastActive = self.registry.clock.seconds()
            if timer is not None and timer.active():
                timer.cancel()
            if isinstance(result, Failure):
                self.stats.errors[kind] = self.stats.errors.get(kind, 0) + 1
                if isinstance(result.value, CpuTimeLimitExceeded):
                    self.reset(result.value)
            return result

        return outcome.addBoth(settled)

    def _handlerTimedOut(self, name: str, timeoutMs: int) -> None:
        self.stats.errors["timeout"] += 1
        _log.error(
            "{who}: {name}() ran longer than its event timeout ({timeout} ms); the object is reset",
            name=name, timeout=timeoutMs, **self.logFields(),
        )
        self.reset(DurableObjectError(f"{name}() exceeded its {timeoutMs} ms timeout", durableObjectReset=True))

    def blockConcurrencyWhile(self, callback: Callable[[], Any]) -> Deferred[Any]:
        self.inputGate.lock()
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
            self.reset(error)
            done.errback(error)

        timer = self.registry.clock.callLater(limit, timedOut)

        def finished(result: object) -> None:
            nonlocal over
            if over:
                if isinstance(result, Failure):
                    _log.failure(
                        "{who}: blockConcurrencyWhile() callback failed after its timeout",
                        result, **self.logFields(),
                    )
                return
            over = True
            timer.cancel()
            if isinstance(result, Failure):
                self.stats.errors["block_concurrency"] += 1
                _log.failure(
                    "{who}: blockConcurrencyWhile() callback raised; the object is reset",
                    result, **self.logFields(),
                )
                self.reset(
                    DurableObjectError(
                        f"blockConcurrencyWhile() callback raised {result.value!r}; "
                        "the Durable Object was reset.",
                        durableObjectReset=True,
                    )
                )
                done.errback(result)
            else:
                self.inputGate.unlock()
                done.callback(result)

        invoke(callback, runner=self.registry.runner).addBoth(finished)
        return done

    # -- the object's own outgoing calls -----------------------------------------------------

    def outgoing(self, send: Callable[[], Deferred[Any]]) -> Deferred[Any]:
        """A call this object makes to another (or an outbound request): it leaves only once this
        object's earlier writes are durable (output gate), and its reply comes back through this
        object's input gate."""
        reply: Deferred[Any] = Deferred()

        def go() -> None:
            send().addBoth(self._incoming, reply)

        self.outputGate.sendOrFail(lambda _: go(), None, reply.errback)
        return reply

    def _incoming(self, outcome: object, reply: Deferred[Any]) -> None:
        if self.inMemory and self.registry.liveActor(self.namespace.name, self.key) is self:
            self.deliver(reply.callback, outcome)
        else:
            reply.callback(outcome)

    def send(self, fn: Callable[..., object], *args: Any) -> None:
        """Send something out (a WebSocket message or close) through the output gate."""
        self.outputGate.send(fn, args)

    # -- sockets accepted with accept() ------------------------------------------------------

    def adoptSocket(self, ws: "WebSocket", onReset: Callable[[int, str], None]) -> None:
        """A plain WebSocket accepted in this object's code: it pins the object in memory, and a
        reset closes it with ``onReset(code, reason)``."""
        self._sockets[ws] = onReset

    def releaseSocket(self, ws: "WebSocket") -> None:
        self._sockets.pop(ws, None)

    # -- lifetime ------------------------------------------------------------------------------

    def waitUntil(self, d: Deferred[Any]) -> None:
        self._waitUntil[d] = self.registry.clock.seconds()

        def settled(result: object) -> None:
            self._waitUntil.pop(d, None)
            if isinstance(result, Failure):
                self.stats.errors["wait_until"] += 1
                _log.failure("{who}: waitUntil() task failed", result, **self.logFields())

        d.addBoth(settled)

    def adoptTask(self, task: "asyncio.Future[Any]") -> None:
        """An asyncio task this object's code started: cancelled if the object is reset or leaves
        memory while it runs."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _cancelTasks(self, why: str) -> None:
        current = _currentTask() if self._tasks else None
        tasks = [t for t in self._tasks if t is not current and not t.done()]
        self._tasks = set()
        for task in tasks:
            task.cancel()
        if tasks:
            _log.warn(
                "{cls} {id} {why}; {n} task(s) it started were still running and are cancelled",
                cls=self.namespace.cls.__name__, id=self.key, why=why, n=len(tasks),
            )

    def leaveMemory(self, state: ObjectLifecycle) -> None:
        """Leave memory idle (HIBERNATED or EVICTED): the instance goes; storage, all committed,
        closes; hibernatable sockets stay open in the registry; tasks it left running are
        cancelled."""
        self.lifecycle = transition(self.lifecycle, state)
        self._cancelTasks(f"left memory ({state.value})")
        self.instance = None
        if self._session is not None:
            session, self._session = self._session, None
            self.ctx._storage = None  # its next ``ctx.storage`` asks again (and fails)
            session.close()
        # The input gate refers back to this Actor (it runs events as it): let go of it, so that
        # an evicted object (thousands a minute on a busy server) is freed by reference counting,
        # not left for a garbage collection (``ctx`` holds this Actor weakly). Nothing routes
        # events here any more (the registry forgot it); one that still comes runs outside any
        # object.
        self.inputGate = InputGate(CURRENT, None)

    def reset(self, error: BaseException) -> None:
        """Drop the instance and everything that waited on it; the next event constructs anew.

        Events still waiting at the gate fail with a ``durableObjectReset`` error (retryable:
        they never started), output waiting for writes is dropped, and the object's plain
        WebSockets are closed with 1011: a reset object's in-memory state, listeners included, is
        gone.
        """
        if self.lifecycle.final:
            return
        self.lifecycle = transition(self.lifecycle, ObjectLifecycle.BROKEN)
        self.brokenBy = error
        self.stats.resets += 1
        self.stats.departures["broken"] += 1
        self.registry.forget(self)
        self._cancelTasks("was reset")
        self.instance = None
        self.outputGate.fail(resetError(error))
        if self._session is not None:
            session, self._session = self._session, None
            self.ctx._storage = None  # its next ``ctx.storage`` asks again (and fails)
            session.close()
        for fn, args in self.inputGate.clear():
            if fn == self._startCall:
                result: Deferred[Any] = args[2]
                result.errback(resetError(error, retryable=True))
        sockets, self._sockets = self._sockets, {}
        for onReset in sockets.values():
            onReset(1011, "Durable Object reset")

    def flush(self) -> Deferred[None]:
        """Commit what this object wrote this turn (at shutdown); fires when durable."""
        if self._session is None:
            return succeed(None)
        return self._session.flush()


_LIVE = ObjectLifecycle.LIVE


def _copyResult(result: Any, name: str) -> Any:
    return rpc.cloneResult(name, result)


def _remoteFailure(failure: Failure) -> Failure:
    """A method's failure as its caller gets it (``rpc.remote``); the runtime's own
    ``CpuTimeLimitExceeded`` passes as it is."""
    error = failure.value
    if error is None or isinstance(error, CpuTimeLimitExceeded):
        return failure
    return Failure(rpc.remote(error))


def _describe(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


__all__ = ["Actor", "DurableObject", "DurableObjectState", "currentActor"]


def _currentTask() -> "Optional[asyncio.Future[Any]]":
    try:
        return asyncio.current_task()
    except RuntimeError:  # no event loop is running
        return None
