"""Where the time of each ``bench/storage_bench.py`` figure goes, layer by layer (cProfile).

Run from the repository root::

    .venv/bin/python bench/storage_profile.py              # every figure
    .venv/bin/python bench/storage_profile.py --quick      # smaller counts
    .venv/bin/python bench/storage_profile.py --top 15     # also the 15 costliest functions each

For each figure it times the same operations as ``storage_bench.py`` (dotwist in-process, a
``SqliteBackend`` in a temporary directory), without the profiler, beside plain ``sqlite3`` doing the
same work, then runs them again under ``cProfile`` and adds up each function's own time by the
layer its code lives in:

==================  ============================================================================
layer               code
==================  ============================================================================
codec               ``dotwist/storage/codec.py`` (encode, decode)
validation          ``dotwist/storage/_validation.py`` (key and value checks)
sql engine          ``dotwist/storage/_sql.py`` (statement handling, the authorizer)
store               ``dotwist/storage/sqlite.py``, ``memory.py``, ``_base.py``, ``_cache.py``
sqlite3 (C)         the ``sqlite3`` module's methods: SQLite itself, fsync included
durable_storage     ``dotwist/durable_storage.py`` (``ctx.storage``: gates, commit scheduling)
objects             ``dotwist/objects.py`` (actors, the input and output gates, events)
runtime             the rest of ``dotwist/`` (worker.py, fetch.py, ...)
twisted             Twisted (Deferreds, the clock)
other               everything else (Python's own machinery, this bench's driver)
==================  ============================================================================

cProfile's own overhead inflates Python-heavy layers against C calls, so the shares are a guide to
where to look, not exact costs; the unprofiled times per operation are the real figures.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import shutil
import sys
import tempfile
import time
from typing import Any, Callable

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import storage_bench as sb  # noqa: E402  (the bench's app, runtime wrapper and helpers)

LAYERS = [
    ("codec", ("dotwist/storage/codec.py",)),
    ("validation", ("dotwist/storage/_validation.py",)),
    ("sql engine", ("dotwist/storage/_sql.py",)),
    ("store", ("dotwist/storage/sqlite.py", "dotwist/storage/memory.py", "dotwist/storage/_base.py",
               "dotwist/storage/_cache.py")),
    ("durable_storage", ("dotwist/durable_storage.py",)),
    ("objects", ("dotwist/objects.py",)),
    ("runtime", ("dotwist/",)),
    ("twisted", ("twisted/",)),
]


def layerOf(func: tuple[str, int, str]) -> str:
    filename, _, name = func
    if filename == "~":
        if "sqlite3" in name:
            return "sqlite3 (C)"
        return "other"
    path = filename.replace(os.sep, "/")
    for layer, parts in LAYERS:
        if any(part in path for part in parts):
            return layer
    return "other"


def profile(fn: Callable[[], Any], top: int) -> tuple[dict[str, float], float, list[str]]:
    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    stats = pstats.Stats(prof)
    byLayer: dict[str, float] = {}
    total = 0.0
    rows = []
    for func, (cc, nc, tt, ct, callers) in stats.stats.items():  # type: ignore[attr-defined]
        layer = layerOf(func)
        byLayer[layer] = byLayer.get(layer, 0.0) + tt
        total += tt
        rows.append((tt, nc, func, layer))
    rows.sort(reverse=True)
    lines = [
        f"      {tt * 1e3:8.1f} ms {nc:9,} calls  {layer:15} {os.path.basename(f[0])}:{f[1]} {f[2]}"
        for tt, nc, f, layer in rows[:top]
    ]
    return byLayer, total, lines


class Scenario:
    def __init__(self, name: str, ops: int, dotwist: Callable[[], None], sqlite: Callable[[], None]):
        self.name, self.ops, self.dotwist, self.sqlite = name, ops, dotwist, sqlite


def scenarios(tmp: str, p: dict[str, int]) -> list[Scenario]:
    out = []
    # -- one hot object ------------------------------------------------------------------------
    dw = sb.Dotwist(os.path.join(tmp, "hot-dotwist"), plainClock=False)
    stub = dw.stub("hot")
    dw.write(stub, "http://o/put/warmup")
    conn = sb.sqliteConnect(os.path.join(tmp, "hot-sqlite3.sqlite"))
    conn.execute(sb.SQL_CREATE)
    data = sb.VALUE.encode()
    n, nr = p["hotWrites"], p["hotReads"]
    rounds, sqlRounds = iter(range(1000)), iter(range(1000))

    def hotWrites() -> None:
        r = next(rounds)
        for i in range(n):
            dw.write(stub, f"http://o/put/w{r}k{i}")

    def sqliteWrites() -> None:
        r = next(sqlRounds)
        for i in range(n):
            conn.execute(sb.SQL_PUT, (f"w{r}k{i}", data))

    out.append(Scenario("hot write", n, hotWrites, sqliteWrites))
    # The keys read: written untimed on both sides (100 per turn on dotwist's), so that the read
    # figures do not depend on the write figure having run.
    keys = [f"r{b}.{i}" for b in range(max(1, n // 100)) for i in range(sb.BATCH)]
    for b in range(max(1, n // 100)):
        dw.write(stub, f"http://o/batch/r{b}")
    conn.execute("BEGIN")
    for k in keys:
        conn.execute(sb.SQL_PUT, (k, data))
    conn.execute("COMMIT")
    readKeys = [keys[i % len(keys)] for i in range(nr)]
    readUrls = [f"http://o/get/{k}" for k in readKeys]
    sb.BenchObject.readKeys = readKeys

    def sqliteReads() -> None:
        execute = conn.execute
        for k in readKeys:
            execute(sb.SQL_GET, (k,)).fetchone()[0].decode()

    def fetchReads() -> None:
        for url in readUrls:
            dw.read(stub, url)

    def apiReads() -> None:
        for lo in range(0, nr, 500):
            sb.expectOk(stub.fetch(f"http://o/getloop/{lo}-{min(lo + 500, nr)}"), "getloop")

    out.append(Scenario("hot read (fetch)", nr, fetchReads, sqliteReads))
    out.append(Scenario("hot read (API)", nr, apiReads, sqliteReads))

    # -- many objects --------------------------------------------------------------------------
    m = p["objects"]
    template = sb.makeTemplate(tmp)
    sdw = sb.Dotwist(os.path.join(tmp, "spread-dotwist"), plainClock=False)
    stubs = [sdw.stub(f"obj{i}") for i in range(m)]
    os.makedirs(os.path.join(sdw.dataDir, sb.NAMESPACE))
    sqlDir = os.path.join(tmp, "spread-sqlite3")
    os.makedirs(sqlDir)
    conns = []
    for s in stubs:
        shutil.copyfile(template, sdw.path(s))
        path = os.path.join(sqlDir, s.id.toString() + ".sqlite")
        shutil.copyfile(template, path)
        c = sb.sqliteConnect(path)
        conns.append(c)
    for s in stubs:  # open every object (first write), untimed
        sdw.write(s, "http://o/put/first")
    for c in conns:
        c.execute(sb.SQL_PUT, ("first", data))
    spreadRounds, sqlSpreadRounds = iter(range(1000)), iter(range(1000))

    def spreadWrites() -> None:
        r = next(spreadRounds)
        for s in stubs:
            sdw.write(s, f"http://o/put/s{r}")

    def sqliteSpreadWrites() -> None:
        r = next(sqlSpreadRounds)
        for c in conns:
            c.execute(sb.SQL_PUT, (f"s{r}", data))

    def spreadReads() -> None:
        for s in stubs:
            sdw.read(s, "http://o/get/first")

    def sqliteSpreadReads() -> None:
        for c in conns:
            c.execute(sb.SQL_GET, ("first",)).fetchone()[0].decode()

    out.append(Scenario("spread write", m, spreadWrites, sqliteSpreadWrites))
    out.append(Scenario("spread read", m, spreadReads, sqliteSpreadReads))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--top", type=int, default=0, help="also list the N costliest functions")
    parser.add_argument("--only", help="comma-separated scenario names (e.g. 'hot read (API)')")
    args = parser.parse_args(argv)
    p = dict(hotWrites=300, hotReads=5000, objects=500) if args.quick else dict(
        hotWrites=1000, hotReads=20000, objects=2000
    )
    sb.raiseFileLimit(4 * p["objects"] + 300)
    tmp = tempfile.mkdtemp(prefix="dotwist-storage-profile-")
    try:
        chosen = scenarios(tmp, p)
        if args.only:
            names = {n.strip() for n in args.only.split(",")}
            chosen = [s for s in chosen if s.name in names]
        order = ["codec", "validation", "sql engine", "store", "sqlite3 (C)", "durable_storage",
                 "objects", "runtime", "twisted", "other"]
        print(f"storage_profile: git {sb.machine()['git']}, {p}")
        for sc in chosen:
            tD = sb.timed(sc.dotwist)
            tS = sb.timed(sc.sqlite)
            byLayer, total, lines = profile(sc.dotwist, args.top)
            print(f"\n{sc.name}: dotwist {tD / sc.ops * 1e6:.1f} us/op, sqlite3 {tS / sc.ops * 1e6:.1f} us/op "
                  f"(dotwist/sqlite3 speed {tS / tD:.2f}); profiled {total / sc.ops * 1e6:.1f} us/op:")
            for layer in order:
                t = byLayer.get(layer, 0.0)
                if t:
                    print(f"   {layer:16} {t / sc.ops * 1e6:7.2f} us/op  {100 * t / total:5.1f} %")
            for line in lines:
                print(line)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    sys.stdout.flush()
    os._exit(0)  # the spread objects' databases stay open: closing them would checkpoint each WAL


if __name__ == "__main__":
    main()
