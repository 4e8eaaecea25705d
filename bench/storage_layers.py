"""The cost of one key-value read or write at each layer, and what a leaner runtime layer would save.

Run from the repository root::

    .venv/bin/python bench/storage_layers.py            # about 20 s
    .venv/bin/python bench/storage_layers.py --quick

In one process, on one hot object of a ``SqliteBackend`` in a temporary directory (the
``storage_bench.py`` app), the same work is timed at each layer, interleaved in rounds (the median
of the rounds is reported, in microseconds per operation):

reads of one of 2,000 recently written keys
    ``sqlite3``: plain ``SELECT`` + ``bytes.decode`` on an equivalent database;
    ``store.get``: the storage package (``ObjectStore.get``, with its value cache);
    ``store.get, cache off``: the same store type with ``valueCacheEntries=0`` (SQL + decode);
    ``ctx.storage.kv.get``: the synchronous KV API of ``dotwist/durable_storage.py``;
    ``ctx.storage.get``: the asynchronous API as it is (a Deferred per read), awaited in a loop
    inside one ``fetch``, as ``storage_bench.py``'s "hot read (API)";
    ``lean ctx.storage.get``: what ``ctx.storage.get`` would cost with the fast path proposed for
    ``durable_storage.py`` (no option parsing when no options are passed, no closure, the store
    called directly: ``succeed(value)``), measured with a stand-in function in this file.
    ``durable_storage.py`` has had that fast path itself since 2026-12-03 (issue 18), so the two
    rows now measure nearly the same code; the stand-in stays as the reference;
    ``stub.fetch``: one request per read through the runtime (``storage_bench.py``'s
    "hot read (fetch)").

writes, 100 per commit (one turn)
    the same in batches: ``sqlite3`` in ``BEGIN``/``COMMIT``; the store; ``await ctx.storage.put``
    100 times in one turn, then the commit; and the same with the ``put`` fast path proposed for
    ``durable_storage.py`` (a stand-in here, as for ``get``): per-operation overhead, not fsync.

durable writes of a 100-character str, one commit (fsync) each
    ``sqlite3``: autocommit ``INSERT OR REPLACE``; ``store.put + commit``: the storage package;
    ``ctx.storage.put + end of turn``: ``ctx.storage.put`` then the end-of-turn commit the
    runtime schedules (``clock.advance(0)``); ``stub.fetch``: one request per write (what
    ``storage_bench.py``'s "hot write" measures).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any, Callable

from twisted.internet.defer import Deferred, succeed

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import storage_bench as sb  # noqa: E402

from dotwist.storage import MISSING, SqliteBackend  # noqa: E402


def leanGet(session: Any, key: Any, options: Any = None, **kwargs: Any) -> Deferred[Any]:
    """The fast path proposed for ``DurableObjectStorage.get``: a single key and no options ->
    straight to the store (reads complete at once), no option parsing, no closure. Anything else
    takes today's path."""
    if options is None and not kwargs and type(key) is str:
        try:
            value = session.store.get(key)
        except Exception:
            return session.api.get(key)  # today's path reports the error as it does now
        return succeed(None if value is MISSING else value)
    return session.api.get(key, options, **kwargs)


