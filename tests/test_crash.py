"""Acknowledged writes survive kill -9: a real `twistd dotwist` serving the kv example under write
load is killed with SIGKILL at random moments; after each restart, every write whose response the
client received is present, and every object opens."""

from __future__ import annotations

import http.client
import os
import random
import signal
import subprocess
import sys
import threading
from pathlib import Path

from rawclient import waitForPort
from support import freePort

ROUNDS = int(os.environ.get("DOTWIST_CRASH_ROUNDS", "5"))
WRITERS = 3


def start(dataDir: Path, port: int) -> subprocess.Popen:
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "twistd"), "-n", "--pidfile=", "dotwist",
         "--app", "dotwist.examples.kv", "--data-dir", str(dataDir),
         "--listen", f"tcp:{port}:interface=127.0.0.1"],
        cwd=dataDir.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def writer(port: int, name: str, acknowledged: dict, lock: threading.Lock, stop: threading.Event) -> None:
    """PUT /bucket-N/key-i = value-i until the server goes away; record what was acknowledged."""
    i = 0
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        while not stop.is_set() and i < 100_000:
            bucket = f"bucket-{name}-{i % 7}"
            path, value = f"/{bucket}/key-{i}", f"{name}:{i}:" + "x" * (i % 50)
            connection.request("PUT", path, body=value.encode())
            response = connection.getresponse()
            response.read()
            if response.status == 201:
                with lock:
                    acknowledged[path] = value
            i += 1
    except (OSError, http.client.HTTPException):
        pass  # the server was killed mid-request: that write was not acknowledged


def get(port: int, path: str) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", path)
    response = connection.getresponse()
    return response.status, response.read().decode()


def test_acknowledged_writes_survive_sigkill(tmp_path):
    """Over several SIGKILLs at random points of a write load, no acknowledged write is lost."""
    rng = random.Random(int(os.environ.get("DOTWIST_CRASH_SEED", "1234")))
    dataDir = tmp_path / "data"
    acknowledged: dict[str, str] = {}
    lock = threading.Lock()
    for round in range(ROUNDS):
        port = freePort()
        process = start(dataDir, port)
        try:
            waitForPort(port, process)
            # Everything acknowledged in earlier rounds is there, and every object opens.
            for path, value in sorted(acknowledged.items()):
                assert get(port, path) == (200, value), path
            buckets = {path.split("/")[1] for path in acknowledged}
            for bucket in buckets:
                assert get(port, f"/{bucket}/")[0] == 200
            stop = threading.Event()
            target = len(acknowledged) + rng.randint(20, 200)
            threads = [
                threading.Thread(target=writer, args=(port, f"r{round}w{w}", acknowledged, lock, stop))
                for w in range(WRITERS)
            ]
            for thread in threads:
                thread.start()
            # Kill once the load has produced a random number of acknowledgements.
            while len(acknowledged) < target and any(t.is_alive() for t in threads):
                threads[0].join(0.005)
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
            stop.set()
            for thread in threads:
                thread.join(timeout=20)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    port = freePort()
    process = start(dataDir, port)
    try:
        waitForPort(port, process)
        missing = [p for p, v in acknowledged.items() if get(port, p) != (200, v)]
        assert missing == [] and len(acknowledged) > ROUNDS * 20
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
