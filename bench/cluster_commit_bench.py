"""Fenced commits to PostgreSQL against local SQLite commits with ``synchronous=FULL``.

Run from the repository root, with PostgreSQL on 127.0.0.1:5432 (database ``test``)::

    .venv/bin/python bench/cluster_commit_bench.py            # about a minute
    .venv/bin/python bench/cluster_commit_bench.py --quick    # smaller counts, 1 repeat

Options: ``--conninfo`` (libpq string), ``--objects N`` (1,000), ``--connections N`` (the pool,
8), ``--out PATH`` (``bench/results/cluster_commit.json``), ``--tmp DIR``.

One durable write is one key-value pair (a 100-character value under a new key) written to an
object's SQLite database (``_cf_KV``, as dotwist stores it) and committed. The two sides:

``sqlite FULL`` (the reference)
    dotwist's single-process mode: the object's own SQLite file in WAL mode,
    ``synchronous=FULL``, ``locking_mode=EXCLUSIVE``; the commit returns after the WAL's fsync.

``cluster``
    The cluster's path: the same write committed to the owner's local copy (``synchronous=OFF``:
    the copy is rebuilt from PostgreSQL after a crash, so it need not be fsynced), the pages it
    wrote read from the WAL (``WalCapture.collect``), encoded, and committed to PostgreSQL with
    ``CoordinationStore.commit`` (one fenced statement; PostgreSQL fsyncs its WAL before
    answering). The write is durable when that returns.

Scenarios:

* ``one object``: writes one after another to one object (each waits for the previous).
  Latency per write (median and 90th percentile) and writes per second.
* ``1,000 objects``: every object writes one after another, all objects at once. SQLite: one
  thread, round robin (that is how dotwist's single process commits). Cluster: one asyncio task per
  object, ``--connections`` connections to PostgreSQL, so commits of different objects overlap and
  PostgreSQL can flush several in one fsync. Writes per second over all objects, and the mean
  wait of a write: from the start of a round, when every object has one write to make, to that
  write being durable (what a caller sees when all objects write at once; for SQLite, its place
  in the round robin).

The two sides run in alternating blocks (the order rotates) so that both see the same disk and CPU
weather; each figure is the median of 3 runs (``--quick``: 1). Ratios are cluster / sqlite for
latency (above 1: slower) and for writes per second (below 1: fewer).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import psycopg

from dotwist.cluster.pages import WalCapture, buildDatabase
from dotwist.cluster.store import CoordinationStore

NS = "Bench"
VALUE = "v" * 100


def _open(path: str, synchronous: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    for pragma in (
        "PRAGMA locking_mode = EXCLUSIVE",
        "PRAGMA journal_mode = WAL",
        f"PRAGMA synchronous = {synchronous}",
        "PRAGMA wal_autocheckpoint = 0",
    ):
        conn.execute(pragma)
    conn.execute(
        "CREATE TABLE IF NOT EXISTS _cf_KV (key TEXT PRIMARY KEY, value BLOB) WITHOUT ROWID"
    )
    return conn


class LocalObject:
    """The reference: one object's SQLite file with synchronous=FULL."""

    def __init__(self, path: str) -> None:
        self.conn = _open(path, "FULL")
        self.n = 0

    def write(self) -> None:
        self.n += 1
        self.conn.execute("INSERT OR REPLACE INTO _cf_KV VALUES (?, ?)", (f"k{self.n}", VALUE))


class ClusterObject:
    """One object owned by this node: a local copy, its capture, its epoch and sequence."""

    def __init__(self, store: CoordinationStore, path: str, oid: str, epoch: int) -> None:
        base = buildDatabase(path, None, [], sync=False)
        self.conn = _open(path, "OFF")
        self.capture = WalCapture(path, base=base)
        self.store = store
        self.oid = oid
        self.epoch = epoch
        self.seq = 0
        self.n = 0
        self.walPages = 0

    async def ship(self) -> None:
        batch = self.capture.collect()
        if batch is not None:
            self.seq = await self.store.commit(
                NS, self.oid, self.epoch, batch.encode(), after=self.seq
            )
            if self.capture.framesSinceCheckpoint > 1000:
                self.capture.checkpoint(self.conn.execute)
                await self.ship()

    async def write(self) -> None:
        self.n += 1
        self.conn.execute("INSERT OR REPLACE INTO _cf_KV VALUES (?, ?)", (f"k{self.n}", VALUE))
        await self.ship()


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def oneObject(
    local: LocalObject, remote: ClusterObject, writes: int, block: int
) -> dict[str, dict[str, float]]:
    times: dict[str, list[float]] = {"sqlite": [], "cluster": []}
    order = ["sqlite", "cluster"]
    done = 0
    while done < writes:
        n = min(block, writes - done)
        for side in order:
            for _ in range(n):
                t0 = time.perf_counter()
                if side == "sqlite":
                    local.write()
                else:
                    await remote.write()
                times[side].append(time.perf_counter() - t0)
        order.reverse()
        done += n
    return {
        side: {
            "median_ms": statistics.median(t) * 1e3,
            "p90_ms": _pct(t, 0.9) * 1e3,
            "writes_per_s": len(t) / sum(t),
        }
        for side, t in times.items()
    }


