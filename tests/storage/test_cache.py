"""The value cache in front of key-value data: invisible but for speed, on every backend.

Each test runs once per backend (see conftest.py). The random test drives a store through seeded
sequences of every operation that changes key-value data or undoes changes (writes, deleteAll,
commit, failed commit, rollback, savepoints, SQLite rolling the batch back by itself, SQL aimed at
``_cf_KV``, closing and reopening) and checks every read against a model of what the store must
hold; a cache that missed one invalidation returns a stale value there.
"""

from __future__ import annotations

import copy
import enum
import random
from typing import Any, Callable

import pytest

from dotwist.storage import (
    MISSING,
    CommitError,
    InvalidArgumentError,
    MemoryBackend,
    ObjectStore,
    SqlError,
    SqliteBackend,
    StorageBackend,
    TransactionAbortedError,
)

OBJECT_ID = "0123456789abcdef" * 4
NAMESPACE = "TestObject"
MakeBackend = Callable[..., StorageBackend]

KEYS = [f"k{i}" for i in range(8)] + ["", "é", "k\U0001f600"]

#: Statements that would change _cf_KV behind the cache's back, were they allowed. Each must fail.
KV_ATTACKS = [
    "DELETE FROM _cf_KV",
    "UPDATE _cf_KV SET value = x'00'",
    "INSERT OR REPLACE INTO _cf_KV VALUES ('k0', x'01a0')",
    "REPLACE INTO _cf_KV VALUES ('k1', x'01a0')",
    "DROP TABLE _cf_KV",
    "ALTER TABLE _cf_KV RENAME TO kv",
    "INSERT INTO t VALUES (2)",  # fires the trigger below, whose body deletes from _cf_KV
    "DELETE FROM v",  # an INSTEAD OF trigger on a view of _cf_KV
]
SETUP_SQL = (
    "CREATE TABLE t (x PRIMARY KEY); CREATE TABLE u (x PRIMARY KEY); INSERT INTO u VALUES (1);"
    "CREATE TABLE p (id INTEGER PRIMARY KEY);"
    "CREATE TABLE c (p REFERENCES p(id) DEFERRABLE INITIALLY DEFERRED)"
)
# Created (not fired) without error, as in workerd; they fail when they fire.
TRAP_SQL = [
    "CREATE TRIGGER tr AFTER INSERT ON t WHEN new.x = 2 BEGIN DELETE FROM _cf_KV; END",
    "CREATE VIEW v AS SELECT 1 AS one",
    "CREATE TRIGGER tv INSTEAD OF DELETE ON v BEGIN UPDATE _cf_KV SET value = x'00'; END",
]


class Color(enum.IntEnum):
    RED = 1


def randomValue(rng: random.Random) -> Any:
    kind = rng.randrange(12)
    if kind == 0:
        return rng.randrange(-100, 1000)
    if kind == 1:
        return "s" * rng.randrange(0, 80)
    if kind == 2:
        return None
    if kind == 3:
        return rng.random()
    if kind == 4:
        return (rng.randrange(10), "t", (1.5, None))
    if kind == 5:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(5)))
    if kind == 6:
        return {"n": rng.randrange(100), "list": [1, [2, 3]], "set": {4, 5}}
    if kind == 7:
        return [rng.randrange(10), {"a": 1}]
    if kind == 8:
        return {rng.randrange(5), "x"}
    if kind == 9:
        return (1, [2])  # a tuple holding a list: not immutable all the way down
    if kind == 10:
        return Color.RED  # stored as the int it is
    return frozenset({1, 2})


def mutate(value: Any) -> None:
    """Change a value that get() returned, wherever it can be changed."""
    if isinstance(value, dict):
        value["mutated"] = True
        for x in list(value.values()):
            mutate(x)
    elif isinstance(value, list):
        value.append("mutated")
        for x in value[:-1]:
            mutate(x)
    elif isinstance(value, set):
        value.add("mutated")
    elif isinstance(value, tuple):
        for x in value:
            mutate(x)


