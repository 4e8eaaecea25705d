"""Exceptions that cross dotwist's public API.

The core raises these; the glue translates them at the edge (HTTP status codes, WebSocket close
codes). Names follow what Cloudflare's runtime throws where it has a name for it (``TypeError`` for
misuse, ``RangeError`` for limits), so that error handling reads the same as in Cloudflare's docs.
"""

from typing import Optional


class RangeError(ValueError):
    """A value is outside the range the runtime accepts (a limit was exceeded)."""


class DurableObjectError(Exception):
    """An error delivered to the caller of a Durable Object.

    The flags are Cloudflare's: ``remote`` means the object's own code raised it, ``retryable`` that
    the failure was transient and the call may be retried, ``overloaded`` that the object is
    overloaded and the caller should not retry at once, ``durableObjectReset`` that the object was
    reset and its in-memory state is gone.
    """

    def __init__(
        self,
        message: str,
        *,
        remote: bool = False,
        retryable: bool = False,
        overloaded: bool = False,
        durableObjectReset: bool = False,
    ) -> None:
        super().__init__(message)
        self.remote = remote
        self.retryable = retryable
        self.overloaded = overloaded
        self.durableObjectReset = durableObjectReset


class DurableObjectUnavailable(DurableObjectError):
    """The object cannot be reached for a moment, through no fault of its code: in a cluster, it
    is moving between nodes (its owner died and its lease has not lapsed yet, its ownership is
    being claimed, its node stopped answering for it) or the coordination database cannot be
    reached. Always ``retryable``; ``retryAfter`` is the number of seconds worth waiting before
    trying again. A Worker that lets it propagate answers ``503`` with ``Retry-After``, never a
    ``500``: nothing is wrong with the application's code.
    """

    def __init__(
        self,
        message: str,
        *,
        remote: bool = False,
        retryable: bool = True,
        overloaded: bool = False,
        durableObjectReset: bool = False,
        retryAfter: int = 1,
    ) -> None:
        # ``retryable`` is taken (errors are rebuilt from their flags between nodes) but is
        # always True.
        super().__init__(
            message, remote=remote, retryable=True, overloaded=overloaded, durableObjectReset=durableObjectReset
        )
        self.retryAfter = retryAfter


def unavailableIn(error: BaseException) -> Optional[DurableObjectUnavailable]:
    """The :class:`DurableObjectUnavailable` that ``error`` is, or that caused it (an object reset
    because its node stopped serving it fails its pending calls with an error caused by one)."""
    seen: set[int] = set()
    current: Optional[BaseException] = error
    while current is not None and id(current) not in seen:
        if isinstance(current, DurableObjectUnavailable):
            return current
        seen.add(id(current))
        current = current.__cause__
    return None


class DurableObjectAbort(BaseException):
    """Raised by ``ctx.abort(reason)`` in the object's own code, so that nothing after it runs.

    A ``BaseException``, as in Cloudflare's Python SDK, so that an ``except Exception`` in the
    object's code cannot swallow it. The caller of the aborted call gets a
    ``DurableObjectError`` with ``durableObjectReset`` and the reason instead.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ConfigError(Exception):
    """The deployment's configuration (an app, a binding, an option) is not usable."""


class BadRequest(Exception):
    """The client's HTTP request cannot be read (HTTP 400)."""


class RequestTooLarge(BadRequest):
    """The client's request body is over the limit (HTTP 413)."""


class WorkerResponseError(Exception):
    """The Worker answered with something that cannot be sent (HTTP 500, logged): a WebSocket
    for a request that was not an upgrade, or one already handed to another client."""


def markRemote(error: BaseException) -> BaseException:
    """Flag ``error`` as raised by the object's own code (Cloudflare's ``remote``)."""
    try:
        error.remote = True  # type: ignore[attr-defined]
    except AttributeError:
        pass
    return error


def resetError(cause: BaseException, retryable: bool = False) -> DurableObjectError:
    """The error a caller gets for an event the object's reset cut short (or never started:
    ``retryable``, since trying again reaches a new incarnation)."""
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


def overloaded(pendingCalls: int, pendingBytes: int) -> DurableObjectError:
    return DurableObjectError(
        "Durable Object is overloaded. Too many requests queued "
        f"({pendingCalls} pending, {pendingBytes} bytes).",
        overloaded=True,
    )
