"""Cluster nodes as users run them (``twistd -n dotwist --cluster ...``): any node answers any
request, each object runs on its one owner, calls and errors cross between nodes, a node's death
or shutdown moves its objects with every acknowledged write."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

import pytest
from clustersupport import Pg
from nodes import Cluster, objectIdOf, preferred, waitFor


@pytest.fixture
def cluster(pg: Pg, tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(pg, tmp_path, lease=2.0)
    try:
        yield c
    finally:
        c.close()


def test_any_node_answers_and_each_object_runs_on_its_owner(pg: Pg, tmp_path: Path) -> None:
    """Three nodes (sharing the secret the first one made in PostgreSQL): appends to 12 objects
    through every node land on one owner per object (the one PostgreSQL names, with its epoch);
    the Worker ran on the node that was asked; the objects spread over more than one node."""
    cluster = Cluster(pg, tmp_path, lease=2.0, sharedSecret=True)
    try:
        _anyNode(cluster)
    finally:
        cluster.close()
    assert len(cluster.sql("SELECT value FROM {s}.secret")) == 1


def _anyNode(cluster: Cluster) -> None:
    names = ["a", "b", "c"]
    cluster.start(*names)
    owners = {}
    for i in range(12):
        obj = f"obj{i}"
        for n, node in enumerate(names):
            reply = cluster.request(node, "POST", f"/append/{obj}?v={n}")
            assert reply.ok, reply
            assert reply.data["worker"] == node
            assert reply.data["vals"] == [str(k) for k in range(n + 1)]
            owners.setdefault(obj, reply.data["node"])
            assert reply.data["node"] == owners[obj]
        assert cluster.owner(objectIdOf(obj)) == (owners[obj], reply.data["epoch"])
        assert owners[obj] == preferred(names, obj)
    assert len(set(owners.values())) > 1, owners


def test_rpc_and_its_errors_cross_between_nodes(cluster: Cluster) -> None:
    """An RPC call through another node returns the method's result; an exception raised by the
    object comes back as the same type with its message, and a DurableObjectError with its
    retryable flag."""
    cluster.start("a", "b")
    obj = next(f"r{i}" for i in range(50) if preferred(["a", "b"], f"r{i}") == "b")
    reply = cluster.request("a", "POST", f"/rpc-append/{obj}?v=x")
    assert reply.ok and reply.data == {"vals": ["x"], "node": "b"}, reply
    boom = cluster.request("a", "GET", f"/boom/{obj}")
    assert boom.data == {"error": "ValueError", "message": "boom from the object"}, boom
    unavailable = cluster.request("a", "GET", f"/unavailable/{obj}")
    assert unavailable.data == {"error": "DurableObjectError", "retryable": True, "message": "not now"}


def test_kill_9_of_an_owner_moves_its_objects_with_every_acknowledged_write(cluster: Cluster) -> None:
    """After kill -9 of the node that owns an object, the object comes back on the other node at
    the next request (after the dead node's lease lapsed) with every write acknowledged before,
    under a greater epoch."""
    cluster.start("a", "b")
    obj = next(f"k{i}" for i in range(50) if preferred(["a", "b"], f"k{i}") == "b")
    acknowledged = []
    for i in range(20):
        reply = cluster.request("a", "POST", f"/append/{obj}?v={i}")
        assert reply.ok and reply.data["node"] == "b"
        acknowledged.append(str(i))
        epoch = reply.data["epoch"]
    cluster.kill("b")
    killed = time.monotonic()
    answers = []

    def answered() -> bool:
        reply = cluster.request("a", "GET", f"/read/{obj}")
        answers.append(reply)
        return reply.ok

    waitFor(answered, "the object to come back", deadline=20)
    took = time.monotonic() - killed
    reply = answers[-1]
    assert reply.data["node"] == "a" and reply.data["epoch"] > epoch
    assert reply.data["vals"] == acknowledged
    assert took < 2.0 * 3, f"failover took {took:.1f} s with a 2 s lease"


def test_sigterm_hands_the_objects_over_at_once(pg: Pg, tmp_path: Path) -> None:
    """With a 30 s lease, SIGTERM of the owner releases its objects: the other node serves them
    at once (long before the lease could lapse), with their data, and the stopped node exits 0
    after leaving the cluster."""
    cluster = Cluster(pg, tmp_path, lease=30.0)
    try:
        cluster.start("a", "b")
        objs = [f"h{i}" for i in range(40) if preferred(["a", "b"], f"h{i}") == "b"][:5]
        for obj in objs:
            assert cluster.request("a", "POST", f"/append/{obj}?v=1").data["node"] == "b"
        started = time.monotonic()
        log = cluster.terminate("b")
        assert cluster.nodes["b"].process.returncode == 0, log[-2000:]
        assert "Cluster node b released 5 objects and left" in log
        for obj in objs:
            reply = cluster.request("a", "POST", f"/append/{obj}?v=2")
            assert reply.ok and reply.data["node"] == "a" and reply.data["vals"] == ["1", "2"]
        assert time.monotonic() - started < 10
        assert cluster.sql("SELECT state FROM {s}.node WHERE node_id = 'b'") == [("left",)]
    finally:
        cluster.close()


def test_a_node_whose_lease_was_taken_stops_answering_and_joins_again(cluster: Cluster) -> None:
    """When PostgreSQL says a node's lease lapsed (here: the test ends it), the node drops its
    objects, joins again with a new incarnation, and the objects come back with their data."""
    cluster.start("a")
    assert cluster.request("a", "POST", "/append/x?v=1").ok
    (incarnation,) = cluster.sql("SELECT incarnation FROM {s}.node WHERE node_id = 'a'")[0]
    cluster.sql("UPDATE {s}.node SET lease_until = now() - interval '1 second' WHERE node_id = 'a'")

    def rejoined() -> bool:
        rows = cluster.sql(
            "SELECT incarnation FROM {s}.node WHERE node_id = 'a' AND lease_until > now()"
        )
        return bool(rows) and rows[0][0] != incarnation

    waitFor(rejoined, "node a to join again", deadline=15)
    waitFor(lambda: cluster.request("a", "POST", "/append/x?v=2").ok, "the object to come back")
    assert cluster.request("a", "GET", "/read/x").data["vals"] == ["1", "2"]


def test_cluster_options_are_checked_and_need_cluster(tmp_path: Path) -> None:
    """--node-id without --cluster, a bad --lease or --advertise are refused with one line."""
    twistd = str(Path(sys.executable).parent / "twistd")
    for args, message in [
        (["--node-id", "x"], "--node-id needs --cluster"),
        (["--cluster", "host=127.0.0.1", "--lease", "zero"], "--lease must be a number"),
        (["--cluster", "host=127.0.0.1", "--advertise", "nohost"], "--advertise expects host:port"),
        (["--cluster", "host=127.0.0.1", "--storage", "memory"], "cannot be combined with --storage memory"),
    ]:
        out = subprocess.run(
            [twistd, "-n", "--pidfile=", "dotwist", *args], cwd=tmp_path, capture_output=True, text=True, timeout=60
        )
        assert out.returncode != 0 and message in out.stderr + out.stdout, (args, out.stderr)


def _closeCode(frame: tuple[int, bytes]) -> tuple[int, str]:
    import struct

    opcode, payload = frame
    assert opcode == 8, frame
    return struct.unpack("!H", payload[:2])[0], payload[2:].decode()


def _hibernated(metricsPort: int) -> float:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", metricsPort, timeout=5)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    for line in text.splitlines():
        if line.startswith("dotwist_object_departures_total") and 'state="hibernated"' in line:
            return float(line.split()[-1])
    return 0.0


def test_a_websocket_through_one_node_to_an_object_on_another(cluster: Cluster) -> None:
    """A WebSocket opened at node a to an object owned by node b: text and binary messages both
    ways, the object's close code and reason reach the client, the client's close code reaches
    the object, and a hibernatable socket wakes the object on b after it hibernated."""
    from rawclient import RawWebSocket

    from nodes import _freePort

    metricsPort = _freePort()
    cluster.start("a")
    cluster.start("b", extra=("--hibernate-after", "0.3", "--metrics", str(metricsPort)))
    obj = next(f"w{i}" for i in range(50) if preferred(["a", "b"], f"w{i}") == "b")
    port = cluster.nodes["a"].port
    ws = RawWebSocket(port, f"/ws/{obj}")
    assert ws.status == 101
    ws.send(b"hello")
    assert ws.receive() == (1, b"hello")
    ws.send(b"\x00\x01binary", opcode=2)
    assert ws.receive() == (2, b"\x00\x01binary")
    ws.send(b"count")
    assert ws.receive() == (1, b"3")
    ws.send(b"close")
    assert _closeCode(ws.receive()) == (4001, "asked to close")
    ws.close()

    ws = RawWebSocket(port, f"/ws/{obj}")
    assert ws.status == 101
    ws.send(b"ping")
    assert ws.receive() == (1, b"ping")
    import struct

    ws.send(struct.pack("!H", 4321) + b"client leaves", opcode=8)
    assert _closeCode(ws.receive()) == (4321, "client leaves")
    ws.close()
    waitFor(
        lambda: cluster.request("a", "GET", f"/closed/{obj}").data.get("closed") == [4321, "client leaves"],
        "the object to see the client's close code",
    )

    hws = RawWebSocket(port, f"/hws/{obj}")
    assert hws.status == 101
    hws.send(b"put:first")
    assert hws.receive() == (1, b'["first"]')
    before = cluster.sql("SELECT log_seq FROM {s}.owner WHERE object_id = %s", objectIdOf(obj))
    waitFor(lambda: _hibernated(metricsPort) >= 1, "the object to hibernate on node b")
    hws.send(b"put:second")
    assert hws.receive() == (1, b'["first", "second"]')
    hws.send(b"echo me")
    assert hws.receive() == (1, b"echo me")
    assert cluster.sql("SELECT log_seq FROM {s}.owner WHERE object_id = %s", objectIdOf(obj)) > before
    hws.close()


def test_the_owner_dying_closes_relayed_websockets_with_1012_and_the_object_comes_back(cluster: Cluster) -> None:
    """kill -9 of the owner: the client's WebSocket at the other node is closed with 1012; it
    reconnects through the same node and finds the object, now on that node, with its data."""
    from rawclient import RawWebSocket

    cluster.start("a", "b")
    obj = next(f"d{i}" for i in range(50) if preferred(["a", "b"], f"d{i}") == "b")
    port = cluster.nodes["a"].port
    hws = RawWebSocket(port, f"/hws/{obj}")
    hws.send(b"put:kept")
    assert hws.receive() == (1, b'["kept"]')
    cluster.kill("b")
    code, _ = _closeCode(hws.receive())
    assert code in (1001, 1012)
    hws.close()
    replies = []

    def reconnected() -> bool:
        ws = RawWebSocket(port, f"/hws/{obj}")
        if ws.status != 101:
            ws.close()
            return False
        replies.append(ws)
        return True

    waitFor(reconnected, "a WebSocket to the object again", deadline=20)
    ws = replies[-1]
    ws.send(b"vals")
    assert ws.receive() == (1, b'["kept"]')
    ws.close()


def test_an_alarm_fires_on_the_new_owner_after_the_owner_dies(cluster: Cluster) -> None:
    """An object on node b sets its alarm for 2 s later; b is killed at once. Nobody calls the
    object again: node a finds the due alarm in PostgreSQL, takes the object over and runs its
    alarm (which appends "alarm"), and the owner row's alarm is cleared."""
    cluster.start("a", "b")
    obj = next(f"al{i}" for i in range(50) if preferred(["a", "b"], f"al{i}") == "b")
    assert cluster.request("a", "POST", f"/append/{obj}?v=1").data["node"] == "b"
    reply = cluster.request("a", "POST", f"/alarm/{obj}?in=2000")
    assert reply.ok and reply.data["node"] == "b"
    oid = objectIdOf(obj)
    assert cluster.sql("SELECT alarm_at IS NOT NULL FROM {s}.owner WHERE object_id = %s", oid) == [(True,)]
    cluster.kill("b")

    def fired() -> bool:
        rows = cluster.sql("SELECT node_id, alarm_at FROM {s}.owner WHERE object_id = %s", oid)
        return rows == [("a", None)]

    waitFor(fired, "the alarm to run on node a", deadline=30)
    reply = cluster.request("a", "GET", f"/read/{obj}")
    assert reply.data["vals"] == ["1", "alarm"] and reply.data["node"] == "a"


def test_workers_share_one_port_and_are_supervised(pg: Pg, tmp_path: Path) -> None:
    """`--workers 2`: two worker processes join as nodes and both serve objects through the one
    port; a worker killed with -9 is started again as a new node; SIGTERM to the parent stops
    both workers, which hand their objects over and leave, and the parent exits 0."""
    import os
    import signal

    from nodes import HERE, TESTS, _freePort

    port = _freePort()
    log = tmp_path / "workers.log"
    args = [
        str(Path(sys.executable).parent / "twistd"), "-n", "--pidfile=", "dotwist", "--app", "clusterapp",
        "--listen", f"tcp:{port}:interface=127.0.0.1", "--cluster", pg.conninfo, "--cluster-schema", pg.schema,
        "--node-id", "wk", "--lease", "2", "--data-dir", str(tmp_path / "data"), "--workers", "2",
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(TESTS)])}
    with open(log, "wb") as out:
        parent = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
    cluster = Cluster(pg, tmp_path)
    try:
        def alive() -> set[str]:
            try:
                rows = cluster.sql("SELECT node_id FROM {s}.node WHERE state = 'alive' AND lease_until > now()")
            except Exception:
                return set()
            return {r[0] for r in rows}

        waitFor(lambda: alive() == {"wk-w0.1", "wk-w1.1"}, "two workers to join", deadline=30)
        import http.client

        def post(path: str) -> dict:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("POST", path)
            response = conn.getresponse()
            body = response.read()
            conn.close()
            assert response.status == 200, body
            import json

            return json.loads(body)

        served = {post(f"/append/o{i}?v=1")["node"] for i in range(16)}
        assert served == {"wk-w0.1", "wk-w1.1"}
        (victim,) = [
            int(line.split()[0]) for line in subprocess.run(
                ["ps", "-ww", "--ppid", str(parent.pid), "-o", "pid=,args="], capture_output=True, text=True
            ).stdout.splitlines() if "wk-w0.1" in line
        ]
        os.kill(victim, signal.SIGKILL)
        waitFor(lambda: "wk-w0.2" in alive(), "worker 0 to be started again", deadline=30)
        def readable(i: int) -> bool:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", f"/read/o{i}")
            ok = conn.getresponse().status == 200
            conn.close()
            return ok

        for i in range(16):
            waitFor(lambda: readable(i), f"object o{i} to be served again", deadline=30)
            assert post(f"/append/o{i}?v=2")["vals"] == ["1", "2"]
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(timeout=60) == 0, log.read_text()[-3000:]
        states = dict(cluster.sql("SELECT node_id, state FROM {s}.node"))
        assert states["wk-w0.2"] == "left" and states["wk-w1.1"] == "left", states
    finally:
        if parent.poll() is None:
            parent.kill()  # the workers notice their parent is gone, and stop
            parent.wait()
        cluster.close()


