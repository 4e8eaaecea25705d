"""Durable writes/s and reads/s through dotwist's ``ctx.storage``, against plain ``sqlite3``.

Run from the repository root::

    .venv/bin/python bench/storage_bench.py            # full run, about 2-3 minutes
    .venv/bin/python bench/storage_bench.py --quick    # smaller counts, 3 repeats (~30 s)

Options: ``--objects N`` (objects in the spread scenario), ``--out PATH`` (default
``bench/results/storage.json``), ``--tmp DIR`` (where the temporary data directory goes; default
``$TMPDIR``), ``--plain-clock`` (see "The clock" below), ``--max-open-databases N`` (see "Open
databases" below). It prints a markdown table (progress on stderr) and writes the JSON, every
single run included.

What it measures, in one process, on the local disk (a temporary directory, removed at the end):

dotwist
    A ``Runtime`` with ``dotwist.storage.SqliteBackend(tmpdir)`` and a ``task.Clock``, driven
    in-process (no HTTP: this measures the storage layer, the gates and the object's event path,
    not the network). One durable write is ``stub.fetch(url)`` to an object whose ``fetch`` does
    ``await self.ctx.storage.put(key, value)`` and returns a ``Response``; the bench checks that the
    response is held (output gate), calls ``clock.advance(0)`` (the end-of-turn commit, which
    fsyncs the object's WAL) and checks that the response has then fired with status 200. One read
    is ``stub.fetch(url)`` to an object that does ``await self.ctx.storage.get(key)`` and returns
    the value (reads complete synchronously with the embedded backends, so no clock step is needed).

plain sqlite3
    The same writes with the same durability: ``journal_mode=WAL``, ``synchronous=FULL``,
    ``locking_mode=EXCLUSIVE`` (as dotwist), one commit per write (autocommit ``INSERT OR
    REPLACE``), one database file per object, the same table (``_cf_KV (key TEXT PRIMARY KEY,
    value BLOB) WITHOUT ROWID``), one connection per object kept open. Reads are ``SELECT value
    ... WHERE key = ?`` decoded to ``str``. (Checked with strace: both sides make the same
    ``fdatasync`` calls, one per commit, three for the first commit into a fresh WAL.)

Scenarios (full-run counts; ``--quick`` uses smaller ones):

* ``hot write``: one object, 2,000 sequential durable writes of a 100-character ``str`` to
  distinct keys, each its own turn and commit.
* ``hot read (fetch)``: 20,000 reads of existing keys of that object, one ``stub.fetch`` each.
* ``hot read (API)``: the same 20,000 reads as ``await storage.get(key)`` in a loop inside one
  ``fetch`` per 500 keys: the storage API without the per-request machinery.
* ``hot read (kv API)``: the same with the synchronous ``storage.kv.get(key)`` (Cloudflare's
  ``ctx.storage.kv`` of SQLite-backed objects): no ``Deferred`` per read.
* ``100 writes in one turn``: 10 ``fetch``es each doing 100 ``await storage.put(...)``, which
  write coalescing commits as one batch (checked once: exactly one commit). sqlite3: 100 inserts
  in one ``BEGIN ... COMMIT``. A third side, interleaved with these two, makes the same number of
  writes through dotwist one ``fetch`` (one turn, one commit) each; the gain of coalescing (batched
  over one-by-one, both dotwist) is printed below the table.
* ``new object (creates file)``: 100 objects whose first write creates their SQLite file (WAL
  set-up, schema: several fsyncs).
* ``spread, first write``: 10,000 objects, one write each, round robin. Each object's file
  exists already (copied from an empty database dotwist made, as after a restart), so this write
  opens it (connect, pragmas, schema check) and starts its WAL. One pass; its three thirds are
  the three runs.
* ``spread write``: then a second write per object, round robin, every object open: the steady
  state with many live objects. One pass; thirds as runs.
* ``spread read``: one read per object, round robin, three passes.

The value cache: each open object keeps recently used key-value pairs in memory
(``dotwist/storage/_cache.py``), as Cloudflare's storage does, so the reads above are of keys the
object wrote or read recently and are cache hits (the hot keys are read once, untimed, before the
races: the later writes may have pushed them out). The rows marked ``[cache emptied]`` are a third
side of the same races that drops the block's keys from the object's cache before each block (500
distinct keys of the hot object; one key per object in the spread scenario), so that every one of
its reads misses and goes to SQLite: what a read of a key not used lately costs. Its reads put
the keys back, so the other sides' reads stay hits. (Run against a dotwist without the cache,
those rows are left out.)

Timing: ``time.perf_counter`` around the work only (keys, URLs, stubs and files are made before).
The disk of a shared machine changes speed several times over within a minute, so the two sides
are interleaved in blocks (50 hot writes, 500 reads, 100 objects, ...; which side goes first
rotates) and each side's time is summed over its blocks: both see the same weather. Every figure is
run 3 times (``--quick`` too, with smaller counts); each run gives a ratio dotwist/sqlite3 (above 1:
dotwist is faster) from the two sides' times in that run, and the table reports the median of those
ratios (the "each run" column lists them) beside the median rate of each side. The "blocks"
column is a second estimate that the weather between blocks cannot move: the median, over every
block of every run, of the ratio of the two sides' times in that block (they ran back to back,
within milliseconds), with the number of blocks. When the two estimates disagree, the machine
changed speed during the run. (Before 2026-12-03
22:00 UTC the ratio was that of the two medians, and ``--quick`` ran once.) Compare within a row:
rows run minutes apart, and the disk may be ten times faster or slower by then.

Open databases: a ``SqliteBackend`` keeps at most ``maxOpenDatabases`` databases open (2,048 by
default, and at most a quarter of the open-file limit); past it, it closes the least recently used
idle one, which checkpoints and deletes its WAL, and the next use opens it again and starts a new
WAL: about five more fsyncs per write in a round robin over more objects than the bound. The plain
side keeps every database open, so by default the spread scenario gives dotwist the same:
``maxOpenDatabases`` = the number of objects (the open-file limit allowing), and the bench checks
that every dotwist database is still open after the writes. ``--max-open-databases N`` sets the
bound instead, to measure that closing and reopening; the output says how many connections were
closed and opened again.

File descriptors: each open object holds two (its database and its WAL), so the spread scenario
needs 4 per object (both sides are open at once, to interleave them). The RLIMIT_NOFILE soft limit
is raised to the hard limit, and the hard limit too when the process may; when it still does not
fit, the object count is reduced to what fits and the output says so.

Not closing: closing a database checkpoints its WAL (an fsync or more per object), which for
tens of thousands of databases adds minutes and measures nothing asked for; so the bench deletes
the spread scenario's files while they are open and exits with ``os._exit`` without closing them.

The clock: ``task.Clock`` re-sorts all pending calls on each ``callLater`` and after each call it
runs, which costs O(pending calls); with the object lifecycle, every live object holds an idle
timer, so with thousands of live objects that sort would dominate the spread figures and measure
the test clock rather than dotwist (the reactor keeps its timers in a heap). The bench uses a
``task.Clock`` subclass that keeps ``calls`` sorted by binary insertion (same order, same
semantics; a full sort only after a ``DelayedCall.reset``). ``--plain-clock`` uses ``task.Clock``
itself.
"""

