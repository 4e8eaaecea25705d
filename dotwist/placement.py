"""Placement: which process owns a Durable Object.

Exactly one live instance per ID is the promise. In one process the registry keeps it; across
processes, a placement service decides which process owns an ID and fences the others (later:
leases fenced in PostgreSQL). The registry asks its placement before it constructs an object, so a
multi-process placement lands behind this interface without changing the registry's callers.
"""

from __future__ import annotations

from typing import Protocol


class Placement(Protocol):
    """Decides where the one live instance of an object runs."""

    def isLocal(self, namespace: str, objectId: str) -> bool:
        """True if this process owns (and may construct) the object."""
        ...


class LocalPlacement:
    """Everything lives in this process: the single-process deployment."""

    def isLocal(self, namespace: str, objectId: str) -> bool:
        return True
