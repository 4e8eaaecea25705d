"""Exceptions of the cluster layer.

Every exception derives from :class:`ClusterError`. What each one tells the caller to do:

- :class:`Fenced`: this owner's epoch is no longer current (another node claimed the object, or it
  was released). Nothing was written. Drop the object's local state, fail its held output as
  retryable, and send its requests to the new owner.
- :class:`CommitOutcomeUnknown` (a :class:`Fenced`): the link to PostgreSQL failed while a write
  was in flight, so it may or may not have been applied. Treat it exactly as fenced: never release
  output that depended on it, and before serving the object again, claim it anew
  (:meth:`~dotwist.cluster.store.CoordinationStore.reclaim`), which fences the write if it is
  still in flight, then reload it from the log.
- :class:`CoordinationUnavailable`: PostgreSQL could not be reached; nothing was sent, so nothing
  was written.
- :class:`LeaseLost`: this node's lease lapsed (or it left); it must stop answering for its objects
  at once and join again with a new incarnation.
- :class:`NodeIdInUse`: another live process holds the node id given to ``join``.
- :class:`SchemaVersionError`: the database was set up by a newer dotwist.
- :class:`LogCorrupt`: an object's stored log or snapshot is inconsistent (a gap in the sequence,
  a batch that does not parse); the object cannot be rebuilt and must not be served.
"""

from __future__ import annotations

__all__ = [
    "ClusterError",
    "CommitOutcomeUnknown",
    "CoordinationUnavailable",
    "Fenced",
    "LeaseLost",
    "LogCorrupt",
    "NodeIdInUse",
    "SchemaVersionError",
]


class ClusterError(Exception):
    """Base class of every error raised by ``dotwist.cluster``."""


class Fenced(ClusterError):
    """The caller's epoch is no longer the object's current one: the write was refused.

    ``namespace``, ``objectId`` and ``epoch`` say which write; ``currentEpoch`` is the epoch found
    (None if unknown, or if the object has no owner row).
    """

    def __init__(
        self,
        message: str,
        *,
        namespace: str,
        objectId: str,
        epoch: int,
        currentEpoch: int | None = None,
    ) -> None:
        super().__init__(message)
        self.namespace = namespace
        self.objectId = objectId
        self.epoch = epoch
        self.currentEpoch = currentEpoch


class CommitOutcomeUnknown(Fenced):
    """The connection failed while the write was in flight: it may or may not have been applied.

    It is a :class:`Fenced`, so code that handles fencing handles this too; see the module
    docstring for what the caller must do.
    """


class CoordinationUnavailable(ClusterError):
    """PostgreSQL could not be reached, or no connection was free in time; nothing was sent."""


class LeaseLost(ClusterError):
    """This node's lease lapsed, or its incarnation is no longer the node's current one."""


class NodeIdInUse(ClusterError):
    """Another live process holds this node id (its lease has not lapsed)."""


class SchemaVersionError(ClusterError):
    """The coordination schema was made by a newer dotwist, or is not dotwist's."""


class LogCorrupt(ClusterError):
    """An object's stored log or snapshot cannot be replayed."""