def test_workers_stop_when_their_parent_is_killed(pg: Pg, tmp_path: Path) -> None:
    """kill -9 of the --workers parent: each worker notices and stops gracefully (it leaves the
    cluster), so no orphan keeps serving."""
    import os
    import signal

    from nodes import HERE, TESTS, _freePort

    args = [
        str(Path(sys.executable).parent / "twistd"), "-n", "--pidfile=", "dotwist", "--app", "clusterapp",
        "--listen", f"tcp:{_freePort()}:interface=127.0.0.1", "--cluster", pg.conninfo,
        "--cluster-schema", pg.schema, "--node-id", "orph", "--lease", "2",
        "--data-dir", str(tmp_path / "data"), "--workers", "2",
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(TESTS)])}
    with open(tmp_path / "workers.log", "wb") as out:
        parent = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
    cluster = Cluster(pg, tmp_path)
    workers: list[int] = []
    try:
        def states() -> dict[str, str]:
            try:
                return dict(cluster.sql("SELECT node_id, state FROM {s}.node"))
            except Exception:
                return {}

        waitFor(lambda: states() == {"orph-w0.1": "alive", "orph-w1.1": "alive"}, "two workers", deadline=30)
        workers = [int(p) for p in subprocess.run(
            ["ps", "-o", "pid=", "--ppid", str(parent.pid)], capture_output=True, text=True
        ).stdout.split()]
        assert len(workers) == 2
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        waitFor(lambda: set(states().values()) == {"left"}, "both workers to leave", deadline=30)
        waitFor(lambda: not any(Path(f"/proc/{pid}").exists() and "zombie" not in _state(pid) for pid in workers),
                "both workers to exit", deadline=30)
    finally:
        for pid in workers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        cluster.close()


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split("\n")[0].lower()
    except (OSError, IndexError):
        return "zombie"


