"""Real cluster nodes for the tests: ``twistd -n dotwist --cluster ...`` processes on 127.0.0.1,
serving ``clusterapp`` with a schema of the test's own, started and stopped as a user would.

Blocking code (no reactor): each node is a subprocess, driven over HTTP with ``http.client`` and
observed in PostgreSQL. Every wait polls a condition with a deadline.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from clustersupport import Pg

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent


def _freePort() -> int:
    from support import freePort

    return freePort()


@dataclass
class Node:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    logPath: Path
    args: list[str] = field(default_factory=list)

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        return self.logPath.read_text(errors="replace")


class Reply:
    """An HTTP answer: ``status`` and the JSON body (``data``, None if not JSON)."""

    def __init__(self, status: int, body: bytes) -> None:
        self.status = status
        self.body = body
        try:
            self.data: Any = json.loads(body)
        except ValueError:
            self.data = None

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.data is not None

    def __repr__(self) -> str:
        return f"<Reply {self.status} {self.body[:300]!r}>"


class Cluster:
    """Nodes of one cluster (one PostgreSQL schema); :meth:`close` kills what is left."""

    def __init__(
        self, pg: Pg, directory: Path, *, lease: float = 2.0, env: Optional[dict[str, str]] = None,
        sharedSecret: bool = False, app: str = "clusterapp",
    ) -> None:
        self.pg = pg
        self.directory = directory
        self.lease = lease
        self.env = dict(env or {})
        self.nodes: dict[str, Node] = {}
        #: Each node's internal channel port, and the cluster's shared secret.
        self.nodeListen: dict[str, int] = {}
        self.secret = f"test-secret-{pg.schema}"
        #: Let the nodes make and share the secret in PostgreSQL instead of passing it.
        self.sharedSecret = sharedSecret
        self.app = app
        #: Nodes stopped with SIGSTOP (and not continued yet).
        self.paused: set[str] = set()

    def start(
        self, *names: str, extra: tuple[str, ...] = (), wait: bool = True, conninfo: Optional[str] = None
    ) -> list[Node]:
        started = [self._spawn(name, extra, conninfo or self.pg.conninfo) for name in names]
        if wait:
            for node in started:
                self.waitReady(node)
        return started

    def _spawn(self, name: str, extra: tuple[str, ...], conninfo: str) -> Node:
        port = _freePort()
        internal = self.nodeListen[name] = _freePort()
        logPath = self.directory / f"{name}.log"
        args = [
            str(Path(sys.executable).parent / "twistd"), "-n", "--pidfile=", "dotwist",
            "--app", self.app, "--listen", f"tcp:{port}:interface=127.0.0.1",
            "--cluster", conninfo, "--cluster-schema", self.pg.schema,
            "--node-listen", f"tcp:{internal}:interface=127.0.0.1",
            *([] if self.sharedSecret else ["--cluster-secret", self.secret]),
            "--node-id", name, "--lease", str(self.lease),
            "--data-dir", str(self.directory / "data"), "--no-access-log", *extra,
        ]
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(HERE), str(TESTS)]),
            "DOTWIST_TEST_NODE": name,
            **self.env,
        }
        with open(logPath, "ab") as out:
            process = subprocess.Popen(args, cwd=self.directory, env=env, stdout=out, stderr=subprocess.STDOUT)
        node = self.nodes[name] = Node(name, port, process, logPath, args)
        return node

    def waitReady(self, node: Node, deadline: float = 30.0) -> None:
        """Until the node answers HTTP and is a live member in PostgreSQL."""
        waitFor(lambda: self._joined(node), f"node {node.name} to join", deadline, node)

    def _joined(self, node: Node) -> bool:
        if not node.alive:
            raise AssertionError(f"node {node.name} exited with {node.process.returncode}:\n{node.log()[-3000:]}")
        import psycopg

        try:
            rows = self.sql(
                "SELECT 1 FROM {s}.node WHERE node_id = %s AND state = 'alive' AND lease_until > now()",
                node.name,
            )
        except psycopg.errors.UndefinedTable:
            return False  # no node made the tables yet
        if not rows:
            return False
        try:
            conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=2)
            conn.request("GET", "/")
            conn.getresponse().read()
            conn.close()
            return True
        except OSError:
            return False

    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        with self.pg.sync() as conn:
            cur = conn.execute(query.replace("{s}", f'"{self.pg.schema}"'), params)
            return cur.fetchall() if cur.description is not None else []

    def request(self, name: str, method: str, path: str, body: Optional[bytes] = None, timeout: float = 30.0) -> Reply:
        node = self.nodes[name]
        conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=timeout)
        try:
            conn.request(method, path, body=body)
            response = conn.getresponse()
            return Reply(response.status, response.read())
        finally:
            conn.close()

    def tryRequest(self, name: str, method: str, path: str, timeout: float = 30.0) -> Optional[Reply]:
        """Like :meth:`request`; None if the connection failed (a node that died)."""
        try:
            return self.request(name, method, path, timeout=timeout)
        except (OSError, http.client.HTTPException):
            return None

    def owner(self, objectId: str) -> tuple[Optional[str], int]:
        rows = self.sql("SELECT node_id, epoch FROM {s}.owner WHERE object_id = %s", objectId)
        return (rows[0][0], int(rows[0][1])) if rows else (None, 0)

    def signal(self, name: str, sig: int) -> None:
        if sig == signal.SIGSTOP:
            self.paused.add(name)
        self.nodes[name].process.send_signal(sig)
        if sig == signal.SIGCONT:
            self.paused.discard(name)

    def answering(self) -> list[str]:
        """The nodes running and not paused."""
        return [name for name, node in list(self.nodes.items()) if node.alive and name not in self.paused]

    def kill(self, name: str) -> None:
        node = self.nodes[name]
        node.process.send_signal(signal.SIGKILL)
        node.process.wait(timeout=10)

    def terminate(self, name: str, timeout: float = 30.0) -> str:
        node = self.nodes[name]
        node.process.send_signal(signal.SIGTERM)
        node.process.wait(timeout=timeout)
        return node.log()

    def close(self) -> None:
        for node in self.nodes.values():
            if node.alive:
                node.process.send_signal(signal.SIGCONT)
                node.process.kill()
            node.process.wait(timeout=10)


def waitFor(check: Callable[[], bool], what: str, deadline: float = 20.0, node: Optional[Node] = None) -> None:
    end = time.monotonic() + deadline
    while not check():
        if time.monotonic() > end:
            extra = f"\n{node.log()[-3000:]}" if node is not None else ""
            raise AssertionError(f"timed out after {deadline} s waiting for {what}{extra}")
        time.sleep(0.05)  # polling other processes: there is no clock of theirs to inject


def objectIdOf(name: str, namespace: str = "Log") -> str:
    """The ID ``idFromName(name)`` gives in the test app (the default ID secret)."""
    from dotwist.ids import DEFAULT_SECRET, IdMinter

    return IdMinter(namespace, DEFAULT_SECRET, None).fromName(name).toString()


def preferred(names: list[str], objectName: str) -> str:
    from dotwist.cluster.rendezvous import preferredNode

    return preferredNode(sorted(names), "Log", objectIdOf(objectName))


def wireCall(port: int, secret: str, body: bytes, timeout: float = 15.0) -> bytes:
    """One call on a node's internal channel, as another node sends it (dotwist.cluster.wire):
    the hello frame with the secret, a call frame, and its reply frame."""
    import socket
    import struct

    def frame(data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + data

    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(frame(b"DWC1" + secret.encode()) + frame(b"C" + struct.pack(">Q", 1) + body))
        buffer = b""
        while True:
            if len(buffer) >= 4:
                (length,) = struct.unpack(">I", buffer[:4])
                if len(buffer) >= 4 + length:
                    reply = buffer[4 : 4 + length]
                    if reply[:1] == b"R":
                        return reply[9:]
                    buffer = buffer[4 + length :]
                    continue
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError("the node closed the channel")
            buffer += chunk
