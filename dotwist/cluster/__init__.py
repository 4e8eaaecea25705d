"""dotwist's cluster layer: many processes and machines, one owner per object, writes fenced in
PostgreSQL. See ``docs/cluster.md``.

What this package owns (the runtime's routing, proxying and ``twistd dotwist --cluster`` build on it):

:mod:`dotwist.cluster.store`
    :class:`~dotwist.cluster.store.CoordinationStore`, the asyncio PostgreSQL client (psycopg 3):
    node membership with leases, each object's owner with an epoch, the fenced commit log and
    snapshots, alarms. Needs the ``cluster`` extra (``pip install 'dotwist[cluster]'``), so it is
    not imported here.
:mod:`dotwist.cluster.replica`
    :class:`~dotwist.cluster.replica.ObjectReplica`, what the owner keeps per object: loads it
    from the log into a local file, ships each local commit (in order, coalesced while one is in
    flight, fenced) and resolves a future when it is durable, takes snapshots. Needs the
    ``cluster`` extra too.
:mod:`dotwist.cluster.pages`
    Capturing the pages each local SQLite commit wrote, from the WAL
    (:class:`~dotwist.cluster.pages.WalCapture`), as :class:`~dotwist.cluster.pages.PageBatch`
    bytes for the log, and rebuilding a database file from a snapshot and the log
    (:func:`~dotwist.cluster.pages.buildDatabase`).
:mod:`dotwist.cluster.lease`
    :class:`~dotwist.cluster.lease.LeaseClock`: may this node still answer (pure).
:mod:`dotwist.cluster.rendezvous`
    :func:`~dotwist.cluster.rendezvous.preferredNode`: which live node should own an object (pure).
:mod:`dotwist.cluster.errors`
    :class:`~dotwist.cluster.errors.Fenced`, :class:`~dotwist.cluster.errors.CommitOutcomeUnknown`
    and the rest.
"""

from .errors import (
    ClusterError,
    CommitOutcomeUnknown,
    CoordinationUnavailable,
    Fenced,
    LeaseLost,
    LogCorrupt,
    NodeIdInUse,
    SchemaVersionError,
)
from .lease import LeaseClock
from .pages import PageBatch, WalCapture, WalError, buildDatabase, emptyDatabaseImage
from .rendezvous import preferredNode, rankNodes

__all__ = [
    "ClusterError",
    "CommitOutcomeUnknown",
    "CoordinationUnavailable",
    "Fenced",
    "LeaseClock",
    "LeaseLost",
    "LogCorrupt",
    "NodeIdInUse",
    "PageBatch",
    "SchemaVersionError",
    "WalCapture",
    "WalError",
    "buildDatabase",
    "emptyDatabaseImage",
    "preferredNode",
    "rankNodes",
]
