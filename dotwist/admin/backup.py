"""Backups of a data directory, taken while the server runs, and restores.

A backup is itself a data directory (the same layout), plus ``BACKUP.json``:

- **Every object**, copied with SQLite's online backup API: a live object through its own open
  connection (the runtime keeps it open and locked), once its pending writes have committed; an
  object not in memory through a connection opened and closed within the same step. The server
  runs on one thread and each object is copied in one step, so no write of the object can land
  in the middle of its copy. The list of objects is taken when the backup starts, and each copy
  is taken after that: **every write acknowledged before the backup started is in it** (a write
  is acknowledged only once it is durable, the output gate's rule).
- **The alarm index and the name index**, rebuilt from the copies themselves (each copy's stored
  alarm and name), so they agree with the objects exactly, whatever fired or changed while the
  backup ran.

The server keeps serving meanwhile: objects are copied in steps of at most ``budget`` seconds of
work, with the reactor running in between; one object's copy is never split, so the largest
object sets the longest pause. The backup is written to ``<destination>.partial`` and renamed at
the end, so a directory named ``destination`` is always complete.

A restore copies a backup into a new data directory (refusing one that holds anything), checks
each object's file with ``PRAGMA quick_check``, and leaves out ``BACKUP.json``.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from typing import TYPE_CHECKING, Any, Iterator, Optional

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from ..datadir import ALARMS_FILE, NAMES_FILE, fsyncDirectory, namespaceDirs, objectIds
from ..names import SqliteNameIndex
from ..storage.alarmindex import SqliteAlarmIndex

if TYPE_CHECKING:  # pragma: no cover
    from ..storage import SqliteBackend
    from ..worker import Runtime

__all__ = ["BackupError", "BackupJob", "MANIFEST", "backupOffline", "reindex", "restore", "runBackup"]

_log = Logger(namespace="dotwist.backup")

MANIFEST = "BACKUP.json"
#: Format of backups this code writes.
BACKUP_VERSION = 1


class BackupError(Exception):
    """A backup or restore that cannot be done; nothing was changed."""


def _metadata(path: str) -> tuple[Optional[int], Optional[str]]:
    """The alarm and name stored in an object's database file."""
    db = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    try:
        rows = dict(db.execute("SELECT key, value FROM _cf_METADATA WHERE key IN (1, 2)").fetchall())
    except sqlite3.Error:
        return None, None
    finally:
        db.close()
    alarm = rows.get(1)
    name = rows.get(2)
    return (int(alarm) if alarm is not None else None), (str(name) if name is not None else None)




def _prepare(destination: str) -> str:
    destination = os.path.abspath(destination)
    if os.path.exists(destination):
        raise BackupError(f"{destination} already exists; a backup goes into a new directory")
    partial = destination + ".partial"
    if os.path.exists(partial):
        shutil.rmtree(partial)
    os.makedirs(partial)
    return partial


