"""The names of objects minted with ``idFromName``, so that an operator can find them by name.

An ID does not reveal its name (it is an HMAC of it), and until an object is written there is
nothing to keep. When an object whose ID came from ``idFromName`` commits its first write in an
incarnation, the runtime records the name twice:

- **with the object's data** (``ObjectStore.recordName``: key 2 of ``_cf_METADATA`` in its SQLite
  file), in the same commit as the write. This is the truth: it is as durable as the data, moves
  and is backed up with the file, and costs one row per object, written once.
- **in a name index** beside the data (``<dataDir>/names.sqlite``), so that listing 100,000 objects
  with their names reads one table instead of 100,000 files. The index is derived: writes to it
  are batched (one transaction per reactor turn) and not fsynced (``synchronous=NORMAL``, WAL: it
  survives a crash of the process, and may lose the last writes on a power loss), and it can be
  rebuilt from the objects' own files at any time (``dotwist-admin reindex``). An entry whose
  object has no data any more is harmless: listings start from the files on disk.

Objects minted with ``newUniqueId`` or reached only by ``idFromString`` have no name.
"""

from __future__ import annotations

import os
import sqlite3
from typing import Any, Iterable, Optional, Protocol

__all__ = ["MemoryNameIndex", "NameIndex", "SqliteNameIndex"]


class NameIndex(Protocol):
    def add(self, namespace: str, objectId: str, name: str) -> None: ...

    def get(self, namespace: str, objectId: str) -> Optional[str]: ...

    def many(self, namespace: str, objectIds: Iterable[str]) -> dict[str, str]: ...

    def find(self, namespace: str, name: str) -> list[str]: ...

    def remove(self, namespace: str, objectId: str) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class MemoryNameIndex:
    """The index in a dict (memory storage, tests)."""

    def __init__(self) -> None:
        self._names: dict[tuple[str, str], str] = {}

    def add(self, namespace: str, objectId: str, name: str) -> None:
        self._names[(namespace, objectId)] = name

    def get(self, namespace: str, objectId: str) -> Optional[str]:
        return self._names.get((namespace, objectId))

    def many(self, namespace: str, objectIds: Iterable[str]) -> dict[str, str]:
        names = self._names
        return {oid: names[(namespace, oid)] for oid in objectIds if (namespace, oid) in names}

    def find(self, namespace: str, name: str) -> list[str]:
        return sorted(oid for (ns, oid), n in self._names.items() if ns == namespace and n == name)

    def remove(self, namespace: str, objectId: str) -> None:
        self._names.pop((namespace, objectId), None)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class SqliteNameIndex:
    """The index in one SQLite file. Additions wait in memory until ``flush()`` (which
    ``schedule``, if given, arranges to run soon: the service passes
    ``lambda f: reactor.callLater(0, f)``), and are read back from there meanwhile."""

    def __init__(self, path: str, schedule: Any = None, readOnly: bool = False) -> None:
        self.path = path
        if readOnly:
            self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
        else:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            self._db = sqlite3.connect(path, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS names (namespace TEXT, objectId TEXT, name TEXT,"
                " PRIMARY KEY (namespace, objectId)) WITHOUT ROWID"
            )
            self._db.execute("CREATE INDEX IF NOT EXISTS byName ON names (namespace, name)")
        self._pending: dict[tuple[str, str], Optional[str]] = {}
        self._schedule = schedule
        self._scheduled = False

    def add(self, namespace: str, objectId: str, name: str) -> None:
        self._pending[(namespace, objectId)] = name
        self._soon()

    def remove(self, namespace: str, objectId: str) -> None:
        self._pending[(namespace, objectId)] = None
        self._soon()

    def _soon(self) -> None:
        if self._schedule is not None and not self._scheduled:
            self._scheduled = True
            self._schedule(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, {}
        if not pending:
            return
        db = self._db
        db.execute("BEGIN")
        try:
            for (ns, oid), name in pending.items():
                if name is None:
                    db.execute("DELETE FROM names WHERE namespace = ? AND objectId = ?", (ns, oid))
                else:
                    db.execute(
                        "INSERT INTO names VALUES (?, ?, ?) ON CONFLICT (namespace, objectId)"
                        " DO UPDATE SET name = excluded.name",
                        (ns, oid, name),
                    )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def get(self, namespace: str, objectId: str) -> Optional[str]:
        key = (namespace, objectId)
        if key in self._pending:
            return self._pending[key]
        row = self._db.execute(
            "SELECT name FROM names WHERE namespace = ? AND objectId = ?", key
        ).fetchone()
        return None if row is None else str(row[0])

    def many(self, namespace: str, objectIds: Iterable[str]) -> dict[str, str]:
        ids = list(objectIds)
        found: dict[str, str] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for oid, name in self._db.execute(
                f"SELECT objectId, name FROM names WHERE namespace = ? AND objectId IN ({marks})",
                (namespace, *chunk),
            ):
                found[oid] = name
        wanted = set(ids)
        for (ns, oid), name in self._pending.items():
            if ns == namespace and oid in wanted:
                if name is None:
                    found.pop(oid, None)
                else:
                    found[oid] = name
        return found

    def find(self, namespace: str, name: str) -> list[str]:
        ids = {
            oid for (oid,) in self._db.execute(
                "SELECT objectId FROM names WHERE namespace = ? AND name = ?", (namespace, name)
            )
        }
        for (ns, oid), pendingName in self._pending.items():
            if ns == namespace:
                if pendingName == name:
                    ids.add(oid)
                else:
                    ids.discard(oid)
        return sorted(ids)

    def entries(self) -> list[tuple[str, str, str]]:
        self.flush()
        return list(self._db.execute("SELECT namespace, objectId, name FROM names"))

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._db.close()