from __future__ import annotations

import argparse
import bisect
import datetime
import gc
import json
import os
import platform
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable

from twisted.internet.base import DelayedCall
from twisted.internet.task import Clock

from dotwist import App, DurableObject, Response, WorkerEntrypoint
from dotwist.storage import SqliteBackend
from dotwist.worker import Runtime

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

VALUE = "v" * 100  # the stored value: a 100-character str (102 bytes encoded)
BATCH = 100  # writes per turn in the coalescing scenario
NAMESPACE = "BenchObject"  # the class name, which names the namespace directory

FULL = dict(hotWrites=2000, hotReads=20000, objects=10000, newObjects=100, batches=10, repeats=3)
QUICK = dict(hotWrites=300, hotReads=10000, objects=999, newObjects=30, batches=3, repeats=3)


# -- the app ------------------------------------------------------------------------------------


class BenchObject(DurableObject):
    """``/put/<key>``, ``/get/<key>``, ``/batch/<prefix>`` (100 puts), ``/getloop/<lo>-<hi>``
    (``readKeys[lo:hi]``, all in this one turn), ``/kvloop/<lo>-<hi>`` (the same with the
    synchronous ``ctx.storage.kv.get``)."""

    readKeys: list[str] = []

    async def fetch(self, request):
        _, op, key = request.url.rsplit("/", 2)
        storage = self.ctx.storage
        if op == "put":
            await storage.put(key, VALUE)
            return Response("ok")
        if op == "get":
            value = await storage.get(key)
            return Response(value) if value is not None else Response("missing", status=404)
        if op == "batch":
            for i in range(BATCH):
                await storage.put(f"{key}.{i}", VALUE)
            return Response("ok")
        if op == "getloop":
            lo, hi = map(int, key.split("-"))
            found = 0
            for k in self.readKeys[lo:hi]:
                if await storage.get(k) is not None:
                    found += 1
            return Response(str(found))
        if op == "kvloop":
            lo, hi = map(int, key.split("-"))
            get = storage.kv.get
            found = sum(get(k) is not None for k in self.readKeys[lo:hi])
            return Response(str(found))
        return Response("?", status=400)


