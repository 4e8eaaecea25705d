"""The contract every storage backend meets; each test runs once per backend (see conftest.py)."""

from __future__ import annotations

import itertools
from typing import Any, Callable

import pytest

from dotwist.storage import (
    MISSING,
    InvalidArgumentError,
    InvalidKeyError,
    InvalidValueError,
    ObjectOpenError,
    ObjectStore,
    SqlError,
    StorageBackend,
    StorageClosedError,
    StorageError,
    StorageLimitError,
    StorageLimits,
    TransactionAbortedError,
    encodedSize,
)
from dotwist.storage._sql import TRANSACTION_MESSAGE

# The same constants as conftest.py (test modules here are not a package, so they cannot import it).
OBJECT_ID = "0123456789abcdef" * 4
OTHER_ID = "fedcba9876543210" * 4
NAMESPACE = "TestObject"
MakeBackend = Callable[..., StorageBackend]

# -- key-value basics ---------------------------------------------------------------------------


def test_getOfAnAbsentKeyReturnsMissing(store: ObjectStore) -> None:
    """get() of a key never written returns the MISSING sentinel, which is falsy and not None."""
    assert store.get("nope") is MISSING
    assert not MISSING and MISSING is not None


def test_putThenGet(store: ObjectStore) -> None:
    """A value put under a key is returned by get(), and a second put replaces it."""
    store.put("k", {"a": 1})
    assert store.get("k") == {"a": 1}
    store.put("k", None)
    assert store.get("k") is None
    store.put("", "empty key")
    assert store.get("") == "empty key"


def test_storedValuesAreCopies(store: ObjectStore) -> None:
    """Mutating a value after put(), or a value returned by get(), does not change what is stored."""
    value = {"list": [1, 2]}
    store.put("k", value)
    value["list"].append(3)
    got = store.get("k")
    assert got == {"list": [1, 2]}
    got["list"].append(4)
    assert store.get("k") == {"list": [1, 2]}


def test_deleteReturnsWhetherTheKeyExisted(store: ObjectStore) -> None:
    """delete() removes a key and says whether it was there."""
    store.put("k", 1)
    assert store.delete("k") is True
    assert store.delete("k") is False
    assert store.get("k") is MISSING


def test_getManyOrdersByKeyAndOmitsAbsentKeys(store: ObjectStore) -> None:
    """getMany() returns the present keys in key order, whatever the order asked."""
    store.putMany({"b": 2, "a": 1, "c": 3})
    result = store.getMany(["c", "zz", "a", "a"])
    assert list(result.items()) == [("a", 1), ("c", 3)]
    assert store.getMany([]) == {}


def test_putManyAndDeleteMany(store: ObjectStore) -> None:
    """putMany() stores every entry; deleteMany() deletes and counts the keys that existed, once each."""
    store.putMany({f"k{i}": i for i in range(10)})
    assert store.list() == {f"k{i}": i for i in range(10)}
    assert store.deleteMany(["k1", "k2", "k2", "missing"]) == 2
    assert "k1" not in store.list() and len(store.list()) == 8
    assert store.deleteMany([]) == 0


UNICODE_KEYS = [
    "",
    "a",
    "a\x00",
    "aa",
    "aab",
    "ab",
    "abc",
    "b",
    "ba",
    "z",
    "\x7f",
    "é",
    "éa",
    "\u07ff",
    "\u0800",
    "\ud7ff",
    "\ud7ffz",
    "\ue000",
    "\uffff",
    "\U00010000",
    "\U0001f600",
    "\U0010ffff",
    "\U0010ffffa",
]


def test_keysOrderByTheirUtf8Bytes(store: ObjectStore) -> None:
    """list() returns keys in the order of their UTF-8 encodings (code point order), as Cloudflare."""
    shuffled = UNICODE_KEYS[::2] + UNICODE_KEYS[1::2]
    store.putMany({k: i for i, k in enumerate(shuffled)})
    keys = list(store.list())
    assert keys == sorted(UNICODE_KEYS, key=lambda k: k.encode("utf-8"))
    assert keys == sorted(UNICODE_KEYS)


def _expectedList(
    keys: list[str],
    start: str | None,
    startAfter: str | None,
    end: str | None,
    prefix: str | None,
    reverse: bool,
    limit: int | None,
) -> list[str]:
    selected = sorted(
        k
        for k in keys
        if (start is None or k >= start)
        and (startAfter is None or k > startAfter)
        and (end is None or k < end)
        and (prefix is None or k.startswith(prefix))
    )
    if reverse:
        selected.reverse()
    return selected if limit is None else selected[:limit]


def test_listOptionsInEveryCombination(store: ObjectStore) -> None:
    """list() honours start, startAfter, end, prefix, reverse and limit in every combination."""
    store.putMany({k: k for k in UNICODE_KEYS[:20]})
    store.putMany({k: k for k in UNICODE_KEYS[20:]})
    bounds = [None, "", "a", "aa", "ab", "é", "\ud7ff", "\U0010ffff"]
    prefixes = [None, "", "a", "aa", "\ud7ff", "\U0010ffff", "q"]
    checked = 0
    for startKind, bound, end, prefix, reverse, limit in itertools.product(
        ["start", "startAfter"], bounds, bounds[:1] + bounds[3:], prefixes, [False, True], [None, 1, 3]
    ):
        if startKind == "startAfter" and bound is None:
            continue
        start = bound if startKind == "start" else None
        startAfter = bound if startKind == "startAfter" else None
        result = store.list(
            start=start, startAfter=startAfter, end=end, prefix=prefix, reverse=reverse, limit=limit
        )
        expected = _expectedList(UNICODE_KEYS, start, startAfter, end, prefix, reverse, limit)
        assert list(result) == expected, (start, startAfter, end, prefix, reverse, limit)
        assert all(result[k] == k for k in result)
        checked += 1
    assert checked > 2000


