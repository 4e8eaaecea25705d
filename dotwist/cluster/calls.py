"""A call to an object as data, and its outcome as data: what crosses between cluster nodes.

A stub's call is ``method(instance, *args)`` (``dotwist.stubs.callFetch`` with a ``Request``, or
``dotwist.rpc.invoke`` with a method name and its encoded arguments). To run it on the node that
owns the object, the caller's node describes it with :func:`encodeCall`; the owner rebuilds it
with :func:`decodeCall` and runs exactly what the local path runs, and its outcome goes back with
:func:`encodeReply` / :func:`decodeReply`. Everything is encoded with the storage codec
(``dotwist.storage.codec``, the structured clone that RPC arguments already go through), so a
call behaves the same whether the object is local or remote.

Errors cross as their type's name, message and Cloudflare's flags; the caller raises the same
type if it knows it (any ``BaseException`` subclass of an imported module), else
``rpc.RemoteError`` naming it. Pure: no I/O.
"""

from __future__ import annotations

import sys
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Optional

from .. import rpc
from ..errors import DurableObjectError
from ..fetch import Headers, Request, Response
from ..storage import codec
from ..stubs import callFetch

__all__ = [
    "Call",
    "Moved",
    "Upgrade",
    "decodeCall",
    "decodeReply",
    "encodeCall",
    "encodeError",
    "encodeMoved",
    "encodeReply",
    "encodeUpgrade",
]

#: Bodies and arguments may be as large as a request may be.
_MAX_SIZE = 1 << 31

_FLAGS = ("remote", "retryable", "overloaded", "durableObjectReset")


@dataclass
class Call:
    """A call rebuilt on the owner: ``method(instance, *args)`` on object ``objectId`` (named
    ``name`` if it came from ``idFromName``) of namespace ``namespace``."""

    namespace: str
    objectId: str
    name: Optional[str]
    method: Callable[..., Any]
    args: tuple[Any, ...]
    size: int


class Moved(Exception):
    """The node asked does not own the object; ``address`` is the owner it knows of (or None)."""

    def __init__(self, address: Optional[str]) -> None:
        super().__init__(f"the object moved to {address or 'no live node'}")
        self.address = address


@dataclass
class Upgrade:
    """The object answered a WebSocket upgrade with a ``101``: its socket waits on the owner
    under ``token`` (``dotwist.cluster.wsproxy``); ``headers`` are the response's."""

    token: str
    headers: Headers


def encodeCall(
    namespace: str, objectId: str, name: Optional[str], method: Callable[..., Any], args: tuple[Any, ...]
) -> bytes:
    """The call as bytes; ``TypeError`` for a call that is neither a fetch nor an RPC call."""
    if method is callFetch:
        (request,) = args
        body = request.body
        call: dict[str, Any] = {
            "k": "fetch",
            "method": request.method,
            "url": request.url,
            "headers": [list(item) for item in request.headers.rawItems()],
            "body": body,
        }
    elif method is rpc.invoke:
        methodName, payload = args
        if isinstance(payload, rpc.Shared):
            payload = codec.encode(payload.value, maxSize=_MAX_SIZE)
        call = {"k": "rpc", "m": methodName, "p": bytes(payload)}
    else:
        raise TypeError(f"a call to {method!r} cannot be sent to another node")
    call.update({"ns": namespace, "id": objectId, "name": name})
    return codec.encode(call, maxSize=_MAX_SIZE)


def decodeCall(data: bytes) -> Call:
    call = codec.decode(data)
    if call["k"] == "fetch":
        headers = Headers.fromWire([(str(k), str(v)) for k, v in call["headers"]])
        request = Request.fromWire(call["url"], call["method"], headers, call["body"])
        return Call(call["ns"], call["id"], call["name"], callFetch, (request,), len(call["body"] or b""))
    if call["k"] == "rpc":
        payload = call["p"]
        return Call(call["ns"], call["id"], call["name"], rpc.invoke, (call["m"], payload), len(payload))
    raise ValueError(f"unknown kind of call {call['k']!r}")


