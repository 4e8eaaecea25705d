"""The chat example under load: 100 rooms of 10 members over loopback, and memory per hibernated
member.

    .venv/bin/python bench/chat_bench.py            # about 1.5 minutes
    .venv/bin/python bench/chat_bench.py --quick    # 3 s windows, 2,000 idle members

Each figure gets a freshly started server pinned to core 0, running dotwist.examples.chat the way
`twistd -n dotwist --app dotwist.examples.chat` builds it (``dotwist.tap.makeService``, process
tuning included), except for two settings a benchmark needs: hibernateAfter = evictAfter = 1 s
(limits with no command-line option, which is why this file starts the server itself with
``--serve``), and a rate limit that does not throttle (RATE_LIMIT_BURST = 10^9). The rate
limiter is still asked, by RPC, before every message. The client (this process, asyncio) runs
on core 1.

1. throughput, for ``--storage sqlite`` (the default: one SQLite file per room, fsync per
   commit) and ``--storage memory`` (the reference: the same app without the disk). 100 rooms,
   10 members each, every member with its own CF-Connecting-IP (so 1,000 rate limiters). Each
   room keeps 4 messages in flight, sent by its members in turn; a message counts as delivered
   when all 10 members of its room have received it, and the room then sends the next. After a
   warm-up, the number of messages delivered to all members in the window, per second, and the
   time from send to the last member's copy.
2. memory per hibernated member: a fresh server, a warm-up room, then the baseline RSS; N members
   join (10 per room) and stay idle; once the server reports no live object (every room
   hibernated), (RSS - baseline) / N. SQLite storage, as `twistd dotwist` runs it: a hibernated
   room's database is closed (``--storage memory`` keeps an in-memory database per room for the
   life of the process, which is storage, not the socket). The reference is the hibernating seed
   (dotwist.examples.websocket_hibernation_server: one hibernated socket with no attachment)
   holding the same number of idle sockets on one object, measured the same way in the same run.

RSS is VmRSS from /proc/PID/status once two readings 0.5 s apart agree within 0.5 %.
Writes bench/results/chat.json (--quick: chat-quick.json) and prints a markdown table.
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
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
LOGS = HERE / "build" / "logs"
SERVER_CORE, CLIENT_CORE = 0, 1
ROOMS, MEMBERS, IN_FLIGHT = 100, 10, 4


def pin(core: int) -> None:
    try:
        if core < (os.cpu_count() or 1):
            os.sched_setaffinity(0, {core})
    except (AttributeError, OSError):
        pass


def raiseFdLimit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# --- the server: `--serve PORT APP STORAGE DATADIR` --------------------------------------------


def serve(port: int, app: str, storage: str, dataDir: str) -> None:
    pin(SERVER_CORE)
    from dotwist.tap import Options, makeService

    options = Options()  # installs the reactor twistd dotwist runs on (asyncio), as twistd does
    options.parseOptions([
        "--app", app, "--storage", storage, "--data-dir", dataDir,
        "--listen", f"tcp:{port}:interface=127.0.0.1",
        "--var", "RATE_LIMIT_BURST=1000000000",
    ])
    options["limits"] = options["limits"].replace(hibernateAfter=1.0, evictAfter=1.0)
    from twisted.internet import reactor, task

    sys.stdout.write(f"reactor {type(reactor).__name__}\n")
    service = makeService(options, reactor)

    def report() -> None:
        sys.stdout.write(f"live-objects {service.runtime.registry.liveObjects()}\n")
        sys.stdout.flush()

    service.startService()
    task.LoopingCall(report).start(0.5)
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    reactor.run()


class Server:
    def __init__(self, name: str, app: str, storage: str) -> None:
        self.name = name
        self.port = freePort()
        self.dataDir = tempfile.mkdtemp(prefix="chat-bench-")
        LOGS.mkdir(parents=True, exist_ok=True)
        self.logPath = LOGS / f"chat-{name}.log"
        self.log = open(self.logPath, "w")
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--serve", str(self.port), app, storage, self.dataDir],
            cwd=REPO, stdout=subprocess.PIPE, stderr=self.log, text=True, bufsize=1,
            preexec_fn=lambda: pin(SERVER_CORE),
        )
        self.live: Optional[int] = None
        self.reports = 0
        threading.Thread(target=self._read, daemon=True).start()
        end = time.monotonic() + 30
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {self.proc.returncode}; see {self.logPath}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)  # polling a subprocess's port
        self.stop()
        raise RuntimeError(f"{name} did not listen within 30 s; see {self.logPath}")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.log.write(line)
            if line.startswith("live-objects "):
                self.live = int(line.split()[1])
                self.reports += 1

    def rss(self) -> int:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def cpu(self) -> float:
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()
        shutil.rmtree(self.dataDir, ignore_errors=True)


def freePort() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the client -----------------------------------------------------------------------------


class Member(asyncio.Protocol):
    """One WebSocket client: sends masked text frames, hands each received text frame on."""

    def __init__(self, path: str, ip: str, onFrame: Callable[[bytes], None]) -> None:
        self.request = (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n"
            f"Sec-WebSocket-Version: 13\r\nCF-Connecting-IP: {ip}\r\n\r\n"
        ).encode()
        self.onFrame = onFrame
        self.buffer = b""
        self.upgraded = False
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.upgraded:
            head, sep, rest = self.buffer.partition(b"\r\n\r\n")
            if not sep:
                return
            if b" 101 " not in head.split(b"\r\n", 1)[0] + b" ":
                self.opened.set_exception(ConnectionError(head[:80].decode(errors="replace")))
                return
            self.upgraded, self.buffer = True, rest
            self.opened.set_result(None)
        buf, i = self.buffer, 0
        while len(buf) - i >= 2:
            n, start = buf[i + 1] & 0x7F, i + 2
            if n == 126:
                if len(buf) - i < 4:
                    break
                n, start = struct.unpack_from("!H", buf, i + 2)[0], i + 4
            elif n == 127:
                if len(buf) - i < 10:
                    break
                n, start = struct.unpack_from("!Q", buf, i + 2)[0], i + 10
            if len(buf) < start + n:
                break
            if buf[i] & 0x0F == 1:
                self.onFrame(buf[start : start + n])
            i = start + n
        self.buffer = buf[i:]

    def send(self, text: str) -> None:
        payload = text.encode()
        n = len(payload)
        head = struct.pack("!BB", 0x81, 0x80 | n) if n < 126 else struct.pack("!BBH", 0x81, 0xFE, n)
        self.transport.write(head + b"\0\0\0\0" + payload)  # a zero mask: payload as is

    def connection_lost(self, exc: Optional[Exception]) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError("closed during the handshake"))


async def join(port: int, room: str, name: str, ip: str, onFrame: Callable[[bytes], None]) -> Member:
    loop = asyncio.get_running_loop()
    welcome: asyncio.Future[None] = loop.create_future()

    def first(frame: bytes) -> None:
        if not welcome.done() and frame.startswith(b'{"type":"welcome"'):
            welcome.set_result(None)
        onFrame(frame)

    _, member = await loop.create_connection(
        lambda: Member(f"/api/room/{room}/websocket?name={name}", ip, first), "127.0.0.1", port
    )
    await asyncio.wait_for(member.opened, 30)
    await asyncio.wait_for(welcome, 30)
    return member


async def joinMany(port: int, rooms: int, members: int, onFrame: Callable[[int, bytes], None]) -> list[list[Member]]:
    sem = asyncio.Semaphore(50)

    async def one(r: int, m: int) -> Member:
        async with sem:
            return await join(port, f"room-{r}", f"member-{m}", f"ip-{r}-{m}", lambda f, r=r: onFrame(r, f))

    flat = await asyncio.wait_for(
        asyncio.gather(*(one(r, m) for r in range(rooms) for m in range(members))), 300
    )
    return [flat[r * members : (r + 1) * members] for r in range(rooms)]


async def waitFor(cond: Callable[[], bool], deadline: float, what: str) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if cond():
            return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"timed out after {deadline} s waiting for {what}")


async def stableRss(server: Server, deadline: float = 15.0) -> int:
    end, last = time.monotonic() + deadline, server.rss()
    while time.monotonic() < end:
        await asyncio.sleep(0.5)
        now = server.rss()
        if abs(now - last) <= 0.005 * last:
            return now
        last = now
    return last


# --- the figures ---------------------------------------------------------------------------


async def throughput(storage: str, warmup: float, window: float) -> dict[str, Any]:
    server = Server(f"throughput-{storage}", "dotwist.examples.chat", storage)
    try:
        sentAt: list[dict[int, float]] = [{} for _ in range(ROOMS)]
        counts: list[dict[int, int]] = [{} for _ in range(ROOMS)]
        nextSeq = [0] * ROOMS
        state = {"measuring": False, "sending": True, "delivered": 0, "errors": 0, "inflight": 0}
        latencies: list[float] = []
        rooms: list[list[Member]] = []

        def sendNext(r: int) -> None:
            seq = nextSeq[r]
            nextSeq[r] += 1
            sentAt[r][seq] = time.perf_counter()
            state["inflight"] += 1
            rooms[r][seq % MEMBERS].send('{"type":"message","text":"%d"}' % seq)

        def onFrame(r: int, frame: bytes) -> None:
            if not frame.startswith(b'{"type":"message"'):
                if frame.startswith(b'{"type":"error"'):
                    state["errors"] += 1
                return
            seq = int(json.loads(frame)["text"])
            got = counts[r][seq] = counts[r].get(seq, 0) + 1
            if got == MEMBERS:
                del counts[r][seq]
                started = sentAt[r].pop(seq)
                state["inflight"] -= 1
                if state["measuring"]:
                    state["delivered"] += 1
                    latencies.append(time.perf_counter() - started)
                if state["sending"]:
                    sendNext(r)

        t0 = time.monotonic()
        rooms.extend(await joinMany(server.port, ROOMS, MEMBERS, onFrame))
        joinSeconds = time.monotonic() - t0
        for r in range(ROOMS):
            for _ in range(IN_FLIGHT):
                sendNext(r)
        await asyncio.sleep(warmup)  # the load runs meanwhile: this is the warm-up's length
        cpu0, client0 = server.cpu(), resource.getrusage(resource.RUSAGE_SELF)
        state["measuring"] = True
        t0 = time.perf_counter()
        await asyncio.sleep(window)  # the measured window, under load
        state["measuring"] = False
        elapsed = time.perf_counter() - t0
        cpu1, client1 = server.cpu(), resource.getrusage(resource.RUSAGE_SELF)
        state["sending"] = False
        try:
            await waitFor(lambda: state["inflight"] == 0, 30, "the messages in flight")
        except RuntimeError:
            pass  # reported as "undelivered": a message whose copies never all arrived
        undelivered = state["inflight"]
        for members in rooms:
            for member in members:
                member.transport.abort()
        rate = state["delivered"] / elapsed
        return {
            "storage": storage,
            "rooms": ROOMS, "members": MEMBERS, "in_flight_per_room": IN_FLIGHT,
            "join_seconds": round(joinSeconds, 2),
            "window_s": round(elapsed, 2),
            "messages_delivered_to_all": state["delivered"],
            "messages_per_s": rate,
            "frames_per_s": rate * MEMBERS,
            "latency_ms": {
                "p50": statistics.median(latencies) * 1e3,
                "p99": sorted(latencies)[int(0.99 * (len(latencies) - 1))] * 1e3,
            },
            "errors": state["errors"],
            "undelivered": undelivered,
            "server_cpu_cores": (cpu1 - cpu0) / elapsed,
            "client_cpu_cores": (client1.ru_utime + client1.ru_stime - client0.ru_utime - client0.ru_stime) / elapsed,
            "log": str(server.logPath),
        }
    finally:
        server.stop()


async def memory(kind: str, count: int) -> dict[str, Any]:
    app = "dotwist.examples.chat" if kind == "chat" else "dotwist.examples.websocket_hibernation_server"
    server = Server(f"memory-{kind}", app, "sqlite")
    held: list[Any] = []
    try:
        loop = asyncio.get_running_loop()

        async def seedSocket() -> Any:
            _, member = await loop.create_connection(lambda: Member("/websocket", "-", lambda f: None), "127.0.0.1", server.port)
            await asyncio.wait_for(member.opened, 30)
            return member

        async def open(n: int) -> list[Any]:
            if kind == "chat":
                return [m for room in await joinMany(server.port, max(1, n // MEMBERS), min(n, MEMBERS), lambda r, f: None) for m in room]
            sem = asyncio.Semaphore(50)

            async def one() -> Any:
                async with sem:
                    return await seedSocket()

            return list(await asyncio.gather(*(one() for _ in range(n))))

        warm = await open(MEMBERS)  # lazy imports and first-use caches are paid before the baseline
        for member in warm:
            member.transport.abort()
        await waitFor(lambda: server.live == 0, 30, "the warm-up to leave memory")
        baseline = await stableRss(server)
        t0 = time.monotonic()
        held = await open(count)
        openSeconds = time.monotonic() - t0
        await waitFor(lambda: server.live == 0, 60, "every room to hibernate")
        reports = server.reports
        await waitFor(lambda: server.reports > reports, 10, "another report")
        rss = await stableRss(server)
        return {
            "kind": kind, "members": count, "open_seconds": round(openSeconds, 2),
            "baseline_rss_kib": baseline, "rss_kib": rss, "live_objects_at_measure": server.live,
            "kib_per_member": (rss - baseline) / count,
        }
    finally:
        for member in held:
            member.transport.abort()
        server.stop()


def markdown(result: dict[str, Any]) -> str:
    t = {row["storage"]: row for row in result["throughput"]}
    m = {row["kind"]: row for row in result["memory"]}
    lines = [
        "| figure | chat, SQLite (as `twistd dotwist` runs it) | chat, memory storage (reference) | ratio |",
        "|---|---:|---:|---:|",
        f"| messages/s delivered to all 10 members ({ROOMS} rooms x {MEMBERS}) | {t['sqlite']['messages_per_s']:,.0f} | {t['memory']['messages_per_s']:,.0f} | {t['sqlite']['messages_per_s'] / t['memory']['messages_per_s']:.2f}x |",
        f"| frames/s sent to members | {t['sqlite']['frames_per_s']:,.0f} | {t['memory']['frames_per_s']:,.0f} | |",
        f"| send to last copy, p50 / p99 (ms) | {t['sqlite']['latency_ms']['p50']:.1f} / {t['sqlite']['latency_ms']['p99']:.1f} | {t['memory']['latency_ms']['p50']:.1f} / {t['memory']['latency_ms']['p99']:.1f} | |",
        f"| server CPU / client CPU (cores) | {t['sqlite']['server_cpu_cores']:.2f} / {t['sqlite']['client_cpu_cores']:.2f} | {t['memory']['server_cpu_cores']:.2f} / {t['memory']['client_cpu_cores']:.2f} | |",
        "",
        "| figure | chat member, hibernated | hibernating seed socket (reference) | ratio |",
        "|---|---:|---:|---:|",
        f"| RSS per idle member/socket ({m['chat']['members']:,}, every object hibernated), KiB | {m['chat']['kib_per_member']:.1f} | {m['seed']['kib_per_member']:.1f} | {m['chat']['kib_per_member'] / m['seed']['kib_per_member']:.2f}x |",
    ]
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    warmup, window, idle = (1.0, 3.0, 2000) if args.quick else (2.0, 10.0, 5000)
    result: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([".venv/bin/python bench/chat_bench.py"] + (["--quick"] if args.quick else [])),
        "machine": {"uname": " ".join(platform.uname()), "cpus": os.cpu_count(),
                    "loadavg_at_start": os.getloadavg()},
        "git_head": subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip(),
        "throughput": [], "memory": [],
    }
    for storage in ("sqlite", "memory"):
        result["throughput"].append(await throughput(storage, warmup, window))
        print(json.dumps(result["throughput"][-1]), flush=True)
    for kind in ("chat", "seed"):
        result["memory"].append(await memory(kind, idle))
        print(json.dumps(result["memory"][-1]), flush=True)
    result["machine"]["loadavg_at_end"] = os.getloadavg()
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--serve", nargs=4, metavar=("PORT", "APP", "STORAGE", "DATADIR"), help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.serve:
        raiseFdLimit()
        serve(int(args.serve[0]), args.serve[1], args.serve[2], args.serve[3])
        sys.exit(0)
    raiseFdLimit()
    pin(CLIENT_CORE)
    outcome = asyncio.run(main(args))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / ("chat-quick.json" if args.quick else "chat.json")
    out.write_text(json.dumps(outcome, indent=2) + "\n")
    print(markdown(outcome))
    print(f"wrote {out.relative_to(REPO)}")