def test_listRefusesBadOptions(store: ObjectStore) -> None:
    """start with startAfter, a non-positive or non-int limit, and non-str bounds are refused."""
    with pytest.raises(InvalidArgumentError, match="start and startAfter"):
        store.list(start="a", startAfter="b")
    for limit in (0, -1, 1.5, True):
        with pytest.raises(InvalidArgumentError, match="limit"):
            store.list(limit=limit)  # type: ignore[arg-type]
    with pytest.raises(InvalidKeyError):
        store.list(prefix=b"a")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        store.list(reverse=1)  # type: ignore[arg-type]


def test_keysMustBeValidStrings(store: ObjectStore) -> None:
    """Non-str keys and keys with lone surrogates raise InvalidKeyError (a TypeError)."""
    for key in (1, b"k", None, ("a",)):
        with pytest.raises(InvalidKeyError) as info:
            store.put(key, 1)  # type: ignore[arg-type]
        assert isinstance(info.value, TypeError)
        with pytest.raises(InvalidKeyError):
            store.get(key)  # type: ignore[arg-type]
    with pytest.raises(InvalidKeyError, match="surrogate"):
        store.put("a\udc00", 1)
    with pytest.raises(InvalidKeyError):
        store.getMany("ab")
    assert store.list() == {}


# -- limits -------------------------------------------------------------------------------------


def test_multiKeyCallsTakeAtMost128Keys(store: ObjectStore) -> None:
    """getMany/putMany/deleteMany accept 128 keys; 129 raise StorageLimitError and change nothing."""
    keys = [f"k{i:03}" for i in range(129)]
    store.putMany({k: 1 for k in keys[:128]})
    assert len(store.getMany(keys[:128])) == 128
    for call in (
        lambda: store.getMany(keys),
        lambda: store.putMany({k: 2 for k in keys}),
        lambda: store.deleteMany(keys),
    ):
        with pytest.raises(StorageLimitError) as info:
            call()
        assert "128" in str(info.value) and "maxKeysPerCall" in str(info.value)
        assert info.value.limit == "maxKeysPerCall" and info.value.value == 128
        assert isinstance(info.value, ValueError)
    assert store.list() == {k: 1 for k in keys[:128]}


def test_keySizeLimit(store: ObjectStore) -> None:
    """Keys of up to 2048 UTF-8 bytes work; longer ones raise StorageLimitError in every call."""
    store.put("k" * 2048, "max")
    store.put("é" * 1024, "max too")
    assert store.get("k" * 2048) == "max"
    for key in ("k" * 2049, "é" * 1024 + "x"):
        for call in (
            lambda: store.put(key, 1),
            lambda: store.get(key),
            lambda: store.delete(key),
            lambda: store.putMany({key: 1}),
            lambda: store.getMany([key]),
        ):
            with pytest.raises(StorageLimitError, match="maxKeySize = 2048") as info:
                call()
            assert "Keys cannot be larger than 2048 bytes" in str(info.value)
    assert store.list() == {"k" * 2048: "max", "é" * 1024: "max too"}


def test_keyAndValueSizeLimit(store: ObjectStore) -> None:
    """Key plus encoded value may reach 2 MiB exactly; one byte more fails and leaves the old value."""
    limit = 2 * 1024 * 1024
    n = limit - 1 - (encodedSize(b"x" * (limit - 10)) - (limit - 10))
    assert 1 + encodedSize(b"x" * n) == limit
    store.put("k", "old")
    store.put("j", b"x" * n)
    assert len(store.get("j")) == n
    with pytest.raises(StorageLimitError, match="maxKeyValueSize = 2097152"):
        store.put("k", b"x" * (n + 1))
    with pytest.raises(StorageLimitError, match="maxKeyValueSize"):
        store.putMany({"a": 1, "k": "x" * limit})
    assert store.get("k") == "old" and store.get("a") is MISSING


def test_limitsAreConfigurable(makeBackend: MakeBackend) -> None:
    """A deployment's StorageLimits replace Cloudflare's numbers, and errors quote the new values."""
    limits = StorageLimits(
        maxKeySize=4, maxKeyValueSize=64, maxKeysPerCall=2, maxSqlBindings=3, maxValueDepth=2
    )
    store = makeBackend(limits).open(NAMESPACE, OBJECT_ID)
    store.put("abcd", [[1]])
    with pytest.raises(StorageLimitError, match="maxKeySize = 4"):
        store.put("abcde", 1)
    with pytest.raises(StorageLimitError, match="maxKeyValueSize = 64"):
        store.put("k", "x" * 64)
    with pytest.raises(StorageLimitError, match="maxKeysPerCall = 2"):
        store.getMany(["a", "b", "c"])
    with pytest.raises(StorageLimitError, match="maxSqlBindings = 3"):
        store.sql.exec("SELECT ?, ?, ?, ?", 1, 2, 3, 4)
    with pytest.raises(InvalidValueError, match="nested more than 2"):
        store.put("k", [[[1]]])


def test_databaseSizeLimit(makeBackend: MakeBackend) -> None:
    """Key-value writes that would pass maxDatabaseSize raise StorageLimitError and keep the batch."""
    store = makeBackend(StorageLimits(maxDatabaseSize=100_000)).open(NAMESPACE, OBJECT_ID)
    store.put("committed", 1)
    store.commit()
    with pytest.raises(StorageLimitError, match="maxDatabaseSize = 100000") as info:
        for i in range(100):
            store.put(f"k{i:02}", b"x" * 5000)
    assert info.value.limit == "maxDatabaseSize"
    assert 10 <= i < 20 and len(store.list()) == i + 1
    assert store.hasPendingWrites
    store.rollback()
    assert store.list() == {"committed": 1}
    with pytest.raises(StorageError):
        store.sql.exec("CREATE TABLE t (x); INSERT INTO t VALUES (randomblob(200000))")
    assert store.list() == {"committed": 1}