def leanPut(session: Any, key: Any, value: Any, options: Any = None, **kwargs: Any) -> Deferred[None]:
    """The fast path proposed for ``DurableObjectStorage.put``: one key, no options -> the store,
    then ``session.wrote()`` (output waits for the batch; the end-of-turn commit is scheduled)."""
    if options is None and not kwargs and type(key) is str:
        try:
            session.store.put(key, value)
        except Exception:
            return session.api.put(key, value)
        session.wrote()
        return succeed(None)
    return session.api.put(key, value, options, **kwargs)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    rounds = 5 if args.quick else 9
    nKeys, nReads, nWrites = 2000, (2000 if args.quick else 10000), (50 if args.quick else 150)
    tmp = tempfile.mkdtemp(prefix="dotwist-storage-layers-")
    try:
        dw = sb.Dotwist(os.path.join(tmp, "rt"), plainClock=False)
        stub = dw.stub("hot")
        keys = [f"k{i:06d}" for i in range(nKeys)]
        for lo in range(0, nKeys, 100):  # fill: one batch per 100 keys, untimed
            for k in keys[lo:lo + 100]:
                dw.write(stub, f"http://o/put/{k}")
        session = dw.sessionOf(stub)
        storage = session.api
        store = session.store
        readKeys = [keys[(i * 7) % nKeys] for i in range(nReads)]
        readUrls = [f"http://o/get/{k}" for k in readKeys]
        sb.BenchObject.readKeys = readKeys

        cold = SqliteBackend(os.path.join(tmp, "cold"), valueCacheEntries=0)
        coldStore = cold.open(sb.NAMESPACE, "1" * 64)
        for k in keys:
            coldStore.put(k, sb.VALUE)
        coldStore.commit()

        conn = sb.sqliteConnect(os.path.join(tmp, "plain.sqlite"))
        conn.execute(sb.SQL_CREATE)
        data = sb.VALUE.encode()
        conn.execute("BEGIN")
        for k in keys:
            conn.execute(sb.SQL_PUT, (k, data))
        conn.execute("COMMIT")

        def sqliteReads() -> None:
            execute = conn.execute
            for k in readKeys:
                execute(sb.SQL_GET, (k,)).fetchone()[0].decode()

        def storeReads() -> None:
            get = store.get
            for k in readKeys:
                get(k)

        def coldReads() -> None:
            get = coldStore.get
            for k in readKeys:
                get(k)

        def kvReads() -> None:
            get = storage.kv.get
            for k in readKeys:
                get(k)

        async def asyncLoop(get: Callable[[str], Any]) -> None:
            for k in readKeys:
                await get(k)

        def apiReads() -> None:
            d = Deferred.fromCoroutine(asyncLoop(storage.get))
            assert d.called

        def leanReads() -> None:
            d = Deferred.fromCoroutine(asyncLoop(lambda k: leanGet(session, k)))
            assert d.called

        def fetchReads() -> None:
            read = dw.read
            for url in readUrls:
                read(stub, url)

        counter = iter(range(10**9))

        def sqliteWrites() -> None:
            r = next(counter)
            for i in range(nWrites):
                conn.execute(sb.SQL_PUT, (f"w{r}.{i}", data))

        def storeWrites() -> None:
            r = next(counter)
            for i in range(nWrites):
                store.put(f"w{r}.{i}", sb.VALUE)
                store.commit()

        def apiWrites() -> None:
            r = next(counter)
            advance = dw.clock.advance
            for i in range(nWrites):
                storage.put(f"w{r}.{i}", sb.VALUE)
                advance(0)
                assert not store.hasPendingWrites

        batch = 100
        nBatches = max(1, nWrites // 10)

        def sqliteBatches() -> None:
            r = next(counter)
            execute = conn.execute
            for b in range(nBatches):
                execute("BEGIN")
                for i in range(batch):
                    execute(sb.SQL_PUT, (f"b{r}.{b}.{i}", data))
                execute("COMMIT")

        def storeBatches() -> None:
            r = next(counter)
            for b in range(nBatches):
                for i in range(batch):
                    store.put(f"b{r}.{b}.{i}", sb.VALUE)
                store.commit()

        async def putLoop(put: Callable[[str, Any], Any], r: int, b: int) -> None:
            for i in range(batch):
                await put(f"b{r}.{b}.{i}", sb.VALUE)

        def apiBatches(put: Callable[[str, Any], Any]) -> None:
            r = next(counter)
            for b in range(nBatches):
                d = Deferred.fromCoroutine(putLoop(put, r, b))
                dw.clock.advance(0)
                assert d.called and not store.hasPendingWrites

        def fetchWrites() -> None:
            r = next(counter)
            for i in range(nWrites):
                dw.write(stub, f"http://o/put/f{r}.{i}")

        reads = [
            ("sqlite3 SELECT + decode", sqliteReads),
            ("store.get (value cache)", storeReads),
            ("store.get, cache off", coldReads),
            ("ctx.storage.kv.get", kvReads),
            ("ctx.storage.get (awaited)", apiReads),
            ("lean ctx.storage.get (proposed)", leanReads),
            ("stub.fetch -> storage.get", fetchReads),
        ]
        writes = [
            ("sqlite3 autocommit INSERT", sqliteWrites),
            ("store.put + store.commit", storeWrites),
            ("ctx.storage.put + end of turn", apiWrites),
            ("stub.fetch -> storage.put", fetchWrites),
        ]
        batches = [
            ("sqlite3 BEGIN, 100 INSERT, COMMIT", sqliteBatches),
            ("store.put x100 + commit", storeBatches),
            ("ctx.storage.put x100 + end of turn", lambda: apiBatches(storage.put)),
            ("lean ctx.storage.put (proposed)", lambda: apiBatches(lambda k, v: leanPut(session, k, v))),
        ]
        for title, sides, ops in (
            ("reads", reads, nReads),
            ("durable writes", writes, nWrites),
            ("writes, 100 per commit", batches, nBatches * batch),
        ):
            times: dict[str, list[float]] = {name: [] for name, _ in sides}
            for r in range(rounds):
                k = r % len(sides)
                for name, fn in sides[k:] + sides[:k]:
                    t = time.perf_counter()
                    fn()
                    times[name].append((time.perf_counter() - t) / ops * 1e6)
            base = statistics.median(times[sides[0][0]])
            print(f"\n{title} (us per operation, median of {rounds} interleaved rounds; "
                  f"speed relative to {sides[0][0]}):")
            for name, _ in sides:
                m = statistics.median(times[name])
                print(f"  {name:34} {m:8.2f} us   {base / m:5.2f}x")
        print(f"\nvalue cache of the hot object: {store.cacheStats}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
