"""Many objects: descriptors while they are live, and memory once they are evicted (issue 19).

    .venv/bin/python bench/objects_bench.py                  # 100,000 objects
    .venv/bin/python bench/objects_bench.py --objects 20000  # quicker
    .venv/bin/python bench/objects_bench.py --tmp /dev/shm   # data on tmpfs (no disk waits)

One process, one ``Runtime`` on a fake clock (a heap of calls: ``task.Clock`` is quadratic in the
number of live objects' timers) with ``SqliteBackend`` in a temporary directory
(removed at the end), and the process tuned as ``twistd dotwist`` tunes it (``gc.freeze()`` after
loading, first-generation threshold 10,000: ``dotwist._tuning``). Every object is a ``Counter``
whose RPC method ``add(n)`` reads its key and writes it back, durably. The objects are created in
waves of ``--wave`` calls per reactor turn (each wave commits at the end of its turn, one fsync per
object), and all stay live (``evictAfter`` is a day), so that at the end ``--objects`` objects are
in memory at once. Then the clock moves a day on and every object is evicted.

Printed (and written as JSON to ``--out``, default ``bench/results/objects.json``):

- RSS (``/proc/self/status`` ``VmRSS``) before, with every object live, right after eviction
  (nothing else done), after ``gc.collect()``; then with as many new objects live (the memory the
  first ones freed is used again, or RSS doubles) and after their eviction; and last after
  ``malloc_trim(0)`` (glibc's: give free heap pages back to the kernel), with the differences per
  object ever created;
- open file descriptors (``/proc/self/fd``) before, the most seen while objects were live, and
  after; the open-file limit; the backend's bound on open databases and how many connections it
  closed and opened again;
- what the cyclic garbage collector found to collect after eviction (objects that were only
  freed by it, not by reference counting).

The machine is shared: times are noisy; memory and descriptor counts are not.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from typing import Any

import heapq
import itertools

from twisted.internet.base import DelayedCall

from dotwist import DurableObject
from dotwist.storage import SqliteBackend
from dotwist.testing import makeRuntime, result


class Counter(DurableObject):
    async def add(self, n: int) -> int:
        total = (await self.ctx.storage.get("total") or 0) + n
        await self.ctx.storage.put("total", total)
        return total


class HeapClock:
    """``task.Clock`` sorts every pending call on each ``callLater``: with one idle timer per live
    object that is quadratic. The same interface on a heap (cancelled or moved calls are skipped
    when they come up)."""

    def __init__(self) -> None:
        self.now = 0.0
        self._heap: list[tuple[float, int, DelayedCall]] = []
        self._seq = itertools.count()

    def seconds(self) -> float:
        return self.now

    def callLater(self, delay: float, f: Any, *args: Any, **kw: Any) -> DelayedCall:
        call = DelayedCall(self.now + delay, f, args, kw, lambda c: None, self._push, self.seconds)
        self._push(call)
        return call

    def _push(self, call: DelayedCall) -> None:
        heapq.heappush(self._heap, (call.getTime(), next(self._seq), call))

    def getDelayedCalls(self) -> list[DelayedCall]:
        return [c for _, _, c in self._heap if c.active()]

    def advance(self, amount: float) -> None:
        self.now += amount
        heap = self._heap
        while heap and heap[0][0] <= self.now:
            when, _, call = heapq.heappop(heap)
            if not call.active() or call.getTime() != when:
                continue  # cancelled, or moved (pushed again at its new time)
            call.called = 1
            call.func(*call.args, **call.kw)


def rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def mallocTrim() -> bool:
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    libc.malloc_trim(0)
    return True


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=100_000)
    parser.add_argument("--wave", type=int, default=500)
    parser.add_argument("--tmp", default=None, help="where the data directory goes (default $TMPDIR)")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "objects.json"))
    args = parser.parse_args(argv)

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # as twistd dotwist does
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    directory = tempfile.mkdtemp(prefix="dotwist-objects-", dir=args.tmp)
    clock = HeapClock()
    backend = SqliteBackend(directory)
    runtime = makeRuntime({"NS": Counter}, clock=clock, storage=backend, limits={"evictAfter": 86400.0})
    namespace = runtime.env.NS
    stubs = [namespace.getByName(f"object-{i}") for i in range(args.objects)]
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
    out: dict[str, Any] = {"objects": args.objects, "wave": args.wave, "openFileLimit": limit}
    out["rssBefore"] = rss()
    out["fdBefore"] = descriptors()
    peakFd = 0
    started = time.perf_counter()
    try:
        for start in range(0, args.objects, args.wave):
            end = min(start + args.wave, args.objects)
            calls = [stubs[i].add(i) for i in range(start, end)]
            clock.advance(0)
            for i, call in zip(range(start, end), calls):
                assert result(call) == i
            peakFd = max(peakFd, descriptors())
            if start and start % (args.wave * 40) == 0:
                print(f"  {start} objects live, RSS {rss() / 2**20:.0f} MiB, {descriptors()} fds", file=sys.stderr)
        out["createSeconds"] = time.perf_counter() - started
        out["live"] = runtime.registry.liveObjects()
        out["rssLive"] = rss()
        out["fdPeak"] = peakFd
        # (getattr: the bench also runs against a dotwist without the bound, for comparison)
        out["openDatabaseBound"] = getattr(backend, "openDatabaseBound", None)
        out["closedIdle"] = getattr(backend, "closedIdle", 0)
        out["reopened"] = getattr(backend, "reopened", 0)
        collectedBefore = sum(s["collected"] for s in gc.get_stats())
        clock.advance(86400.0 + 1)  # every object has been idle for a day: evicted
        out["liveAfterEviction"] = runtime.registry.liveObjects()
        out["rssEvicted"] = rss()
        out["fdEvicted"] = descriptors()
        out["collectedByGcDuringEviction"] = sum(s["collected"] for s in gc.get_stats()) - collectedBefore
        out["collectedByFullGc"] = gc.collect()
        out["rssAfterGc"] = rss()
        # The same number of new objects again, without trimming: the memory the first ones
        # gave back is used again (RSS grows little), or it is not (RSS doubles).
        second = [namespace.getByName(f"second-{i}") for i in range(args.objects)]
        for start in range(0, args.objects, args.wave):
            end = min(start + args.wave, args.objects)
            calls = [second[i].add(i) for i in range(start, end)]
            clock.advance(0)
            for i, call in zip(range(start, end), calls):
                assert result(call) == i
        out["rssSecondLive"] = rss()
        clock.advance(86400.0 + 1)
        out["rssSecondEvicted"] = rss()
        del stubs, second, calls
        trimStarted = time.perf_counter()
        out["mallocTrim"] = mallocTrim()
        out["mallocTrimSeconds"] = time.perf_counter() - trimStarted
        out["rssAfterTrim"] = rss()
    finally:
        result(runtime.close())
        shutil.rmtree(directory, ignore_errors=True)
    n = args.objects
    mib = 2**20
    print(f"| {n:,} objects (waves of {args.wave}) | RSS | per object |")
    print("|---|---|---|")
    base = out["rssBefore"]
    for label, key, count in (
        ("before", "rssBefore", n),
        ("all live", "rssLive", n),
        ("after eviction", "rssEvicted", n),
        ("after gc.collect()", "rssAfterGc", n),
        (f"{n:,} more objects all live", "rssSecondLive", 2 * n),
        ("after their eviction", "rssSecondEvicted", 2 * n),
        ("after malloc_trim(0)", "rssAfterTrim", 2 * n),
    ):
        print(f"| {label} | {out[key] / mib:.0f} MiB | {(out[key] - base) / count:,.0f} B |")
    print()
    print(
        f"descriptors: {out['fdBefore']} before, at most {out['fdPeak']} with {out['live']:,} objects "
        f"live, {out['fdEvicted']} after eviction (open-file limit {limit}; at most "
        f"{out['openDatabaseBound']} databases open; {out['closedIdle']:,} idle connections closed, "
        f"{out['reopened']:,} opened again)"
    )
    print(
        f"objects left after eviction: {out['liveAfterEviction']}; freed by the cyclic collector: "
        f"{out['collectedByGcDuringEviction']:,} during eviction, {out['collectedByFullGc']:,} by "
        f"gc.collect() after; created in {out['createSeconds']:.1f} s; malloc_trim(0) took "
        f"{out['mallocTrimSeconds'] * 1000:.0f} ms"
    )
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=2)
    return out


if __name__ == "__main__":
    main()