def test_an_owner_takes_snapshots_and_the_next_owner_loads_from_one(cluster: Cluster) -> None:
    """Writes that ship several times the database's size make the owner store a snapshot (the
    log before it is let go); after the owner's death the next owner rebuilds the object from the
    snapshot and the log after it, with every write."""
    cluster.start("a", "b")
    obj = next(f"s{i}" for i in range(50) if preferred(["a", "b"], f"s{i}") == "b")
    oid = objectIdOf(obj)
    for i in range(12):
        reply = cluster.request("a", "POST", f"/blob/{obj}?kb=300&v={i}")
        assert reply.ok and reply.data["node"] == "b"
    waitFor(lambda: cluster.sql("SELECT seq FROM {s}.snapshot WHERE object_id = %s", oid) != [], "a snapshot")
    (snapshotSeq,) = cluster.sql("SELECT seq FROM {s}.snapshot WHERE object_id = %s", oid)[0]
    (logSeq,) = cluster.sql("SELECT log_seq FROM {s}.owner WHERE object_id = %s", oid)[0]
    kept = [r[0] for r in cluster.sql("SELECT seq FROM {s}.log WHERE object_id = %s ORDER BY seq", oid)]
    assert snapshotSeq > 1 and kept == list(range(snapshotSeq + 1, logSeq + 1))
    cluster.kill("b")
    waitFor(lambda: cluster.request("a", "GET", f"/read/{obj}").ok, "the object on node a")
    reply = cluster.request("a", "GET", f"/read/{obj}")
    assert reply.data["node"] == "a" and reply.data["vals"] == [str(i) for i in range(12)]


