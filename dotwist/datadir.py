"""What lives in a data directory besides the objects, and the lock that says who uses it.

Layout (``--data-dir``)::

    <dataDir>/<namespace>/<objectId>.sqlite   one database per object (dotwist.storage.sqlite)
    <dataDir>/alarms.sqlite                   the alarm index (dotwist.storage.alarmindex)
    <dataDir>/names.sqlite                    the name index (dotwist.names)
    <dataDir>/.lock                           held by the process using the directory

The lock (``fcntl.flock`` on ``.lock``, holding the pid) keeps two servers, or a server and an
offline ``dotwist-admin`` command, from opening the same objects: each object's file is locked
only while it is open, so without it a second process could open an object the first one has
evicted and later opens again. The operating system drops the lock when the process dies.
"""

from __future__ import annotations

import os
import re
from typing import Iterator, Optional

__all__ = [
    "ALARMS_FILE",
    "DataDirLock",
    "DataDirLocked",
    "fsyncDirectory",
    "NAMES_FILE",
    "isNamespaceName",
    "objectIds",
    "namespaceDirs",
]

ALARMS_FILE = "alarms.sqlite"
NAMES_FILE = "names.sqlite"
LOCK_FILE = ".lock"

_NAMESPACE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_OBJECT_FILE = re.compile(r"^[0-9a-f]{64}\.sqlite$")
_SHARD = re.compile(r"^[0-9a-f]{2}$")


def isNamespaceName(name: str) -> bool:
    return bool(_NAMESPACE.match(name))


class DataDirLocked(Exception):
    """Another process holds the data directory."""


class DataDirLock:
    """An exclusive lock on a data directory, held until ``release()`` (or the process ends)."""

    def __init__(self, dataDir: str) -> None:
        self.path = os.path.join(dataDir, LOCK_FILE)
        self._fd: Optional[int] = None

    def acquire(self) -> None:
        import fcntl

        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            try:
                holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
            finally:
                os.close(fd)
            raise DataDirLocked(
                f"{os.path.dirname(self.path)} is in use by another process (pid {holder})"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None


def namespaceDirs(dataDir: str) -> list[str]:
    """The namespaces that have a directory in ``dataDir``, sorted."""
    try:
        entries = list(os.scandir(dataDir))
    except FileNotFoundError:
        return []
    return sorted(e.name for e in entries if e.is_dir() and isNamespaceName(e.name))


def objectIds(dataDir: str, namespace: str, shardLevels: int = 0) -> Iterator[str]:
    """The IDs of the objects of ``namespace`` that have a database file (unsorted). One
    ``scandir`` per directory and no ``stat``: fast for 100,000 objects."""

    def walk(directory: str, level: int) -> Iterator[str]:
        try:
            entries = os.scandir(directory)
        except (FileNotFoundError, NotADirectoryError):
            return
        with entries:
            for entry in entries:
                name = entry.name
                if level < shardLevels:
                    if _SHARD.match(name) and entry.is_dir():
                        yield from walk(entry.path, level + 1)
                elif len(name) == 71 and _OBJECT_FILE.match(name):
                    yield name[:64]

    if not isNamespaceName(namespace):
        return iter(())
    return walk(os.path.join(dataDir, namespace), 0)


def fsyncDirectory(path: str) -> None:
    """Make the entries of directory ``path`` (files created, renamed or removed in it) durable.
    Does nothing where directories cannot be opened (Windows); a failed ``fsync`` raises."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # pragma: no cover - platforms that cannot open directories
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
