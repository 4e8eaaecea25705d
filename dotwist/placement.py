"""Placement: which process owns a Durable Object.

Exactly one live instance per ID is the promise. In one process the registry keeps it; across
processes, a placement service decides which process owns an ID and fences the others (later:
leases fenced in PostgreSQL). The registry asks its placement before it constructs an object, so a
multi-process placement lands behind this interface without changing the registry's callers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Protocol

if TYPE_CHECKING:  # pragma: no cover
    from twisted.internet.defer import Deferred

    from .ids import DurableObjectId
    from .registry import Namespace


class Placement(Protocol):
    """Decides where the one live instance of an object runs."""

    def isLocal(self, namespace: str, objectId: str) -> bool:
        """True if this process owns (and may construct) the object."""
        ...


class LocalPlacement:
    """Everything lives in this process: the single-process deployment."""

    def isLocal(self, namespace: str, objectId: str) -> bool:
        return True


class Router(Protocol):
    """Sends calls to objects that may live in another process (``ObjectRegistry.router``).

    Set only in a multi-process deployment (``dotwist.cluster``): a stub's call then goes to
    ``send`` instead of straight to the local registry. ``method(instance, *args)`` is the call
    as the local path would run it (``stubs.callFetch`` with a ``Request``, or ``rpc.invoke``
    with a name and a payload), so a router can run it locally or describe it as data.
    """

    def send(
        self,
        namespace: "Namespace",
        objectId: "DurableObjectId",
        method: Callable[..., Any],
        args: tuple[Any, ...],
        size: int,
    ) -> "Deferred[Any]":
        """Fires with the call's outcome, wherever the object runs."""
        ...