def test_the_chat_example_with_members_of_one_room_on_two_nodes(pg: Pg, tmp_path: Path) -> None:
    """dotwist.examples.chat on two nodes: alice joins the lobby through one node, bob through
    the other (so one of them reaches the room through the relay); each sees the other join and
    both messages, and a newcomer through either node gets the history."""
    import json

    from rawclient import RawWebSocket

    cluster = Cluster(pg, tmp_path, app="dotwist.examples.chat")
    try:
        cluster.start("a", "b")

        def join(node: str, name: str) -> tuple[RawWebSocket, dict]:
            ws = RawWebSocket(cluster.nodes[node].port, f"/api/room/lobby/websocket?name={name}")
            assert ws.status == 101
            return ws, json.loads(ws.receive()[1])

        alice, welcome = join("a", "alice")
        assert welcome["members"] == ["alice"]
        bob, welcome = join("b", "bob")
        assert welcome["members"] == ["alice", "bob"]
        assert json.loads(alice.receive()[1])["type"] == "join"
        alice.send(json.dumps({"type": "message", "text": "hi from a"}).encode())
        bob.send(json.dumps({"type": "message", "text": "hi from b"}).encode())
        for ws in (alice, bob):
            got = [json.loads(ws.receive()[1]) for _ in range(2)]
            assert sorted((m["name"], m["text"]) for m in got) == [("alice", "hi from a"), ("bob", "hi from b")]
        for node in ("a", "b"):
            carol, welcome = join(node, f"carol{node}")
            assert sorted(m["text"] for m in welcome["history"]) == ["hi from a", "hi from b"]
            carol.close()
        alice.close()
        bob.close()
    finally:
        cluster.close()