def expected(value: Any) -> Any:
    """What reading ``value`` back gives (subclasses come back as their base type)."""
    if type(value) is Color:
        return int(value)
    return copy.deepcopy(value)


def same(actual: Any, wanted: Any) -> bool:
    return type(actual) is type(wanted) and actual == wanted


class Model:
    """What the store must hold: the committed state, the current one, and the savepoints."""

    def __init__(self) -> None:
        self.committed: dict[str, Any] = {}
        self.current: dict[str, Any] = {}
        self.savepoints: list[tuple[Any, dict[str, Any]]] = []

    def commit(self) -> None:
        self.committed = copy.deepcopy(self.current)

    def rollback(self) -> None:
        self.current = copy.deepcopy(self.committed)
        self.savepoints.clear()


def runRandomOperations(makeBackend: MakeBackend, seed: int, steps: int) -> None:
    rng = random.Random(seed)
    options = rng.choice(
        [{}, {"valueCacheEntries": 3}, {"valueCacheEntries": 5, "valueCacheBytes": 300},
         {"valueCacheEntries": 0}]
    )
    backend = makeBackend(**options)
    store: ObjectStore = backend.open(NAMESPACE, OBJECT_ID)
    store.sql.exec(SETUP_SQL)
    for statement in TRAP_SQL:
        store.sql.exec(statement)
    store.commit()
    model = Model()
    log: list[str] = [f"backend options {options}"]

    def check(what: str, actual: Any, wanted: Any) -> None:
        if not same(actual, wanted):
            raise AssertionError(
                f"seed {seed}: {what}: got {actual!r}, expected {wanted!r}; last operations:\n  "
                + "\n  ".join(log[-25:])
            )

    def checkAll() -> None:
        for key in KEYS:
            check(f"get({key!r})", store.get(key), model.current.get(key, MISSING))
        check("list()", store.list(), dict(sorted(model.current.items(), key=lambda kv: kv[0].encode())))

    for step in range(steps):
        op = rng.choices(
            ["put", "putMany", "delete", "deleteMany", "get", "getMany", "deleteAll", "commit",
             "rollback", "savepoint", "release", "rollbackTo", "lost", "failedCommit", "reopen",
             "attack", "checkAll"],
            weights=[14, 4, 6, 3, 20, 5, 1, 6, 2, 4, 2, 3, 1, 1, 1, 2, 2],
        )[0]
        noCache = rng.random() < 0.2
        log.append(f"{step}: {op}{' noCache' if noCache else ''}")
        if op == "put":
            key, value = rng.choice(KEYS), randomValue(rng)
            log[-1] += f" {key!r}={value!r}"
            store.put(key, value, noCache=noCache)
            model.current[key] = expected(value)
            mutate(value)  # the caller changing what it stored changes nothing stored
        elif op == "putMany":
            entries = {k: randomValue(rng) for k in rng.sample(KEYS, rng.randrange(1, 4))}
            log[-1] += f" {entries!r}"
            store.putMany(entries, noCache=noCache)
            model.current.update({k: expected(v) for k, v in entries.items()})
            for v in entries.values():
                mutate(v)
        elif op == "delete":
            key = rng.choice(KEYS)
            log[-1] += f" {key!r}"
            check(f"delete({key!r})", store.delete(key, noCache=noCache), key in model.current)
            model.current.pop(key, None)
        elif op == "deleteMany":
            keys = rng.sample(KEYS, rng.randrange(1, 4))
            log[-1] += f" {keys!r}"
            count = sum(k in model.current for k in keys)
            check(f"deleteMany({keys!r})", store.deleteMany(keys, noCache=noCache), count)
            for k in keys:
                model.current.pop(k, None)
        elif op == "get":
            key = rng.choice(KEYS)
            log[-1] += f" {key!r}"
            got = store.get(key, noCache=noCache)
            check(f"get({key!r})", got, model.current.get(key, MISSING))
            mutate(got)  # nor does the caller changing what it read
        elif op == "getMany":
            keys = rng.sample(KEYS, rng.randrange(1, 5))
            log[-1] += f" {keys!r}"
            got = store.getMany(keys, noCache=noCache)
            wanted = {k: model.current[k] for k in sorted(keys) if k in model.current}
            check(f"getMany({keys!r})", got, wanted)
            check("getMany order", list(got), list(wanted))
            mutate(got)
        elif op == "deleteAll":
            store.deleteAll()
            model.current.clear()
            store.sql.exec(SETUP_SQL)  # deleteAll dropped the tables; a real app would recreate
            for statement in TRAP_SQL:
                store.sql.exec(statement)
        elif op == "commit":
            if model.savepoints:
                continue
            store.commit()
            model.commit()
        elif op == "rollback":
            store.rollback()
            model.rollback()
        elif op == "savepoint":
            model.savepoints.append((store.savepoint(), copy.deepcopy(model.current)))
        elif op in ("release", "rollbackTo"):
            if not model.savepoints:
                continue
            depth = rng.randrange(len(model.savepoints))
            sp, snapshot = model.savepoints[depth]
            if op == "release":
                store.release(sp)
            else:
                store.rollbackTo(sp)
                model.current = snapshot
            del model.savepoints[depth:]
        elif op == "lost":
            # SQLite rolls the whole batch back by itself (savepoints too).
            with pytest.raises(TransactionAbortedError):
                store.sql.exec("INSERT OR ROLLBACK INTO u VALUES (1)")
            model.rollback()
            if not store.sql.exec("SELECT name FROM sqlite_master WHERE name = 't'").toArray():
                # the batch that recreated the tables after a deleteAll is gone too
                store.sql.exec(SETUP_SQL)
                for statement in TRAP_SQL:
                    store.sql.exec(statement)
        elif op == "failedCommit":
            if model.savepoints:
                continue
            store.sql.exec("INSERT INTO c VALUES (999)")  # a deferred foreign key violation
            with pytest.raises(CommitError):
                store.commit()
            model.rollback()
            if not store.sql.exec("SELECT name FROM sqlite_master WHERE name = 't'").toArray():
                store.sql.exec(SETUP_SQL)
                for statement in TRAP_SQL:
                    store.sql.exec(statement)
        elif op == "reopen":
            if not model.savepoints and rng.random() < 0.5:
                store.commit()
                model.commit()
            store.close()
            store = backend.open(NAMESPACE, OBJECT_ID)
            model.rollback()
        elif op == "attack":
            statement = rng.choice(KV_ATTACKS)
            log[-1] += f" {statement!r}"
            with pytest.raises(SqlError):
                store.sql.exec(statement)
        else:
            checkAll()
    checkAll()
    if model.savepoints:
        store.release(model.savepoints[0][0])
        model.savepoints.clear()
    store.commit()
    model.commit()
    store.close()
    store = backend.open(NAMESPACE, OBJECT_ID)  # a fresh store: no cache, the backend's truth
    log.append("reopened after the last commit")
    checkAll()


