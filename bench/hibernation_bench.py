"""What WebSocket Hibernation saves: server memory per socket, and the cost of waking an object.

    .venv/bin/python bench/hibernation_bench.py            # 10,000 sockets over 100 objects
    .venv/bin/python bench/hibernation_bench.py --quick    # 1,000 sockets over 10 objects

In one run, each on a freshly started server pinned to core 0 (the client runs on core 1):

1. hibernated: dotwist serving bench/apps/rooms.py with hibernateAfter = 1 s. N sockets on
   ``/hibernate/0`` ... ``/hibernate/<objects-1>``, one echoed message each; once the server
   reports ``live-objects 0`` (every object hibernated), its RSS minus its baseline RSS, per socket.
2. plain: the same on ``/plain/<k>`` (``server.accept()`` + listener: objects stay in memory).
   Per socket, and (plain - hibernated) / objects as a rough size of one live object.
3. reference: the plain Autobahn echo server (conformance/autobahn_echo.py) holding N sockets.
4. wake: on the hibernated server, after every object hibernated, one message on a socket of each
   of up to 50 hibernated objects (each woken once), timed until its echo; then a second message on
   the same socket right away (the object is awake now) for comparison.

The dotwist server is started by this file itself (``--serve PORT``), because hibernateAfter is a
runtime limit with no command-line option: the launcher builds the Runtime with
``Limits(hibernateAfter=1, evictAfter=1)`` and memory storage, and prints ``live-objects N``
every 0.5 s (from ``runtime.registry.liveObjects()``), which the benchmark polls.

Baseline RSS: after the server accepts TCP, a short warm-up (a few sockets on a separate object,
echoed and closed, so that lazy imports and first-use caches are paid), then, once that object has
left memory too, VmRSS from /proc/PID/status. Kernel socket buffers are not in RSS.

Prints a markdown table and writes bench/results/hibernation.json (--quick:
bench/results/hibernation-quick.json). ``--diag`` (slow) also starts the servers with tracemalloc
and prints, for hibernated and plain, what the held sockets' Python memory is made of.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime
import json
import os
import platform
import resource
import signal
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
LOGS = HERE / "build" / "logs"
SERVER_CORE = 0
CLIENT_CORE = 1
HIBERNATE_AFTER = 1.0


def raiseFdLimit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def pin(core: int) -> None:
    try:
        if core < os.cpu_count():
            os.sched_setaffinity(0, {core})
    except (AttributeError, OSError):
        pass


# --- the launcher: `--serve PORT` ---------------------------------------------------------------


def serve(port: int, diag: bool) -> None:
    raiseFdLimit()
    pin(SERVER_CORE)
    sys.path.insert(0, str(HERE / "apps"))
    import gc

    from twisted.internet import reactor, task

    from dotwist.config import Limits
    from dotwist.storage import MemoryBackend
    from dotwist.tap import DotwistService
    from dotwist.worker import Runtime
    import rooms

    limits = Limits().replace(hibernateAfter=HIBERNATE_AFTER, evictAfter=HIBERNATE_AFTER)
    runtime = Runtime(rooms.app, reactor, limits=limits, storage=MemoryBackend())
    service = DotwistService(runtime, [f"tcp:{port}:interface=127.0.0.1"], reactor=reactor)

    def report() -> None:
        sys.stdout.write(f"live-objects {runtime.registry.liveObjects()}\n")
        sys.stdout.flush()

    snapshots: dict[str, object] = {}

    def onCommand(line: str) -> None:
        # Diagnostics, driven over stdin: "snap NAME" takes a tracemalloc snapshot;
        # "diff A B" prints the biggest differences; "types" prints gc counts by type.
        words = line.split()
        if not words:
            return
        out = []
        if words[0] == "snap" and diag:
            import tracemalloc

            snapshots.setdefault("types", typeCounts())
            if not tracemalloc.is_tracing():
                # Started at the baseline, not at launch: imports under tracemalloc are slow,
                # and only what is allocated after the baseline (and still held) matters.
                tracemalloc.start(4)
            gc.collect()
            snapshots[words[1]] = tracemalloc.take_snapshot()
            out.append(f"snapped {words[1]}")
        elif words[0] == "diff" and diag:
            import tracemalloc

            a, b = snapshots[words[1]], snapshots[words[2]]
            stats = b.compare_to(a, "lineno")
            total = sum(s.size_diff for s in stats)
            out.append(f"diag total {total} bytes")
            for s in stats[:25]:
                frame = s.traceback[0]
                out.append(
                    f"diag {s.size_diff:>11} B {s.count_diff:>8} blocks  "
                    f"{os.path.relpath(frame.filename, REPO) if frame.filename.startswith(str(REPO)) else frame.filename.split('site-packages/')[-1]}:{frame.lineno}"
                )
            for s in b.compare_to(a, "filename")[:12]:
                frame = s.traceback[0]
                out.append(f"diag by file {s.size_diff:>11} B  {frame.filename.split('site-packages/')[-1]}")
            out.append("diag end")
        elif words[0] == "types":
            # gc-tracked objects by type: counts now minus counts at the first "snap".
            now = typeCounts()
            base = snapshots.get("types", {})
            diff = sorted(((n - base.get(k, 0), k) for k, n in now.items()), reverse=True)
            for n, name in diff[:30]:
                out.append(f"types {n:>8} {name}")
            out.append("types end")
        elif words[0] == "refs":
            # What refers to one instance of a type (by qualified name), two levels up.
            out.extend(f"refs {line}" for line in referrers(words[1]))
            out.append("refs end")
        for o in out:
            sys.stdout.write(o + "\n")
        sys.stdout.flush()

    def typeCounts() -> dict[str, int]:
        gc.collect()
        counts: dict[str, int] = {}
        for o in gc.get_objects():
            t = type(o)
            name = f"{getattr(t, '__module__', '?')}.{getattr(t, '__qualname__', t.__name__)}"
            counts[name] = counts.get(name, 0) + 1
        return counts

    def describe(o: object) -> str:
        t = type(o)
        name = f"{getattr(t, '__module__', '?')}.{getattr(t, '__qualname__', t.__name__)}"
        if isinstance(o, dict):
            keys = list(o)[:6]
            return f"{name} keys={keys}"
        return name

    def referrers(typeName: str) -> list[str]:
        gc.collect()
        target = None
        for o in gc.get_objects():
            t = type(o)
            if f"{getattr(t, '__module__', '?')}.{getattr(t, '__qualname__', '')}" == typeName:
                target = o
                break
        if target is None:
            return [f"no {typeName}"]
        lines = [f"target {describe(target)}"]
        ignore = {id(lines)}
        for r1 in gc.get_referrers(target):
            if isinstance(r1, type(sys._getframe())) or id(r1) in ignore:
                continue
            lines.append(f"  <- {describe(r1)}")
            for r2 in gc.get_referrers(r1)[:6]:
                if isinstance(r2, type(sys._getframe())):
                    continue
                lines.append(f"       <- {describe(r2)}")
        return lines[:60]

    def readStdin() -> None:
        for line in sys.stdin:
            reactor.callFromThread(onCommand, line)

    threading.Thread(target=readStdin, daemon=True).start()
    service.startService()
    task.LoopingCall(report).start(0.5)
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    reactor.run()


# --- servers, from the benchmark's side -------------------------------------------------------


def freePort() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rssKiB(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


class Server:
    """A server process: its stdout lines are read on a thread, ``live-objects N`` remembered."""

    def __init__(self, name: str, argv: list[str], port: int) -> None:
        self.name = name
        self.port = port
        LOGS.mkdir(parents=True, exist_ok=True)
        self.logPath = LOGS / f"hibernation-{name}.log"
        self.log = open(self.logPath, "w")
        self.proc = subprocess.Popen(
            argv,
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            bufsize=1,
            preexec_fn=lambda: pin(SERVER_CORE),
        )
        self.live: int | None = None
        self.reports = 0  # how many live-objects lines so far
        self.lines: list[str] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.log.write(line)
            self.log.flush()
            line = line.rstrip("\n")
            with self.lock:
                if line.startswith("live-objects "):
                    self.live = int(line.split()[1])
                    self.reports += 1
                else:
                    self.lines.append(line)

    def waitReady(self, deadline: float = 30.0) -> None:
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {self.logPath}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not accept TCP within {deadline} s; see {self.logPath}")

    def rss(self) -> int:
        return rssKiB(self.proc.pid)

    def command(self, line: str, endMarker: str, deadline: float = 120.0) -> list[str]:
        """Send a diagnostics command; the output lines up to ``endMarker``."""
        with self.lock:
            start = len(self.lines)
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            with self.lock:
                got = self.lines[start:]
            for i, l in enumerate(got):
                if l.startswith(endMarker):
                    return got[: i + 1]
            time.sleep(0.05)
        raise RuntimeError(f"no {endMarker!r} from {self.name}")

    def stop(self, deadline: float = 10.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(deadline)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()


def startDotwist(name: str, diag: bool) -> Server:
    port = freePort()
    argv = [sys.executable, str(Path(__file__).resolve()), "--serve", str(port)]
    if diag:
        argv.append("--diag")
    return started(Server(name, argv, port))


def started(server: Server) -> Server:
    try:
        server.waitReady()
    except BaseException:
        server.stop()
        raise
    return server


def startReference() -> Server:
    port = freePort()
    argv = [sys.executable, str(REPO / "conformance" / "autobahn_echo.py"), str(port), "--no-deflate"]
    return started(Server("reference", argv, port))


# --- a minimal asyncio WebSocket client ---------------------------------------------------------


class Conn:
    __slots__ = ("reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def send(self, text: str) -> None:
        payload = text.encode()
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            head = struct.pack("!BB", 0x81, 0x80 | n)
        elif n < 65536:
            head = struct.pack("!BBH", 0x81, 0x80 | 126, n)
        else:
            head = struct.pack("!BBQ", 0x81, 0x80 | 127, n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.writer.write(head + mask + masked)

    async def recv(self) -> str:
        while True:
            b0, b1 = await self.reader.readexactly(2)
            n = b1 & 0x7F
            if n == 126:
                (n,) = struct.unpack("!H", await self.reader.readexactly(2))
            elif n == 127:
                (n,) = struct.unpack("!Q", await self.reader.readexactly(8))
            mask = await self.reader.readexactly(4) if b1 & 0x80 else None
            data = await self.reader.readexactly(n)
            if mask:
                data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
            op = b0 & 0x0F
            if op == 0x8:
                raise ConnectionError(f"server closed: {data[:2].hex()} {data[2:]!r}")
            if op == 0x9:  # ping: answer it
                self.writer.write(struct.pack("!BB", 0x8A, 0x80 | len(data)) + b"\0\0\0\0" + data)
                continue
            if op in (0x1, 0x2):
                return data.decode()

    async def echo(self, text: str) -> float:
        """Send ``text``, wait for its echo; seconds taken."""
        t0 = time.perf_counter()
        self.send(text)
        got = await self.recv()
        dt = time.perf_counter() - t0
        if got != text:
            raise ValueError(f"echo mismatch: sent {text!r}, got {got!r}")
        return dt

    def close(self) -> None:
        self.writer.transport.abort()


async def connect(port: int, path: str, timeout: float = 30.0) -> Conn:
    async def go() -> Conn:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        status = head.split(b"\r\n", 1)[0]
        if b" 101 " not in status + b" ":
            writer.transport.abort()
            raise ConnectionError(f"{path}: {status.decode(errors='replace')}")
        return Conn(reader, writer)

    return await asyncio.wait_for(go(), timeout)


async def openMany(port: int, paths: list[str], inflight: int = 50, deadline: float = 300.0) -> tuple[list[Conn], float]:
    """Open one socket per path (at most ``inflight`` handshakes at once), echo one message on
    each; the open sockets in ``paths`` order and the seconds it took. Fails if any fails."""
    sem = asyncio.Semaphore(inflight)
    conns: list[Conn | None] = [None] * len(paths)

    async def one(i: int, path: str) -> None:
        async with sem:
            c = await connect(port, path)
            conns[i] = c
            await asyncio.wait_for(c.echo(f"hello {i}"), 30)

    t0 = time.monotonic()
    results = await asyncio.wait_for(
        asyncio.gather(*(one(i, p) for i, p in enumerate(paths)), return_exceptions=True), deadline
    )
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        for c in conns:
            if c:
                c.close()
        raise RuntimeError(f"{len(errors)} of {len(paths)} sockets failed, first: {errors[0]!r}")
    return [c for c in conns if c is not None], time.monotonic() - t0


async def waitFor(cond, deadline: float, what: str) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if cond():
            return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"timed out after {deadline} s waiting for {what}")


async def nextReports(server: Server, n: int, deadline: float = 30.0) -> int:
    """Wait until ``n`` more live-objects lines came (the server's reactor turned); the last."""
    start = server.reports
    await waitFor(lambda: server.reports >= start + n, deadline, f"{n} live-objects reports")
    return server.live


async def stableRss(server: Server, deadline: float = 15.0) -> int:
    """VmRSS once two readings 0.5 s apart differ by less than 0.5 % (or at the deadline)."""
    end = time.monotonic() + deadline
    last = server.rss()
    while time.monotonic() < end:
        await asyncio.sleep(0.5)
        now = server.rss()
        if abs(now - last) <= 0.005 * last:
            return now
        last = now
    return last


async def warmUp(server: Server, path: str, sockets: int = 5) -> None:
    conns, _ = await openMany(server.port, [path] * sockets)
    for c in conns:
        await c.echo("warm")
        c.close()


# --- the figures ---------------------------------------------------------------------------


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    k = min(len(s) - 1, max(0, int(round(p / 100 * (len(s) - 1)))))
    return s[k]


async def dotwistRun(mode: str, sockets: int, objects: int, wakes: int, diag: bool) -> dict:
    server = startDotwist(mode, diag)
    out: dict = {"mode": mode, "sockets": sockets, "objects": objects, "log": str(server.logPath)}
    conns: list[Conn] = []
    try:
        await warmUp(server, f"/{mode}/warmup")
        # The warm-up object leaves memory (hibernateAfter = evictAfter = 1 s) before the baseline.
        await waitFor(lambda: server.live == 0, 30, "the warm-up object to leave memory")
        await nextReports(server, 1)
        if diag:
            server.command("snap base", "snapped")
        out["baseline_rss_kib"] = await stableRss(server)
        paths = [f"/{mode}/{i % objects}" for i in range(sockets)]
        conns, took = await openMany(server.port, paths)
        out["open_seconds"] = round(took, 2)
        out["live_after_open"] = server.live
        if mode == "hibernate":
            t0 = time.monotonic()
            await waitFor(lambda: server.live == 0, 60, "every object to hibernate")
            out["hibernated_after_s"] = round(time.monotonic() - t0, 2)
        else:
            # Same settle time as the hibernated run gets (~1-1.5 s); objects stay live.
            await nextReports(server, 3)
        await nextReports(server, 1)
        out["live_at_measure"] = server.live
        out["rss_kib"] = await stableRss(server)
        out["live_after_measure"] = server.live
        out["delta_kib"] = out["rss_kib"] - out["baseline_rss_kib"]
        out["kib_per_socket"] = out["delta_kib"] / sockets
        if diag:
            server.command("snap held", "snapped")
            out["diag_tracemalloc"] = server.command("diff base held", "diag end")
            out["diag_types"] = server.command("types", "types end")
            out["diag_refs"] = []
            for typeName in ("twisted.web.server.Request", "twisted.web.http.HTTPChannel"):
                out["diag_refs"] += server.command(f"refs {typeName}", "refs end")
        if mode == "hibernate" and wakes:
            assert server.live == 0, f"live-objects {server.live} before the wake test"
            wake, awake = [], []
            for k in range(min(wakes, objects)):
                c = conns[k]  # paths[k] is /hibernate/k: one socket of object k
                wake.append(await asyncio.wait_for(c.echo(f"wake {k}"), 30))
                awake.append(await asyncio.wait_for(c.echo(f"again {k}"), 30))
            await nextReports(server, 1)
            out["live_after_wakes"] = server.live
            out["wake_ms"] = {
                "n": len(wake),
                "median": statistics.median(wake) * 1e3,
                "p99": pct(wake, 99) * 1e3,
                "max": max(wake) * 1e3,
                "all": [round(w * 1e3, 3) for w in wake],
            }
            out["awake_ms"] = {
                "n": len(awake),
                "median": statistics.median(awake) * 1e3,
                "p99": pct(awake, 99) * 1e3,
                "max": max(awake) * 1e3,
                "all": [round(w * 1e3, 3) for w in awake],
            }
        # Still every socket open at the end?
        alive = sum(1 for c in conns if not c.writer.transport.is_closing() and not c.reader.at_eof())
        out["sockets_open_at_end"] = alive
        out["server_exit"] = None
        return out
    finally:
        for c in conns:
            c.close()
        server.stop()
        out["server_exit"] = server.proc.returncode


async def referenceRun(sockets: int) -> dict:
    server = startReference()
    out: dict = {"mode": "reference", "sockets": sockets, "log": str(server.logPath)}
    conns: list[Conn] = []
    try:
        await warmUp(server, "/")
        out["baseline_rss_kib"] = await stableRss(server)
        conns, took = await openMany(server.port, ["/"] * sockets)
        out["open_seconds"] = round(took, 2)
        out["rss_kib"] = await stableRss(server)
        out["delta_kib"] = out["rss_kib"] - out["baseline_rss_kib"]
        out["kib_per_socket"] = out["delta_kib"] / sockets
        # The awake-echo comparison's reference: one round trip on an idle Autobahn socket.
        rt = [await asyncio.wait_for(conns[k].echo(f"ref {k}"), 30) for k in range(min(50, sockets))]
        out["echo_ms"] = {"n": len(rt), "median": statistics.median(rt) * 1e3, "p99": pct(rt, 99) * 1e3}
        return out
    finally:
        for c in conns:
            c.close()
        server.stop()
        out["server_exit"] = server.proc.returncode


def loadavg() -> str:
    """Other load on this 2-core machine makes the timings noisy: recorded with the results."""
    try:
        return open("/proc/loadavg").read().strip()
    except OSError:
        return "?"


def machine() -> dict:
    info = {"uname": " ".join(platform.uname()), "cpus": os.cpu_count()}
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                info["mem_total_kib"] = int(line.split()[1])
    except OSError:
        pass
    return info


def versions() -> dict:
    out = {"python": platform.python_version()}
    for mod in ("twisted", "autobahn", "dotwist"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception as e:  # pragma: no cover
            out[mod] = f"? ({e})"
    try:
        out["git_head"] = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        out["dotwist_dirty"] = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--", "dotwist"], cwd=REPO, capture_output=True, text=True, timeout=10
            ).stdout.strip()
        )
    except (OSError, subprocess.SubprocessError):
        pass
    return out