def test_the_storage_api_on_an_object_owned_by_another_node_survives_its_death(cluster: Cluster) -> None:
    """Through node a, an object on node b writes key-value pairs, SQL rows and two
    transactions (one rolled back, one committed); after b is killed, the object on node a has
    exactly that state; deleteAll() there empties it."""
    cluster.start("a", "b")
    obj = next(f"st{i}" for i in range(50) if preferred(["a", "b"], f"st{i}") == "b")
    for n in range(3):
        reply = cluster.request("a", "POST", f"/storage/{obj}?n={n}")
        assert reply.ok and reply.data["node"] == "b", reply
    expected = {"kv": {"k:0": 0, "k:1": 1, "k:2": 2, "moved": 2}, "notes": ["note 0", "note 1", "note 2"]}
    assert {k: reply.data[k] for k in ("kv", "notes")} == expected
    cluster.kill("b")
    waitFor(lambda: cluster.request("a", "GET", f"/state/{obj}").ok, "the object on node a", deadline=20)
    reply = cluster.request("a", "GET", f"/state/{obj}")
    assert reply.data["node"] == "a" and {k: reply.data[k] for k in ("kv", "notes")} == expected
    wiped = cluster.request("a", "POST", f"/wipe/{obj}")
    assert wiped.data["kv"] == {} and wiped.data["notes"] is None


