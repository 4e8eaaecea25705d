"""Listing 100,000 objects on disk with the admin interface, against listing the directory.

    .venv/bin/python bench/admin_list_bench.py [--objects N] [--keep DIR]

Builds a data directory with N objects of one namespace (real object databases: one written
through ``SqliteBackend``, the others hard links to it, a new copy every 50,000 links; listing
costs the same as for distinct files), each with a name in the name index, then measures, in this order, each median of
5 runs:

- reference: ``sorted(os.listdir(<dataDir>/<namespace>))``, the floor of any listing;
- ``Inspector.objects()``: the first page of 1,000 objects (ID, name, state, size), in process;
- ``Inspector.objects()``: every page (N / 1,000 pages), in process;
- ``dotwist-admin list --all`` against a running ``twistd dotwist`` with N objects on disk, over
  the admin endpoint (a subprocess, so Python's start-up is in the figure);
- ``dotwist-admin --data-dir ... list --all`` on the stopped server's directory.

Figures in seconds, with the ratio to the reference. The machine is shared: they are noisy.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from dotwist.admin.inspector import Inspector  # noqa: E402
from dotwist.ids import IdMinter  # noqa: E402
from dotwist.names import SqliteNameIndex  # noqa: E402
from dotwist.storage import SqliteBackend  # noqa: E402

NAMESPACE = "Bucket"  # dotwist.examples.kv's class, so that a real server serves the namespace
BIN = os.path.dirname(sys.executable)


def build(dataDir: str, n: int) -> None:
    minter = IdMinter(NAMESPACE)
    backend = SqliteBackend(dataDir)
    first = minter.fromName("object-0").toString()
    store = backend.open(NAMESPACE, first)
    store.put("value", "x" * 100)
    store.recordName("object-0")
    store.commit()
    store.close()
    backend.close()
    template = os.path.join(dataDir, NAMESPACE, first + ".sqlite")
    names = SqliteNameIndex(os.path.join(dataDir, "names.sqlite"))
    names.add(NAMESPACE, first, "object-0")
    for i in range(1, n):
        oid = minter.fromName(f"object-{i}").toString()
        target = os.path.join(dataDir, NAMESPACE, oid + ".sqlite")
        if i % 50_000 == 0:  # a file can have 65,000 links on ext4: start from a new copy
            shutil.copyfile(template, target)
            template = target
        else:
            os.link(template, target)
        names.add(NAMESPACE, oid, f"object-{i}")
        if i % 10_000 == 0:
            names.flush()
    names.close()


def timed(fn, repeats: int = 5) -> float:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def freePort() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def waitForPort(port: int, process: subprocess.Popen, deadline: float = 60.0) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(port)


def main() -> None:
    n = int(sys.argv[sys.argv.index("--objects") + 1]) if "--objects" in sys.argv else 100_000
    keep = sys.argv[sys.argv.index("--keep") + 1] if "--keep" in sys.argv else None
    work = keep or tempfile.mkdtemp(prefix="dotwist-list-")
    dataDir = os.path.join(work, "data")
    if not os.path.isdir(os.path.join(dataDir, NAMESPACE)):
        started = time.perf_counter()
        build(dataDir, n)
        print(f"built {n} objects in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    rows: dict[str, float] = {}
    nsDir = os.path.join(dataDir, NAMESPACE)
    rows["reference: sorted(os.listdir(namespace directory))"] = timed(lambda: sorted(os.listdir(nsDir)))

    backend = SqliteBackend(dataDir)
    names = SqliteNameIndex(os.path.join(dataDir, "names.sqlite"))

    def firstPage() -> None:
        page = Inspector(backend=backend, names=names).objects(NAMESPACE, limit=1000)
        assert len(page["objects"]) == min(n, 1000) and page["objects"][0]["name"]

    def allPages() -> None:
        inspector = Inspector(backend=backend, names=names)
        count, after = 0, None
        while True:
            page = inspector.objects(NAMESPACE, limit=1000, after=after)
            count += len(page["objects"])
            after = page["next"]
            if after is None:
                break
        assert count == n, count

    rows["Inspector.objects(): first page of 1,000, in process"] = timed(firstPage)
    rows["Inspector.objects(): every page, in process"] = timed(allPages)
    names.close()
    backend.close()

    token = os.path.join(work, "token")
    with open(token, "w") as f:
        f.write("bench-token\n")
    port, adminPort = freePort(), freePort()
    server = subprocess.Popen(
        [os.path.join(BIN, "twistd"), "-n", "--pidfile=", "dotwist", "--app", "dotwist.examples.kv",
         "--listen", f"tcp:{port}:interface=127.0.0.1", "--data-dir", dataDir,
         "--admin", str(adminPort), "--admin-token-file", token, "--no-access-log"],
        cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        waitForPort(adminPort, server)
        cli = [os.path.join(BIN, "dotwist-admin"), "--url", f"http://127.0.0.1:{adminPort}", "--token-file", token]

        def remote() -> None:
            out = subprocess.run(cli + ["list", NAMESPACE, "--all"], check=True, capture_output=True, text=True)
            assert len(json.loads(out.stdout)["objects"]) == n

        rows["dotwist-admin list --all, running server (admin endpoint)"] = timed(remote)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)

    def offline() -> None:
        out = subprocess.run(
            [os.path.join(BIN, "dotwist-admin"), "--data-dir", dataDir, "list", NAMESPACE, "--all"],
            check=True, capture_output=True, text=True,
        )
        assert len(json.loads(out.stdout)["objects"]) == n

    rows["dotwist-admin --data-dir list --all, stopped server"] = timed(offline)

    reference = next(iter(rows.values()))
    print(f"Listing {n:,} objects on disk (median of 5; seconds; ratio to the reference)\n")
    print("| what | seconds | vs reference |")
    print("|---|---:|---:|")
    for what, seconds in rows.items():
        print(f"| {what} | {seconds:.3f} | {seconds / reference:.1f}× |")
    out = os.path.join(HERE, "results")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "admin_list.json"), "w") as f:
        json.dump({"date": time.strftime("%Y-%m-%dT%H:%M:%S"), "objects": n, "seconds": rows}, f, indent=2)
    if keep is None:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
