"""Cluster mode against one process, measured in one run: messages and calls to an object on
another node, durable writes, failover, and ``--workers 2`` against 1.

Run from the repository root, with PostgreSQL on 127.0.0.1:5432 (database ``test``) and
``bench/build/wsload`` built (``bench/run`` builds it; or ``gcc -O2 -o bench/build/wsload
bench/wsload.c``)::

    .venv/bin/python bench/cluster_bench.py            # about 4 minutes
    .venv/bin/python bench/cluster_bench.py --quick    # shorter windows, fewer repeats

Every server is a real ``twistd -n dotwist`` process on 127.0.0.1; every cluster gets a schema
of its own (dropped at the end). CPU times are read from ``/proc/<pid>/stat`` of each server
process (user + system) over the measured window. The sections:

``message``
    A WebSocket echo through a Durable Object (``dotwist.examples.echo``, ``/echo``), closed loop,
    ``wsload echo`` with 1 connection: one process (the reference), and two cluster nodes with the
    client on one and the object on the other (every message is relayed: client -> node A ->
    node B's object -> node A -> client). CPU per message is the servers' CPU (both nodes for the
    cluster) divided by the messages echoed.
``call``
    An HTTP request whose Worker calls the object with ``stub.fetch`` (``tests/cluster/clusterapp``,
    ``GET /read/x``), ``wsload http`` with 4 connections: one process, against two nodes with
    the object on the other node (the call crosses the node-to-node channel).
``write``
    Durable writes through the whole stack (``POST /append/<name>``, answered once the write is
    durable), from an aiohttp client in this process: one object, one write after another
    (latency, writes/s), and 1,000 objects writing at once (writes/s, mean latency). One process
    on SQLite (``synchronous=FULL``) against one cluster node (local SQLite copy, commit to
    PostgreSQL).
``failover``
    Three nodes; ``kill -9`` of the owner of an object, then the client asks another node every
    10 ms: the time to the first successful answer, with the lease given (the object comes back
    once the dead node's lease has lapsed by PostgreSQL's clock).
``workers``
    2,000 objects read at random (``GET /read/o<n>``, each request a Worker call to an object) by
    ``wsload``-style closed loops from an aiohttp client with 64 connections, against
    ``--workers 1`` and ``--workers 2`` on one port. The load generator's CPU is reported: it runs
    on the same 2 cores.

Results: ``bench/results/cluster.json`` and a markdown table on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import resource
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "cluster"))

CONNINFO = "host=127.0.0.1 port=5432 dbname=test user=postgres"
TWISTD = str(Path(sys.executable).parent / "twistd")
WSLOAD = ROOT / "bench" / "build" / "wsload"
TICK = os.sysconf("SC_CLK_TCK")


def freePort() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu(pid: int) -> float:
    """User + system CPU seconds of a process and its reaped children."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / TICK