def test_invalidLimitsAreRefused() -> None:
    """StorageLimits refuses zero, negative and non-int limits."""
    for bad in (0, -1, 1.5, "10"):
        with pytest.raises(InvalidArgumentError):
            StorageLimits(maxKeySize=bad)  # type: ignore[arg-type]


# -- values -------------------------------------------------------------------------------------


def test_valuesRoundTrip(
    store: ObjectStore,
    sampleValues: list[tuple[str, Any, Any]],
    same: Callable[[Any, Any], None],
) -> None:
    """Every supported value comes back from get(), getMany() and list(), after commit, with exactly its types."""
    for name, value, _ in sampleValues:
        store.put(name, value)
    for name, _, expected in sampleValues:
        same(store.get(name), expected)
    store.commit()
    listed = store.list()
    assert list(listed) == sorted(name for name, _, _ in sampleValues)
    for name, _, expected in sampleValues:
        same(listed[name], expected)
        same(store.getMany([name])[name], expected)


def test_unsupportedValuesAreRefused(store: ObjectStore) -> None:
    """Unsupported types and cycles raise InvalidValueError at put time and store nothing."""
    cycle: list[Any] = [1]
    cycle.append(cycle)
    store.put("k", "before")
    for value in (object(), lambda: 0, cycle, {"a": {1, object}}, [1, open]):
        with pytest.raises(InvalidValueError):
            store.put("k", value)
        with pytest.raises(InvalidValueError):
            store.putMany({"other": 1, "k": value})
    assert store.list() == {"k": "before"}
    assert not store.hasPendingWrites or store.get("k") == "before"


# -- transactions -------------------------------------------------------------------------------


def test_rollbackDiscardsEveryUncommittedWrite(store: ObjectStore) -> None:
    """rollback() undoes puts, deletes, the alarm and SQL writes made since the last commit."""
    store.put("keep", 1)
    store.put("gone", 1)
    store.setAlarm(1000)
    store.sql.exec("CREATE TABLE t (x); INSERT INTO t VALUES (1)")
    store.commit()
    store.put("new", 2)
    store.put("keep", 3)
    store.delete("gone")
    store.setAlarm(2000)
    store.sql.exec("INSERT INTO t VALUES (2); CREATE TABLE u (y)")
    store.rollback()
    assert store.list() == {"gone": 1, "keep": 1}
    assert store.getAlarm() == 1000
    assert store.sql.exec("SELECT x FROM t").raw().toArray() == [[1]]
    assert store.sql.exec("SELECT name FROM sqlite_master WHERE name = 'u'").toArray() == []


def test_commitMakesWritesPermanent(store: ObjectStore, backend: StorageBackend) -> None:
    """Committed writes survive a later rollback and closing and reopening the object."""
    store.put("a", 1)
    store.sql.exec("CREATE TABLE t (x); INSERT INTO t VALUES (42)")
    store.setAlarm(5)
    store.commit()
    store.put("b", 2)
    store.rollback()
    store.put("c", 3)
    store.close()
    reopened = backend.open(NAMESPACE, OBJECT_ID)
    assert reopened.list() == {"a": 1}
    assert reopened.getAlarm() == 5
    assert reopened.sql.exec("SELECT x FROM t").one() == {"x": 42}


def test_hasPendingWrites(store: ObjectStore) -> None:
    """hasPendingWrites turns on with writes (SQL DDL and DML included) and off with commit or rollback."""
    assert not store.hasPendingWrites
    store.get("a")
    store.list()
    assert store.delete("absent") is False
    assert not store.hasPendingWrites
    store.put("a", 1)
    assert store.hasPendingWrites
    store.commit()
    assert not store.hasPendingWrites
    store.sql.exec("SELECT 1")
    assert not store.hasPendingWrites
    store.sql.exec("CREATE TABLE t (x)")
    assert store.hasPendingWrites
    store.commit()
    store.sql.exec("SELECT * FROM t")
    assert not store.hasPendingWrites
    store.sql.exec("UPDATE t SET x = 1 WHERE x = 2")
    assert store.hasPendingWrites
    store.rollback()
    assert not store.hasPendingWrites
    store.setAlarm(1)
    assert store.hasPendingWrites


def test_savepointRollbackToUndoesOnlyLaterWrites(store: ObjectStore) -> None:
    """rollbackTo(savepoint) discards the writes made after the savepoint and keeps the earlier ones."""
    store.put("before", 1)
    store.sql.exec("CREATE TABLE t (x)")
    sp = store.savepoint()
    store.put("after", 2)
    store.put("before", 99)
    store.setAlarm(7)
    store.sql.exec("INSERT INTO t VALUES (1)")
    store.rollbackTo(sp)
    assert store.list() == {"before": 1}
    assert store.getAlarm() is None
    assert store.sql.exec("SELECT count(*) AS n FROM t").one() == {"n": 0}
    assert store.hasPendingWrites
    store.commit()
    assert store.list() == {"before": 1}


def test_nestedSavepoints(store: ObjectStore) -> None:
    """Savepoints nest: an inner rollback keeps the outer savepoint's writes, release keeps them all."""
    outer = store.savepoint()
    store.put("a", 1)
    inner = store.savepoint()
    store.put("b", 2)
    innermost = store.savepoint()
    store.put("c", 3)
    store.release(innermost)
    store.rollbackTo(inner)
    assert store.list() == {"a": 1}
    again = store.savepoint()
    store.put("d", 4)
    store.release(again)
    store.release(outer)
    assert store.list() == {"a": 1, "d": 4}
    store.rollback()
    assert store.list() == {}