class Worker(WorkerEntrypoint):
    async def fetch(self, request):
        return Response("unused")


APP = App(Worker, durableObjects={"NS": BenchObject})


class BenchClock(Clock):
    """``task.Clock`` with O(log n) insertion instead of a full sort per ``callLater`` (see the
    module docstring); calls run in the same order."""

    def __init__(self) -> None:
        super().__init__()
        self._dirty = False

    def _sortCalls(self) -> None:
        if self._dirty:
            self._dirty = False
            super()._sortCalls()

    def _resetCall(self, call: DelayedCall) -> None:
        self._dirty = True

    def callLater(self, delay: float, f: Callable[..., object], *args: object, **kw: object) -> DelayedCall:
        call = DelayedCall(
            self.seconds() + delay, f, args, kw, self.calls.remove, self._resetCall, self.seconds
        )
        bisect.insort_right(self.calls, call, key=DelayedCall.getTime)
        return call


# -- helpers ------------------------------------------------------------------------------------


class BenchError(Exception):
    pass


def expectHeld(d: Any, what: str) -> None:
    if d.called:
        raise BenchError(f"{what}: the response fired before the commit (output gate not held)")


def expectOk(d: Any, what: str) -> None:
    if not d.called:
        raise BenchError(f"{what}: the response has not fired")
    response = d.result
    if getattr(response, "status", None) != 200:
        if hasattr(response, "getTraceback"):
            raise BenchError(f"{what}: failed: {response.getTraceback()}")
        raise BenchError(f"{what}: status {getattr(response, 'status', response)!r}")


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def sqliteConnect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA locking_mode = EXCLUSIVE")
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if mode != "wal":
        raise BenchError(f"{path}: WAL mode unavailable ({mode})")
    conn.execute("PRAGMA synchronous = FULL")
    return conn


SQL_CREATE = "CREATE TABLE IF NOT EXISTS _cf_KV (key TEXT PRIMARY KEY, value BLOB) WITHOUT ROWID"
SQL_PUT = "INSERT OR REPLACE INTO _cf_KV (key, value) VALUES (?, ?)"
SQL_GET = "SELECT value FROM _cf_KV WHERE key = ?"


class Dotwist:
    """A runtime over its own data directory."""

    def __init__(self, dataDir: str, plainClock: bool, maxOpenDatabases: int | None = None) -> None:
        self.dataDir = dataDir
        self.clock = Clock() if plainClock else BenchClock()
        if maxOpenDatabases is None:
            self.backend = SqliteBackend(dataDir)
        else:
            self.backend = SqliteBackend(dataDir, maxOpenDatabases=maxOpenDatabases)
        self.runtime = Runtime(APP, self.clock, storage=self.backend)
        self.ns = self.runtime.env.NS

    def stub(self, name: str) -> Any:
        return self.ns.getByName(name)

    def path(self, stub: Any) -> str:
        return self.backend.pathFor(NAMESPACE, stub.id.toString())

    def write(self, stub: Any, url: str) -> None:
        d = stub.fetch(url)
        expectHeld(d, url)
        self.clock.advance(0)
        expectOk(d, url)

    def read(self, stub: Any, url: str) -> None:
        d = stub.fetch(url)
        expectOk(d, url)

    def sessionOf(self, stub: Any) -> Any:
        """The object's storage session (the runtime's side of its storage; opened if need be)."""
        registry = self.runtime.registry
        return registry.actorFor(registry.namespaces[NAMESPACE], stub.id).storage()

    def storageOf(self, stub: Any) -> Any:
        """The object's ``ctx.storage``."""
        return self.sessionOf(stub).api

    def storeOf(self, stub: Any) -> Any:
        """The object's ``ObjectStore``."""
        return self.sessionOf(stub).store

    def close(self) -> None:
        self.runtime.close()