def encodeReply(call: Call, outcome: Any, extra: Optional[dict[str, Any]] = None) -> bytes:
    """A call's result as bytes (a ``Response`` for a fetch, the encoded result for RPC)."""
    if call.method is callFetch:
        if not isinstance(outcome, Response):
            raise TypeError(
                f"fetch() of a Durable Object must return a Response, not {type(outcome).__name__}"
            )
        if outcome.webSocket is not None:
            raise TypeError("a Response with a WebSocket is proxied, not encoded")
        reply: dict[str, Any] = {
            "ok": "fetch",
            "status": outcome.status,
            "statusText": outcome.statusText,
            "headers": [list(item) for item in outcome.headers.rawItems()],
            "body": outcome.body,
        }
    else:
        payload = outcome
        if isinstance(payload, rpc.Shared):
            payload = codec.encode(payload.value, maxSize=_MAX_SIZE)
        reply = {"ok": "rpc", "p": bytes(payload)}
    if extra:
        reply.update(extra)
    return codec.encode(reply, maxSize=_MAX_SIZE)


def encodeError(error: BaseException) -> bytes:
    cls = type(error)
    stack = getattr(error, "remoteStack", None) or "".join(traceback.format_exception(error))
    return codec.encode(
        {
            "err": {
                "module": cls.__module__,
                "type": cls.__qualname__,
                "message": str(error),
                "flags": {flag: bool(getattr(error, flag, False)) for flag in _FLAGS},
                "stack": stack,
                "args": _simpleArgs(error),
            }
        },
        maxSize=_MAX_SIZE,
    )


def _simpleArgs(error: BaseException) -> Optional[list[Any]]:
    """The exception's arguments if they are plain values (so that ``KeyError("k")``, whose
    message is ``"'k'"``, is rebuilt as itself); else None."""
    args = error.args
    if not all(a is None or isinstance(a, (str, int, float, bytes)) for a in args):
        return None
    try:
        codec.encode(list(args), maxSize=_MAX_SIZE)
    except Exception:  # a value the codec refuses (an int too large, a lone surrogate): the message only
        return None
    return list(args)


def encodeUpgrade(token: str, response: Response) -> bytes:
    """A ``101`` whose WebSocket the owner keeps (parked under ``token``)."""
    return codec.encode(
        {"ok": "upgrade", "token": token, "headers": [list(item) for item in response.headers.rawItems()]}
    )


def encodeMoved(address: Optional[str]) -> bytes:
    return codec.encode({"moved": address})


def decodeReply(data: bytes, method: Callable[..., Any]) -> tuple[Any, dict[str, Any]]:
    """(the call's result, the reply's other fields); raises the call's error, or
    :class:`Moved`."""
    reply = codec.decode(data)
    if "moved" in reply:
        raise Moved(reply["moved"])
    if "err" in reply:
        raise _rebuildError(reply["err"])
    if reply["ok"] == "upgrade":
        headers = Headers.fromWire([(str(k), str(v)) for k, v in reply["headers"]])
        return Upgrade(reply["token"], headers), reply
    if reply["ok"] == "fetch":
        headers = Headers.fromWire([(str(k), str(v)) for k, v in reply["headers"]])
        result: Any = Response(
            reply["body"], status=reply["status"], statusText=reply["statusText"], headers=headers
        )
    else:
        result = reply["p"]
    return result, reply


def _rebuildError(info: dict[str, Any]) -> BaseException:
    module = sys.modules.get(info["module"])
    cls: Any = module
    for part in str(info["type"]).split("."):
        cls = getattr(cls, part, None) if cls is not None else None
    flags = {k: bool(v) for k, v in info["flags"].items() if k in _FLAGS}
    message = info["message"]
    error: BaseException
    if isinstance(cls, type) and issubclass(cls, DurableObjectError):
        try:
            error = cls(message, **flags)
        except Exception:
            error = DurableObjectError(message, **flags)
    elif isinstance(cls, type) and issubclass(cls, BaseException):
        error = _construct(cls, info.get("args"), message) or rpc.RemoteError(cls.__name__, message)
    else:
        error = rpc.RemoteError(str(info["type"]), message)
    for flag, value in flags.items():
        try:
            setattr(error, flag, value)
        except AttributeError:
            pass
    try:
        error.remoteStack = info["stack"]  # type: ignore[attr-defined]
    except AttributeError:
        pass
    return error


def _construct(cls: type[BaseException], args: Optional[list[Any]], message: str) -> Optional[BaseException]:
    """``cls(*args)``, else ``cls(message)``: the first whose message is the original one."""
    for attempt in ([args] if args is not None else []) + [[message]]:
        try:
            error = cls(*attempt)
        except Exception:
            continue
        if str(error) == message:
            return error
    return None