def test_endingASavepointEndsTheOnesOpenedAfterIt(store: ObjectStore) -> None:
    """release() or rollbackTo() of an outer savepoint also ends inner ones, which can't be used again."""
    outer = store.savepoint()
    inner = store.savepoint()
    store.put("x", 1)
    store.release(outer)
    for sp in (inner, outer):
        with pytest.raises(InvalidArgumentError, match="already ended"):
            store.rollbackTo(sp)
        with pytest.raises(InvalidArgumentError):
            store.release(sp)
    assert store.get("x") == 1
    outer = store.savepoint()
    inner = store.savepoint()
    store.put("y", 1)
    store.rollbackTo(outer)
    with pytest.raises(InvalidArgumentError):
        store.release(inner)
    assert store.get("y") is MISSING


def test_savepointRollbackRestoresThePendingFlag(store: ObjectStore) -> None:
    """Rolling back to a savepoint taken with nothing pending leaves nothing pending."""
    sp = store.savepoint()
    store.put("a", 1)
    store.rollbackTo(sp)
    assert not store.hasPendingWrites


def test_commitIsRefusedWhileASavepointIsOpen(store: ObjectStore) -> None:
    """commit() raises StorageError while a savepoint is open; rollback() discards open savepoints."""
    sp = store.savepoint()
    store.put("a", 1)
    with pytest.raises(StorageError, match="savepoint"):
        store.commit()
    store.rollback()
    with pytest.raises(InvalidArgumentError):
        store.release(sp)
    assert store.list() == {}
    store.put("b", 1)
    store.commit()
    assert store.list() == {"b": 1}


def test_savepointsOfAnotherStoreAreRefused(backend: StorageBackend) -> None:
    """A savepoint token works only with the store that made it."""
    one = backend.open(NAMESPACE, OBJECT_ID)
    two = backend.open(NAMESPACE, OTHER_ID)
    sp = one.savepoint()
    with pytest.raises(InvalidArgumentError, match="not a savepoint"):
        two.release(sp)
    one.release(sp)


def test_objectsAreIndependent(backend: StorageBackend) -> None:
    """Two objects (and two namespaces) have separate data, alarms, SQL and transactions."""
    one = backend.open(NAMESPACE, OBJECT_ID)
    two = backend.open(NAMESPACE, OTHER_ID)
    three = backend.open("OtherClass", OBJECT_ID)
    one.put("k", 1)
    one.setAlarm(1)
    one.sql.exec("CREATE TABLE t (x)")
    two.put("k", 2)
    assert three.get("k") is MISSING and three.getAlarm() is None
    one.commit()
    two.rollback()
    assert one.get("k") == 1 and two.get("k") is MISSING
    three.sql.exec("CREATE TABLE t (y)")


# -- alarm and deleteAll ------------------------------------------------------------------------


def test_alarmSetGetDelete(store: ObjectStore) -> None:
    """The alarm is an int of milliseconds, settable, replaceable, deletable, and None when unset."""
    assert store.getAlarm() is None
    store.setAlarm(1_700_000_000_123)
    assert store.getAlarm() == 1_700_000_000_123
    store.setAlarm(1.9e12)
    assert store.getAlarm() == 1_900_000_000_000
    store.setAlarm(-5)
    assert store.getAlarm() == -5
    store.deleteAlarm()
    assert store.getAlarm() is None
    store.deleteAlarm()
    for bad in (None, "1", True, float("nan"), float("inf"), 2**60):
        with pytest.raises(InvalidArgumentError):
            store.setAlarm(bad)  # type: ignore[arg-type]


def test_deleteAllRemovesKeysAlarmAndSqlTables(store: ObjectStore) -> None:
    """deleteAll() deletes every key, the alarm, and every SQL table, view, index and trigger."""
    store.putMany({"a": 1, "b": 2})
    store.setAlarm(123)
    store.sql.exec(
        "CREATE TABLE parent (id INTEGER PRIMARY KEY);"
        "CREATE TABLE child (p INTEGER REFERENCES parent(id));"
        "INSERT INTO parent VALUES (1); INSERT INTO child VALUES (1);"
        "CREATE INDEX i ON child (p); CREATE VIEW v AS SELECT * FROM child;"
        "CREATE TRIGGER tr AFTER INSERT ON parent BEGIN INSERT INTO child VALUES (new.id); END;"
        "CREATE TABLE seq (id INTEGER PRIMARY KEY AUTOINCREMENT); INSERT INTO seq DEFAULT VALUES;"
        "CREATE VIRTUAL TABLE docs USING fts5 (body); INSERT INTO docs VALUES ('hello');"
    )
    store.commit()
    store.deleteAll()
    assert store.list() == {} and store.getAlarm() is None
    names = store.sql.exec(
        "SELECT name FROM sqlite_master WHERE name NOT LIKE '\\_cf\\_%' ESCAPE '\\' "
        "AND name != 'sqlite_sequence'"
    ).toArray()
    assert names == []
    store.sql.exec("CREATE TABLE parent (other TEXT)")
    store.commit()
    assert store.list() == {}


def test_deleteAllCanBeRolledBack(store: ObjectStore) -> None:
    """deleteAll() is part of the uncommitted batch: rollback() brings everything back."""
    store.putMany({"a": 1, "b": 2})
    store.setAlarm(9)
    store.sql.exec("CREATE TABLE t (x); INSERT INTO t VALUES (1)")
    store.commit()
    sp = store.savepoint()
    store.deleteAll()
    store.put("c", 3)
    store.rollbackTo(sp)
    assert store.list() == {"a": 1, "b": 2}
    store.deleteAll()
    store.rollback()
    assert store.list() == {"a": 1, "b": 2} and store.getAlarm() == 9
    assert store.sql.exec("SELECT x FROM t").one() == {"x": 1}


# -- lifetime -----------------------------------------------------------------------------------