def raiseFileLimit(wanted: int) -> tuple[int, str]:
    """Raise RLIMIT_NOFILE's soft limit to the hard limit (and the hard limit to ``wanted`` if we
    may); return the soft limit now in force and a note."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    note = ""
    if hard != resource.RLIM_INFINITY and hard < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            note = f"raised the hard limit from {hard} to {wanted}"
            hard = wanted
        except (ValueError, OSError):
            note = f"RLIMIT_NOFILE hard limit {hard} < {wanted} and may not be raised here"
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0], note


def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        commit = subprocess.run(
            ["git", "-C", ROOT, "describe", "--always", "--dirty"],
            capture_output=True, text=True, timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
        "git": commit,
    }


def loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return ""


# -- scenarios ----------------------------------------------------------------------------------


class Results:
    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}
        self.order: list[str] = []
        self.spreadDatabases: dict[str, int] = {}

    def add(
        self, name: str, unit: str, ops: int, seconds: dict[str, float],
        blocks: dict[str, list[float]] | None = None,
    ) -> None:
        if name not in self.rows:
            self.rows[name] = {"scenario": name, "ops": ops, "unit": unit}
            self.order.append(name)
        if blocks is not None:
            # Each block's sides ran back to back, within milliseconds: the ratio of their times
            # in one block does not see the weather that changes between blocks.
            blockRatios = self.rows[name].setdefault("blockRatios", {})
            for side, times in blocks.items():
                if side != "sqlite3":
                    blockRatios.setdefault(side, []).extend(
                        s / d for s, d in zip(blocks["sqlite3"], times) if d > 0
                    )
        line = f"  {name:26}"
        for side, spent in seconds.items():
            rate = ops / spent
            self.rows[name].setdefault(side, []).append(rate)
            line += f" {side} {rate:9,.0f}"
        ratio = seconds["sqlite3"] / seconds["dotwist"]
        ratios = self.rows[name].setdefault("ratios", {})
        for side, spent in seconds.items():
            if side != "sqlite3":
                ratios.setdefault(side, []).append(seconds["sqlite3"] / spent)
        extra = "".join(
            f", {side} {seconds['sqlite3'] / spent:.2f}" for side, spent in seconds.items()
            if side not in ("dotwist", "sqlite3")
        )
        sys.stderr.write(f"{line} {unit} (dotwist/sqlite3 {ratio:.2f}{extra})\n")
        sys.stderr.flush()

    def table(self) -> list[dict[str, Any]]:
        """One row per scenario, and one more per extra side (other than the coalescing row's),
        named ``scenario [side]``, against the same sqlite3 runs."""
        out = []
        for name in self.order:
            row = dict(self.rows[name])
            ratios = row.pop("ratios")
            blockRatios = row.pop("blockRatios", {})
            d = statistics.median(row["dotwist"])
            s = statistics.median(row["sqlite3"])
            row.update(
                dotwistMedian=d, sqlite3Median=s, ratio=statistics.median(ratios["dotwist"]),
                ratios=ratios["dotwist"], ratioOfMedians=d / s,
                blockRatio=statistics.median(blockRatios.get("dotwist") or [d / s]),
                blocks=len(blockRatios.get("dotwist", [])),
            )
            if SEPARATE in row:
                row["separateMedian"] = statistics.median(row[SEPARATE])
            out.append(row)
            for side in row:
                if side in ("dotwist", "sqlite3", SEPARATE, "ratios") or not isinstance(row[side], list):
                    continue
                e = statistics.median(row[side])
                out.append({"scenario": f"{name} [{side}]", "ops": row["ops"], "unit": row["unit"],
                            side: row[side], "sqlite3": row["sqlite3"], "dotwistMedian": e,
                            "sqlite3Median": s, "ratio": statistics.median(ratios[side]),
                            "ratios": ratios[side], "ratioOfMedians": e / s,
                            "blockRatio": statistics.median(blockRatios.get(side) or [e / s]),
                            "blocks": len(blockRatios.get(side, []))})
        return out


Block = Callable[[int, int], None]


#: The extra side of the coalescing row: dotwist making the same writes one turn (commit) each.
SEPARATE = "dotwist, one commit per write"
#: The extra side of read rows: the object's value cache emptied first, so every read misses.
COLD = "cache emptied"


def race(
    results: Results, name: str, unit: str, lo: int, hi: int, block: int,
    dotwist: Block, sqlite: Block, weight: int = 1, extra: dict[str, Block] | None = None,
) -> None:
    """Run steps ``lo..hi`` on every side (dotwist, sqlite3, and any ``extra``), ``block`` steps at
    a time, rotating which side goes first, and record each side's rate (``weight`` operations per
    step): all sides see the same disk and CPU weather, which on a shared machine changes by several
    times within a minute."""
    sides = [("dotwist", dotwist), ("sqlite3", sqlite), *(extra or {}).items()]
    spent = {side: 0.0 for side, _ in sides}
    blocks: dict[str, list[float]] = {side: [] for side, _ in sides}
    clock = time.perf_counter
    for i, start in enumerate(range(lo, hi, block)):
        stop = min(start + block, hi)
        k = i % len(sides)
        for side, fn in sides[k:] + sides[:k]:
            t = clock()
            fn(start, stop)
            took = clock() - t
            spent[side] += took
            blocks[side].append(took)
    results.add(name, unit, (hi - lo) * weight, spent, blocks)


def hot(tmp: str, p: dict[str, int], results: Results, plainClock: bool) -> None:
    """One hot object: writes, reads through fetch, reads through the API alone, batches."""
    dw = Dotwist(os.path.join(tmp, "hot-dotwist"), plainClock)
    stub = dw.stub("hot")
    dw.write(stub, "http://o/put/warmup")  # creates and opens the file, untimed
    conn = sqliteConnect(os.path.join(tmp, "hot-sqlite3.sqlite"))
    conn.execute(SQL_CREATE)
    conn.execute(SQL_PUT, ("warmup", VALUE.encode()))
    data = VALUE.encode()
    n, nr = p["hotWrites"], p["hotReads"]
    try:
        for r in range(p["repeats"]):
            keys = [f"r{r}k{i:06d}" for i in range(n)]
            urls = [f"http://o/put/{k}" for k in keys]

            def dotwistWrites(lo: int, hi: int) -> None:
                write = dw.write
                for url in urls[lo:hi]:
                    write(stub, url)

            def sqliteWrites(lo: int, hi: int) -> None:
                execute = conn.execute
                for k in keys[lo:hi]:
                    execute(SQL_PUT, (k, data))

            race(results, "hot write", "writes/s", 0, n, 50, dotwistWrites, sqliteWrites)

        written = [f"r0k{i:06d}" for i in range(n)]
        readKeys = [written[i % n] for i in range(nr)]
        readUrls = [f"http://o/get/{k}" for k in readKeys]
        BenchObject.readKeys = readKeys

        def sqliteReads(lo: int, hi: int) -> None:
            execute = conn.execute
            for k in readKeys[lo:hi]:
                row = execute(SQL_GET, (k,)).fetchone()
                if row is None or row[0].decode() != VALUE:
                    raise BenchError(f"sqlite3: {k} missing")

        def dotwistReads(lo: int, hi: int) -> None:
            read = dw.read
            for url in readUrls[lo:hi]:
                read(stub, url)

        def dotwistApiReads(lo: int, hi: int) -> None:
            d = stub.fetch(f"http://o/getloop/{lo}-{hi}")
            expectOk(d, "getloop")
            if d.result.body != str(hi - lo).encode():
                raise BenchError(f"getloop found {d.result.body!r} of {hi - lo}")

        # The keys read were written first of all (the later writes may have pushed them out of
        # the object's value cache): read each once, untimed, as the plain side's page cache is
        # warm too.
        for url in readUrls[:n]:
            dw.read(stub, url)
        for r in range(p["repeats"]):
            race(results, "hot read (fetch)", "reads/s", 0, nr, 500, dotwistReads, sqliteReads)
        # With the value cache (dotwist/storage/_cache.py), the reads above are cache hits. The
        # extra side drops its block's 500 distinct keys from the object's cache first, so each
        # of its reads misses and goes to SQLite: the cost of a read of a key not used lately.
        # (Only those keys: before 2026-12-03 22:20 UTC it emptied the whole cache, and so made
        # most reads of the dotwist side that followed it misses too.)
        store = dw.storeOf(stub)
        extra: dict[str, Block] = {}
        if hasattr(store, "_cache"):

            def dotwistApiReadsCold(lo: int, hi: int) -> None:
                forget = store._cache.forget
                for k in readKeys[lo:hi]:
                    forget(k)
                dotwistApiReads(lo, hi)

            extra[COLD] = dotwistApiReadsCold
        for r in range(p["repeats"]):
            race(results, "hot read (API)", "reads/s", 0, nr, 500, dotwistApiReads, sqliteReads, extra=extra)

        def dotwistKvReads(lo: int, hi: int) -> None:
            d = stub.fetch(f"http://o/kvloop/{lo}-{hi}")
            expectOk(d, "kvloop")
            if d.result.body != str(hi - lo).encode():
                raise BenchError(f"kvloop found {d.result.body!r} of {hi - lo}")

        for r in range(p["repeats"]):
            race(results, "hot read (kv API)", "reads/s", 0, nr, 500, dotwistKvReads, sqliteReads)

        # Coalescing: check once, untimed, that a turn of 100 puts is exactly one commit.
        store = dw.storeOf(stub)
        commits = []
        original = store.commit
        store.commit = lambda: (commits.append(1), original())[1]
        dw.write(stub, "http://o/batch/check")
        del store.commit
        if commits != [1]:
            raise BenchError(f"{BATCH} puts in one turn made {len(commits)} commits")
        batches = p["batches"]
        for r in range(p["repeats"]):
            urls = [f"http://o/batch/r{r}b{b}" for b in range(batches)]
            rows = [[(f"r{r}b{b}.{i}", data) for i in range(BATCH)] for b in range(batches)]
            oneByOne = [[f"http://o/put/r{r}s{b}.{i}" for i in range(BATCH)] for b in range(batches)]

            def dotwistBatches(lo: int, hi: int) -> None:
                write = dw.write
                for url in urls[lo:hi]:
                    write(stub, url)

            def sqliteBatches(lo: int, hi: int) -> None:
                execute = conn.execute
                for batch in rows[lo:hi]:
                    execute("BEGIN")
                    for row in batch:
                        execute(SQL_PUT, row)
                    execute("COMMIT")

            def dotwistSeparate(lo: int, hi: int) -> None:
                write = dw.write
                for batch in oneByOne[lo:hi]:
                    for url in batch:
                        write(stub, url)

            race(
                results, f"{BATCH} writes in one turn", "writes/s", 0, batches, 1,
                dotwistBatches, sqliteBatches, weight=BATCH, extra={SEPARATE: dotwistSeparate},
            )
    finally:
        dw.close()
        conn.close()


def makeTemplate(tmp: str) -> str:
    """An empty object database as dotwist creates it (schema, WAL mode, no data)."""
    backend = SqliteBackend(os.path.join(tmp, "template"), deleteEmpty=False)
    store = backend.open(NAMESPACE, "0" * 64)
    path = store.path
    store.close()
    backend.close()
    return path


def spread(
    tmp: str, p: dict[str, int], results: Results, plainClock: bool, maxOpen: int | None = None
) -> tuple[Any, ...]:
    """Many objects, one write (then one read) each, round robin. Returns what it leaves open.
    ``maxOpen``: dotwist's ``maxOpenDatabases`` (None: every object's database stays open, as
    the plain side's)."""
    template = makeTemplate(tmp)
    n = p["objects"]
    dw = Dotwist(os.path.join(tmp, "spread-dotwist"), plainClock, n if maxOpen is None else maxOpen)
    stubs = [dw.stub(f"obj{i}") for i in range(n)]
    sqlDir = os.path.join(tmp, "spread-sqlite3")
    os.makedirs(os.path.join(dw.dataDir, NAMESPACE))
    os.makedirs(sqlDir)
    paths = []
    for stub in stubs:
        objectId = stub.id.toString()
        shutil.copyfile(template, dw.path(stub))
        path = os.path.join(sqlDir, objectId + ".sqlite")
        shutil.copyfile(template, path)
        paths.append(path)
    conns: list[sqlite3.Connection] = []
    data = VALUE.encode()
    block = 100
    bounds = [round(n * c / p["repeats"]) for c in range(p["repeats"] + 1)]
    thirds = list(zip(bounds, bounds[1:]))

    # First write to each object: opens its (existing) file and starts its WAL.
    def dotwistFirst(lo: int, hi: int) -> None:
        write = dw.write
        for stub in stubs[lo:hi]:
            write(stub, "http://o/put/first")

    def sqliteFirst(lo: int, hi: int) -> None:
        for path in paths[lo:hi]:
            conn = sqliteConnect(path)
            conn.execute(SQL_PUT, ("first", data))
            conns.append(conn)

    for lo, hi in thirds:
        race(results, "spread, first write", "writes/s", lo, hi, block, dotwistFirst, sqliteFirst)
    opened = dw.backend.openObjectCount
    if opened != n or len(conns) != n:
        raise BenchError(f"{opened} dotwist and {len(conns)} sqlite3 objects open, expected {n}")
    if maxOpen is None and dw.backend.openDatabaseCount != n:
        raise BenchError(
            f"{dw.backend.openDatabaseCount} of dotwist's {n} databases are open (the bound is "
            f"{dw.backend.openDatabaseBound}), expected all of them, as on the plain side"
        )

    # Then one more write per object, every object open.
    def dotwistWrite(lo: int, hi: int) -> None:
        write = dw.write
        for stub in stubs[lo:hi]:
            write(stub, "http://o/put/second")

    def sqliteWrite(lo: int, hi: int) -> None:
        for conn in conns[lo:hi]:
            conn.execute(SQL_PUT, ("second", data))

    for lo, hi in thirds:
        race(results, "spread write", "writes/s", lo, hi, block, dotwistWrite, sqliteWrite)

    def dotwistRead(lo: int, hi: int) -> None:
        read = dw.read
        for stub in stubs[lo:hi]:
            read(stub, "http://o/get/first")

    def sqliteRead(lo: int, hi: int) -> None:
        for conn in conns[lo:hi]:
            row = conn.execute(SQL_GET, ("first",)).fetchone()
            if row is None or row[0].decode() != VALUE:
                raise BenchError("sqlite3: first missing")

    extra: dict[str, Block] = {}
    if hasattr(dw.storeOf(stubs[0]), "_cache"):
        stores = [dw.storeOf(stub) for stub in stubs]

        def dotwistReadCold(lo: int, hi: int) -> None:
            for store in stores[lo:hi]:  # about 0.2 us per object, against ~50 us for the read
                store._cache.clear()
            dotwistRead(lo, hi)

        extra[COLD] = dotwistReadCold
    for r in range(p["repeats"]):
        race(results, "spread read", "reads/s", 0, n, block * 10, dotwistRead, sqliteRead, extra=extra)
    backend = dw.backend
    sys.stderr.write(
        f"  dotwist: {backend.openDatabaseCount} of {n} databases open at the end (bound "
        f"{backend.openDatabaseBound}); connections closed to stay within it: "
        f"{backend.closedIdle}, opened again: {backend.reopened}\n"
    )
    results.spreadDatabases = {
        "bound": backend.openDatabaseBound, "closedIdle": backend.closedIdle,
        "reopened": backend.reopened,
    }
    return dw, conns


