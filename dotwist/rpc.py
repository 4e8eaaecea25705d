"""RPC to Durable Objects: ``await stub.method(*args, **kwargs)``.

Arguments and results cross by value, through the same codec as storage (so the same types are
accepted, and code behaves the same when the object lives in another process); errors cross as
copies that keep their type and message and carry Cloudflare's flags. A call that runs at once in
this process (``Actor.callNow``) needs no bytes: ``cloneCall`` and ``cloneResult`` copy in memory,
with exactly the outcome of the codec's round trip (what they are not sure of goes through the
codec). Calls that are queued, or go to another node (``dotwist.cluster.calls``), take ``invoke``
with the payload of ``encodeCall``. Names the runtime calls
itself (``fetch``, ``alarm``, the ``webSocket*`` handlers) and names starting with ``_`` are not
callable through a stub.
"""

from __future__ import annotations

import datetime
import decimal
import inspect
import traceback
import uuid
from typing import Any, Callable, Coroutine, Optional

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
    method = methodOf(instance, name)
    args, kwargs = payload.value if isinstance(payload, Shared) else codec.decode(payload)
    try:
        result = method(*args, **kwargs)
    except Exception as e:
        raise copyError(e, remote=True) from None
    if inspect.isawaitable(result):
        return _finish(name, result, encodeResult)
    return encodeResult(name, result)


async def _finish(name: str, awaitable: Any, settle: Callable[[str, Any], Any]) -> Any:
    """Await what method ``name`` returned; its result as ``settle`` makes it (encoded, or a
    copy), its exception copied as ``remote`` does."""
    try:
        result = await awaitable
    except Exception as e:
        raise copyError(e, remote=True) from None
    return settle(name, result)


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


# -- the local fast path: copies made in memory ---------------------------------------------------
#
# A call to an object in this process needs no bytes: arguments and results only have to cross as
# copies that behave as the codec's round trip would. ``clone`` makes that copy directly for the
# common values (exact builtin containers of immutable leaves); anything it is not sure of (a
# subclass, bytearray, a time zone other than a fixed offset, deep nesting, a cycle, a huge value)
# goes through the codec itself, so the outcome, or the error, is the codec's.

_LEAVES = frozenset(
    {
        type(None), bool, int, float, str, bytes, datetime.date, datetime.timedelta,
        decimal.Decimal, uuid.UUID,
    }
)
#: The types (exactly) whose values cross as they are, with no copy: ``cloneResult`` of such a
#: value is the value itself.
IMMUTABLE = _LEAVES
_TIMES = frozenset({datetime.datetime, datetime.time})
_FIXED_ZONE = datetime.timezone
#: Containers deeper than this, or values larger than this (estimated), take the codec's way,
#: which refuses cycles and values over its limits with its own errors.
_CLONE_DEPTH = 64
_CLONE_SIZE = codec.DEFAULT_MAX_SIZE // 8
_COPY_ITEMS = 1 << 22
#: The codec's own limit, which decides in the end.
_CODEC_MAX_SIZE = codec.DEFAULT_MAX_SIZE


class _NotClonable(Exception):
    pass


def _clone(value: Any, depth: int, total: list[int]) -> Any:
    """A copy of ``value``, which is not one of ``_LEAVES``; its size (8 bytes an item, and the
    length of each string and bytes) is added to ``total[0]``. Raises ``_NotClonable`` for what
    the codec must decide."""
    if depth <= 0 or total[0] > _CLONE_SIZE:
        raise _NotClonable
    depth -= 1
    kind = type(value)
    leaves = _LEAVES
    if kind is list:
        out = value.copy()  # then the items that are not immutable are replaced by copies
        size = len(value) << 3
        index = 0
        for item in value:
            kind = type(item)
            if kind is str:
                size += len(item)
            elif kind not in leaves:
                out[index] = _clone(item, depth, total)
            elif kind is bytes:
                size += len(item)
            index += 1
        total[0] += size
        return out
    if kind is dict:
        copy = value.copy()
        size = len(value) << 3
        for key, item in value.items():
            kind = type(key)
            if kind is str:
                size += len(key)
            elif kind not in leaves:
                return _cloneDict(value, depth, total)  # a key to copy: build the dict anew
            kind = type(item)
            if kind is str:
                size += len(item)
            elif kind not in leaves:
                copy[key] = _clone(item, depth, total)
            elif kind is bytes:
                size += len(item)
        total[0] += size
        return copy
    if kind is tuple:
        size = len(value) << 3
        copied = False
        items = []
        for item in value:
            kind = type(item)
            if kind in leaves:
                if kind is str or kind is bytes:
                    size += len(item)
            else:
                item = _clone(item, depth, total)
                copied = True
            items.append(item)
        total[0] += size
        return tuple(items) if copied else value  # immutable all through: as good as a copy
    if kind is set or kind is frozenset:
        total[0] += len(value) << 3
        items = [item if type(item) in leaves else _clone(item, depth, total) for item in value]
        return set(items) if kind is set else frozenset(items)
    if kind in _TIMES:
        zone = value.tzinfo
        if zone is None or type(zone) is _FIXED_ZONE:
            total[0] += 8
            return value
    raise _NotClonable