def test_closeDiscardsUncommittedWritesAndRefusesLaterCalls(
    store: ObjectStore, backend: StorageBackend
) -> None:
    """close() drops uncommitted writes; a closed store raises StorageClosedError; reopening works."""
    store.put("a", 1)
    store.commit()
    store.put("b", 2)
    store.close()
    store.close()
    assert store.closed
    for call in (
        lambda: store.get("a"),
        lambda: store.put("a", 1),
        lambda: store.list(),
        lambda: store.sql,
        lambda: store.commit(),
        lambda: store.getAlarm(),
    ):
        with pytest.raises(StorageClosedError):
            call()
    assert backend.open(NAMESPACE, OBJECT_ID).list() == {"a": 1}


def test_anObjectCanBeOpenOnlyOnce(store: ObjectStore, backend: StorageBackend) -> None:
    """Opening an object that is already open raises ObjectOpenError."""
    with pytest.raises(ObjectOpenError, match="already open"):
        backend.open(NAMESPACE, OBJECT_ID)
    store.close()
    backend.open(NAMESPACE, OBJECT_ID).close()


BAD_NAMES: list[tuple[Any, Any]] = [
    ("", OBJECT_ID),
    ("../etc", OBJECT_ID),
    ("a/b", OBJECT_ID),
    ("9Lives", OBJECT_ID),
    ("x" * 129, OBJECT_ID),
    (NAMESPACE, OBJECT_ID.upper()),
    (NAMESPACE, OBJECT_ID[:-1]),
    (NAMESPACE, OBJECT_ID + "0"),
    (NAMESPACE, "g" * 64),
    (NAMESPACE, None),
    (None, OBJECT_ID),
]


def test_namespaceAndObjectIdAreValidated(backend: StorageBackend) -> None:
    """Namespaces must be class-like names and object ids 64 lowercase hex digits."""
    for namespace, objectId in BAD_NAMES:
        with pytest.raises(InvalidArgumentError):
            backend.open(namespace, objectId)
    backend.open("A_valid-Name9", OBJECT_ID).close()


def test_closedBackendRefusesToOpen(backend: StorageBackend) -> None:
    """After backend.close(), open stores are closed and open() raises StorageClosedError."""
    store = backend.open(NAMESPACE, OBJECT_ID)
    backend.close()
    assert store.closed
    with pytest.raises(StorageClosedError):
        backend.open(NAMESPACE, OBJECT_ID)


# -- SQL ----------------------------------------------------------------------------------------


def test_sqlCreateInsertSelect(store: ObjectStore) -> None:
    """exec() creates tables, inserts with bindings and selects rows as dicts, in order."""
    sql = store.sql
    sql.exec("CREATE TABLE artist (id INTEGER PRIMARY KEY, name TEXT)")
    for i, name in ((123, "Alice"), (456, "Bob"), (789, "Charlie")):
        sql.exec("INSERT INTO artist (id, name) VALUES (?, ?)", i, name)
    rows = list(sql.exec("SELECT * FROM artist ORDER BY name"))
    assert rows == [
        {"id": 123, "name": "Alice"},
        {"id": 456, "name": "Bob"},
        {"id": 789, "name": "Charlie"},
    ]
    assert sql.exec("SELECT name FROM artist WHERE id = ?", 456).one() == {"name": "Bob"}


def test_sqlValueTypes(store: ObjectStore) -> None:
    """NULL, INTEGER, REAL, TEXT and BLOB round-trip; bool binds as 0/1; other bindings are refused."""
    sql = store.sql
    row = sql.exec(
        "SELECT ? AS n, ? AS i, ? AS f, ? AS t, ? AS b, ? AS yes, ? AS bb",
        None,
        2**63 - 1,
        0.5,
        "héllo",
        b"\x00\xff",
        True,
        bytearray(b"ab"),
    ).one()
    assert row == {"n": None, "i": 2**63 - 1, "f": 0.5, "t": "héllo", "b": b"\x00\xff", "yes": 1, "bb": b"ab"}
    assert type(row["b"]) is bytes
    for bad in ({"a": 1}, [1], 2**63, object(), "lone \udc00 surrogate"):
        with pytest.raises(InvalidValueError, match="binding 1"):
            sql.exec("SELECT ?", bad)
    with pytest.raises(InvalidValueError, match="surrogate"):
        sql.exec("SELECT '\ud800'")
    with pytest.raises(SqlError, match="null character"):
        sql.exec("SELECT 1\x00")


def test_sqlMultipleStatementsBindTheLastAndReturnItsRows(store: ObjectStore) -> None:
    """With several statements, bindings apply to the last one, whose rows alone are returned."""
    cursor = store.sql.exec(
        """
        CREATE TABLE t (x INTEGER, y TEXT);  -- a comment; with a semicolon
        INSERT INTO t VALUES (1, 'a;b'), (2, 'c');
        SELECT 'ignored';
        /* another; comment */
        SELECT y FROM t WHERE x >= ? ORDER BY x;
        """,
        1,
    )
    assert cursor.columnNames == ["y"]
    assert cursor.toArray() == [{"y": "a;b"}, {"y": "c"}]


def test_sqlParametersOnlyInTheLastStatement(store: ObjectStore) -> None:
    """A parameter in an earlier statement, or a wrong binding count, raises SqlError and changes nothing."""
    store.sql.exec("CREATE TABLE t (x)")
    with pytest.raises(SqlError, match="only the last statement can have parameters"):
        store.sql.exec("INSERT INTO t VALUES (1); INSERT INTO t VALUES (?); SELECT 1", 5)
    with pytest.raises(SqlError, match="Wrong number of parameter bindings"):
        store.sql.exec("INSERT INTO t VALUES (1); INSERT INTO t VALUES (?)")
    with pytest.raises(SqlError, match="Wrong number of parameter bindings"):
        store.sql.exec("SELECT ?", 1, 2)
    assert store.sql.exec("SELECT count(*) AS n FROM t").one() == {"n": 0}


