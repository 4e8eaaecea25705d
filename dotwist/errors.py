"""Exceptions that cross dotwist's public API.

The core raises these; the glue translates them at the edge (HTTP status codes, WebSocket close
codes). Names follow what Cloudflare's runtime throws where it has a name for it (``TypeError`` for
misuse, ``RangeError`` for limits), so that error handling reads the same as in Cloudflare's docs.
"""


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


class ConfigError(Exception):
    """The deployment's configuration (an app, a binding, an option) is not usable."""
