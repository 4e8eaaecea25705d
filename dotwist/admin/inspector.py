"""What the admin interface and ``dotwist-admin`` do: list, inspect, read, delete, fire alarms.

One ``Inspector`` serves both transports. In a running server (``runtime`` given) it reads live
objects through their own open storage and everything else through the runtime's storage backend,
opening, reading and closing within one call: the server runs on one thread, so no event of the
object can run in between, and nothing holds an object's file when the runtime next opens it
(object files are opened with ``locking_mode=EXCLUSIVE``; a second connection from outside the
runtime would make the runtime's own open fail). Deleting and firing alarms go through the
runtime, so that a live instance is reset first, and an alarm runs as an event of its object.
Without a runtime (a stopped server's data directory, under its lock) it opens the files with a
``SqliteBackend`` of its own.

Every method returns plain JSON-able data (stored values are rendered by ``jsonValue``); mistakes
raise ``AdminError`` with an HTTP status.
"""

from __future__ import annotations

import base64
import bisect
import datetime as _dt
import decimal
import math
import os
import re
import time
import uuid
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional, TypeVar

from twisted.internet.defer import Deferred

from .. import websocket
from ..datadir import fsyncDirectory, isNamespaceName, namespaceDirs, objectIds
from ..errors import DurableObjectError
from ..names import MemoryNameIndex, NameIndex
from ..storage.interface import ObjectStore, StorageBackend

if TYPE_CHECKING:  # pragma: no cover
    from ..alarms import AlarmIndex
    from ..worker import Runtime

__all__ = ["AdminError", "Inspector", "jsonValue"]

T = TypeVar("T")

_ID = re.compile(r"^[0-9a-f]{64}$")
MAX_PAGE = 10_000


class AdminError(Exception):
    """A request the inspector refuses: ``status`` is the HTTP status it maps to."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def jsonValue(value: Any) -> Any:
    """A stored value as JSON: JSON's own types as they are; anything else as
    ``{"$type": ..., "value": ...}`` (bytes in base64, dates in ISO 8601, sets as lists)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value if abs(value) < 2**53 else {"$type": "int", "value": str(value)}
    if isinstance(value, float):
        return value if math.isfinite(value) else {"$type": "float", "value": repr(value)}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$type": "bytes", "value": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value):
            return {k: jsonValue(v) for k, v in value.items()}
        return {"$type": "map", "value": [[jsonValue(k), jsonValue(v)] for k, v in value.items()]}
    if isinstance(value, list):
        return [jsonValue(v) for v in value]
    if isinstance(value, tuple):
        return {"$type": "tuple", "value": [jsonValue(v) for v in value]}
    if isinstance(value, (set, frozenset)):
        return {"$type": type(value).__name__, "value": [jsonValue(v) for v in value]}
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return {"$type": type(value).__name__, "value": value.isoformat()}
    if isinstance(value, _dt.timedelta):
        return {"$type": "timedelta", "value": value.total_seconds()}
    if isinstance(value, (decimal.Decimal, uuid.UUID)):
        return {"$type": type(value).__name__.lower(), "value": str(value)}
    return {"$type": type(value).__name__, "value": repr(value)}


def _isoMillis(millis: Optional[int]) -> Optional[str]:
    if millis is None:
        return None
    return _dt.datetime.fromtimestamp(millis / 1000, _dt.timezone.utc).isoformat()


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _limit(limit: Any, default: int = 100) -> int:
    if limit is None:
        return default
    try:
        n = int(limit)
    except (TypeError, ValueError):
        raise AdminError(400, f"limit must be a whole number, not {limit!r}") from None
    if not 1 <= n <= MAX_PAGE:
        raise AdminError(400, f"limit must be from 1 to {MAX_PAGE}, not {n}")
    return n


