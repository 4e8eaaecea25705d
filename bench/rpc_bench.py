"""RPC calls/s to Durable Objects, against stub.fetch, measured in one run.

    .venv/bin/python bench/rpc_bench.py [--quick]

In-process: a Runtime on a task.Clock with memory storage, no network, so this measures the
object layer (stub, gate, queue, codec copy of arguments and result) and nothing else. Each figure
is the median of 3 runs (1 with --quick). "one object" sends every call to one object; "1,000
objects" spreads them round robin. Writes bench/results/rpc.json.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

from twisted.internet.task import Clock

from dotwist import App, DurableObject, Request, Response, WorkerEntrypoint
from dotwist.storage import MemoryBackend
from dotwist.worker import Runtime


class Worker(WorkerEntrypoint):
    async def fetch(self, request):
        return Response("unused")


class Counter(DurableObject):
    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        self.value = 0

    async def increment(self, amount):
        self.value += amount
        return self.value

    async def fetch(self, request):
        self.value += 1
        return Response(str(self.value))


def fired(d):
    box = []
    d.addBoth(box.append)
    if not box or hasattr(box[0], "raiseException"):
        raise RuntimeError(f"call did not complete synchronously: {box}")
    return box[0]


def run(kind: str, objects: int, calls: int) -> float:
    runtime = Runtime(App(Worker, durableObjects={"NS": Counter}), Clock(), storage=MemoryBackend())
    ns = runtime.env.NS
    stubs = [ns.getByName(f"o{i}") for i in range(objects)]
    request = Request("http://bench/")
    for stub in stubs:  # construct every object before timing
        fired(stub.increment(0))
    start = time.perf_counter()
    if kind == "rpc":
        for i in range(calls):
            fired(stubs[i % objects].increment(1))
    else:
        for i in range(calls):
            fired(stubs[i % objects].fetch(request))
    return calls / (time.perf_counter() - start)


def main() -> None:
    quick = "--quick" in sys.argv
    repeats, calls = (1, 20_000) if quick else (3, 100_000)
    rows = []
    for objects in (1, 1000):
        figures = {}
        for kind in ("rpc", "fetch"):
            figures[kind] = statistics.median(run(kind, objects, calls) for _ in range(repeats))
        rows.append({"objects": objects, "rpcPerSecond": figures["rpc"], "fetchPerSecond": figures["fetch"],
                     "ratio": figures["rpc"] / figures["fetch"]})
    print("| target | RPC calls/s | stub.fetch calls/s | RPC / fetch |")
    print("|---|---|---|---|")
    for row in rows:
        label = "one object" if row["objects"] == 1 else f"{row['objects']:,} objects"
        print(f"| {label} | {row['rpcPerSecond']:,.0f} | {row['fetchPerSecond']:,.0f} | {row['ratio']:.2f} |")
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    (out / "rpc.json").write_text(json.dumps({
        "date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": platform.platform(), "cpus": os.cpu_count(),
        "python": sys.version.split()[0], "calls": calls, "repeats": repeats, "rows": rows,
    }, indent=2))


if __name__ == "__main__":
    main()