#: The leaves of a plain tree (``_plain``) besides ``str``: exactly these types, no subclasses.
_PLAIN_LEAVES = frozenset({int, float, bool, type(None)})


def _plain(value: Any, depth: int) -> tuple[Any, int]:
    """``_clone`` of a plain tree, the common case, in one pass with fewer checks: ``value`` is an
    exact list or dict, holding only ``str``, ``int``, ``float``, ``bool``, None and exact lists
    and dicts with ``str`` keys of the same, at most ``depth`` deep. Returns the copy and its size
    as ``_clone`` counts it; raises ``_NotClonable`` for anything else (a tuple, a set, bytes, a
    subclass, a key that is not a ``str``, a value past the size ``_clone`` copies), which then goes
    the general way (``_clone``, and the codec after it) from the start."""
    if depth <= 0:
        raise _NotClonable
    depth -= 1
    leaves = _PLAIN_LEAVES
    copy = value.copy()  # then the lists and dicts in it are replaced by copies
    size = len(value) << 3
    if type(value) is list:
        index = 0
        for item in value:
            kind = type(item)
            if kind is str:
                size += len(item)
            elif kind not in leaves:
                if kind is not list and kind is not dict:
                    raise _NotClonable
                copy[index], more = _plain(item, depth)
                size += more
            index += 1
    else:
        for key, item in value.items():
            if type(key) is not str:
                raise _NotClonable
            size += len(key)
            kind = type(item)
            if kind is str:
                size += len(item)
            elif kind not in leaves:
                if kind is not list and kind is not dict:
                    raise _NotClonable
                copy[key], more = _plain(item, depth)
                size += more
    if size > _CLONE_SIZE:
        raise _NotClonable
    return copy, size


def _cloneDict(value: dict[Any, Any], depth: int, total: list[int]) -> dict[Any, Any]:
    """``_clone`` of a dict with keys to copy (tuples, frozensets)."""
    leaves = _LEAVES
    copy: dict[Any, Any] = {}
    size = len(value) << 3
    for key, item in value.items():
        kind = type(key)
        if kind in leaves:
            if kind is str or kind is bytes:
                size += len(key)
        else:
            key = _clone(key, depth, total)
        kind = type(item)
        if kind in leaves:
            if kind is str or kind is bytes:
                size += len(item)
        else:
            item = _clone(item, depth, total)
        copy[key] = item
    total[0] += size
    return copy


def _copy(value: Any, depth: int, items: list[int]) -> Any:
    """``_clone`` for results: no size to count, only the items copied (``items[0]``), so that
    a value whose shared references would make its copy explode goes to the codec, which
    refuses it past its size limit."""
    if depth <= 0 or items[0] > _COPY_ITEMS:
        raise _NotClonable
    depth -= 1
    kind = type(value)
    leaves = _LEAVES
    if kind is list:
        items[0] += len(value)
        return [item if type(item) in leaves else _copy(item, depth, items) for item in value]
    if kind is dict:
        items[0] += len(value)
        copy = value.copy()  # then the values that are not immutable are replaced by copies
        for key, item in value.items():
            if type(key) not in leaves:
                return {
                    (k if type(k) in leaves else _copy(k, depth, items)):
                    (v if type(v) in leaves else _copy(v, depth, items))
                    for k, v in value.items()
                }
            if type(item) not in leaves:
                copy[key] = _copy(item, depth, items)
        return copy
    if kind is tuple:
        for item in value:
            if type(item) not in leaves:
                items[0] += len(value)
                return tuple([item if type(item) in leaves else _copy(item, depth, items) for item in value])
        return value
    if kind is set or kind is frozenset:
        items[0] += len(value)
        copies = [item if type(item) in leaves else _copy(item, depth, items) for item in value]
        return set(copies) if kind is set else frozenset(copies)
    if kind in _TIMES:
        zone = value.tzinfo
        if zone is None or type(zone) is _FIXED_ZONE:
            return value
    raise _NotClonable


def clone(value: Any) -> tuple[Any, int]:
    """A copy of ``value`` as the codec's round trip gives it (lists, dicts and sets new, the
    immutable values in them shared), and its size as pending bytes count it (about the size
    of its encoding). Raises what ``codec.encode`` raises for a value it refuses."""
    kind = type(value)
    if kind in _LEAVES:
        return value, (len(value) if (kind is str or kind is bytes) else 8)
    total = [0]
    try:
        copy = _clone(value, _CLONE_DEPTH, total)
    except (_NotClonable, RecursionError):
        data = codec.encode(value, maxSize=_CODEC_MAX_SIZE)
        return codec.decode(data), len(data)
    return copy, total[0]