def test_the_objects_own_reply_to_a_close_crosses_the_relay(cluster: Cluster) -> None:
    """With web_socket_manual_reply_to_close (Cloudflare before 2026-04-07), the reply to a
    client's close frame is the object's own close(code, reason). Through node a, to objects on
    node b (relayed) and on node a (local) alike: the client's close 4000 "bye" reaches the object
    (its close event sees CLOSING), and the object's close(4000, "app says") is what the client
    gets back; a hibernatable socket's webSocketClose answers the same way."""
    import struct

    from rawclient import RawWebSocket

    cluster.start("a", "b", extra=("--compatibility-flag", "web_socket_manual_reply_to_close"))
    port = cluster.nodes["a"].port
    remote = next(f"cr{i}" for i in range(50) if preferred(["a", "b"], f"cr{i}") == "b")
    local = next(f"cl{i}" for i in range(50) if preferred(["a", "b"], f"cl{i}") == "a")
    for obj, owner in ((remote, "b"), (local, "a")):
        assert cluster.request("a", "POST", f"/append/{obj}?v=1").data["node"] == owner
        for path, code, reply in (("ws", 4000, "app says"), ("hws", 4002, "hibernatable says")):
            ws = RawWebSocket(port, f"/{path}/{obj}")
            assert ws.status == 101
            ws.send(b"hi")
            assert ws.receive() == (1, b"hi")
            ws.send(struct.pack("!H", code) + b"bye", opcode=8)
            assert _closeCode(ws.receive()) == (code, reply), (obj, path)
            ws.close()
            waitFor(
                lambda: cluster.request("a", "GET", f"/closed/{obj}").data.get("closed") == [code, "bye"],
                f"the object on {owner} to see the client's close ({path})",
            )


