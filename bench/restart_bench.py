"""How long a restart takes to serve again, with 10,000 objects and 10,000 hibernated sockets'
objects on disk, against the restart of an empty server in the same run.

    .venv/bin/python bench/restart_bench.py [--objects N] [--sockets M]

Per server: start ``twistd dotwist`` (``bench/apps/restart_app.py``, ``--hibernate-after 1
--evict-after 1``), store a value in N objects (in batches, letting them be evicted, so that the
open files stay under the limit), store a value in M more objects and open a hibernatable
WebSocket to each (one client socket per object, handshakes in turn), wait until the M objects
have hibernated (the admin endpoint's metrics). Then send SIGTERM, while a client answers every
close frame, and start a new server on the same data directory. Reported: SIGTERM to exit
(``shutdown``), start to the first 200 from an object on disk (``start``), SIGTERM to that 200
(``restart``), and each against the empty server's (median of --repeats, default 3). Every
socket got 1001 or the run fails. The machine is shared: the figures are noisy.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.path.dirname(sys.executable)
TOKEN = "bench-token"


def freePort() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def waitFor(check, what: str, deadline: float = 300.0, process=None) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} while waiting for {what}")
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.02)
    raise TimeoutError(what)


def get(port: int, path: str, method: str = "GET", body=None, headers=None) -> tuple[int, bytes]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def metric(adminPort: int, name: str, state: str) -> float:
    _, text = get(adminPort, "/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    for line in text.decode().splitlines():
        if line.startswith(name + "{") and f'state="{state}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def start(dataDir: str, work: str):
    port, adminPort = freePort(), freePort()
    with open(os.path.join(work, "token"), "w") as f:
        f.write(TOKEN)
    env = dict(os.environ, PYTHONPATH=os.path.join(HERE, "apps"))
    process = subprocess.Popen(
        [os.path.join(BIN, "twistd"), "-n", "--pidfile=", "dotwist", "--app", "restart_app",
         "--listen", f"tcp:{port}:interface=127.0.0.1", "--data-dir", dataDir, "--no-access-log",
         "--hibernate-after", "1", "--evict-after", "1", "--admin", str(adminPort),
         "--admin-token-file", os.path.join(work, "token")],
        cwd=work, env=env, stdout=open(os.path.join(work, "server.log"), "a"), stderr=subprocess.STDOUT,
    )
    return process, port, adminPort


def writeObjects(port: int, adminPort: int, prefix: str, n: int, process) -> None:
    batch = 2000
    for first in range(0, n, batch):
        names = [f"{prefix}{i}" for i in range(first, min(n, first + batch))]

        def worker(chunk: list[str]) -> None:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            for name in chunk:
                c.request("PUT", f"/kv/{name}", body=f"value of {name}")
                r = c.getresponse()
                r.read()
                assert r.status == 201, r.status
            c.close()

        threads = [threading.Thread(target=worker, args=(names[i::8],)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        waitFor(lambda: metric(adminPort, "dotwist_objects", "live") < 200, "evictions", process=process)


def openSockets(port: int, prefix: str, m: int) -> list[socket.socket]:
    sockets = []
    for i in range(m):
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        key = base64.b64encode(os.urandom(16)).decode()
        s.sendall((f"GET /hws/{prefix}{i} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                raise ConnectionError("closed during the handshake")
            data += chunk
        assert data.startswith(b"HTTP/1.1 101"), data[:60]
        s.setblocking(False)
        sockets.append(s)
    return sockets


def answerCloses(sockets: list[socket.socket], codes: list[int]) -> None:
    """Read each socket's close frame, answer it, and wait for the server to close."""
    selector = selectors.DefaultSelector()
    buffers = {}
    for s in sockets:
        selector.register(s, selectors.EVENT_READ)
        buffers[s] = b""
    left = len(sockets)
    deadline = time.monotonic() + 120
    while left and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=1):
            s = key.fileobj
            try:
                chunk = s.recv(4096)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                chunk = b""
            if chunk:
                buffers[s] += chunk
                data = buffers[s]
                if len(data) >= 4 and data[0] == 0x88:
                    codes.append(int.from_bytes(data[2:4], "big"))
                    mask = os.urandom(4)
                    payload = data[2:4]
                    s.setblocking(True)
                    try:
                        s.sendall(bytes([0x88, 0x80 | 2]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
                    except OSError:
                        pass
                    s.setblocking(False)
                    buffers[s] = b"\x00"  # answered
                continue
            selector.unregister(s)
            s.close()
            left -= 1
    selector.close()


def once(objects: int, sockets: int) -> dict[str, float]:
    work = tempfile.mkdtemp(prefix="dotwist-restart-")
    dataDir = os.path.join(work, "data")
    try:
        process, port, adminPort = start(dataDir, work)
        waitFor(lambda: get(port, "/kv/probe")[0] == 404, "the first server", process=process)
        if objects:
            writeObjects(port, adminPort, "o", objects, process)
        open_: list[socket.socket] = []
        if sockets:
            writeObjects(port, adminPort, "s", sockets, process)
            open_ = openSockets(port, "s", sockets)
            waitFor(lambda: metric(adminPort, "dotwist_objects", "hibernated") >= sockets, "hibernation", process=process)
        codes: list[int] = []
        closer = threading.Thread(target=answerCloses, args=(open_, codes))
        sigterm = time.monotonic()
        process.send_signal(signal.SIGTERM)
        closer.start()
        status = process.wait(timeout=300)
        exited = time.monotonic()
        closer.join(timeout=120)
        assert status == 0, status
        assert len(codes) == sockets and set(codes) <= {1001}, (len(codes), set(codes))
        started = time.monotonic()
        process, port, adminPort = start(dataDir, work)
        probe = "/kv/o0" if objects else "/kv/probe"
        want = 200 if objects else 404
        waitFor(lambda: get(port, probe)[0] == want, "the restarted server", process=process)
        served = time.monotonic()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=120)
        return {"shutdown": exited - sigterm, "start": served - started, "restart": served - sigterm}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    objects = int(sys.argv[sys.argv.index("--objects") + 1]) if "--objects" in sys.argv else 10_000
    sockets = int(sys.argv[sys.argv.index("--sockets") + 1]) if "--sockets" in sys.argv else 10_000
    repeats = int(sys.argv[sys.argv.index("--repeats") + 1]) if "--repeats" in sys.argv else 3
    runs: dict[str, list[dict[str, float]]] = {"empty": [], "full": []}
    for _ in range(repeats):
        runs["empty"].append(once(0, 0))
        runs["full"].append(once(objects, sockets))
    med = {k: {f: statistics.median(r[f] for r in v) for f in ("shutdown", "start", "restart")} for k, v in runs.items()}
    print(f"Restart with {objects:,} objects and {sockets:,} hibernated sockets' objects on disk "
          f"(median of {repeats}; seconds)\n")
    print("| phase | empty server (reference) | with the objects and sockets | vs reference |")
    print("|---|---:|---:|---:|")
    for phase, what in (("shutdown", "SIGTERM to exit (sockets closed with 1001)"),
                        ("start", "start to the first 200 from an object on disk"),
                        ("restart", "SIGTERM to serving again")):
        e, f = med["empty"][phase], med["full"][phase]
        print(f"| {what} | {e:.2f} | {f:.2f} | {f / e:.2f}× |")
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "restart.json"), "w") as f:
        json.dump({"date": time.strftime("%Y-%m-%dT%H:%M:%S"), "objects": objects, "sockets": sockets,
                   "medians": med, "runs": runs}, f, indent=2)


if __name__ == "__main__":
    main()