@pytest.mark.parametrize("seed", range(25))
def test_randomOperationsNeverReadAStaleValue(makeBackend: MakeBackend, seed: int) -> None:
    """Through seeded random writes, commits, failed commits, rollbacks, savepoints, lost
    transactions, SQL aimed at _cf_KV and reopening, every read matches a model of the data."""
    runRandomOperations(makeBackend, seed, steps=300)


def test_aValueReadTwiceIsTwoCopies(store: ObjectStore) -> None:
    """Two reads of a mutable value give two distinct objects, and mutating one changes neither
    the other nor later reads (the cache keeps its own copy)."""
    store.put("k", {"list": [1, 2], "nested": {"set": {3}}})
    first, second = store.get("k"), store.get("k")
    assert first == second and first is not second
    assert first["list"] is not second["list"] and first["nested"]["set"] is not second["nested"]["set"]
    first["list"].append(99)
    first["nested"]["set"].add(4)
    assert second == {"list": [1, 2], "nested": {"set": {3}}}
    assert store.get("k") == {"list": [1, 2], "nested": {"set": {3}}}
    assert store.getMany(["k"])["k"] == {"list": [1, 2], "nested": {"set": {3}}}


def test_subclassesComeBackAsTheirBaseTypeFromTheCache(store: ObjectStore) -> None:
    """A value of a subclass (an IntEnum, a str subclass) read back from the cache is of the base
    type, exactly as read from the backend."""

    class Name(str):
        pass

    store.put("color", Color.RED)
    store.put("name", Name("x"))
    for _ in range(2):
        assert type(store.get("color")) is int and store.get("color") == 1
        assert type(store.get("name")) is str and store.get("name") == "x"


