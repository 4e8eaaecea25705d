"""RPC calls/s to Durable Objects, against stub.fetch, interleaved in one process.

    .venv/bin/python bench/rpc_bench.py [--quick] [--rounds N] [--calls N] [--runner twisted|asyncio|both]
    .venv/bin/python bench/rpc_bench.py --instructions [--calls N] [--runner ...] [--against DIR]

In-process: a Runtime on a task.Clock with memory storage, no network, so this measures the
object layer (stub, gate, queue, copies of arguments and result, the runner) and nothing else.
Three sides, called from outside any object (as a Worker calls):

- ``rpc``: ``await stub.increment(1)``, an int in and out;
- ``rpc-data``: ``await stub.update({"n": 1, "tags": [...], "meta": {...}})``, a dict holding a
  list and a dict in, a dict holding a list out (both copied, as RPC passes by value; one
  prepared argument, copied at every call);
- ``fetch``: ``await stub.fetch(request)`` with one prepared ``Request``, the object answering
  ``Response(str(n))``.

And the reference, in the timed run only: ``twisted-http``, a plain twisted.web resource doing the
same work (``GET /o<i>``: add 1 to counter i, answer its value), each request parsed, routed,
rendered and written by twisted.web over one keep-alive connection on an in-memory transport
(``twisted.internet.testing.StringTransport``), with no access log. It is what the same counter
costs as a plain Twisted HTTP handler; the RPC and ``stub.fetch`` sides do not parse HTTP.

The sides are interleaved: every round runs each side once, for each target ("one object": every
call to one object; "1,000 objects": round robin), in an order that rotates from round to round.
The ratios are taken within a round (so a machine shared with other work moves both sides
together) and the median over the rounds is reported, with calls/s (median) and CPU time per
call (``time.process_time``, median). With ``--runner both`` (the default) this is done under
Twisted's coroutine driver (what tests and non-asyncio reactors use) and under the asyncio runner
(what the server uses under the asyncio reactor), on a loop driven by the same clock.

Writes bench/results/rpc.json.

``--instructions`` counts instructions per call instead, with valgrind's callgrind
(``inprocess.py``): each side and target runs in a fresh subprocess once with ``--calls`` calls
(default 1,000) and once with twice as many, after the same set-up and warm-up, and the figure is
the difference divided by the number of calls; one object by default (``--objects 1000``, repeatable,
for the round robin). The counts do not depend on what else the machine
runs; compare them between trees, not with timings. ``--against DIR`` (repeatable) adds the same
rows for another checkout (say the tree before a change), with its dotwist imported instead. Writes
bench/results/rpc_instructions.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.web.resource import Resource
from twisted.web.server import Site

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import inprocess  # noqa: E402

from dotwist import App, DurableObject, Request, Response, WorkerEntrypoint  # noqa: E402
from dotwist.testing import makeRuntime  # noqa: E402

SIDES = ("rpc", "rpc-data", "fetch")
#: The timed run also measures plain twisted.web doing the same work (the reference).
TIMED_SIDES = SIDES + ("twisted-http",)
TARGETS = (1, 1000)


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

    async def update(self, entry):
        self.value += entry["n"]
        return {"value": self.value, "tags": entry["tags"], "seen": len(entry["meta"])}

    async def fetch(self, request):
        self.value += 1
        return Response(str(self.value))


def fired(d: Any) -> Any:
    box: list[Any] = []
    d.addBoth(box.append)
    if not box or hasattr(box[0], "raiseException"):
        raise RuntimeError(f"call did not complete synchronously: {box}")
    return box[0]


def setup(runner: str, objects: int) -> list[Any]:
    clock = Clock()
    runtime = makeRuntime(App(Worker, durableObjects={"NS": Counter}), clock=clock, asyncio=runner == "asyncio")
    ns = runtime.env.NS
    stubs = [ns.getByName(f"o{i}") for i in range(objects)]
    for stub in stubs:  # construct every object before timing
        fired(stub.increment(0))
    return stubs


def loop(side: str, stubs: list[Any], calls: int) -> Callable[[], None]:
    objects = len(stubs)
    if side == "rpc":
        def run() -> None:
            for i in range(calls):
                fired(stubs[i % objects].increment(1))
    elif side == "rpc-data":
        entry = {"n": 1, "tags": ["a", "b", "c"], "meta": {"by": "bench", "round": 1}}

        def run() -> None:  # one prepared argument, as fetch has one prepared request
            for i in range(calls):
                fired(stubs[i % objects].update(entry))
    else:
        request = Request("http://bench/")

        def run() -> None:
            for i in range(calls):
                fired(stubs[i % objects].fetch(request))
    return run


class _Counters(Resource):
    """The plain Twisted reference: a twisted.web resource doing the same work as ``increment``
    (``GET /o<i>``: add 1 to counter i, answer its value), for one counter or 1,000."""

    isLeaf = True

    def __init__(self, objects: int) -> None:
        super().__init__()
        self.values = {f"o{i}".encode(): 0 for i in range(objects)}

    def render_GET(self, request: Any) -> bytes:
        name = request.path[1:]
        value = self.values[name] + 1
        self.values[name] = value
        return str(value).encode()


def plainTwisted(objects: int, calls: int) -> Callable[[], None]:
    """``calls`` requests, round robin over the counters, each parsed, routed, rendered and
    written by twisted.web over one keep-alive connection on an in-memory transport."""
    site = Site(_Counters(objects))
    site.log = lambda request: None  # type: ignore[method-assign]  # no access log, as the others
    channel = site.buildProtocol(None)
    transport = StringTransport()
    channel.makeConnection(transport)
    requests = [f"GET /o{i} HTTP/1.1\r\nHost: bench\r\n\r\n".encode() for i in range(objects)]
    for data in requests:  # warm up, as the objects are constructed before timing
        channel.dataReceived(data)
    if b" 200 OK" not in transport.value():
        raise RuntimeError(f"the reference did not answer: {transport.value()[:200]!r}")
    transport.clear()

    def run() -> None:
        for i in range(calls):
            channel.dataReceived(requests[i % objects])
            transport.clear()

    return run


def measure(runner: str, side: str, objects: int, calls: int) -> tuple[float, float]:
    """(calls/s, CPU µs per call) of one run."""
    run = plainTwisted(objects, calls) if side == "twisted-http" else loop(side, setup(runner, objects), calls)
    gc.collect()
    cpu, wall = time.process_time(), time.perf_counter()
    run()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return calls / wall, cpu / calls * 1e6


def bench(runner: str, rounds: int, calls: int) -> list[dict[str, Any]]:
    sides = TIMED_SIDES
    samples: dict[tuple[int, str], list[tuple[float, float]]] = {(o, s): [] for o in TARGETS for s in sides}
    for r in range(rounds):
        order = sides[r % len(sides):] + sides[:r % len(sides)]
        for objects in TARGETS:
            for side in order:
                samples[(objects, side)].append(measure(runner, side, objects, calls))
    rows = []
    for objects in TARGETS:
        row: dict[str, Any] = {"runner": runner, "objects": objects}
        for side in sides:
            runs = samples[(objects, side)]
            row[side] = {
                "callsPerSecond": statistics.median(rate for rate, _ in runs),
                "cpuMicrosecondsPerCall": statistics.median(cpu for _, cpu in runs),
                "rounds": [round(rate) for rate, _ in runs],
            }
        fetch = samples[(objects, "fetch")]
        for side in ("rpc", "rpc-data"):
            ratios = [a[0] / b[0] for a, b in zip(samples[(objects, side)], fetch)]
            row[f"{side}/fetch"] = statistics.median(ratios)
            row[f"{side}/fetch range"] = [min(ratios), max(ratios)]
            cpus = [b[1] / a[1] for a, b in zip(samples[(objects, side)], fetch)]
            row[f"{side}/fetch by CPU"] = statistics.median(cpus)
        plain = samples[(objects, "twisted-http")]
        for side in SIDES:
            row[f"{side}/twisted-http"] = statistics.median(a[0] / b[0] for a, b in zip(samples[(objects, side)], plain))
        rows.append(row)
    return rows


# One side, runner and target in a subprocess (for ``--instructions``): ``kind`` is
# ``runner:side:objects``. The same objects and calls as ``setup`` and ``loop`` above, written out
# here so that ``--against`` runs them against another checkout's dotwist.
CHILD = r'''
import sys, time
from twisted.internet.task import Clock
from dotwist import App, DurableObject, Request, Response, WorkerEntrypoint
from dotwist.testing import makeRuntime

runner, side, objects = sys.argv[1].split(":")
objects, N = int(objects), int(sys.argv[2])


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

    async def update(self, entry):
        self.value += entry["n"]
        return {"value": self.value, "tags": entry["tags"], "seen": len(entry["meta"])}

    async def fetch(self, request):
        self.value += 1
        return Response(str(self.value))


def fired(d):
    box = []
    d.addBoth(box.append)
    if not box or hasattr(box[0], "raiseException"):
        raise RuntimeError(f"call did not complete synchronously: {box}")
    return box[0]


runtime = makeRuntime(App(Worker, durableObjects={"NS": Counter}), clock=Clock(), asyncio=runner == "asyncio")
stubs = [runtime.env.NS.getByName(f"o{i}") for i in range(objects)]
for stub in stubs:
    fired(stub.increment(0))
entry = {"n": 1, "tags": ["a", "b", "c"], "meta": {"by": "bench", "round": 1}}
request = Request("http://bench/")
if side == "rpc":
    def one(stub):
        return stub.increment(1)
elif side == "rpc-data":
    def one(stub):
        return stub.update(entry)
else:
    def one(stub):
        return stub.fetch(request)
for i in range(300):
    fired(one(stubs[i % objects]))
start = time.process_time()
for i in range(N):
    fired(one(stubs[i % objects]))
print((time.process_time() - start) / N * 1e6)
'''


def instructions(runners: tuple[str, ...], calls: int, targets: tuple[int, ...]) -> None:
    names = {}
    kinds = []
    for runner in runners:
        for objects in targets:
            for side in SIDES:
                kind = f"{runner}:{side}:{objects}"
                target = "one object" if objects == 1 else f"{objects:,} objects"
                names[kind] = f"{runner}, {side}, {target}"
                kinds.append(kind)
    kinds = inprocess.withAgainst(kinds, names, list(kinds))
    rows = {kind: inprocess.countInstructions(CHILD, kind, calls) for kind in kinds}
    inprocess.report(rows, names, "call", "calls/s", 1, "rpc.json", {"calls": calls, "commit": commit()})


def commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip()
    except Exception:
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds of 10,000 calls")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--calls", type=int, default=None)
    parser.add_argument("--runner", choices=("twisted", "asyncio", "both"), default="both")
    parser.add_argument("--instructions", action="store_true", help="instructions per call (callgrind)")
    parser.add_argument("--against", action="append", default=[], metavar="DIR",
                        help="with --instructions: measure this checkout too")
    parser.add_argument("--objects", action="append", type=int, metavar="N",
                        help="with --instructions: the targets (default one object; 1000 is the other)")
    options = parser.parse_args()
    if options.instructions:
        runners = ("twisted", "asyncio") if options.runner == "both" else (options.runner,)
        instructions(runners, options.calls or 1_000, tuple(options.objects or [1]))
        return
    rounds = options.rounds or (3 if options.quick else 7)
    calls = options.calls or (10_000 if options.quick else 30_000)
    runners = ("twisted", "asyncio") if options.runner == "both" else (options.runner,)
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    rows = [row for runner in runners for row in bench(runner, rounds, calls)]
    print(f"{started}, commit {commit()}, {rounds} rounds of {calls:,} calls per side, load {load:.1f}")
    print("| runner | target | RPC calls/s (CPU µs) | RPC lists/dicts calls/s (CPU µs) | stub.fetch calls/s (CPU µs) "
          "| plain twisted.web calls/s (CPU µs) | RPC / fetch | RPC lists/dicts / fetch "
          "| RPC / plain twisted.web | stub.fetch / plain twisted.web |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        label = "one object" if row["objects"] == 1 else f"{row['objects']:,} objects"
        cells = [f"{row[s]['callsPerSecond']:,.0f} ({row[s]['cpuMicrosecondsPerCall']:.1f})" for s in TIMED_SIDES]
        ratios = [
            f"{row[f'{s}/fetch']:.2f}× ({row[f'{s}/fetch range'][0]:.2f}–{row[f'{s}/fetch range'][1]:.2f})"
            for s in ("rpc", "rpc-data")
        ] + [f"{row[f'{s}/twisted-http']:.2f}×" for s in ("rpc", "fetch")]
        print(f"| {row['runner']} | {label} | " + " | ".join(cells + ratios) + " |")
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    (out / "rpc.json").write_text(json.dumps({
        "date": started, "commit": commit(), "machine": platform.platform(), "cpus": os.cpu_count(),
        "load": load, "python": sys.version.split()[0], "calls": calls, "rounds": rounds,
        "interleaved": True, "rows": rows,
    }, indent=2))


if __name__ == "__main__":
    main()