def newObjects(tmp: str, p: dict[str, int], results: Results, plainClock: bool) -> None:
    """First writes to objects that have no file yet."""
    n = p["newObjects"]
    data = VALUE.encode()
    for r in range(p["repeats"]):
        dw = Dotwist(os.path.join(tmp, f"new-dotwist-{r}"), plainClock)
        os.makedirs(os.path.join(dw.dataDir, NAMESPACE))
        stubs = [dw.stub(f"new{r}.{i}") for i in range(n)]
        sqlDir = os.path.join(tmp, f"new-sqlite3-{r}")
        os.makedirs(sqlDir)
        paths = [os.path.join(sqlDir, stub.id.toString() + ".sqlite") for stub in stubs]
        conns: list[sqlite3.Connection] = []

        def dotwistNew(lo: int, hi: int) -> None:
            write = dw.write
            for stub in stubs[lo:hi]:
                write(stub, "http://o/put/first")

        def sqliteNew(lo: int, hi: int) -> None:
            for path in paths[lo:hi]:
                conn = sqliteConnect(path)
                conn.execute(SQL_CREATE)
                conn.execute(SQL_PUT, ("first", data))
                conns.append(conn)

        try:
            race(results, "new object (creates file)", "writes/s", 0, n, 10, dotwistNew, sqliteNew)
        finally:
            dw.close()
            for conn in conns:
                conn.close()


