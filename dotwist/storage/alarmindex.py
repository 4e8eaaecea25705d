"""The alarm index on disk: which objects may have an alarm (see ``dotwist.alarms``).

One small SQLite file beside the objects' data; every change commits at once (WAL,
``synchronous=FULL``), because the index is written before the object's own write commits.
"""

from __future__ import annotations

import os
import sqlite3
from typing import Iterable


class SqliteAlarmIndex:
    """The index in one small SQLite file beside the objects' data, committed at once."""

    def __init__(self, path: str) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS alarms (namespace TEXT, objectId TEXT, millis INTEGER,"
            " PRIMARY KEY (namespace, objectId)) WITHOUT ROWID"
        )

    def add(self, namespace: str, objectId: str, millis: int) -> None:
        self._db.execute(
            "INSERT INTO alarms VALUES (?, ?, ?) ON CONFLICT (namespace, objectId)"
            " DO UPDATE SET millis = excluded.millis",
            (namespace, objectId, millis),
        )

    def remove(self, namespace: str, objectId: str) -> None:
        self._db.execute("DELETE FROM alarms WHERE namespace = ? AND objectId = ?", (namespace, objectId))

    def entries(self) -> Iterable[tuple[str, str, int]]:
        return list(self._db.execute("SELECT namespace, objectId, millis FROM alarms"))

    def close(self) -> None:
        self._db.close()