def table(r: dict, sockets: int, objects: int) -> str:
    h, p, ref = r["hibernated"], r["plain"], r["reference"]
    per = sockets // objects
    perObject = (p["rss_kib"] - p["baseline_rss_kib"] - (h["rss_kib"] - h["baseline_rss_kib"])) / objects
    r["live_object_kib_estimate"] = perObject
    rows = [
        ("| figure | hibernated (`/hibernate/k`) | plain (`/plain/k`) | reference (Autobahn echo) |"),
        ("|---|---|---|---|"),
        (f"| sockets held (objects × per object) | {sockets:,} ({objects} × {per}) | {sockets:,} ({objects} × {per}) | {sockets:,} |"),
        (f"| live objects when measured | {h['live_at_measure']} | {p['live_at_measure']} | — |"),
        (f"| baseline RSS (MiB) | {h['baseline_rss_kib'] / 1024:.1f} | {p['baseline_rss_kib'] / 1024:.1f} | {ref['baseline_rss_kib'] / 1024:.1f} |"),
        (f"| RSS holding the sockets (MiB) | {h['rss_kib'] / 1024:.1f} | {p['rss_kib'] / 1024:.1f} | {ref['rss_kib'] / 1024:.1f} |"),
        (f"| **KiB per socket** (RSS − baseline) / sockets | **{h['kib_per_socket']:.2f}** | **{p['kib_per_socket']:.2f}** | **{ref['kib_per_socket']:.2f}** |"),
        (f"| time to open + echo all sockets (s) | {h['open_seconds']} | {p['open_seconds']} | {ref['open_seconds']} |"),
        (f"| (plain − hibernated) / objects: KiB per live object (rough) | | {perObject:.1f} | |"),
    ]
    w, a = h.get("wake_ms"), h.get("awake_ms")
    if w:
        rows += [
            (f"| wake a hibernated object: message → echo, ms (median / p99, n={w['n']}) | {w['median']:.2f} / {w['p99']:.2f} | | |"),
            (f"| same socket again, object awake: ms (median / p99) | {a['median']:.2f} / {a['p99']:.2f} | | {ref['echo_ms']['median']:.2f} / {ref['echo_ms']['p99']:.2f} (idle Autobahn socket) |"),
        ]
    return "\n".join(rows)


