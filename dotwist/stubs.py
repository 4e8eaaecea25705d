"""Namespaces and stubs: how Workers and objects reach a Durable Object.

``env.BINDING`` is a ``DurableObjectNamespace``: it mints IDs (``idFromName``, ``newUniqueId``,
``idFromString``) and gives stubs (``get``, ``getByName``). A ``DurableObjectStub`` sends requests
(``stub.fetch``) and RPC calls (``stub.method(...)``) to the one live instance of its ID. A call
enters the object's input gate the moment it is made, so calls through one stub arrive in the
order they were made; a call made by another object leaves through that object's output gate.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional

from twisted.internet.defer import Deferred, fail
from twisted.python.failure import Failure

from . import rpc
from .context import CURRENT, currentActor
from .fetch import Request, Response
from .ids import DurableObjectId
from .relaxed import trim

if TYPE_CHECKING:  # pragma: no cover
    from .registry import Namespace


class DurableObjectStub:
    """A client for one object: ``await stub.fetch(request)`` or ``await stub.method(...)``.

    Returned at once by ``get``. Calls through one stub arrive in the order they were made. A
    stub whose call failed because the object was reset is broken: its later calls fail at once
    with the same error; make a new stub with ``get``.
    """

    def __init__(self, namespace: "Namespace", objectId: DurableObjectId) -> None:
        self._namespace = namespace
        self.id = objectId
        self.name = objectId.name
        self._line = _Line(namespace, objectId)

    def fetch(
        self, input: Any, init: Optional[Mapping[str, Any]] = None, **kwargs: Any
    ) -> Deferred[Response]:
        """Send an HTTP request to the object; fires with its ``Response``."""
        if isinstance(input, Request) and not init and not kwargs:
            request = input
        else:
            request = Request(input, init, **kwargs)
        line = self._line
        body = request.body
        size = len(body) if body is not None else 0
        if line.brokenBy is None and CURRENT.get() is None:
            # From a Worker to an object in memory here, which can take the request now: its
            # fetch runs at once (Actor.fetchNow), and answers without a chain of Deferreds if
            # it does not wait.
            namespace = line.namespace
            if namespace.registry.router is None:
                actor = namespace.actors.get(line.key)
                if actor is not None:
                    d = actor.fetchNow(request, size)
                    if d is not None:
                        if not d.called or isinstance(d.result, Failure):
                            d.addErrback(line.maybeBreak)
                        return d
        return line.send(callFetch, request, size=size)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        method = _RpcMethod(self._line, name)
        # Kept, so that the next ``stub.name`` is found at once. The method refers to the stub's
        # line, not to the stub: no reference cycle, a dropped stub is freed at once.
        self.__dict__[name] = method
        return method

    def __repr__(self) -> str:
        return self._line.describe()


class _Line:
    """What a stub's calls go through: its target, and whether it is broken (shared by the stub
    and its methods)."""

    __slots__ = ("namespace", "id", "key", "brokenBy")

    def __init__(self, namespace: "Namespace", objectId: DurableObjectId) -> None:
        self.namespace = namespace
        self.id = objectId
        self.key = objectId.toString()
        self.brokenBy: Optional[BaseException] = None

    def describe(self) -> str:
        return f"<DurableObjectStub {self.namespace.name} {self.key}>"

    def send(self, method: Callable[..., Any], *args: Any, size: int = 0) -> Deferred[Any]:
        if self.brokenBy is not None:
            return fail(self.brokenBy)
        namespace = self.namespace
        objectId = self.id

        def send() -> Deferred[Any]:
            # The target is found when the call leaves: a call held at the caller's output gate
            # reaches the incarnation live then (a new one if the old left memory meanwhile).
            router = namespace.registry.router
            if router is not None:
                return router.send(namespace, objectId, method, args, size)
            try:
                target = namespace.registry.actorFor(namespace, objectId)
            except Exception:
                return fail()
            return target.call(method, *args, size=size)

        caller = currentActor()
        d = send() if caller is None else caller.outgoing(send)
        return d.addErrback(self.maybeBreak)

    def maybeBreak(self, failure: Failure) -> Failure:
        if getattr(failure.value, "durableObjectReset", False):
            self.brokenBy = failure.value
        return failure


class _RpcMethod:
    """``stub.name``: calling it sends the call to the object."""

    __slots__ = ("_line", "_name")

    def __init__(self, line: _Line, name: str) -> None:
        self._line = line
        self._name = name

    def __call__(self, *args: Any, **kwargs: Any) -> Deferred[Any]:
        line = self._line
        name = self._name
        if line.brokenBy is None and name not in rpc.RESERVED and CURRENT.get() is None:
            # From a Worker to an object in memory here, which can take the call now: it runs at
            # once (Actor.callNow), with no message to route and no reply to carry back through
            # a caller's gates.
            namespace = line.namespace
            if namespace.registry.router is None:
                actor = namespace.actors.get(line.key)
                if actor is not None:
                    d = actor.callNow(name, args, kwargs)
                    if d is not None:
                        if not d.called or isinstance(d.result, Failure):
                            d.addErrback(line.maybeBreak)
                        return d
        try:
            rpc.checkCallable(name)
            payload = rpc.encodeCall(args, kwargs)
        except TypeError:
            return fail()
        d = line.send(rpc.invoke, name, payload, size=rpc.payloadSize(payload))
        return d.addCallback(rpc.decodeResult)

    def __repr__(self) -> str:
        return f"<RPC method {self._name} of {self._line.describe()}>"


def callFetch(instance: Any, request: Request) -> Any:
    """What ``stub.fetch`` runs in the object: its ``fetch(request)``."""
    fetch = getattr(instance, "fetch", None)
    if fetch is None:
        raise TypeError(
            f"Durable Object class {type(instance).__name__} has no fetch() method."
        )
    return fetch(*trim(instance, "fetch", fetch, (request,)))  # relaxed: `def fetch(self)` is legal


class DurableObjectNamespace:
    """``env.BINDING``: mint IDs and get stubs for one Durable Object class."""

    def __init__(self, namespace: "Namespace") -> None:
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
        if id.namespace != self._namespace.name:
            raise TypeError(
                f"get() was given an ID of namespace {id.namespace!r}, "
                f"not of this namespace {self._namespace.name!r}."
            )
        return DurableObjectStub(self._namespace, id)

    def getByName(self, name: str, options: Optional[Mapping[str, Any]] = None) -> DurableObjectStub:
        return self.get(self.idFromName(name))

    def __repr__(self) -> str:
        return f"<DurableObjectNamespace {self._namespace.name}>"


def namespaceOf(target: "DurableObjectStub | DurableObjectNamespace") -> "Namespace":
    """The runtime's ``Namespace`` (its registry, its IDs, its live objects) behind a stub or a
    namespace binding: how the runtime's own tools (``dotwist.testing``) reach an object from
    what user code holds. Not part of Cloudflare's API."""
    if isinstance(target, (DurableObjectStub, DurableObjectNamespace)):
        return target._namespace
    raise TypeError(
        f"Expected a Durable Object stub or namespace binding, not {type(target).__name__}"
    )


__all__ = ["DurableObjectNamespace", "DurableObjectStub", "callFetch", "namespaceOf"]
