"""CPU per read in ``storage_bench.py``'s "spread read", in-process: one ``stub.fetch`` read per
object, round robin over many objects, each an ``await self.ctx.storage.get(key)`` of a key the
object wrote (so a hit in its value cache), against plain ``sqlite3`` (one ``SELECT`` on each
object's own open connection).

    .venv/bin/python bench/spread_read_bench.py [--objects N] [--reads N] [--against DIR] [--instructions]

Each kind runs in a fresh subprocess (``inprocess.py``): it makes ``--objects`` objects (default
1,000) in a temporary directory, writes one value to each (the same template database and the same
durability as ``storage_bench.py``), reads each once to warm up, then times ``--reads`` reads
(default 20,000), round robin. Timed: CPU per read, median of 7 runs interleaved across kinds.
``--instructions``: callgrind's instructions per read instead (the run of ``2n`` reads less the run
of ``n``, with ``n`` a twentieth of ``--reads``; the objects and their writes are the same in both
runs, so they cancel out), which the machine's other load does not change. ``--against DIR`` adds
the dotwist row for another checkout (say the tree before a change), measured in the same run.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import inprocess  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))

CHILD = r'''
import os, shutil, sqlite3, sys, tempfile, time
sys.path.insert(0, %(here)r)

kind, N = sys.argv[1], int(sys.argv[2])
OBJECTS = %(objects)d
tmp = tempfile.mkdtemp(prefix="spread-read-")
try:
    import storage_bench as sb
    template = sb.makeTemplate(tmp)
    if kind == "sqlite3":
        conns = []
        data = sb.VALUE.encode()
        for i in range(OBJECTS):
            path = os.path.join(tmp, "o%%d.sqlite" %% i)
            shutil.copyfile(template, path)
            conn = sb.sqliteConnect(path)
            conn.execute(sb.SQL_PUT, ("first", data))
            conns.append(conn)

        def read(i):
            row = conns[i].execute(sb.SQL_GET, ("first",)).fetchone()
            if row is None:
                raise sb.BenchError("missing")
    else:
        dw = sb.Dotwist(os.path.join(tmp, "dotwist"), False, OBJECTS)
        os.makedirs(os.path.join(dw.dataDir, sb.NAMESPACE))
        stubs = [dw.stub("obj%%d" %% i) for i in range(OBJECTS)]
        for stub in stubs:
            shutil.copyfile(template, dw.path(stub))
            dw.write(stub, "http://o/put/first")
        fetch = [stub.fetch for stub in stubs]

        def read(i):
            d = fetch[i]("http://o/get/first")
            if d.result.status != 200:
                raise sb.BenchError("not 200")

    for i in range(OBJECTS):
        read(i)
    start = time.process_time()
    for j in range(N):
        read(j %% OBJECTS)
    print((time.process_time() - start) / N * 1e6)
finally:
    shutil.rmtree(tmp, ignore_errors=True)
'''


def main() -> None:
    args = sys.argv[1:]
    reads = int(args[args.index("--reads") + 1]) if "--reads" in args else 20_000
    objects = int(args[args.index("--objects") + 1]) if "--objects" in args else 1_000
    names = {
        "sqlite3": "plain sqlite3, a SELECT on the object's connection (reference)",
        "dotwist": "dotwist, stub.fetch to an object that awaits ctx.storage.get (a cache hit)",
    }
    kinds = inprocess.withAgainst(["sqlite3", "dotwist"], names, ["dotwist"])
    child = CHILD % {"here": HERE, "objects": objects}
    rows = inprocess.medians(child, kinds, reads)
    inprocess.report(
        rows, names, "read", "reads/s", 2, "spread_read.json", {"reads": reads, "objects": objects}
    )


if __name__ == "__main__":
    main()