class Inspector:
    """See the module docstring. ``runtime``: a running server's; else ``backend`` (and
    ``alarmIndex``, ``names``) over a stopped server's ``dataDir``."""

    def __init__(
        self,
        runtime: Optional["Runtime"] = None,
        *,
        backend: Optional[StorageBackend] = None,
        alarmIndex: Optional["AlarmIndex"] = None,
        names: Optional[NameIndex] = None,
        backup: Optional[Callable[[str], Deferred[Any]]] = None,
    ) -> None:
        self.runtime = runtime
        if runtime is not None:
            registry = runtime.registry
            self.backend: StorageBackend = registry.storage
            self.alarmIndex = registry.alarms.index
            self.names: NameIndex = registry.names
        else:
            if backend is None:
                raise TypeError("Inspector needs a runtime or a storage backend")
            self.backend = backend
            self.alarmIndex = alarmIndex  # type: ignore[assignment]
            self.names = names if names is not None else MemoryNameIndex()
        self.dataDir: Optional[str] = getattr(self.backend, "dataDir", None)
        self.shardLevels: int = getattr(self.backend, "shardLevels", 0)
        self._backup = backup
        self._scans: dict[str, tuple[int, list[str], frozenset[str]]] = {}

    # -- helpers -----------------------------------------------------------------------------

    def _registry(self) -> Any:
        return None if self.runtime is None else self.runtime.registry

    def _checkNamespace(self, namespace: str) -> None:
        if not isNamespaceName(namespace):
            raise AdminError(400, f"{namespace!r} is not a namespace name")

    def _checkId(self, objectId: str) -> None:
        if not _ID.match(objectId):
            raise AdminError(400, f"{objectId!r} is not an object ID (64 lowercase hex digits)")

    def _path(self, namespace: str, objectId: str) -> Optional[str]:
        pathFor = getattr(self.backend, "pathFor", None)
        return None if pathFor is None else pathFor(namespace, objectId)

    def _onDisk(self, namespace: str, objectId: str) -> bool:
        path = self._path(namespace, objectId)
        return path is not None and os.path.exists(path)

    def _live(self, namespace: str, objectId: str) -> Any:
        registry = self._registry()
        return None if registry is None else registry.liveActor(namespace, objectId)

    def _record(self, namespace: str, objectId: str) -> Any:
        registry = self._registry()
        return None if registry is None else registry.records.get((namespace, objectId))

    def _withStore(self, namespace: str, objectId: str, fn: Callable[[ObjectStore], T]) -> Optional[T]:
        """``fn(store)`` on the object's storage; None if it has none."""
        actor = self._live(namespace, objectId)
        if actor is not None:
            return fn(actor.storage().store)
        if self.dataDir is not None and not self._onDisk(namespace, objectId):
            return None
        try:
            store = self.backend.open(namespace, objectId)
        except Exception as e:
            raise AdminError(409, f"cannot open the storage of {namespace}/{objectId}: {e}") from None
        try:
            return fn(store)
        finally:
            store.close()

    def _state(self, namespace: str, objectId: str) -> str:
        if self._live(namespace, objectId) is not None:
            return "live"
        record = self._record(namespace, objectId)
        if record is not None and record.sockets:
            return "hibernated"
        return "evicted"

    # -- namespaces and objects ------------------------------------------------------------

    def namespaces(self) -> list[dict[str, Any]]:
        """Every namespace the app binds or the data directory has, with counts."""
        registry = self._registry()
        bound = dict(registry.namespaces) if registry is not None else {}
        names = set(bound)
        if self.dataDir is not None:
            names.update(namespaceDirs(self.dataDir))
        out = []
        for name in sorted(names):
            ns = bound.get(name)
            stored = (
                sum(1 for _ in objectIds(self.dataDir, name, self.shardLevels))
                if self.dataDir is not None
                else None
            )
            hibernated = 0
            if registry is not None:
                hibernated = sum(
                    1
                    for (n, key), r in list(registry.records.items())
                    if n == name and r.sockets and registry.liveActor(n, key) is None
                )
            out.append(
                {
                    "namespace": name,
                    "class": ns.cls.__name__ if ns is not None else None,
                    "bound": ns is not None,
                    "live": len(ns.actors) if ns is not None else 0,
                    "hibernated": hibernated,
                    "stored": stored,
                }
            )
        return out

    def objectIds(self, namespace: str) -> list[str]:
        """Every object of the namespace: stored on disk, in memory, or with open sockets; sorted."""
        self._checkNamespace(namespace)
        stored, storedSet = self._storedIds(namespace) if self.dataDir is not None else ([], frozenset())
        extra: set[str] = set()
        registry = self._registry()
        if registry is not None:
            ns = registry.namespaces.get(namespace)
            if ns is not None:
                extra.update(ns.actors)
            extra.update(key for (n, key), r in list(registry.records.items()) if n == namespace and r.sockets)
        extra.difference_update(storedSet)
        if not extra:
            return stored
        merged = list(stored)
        for oid in extra:
            bisect.insort(merged, oid)
        return merged

    def _storedIds(self, namespace: str) -> tuple[list[str], frozenset[str]]:
        """The IDs with a file on disk. Paging through 100,000 objects would scan the directory
        once per page; with no shard levels the scan is kept while the directory's modification
        time (which every file created or removed changes) stays the same and is over a second
        old."""
        assert self.dataDir is not None
        if self.shardLevels:
            found = sorted(objectIds(self.dataDir, namespace, self.shardLevels))
            return found, frozenset(found)
        try:
            stamp = os.stat(os.path.join(self.dataDir, namespace)).st_mtime_ns
        except FileNotFoundError:
            return [], frozenset()
        cached = self._scans.get(namespace)
        # A modification time from the last second may be coarser than the changes it covers.
        if cached is not None and cached[0] == stamp and time.time_ns() - stamp > 1_000_000_000:
            return cached[1], cached[2]
        ids = sorted(objectIds(self.dataDir, namespace, 0))
        result = (stamp, ids, frozenset(ids))
        self._scans[namespace] = result
        return result[1], result[2]

    def objects(
        self, namespace: str, limit: Any = None, after: Optional[str] = None, details: bool = True
    ) -> dict[str, Any]:
        """A page of the namespace's objects in ID order, after ``after``; ``next`` is the
        ``after`` of the next page (None at the end)."""
        n = _limit(limit, 1000)
        ids = self.objectIds(namespace)
        start = bisect.bisect_right(ids, after) if after else 0
        page = ids[start : start + n]
        names = self.names.many(namespace, page)
        registry = self._registry()
        ns = registry.namespaces.get(namespace) if registry is not None else None
        rows = []
        for oid in page:
            row: dict[str, Any] = {"id": oid, "name": names.get(oid)}
            if ns is not None and oid in ns.actors and row["name"] is None:
                row["name"] = ns.actors[oid].id.name
            if details:
                row["state"] = self._state(namespace, oid)
                record = self._record(namespace, oid)
                row["sockets"] = len(record.sockets) if record is not None else 0
                path = self._path(namespace, oid)
                try:
                    row["size"] = os.stat(path).st_size if path is not None else None
                except FileNotFoundError:
                    row["size"] = 0
            rows.append(row)
        more = start + n < len(ids)
        return {"namespace": namespace, "objects": rows, "next": page[-1] if more and page else None}

    def findByName(self, namespace: str, name: str) -> list[str]:
        """IDs of the objects named ``name``: minted now if the namespace is served (the ID
        follows from the name), else looked up in the name index."""
        self._checkNamespace(namespace)
        registry = self._registry()
        if registry is not None and namespace in registry.namespaces:
            return [registry.namespaces[namespace].minter.fromName(name).toString()]
        return self.names.find(namespace, name)

    def object(self, namespace: str, objectId: str) -> dict[str, Any]:
        """Everything about one object: state, name, sockets and tags, alarm, storage."""
        self._checkNamespace(namespace)
        self._checkId(objectId)
        registry = self._registry()
        actor = self._live(namespace, objectId)
        record = self._record(namespace, objectId)
        path = self._path(namespace, objectId)
        name = actor.name if actor is not None else self.names.get(namespace, objectId)

        def read(store: ObjectStore) -> dict[str, Any]:
            return {
                "alarm": store.getAlarm(),
                "name": store.storedName(),
                "size": store.sql.databaseSize,
                "keys": _countKeys(store),
                "tables": [t["name"] for t in _tables(store)],
            }

        stored = self._withStore(namespace, objectId, read)
        exists = stored is not None
        if not exists and actor is None and (record is None or not record.sockets):
            if registry is None or namespace not in registry.namespaces:
                raise AdminError(404, f"no object {objectId} in namespace {namespace}")
        alarm = stored["alarm"] if stored else None
        timer = registry.alarms.scheduled(namespace, objectId) if registry is not None else None
        sockets = []
        if record is not None:
            for ws in list(record.sockets):
                sockets.append({"tags": list(websocket.tagsOf(ws)), "readyState": ws.readyState})
        out: dict[str, Any] = {
            "namespace": namespace,
            "id": objectId,
            "name": name or (stored["name"] if stored else None),
            "state": self._state(namespace, objectId),
            "sockets": sockets,
            "alarm": None
            if alarm is None
            else {
                "scheduledTime": alarm,
                "at": _isoMillis(alarm),
                "timerSet": timer is not None,
            },
            "storage": {
                "exists": exists,
                "path": path,
                "size": stored["size"] if stored else 0,
                "fileSize": _fileSize(path),
                "keys": stored["keys"] if stored else 0,
                "tables": stored["tables"] if stored else [],
            },
        }
        if actor is not None:
            out["live"] = {
                "lifecycle": actor.lifecycle.value,
                "running": actor.running,
                "pendingCalls": actor.pendingCalls,
                "waitingAtGate": actor.inputGate.waiting,
                "gateLocked": actor.inputGate.locked,
                "plainSockets": actor.liveSockets,
                "idleSeconds": registry.clock.seconds() - actor.lastActive,
            }
        return out

    # -- storage -----------------------------------------------------------------------------

    def kv(
        self,
        namespace: str,
        objectId: str,
        limit: Any = None,
        startAfter: Optional[str] = None,
        prefix: Optional[str] = None,
    ) -> dict[str, Any]:
        """A page of the object's key-value entries in key order."""
        self._checkNamespace(namespace)
        self._checkId(objectId)
        n = _limit(limit)

        def read(store: ObjectStore) -> dict[str, Any]:
            options: dict[str, Any] = {"limit": n + 1}
            if startAfter:
                options["startAfter"] = startAfter
            if prefix:
                options["prefix"] = prefix
            entries = list(store.list(**options).items())
            more = len(entries) > n
            entries = entries[:n]
            return {
                "entries": [{"key": k, "value": jsonValue(v)} for k, v in entries],
                "next": entries[-1][0] if more else None,
            }

        found = self._withStore(namespace, objectId, read)
        return {"namespace": namespace, "id": objectId, **(found or {"entries": [], "next": None})}

    def tables(self, namespace: str, objectId: str) -> dict[str, Any]:
        """The object's SQL tables and views, with their schema and row counts."""
        self._checkNamespace(namespace)
        self._checkId(objectId)

        def read(store: ObjectStore) -> list[dict[str, Any]]:
            out = []
            for t in _tables(store):
                rows = store.sql.exec(f"SELECT count(*) AS n FROM {_quote(t['name'])}").one()["n"]
                out.append({**t, "rows": rows})
            return out

        return {"namespace": namespace, "id": objectId, "tables": self._withStore(namespace, objectId, read) or []}

    def rows(
        self, namespace: str, objectId: str, table: str, limit: Any = None, after: Optional[str] = None
    ) -> dict[str, Any]:
        """A page of a table's rows: by rowid where the table has one (``next`` is the last
        rowid), else by position (``next`` is ``+N``)."""
        self._checkNamespace(namespace)
        self._checkId(objectId)
        n = _limit(limit)

        def read(store: ObjectStore) -> dict[str, Any]:
            known = {t["name"]: t for t in _tables(store)}
            if table not in known:
                raise AdminError(404, f"no table {table!r} in {namespace}/{objectId}")
            q = _quote(table)
            withRowid = known[table]["type"] == "table" and "WITHOUT ROWID" not in (known[table]["sql"] or "").upper()
            if withRowid:
                try:
                    last = int(after) if after else None
                except ValueError:
                    raise AdminError(400, f"after must be a rowid for table {table!r}, not {after!r}") from None
                if last is None:
                    cursor = store.sql.exec(f"SELECT rowid AS _rowid_, * FROM {q} ORDER BY rowid LIMIT ?", n + 1)
                else:
                    cursor = store.sql.exec(
                        f"SELECT rowid AS _rowid_, * FROM {q} WHERE rowid > ? ORDER BY rowid LIMIT ?", last, n + 1
                    )
            else:
                offset = int(after.lstrip("+")) if after else 0
                cursor = store.sql.exec(f"SELECT * FROM {q} LIMIT ? OFFSET ?", n + 1, offset)
            columns = list(cursor.columnNames)
            raw = cursor.raw().toArray()
            more = len(raw) > n
            raw = raw[:n]
            if withRowid:
                nextAfter = str(raw[-1][0]) if more and raw else None
            else:
                nextAfter = f"+{offset + n}" if more else None
            return {
                "table": table,
                "columns": columns,
                "rows": [[jsonValue(v) for v in row] for row in raw],
                "next": nextAfter,
            }

        found = self._withStore(namespace, objectId, read)
        if found is None:
            raise AdminError(404, f"{namespace}/{objectId} has no stored data")
        return {"namespace": namespace, "id": objectId, **found}

    # -- changes -----------------------------------------------------------------------------

    def delete(self, namespace: str, objectId: str) -> dict[str, Any]:
        """Delete the object's storage and alarm. A live instance is reset first (its pending
        calls fail as after any reset, its plain WebSockets close with 1011); its hibernatable
        WebSockets close with 1011 too, since the object they belonged to is gone."""
        self._checkNamespace(namespace)
        self._checkId(objectId)
        registry = self._registry()
        wasLive = False
        closed = 0
        if registry is not None:
            actor = registry.liveActor(namespace, objectId)
            if actor is not None:
                wasLive = True
                actor.reset(
                    DurableObjectError("The Durable Object was deleted by an operator.", durableObjectReset=True)
                )
            record = registry.records.pop((namespace, objectId), None)
            if record is not None:
                for ws in list(record.sockets):
                    closed += 1
                    websocket.closeByRuntime(ws, 1011, "Durable Object deleted")
                record.sockets.clear()
            registry.alarms.cancel(namespace, objectId)
        elif self.alarmIndex is not None:
            self.alarmIndex.remove(namespace, objectId)
        existed = self._deleteStorage(namespace, objectId)
        self.names.remove(namespace, objectId)
        return {
            "namespace": namespace,
            "id": objectId,
            "deleted": existed or wasLive or closed > 0,
            "hadStorage": existed,
            "wasLive": wasLive,
            "socketsClosed": closed,
        }

    def _deleteStorage(self, namespace: str, objectId: str) -> bool:
        path = self._path(namespace, objectId)
        if path is not None:
            existed = os.path.exists(path)
            for suffix in ("", "-wal", "-shm", "-journal"):
                try:
                    os.unlink(path + suffix)
                except FileNotFoundError:
                    pass
            if existed:
                fsyncDirectory(os.path.dirname(path))
            return existed
        store = self.backend.open(namespace, objectId)
        try:
            existed = bool(store.list(limit=1)) or store.getAlarm() is not None or bool(_tables(store))
            store.deleteAll()
            store.commit()
        finally:
            store.close()
        return existed

    def fireAlarm(self, namespace: str, objectId: str) -> Deferred[dict[str, Any]]:
        """Run the object's alarm now, as an event of the object (constructed if need be); fires
        with whether there was one. The alarm is consumed as if its time had come."""
        self._checkNamespace(namespace)
        self._checkId(objectId)
        registry = self._registry()
        if registry is None:
            raise AdminError(409, "firing an alarm needs a running server (use --url)")
        ns = registry.namespaces.get(namespace)
        if ns is None:
            raise AdminError(404, f"namespace {namespace} is not served by this app")
        try:
            oid = ns.minter.fromString(objectId)
        except TypeError as e:
            raise AdminError(400, str(e)) from None
        actor = registry.actorFor(ns, oid)
        done: Deferred[dict[str, Any]] = Deferred()

        def event() -> None:
            if not actor.inMemory:
                done.errback(AdminError(409, "the object was reset before its alarm could run"))
                return
            stored = actor.storage().storedAlarm()
            if stored is None:
                done.callback({"namespace": namespace, "id": objectId, "fired": False, "scheduledTime": None})
                return
            registry.alarms.run(actor, 0, now=True)
            done.callback({"namespace": namespace, "id": objectId, "fired": True, "scheduledTime": stored})

        actor.deliver(event)
        return done

    def backup(self, destination: str) -> Deferred[Any]:
        if self._backup is None:
            raise AdminError(409, "backups need SQLite storage")
        return self._backup(destination)


def _tables(store: ObjectStore) -> list[dict[str, Any]]:
    return [
        {"name": row["name"], "type": row["type"], "sql": row["sql"]}
        for row in store.sql.exec(
            "SELECT type, name, sql FROM sqlite_master WHERE type IN ('table', 'view') "
            "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name NOT LIKE '\\_cf\\_%' ESCAPE '\\' "
            "ORDER BY name"
        )
    ]


def _countKeys(store: ObjectStore) -> int:
    count = 0
    after: Optional[str] = None
    while True:
        page = store.list(limit=1000) if after is None else store.list(limit=1000, startAfter=after)
        count += len(page)
        if len(page) < 1000:
            return count
        after = next(reversed(page))


def _fileSize(path: Optional[str]) -> int:
    if path is None:
        return 0
    total = 0
    for suffix in ("", "-wal"):
        try:
            total += os.stat(path + suffix).st_size
        except FileNotFoundError:
            pass
    return total




def idsOf(rows: Iterable[dict[str, Any]]) -> list[str]:
    return [row["id"] for row in rows]