async def bench(args) -> dict:
    sockets, objects = (1000, 10) if args.quick else (args.sockets, args.objects)
    wakes = min(50, objects)
    results: dict = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([".venv/bin/python", "bench/hibernation_bench.py", *sys.argv[1:]]),
        "machine": machine(),
        "versions": versions(),
        "settings": {
            "sockets": sockets,
            "objects": objects,
            "hibernateAfter_s": HIBERNATE_AFTER,
            "evictAfter_s": HIBERNATE_AFTER,
            "storage": "memory",
            "server_core": SERVER_CORE,
            "client_core": CLIENT_CORE,
            "fd_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
            "rss": "VmRSS from /proc/PID/status, read when two readings 0.5 s apart agree within 0.5 %",
        },
    }
    loadStart = loadavg()
    print(f"hibernated: {sockets} sockets over {objects} objects ...", flush=True)
    results["hibernated"] = await dotwistRun("hibernate", sockets, objects, wakes, args.diag)
    print(f"plain: {sockets} sockets over {objects} objects ...", flush=True)
    results["plain"] = await dotwistRun("plain", sockets, objects, 0, args.diag)
    print(f"reference: {sockets} sockets ...", flush=True)
    results["reference"] = await referenceRun(sockets)
    results["table"] = table(results, sockets, objects)
    results["loadavg_at_start_end"] = [loadStart, loadavg()]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000 sockets over 10 objects")
    parser.add_argument("--sockets", type=int, default=10_000)
    parser.add_argument("--objects", type=int, default=100)
    parser.add_argument("--diag", action="store_true", help="tracemalloc + gc counts in the servers (slow)")
    parser.add_argument("--out", help="JSON path (default bench/results/hibernation.json, -quick with --quick)")
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.diag)
        return
    if args.sockets % args.objects:
        parser.error("--sockets must be a multiple of --objects")
    limit = raiseFdLimit()
    need = (1000 if args.quick else args.sockets) + 200
    if limit < need:
        sys.exit(f"the fd limit is {limit}; {need} are needed (raise the hard limit: ulimit -Hn)")
    pin(CLIENT_CORE)
    results = asyncio.run(bench(args))
    out = Path(args.out) if args.out else RESULTS / ("hibernation-quick.json" if args.quick else "hibernation.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print()
    print(results["table"])
    print()
    print(f"command: {results['command']}")
    out = out.resolve()
    print(f"written: {out.relative_to(REPO) if out.is_relative_to(REPO) else out}")
    if args.diag:
        for mode in ("hibernated", "plain"):
            print(f"\n## {mode}: tracemalloc, held sockets vs baseline (top lines)")
            print("\n".join(results[mode]["diag_tracemalloc"]))
            print(f"\n## {mode}: gc-tracked objects by type, held sockets vs baseline (top)")
            print("\n".join(results[mode]["diag_types"]))
            print(f"\n## {mode}: what refers to the upgrade's twisted.web Request and HTTPChannel")
            print("\n".join(results[mode]["diag_refs"]))


if __name__ == "__main__":
    main()
