"""A time limit on one ``sql.exec`` (issue 19: a 3-million-row recursive CTE blocked every object for
0.54 s, and an unbounded one would stop the server)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

import pytest

from dotwist.storage import (
    MISSING,
    SqlError,
    SqlTimeLimitAbortedError,
    SqlTimeLimitError,
    StorageBackend,
    StorageLimits,
    TransactionAbortedError,
)
from dotwist.storage._sql import SqlEngine

# The same constants as conftest.py (test modules here are not a package, so they cannot import it).
OBJECT_ID = "0123456789abcdef" * 4
NAMESPACE = "TestObject"
MakeBackend = Callable[..., StorageBackend]

# Long enough to block the server for seconds, but finite: without the limit the test fails
# (nothing is raised) instead of hanging.
LONG_READ = (
    "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 30000000) "
    "SELECT count(*) AS c FROM r"
)
LONG_WRITE = (
    "INSERT INTO t WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 30000000) "
    "SELECT n FROM r"
)


class SteppingClock:
    """A clock that moves ``step`` seconds each time it is read."""

    def __init__(self, step: float) -> None:
        self.now = 0.0
        self.step = step
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        self.now += self.step
        return self.now


def engineWith(clock: SteppingClock, limitMs: int) -> SqlEngine:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    return SqlEngine(conn, StorageLimits(maxSqlQueryDurationMs=limitMs), clock=clock)


def test_long_query_is_interrupted_on_an_injected_clock():
    """On a clock that moves 0.1 s per reading, a 1 s limit interrupts the query at the eleventh
    look of the progress handler, deterministically, with Cloudflare-style wording and the
    SQLite code; the engine then runs the next query."""
    clock = SteppingClock(0.1)
    engine = engineWith(clock, 1000)
    with pytest.raises(SqlTimeLimitError) as info:
        engine.exec(LONG_READ, ())
    assert clock.reads == 1 + 11  # the deadline, then 0.2 s, 0.3 s, ... 1.2 s > 1.1 s
    error = info.value
    assert error.code == "SQLITE_INTERRUPT" and not isinstance(error, TransactionAbortedError)
    assert (error.limit, error.value) == ("maxSqlQueryDurationMs", 1000)
    assert str(error) == (
        "SQL query exceeded its time limit and was interrupted: SQLITE_INTERRUPT "
        "(limit StorageLimits.maxSqlQueryDurationMs = 1000)"
    )
    cursor, _ = engine.exec("SELECT 1 AS one", ())
    assert cursor.toArray() == [{"one": 1}]


def test_query_within_the_limit_runs_to_the_end():
    """A query that finishes before the limit is not touched, however many times the handler
    looked at the clock."""
    clock = SteppingClock(0.001)
    engine = engineWith(clock, 1000)
    cursor, _ = engine.exec(
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 20000) "
        "SELECT count(*) AS c FROM r",
        (),
    )
    assert cursor.toArray() == [{"c": 20000}]
    assert 1 < clock.reads < 1000  # the handler did look, and the limit was not reached


def test_the_limit_covers_every_statement_of_one_exec_together():
    """The limit is per ``exec`` call: statements that each fit do not get a fresh budget."""
    clock = SteppingClock(0.1)
    engine = engineWith(clock, 1000)
    short = (
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5000) "
        "SELECT count(*) FROM r"
    )
    engine.exec(short, ())
    perStatement = clock.reads - 1
    assert 0 < perStatement < 10
    statements = 10 // perStatement + 1
    with pytest.raises(SqlTimeLimitError):
        engine.exec(";".join([short] * statements), ())


def test_interrupted_read_undoes_only_itself(makeBackend: MakeBackend):
    """A read-only query over the limit raises SqlTimeLimitError; the uncommitted batch before it
    (key-value and SQL) is intact and commits."""
    backend = makeBackend(StorageLimits(maxSqlQueryDurationMs=20))
    store = backend.open(NAMESPACE, OBJECT_ID)
    store.sql.exec("CREATE TABLE t (n INTEGER)")
    store.commit()
    store.put("k", "v")
    store.sql.exec("INSERT INTO t VALUES (1)")
    with pytest.raises(SqlTimeLimitError) as info:
        store.sql.exec(LONG_READ)
    assert not isinstance(info.value, TransactionAbortedError)
    assert store.get("k") == "v" and store.hasPendingWrites
    store.commit()
    assert store.sql.exec("SELECT n FROM t").toArray() == [{"n": 1}]


def test_interrupted_write_discards_the_batch_and_leaves_the_store_usable(makeBackend: MakeBackend):
    """A writing query over the limit raises SqlTimeLimitAbortedError (a TransactionAbortedError:
    SQLite rolls back the whole batch for any interrupted write); nothing of the batch is left
    half-written, committed data is intact, and the store takes new writes."""
    backend = makeBackend(StorageLimits(maxSqlQueryDurationMs=20))
    store = backend.open(NAMESPACE, OBJECT_ID)
    store.sql.exec("CREATE TABLE t (n INTEGER)")
    store.sql.exec("INSERT INTO t VALUES (0)")
    store.commit()
    store.put("k", "v")
    store.sql.exec("INSERT INTO t VALUES (1)")
    with pytest.raises(SqlTimeLimitAbortedError) as info:
        store.sql.exec(LONG_WRITE)
    assert isinstance(info.value, SqlError) and info.value.code == "SQLITE_INTERRUPT"
    assert "rolled back the whole uncommitted batch" in str(info.value)
    assert store.get("k") is MISSING and not store.hasPendingWrites
    assert store.sql.exec("SELECT n FROM t").toArray() == [{"n": 0}]
    store.sql.exec("INSERT INTO t VALUES (2)")
    store.put("k", "w")
    store.commit()
    assert store.sql.exec("SELECT n FROM t ORDER BY n").toArray() == [{"n": 0}, {"n": 2}]
    assert store.get("k") == "w"