class BackupJob:
    """One backup of ``backend``'s data directory into ``destination``."""

    def __init__(self, backend: "SqliteBackend", destination: str, runtime: Optional["Runtime"] = None) -> None:
        if backend.dataDir is None:
            raise BackupError("only SQLite storage in a data directory can be backed up")
        self.backend = backend
        self.dataDir = backend.dataDir
        self.destination = os.path.abspath(destination)
        if os.path.commonpath([self.destination, os.path.abspath(self.dataDir)]) == os.path.abspath(self.dataDir):
            raise BackupError("the backup cannot go inside the data directory it backs up")
        self.runtime = runtime
        self.partial = _prepare(self.destination)
        self.startedAt = time.time()
        started = time.monotonic()
        self._started = started
        # Every object that exists now: on disk, or open in a live object (its file exists).
        self.todo: list[tuple[str, str]] = []
        for ns in namespaceDirs(self.dataDir):
            for oid in objectIds(self.dataDir, ns, backend.shardLevels):
                self.todo.append((ns, oid))
        self.todo.sort(reverse=True)  # popped from the end: in ID order
        self.later: list[tuple[str, str]] = []
        self.alarms: list[tuple[str, str, int]] = []
        self.names: list[tuple[str, str, str]] = []
        self.errors: list[str] = []
        self.copied = 0
        self.summary: Optional[dict[str, Any]] = None

    def _copy(self, ns: str, oid: str) -> bool:
        """Copy one object; False to try it again later (it has writes pending)."""
        source = self.backend.pathFor(ns, oid)
        assert source is not None
        target = os.path.join(self.partial, os.path.relpath(source, self.dataDir))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        actor = None
        if self.runtime is not None:
            actor = self.runtime.registry.liveActor(ns, oid)
        session = actor.openSession if actor is not None else None
        if session is not None and not session.closed:
            assert actor is not None
            if session.busy or session.store.hasPendingWrites:
                actor.flush()
                return False
            session.store.backup(target)  # type: ignore[attr-defined]
        else:
            if not os.path.exists(source):
                return True  # deleted since the backup started: nothing to keep
            store = self.backend.open(ns, oid)
            try:
                store.backup(target)
            finally:
                store.close()
        alarm, name = _metadata(target)
        if alarm is not None:
            self.alarms.append((ns, oid, alarm))
        if name is not None:
            self.names.append((ns, oid, name))
        self.copied += 1
        return True

    def steps(self) -> Iterator[float]:
        """Copy objects one per step; yields the delay before the next step (0, or a short
        wait when only objects with pending writes are left)."""
        retries = 0
        while self.todo or self.later:
            if not self.todo:
                self.todo, self.later = self.later, []
                retries += 1
                if retries > 500:
                    for ns, oid in self.todo:
                        self.errors.append(f"{ns}/{oid}: its writes never settled; not copied")
                    self.todo = []
                    break
                yield 0.01
                continue
            ns, oid = self.todo.pop()
            try:
                if not self._copy(ns, oid):
                    self.later.append((ns, oid))
            except Exception as e:
                self.errors.append(f"{ns}/{oid}: {e}")
                _log.error("Backup: could not copy {ns}/{oid}: {error}", ns=ns, oid=oid, error=str(e))
            yield 0.0
        self._finish()

    def _finish(self) -> None:
        index = SqliteAlarmIndex(os.path.join(self.partial, ALARMS_FILE))
        try:
            for ns, oid, millis in self.alarms:
                index.add(ns, oid, millis)
        finally:
            index.close()
        names = SqliteNameIndex(os.path.join(self.partial, NAMES_FILE))
        try:
            for ns, oid, name in self.names:
                names.add(ns, oid, name)
        finally:
            names.close()
        self.summary = {
            "version": BACKUP_VERSION,
            "source": os.path.abspath(self.dataDir),
            "startedAt": self.startedAt,
            "finishedAt": time.time(),
            "seconds": time.monotonic() - self._started,
            "objects": self.copied,
            "alarms": len(self.alarms),
            "names": len(self.names),
            "errors": self.errors,
            "complete": not self.errors,
        }
        with open(os.path.join(self.partial, MANIFEST), "w") as f:
            json.dump(self.summary, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        for directory, _, _ in os.walk(self.partial):
            fsyncDirectory(directory)
        os.rename(self.partial, self.destination)
        fsyncDirectory(os.path.dirname(self.destination))
        self.summary["destination"] = self.destination


def runBackup(
    backend: "SqliteBackend",
    destination: str,
    runtime: Optional["Runtime"] = None,
    reactor: Any = None,
    budget: float = 0.02,
) -> Deferred[dict[str, Any]]:
    """Back up while the server runs: steps of at most ``budget`` seconds, the reactor running in
    between. Fires with the summary (also in ``BACKUP.json``)."""
    job = BackupJob(backend, destination, runtime)
    steps = job.steps()
    done: Deferred[dict[str, Any]] = Deferred()

    def turn() -> None:
        deadline = time.monotonic() + budget
        try:
            while True:
                delay = next(steps)
                if delay > 0:
                    reactor.callLater(delay, turn)
                    return
                if time.monotonic() >= deadline:
                    reactor.callLater(0, turn)
                    return
        except StopIteration:
            assert job.summary is not None
            _log.info(
                "Backup of {objects} objects into {destination} took {seconds:.2f} s",
                objects=job.summary["objects"], destination=job.destination, seconds=job.summary["seconds"],
            )
            done.callback(job.summary)
        except Exception:
            done.errback()

    reactor.callLater(0, turn)
    return done


def backupOffline(backend: "SqliteBackend", destination: str) -> dict[str, Any]:
    """Back up a stopped server's data directory (the caller holds its lock)."""
    job = BackupJob(backend, destination)
    for _ in job.steps():
        pass
    assert job.summary is not None
    return job.summary


def restore(backup: str, dataDir: str, verify: bool = True) -> dict[str, Any]:
    """Copy ``backup`` into a new data directory ``dataDir``; returns what was restored."""
    backup = os.path.abspath(backup)
    manifestPath = os.path.join(backup, MANIFEST)
    if not os.path.isfile(manifestPath):
        raise BackupError(f"{backup} is not a dotwist backup (no {MANIFEST})")
    with open(manifestPath) as f:
        manifest = json.load(f)
    if manifest.get("version") != BACKUP_VERSION:
        raise BackupError(f"{backup} has backup format {manifest.get('version')!r}; this dotwist reads {BACKUP_VERSION}")
    dataDir = os.path.abspath(dataDir)
    if os.path.exists(dataDir) and os.listdir(dataDir):
        raise BackupError(f"{dataDir} is not empty; restore into a new data directory")
    partial = dataDir + ".restoring"
    if os.path.exists(partial):
        shutil.rmtree(partial)
    shutil.copytree(backup, partial, ignore=shutil.ignore_patterns(MANIFEST))
    problems = []
    objects = 0
    for directory, _, files in os.walk(partial):
        for name in files:
            if name.endswith(".sqlite") and name not in (ALARMS_FILE, NAMES_FILE):
                objects += 1
                if verify:
                    path = os.path.join(directory, name)
                    db = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
                    try:
                        result = db.execute("PRAGMA quick_check").fetchone()[0]
                    except sqlite3.Error as e:
                        result = str(e)
                    finally:
                        db.close()
                    if result != "ok":
                        problems.append(f"{os.path.relpath(path, partial)}: {result}")
        fsyncDirectory(directory)
    if problems:
        shutil.rmtree(partial)
        raise BackupError("the backup has damaged objects, nothing restored: " + "; ".join(problems))
    if os.path.exists(dataDir):
        os.rmdir(dataDir)
    os.rename(partial, dataDir)
    fsyncDirectory(os.path.dirname(dataDir))
    return {"dataDir": dataDir, "objects": objects, "backupStartedAt": manifest.get("startedAt")}


def reindex(backend: "SqliteBackend") -> dict[str, Any]:
    """Rebuild the alarm and name indexes of a stopped server's data directory from the objects'
    own files (the caller holds its lock)."""
    assert backend.dataDir is not None
    alarms: list[tuple[str, str, int]] = []
    names: list[tuple[str, str, str]] = []
    for ns in namespaceDirs(backend.dataDir):
        for oid in objectIds(backend.dataDir, ns, backend.shardLevels):
            store = backend.open(ns, oid)  # recovers a WAL left by a crash
            try:
                alarm = store.getAlarm()
                name = store.storedName()
            finally:
                store.close()
            if alarm is not None:
                alarms.append((ns, oid, alarm))
            if name is not None:
                names.append((ns, oid, name))
    for file, rows in ((ALARMS_FILE, alarms), (NAMES_FILE, names)):
        path = os.path.join(backend.dataDir, file)
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.unlink(path + suffix)
    index = SqliteAlarmIndex(os.path.join(backend.dataDir, ALARMS_FILE))
    try:
        for row in alarms:
            index.add(*row)
    finally:
        index.close()
    nameIndex = SqliteNameIndex(os.path.join(backend.dataDir, NAMES_FILE))
    try:
        for nrow in names:
            nameIndex.add(*nrow)
    finally:
        nameIndex.close()
    return {"alarms": len(alarms), "names": len(names)}