def cloneCall(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any], int]:
    """The arguments of a call as the object gets them (copies), and their size; ``TypeError``
    if they cannot be sent.

    Immutable values are handed over as they are, and lists and dicts of plain values copied by
    ``_plain``, in one pass; arguments of any other kind (a tuple, a set, a datetime, a subclass,
    a value ``_plain`` refuses) take the general way, ``_cloneCall``, from the start."""
    leaves = _LEAVES
    size = 0
    copied: Optional[list[Any]] = None
    try:
        index = 0
        for item in args:
            kind = type(item)
            if kind is str or kind is bytes:
                size += len(item) + 8
            elif kind in leaves:
                size += 8
            elif kind is list or kind is dict:
                if copied is None:
                    copied = list(args)
                copied[index], more = _plain(item, _CLONE_DEPTH)
                size += more
            else:
                raise _NotClonable
            index += 1
        named = kwargs
        if kwargs:
            named = {}
            for key, item in kwargs.items():
                kind = type(item)
                if kind is str or kind is bytes:
                    size += len(key) + len(item) + 8
                elif kind in leaves:
                    size += len(key) + 8
                elif kind is list or kind is dict:
                    item, more = _plain(item, _CLONE_DEPTH)
                    size += len(key) + more
                else:
                    raise _NotClonable
                named[key] = item
    except (_NotClonable, RecursionError):
        return _cloneCall(args, kwargs)
    if size > _CLONE_SIZE:
        return _cloneCall(args, kwargs)
    return (args if copied is None else tuple(copied)), named, size


def _cloneCall(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any], int]:
    """``cloneCall`` for arguments that are not all immutable or plain: each copied by ``_clone``,
    or all of them through the codec if it is not sure of one."""
    leaves = _LEAVES
    size = 0
    plain = True
    for item in args:
        kind = type(item)
        if kind is str or kind is bytes:
            size += len(item) + 8
        elif kind in leaves:
            size += 8
        else:
            plain = False
    total = [size]
    try:
        try:
            copies = args
            if not plain:
                copies = tuple(
                    [item if type(item) in leaves else _clone(item, _CLONE_DEPTH, total) for item in args]
                )
            named = kwargs
            if kwargs:
                named = {}
                for key, item in kwargs.items():
                    kind = type(item)
                    if kind is str or kind is bytes:
                        total[0] += len(key) + len(item) + 8
                    elif kind in leaves:
                        total[0] += len(key) + 8
                    else:
                        total[0] += len(key)
                        item = _clone(item, _CLONE_DEPTH, total)
                    named[key] = item
        except (_NotClonable, RecursionError):
            data = codec.encode((args, kwargs), maxSize=_CODEC_MAX_SIZE)
            copies, named = codec.decode(data)
            return copies, named, len(data)
    except codec_errors() as e:
        raise TypeError(f"RPC arguments cannot be sent: {e}") from None
    return copies, named, total[0]


def cloneResult(name: str, result: Any) -> Any:
    """The result of method ``name`` as the caller gets it (a copy); ``TypeError`` if it cannot
    be returned."""
    kind = type(result)
    if kind in _LEAVES:
        return result
    if kind is list or kind is dict:
        try:
            return _plain(result, _CLONE_DEPTH)[0]
        except (_NotClonable, RecursionError):
            pass  # not plain: the general way
    try:
        try:
            return _copy(result, _CLONE_DEPTH, [0])
        except (_NotClonable, RecursionError):
            return codec.decode(codec.encode(result, maxSize=_CODEC_MAX_SIZE))
    except codec_errors() as e:
        raise TypeError(f'The result of "{name}" cannot be returned through RPC: {e}') from None


def methodOf(instance: Any, name: str) -> Callable[..., Any]:
    """The bound method a call of ``name`` runs; ``TypeError`` if there is none to call."""
    method = getattr(type(instance), name, None)
    if method is None or not callable(method) or name.startswith("_") or name in RESERVED:
        raise TypeError(f'The RPC receiver does not implement the method "{name}".')
    bound: Callable[..., Any] = getattr(instance, name)
    return bound


def remote(error: BaseException) -> BaseException:
    """What the caller gets for an exception a method raised: a copy (``copyError``) flagged
    remote; a ``BaseException`` that is not an ``Exception`` passes as it is."""
    if isinstance(error, Exception):
        return copyError(error, remote=True)
    return error


def finishCopy(name: str, awaitable: Any) -> Coroutine[Any, Any, Any]:
    """Await what a method returned (an awaitable that is not a coroutine) and give the caller's
    copy of its result, errors copied as ``remote`` does."""
    return _finish(name, awaitable, cloneResult)
