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
