"""The hostile clients of issue 19 against one ``twistd dotwist`` at once, for a bounded time.

    .venv/bin/python bench/soak_bench.py                    # 60 s, Twisted's asyncio reactor
    .venv/bin/python bench/soak_bench.py --reactor epoll    # the same under -r epoll
    .venv/bin/python bench/soak_bench.py --duration 20      # shorter

The server is ``twistd -n dotwist --app soak_app`` (``bench/apps/soak_app.py``: the seed, objects
made on demand, and a "notes" object) on a loopback port, with its data in a temporary directory
and ``--evict-after 5s`` (so that the objects the attack made leave memory during the run's last
phase). While it runs, all at once:

- **slowloris**: ``--slowloris`` connections (default 500) that send a request line and then one
  header byte every 2 s; each reconnects when the server closes it (``408`` after the header
  timeout);
- **huge announced bodies**: 2 clients in a loop, each sending ``Content-Length: 50000000000`` and
  then body bytes until the server answers (``413`` expected);
- **endless chunked bodies**: 2 clients in a loop, each sending 64 KiB chunks until the server
  answers (``413``) or closes;
- **WebSocket clients that never read**: 2 that send the seed 64 KiB messages as fast as the
  server takes them and never read the echoes, and 2 that send pings and never read the pongs
  (each reconnects if the server drops it);
- **many objects**: 4 keep-alive connections creating a new object per request (``POST
  /obj/<n>``: the object counts it in its storage), as fast as they are answered;
- **a normal client**: one keep-alive HTTP connection writing note ``n`` (``POST /notes/<n>``,
  a durable write) and one WebSocket echoing ``normal <n>`` through the seed, in turn, every 50 ms.

The server runs with ``--max-request-body-size 8MiB`` (so that the body attackers meet the limit
many times a run) and ``--max-open-databases 256`` (``--open-databases``).

Checked (the run fails if not): the normal client was served throughout (every request answered
correctly within 5 s, and in every second of the run at least one HTTP write and one echo
completed); the server's RSS and open descriptors stayed under ``--max-rss`` (300 MiB: about
70 MiB idle, 256 open databases at about 150 KiB, the objects of the last 5 s at about 10 KiB,
500 sockets, two bodies' worth of 8 MiB, and what the non-reading clients may queue) and
``--max-fds`` (the slowloris connections, two per open database, and 150);
once the attack stops and the objects are evicted, descriptors come back to within 20 of where
they were; every note the normal client wrote is there, and still there after the server is
stopped (SIGTERM) and started again. Printed: RSS and descriptors before, at most during, and
after; what each attacker achieved; the normal client's latencies. JSON to ``--out``.

Runs in one process against the server (a subprocess); no third-party client code. The machine is
shared: latencies are noisy; the bounds are what is checked.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from typing import Any, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
MiB = 1024 * 1024


# -- the server ---------------------------------------------------------------------------------


def freePort() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def startServer(port: int, dataDir: str, reactor: str, log: str, openDatabases: int) -> subprocess.Popen[bytes]:
    twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
    command = [twistd, "-n", "--pidfile="]
    if reactor != "asyncio":
        command += ["-r", reactor]
    command += [
        "dotwist", "--app", "soak_app", "--listen", f"tcp:{port}:interface=127.0.0.1",
        "--data-dir", dataDir, "--evict-after", "5s", "--max-request-body-size", "8MiB",
    ]
    if openDatabases:
        command += ["--max-open-databases", str(openDatabases)]
    paths = [os.path.join(HERE, "apps")] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths))
    process = subprocess.Popen(command, env=env, stdout=open(log, "ab"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}; see {log}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process
        except OSError:
            time.sleep(0.1)  # a subprocess's port: nothing to wait on but polling
    raise RuntimeError(f"the server did not listen within 30 s; see {log}")


def stopServer(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


# -- raw clients ----------------------------------------------------------------------------------


class Counts(dict[str, int]):
    def add(self, key: str, n: int = 1) -> None:
        self[key] = self.get(key, 0) + n


async def connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port, limit=4 * MiB)


async def readResponse(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ")[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    body = await reader.readexactly(length) if length else b""
    return status, body


def wsKey() -> str:
    return base64.b64encode(os.urandom(16)).decode()


def frame(payload: bytes, opcode: int) -> bytes:
    n = len(payload)
    mask = os.urandom(4)
    if n < 126:
        header = bytes((0x80 | opcode, 0x80 | n))
    elif n <= 0xFFFF:
        header = bytes((0x80 | opcode, 0x80 | 126)) + struct.pack("!H", n)
    else:
        header = bytes((0x80 | opcode, 0x80 | 127)) + struct.pack("!Q", n)
    key = (mask * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big") if n else b""
    return header + mask + masked


async def wsOpen(port: int, path: str = "/websocket") -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await connect(port)
    writer.write(
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {wsKey()}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    if b" 101 " not in head.split(b"\r\n")[0]:
        raise ConnectionError(head.split(b"\r\n")[0].decode())
    return reader, writer


async def wsReceive(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    b0, b1 = await reader.readexactly(2)
    length = b1 & 0x7F
    if length == 126:
        length = struct.unpack("!H", await reader.readexactly(2))[0]
    elif length == 127:
        length = struct.unpack("!Q", await reader.readexactly(8))[0]
    return b0 & 0x0F, await reader.readexactly(length)


def retrieve(future: "Optional[asyncio.Future[Any]]") -> None:
    if future is not None:
        if future.done():
            future.exception() if not future.cancelled() else None
        else:
            future.cancel()


def closeQuietly(writer: Optional[asyncio.StreamWriter]) -> None:
    if writer is not None:
        try:
            writer.transport.abort()
        except Exception:
            pass


# -- the attackers --------------------------------------------------------------------------------


async def slowloris(port: int, counts: Counts) -> None:
    writer = None
    try:
        while True:
            try:
                reader, writer = await connect(port)
                counts.add("connections")
                writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
                while not reader.at_eof():
                    writer.write(b"x")
                    await writer.drain()
                    try:
                        data = await asyncio.wait_for(reader.read(4096), 2.0)
                    except asyncio.TimeoutError:
                        continue
                    if data.startswith(b"HTTP/1.1 408"):
                        counts.add("408")
                    if not data:
                        break
            except (ConnectionError, OSError):
                pass
            closeQuietly(writer)
            counts.add("closed by server")
    finally:
        closeQuietly(writer)


async def hugeBody(port: int, counts: Counts) -> None:
    chunk = b"\0" * (1 * MiB)
    writer = None
    try:
        while True:
            answer = None
            try:
                reader, writer = await connect(port)
                writer.write(b"POST /obj/huge HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 50000000000\r\n\r\n")
                answer = asyncio.ensure_future(readResponse(reader))
                while not answer.done():
                    writer.write(chunk)
                    counts.add("bytes sent", len(chunk))
                    await asyncio.wait([answer], timeout=0.05)
                    if writer.transport.get_write_buffer_size() > 4 * MiB:
                        await asyncio.wait([answer], timeout=5)
                status, _ = answer.result()
                counts.add(str(status))
            except (ConnectionError, OSError, asyncio.IncompleteReadError):
                counts.add("dropped")
            finally:
                retrieve(answer)
            closeQuietly(writer)
    finally:
        closeQuietly(writer)


async def endlessChunked(port: int, counts: Counts) -> None:
    piece = b"10000\r\n" + b"c" * 0x10000 + b"\r\n"
    writer = None
    try:
        while True:
            answer = None
            try:
                reader, writer = await connect(port)
                writer.write(b"POST /obj/chunked HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n")
                answer = asyncio.ensure_future(readResponse(reader))
                while not answer.done():
                    writer.write(piece * 16)
                    counts.add("bytes sent", len(piece) * 16)
                    await asyncio.wait([answer], timeout=0.02)
                    if writer.transport.get_write_buffer_size() > 4 * MiB:
                        await asyncio.wait([answer], timeout=5)
                status, _ = answer.result()
                counts.add(str(status))
            except (ConnectionError, OSError, asyncio.IncompleteReadError):
                counts.add("dropped")
            finally:
                retrieve(answer)
            closeQuietly(writer)
    finally:
        closeQuietly(writer)


async def nonReader(port: int, kind: str, counts: Counts) -> None:
    """Sends to the seed and never reads: 64 KiB messages, or pings."""
    unit = frame(b"m" * 65536, 2) if kind == "messages" else frame(b"p" * 125, 9) * 512
    writer = None
    try:
        while True:
            try:
                reader, writer = await wsOpen(port)
                counts.add("connections")
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                while True:
                    writer.write(unit)
                    # drain() waits while the server does not read: that is the attack being held
                    await writer.drain()
                    counts.add("bytes sent", len(unit))
            except (ConnectionError, OSError, asyncio.IncompleteReadError):
                counts.add("dropped by server")
            closeQuietly(writer)
            await asyncio.sleep(0.5)
    finally:
        closeQuietly(writer)


async def manyObjects(port: int, start: int, step: int, counts: Counts) -> None:
    writer = None
    n = start
    try:
        while True:
            try:
                reader, writer = await connect(port)
                while True:
                    writer.write(f"POST /obj/o{n} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n".encode())
                    status, body = await readResponse(reader)
                    counts.add(str(status))
                    if status == 200 and body == b"1":
                        counts.add("objects created")
                    n += step
            except (ConnectionError, OSError, asyncio.IncompleteReadError):
                counts.add("dropped")
            closeQuietly(writer)
    finally:
        closeQuietly(writer)


# -- the normal client ------------------------------------------------------------------------------


class Normal:
    def __init__(self, port: int) -> None:
        self.port = port
        self.written = 0
        self.echoes = 0
        self.errors: list[str] = []
        self.latencies: list[float] = []
        self.doneAt: list[tuple[float, str]] = []

    async def run(self) -> None:
        http = ws = None
        try:
            http = await connect(self.port)
            ws = await wsOpen(self.port)
            while True:
                n = self.written
                started = time.monotonic()
                try:
                    http[1].write(f"POST /notes/{n} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n".encode())
                    status, body = await asyncio.wait_for(readResponse(http[0]), 5)
                    if (status, body) != (200, f"ok {n}".encode()):
                        self.errors.append(f"note {n}: {status} {body[:80]!r}")
                    else:
                        self.written += 1
                        self.doneAt.append((time.monotonic(), "http"))
                    self.latencies.append(time.monotonic() - started)
                    started = time.monotonic()
                    ws[1].write(frame(f"normal {n}".encode(), 1))
                    opcode, payload = await asyncio.wait_for(wsReceive(ws[0]), 5)
                    if (opcode, payload) != (1, f"[Durable Object]: normal {n}".encode()):
                        self.errors.append(f"echo {n}: {opcode} {payload[:80]!r}")
                    else:
                        self.echoes += 1
                        self.doneAt.append((time.monotonic(), "ws"))
                    self.latencies.append(time.monotonic() - started)
                except (asyncio.TimeoutError, ConnectionError, OSError, asyncio.IncompleteReadError) as e:
                    self.errors.append(f"round {n}: {type(e).__name__}: {e}")
                    closeQuietly(http[1])
                    closeQuietly(ws[1])
                    http = await connect(self.port)
                    ws = await wsOpen(self.port)
                await asyncio.sleep(0.05)
        finally:
            closeQuietly(http[1] if http else None)
            closeQuietly(ws[1] if ws else None)


async def notes(port: int) -> bytes:
    reader, writer = await connect(port)
    try:
        writer.write(b"GET /notes HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        status, body = await asyncio.wait_for(readResponse(reader), 30)
        assert status == 200, status
        return body
    finally:
        closeQuietly(writer)


# -- the run ----------------------------------------------------------------------------------------


async def sample(pid: int, into: list[tuple[float, int, int]], stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            into.append((time.monotonic(), rss(pid), fds(pid)))
        except (OSError, RuntimeError):
            return
        try:
            await asyncio.wait_for(stop.wait(), 0.5)
        except asyncio.TimeoutError:
            pass


async def soak(args: argparse.Namespace, port: int, pid: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    normal = Normal(port)
    warm = asyncio.ensure_future(normal.run())
    await asyncio.sleep(3)
    out["rssBefore"], out["fdsBefore"] = rss(pid), fds(pid)
    counts: dict[str, Counts] = {
        name: Counts()
        for name in ("slowloris", "huge body", "chunked body", "non-reader (messages)",
                     "non-reader (pings)", "many objects")
    }
    tasks = [asyncio.ensure_future(slowloris(port, counts["slowloris"])) for _ in range(args.slowloris)]
    tasks += [asyncio.ensure_future(hugeBody(port, counts["huge body"])) for _ in range(2)]
    tasks += [asyncio.ensure_future(endlessChunked(port, counts["chunked body"])) for _ in range(2)]
    tasks += [asyncio.ensure_future(nonReader(port, "messages", counts["non-reader (messages)"])) for _ in range(2)]
    tasks += [asyncio.ensure_future(nonReader(port, "pings", counts["non-reader (pings)"])) for _ in range(2)]
    tasks += [asyncio.ensure_future(manyObjects(port, i, 4, counts["many objects"])) for i in range(4)]
    samples: list[tuple[float, int, int]] = []
    stopSampling = asyncio.Event()
    sampler = asyncio.ensure_future(sample(pid, samples, stopSampling))
    started = time.monotonic()
    await asyncio.sleep(args.duration)
    ended = time.monotonic()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    out["rssDuring"] = max(s[1] for s in samples)
    out["fdsDuring"] = max(s[2] for s in samples)
    # The attack is over: the objects it made leave memory (evict-after 5 s), sockets close.
    settle = time.monotonic() + 30
    while time.monotonic() < settle and fds(pid) > out["fdsBefore"] + 20:
        await asyncio.sleep(0.5)
    await asyncio.sleep(6)
    out["rssAfter"], out["fdsAfter"] = rss(pid), fds(pid)
    stopSampling.set()
    await sampler
    warm.cancel()
    await asyncio.gather(warm, return_exceptions=True)
    out["attackers"] = {name: dict(c) for name, c in counts.items()}
    # Served throughout: an HTTP write and an echo completed in every second of the attack.
    gaps = []
    for kind in ("http", "ws"):
        times = [t for t, k in normal.doneAt if k == kind and started <= t <= ended]
        edges = [started] + times + [ended]
        gaps.append(max(b - a for a, b in zip(edges, edges[1:])))
    out["normal"] = {
        "written": normal.written,
        "echoes": normal.echoes,
        "errors": normal.errors[:20],
        "errorCount": len(normal.errors),
        "latencyMedian": sorted(normal.latencies)[len(normal.latencies) // 2],
        "latencyMax": max(normal.latencies),
        "longestGap": max(gaps),
    }
    out["notesAfter"] = (await notes(port)).decode()
    return out


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--reactor", default="asyncio", help="asyncio (twistd dotwist's default) or epoll")
    parser.add_argument("--slowloris", type=int, default=500)
    parser.add_argument("--open-databases", type=int, default=256,
                        help="the server's --max-open-databases (default 256; 0: not given)")
    parser.add_argument("--max-rss", type=int, default=300, help="MiB the server may reach (default 300)")
    parser.add_argument("--max-fds", type=int, default=None,
                        help="descriptors the server may hold (default: slowloris + 2 x open databases + 150)")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "soak.json"))
    args = parser.parse_args(argv)
    if args.max_fds is None:
        args.max_fds = args.slowloris + 2 * args.open_databases + 150

    directory = tempfile.mkdtemp(prefix="dotwist-soak-")
    log = os.path.join(directory, "server.log")
    port = freePort()
    server = startServer(port, os.path.join(directory, "data"), args.reactor, log, args.open_databases)
    try:
        out = asyncio.run(soak(args, port, server.pid))
    finally:
        stopServer(server)
    server = startServer(port, os.path.join(directory, "data"), args.reactor, log, args.open_databases)
    try:
        out["notesAfterRestart"] = asyncio.run(notes(port)).decode()
    finally:
        stopServer(server)
    out.update(reactor=args.reactor, duration=args.duration, slowloris=args.slowloris,
               maxRss=args.max_rss * MiB, maxFds=args.max_fds)

    normal = out["normal"]
    written = normal["written"]
    expected = f"{written} 0 {written - 1}"
    failures = []
    if normal["errorCount"]:
        failures.append(f"the normal client had {normal['errorCount']} errors: {normal['errors'][:3]}")
    if normal["longestGap"] > 1.0:
        failures.append(f"the normal client waited {normal['longestGap']:.1f} s for an answer")
    if out["rssDuring"] > args.max_rss * MiB:
        failures.append(f"RSS reached {out['rssDuring'] / MiB:.0f} MiB (bound {args.max_rss})")
    if out["fdsDuring"] > args.max_fds:
        failures.append(f"descriptors reached {out['fdsDuring']} (bound {args.max_fds})")
    if out["fdsAfter"] > out["fdsBefore"] + 20:
        failures.append(f"descriptors after: {out['fdsAfter']} (before: {out['fdsBefore']})")
    if out["notesAfter"] != expected or out["notesAfterRestart"] != expected:
        failures.append(f"notes: {out['notesAfter']!r}, after restart {out['notesAfterRestart']!r}, expected {expected!r}")
    out["failures"] = failures

    print(f"soak: {args.duration:g} s under the {args.reactor} reactor, {args.slowloris} slowloris connections\n")
    print("| server | RSS | descriptors |")
    print("|---|---|---|")
    for label, r, f in (
        ("before (idle, after warm-up)", out["rssBefore"], out["fdsBefore"]),
        ("during (the most sampled)", out["rssDuring"], out["fdsDuring"]),
        ("after (attack over, objects evicted)", out["rssAfter"], out["fdsAfter"]),
    ):
        print(f"| {label} | {r / MiB:.0f} MiB | {f} |")
    print(f"| bound | {args.max_rss} MiB | {args.max_fds} |\n")
    for name, c in out["attackers"].items():
        print(f"- {name}: " + ", ".join(f"{k} {v:,}" for k, v in sorted(c.items())))
    print(
        f"- normal client: {written:,} notes written, {normal['echoes']:,} echoes, {normal['errorCount']} "
        f"errors; latency median {normal['latencyMedian'] * 1000:.1f} ms, max "
        f"{normal['latencyMax'] * 1000:.0f} ms; longest wait for an answer {normal['longestGap']:.2f} s"
    )
    print(f"- notes read back: {out['notesAfter']!r}; after a restart: {out['notesAfterRestart']!r} (expected {expected!r})")
    print("\n" + ("FAILED:\n  " + "\n  ".join(failures) if failures else "all checks passed"))
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=2)
    if not failures:
        shutil.rmtree(directory, ignore_errors=True)
    else:
        print(f"(server log and data kept in {directory})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