def test_sqlTriggerBodiesAreNotSplit(store: ObjectStore) -> None:
    """Semicolons inside CREATE TRIGGER ... BEGIN ... END and inside strings do not split statements."""
    store.sql.exec(
        "CREATE TABLE t (x); CREATE TABLE log (m);"
        "CREATE TRIGGER tr AFTER INSERT ON t BEGIN "
        "INSERT INTO log VALUES ('one;'); INSERT INTO log VALUES (new.x); END;"
        "INSERT INTO t VALUES ('x;y');"
    )
    assert store.sql.exec("SELECT m FROM log ORDER BY rowid").raw().toArray() == [["one;"], ["x;y"]]


def test_sqlEmptyQueryIsRefused(store: ObjectStore) -> None:
    """A query with no statement (blank, only comments or semicolons) raises SqlError."""
    for query in ("", "   ", ";;", "-- nothing\n /* at all */ ;"):
        with pytest.raises(SqlError, match="did not contain a statement"):
            store.sql.exec(query)


def test_sqlOne(store: ObjectStore) -> None:
    """one() returns the only row, and otherwise raises Cloudflare's errors."""
    store.sql.exec("CREATE TABLE t (x); INSERT INTO t VALUES (1), (2)")
    assert store.sql.exec("SELECT x FROM t WHERE x = 2").one() == {"x": 2}
    with pytest.raises(SqlError) as none:
        store.sql.exec("SELECT x FROM t WHERE x > 5").one()
    assert str(none.value) == "Expected exactly one result from SQL query, but got no results."
    with pytest.raises(SqlError) as many:
        store.sql.exec("SELECT x FROM t").one()
    assert str(many.value) == "Expected exactly one result from SQL query, but got multiple results."
    with pytest.raises(SqlError, match="no results"):
        store.sql.exec("INSERT INTO t VALUES (3)").one()
    cursor = store.sql.exec("SELECT x FROM t ORDER BY x")
    next(cursor)
    next(cursor)
    assert cursor.one() == {"x": 3}


def test_sqlRowsAllowAttributeAccess(store: ObjectStore) -> None:
    """Rows from iteration, toArray() and one() allow row["c"] and row.c (as Cloudflare's Python
    Workers' rows do), and still equal plain dicts; a missing column is an AttributeError naming
    the columns."""
    store.sql.exec("CREATE TABLE t (greeting, keys); INSERT INTO t VALUES ('hi', 1)")
    one = store.sql.exec("SELECT greeting, keys FROM t").one()
    assert one.greeting == one["greeting"] == "hi"
    assert one == {"greeting": "hi", "keys": 1} and isinstance(one, dict)
    assert one["keys"] == 1 and callable(one.keys)  # dict's own names win on attribute access
    assert [row.greeting for row in store.sql.exec("SELECT greeting FROM t")] == ["hi"]
    assert store.sql.exec("SELECT greeting AS g FROM t").toArray()[0].g == "hi"
    with pytest.raises(AttributeError, match="columns: greeting"):
        store.sql.exec("SELECT greeting FROM t").one().missing


def test_sqlRawColumnNamesAndSharedIteration(store: ObjectStore) -> None:
    """raw() yields lists in columnNames order and consumes the same rows as the cursor."""
    store.sql.exec("CREATE TABLE a (id, name); INSERT INTO a VALUES (1, 'x'), (2, 'y'), (3, 'z')")
    cursor = store.sql.exec("SELECT id, name, id * 2 AS double FROM a ORDER BY id")
    assert cursor.columnNames == ["id", "name", "double"]
    assert next(cursor.raw()) == [1, "x", 2]
    assert next(cursor) == {"id": 2, "name": "y", "double": 4}
    assert cursor.raw().toArray() == [[3, "z", 6]]
    assert cursor.toArray() == [] and list(cursor) == []
    assert store.sql.exec("INSERT INTO a VALUES (4, 'w')").columnNames == []
    assert store.sql.exec("SELECT * FROM a WHERE 0").columnNames == ["id", "name"]


def test_sqlRowsReadAndWritten(store: ObjectStore) -> None:
    """rowsWritten counts rows inserted, updated and deleted; rowsRead counts rows returned."""
    sql = store.sql
    created = sql.exec("CREATE TABLE t (x)")
    assert (created.rowsRead, created.rowsWritten) == (0, 0)
    assert sql.exec("INSERT INTO t VALUES (1), (2), (3)").rowsWritten == 3
    assert sql.exec("UPDATE t SET x = x + 10 WHERE x > 1").rowsWritten == 2
    selected = sql.exec("SELECT * FROM t")
    assert (selected.rowsRead, selected.rowsWritten) == (3, 0)
    both = sql.exec("DELETE FROM t WHERE x = 1; SELECT * FROM t")
    assert (both.rowsRead, both.rowsWritten) == (2, 1)
    returning = sql.exec("DELETE FROM t RETURNING x")
    assert returning.rowsWritten == 2 and sorted(returning.raw().toArray()) == [[12], [13]]


TRANSACTION_STATEMENTS = [
    "BEGIN",
    "BEGIN TRANSACTION",
    "BEGIN IMMEDIATE",
    "COMMIT",
    "END",
    "ROLLBACK",
    "SAVEPOINT sp",
    "RELEASE sp",
    "RELEASE SAVEPOINT sp",
    "ROLLBACK TO sp",
    "INSERT INTO t VALUES (1); BEGIN; INSERT INTO t VALUES (2); COMMIT",
]


