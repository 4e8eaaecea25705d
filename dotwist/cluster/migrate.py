"""Applying Durable Object migrations to a cluster's data in PostgreSQL.

A single process keeps its objects in a data directory and :mod:`dotwist.storage.migrate` applies
the Wrangler file's migrations there. A cluster keeps them in PostgreSQL, under the class's name
(the ``namespace`` column of the coordination store's tables), so a class renamed by a migration
must take its rows along, and a deleted class's rows must go, or the renamed class would start
empty and the old rows would lie there, unreachable.

:func:`migrateCluster` runs when a node starts, before it joins, in one PostgreSQL transaction
under an advisory lock (nodes that start together migrate one after another; the later ones find
the migrations applied). It reads what the cluster records (the applied tags and the classes, in
``<schema>.class_migrations``, and the classes that hold data), asks
:func:`dotwist.migrations.planMigrations` (the same rules, and the same refusals, as a data
directory) and carries the plan out:

- a rename moves every row of the old class to the new name (owners with their epochs and alarms,
  the fenced log, snapshots);
- a delete removes them;
- the record is written in the same transaction: a crash leaves the migrations either applied
  whole or not at all (there is no journal to finish, unlike on files).

A rename or a delete that touches stored data is refused while any node of the cluster is alive:
a live node may be serving those objects under their old name, and its next commits would go to
rows that no longer exist, or come back. Stop the nodes (SIGTERM hands their objects over), then
start them with the new configuration. A node whose configuration lacks a migration the cluster
has applied is refused too (:func:`~dotwist.migrations.planMigrations` says so), so a node with the
old configuration cannot bring the old class back.

Runs before the reactor: it uses psycopg's blocking connection, as the data directory's migrations
use blocking file I/O.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from types import MappingProxyType
from typing import Any

import psycopg

from ..migrations import (
    ClassRecord,
    DeleteClass,
    MigrationError,
    MigrationPlan,
    RenameClass,
    StoredState,
    planMigrations,
)
from ..wrangler import Migration

__all__ = ["STATE_TABLE", "DATA_TABLES", "migrateCluster", "readClusterState"]

#: The table (in the cluster's schema) that records the applied migrations: one row, as JSON.
STATE_TABLE = "class_migrations"

#: The coordination store's tables whose rows belong to a class (``namespace``).
DATA_TABLES = ("owner", "log", "snapshot", "snapshot_chunk")

_VERSION = 1


def migrateCluster(
    conninfo: str,
    schema: str,
    migrations: Sequence[Migration],
    boundClasses: Iterable[str],
    *,
    connectTimeout: float = 10.0,
) -> MigrationPlan:
    """Bring the cluster's data in ``schema`` up to ``migrations``; return the plan applied
    (maybe empty). Raises :class:`~dotwist.migrations.MigrationError` (changing nothing) if the
    configuration and the data disagree, if a rename or delete of stored data would happen while
    nodes are alive, or if PostgreSQL cannot be reached."""
    s = _quoted(schema)
    try:
        conn = psycopg.connect(conninfo, connect_timeout=max(1, int(connectTimeout)))
    except psycopg.Error as e:
        raise MigrationError(
            f"cannot reach PostgreSQL to check the Durable Object migrations: {_firstLine(e)}"
        ) from None
    try:
        with conn:  # one transaction: committed at the end, rolled back on any error
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"dotwist-migrations:{schema}",))
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {s}")
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {s}.{STATE_TABLE} "
                "(id integer PRIMARY KEY CHECK (id = 1), state jsonb NOT NULL)"
            )
            state = readClusterState(conn, schema)
            try:
                plan = planMigrations(migrations, boundClasses, state)
            except MigrationError as e:
                # The planner speaks of a data directory; here the data is the cluster's.
                text = str(e).replace("this data directory", "this cluster")
                raise MigrationError(
                    f"cluster schema {schema}: " + text.replace("the data directory", "the cluster")
                ) from None
            moves = [
                step for step in plan.steps
                if isinstance(step, (RenameClass, DeleteClass)) and step.hasData
            ]
            if moves:
                alive = _liveNodes(conn, s)
                if alive:
                    what = ", ".join(
                        f"{step.fromClass} -> {step.toClass}" if isinstance(step, RenameClass)
                        else f"delete {step.className}"
                        for step in moves
                    )
                    raise MigrationError(
                        f"the migrations ({what}) move or delete stored objects, and nodes of the "
                        f"cluster are alive ({', '.join(alive)}): they may be serving those objects "
                        "under their old names; stop every node first, then start them with this "
                        "configuration"
                    )
            for step in moves:
                for table in _existingTables(conn, schema):
                    if isinstance(step, RenameClass):
                        conn.execute(
                            f"UPDATE {s}.{table} SET namespace = %s WHERE namespace = %s",
                            (step.toClass, step.fromClass),
                        )
                    else:
                        conn.execute(f"DELETE FROM {s}.{table} WHERE namespace = %s", (step.className,))
            if plan.steps or plan.pending or not state.recorded:
                conn.execute(
                    f"INSERT INTO {s}.{STATE_TABLE} (id, state) VALUES (1, %s) "
                    "ON CONFLICT (id) DO UPDATE SET state = excluded.state",
                    (json.dumps(_stateJson(plan)),),
                )
        return plan
    except psycopg.Error as e:
        raise MigrationError(
            f"could not apply the Durable Object migrations to the cluster: {_firstLine(e)}"
        ) from None
    finally:
        conn.close()


def readClusterState(conn: "psycopg.Connection[Any]", schema: str) -> StoredState:
    """What the cluster in ``schema`` records, and which classes hold data there."""
    s = _quoted(schema)
    withData: set[str] = set()
    tables = _existingTables(conn, schema)
    if "owner" in tables:
        withData |= {r[0] for r in conn.execute(f"SELECT DISTINCT namespace FROM {s}.owner WHERE log_seq > 0")}
    if "snapshot" in tables:
        withData |= {r[0] for r in conn.execute(f"SELECT DISTINCT namespace FROM {s}.snapshot")}
    row = conn.execute(f"SELECT state FROM {s}.{STATE_TABLE} WHERE id = 1").fetchone()
    if row is None:
        return StoredState(namespacesWithData=frozenset(withData))
    data = row[0]
    try:
        if data.get("version") != _VERSION:
            raise ValueError(f"unknown version {data.get('version')!r}")
        applied = tuple(str(t) for t in data["applied"])
        classes = {
            str(name): ClassRecord(str(rec["idKey"]), str(rec["storage"]))
            for name, rec in dict(data["classes"]).items()
        }
        retired = frozenset(str(k) for k in data.get("retiredIdKeys", []))
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise MigrationError(
            f"{schema}.{STATE_TABLE}: cannot read the record of applied migrations ({e})"
        ) from None
    return StoredState(
        applied=applied,
        classes=MappingProxyType(classes),
        retiredIdKeys=retired,
        namespacesWithData=frozenset(withData),
        recorded=True,
    )


def _stateJson(plan: MigrationPlan) -> dict[str, Any]:
    return {
        "version": _VERSION,
        "applied": list(plan.applied),
        "classes": {k: {"idKey": r.idKey, "storage": r.storage} for k, r in sorted(plan.classes.items())},
        "retiredIdKeys": sorted(plan.retiredIdKeys),
    }


def _liveNodes(conn: "psycopg.Connection[Any]", s: str) -> list[str]:
    if conn.execute("SELECT to_regclass(%s)", (f"{s}.node",)).fetchone() == (None,):
        return []
    rows = conn.execute(
        f"SELECT node_id FROM {s}.node WHERE state <> 'left' AND lease_until > now() ORDER BY node_id"
    )
    return [r[0] for r in rows]


def _existingTables(conn: "psycopg.Connection[Any]", schema: str) -> list[str]:
    rows = conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,)
    )
    present = {r[0] for r in rows}
    return [t for t in DATA_TABLES if t in present]


def _quoted(schema: str) -> str:
    if not schema.replace("_", "").isalnum() or not schema.isascii() or schema != schema.lower():
        raise MigrationError(f"not a valid cluster schema name: {schema!r}")
    return f'"{schema}"'


def _firstLine(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