# -- main ---------------------------------------------------------------------------------------


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| scenario | ops per run | dotwist | plain sqlite3 | dotwist/sqlite3 | each run | blocks |",
        "|---|---:|---:|---:|---:|---|---:|",
    ]
    for row in rows:
        runs = " ".join(f"{r:.2f}" for r in row["ratios"])
        lines.append(
            f"| {row['scenario']} | {row['ops']:,} | {row['dotwistMedian']:,.0f} {row['unit']} "
            f"| {row['sqlite3Median']:,.0f} {row['unit']} | {row['ratio']:.2f} | {runs} "
            f"| {row['blockRatio']:.2f} ({row['blocks']}) |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts, 1 repeat")
    parser.add_argument("--objects", type=int, default=None, help="objects in the spread scenario")
    parser.add_argument(
        "--out", default=os.path.join(HERE, "results", "storage.json"), help="where to write JSON"
    )
    parser.add_argument("--plain-clock", action="store_true", help="use task.Clock itself")
    parser.add_argument(
        "--max-open-databases", type=int, default=None,
        help="dotwist's maxOpenDatabases in the spread scenario (default: every object's database "
        "stays open, as on the plain side)",
    )
    parser.add_argument("--tmp", default=None, help="parent of the temporary data directory")
    args = parser.parse_args(argv)
    p = dict(QUICK if args.quick else FULL)
    if args.objects is not None:
        p["objects"] = max(p["repeats"], args.objects)

    # The spread scenario holds 2 descriptors per object on each side; the rest is closed by then.
    margin = 300
    wanted = 4 * p["objects"] + margin
    soft, note = raiseFileLimit(wanted)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        p["objects"] = max(100, (soft - margin) // 4)
        note += (
            f"; the spread scenario runs {p['objects']} objects per side ({2 * p['objects']} "
            f"databases open at once) to fit RLIMIT_NOFILE={soft}"
        )
    if note:
        sys.stderr.write(f"note: {note}\n")

    command = " ".join(
        [".venv/bin/python bench/storage_bench.py"]
        + (["--quick"] if args.quick else [])
        + ([f"--objects {args.objects}"] if args.objects is not None else [])
        + (["--plain-clock"] if args.plain_clock else [])
        + ([f"--max-open-databases {args.max_open_databases}"] if args.max_open_databases else [])
    )
    info = machine()
    started = datetime.datetime.now(datetime.timezone.utc)
    load = [loadavg()]
    sys.stderr.write(
        f"{command}\n{info['nproc']} CPUs, {info['cpu']}; Python {info['python']}, "
        f"SQLite {info['sqlite']}; load {load[0]}\n"
    )
    tmp = tempfile.mkdtemp(prefix="dotwist-storage-bench-", dir=args.tmp)
    results = Results()
    begin = time.perf_counter()
    leftovers: Any = None
    try:
        hot(tmp, p, results, args.plain_clock)
        newObjects(tmp, p, results, args.plain_clock)
        gc.collect()
        leftovers = spread(tmp, p, results, args.plain_clock, args.max_open_databases)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    elapsed = time.perf_counter() - begin
    load.append(loadavg())

    rows = results.table()
    byName = {row["scenario"]: row for row in rows}
    coalesced = byName[f"{BATCH} writes in one turn"]["dotwistMedian"]
    separate = byName[f"{BATCH} writes in one turn"]["separateMedian"]
    table = markdown(rows)
    summary = (
        f"Write coalescing: {BATCH} writes in one turn commit once: {coalesced:,.0f} writes/s, "
        f"against {separate:,.0f} writes/s for the same writes made one turn (one commit) each, "
        f"interleaved with them ({coalesced / separate:.1f}x)."
    )
    heading = (
        f"{started:%Y-%m-%d}, {info['nproc']} CPUs ({info['cpu']}), Python {info['python']}, "
        f"SQLite {info['sqlite']}, dotwist {info['git']}; medians of {p['repeats']}; "
        f"load average {load[0]} -> {load[1]}; {elapsed:.0f} s"
    )
    print(f"\n{heading}\n\n{table}\n\n{summary}")

    out = {
        "date": started.isoformat(timespec="seconds"),
        "command": command,
        "machine": info,
        "loadavg": load,
        "seconds": round(elapsed, 1),
        "parameters": {
            **p, "valueChars": len(VALUE), "batch": BATCH, "note": note,
            "clock": "task.Clock" if args.plain_clock else "BenchClock",
            "spreadDatabases": results.spreadDatabases,
        },
        "results": rows,
        "coalescing": {
            "coalescedWritesPerSecond": coalesced,
            "separateWritesPerSecond": separate,
            "gain": coalesced / separate,
        },
        "markdown": f"{heading}\n\n{table}\n\n{summary}",
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=2)
        f.write("\n")
    sys.stderr.write(f"wrote {args.out}\n")
    # The spread scenario's databases are still open (leftovers). Closing them would checkpoint
    # every WAL into its database, an fsync or more per object: minutes of wall-clock time for
    # nothing measured. Remove the files (open files can be unlinked) and leave without closing.
    shutil.rmtree(tmp, ignore_errors=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # leftovers stay referenced until here, so nothing closes them


if __name__ == "__main__":
    main()