class Servers:
    """The twistd processes of one section; stops them all."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[subprocess.Popen[bytes]] = []
        self.schemas: list[str] = []

    def start(self, app: str, *extra: str, port: Optional[int] = None, name: str = "s") -> tuple[subprocess.Popen[bytes], int]:
        port = port or freePort()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests" / "cluster"), str(ROOT)])}
        log = open(self.tmp / f"{name}-{port}.log", "wb")
        proc = subprocess.Popen(
            [TWISTD, "-n", "--pidfile=", "dotwist", "--app", app, "--listen", f"tcp:{port}:interface=127.0.0.1",
             "--no-access-log", "--data-dir", str(self.tmp / f"data-{name}-{port}"), *extra],
            cwd=self.tmp, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        self.procs.append(proc)
        return proc, port

    def cluster(self, app: str, nodeIds: list[str], lease: float = 10.0, extra: tuple[str, ...] = ()) -> list[tuple[subprocess.Popen[bytes], int]]:
        schema = f"bench_{os.getpid()}_{len(self.schemas)}"
        self.schemas.append(schema)
        return [
            self.start(app, "--cluster", CONNINFO, "--cluster-schema", schema, "--node-id", nodeId,
                       "--lease", str(lease), *extra, name=nodeId)
            for nodeId in nodeIds
        ]

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()
        import psycopg

        with psycopg.connect(CONNINFO, autocommit=True) as conn:
            for schema in self.schemas:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        self.schemas.clear()


def waitFor(port: int, path: str, status: int = 200, deadline: float = 60.0) -> None:
    import http.client

    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", path)
            if conn.getresponse().status == status:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"127.0.0.1:{port}{path} did not answer {status} in {deadline} s")


def ownerFirst(namespaces: list[tuple[str, str]]) -> tuple[str, str]:
    """Node ids (front, owner) such that the owner is the preferred node of every object given
    as (namespace, name)."""
    from dotwist.cluster.rendezvous import preferredNode
    from dotwist.ids import DEFAULT_SECRET, IdMinter

    ids = [(ns, IdMinter(ns, DEFAULT_SECRET, None).fromName(name).toString()) for ns, name in namespaces]
    for k in range(1000):
        a, b = f"front{k}", f"owner{k}"
        if all(preferredNode([a, b], ns, oid) == b for ns, oid in ids):
            return a, b
    raise RuntimeError("no node ids found")


def wsload(mode: str, port: int, path: str, conns: int, duration: float, warmup: float, pid: int,
           other: Optional[int] = None) -> dict[str, Any]:
    """Run wsload; with ``other``, also the CPU of that second server over the same window."""
    command = [str(WSLOAD), mode, "--port", str(port), "--path", path, "--conns", str(conns),
               "--duration", str(duration), "--warmup", str(warmup), "--pid", str(pid)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE)
    otherCpu = None
    if other is not None:
        time.sleep(warmup + 0.2)  # the window starts after the warm-up (and the connections)
        start = cpu(other)
        began = time.monotonic()
    out, _ = proc.communicate(timeout=duration + warmup + 120)
    result: dict[str, Any] = json.loads(out)
    if other is not None:
        elapsed = time.monotonic() - began
        # The second server's CPU over about the window wsload measured, scaled to it.
        otherCpu = (cpu(other) - start) * result["measured_s"] / elapsed
        result["other_cpu"] = otherCpu
    return result


# -- sections --------------------------------------------------------------------------------------


def message(servers: Servers, duration: float, repeats: int) -> dict[str, Any]:
    front, owner = ownerFirst([("Echo", "echo")])
    out: dict[str, Any] = {"local": [], "relayed": []}
    for r in range(repeats):
        proc, port = servers.start("dotwist.examples.echo", name=f"local{r}")
        waitFor(port, "/echo", 426)
        res = wsload("echo", port, "/echo", 1, duration, 1.0, proc.pid)
        out["local"].append({"rate": res["rate"], "p50_us": res["p50_us"], "cpu_per_msg_us": 1e6 * res["server_cpu"] / max(1, res["count"]), "gen_cpu": res["gen_cpu"]})
        servers.stop()
        (procB, portB), = servers.cluster("dotwist.examples.echo", [owner])
        waitFor(portB, "/echo", 426)
        (procA, portA), = servers.cluster("dotwist.examples.echo", [front]) if False else [servers.start(
            "dotwist.examples.echo", "--cluster", CONNINFO, "--cluster-schema", servers.schemas[-1], "--node-id", front,
            name=front)]
        waitFor(portA, "/echo", 426)
        res = wsload("echo", portA, "/echo", 1, duration, 1.0, procA.pid, other=procB.pid)
        out["relayed"].append({
            "rate": res["rate"], "p50_us": res["p50_us"],
            "cpu_per_msg_us": 1e6 * (res["server_cpu"] + res["other_cpu"]) / max(1, res["count"]),
            "front_cpu_per_msg_us": 1e6 * res["server_cpu"] / max(1, res["count"]),
            "owner_cpu_per_msg_us": 1e6 * res["other_cpu"] / max(1, res["count"]),
            "gen_cpu": res["gen_cpu"],
        })
        servers.stop()
    return out


def call(servers: Servers, duration: float, repeats: int) -> dict[str, Any]:
    front, owner = ownerFirst([("Log", "x")])
    out: dict[str, Any] = {"local": [], "remote": []}
    for r in range(repeats):
        proc, port = servers.start("clusterapp", name=f"clocal{r}")
        waitFor(port, "/read/x")
        res = wsload("http", port, "/read/x", 4, duration, 1.0, proc.pid)
        out["local"].append({"rate": res["rate"], "p50_us": res["p50_us"], "cpu_per_call_us": 1e6 * res["server_cpu"] / max(1, res["count"]), "non2xx": res["non2xx"]})
        servers.stop()
        nodes = servers.cluster("clusterapp", [owner, front])
        (procB, portB), (procA, portA) = nodes
        waitFor(portB, "/read/x")
        waitFor(portA, "/read/x")
        res = wsload("http", portA, "/read/x", 4, duration, 1.0, procA.pid, other=procB.pid)
        out["remote"].append({
            "rate": res["rate"], "p50_us": res["p50_us"],
            "cpu_per_call_us": 1e6 * (res["server_cpu"] + res["other_cpu"]) / max(1, res["count"]),
            "front_cpu_per_call_us": 1e6 * res["server_cpu"] / max(1, res["count"]),
            "owner_cpu_per_call_us": 1e6 * res["other_cpu"] / max(1, res["count"]),
            "non2xx": res["non2xx"],
        })
        servers.stop()
    return out


async def _writes(port: int, objects: int, duration: float) -> dict[str, Any]:
    import aiohttp

    latencies: list[float] = []
    errors = 0
    stopAt = time.monotonic() + duration
    connector = aiohttp.TCPConnector(limit=min(objects, 200))
    async with aiohttp.ClientSession(connector=connector) as session:

        async def loop(i: int) -> None:
            nonlocal errors
            n = 0
            while time.monotonic() < stopAt:
                started = time.monotonic()
                async with session.post(f"http://127.0.0.1:{port}/append/w{i}?v={n}") as response:
                    await response.read()
                    if response.status == 200:
                        latencies.append(time.monotonic() - started)
                    else:
                        errors += 1
                n += 1

        began = time.monotonic()
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        await asyncio.gather(*(loop(i) for i in range(objects)))
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        elapsed = time.monotonic() - began
    latencies.sort()
    return {
        "writes": len(latencies), "errors": errors, "writes_per_s": len(latencies) / elapsed,
        "p50_ms": 1000 * latencies[len(latencies) // 2] if latencies else None,
        "p90_ms": 1000 * latencies[int(len(latencies) * 0.9)] if latencies else None,
        "mean_ms": 1000 * statistics.fmean(latencies) if latencies else None,
        "gen_cpu_s": (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime),
    }


def write(servers: Servers, duration: float, repeats: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for objects in (1, 1000):
        for side in ("sqlite", "cluster"):
            out.setdefault(f"{side} {objects}", [])
        for r in range(repeats):
            for side in (("sqlite", "cluster") if r % 2 == 0 else ("cluster", "sqlite")):
                if side == "sqlite":
                    proc, port = servers.start("clusterapp", name=f"w{side}{r}")
                else:
                    ((proc, port),) = servers.cluster("clusterapp", [f"writer{r}"])
                waitFor(port, "/read/warm")
                # Warm up: every object constructed (and, in the cluster, claimed) once.
                asyncio.run(_writes(port, objects, 1.0 if objects == 1 else 3.0))
                c0 = cpu(proc.pid)
                result = asyncio.run(_writes(port, objects, duration))
                result["server_cpu_s"] = cpu(proc.pid) - c0
                out[f"{side} {objects}"].append(result)
                servers.stop()
    return out


def failover(servers: Servers, leases: list[tuple[float, int]]) -> dict[str, Any]:
    import http.client

    out: dict[str, Any] = {}
    for lease, repeats in leases:
        runs = []
        for r in range(repeats):
            nodes = servers.cluster("clusterapp", ["fa", "fb", "fc"], lease=lease)
            for _, port in nodes:
                waitFor(port, "/read/warm")
            from dotwist.cluster.rendezvous import preferredNode
            from dotwist.ids import DEFAULT_SECRET, IdMinter

            name = next(f"f{i}" for i in range(100)
                        if preferredNode(["fa", "fb", "fc"], "Log", IdMinter("Log", DEFAULT_SECRET, None).fromName(f"f{i}").toString()) == "fb")
            portA = nodes[0][1]
            conn = http.client.HTTPConnection("127.0.0.1", portA, timeout=10)
            conn.request("POST", f"/append/{name}?v=1")
            assert json.loads(conn.getresponse().read())["node"] == "fb"
            conn.close()
            killed = time.monotonic()
            nodes[1][0].kill()
            while True:
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", portA, timeout=30)
                    conn.request("GET", f"/read/{name}")
                    response = conn.getresponse()
                    body = response.read()
                    conn.close()
                    if response.status == 200 and json.loads(body)["vals"] == ["1"]:
                        break
                except OSError:
                    pass
                time.sleep(0.01)
            runs.append(time.monotonic() - killed)
            servers.stop()
        out[f"lease {lease:g} s"] = runs
    return out


async def _reads(port: int, objects: int, conns: int, duration: float, seed: int) -> dict[str, Any]:
    import aiohttp

    rng = random.Random(seed)
    count = 0
    errors = 0
    latencies: list[float] = []
    stopAt = time.monotonic() + duration
    connector = aiohttp.TCPConnector(limit=conns)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def loop() -> None:
            nonlocal count, errors
            while time.monotonic() < stopAt:
                started = time.monotonic()
                async with session.get(f"http://127.0.0.1:{port}/read/o{rng.randrange(objects)}") as response:
                    await response.read()
                    if response.status == 200:
                        count += 1
                        latencies.append(time.monotonic() - started)
                    else:
                        errors += 1

        r0 = resource.getrusage(resource.RUSAGE_SELF)
        began = time.monotonic()
        await asyncio.gather(*(loop() for _ in range(conns)))
        elapsed = time.monotonic() - began
        r1 = resource.getrusage(resource.RUSAGE_SELF)
    latencies.sort()
    return {
        "requests_per_s": count / elapsed, "errors": errors,
        "p50_ms": 1000 * latencies[len(latencies) // 2] if latencies else None,
        "gen_cpu_s": (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime), "elapsed_s": elapsed,
    }


async def _warm(port: int, objects: int, conns: int = 32) -> None:
    import aiohttp

    queue = list(range(objects))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=conns)) as session:

        async def loop() -> None:
            while queue:
                i = queue.pop()
                for _ in range(20):
                    async with session.get(f"http://127.0.0.1:{port}/read/o{i}") as response:
                        await response.read()
                        if response.status == 200:
                            break

        await asyncio.gather(*(loop() for _ in range(conns)))


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def workers(servers: Servers, duration: float, repeats: int, objects: int = 2000) -> dict[str, Any]:
    out: dict[str, Any] = {"workers 1": [], "workers 2": []}
    for r in range(repeats):
        for n in ((1, 2) if r % 2 == 0 else (2, 1)):
            schema = f"bench_{os.getpid()}_{len(servers.schemas)}"
            servers.schemas.append(schema)
            port = freePort()
            proc, _ = servers.start("clusterapp", "--cluster", CONNINFO, "--cluster-schema", schema,
                                    "--workers", str(n), "--node-id", f"wk{r}n{n}", port=port, name=f"workers{n}-{r}")
            waitFor(port, "/read/warm")
            deadline = time.monotonic() + 30
            while len(_children(proc.pid)) < n and time.monotonic() < deadline:
                time.sleep(0.1)
            asyncio.run(_warm(port, objects))  # every object claimed, loaded and constructed once
            kids = _children(proc.pid)
            c0 = sum(cpu(k) for k in kids)
            result = asyncio.run(_reads(port, objects, 64, duration, r + 100))
            result["server_cpu_s"] = sum(cpu(k) for k in kids) - c0
            out[f"workers {n}"].append(result)
            servers.stop()
    return out


# -- report ----------------------------------------------------------------------------------------


def med(runs: list[dict[str, Any]], key: str) -> float:
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else float("nan")


def table(results: dict[str, Any]) -> str:
    lines = ["| section | figure | reference | cluster | ratio |", "|---|---|---:|---:|---:|"]
    m = results.get("message")
    if m:
        for key, label in (("cpu_per_msg_us", "CPU per message (µs, both nodes)"), ("rate", "messages/s, 1 connection"), ("p50_us", "latency p50 (µs)")):
            a, b = med(m["local"], key), med(m["relayed"], key)
            lines.append(f"| WebSocket message, object on the other node | {label} | {a:,.1f} | {b:,.1f} | {b / a:.2f}× |")
    c = results.get("call")
    if c:
        for key, label in (("cpu_per_call_us", "CPU per call (µs, both nodes)"), ("rate", "calls/s, 4 connections"), ("p50_us", "latency p50 (µs)")):
            a, b = med(c["local"], key), med(c["remote"], key)
            lines.append(f"| stub.fetch call, object on the other node | {label} | {a:,.1f} | {b:,.1f} | {b / a:.2f}× |")
    w = results.get("write")
    if w:
        for objects in (1, 1000):
            s, k = w[f"sqlite {objects}"], w[f"cluster {objects}"]
            for key, label in (("writes_per_s", "durable writes/s"), ("p50_ms", "latency p50 (ms)"), ("mean_ms", "mean latency (ms)")):
                a, b = med(s, key), med(k, key)
                lines.append(f"| write, {objects:,} object{'s' if objects > 1 else ''} | {label} | {a:,.2f} | {b:,.2f} | {b / a:.2f}× |")
    f = results.get("failover")
    if f:
        for lease, runs in f.items():
            lines.append(f"| failover, kill -9 | seconds to the first answer ({lease}; runs: {', '.join(f'{x:.2f}' for x in runs)}) | | {statistics.median(runs):.2f} | |")
    k = results.get("workers")
    if k:
        for key, label in (("requests_per_s", "requests/s (2,000 objects, 64 connections)"), ("server_cpu_s", "server CPU (s)"), ("gen_cpu_s", "load generator CPU (s)"), ("p50_ms", "latency p50 (ms)")):
            a, b = med(k["workers 1"], key), med(k["workers 2"], key)
            lines.append(f"| --workers 2 against 1 | {label} | {a:,.2f} | {b:,.2f} | {b / a:.2f}× |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sections", default="message,call,write,failover,workers")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "cluster.json"))
    parser.add_argument("--tmp", default=None)
    args = parser.parse_args()
    import tempfile

    tmp = Path(args.tmp or tempfile.mkdtemp(prefix="cluster-bench-"))
    tmp.mkdir(parents=True, exist_ok=True)
    duration, repeats = (3.0, 1) if args.quick else (5.0, 3)
    servers = Servers(tmp)
    results: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": " ".join([".venv/bin/python", "bench/cluster_bench.py", *sys.argv[1:]]),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_before": os.getloadavg()},
        "duration_s": duration, "repeats": repeats,
    }
    sections = args.sections.split(",")
    try:
        if "message" in sections:
            results["message"] = message(servers, duration, repeats)
        if "call" in sections:
            results["call"] = call(servers, duration, repeats)
        if "write" in sections:
            results["write"] = write(servers, duration, max(1, repeats - 1))
        if "failover" in sections:
            results["failover"] = failover(servers, [(2.0, 1 if args.quick else 3), (10.0, 1)] if not args.quick else [(2.0, 1)])
        if "workers" in sections:
            results["workers"] = workers(servers, duration * 2, max(1, repeats - 1))
    finally:
        servers.stop()
    results["machine"]["load_after"] = os.getloadavg()
    results["table"] = table(results)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(results["table"])
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