def test_sqlTransactionStatementsAreRefused(store: ObjectStore) -> None:
    """BEGIN, COMMIT, ROLLBACK, SAVEPOINT and RELEASE raise Cloudflare's error pointing at transaction()."""
    store.sql.exec("CREATE TABLE t (x)")
    for query in TRANSACTION_STATEMENTS:
        with pytest.raises(SqlError) as info:
            store.sql.exec(query)
        assert str(info.value) == TRANSACTION_MESSAGE, query
        assert store.sql.exec("SELECT count(*) AS n FROM t").one() == {"n": 0}, query
    assert "state.storage.transaction()" in TRANSACTION_MESSAGE
    store.put("still", "works")
    store.commit()
    assert store.get("still") == "works"


RESERVED_NAME_STATEMENTS = [
    "SELECT * FROM _cf_KV",
    "SELECT value FROM _cf_KV WHERE key = 'k'",
    "SELECT * FROM _cf_METADATA",
    "SELECT * FROM _CF_kv",
    "INSERT INTO _cf_KV VALUES ('k', x'00')",
    "UPDATE _cf_KV SET value = x'00'",
    "DELETE FROM _cf_KV",
    "DROP TABLE _cf_KV",
    "CREATE TABLE _cf_mine (x)",
    "CREATE TABLE _CF_Mine (x)",
    "CREATE INDEX i ON _cf_KV (value)",
    "CREATE INDEX _cf_i ON t (x)",
    "CREATE TRIGGER tr AFTER INSERT ON _cf_KV BEGIN SELECT 1; END",
    "ALTER TABLE t RENAME TO _cf_stolen",
    "ALTER TABLE _cf_KV RENAME TO mine",
    "PRAGMA table_info(_cf_KV)",
    "SELECT * FROM pragma_table_info('_cf_KV')",
    "PRAGMA index_list('_cf_METADATA')",
    "CREATE VIRTUAL TABLE _cf_fts USING fts5 (x)",
]


def test_sqlReservedNamesAreRefused(store: ObjectStore) -> None:
    """Reading, writing, creating or renaming anything named _cf_* is refused and changes nothing."""
    store.put("k", "value")
    store.sql.exec("CREATE TABLE t (x)")
    store.commit()
    for query in RESERVED_NAME_STATEMENTS:
        with pytest.raises(SqlError, match="_cf_|_CF_"):
            store.sql.exec(query)
        store.sql.exec("INSERT INTO t VALUES (1)")  # a trigger, had one been created, fires here
        assert store.get("k") == "value" and store.list() == {"k": "value"}, query
        names = [r["name"] for r in store.sql.exec("SELECT name FROM sqlite_master ORDER BY name")]
        assert names == ["_cf_KV", "_cf_METADATA", "t"], query


def test_sqlViewOfAReservedTableCannotBeRead(store: ObjectStore) -> None:
    """A view selecting from a _cf_ table can be created (as in workerd) but reading it is refused."""
    store.put("k", "value")
    store.sql.exec("CREATE VIEW v AS SELECT * FROM _cf_KV")
    with pytest.raises(SqlError, match="_cf_KV"):
        store.sql.exec("SELECT * FROM v")


def test_sqlTriggerTouchingAReservedTableFailsWhenItFires(store: ObjectStore) -> None:
    """A trigger whose body writes a _cf_ table can be created but fails, changing nothing, when fired."""
    store.put("k", "value")
    store.sql.exec(
        "CREATE TABLE t (x); CREATE TRIGGER tr AFTER INSERT ON t BEGIN DELETE FROM _cf_KV; END"
    )
    with pytest.raises(SqlError, match="_cf_KV"):
        store.sql.exec("INSERT INTO t VALUES (1)")
    assert store.get("k") == "value"
    assert store.sql.exec("SELECT count(*) AS n FROM t").one() == {"n": 0}


DANGEROUS_STATEMENTS = [
    ("ATTACH DATABASE ':memory:' AS other", "ATTACH is not supported"),
    ("ATTACH 'file.db' AS other", "ATTACH is not supported"),
    ("DETACH other", "DETACH is not supported|no such database"),
    ("CREATE TEMP TABLE tt (x)", "not supported"),
    ("CREATE TEMPORARY VIEW tv AS SELECT 1", "not supported"),
    ("PRAGMA journal_mode = DELETE", "PRAGMA journal_mode is not allowed"),
    ("PRAGMA synchronous = OFF", "PRAGMA synchronous is not allowed"),
    ("PRAGMA writable_schema = 1", "PRAGMA writable_schema is not allowed"),
    ("PRAGMA foreign_keys = maybe", "takes a boolean"),
    ("SELECT load_extension('x')", "load_extension"),
    ("SELECT fts3_tokenizer('simple')", "fts3_tokenizer"),
    ("SELECT * FROM sqlite_stmt", "not supported|no such table"),
    ("SELECT * FROM dbstat", "not supported|no such table"),
    ("CREATE VIRTUAL TABLE r USING rtree (id, a, b)", "only fts5"),
]


def test_sqlDangerousStatementsAreRefused(store: ObjectStore) -> None:
    """ATTACH/DETACH, temporary objects, unlisted PRAGMAs, unsafe functions and virtual tables are refused."""
    for query, message in DANGEROUS_STATEMENTS:
        with pytest.raises(SqlError, match=message):
            store.sql.exec(query)
    assert not store.hasPendingWrites


def test_sqlAllowedPragmas(store: ObjectStore) -> None:
    """Cloudflare's allowlisted PRAGMAs (table_list, table_info, foreign_keys, ...) work."""
    store.sql.exec("CREATE TABLE t (x INTEGER NOT NULL, y TEXT)")
    assert [r["name"] for r in store.sql.exec("PRAGMA table_info(t)")] == ["x", "y"]
    assert store.sql.exec("PRAGMA foreign_keys").one() == {"foreign_keys": 1}
    store.sql.exec("PRAGMA defer_foreign_keys = ON")
    tables = {r["name"] for r in store.sql.exec("PRAGMA table_list")}
    assert "t" in tables