def holdThrough(cluster: Cluster, obj: str, url: str) -> tuple[int, Optional[str], bytes]:
    """``POST /hold/<obj>?v=1&url=<url>`` through node a: the object appends "1", then waits for
    ``url``; (status, Retry-After, body) of the answer."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", cluster.nodes["a"].port, timeout=60)
    try:
        conn.request("POST", f"/hold/{obj}?v=1&url={url}")
        response = conn.getresponse()
        return response.status, response.getheader("retry-after"), response.read()
    finally:
        conn.close()


def test_a_call_cut_short_because_its_owner_lost_the_object_is_503(cluster: Cluster) -> None:
    """A call through node a runs in the object on node b and waits (on a server that does not
    answer); node b's lease is ended in PostgreSQL, so b drops its objects and resets them. The
    call fails as a move, not as a failure of the object's code: the client gets 503 with
    Retry-After. The write the call made before it waited is kept, wherever the object is next."""
    import socket
    from concurrent.futures import ThreadPoolExecutor

    cluster.start("a", "b")
    obj = next(f"cut{i}" for i in range(50) if preferred(["a", "b"], f"cut{i}") == "b")
    assert cluster.request("a", "POST", f"/append/{obj}?v=0").data["node"] == "b"
    with socket.socket() as gate, ThreadPoolExecutor(1) as pool:
        gate.bind(("127.0.0.1", 0))
        gate.listen(8)  # accepts connections (the kernel does), never answers
        url = f"http://127.0.0.1:{gate.getsockname()[1]}/"

        future = pool.submit(holdThrough, cluster, obj, url)
        waitFor(lambda: cluster.request("a", "GET", f"/read/{obj}").data.get("vals") == ["0", "1"],
                "the held call to make its first write")
        assert not future.done()
        cluster.sql("UPDATE {s}.node SET lease_until = now() - interval '1 second' WHERE node_id = 'b'")
        status, retryAfter, body = future.result(timeout=60)
    assert (status, retryAfter) == (503, "1"), body
    waitFor(lambda: cluster.request("a", "GET", f"/read/{obj}").ok, "the object to be served again", deadline=30)
    assert cluster.request("a", "GET", f"/read/{obj}").data["vals"] == ["0", "1"]


def test_a_call_whose_owner_dies_while_running_it_is_not_run_again(cluster: Cluster) -> None:
    """A call through node a runs in the object on node b, writes, and waits on a server the test
    holds; b is killed with -9, then the server answers everything. The call may have run (it
    did: its write is durable), so node a must not send it to the next owner, which would run it
    a second time (write "1" again, then answer): the client gets 503 with Retry-After, and the
    object, back on a, holds the write once."""
    import socket
    import threading
    from concurrent.futures import ThreadPoolExecutor

    cluster.start("a", "b")
    obj = next(f"twice{i}" for i in range(50) if preferred(["a", "b"], f"twice{i}") == "b")
    assert cluster.request("a", "POST", f"/append/{obj}?v=0").data["node"] == "b"
    release = threading.Event()
    with socket.socket() as gate, ThreadPoolExecutor(2) as pool:
        gate.bind(("127.0.0.1", 0))
        gate.listen(8)
        gate.settimeout(1.0)
        url = f"http://127.0.0.1:{gate.getsockname()[1]}/"

        def serveGate() -> None:
            # Holds every connection until released, then answers each with 200.
            held: list[socket.socket] = []
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                try:
                    conn, _ = gate.accept()
                    held.append(conn)
                except OSError:
                    pass
                if release.is_set():
                    for conn in held:
                        try:
                            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                        except OSError:
                            pass
                        conn.close()
                    held.clear()
                    if deadline - time.monotonic() > 20:
                        deadline = time.monotonic() + 20  # keep answering late comers a while

        pool.submit(serveGate)
        future = pool.submit(holdThrough, cluster, obj, url)
        waitFor(lambda: cluster.request("a", "GET", f"/read/{obj}").data.get("vals") == ["0", "1"],
                "the held call to make its first write")
        assert not future.done()
        cluster.kill("b")
        # Its lease lapses at once (as if the kill had been a lease ago): the object is free to
        # be taken, so a call sent again would run at once on the next owner.
        cluster.sql("UPDATE {s}.node SET lease_until = now() - interval '1 second' WHERE node_id = 'b'")
        release.set()
        status, retryAfter, body = future.result(timeout=60)
    assert (status, retryAfter) == (503, "1"), body
    waitFor(lambda: cluster.request("a", "GET", f"/read/{obj}").ok, "the object to be served again", deadline=30)
    assert cluster.request("a", "GET", f"/read/{obj}").data["vals"] == ["0", "1"]