def test_repeatedReadsAreServedFromTheCache(store: ObjectStore) -> None:
    """A key written, or read once, is then read from the cache (hits), absent keys included."""
    store.put("written", "value")
    store.commit()
    before = store.cacheStats
    assert store.get("written") == "value"
    assert store.get("never") is MISSING  # a miss, then remembered as absent
    assert store.get("never") is MISSING
    after = store.cacheStats
    assert after["hits"] - before["hits"] == 2
    assert after["misses"] - before["misses"] == 1


def test_noCacheReadsDoNotFillTheCacheNorRefreshIt(makeBackend: MakeBackend) -> None:
    """get(noCache=True) adds nothing to the cache and does not refresh a cached key's place in the
    LRU order (Cloudflare's documented meaning); put(noCache=True) drops the key from the cache."""
    store = makeBackend(valueCacheEntries=2).open(NAMESPACE, OBJECT_ID)
    store.put("a", 1)
    store.put("b", 2)
    store.commit()
    assert store.cacheStats["entries"] == 2
    assert store.get("a", noCache=True) == 1  # served from the cache, "a" stays least recent
    store.put("c", 3)  # evicts the least recently used: "a"
    misses = store.cacheStats["misses"]
    assert store.get("a", noCache=True) == 1  # not cached any more: read from the backend ...
    assert store.cacheStats["misses"] == misses + 1
    assert store.get("a", noCache=True) == 1  # ... and still not cached
    assert store.cacheStats["misses"] == misses + 2
    store.put("c", 30, noCache=True)
    assert store.cacheStats["entries"] == 1
    assert store.get("c") == 30


def test_theCacheIsBounded(makeBackend: MakeBackend) -> None:
    """The cache holds at most valueCacheEntries keys and valueCacheBytes bytes, and a value larger
    than the whole budget is not cached (reads stay correct)."""
    store = makeBackend(valueCacheEntries=10, valueCacheBytes=2000).open(NAMESPACE, OBJECT_ID)
    for i in range(50):
        store.put(f"k{i}", i)
    assert store.cacheStats["entries"] == 10
    store.put("big", "x" * 5000)
    stats = store.cacheStats
    assert stats["bytes"] <= 2000 and stats["entries"] <= 10
    assert store.get("big") == "x" * 5000
    assert [store.get(f"k{i}") for i in range(50)] == list(range(50))


def test_noCacheOnlyIsAHintAndCacheOffChangesNothing(makeBackend: MakeBackend) -> None:
    """With the cache turned off (valueCacheEntries=0), every operation still gives the same results."""
    store = makeBackend(valueCacheEntries=0).open(NAMESPACE, OBJECT_ID)
    store.put("k", {"a": 1})
    assert store.get("k") == {"a": 1} and store.get("k") is not store.get("k")
    assert store.cacheStats["entries"] == 0
    store.rollback()
    assert store.get("k") is MISSING