async def manyObjects(
    locals_: list[LocalObject], remotes: list[ClusterObject], rounds: int
) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    elapsed = {"sqlite": 0.0, "cluster": 0.0}
    # Time from the start of a round (when every object has a write to make) to each write's
    # durability: the wait a caller sees when all objects write at once.
    waits: dict[str, list[float]] = {"sqlite": [], "cluster": []}
    order = ["sqlite", "cluster"]
    for _ in range(rounds):
        for side in order:
            t0 = time.perf_counter()
            if side == "sqlite":
                for obj in locals_:
                    obj.write()
                    waits["sqlite"].append(time.perf_counter() - t0)
            else:

                async def one(obj: ClusterObject, t0: float = t0) -> None:
                    await obj.write()
                    waits["cluster"].append(time.perf_counter() - t0)

                await asyncio.gather(*(one(obj) for obj in remotes))
            elapsed[side] += time.perf_counter() - t0
        order.reverse()
    total = rounds * len(locals_)
    for side in ("sqlite", "cluster"):
        out[side] = {
            "writes_per_s": total / elapsed[side],
            "mean_wait_ms": statistics.fmean(waits[side]) * 1e3,
        }
    return out


def _save(path: str, results: dict[str, Any]) -> None:
    with open(path, "w") as f:
        json.dump(results, f, indent=1)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--conninfo", default="host=127.0.0.1 port=5432 dbname=test user=postgres"
    )
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--out", default="bench/results/cluster_commit.json")
    parser.add_argument("--tmp", default=None)
    args = parser.parse_args()
    repeats = 1 if args.quick else 3
    hotWrites = 200 if args.quick else 600
    spreadRounds = 2 if args.quick else 3

    tmp = tempfile.mkdtemp(prefix="dotwist-cluster-bench-", dir=args.tmp)
    schema = f"bench_{os.getpid()}"
    store = CoordinationStore(
        args.conninfo, schema=schema, minConnections=args.connections,
        maxConnections=args.connections,
    )
    await store.open()
    results: dict[str, Any] = {"runs": {"one object": [], "1,000 objects": []}}
    try:
        lease = await store.join("bench", "bench", 600)
        settings = {}
        async with await psycopg.AsyncConnection.connect(args.conninfo) as conn:
            for name in ("server_version", "fsync", "synchronous_commit", "wal_sync_method"):
                cur = await conn.execute(f"SHOW {name}")
                row = await cur.fetchone()
                settings[name] = row[0] if row else None

        async def claimed(oid: str) -> int:
            own = await store.claim(lease, NS, oid)
            assert own is not None
            return own.epoch

        for r in range(repeats):
            print(f"run {r + 1}/{repeats}: one object", file=sys.stderr)
            d = os.path.join(tmp, f"hot{r}")
            os.makedirs(d)
            local = LocalObject(os.path.join(d, "local.sqlite"))
            oid = f"hot-{r}"
            remote = ClusterObject(store, os.path.join(d, "remote.sqlite"), oid, await claimed(oid))
            await remote.ship()  # the table's creation
            results["runs"]["one object"].append(await oneObject(local, remote, hotWrites, 50))
            local.conn.close()
            remote.conn.close()

            print(f"run {r + 1}/{repeats}: {args.objects} objects", file=sys.stderr)
            d = os.path.join(tmp, f"spread{r}")
            os.makedirs(d)
            locals_ = [LocalObject(os.path.join(d, f"l{i}.sqlite")) for i in range(args.objects)]
            remotes = []
            for i in range(args.objects):
                oid = f"spread-{r}-{i}"
                obj = ClusterObject(store, os.path.join(d, f"r{i}.sqlite"), oid, await claimed(oid))
                remotes.append(obj)
            await asyncio.gather(*(obj.ship() for obj in remotes))
            results["runs"]["1,000 objects"].append(
                await manyObjects(locals_, remotes, spreadRounds)
            )
            for obj in [*locals_, *remotes]:
                obj.conn.close()
    finally:
        await store.close()
        with psycopg.connect(args.conninfo, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        shutil.rmtree(tmp, ignore_errors=True)

    def med(scenario: str, side: str, key: str) -> float:
        return statistics.median(run[side][key] for run in results["runs"][scenario])

    rows = []
    for scenario, keys in (
        ("one object", ("median_ms", "p90_ms", "writes_per_s")),
        ("1,000 objects", ("mean_wait_ms", "writes_per_s")),
    ):
        for key in keys:
            s, c = med(scenario, "sqlite", key), med(scenario, "cluster", key)
            rows.append((scenario, key, s, c, c / s))
    results["summary"] = [
        {"scenario": a, "figure": b, "sqlite": s, "cluster": c, "ratio": r}
        for a, b, s, c, r in rows
    ]
    results["machine"] = {
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "postgresql": settings,
        "cpus": os.cpu_count(),
        "loadavg_at_end": os.getloadavg(),
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "objects": args.objects,
        "connections": args.connections,
        "repeats": repeats,
    }
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    _save(args.out, results)
    print(
        "| scenario | figure | sqlite FULL (reference) | cluster (PostgreSQL) | cluster / sqlite |\n"
        "|---|---|---:|---:|---:|"
    )
    for scenario, key, s, c, r in rows:
        print(f"| {scenario} | {key} | {s:,.2f} | {c:,.2f} | {r:.2f}x |")
    print(f"\nload average at the end: {os.getloadavg()}; PostgreSQL {settings}")


if __name__ == "__main__":
    asyncio.run(main())