def test_sqlForeignKeysAreEnforced(store: ObjectStore) -> None:
    """Foreign keys are on by default, as in Cloudflare's Durable Objects."""
    store.sql.exec("CREATE TABLE p (id INTEGER PRIMARY KEY); CREATE TABLE c (p REFERENCES p(id))")
    with pytest.raises(SqlError, match="FOREIGN KEY constraint failed"):
        store.sql.exec("INSERT INTO c VALUES (1)")


def test_sqlTooManyBindings(store: ObjectStore) -> None:
    """100 bound parameters work; 101 raise StorageLimitError naming maxSqlBindings."""
    placeholders = ", ".join("?" * 100)
    assert len(store.sql.exec(f"SELECT {placeholders}", *range(100)).raw().toArray()[0]) == 100
    with pytest.raises(StorageLimitError, match="maxSqlBindings = 100"):
        store.sql.exec(f"SELECT {placeholders}, ?", *range(101))


def test_sqlStatementTooLong(store: ObjectStore) -> None:
    """A query of 100,000 bytes runs; 100,001 bytes (or multi-byte characters past it) are refused."""
    query = "SELECT 1 AS x" + " " * (100_000 - 13)
    assert store.sql.exec(query).one() == {"x": 1}
    with pytest.raises(StorageLimitError, match="maxSqlStatementLength = 100000"):
        store.sql.exec(query + " ")
    with pytest.raises(StorageLimitError, match="maxSqlStatementLength"):
        store.sql.exec("SELECT '" + "é" * 50_000 + "'")


def test_sqlOtherCloudflareLimits(store: ObjectStore) -> None:
    """Cloudflare's SQL limits on columns, LIKE patterns and function arguments apply."""
    columns = ", ".join(f"c{i}" for i in range(101))
    with pytest.raises(SqlError, match="too many columns"):
        store.sql.exec(f"CREATE TABLE wide ({columns})")
    with pytest.raises(SqlError, match="LIKE or GLOB pattern too complex"):
        store.sql.exec("SELECT 'a' LIKE ?", "%" * 51)
    with pytest.raises(SqlError, match="too many arguments"):
        store.sql.exec("SELECT max(" + ", ".join("1" * 33) + ")")


def test_sqlFailingStatementLeavesDataAsBefore(store: ObjectStore) -> None:
    """A failing statement undoes the statements before it in the same exec() and nothing else."""
    store.sql.exec("CREATE TABLE t (x PRIMARY KEY); INSERT INTO t VALUES (1)")
    store.put("kv", 1)
    with pytest.raises(SqlError, match="UNIQUE constraint failed") as info:
        store.sql.exec("INSERT INTO t VALUES (2); CREATE TABLE u (y); INSERT INTO t VALUES (1)")
    assert info.value.code is not None and info.value.code.startswith("SQLITE_CONSTRAINT")
    assert str(info.value).endswith(info.value.code)
    with pytest.raises(SqlError, match="no such table: nope: SQLITE_ERROR"):
        store.sql.exec("DELETE FROM t; SELECT * FROM nope")
    with pytest.raises(SqlError, match="syntax error"):
        store.sql.exec("DELETE FROM t; SELEKT 1")
    assert store.sql.exec("SELECT x FROM t").raw().toArray() == [[1]]
    assert store.sql.exec("SELECT name FROM sqlite_master WHERE name = 'u'").toArray() == []
    assert store.get("kv") == 1
    store.commit()
    assert store.sql.exec("SELECT x FROM t").raw().toArray() == [[1]]


def test_sqlErrorKeepsOpenSavepoints(store: ObjectStore) -> None:
    """A SQL error inside a savepoint leaves the savepoint usable."""
    store.sql.exec("CREATE TABLE t (x)")
    sp = store.savepoint()
    store.sql.exec("INSERT INTO t VALUES (1)")
    with pytest.raises(SqlError):
        store.sql.exec("INSERT INTO nope VALUES (1)")
    store.release(sp)
    assert store.sql.exec("SELECT count(*) AS n FROM t").one() == {"n": 1}


def test_sqlStatementThatRollsBackTheWholeBatch(store: ObjectStore) -> None:
    """INSERT OR ROLLBACK discards the whole uncommitted batch (key-value writes too) and says so."""
    store.sql.exec("CREATE TABLE t (x PRIMARY KEY); INSERT INTO t VALUES (1)")
    store.put("committed", 1)
    store.commit()
    store.put("uncommitted", 2)
    sp = store.savepoint()
    store.sql.exec("INSERT INTO t VALUES (2)")
    with pytest.raises(TransactionAbortedError, match="rolled back the whole uncommitted batch"):
        store.sql.exec("INSERT OR ROLLBACK INTO t VALUES (1)")
    assert store.list() == {"committed": 1}
    assert store.sql.exec("SELECT x FROM t").raw().toArray() == [[1]]
    assert not store.hasPendingWrites
    with pytest.raises(InvalidArgumentError):
        store.rollbackTo(sp)
    store.put("after", 3)
    store.commit()
    assert store.list() == {"after": 3, "committed": 1}


def test_sqlDatabaseSize(store: ObjectStore) -> None:
    """databaseSize is a positive number of bytes that grows as data is added."""
    before = store.sql.databaseSize
    assert isinstance(before, int) and before > 0
    store.sql.exec("CREATE TABLE t (x); INSERT INTO t VALUES (randomblob(100000))")
    assert store.sql.databaseSize > before


def test_sqlCursorsSurviveLaterWrites(store: ObjectStore) -> None:
    """A cursor holds the rows of its own exec(), unaffected by later statements."""
    store.sql.exec("CREATE TABLE t (x); INSERT INTO t VALUES (1), (2)")
    cursor = store.sql.exec("SELECT x FROM t ORDER BY x")
    store.sql.exec("DELETE FROM t")
    assert cursor.raw().toArray() == [[1], [2]]
