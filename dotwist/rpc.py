"""RPC to Durable Objects: ``await stub.method(*args, **kwargs)``.

Arguments and results cross by value, through the same codec as storage (so the same types are
accepted, and code behaves the same when the object lives in another process); errors cross as
copies that keep their type and message and carry Cloudflare's flags. Names the runtime calls
itself (``fetch``, ``alarm``, the ``webSocket*`` handlers) and names starting with ``_`` are not
callable through a stub.
"""

from __future__ import annotations

import datetime
import decimal
import inspect
import traceback
import uuid
from typing import Any, Optional

from .errors import DurableObjectError
from .storage import codec

RESERVED = frozenset(
    {"fetch", "alarm", "webSocketMessage", "webSocketClose", "webSocketError", "constructor", "dup"}
)

_FLAGS = ("remote", "retryable", "overloaded", "durableObjectReset")


class RemoteError(Exception):
    """An error from an object whose own type cannot be rebuilt here; ``name`` is that type's."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


def checkCallable(name: str) -> None:
    if name in RESERVED:
        raise TypeError(
            f'"{name}" is called by the runtime and cannot be called through a stub'
            + ("; use stub.fetch()" if name == "fetch" else "")
            + "."
        )


# Values that cannot be mutated can be handed over as they are: a copy would be equal, of the same
# type, and indistinguishable. Only these exact types (no subclasses) take the shortcut.
_SHAREABLE = frozenset(
    {
        type(None), bool, int, float, str, bytes, datetime.datetime, datetime.date,
        datetime.time, datetime.timedelta, decimal.Decimal, uuid.UUID,
    }
)


_SIZED = frozenset({str, bytes})


def _shared(value: Any) -> Optional[int]:
    """The size to count for ``value`` if it is made only of immutable values (so it can be
    handed over as it is), else None."""
    kind = type(value)
    if kind in _SIZED:
        return len(value)
    if kind in _SHAREABLE:
        return 8
    if kind is tuple:
        total = 0
        for item in value:
            size = _shared(item)
            if size is None:
                return None
            total += size
        return total
    return None


class Shared:
    """A call's arguments or result made only of immutable values, handed over without copying."""

    __slots__ = ("value", "size")

    def __init__(self, value: Any, size: int) -> None:
        self.value = value
        self.size = size


def encodeCall(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The arguments as they cross to the object: encoded bytes, or ``Shared`` if immutable."""
    size = _shared(args)
    if size is not None:
        for value in kwargs.values():
            more = _shared(value)
            if more is None:
                size = None
                break
            size += more
        if size is not None:
            return Shared((args, kwargs), size)
    try:
        return codec.encode((args, kwargs))
    except codec_errors() as e:
        raise TypeError(f"RPC arguments cannot be sent: {e}") from None


def payloadSize(payload: Any) -> int:
    return payload.size if isinstance(payload, Shared) else len(payload)


def codec_errors() -> tuple[type[BaseException], ...]:
    from .storage.errors import InvalidValueError, StorageLimitError

    return (InvalidValueError, StorageLimitError)


def copyError(error: BaseException, **flags: bool) -> BaseException:
    """A copy of ``error`` for the caller: same type (or RemoteError naming it), same message,
    Cloudflare's flags, and the remote traceback as text in ``remoteStack``."""
    cls = type(error)
    copy: BaseException
    try:
        copy = cls(*error.args)
        if str(copy) != str(error):
            raise TypeError()
    except Exception:
        copy = RemoteError(cls.__name__, str(error))
    for flag in _FLAGS:
        setattr(copy, flag, flags.get(flag, getattr(error, flag, False)))
    copy.remoteStack = "".join(traceback.format_exception(error))  # type: ignore[attr-defined]
    return copy


def invoke(instance: Any, name: str, payload: Any) -> Any:
    """Run the method in the object; the result goes back encoded (a copy) or shared. What the
    method returns is awaited if it must be (a coroutine needs no extra layer of its own)."""
    method = getattr(type(instance), name, None)
    if method is None or not callable(method) or name.startswith("_") or name in RESERVED:
        raise TypeError(f'The RPC receiver does not implement the method "{name}".')
    args, kwargs = payload.value if isinstance(payload, Shared) else codec.decode(payload)
    try:
        result = getattr(instance, name)(*args, **kwargs)
    except Exception as e:
        raise copyError(e, remote=True) from None
    if inspect.isawaitable(result):
        return _finish(name, result)
    return encodeResult(name, result)


async def _finish(name: str, awaitable: Any) -> Any:
    try:
        result = await awaitable
    except Exception as e:
        raise copyError(e, remote=True) from None
    return encodeResult(name, result)


def encodeResult(name: str, result: Any) -> Any:
    size = _shared(result)
    if size is not None:
        return Shared(result, size)
    try:
        return codec.encode(result)
    except codec_errors() as e:
        raise TypeError(f'The result of "{name}" cannot be returned through RPC: {e}') from None


def decodeResult(payload: Any) -> Any:
    return payload.value if isinstance(payload, Shared) else codec.decode(payload)
