"""What only the SQLite backend promises: files on disk, durability, isolation of damaged objects."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dotwist.storage import (
    MISSING,
    ObjectOpenError,
    SqliteBackend,
    SqliteObjectStore,
)
from dotwist.storage._sql import trustedSql

OBJECT_ID = "0123456789abcdef" * 4
OTHER_ID = "fedcba9876543210" * 4
NAMESPACE = "TestObject"
REPO = Path(__file__).resolve().parents[2]


def test_dataSurvivesReopeningTheBackend(tmp_path: Path) -> None:
    """Committed keys, alarm and SQL tables are there after closing the backend and opening a new one."""
    backend = SqliteBackend(tmp_path)
    store = backend.open(NAMESPACE, OBJECT_ID)
    store.putMany({"a": [1, 2], "b": {"c": None}})
    store.setAlarm(1_234)
    store.sql.exec("CREATE TABLE t (x); INSERT INTO t VALUES ('row')")
    store.commit()
    store.put("uncommitted", 1)
    backend.close()
    again = SqliteBackend(tmp_path).open(NAMESPACE, OBJECT_ID)
    assert again.list() == {"a": [1, 2], "b": {"c": None}}
    assert again.getAlarm() == 1_234
    assert again.sql.exec("SELECT x FROM t").one() == {"x": "row"}


def test_layoutOnDisk(tmp_path: Path) -> None:
    """Each object is <dataDir>/<namespace>/<objectId>.sqlite with workerd's _cf_KV and _cf_METADATA tables."""
    backend = SqliteBackend(tmp_path / "data")
    for namespace, objectId in ((NAMESPACE, OBJECT_ID), (NAMESPACE, OTHER_ID), ("Other", OBJECT_ID)):
        store = backend.open(namespace, objectId)
        store.put("k", "v")
        store.setAlarm(42)
        store.commit()
        store.close()
    backend.close()
    files = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert files == [
        f"data/Other/{OBJECT_ID}.sqlite",
        f"data/{NAMESPACE}/{OBJECT_ID}.sqlite",
        f"data/{NAMESPACE}/{OTHER_ID}.sqlite",
    ]
    conn = sqlite3.connect(tmp_path / "data" / NAMESPACE / f"{OBJECT_ID}.sqlite")
    schema = dict(conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'").fetchall())
    assert set(schema) == {"_cf_KV", "_cf_METADATA"}
    assert "WITHOUT ROWID" in schema["_cf_KV"]
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert conn.execute("SELECT key, value FROM _cf_KV").fetchall() == [("k", b"\x01\x41v")]
    assert conn.execute("SELECT key, value FROM _cf_METADATA").fetchall() == [(1, 42)]
    conn.close()


def test_shardLevelsFanOutDirectories(tmp_path: Path) -> None:
    """shardLevels=2 puts a file under two directory levels named by the id's leading hex digits."""
    backend = SqliteBackend(tmp_path, shardLevels=2)
    store = backend.open(NAMESPACE, OBJECT_ID)
    store.put("k", 1)
    store.commit()
    expected = tmp_path / NAMESPACE / "01" / "23" / f"{OBJECT_ID}.sqlite"
    assert backend.pathFor(NAMESPACE, OBJECT_ID) == str(expected)
    backend.close()
    assert expected.is_file()


def test_walModeSynchronousFullAndExclusiveLock(tmp_path: Path) -> None:
    """An open object's database is in WAL mode with synchronous=FULL and is locked against other openers."""
    backend = SqliteBackend(tmp_path)
    store = backend.open(NAMESPACE, OBJECT_ID)
    assert isinstance(store, SqliteObjectStore)
    pragma = store._engine.trusted
    assert pragma(trustedSql("PRAGMA journal_mode")).fetchone() == ("wal",)
    assert pragma(trustedSql("PRAGMA synchronous")).fetchone() == (2,)  # FULL
    assert pragma(trustedSql("PRAGMA locking_mode")).fetchone() == ("exclusive",)
    store.put("k", 1)
    store.commit()
    with pytest.raises(ObjectOpenError, match="in use elsewhere"):
        SqliteBackend(tmp_path).open(NAMESPACE, OBJECT_ID)
    backend.close()
    assert SqliteBackend(tmp_path).open(NAMESPACE, OBJECT_ID).get("k") == 1


def test_emptyObjectsLeaveNoFile(tmp_path: Path) -> None:
    """An object closed with nothing stored (never written, or emptied by deleteAll) has no file."""
    backend = SqliteBackend(tmp_path)
    path = Path(backend.pathFor(NAMESPACE, OBJECT_ID) or "")
    store = backend.open(NAMESPACE, OBJECT_ID)
    assert store.get("k") is MISSING
    store.close()
    assert not path.exists()
    store = backend.open(NAMESPACE, OBJECT_ID)
    store.put("k", 1)
    store.sql.exec("CREATE TABLE t (x)")
    store.commit()
    store.close()
    assert path.exists()
    store = backend.open(NAMESPACE, OBJECT_ID)
    store.deleteAll()
    store.commit()
    store.close()
    assert not path.exists() and not Path(f"{path}-wal").exists()
    assert SqliteBackend(tmp_path, deleteEmpty=False).open(NAMESPACE, OBJECT_ID).get("k") is MISSING


@pytest.mark.parametrize("damage", ["garbage", "truncatedHeader", "directory"])
def test_aDamagedObjectDoesNotAffectOthers(tmp_path: Path, damage: str) -> None:
    """Opening an object whose database is corrupt or unreadable raises ObjectOpenError for it alone."""
    backend = SqliteBackend(tmp_path)
    good = backend.open(NAMESPACE, OTHER_ID)
    good.put("k", "fine")
    good.commit()
    good.close()
    path = Path(backend.pathFor(NAMESPACE, OBJECT_ID) or "")
    if damage == "garbage":
        path.write_bytes(b"this is not a database" * 1000)
    elif damage == "truncatedHeader":
        path.write_bytes(b"SQLite format 3\x00" + b"\xff" * 84)
    else:
        path.mkdir()
    with pytest.raises(ObjectOpenError) as info:
        backend.open(NAMESPACE, OBJECT_ID)
    assert info.value.path == str(path) and str(path) in str(info.value)
    assert backend.openObjectCount == 0
    assert backend.open(NAMESPACE, OTHER_ID).get("k") == "fine"
    with pytest.raises(ObjectOpenError):
        backend.open(NAMESPACE, OBJECT_ID)
    backend.close()


def test_databaseWrittenByANewerVersionIsRefused(tmp_path: Path) -> None:
    """A database whose schema version is newer than this code's raises ObjectOpenError."""
    backend = SqliteBackend(tmp_path)
    store = backend.open(NAMESPACE, OBJECT_ID)
    store.put("k", 1)
    store.commit()
    backend.close()
    path = SqliteBackend(tmp_path).pathFor(NAMESPACE, OBJECT_ID)
    conn = sqlite3.connect(path or "")
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(ObjectOpenError, match="newer dotwist"):
        SqliteBackend(tmp_path).open(NAMESPACE, OBJECT_ID)


_KILL_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    from dotwist.storage import SqliteBackend

    store = SqliteBackend(sys.argv[1]).open("TestObject", sys.argv[2])
    store.put("committed", {"n": 1})
    store.sql.exec("CREATE TABLE t (x); INSERT INTO t VALUES ('committed')")
    store.setAlarm(111)
    store.commit()
    store.put("uncommitted", 2)
    store.put("committed", "overwritten but not committed")
    store.sql.exec("INSERT INTO t VALUES ('uncommitted')")
    store.setAlarm(222)
    sys.stdout.write("committed\\n")
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_committedDataSurvivesKillAndUncommittedDataIsGone(tmp_path: Path) -> None:
    """A process killed with SIGKILL after commit() keeps exactly the committed batch on disk."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run(
        [sys.executable, "-c", _KILL_SCRIPT, str(tmp_path), OBJECT_ID],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == -9, result.stderr
    assert result.stdout == "committed\n"
    assert Path(f"{SqliteBackend(tmp_path).pathFor(NAMESPACE, OBJECT_ID)}-wal").exists()
    store = SqliteBackend(tmp_path).open(NAMESPACE, OBJECT_ID)
    assert store.list() == {"committed": {"n": 1}}
    assert store.getAlarm() == 111
    assert store.sql.exec("SELECT x FROM t").raw().toArray() == [["committed"]]


def test_inMemoryBackendKeepsDataUntilClosed() -> None:
    """SqliteBackend.inMemory() keeps an object's committed data across close and reopen, without files."""
    backend = SqliteBackend.inMemory()
    assert backend.pathFor(NAMESPACE, OBJECT_ID) is None
    store = backend.open(NAMESPACE, OBJECT_ID)
    store.put("k", 1)
    store.commit()
    store.close()
    assert backend.open(NAMESPACE, OBJECT_ID).get("k") == 1
    backend.close()


# -- the bound on open databases (issue 19) ------------------------------------------------------


def openDescriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_idleObjectsLetGoOfTheirDescriptors(tmp_path: Path) -> None:
    """Stops many live objects from exhausting file descriptors: with at most 4 databases open,
    50 open object stores are written and read round robin, every value is right, and never more
    than 4 connections (8 descriptors) are open."""
    backend = SqliteBackend(tmp_path, maxOpenDatabases=4, valueCacheEntries=0)
    before = openDescriptors()
    ids = [f"{i:064x}" for i in range(50)]
    stores = [backend.open(NAMESPACE, i) for i in ids]
    peak = 0
    for round in range(3):
        for n, store in enumerate(stores):
            assert store.get("n") == (MISSING if round == 0 else (n, round - 1))
            store.put("n", (n, round))
            store.sql.exec("CREATE TABLE IF NOT EXISTS t (x); INSERT INTO t VALUES (?)", round)
            store.commit()
            peak = max(peak, openDescriptors() - before)
            assert backend.openDatabaseCount <= 4
    assert peak <= 8
    assert backend.closedIdle > 0 and backend.reopened > 0
    assert [s.sql.exec("SELECT count(*) AS c FROM t").one()["c"] for s in stores] == [3] * 50
    assert backend.openObjectCount == 50
    backend.close()
    again = SqliteBackend(tmp_path)
    assert [again.open(NAMESPACE, i).get("n") for i in ids] == [(n, 2) for n in range(50)]


def test_aStoreWithUncommittedWritesKeepsItsConnection(tmp_path: Path) -> None:
    """A store with uncommitted writes (or an open savepoint) is never closed behind its back:
    when every open database has some, a new one is refused with an overloaded error, nothing is
    lost, and once they commit the new one opens."""
    from dotwist.errors import DurableObjectError
    from dotwist.storage import StorageOverloadedError

    backend = SqliteBackend(tmp_path, maxOpenDatabases=2)
    one = backend.open(NAMESPACE, OBJECT_ID)
    two = backend.open(NAMESPACE, OTHER_ID)
    one.put("a", 1)
    two.savepoint()
    with pytest.raises(StorageOverloadedError) as refused:
        backend.open(NAMESPACE, "ab" * 32)
    assert isinstance(refused.value, DurableObjectError) and refused.value.overloaded
    assert "Durable Object storage is overloaded" in str(refused.value)
    assert "Please back off and try again later." in str(refused.value)
    assert not one.asleep and not two.asleep
    one.commit()
    third = backend.open(NAMESPACE, "ab" * 32)  # ``one`` is idle now: its connection closes
    assert one.asleep and not two.asleep
    assert one.get("a") == 1 and one.asleep  # from the value cache
    assert one.getAlarm() is None  # a read: opens again; ``third`` (idle, least recent) closes
    assert not one.asleep and third.asleep
    backend.close()


def test_aTransactionThatOnlyReadDoesNotPinTheConnection(tmp_path: Path) -> None:
    """SQL that only reads leaves SQLite's transaction open until the next commit; such a store
    is still idle and may be closed (the read transaction ends, nothing is lost)."""
    backend = SqliteBackend(tmp_path, maxOpenDatabases=1)
    one = backend.open(NAMESPACE, OBJECT_ID)
    one.sql.exec("CREATE TABLE t (x); INSERT INTO t VALUES (1)")
    one.commit()
    assert one.sql.exec("SELECT x FROM t").one() == {"x": 1}
    two = backend.open(NAMESPACE, OTHER_ID)
    assert one.asleep and not two.asleep
    assert one.sql.exec("SELECT x FROM t").one() == {"x": 1}
    backend.close()


def test_theValueCacheSurvivesSleepUnlessTheFileChanged(tmp_path: Path) -> None:
    """A store whose connection was closed keeps its cached values (no read is needed); if the
    file was changed while unlocked (by another process), the cache is dropped and the new value
    read."""
    backend = SqliteBackend(tmp_path, maxOpenDatabases=1)
    one = backend.open(NAMESPACE, OBJECT_ID)
    one.put("k", "v1")
    one.commit()
    backend.open(NAMESPACE, OTHER_ID)
    assert one.asleep
    assert one.get("k") == "v1" and one.asleep  # a cache hit: still asleep
    assert one.cacheStats["hits"] == 1
    outsider = SqliteBackend(tmp_path)
    other = outsider.open(NAMESPACE, OBJECT_ID)
    other.put("k", "v2")
    other.commit()
    outsider.close()
    one.put("x", 1)  # wakes: the file changed, the cache is dropped
    assert one.get("k") == "v2"
    backend.close()


def test_closingAnEmptyStoreThatIsAsleepDeletesItsFile(tmp_path: Path) -> None:
    """deleteEmpty holds for stores whose connection is closed: an object that only read leaves
    no file, one that holds data keeps it."""
    backend = SqliteBackend(tmp_path, maxOpenDatabases=1)
    empty = backend.open(NAMESPACE, OBJECT_ID)
    assert empty.get("nothing") is MISSING
    full = backend.open(NAMESPACE, OTHER_ID)
    full.put("k", 1)
    full.commit()
    assert empty.asleep
    backend.open(NAMESPACE, "ab" * 32).close()
    assert full.asleep
    empty.close()
    full.close()
    files = sorted(p.name for p in (tmp_path / NAMESPACE).iterdir())
    assert files == [OTHER_ID + ".sqlite"]
    backend.close()


def test_outOfDescriptorsIsAClearOverloadedError(tmp_path: Path) -> None:
    """Stops the misleading "database is unreadable or corrupt: SQLITE_CANTOPEN" when the process
    runs out of descriptors (sockets took them): the error says so, and is an overloaded error
    (503)."""
    from dotwist.storage import StorageOverloadedError

    backend = SqliteBackend(tmp_path)
    taken = []
    try:
        with pytest.raises(StorageOverloadedError) as refused:
            while True:  # every descriptor the process may have, then one more database
                try:
                    taken.append(os.open(os.devnull, os.O_RDONLY))
                except OSError:
                    break
            os.close(taken.pop())  # room for the database file, not for its WAL
            store = backend.open(NAMESPACE, OBJECT_ID)
            store.put("k", 1)
            store.commit()
    finally:
        for fd in taken:
            os.close(fd)
    assert "no file descriptor left" in str(refused.value)
    assert "corrupt" not in str(refused.value)
    backend.close()


def test_theBoundIsAtMostAQuarterOfTheOpenFileLimit() -> None:
    """maxOpenDatabases (2,048 by default, as Limits.maxOpenDatabases) is capped at a quarter of
    the soft open-file limit, read when needed, so that databases leave half the descriptors to
    sockets whatever is configured."""
    import resource

    from dotwist import Limits
    from dotwist.storage.sqlite import DEFAULT_MAX_OPEN_DATABASES

    assert DEFAULT_MAX_OPEN_DATABASES == Limits().maxOpenDatabases == 2048
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    backend = SqliteBackend(None, maxOpenDatabases=1000)
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))
    try:
        assert backend.openDatabaseBound == 256
        assert SqliteBackend(None, maxOpenDatabases=100).openDatabaseBound == 100
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert backend.openDatabaseBound == min(1000, soft // 4)
    with pytest.raises(Exception, match="maxOpenDatabases must be a positive int"):
        SqliteBackend(None, maxOpenDatabases=0)