def test_deleteAllRolledBackBringsKeysBackThroughTheCache(store: ObjectStore) -> None:
    """After deleteAll(), reads see every key absent; when it is rolled back (whole batch or
    savepoint), reads see the old values again, not the absences cached in between."""
    store.put("k", "old")
    store.commit()
    assert store.get("k") == "old"
    sp = store.savepoint()
    store.deleteAll()
    assert store.get("k") is MISSING
    store.rollbackTo(sp)
    assert store.get("k") == "old"
    store.deleteAll()
    assert store.get("k") is MISSING and store.get("other") is MISSING
    store.rollback()
    assert store.get("k") == "old"


def test_aLostTransactionForgetsTheBatchInTheCache(store: ObjectStore) -> None:
    """When SQLite rolls the whole batch back by itself, reads see the committed values again."""
    store.sql.exec("CREATE TABLE t (x PRIMARY KEY); INSERT INTO t VALUES (1)")
    store.put("k", "committed")
    store.commit()
    store.put("k", "uncommitted")
    store.delete("gone") if store.get("gone") is not MISSING else None
    assert store.get("k") == "uncommitted"
    with pytest.raises(TransactionAbortedError):
        store.sql.exec("INSERT OR ROLLBACK INTO t VALUES (1)")
    assert store.get("k") == "committed"


def test_aFailedCommitForgetsTheBatchInTheCache(store: ObjectStore) -> None:
    """When a commit fails (here a deferred foreign key), reads see the committed values again."""
    store.sql.exec(
        "CREATE TABLE p (id INTEGER PRIMARY KEY);"
        "CREATE TABLE c (p REFERENCES p(id) DEFERRABLE INITIALLY DEFERRED)"
    )
    store.put("k", "committed")
    store.commit()
    store.put("k", "lost")
    store.sql.exec("INSERT INTO c VALUES (1)")
    with pytest.raises(CommitError):
        store.commit()
    assert store.get("k") == "committed"
    assert store.getMany(["k"]) == {"k": "committed"}


def test_sqlCannotChangeKeyValueDataBehindTheCache(backend: StorageBackend) -> None:
    """Every SQL route to _cf_KV (statements, triggers, views, renames) fails, so the cached values
    stay what a fresh store reads from the backend."""
    store = backend.open(NAMESPACE, OBJECT_ID)
    store.sql.exec(SETUP_SQL)
    for statement in TRAP_SQL:
        store.sql.exec(statement)
    store.putMany({"k0": "zero", "k1": [1]})
    store.commit()
    assert store.get("k0") == "zero" and store.get("k1") == [1]
    for statement in KV_ATTACKS:
        with pytest.raises(SqlError):
            store.sql.exec(statement)
    assert store.get("k0") == "zero" and store.get("k1") == [1]
    store.commit()
    store.close()
    fresh = backend.open(NAMESPACE, OBJECT_ID)
    assert fresh.get("k0") == "zero" and fresh.get("k1") == [1]


def test_closingDropsTheCache(backend: StorageBackend) -> None:
    """A reopened store starts with an empty cache, and reads what was committed."""
    store = backend.open(NAMESPACE, OBJECT_ID)
    store.put("k", "v")
    store.commit()
    store.put("k", "uncommitted")
    store.close()
    fresh = backend.open(NAMESPACE, OBJECT_ID)
    assert fresh.cacheStats["entries"] == 0
    assert fresh.get("k") == "v"


@pytest.mark.parametrize("make", [MemoryBackend, SqliteBackend.inMemory])
@pytest.mark.parametrize("bad", [-1, 1.5, "10", None])
def test_badCacheBoundsAreRefused(make: Callable[..., StorageBackend], bad: Any) -> None:
    """valueCacheEntries and valueCacheBytes must be ints >= 0, with a message naming them."""
    with pytest.raises(InvalidArgumentError, match="valueCacheEntries"):
        make(valueCacheEntries=bad)
    with pytest.raises(InvalidArgumentError, match="valueCacheBytes"):
        make(valueCacheBytes=bad)
