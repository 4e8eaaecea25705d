"""Operating a real `twistd dotwist` process: the admin endpoint and its token, metrics that move
over HTTP, JSON logs, a graceful SIGTERM with sockets open and a request in flight, and a backup
taken under write load, restored and served."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from rawclient import RawWebSocket, waitForPort
from support import freePort
from test_twistd import assertCleanExit, twistd

TESTS = Path(__file__).resolve().parent
ADMIN = [str(Path(sys.executable).parent / "dotwist-admin")]
TOKEN = "test-admin-token-0123456789"


@pytest.fixture
def server(tmp_path):
    """Start `twistd dotwist` on the test app with the admin endpoint; stop it at the end."""
    started = []

    def start(*extra, dataDir=None, admin=True):
        port, adminPort = freePort(), freePort()
        (tmp_path / "token").write_text(TOKEN + "\n")
        args = [
            "dotwist", "--app", "opsapp", "--listen", f"tcp:{port}:interface=127.0.0.1",
            "--data-dir", str(dataDir or tmp_path / "data"),
        ]
        if admin:
            args += ["--admin", str(adminPort), "--admin-token-file", str(tmp_path / "token")]
        process = twistd(*args, *extra, cwd=tmp_path, env={"PYTHONPATH": str(TESTS)})
        started.append(process)
        waitForPort(port, process)
        if admin:
            waitForPort(adminPort, process)
        return process, port, adminPort

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


def request(port, method, path, body=None, headers=None, timeout=30):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read().decode("utf-8")
    finally:
        connection.close()


def admin(adminPort, method, path, token=TOKEN, body=None):
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    if body is not None:
        headers["Content-Type"] = "application/json"
        body = json.dumps(body)
    return request(adminPort, method, path, body, headers)


def metric(adminPort, name, **labels):
    status, text = admin(adminPort, "GET", "/metrics")
    assert status == 200
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0])) if "{" in line else {}
            if all(found.get(k) == str(v) for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no sample {name}{{{wanted}}}")


def cli(adminPort, *args):
    output = subprocess.run(
        ADMIN + ["--url", f"http://127.0.0.1:{adminPort}", "--token", TOKEN, *args],
        capture_output=True, text=True, timeout=120,
    )
    return output.returncode, output.stdout, output.stderr


def test_admin_endpoint_refuses_requests_without_the_token(server):
    """Every admin route answers 401 without the token or with a wrong one, and does nothing;
    with the token it answers. The separate --metrics endpoint needs no token."""
    metricsPort = freePort()
    process, port, adminPort = server("--metrics", str(metricsPort))
    waitForPort(metricsPort, process)
    status, text = request(metricsPort, "GET", "/metrics")
    assert status == 200 and "dotwist_events_total" in text
    assert request(port, "PUT", "/kv/a/k", "v")[0] == 201
    for token in (None, "wrong", TOKEN + "x", ""):
        for method, path in (("GET", "/namespaces"), ("GET", "/metrics"), ("DELETE", "/namespaces/Thing/objects/" + "0" * 64)):
            status, body = admin(adminPort, method, path, token=token)
            assert status == 401 and "token" in body
    status, body = admin(adminPort, "GET", "/namespaces")
    assert status == 200 and json.loads(body)["namespaces"][0]["namespace"] == "Thing"
    assert request(port, "GET", "/kv/a/k") == (200, "v")
    process.send_signal(signal.SIGTERM)
    output = assertCleanExit(process)
    assert TOKEN not in output


def test_metrics_move_and_the_cli_works_against_a_running_server(server):
    """Over HTTP: requests move the fetch events, HTTP responses and storage metrics; the CLI
    lists, shows, reads and deletes objects and fires an alarm on the running server."""
    process, port, adminPort = server()
    before = metric(adminPort, "dotwist_events_total", namespace="Thing", kind="fetch")
    writes = metric(adminPort, "dotwist_storage_operations_total", namespace="Thing", op="write")
    for i in range(3):
        assert request(port, "PUT", f"/kv/bob/k{i}", f"v{i}")[0] == 201
    assert request(port, "POST", "/alarm/bob?in=3600000")[0] == 200
    assert metric(adminPort, "dotwist_events_total", namespace="Thing", kind="fetch") == before + 4
    assert metric(adminPort, "dotwist_storage_operations_total", namespace="Thing", op="write") == writes + 4
    assert metric(adminPort, "dotwist_http_responses_total", code="201") >= 3
    assert metric(adminPort, "dotwist_storage_commit_seconds_count", namespace="Thing") >= 4
    assert metric(adminPort, "dotwist_objects", namespace="Thing", state="live") == 1
    ws = RawWebSocket(port, "/ws/carol")
    ws.send(b"hello")
    assert ws.receive() == (1, b"hello")
    assert metric(adminPort, "dotwist_websockets_open") == 1
    assert metric(adminPort, "dotwist_events_total", namespace="Thing", kind="websocket_message") == 1
    ws.close()

    code, out, err = cli(adminPort, "list", "Thing")
    assert code == 0, err
    assert [o["name"] for o in json.loads(out)["objects"]] == ["bob"] or "bob" in out
    code, out, err = cli(adminPort, "show", "Thing", "bob")
    shown = json.loads(out)
    assert code == 0 and shown["state"] == "live" and shown["alarm"] is not None
    assert shown["storage"]["keys"] == 3
    code, out, err = cli(adminPort, "kv", "Thing", "bob", "--limit", "2", "--all")
    assert [e["key"] for e in json.loads(out)["entries"]] == ["k0", "k1", "k2"]
    code, out, err = cli(adminPort, "fire-alarm", "Thing", "bob")
    assert code == 0 and json.loads(out)["fired"] is True
    deadline = time.monotonic() + 20
    while request(port, "GET", "/kv/bob/runs")[0] != 200:  # polling a subprocess: nothing to inject
        assert time.monotonic() < deadline, "the fired alarm never ran"
        time.sleep(0.05)
    assert metric(adminPort, "dotwist_alarm_runs_total", namespace="Thing") == 1
    code, out, err = cli(adminPort, "delete", "Thing", "bob")
    assert code == 0 and json.loads(out)["wasLive"] is True
    assert request(port, "GET", "/kv/bob/k0")[0] == 404
    assert metric(adminPort, "dotwist_resets_total", namespace="Thing") == 1
    code, out, err = cli(adminPort, "show", "Thing", "0" * 64)
    assert code == 0 and json.loads(out)["storage"]["exists"] is False
    code, out, err = cli(adminPort, "show", "Other", "0" * 64)
    assert code == 1 and "no object" in err
    process.send_signal(signal.SIGTERM)
    assertCleanExit(process)


def test_json_logs_with_request_lines_and_object_errors(server):
    """--log-format json writes one JSON object per line: request lines with their fields, and an
    object's exception with its class, ID and name; --no-access-log drops the request lines."""
    process, port, _ = server("--log-format", "json", admin=False)
    assert request(port, "PUT", "/kv/dave/k", "v")[0] == 201
    assert request(port, "GET", "/boom/dave")[0] == 500
    process.send_signal(signal.SIGTERM)
    output = assertCleanExit(process)
    events = [json.loads(line.strip("\x1e")) for line in output.splitlines() if line.strip("\x1e").startswith("{")]
    assert len(events) >= 5 and all("log_namespace" in e for e in events)
    access = [e for e in events if e["log_namespace"] == "dotwist.access"]
    assert {(e["method"], e["path"], e["status"]) for e in access} >= {("PUT", "/kv/dave/k", 201), ("GET", "/boom/dave", 500)}
    assert all(e["durationMs"] >= 0 and e["client"] == "127.0.0.1" for e in access)
    errors = [e for e in events if e["log_namespace"] == "dotwist.objects" and e.get("kind") == "fetch"]
    assert errors and errors[0]["cls"] == "Thing" and errors[0]["objectName"] == "dave"
    assert re.fullmatch("[0-9a-f]{64}", errors[0]["objectId"])

    process, port, _ = server("--no-access-log", admin=False)
    assert request(port, "GET", "/kv/dave/k")[0] == 200
    process.send_signal(signal.SIGTERM)
    output = assertCleanExit(process)
    assert "dotwist.access" not in output


def test_text_logs_are_twistds_classic_lines(server):
    """Without --log-format, twistd's classic text on standard output: the request lines (written
    by dotwist's cheaper observer) in the same form as twistd's own lines."""
    process, port, _ = server(admin=False)
    assert request(port, "PUT", "/kv/dave/k", "v")[0] == 201
    assert request(port, "GET", "/kv/dave/k")[0] == 200
    process.send_signal(signal.SIGTERM)
    output = assertCleanExit(process)
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4}"
    for method, status in (("PUT", 201), ("GET", 200)):
        assert re.search(
            rf"^{stamp} \[dotwist\.access#info\] 127\.0\.0\.1 \"{method} /kv/dave/k HTTP/1\.1\" {status} \d+ [\d.]+ms \"[^\"]*\"$",
            output,
            re.M,
        ), output
    assert re.search(rf"^{stamp} \[[^\]]+\] Server Shut Down\.$", output, re.M), output


def test_sigterm_drains_then_closes_sockets_with_1001_and_exits_0(server, tmp_path):
    """SIGTERM on a server with a plain and a hibernatable WebSocket open and a request in flight:
    the request finishes (its write is durable), new requests are refused, both sockets get 1001,
    and twistd exits 0."""
    dataDir = tmp_path / "data"
    process, port, adminPort = server("--drain-timeout", "20", dataDir=dataDir)
    plain = RawWebSocket(port, "/ws/erin")
    hibernatable = RawWebSocket(port, "/hws/frank?tag=x")
    plain.send(b"ping")
    assert plain.receive() == (1, b"ping")
    slow: dict = {}
    thread = threading.Thread(target=lambda: slow.update(result=request(port, "GET", "/slow/gina?ms=1500")))
    thread.start()
    deadline = time.monotonic() + 20
    while metric(adminPort, "dotwist_http_requests_in_flight") < 1:  # polling a subprocess
        assert time.monotonic() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    for ws in (plain, hibernatable):
        opcode, payload = ws.receive()
        assert opcode == 8 and struct.unpack("!H", payload[:2])[0] == 1001
        ws.send(payload[:2], opcode=8)
    thread.join(timeout=30)
    assert slow["result"] == (200, "slow done\n")
    output = assertCleanExit(process)
    assert "Received SIGTERM, shutting down gracefully" in output
    assert "Stopped in" in output
    plain.close()
    hibernatable.close()
    process, port, _ = server(dataDir=dataDir, admin=False)
    assert request(port, "GET", "/kv/gina/slow") == (200, "finished")
    process.send_signal(signal.SIGTERM)
    assertCleanExit(process)


def test_a_second_server_on_the_same_data_directory_is_refused(server, tmp_path):
    """The data directory is locked: a second twistd on it stops with one line."""
    process, port, _ = server(admin=False)
    second = twistd("dotwist", "--app", "opsapp", "--listen", f"tcp:{freePort()}:interface=127.0.0.1",
                    "--data-dir", str(tmp_path / "data"), cwd=tmp_path, env={"PYTHONPATH": str(TESTS)})
    output = second.communicate(timeout=60)[0].decode()
    assert second.returncode == 1 and "in use by another process" in output and "Traceback" not in output
    process.send_signal(signal.SIGTERM)
    assertCleanExit(process)


def test_backup_under_write_load_restores_every_acknowledged_write(server, tmp_path):
    """Writers keep writing while `dotwist-admin backup` runs on a live server; the backup,
    restored into a new data directory and served, has every write acknowledged before the backup
    started, the SQL rows, and the alarm (seed printed on failure)."""
    import random

    seed = int(os.environ.get("DOTWIST_TEST_SEED", time.time_ns() % 2**32))
    rng = random.Random(seed)
    process, port, adminPort = server()
    assert request(port, "POST", "/alarm/alarmed?in=3600000")[0] == 200
    for i in range(5):
        assert request(port, "POST", "/sql/noted", f"note {i}")[0] == 201
    acked: list[tuple[float, str, str, str]] = []
    stop = threading.Event()
    enough = threading.Event()
    lock = threading.Lock()

    def writer(w: int) -> None:
        local = random.Random(rng.random())
        n = 0
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            while not stop.is_set() and n < 5000:
                bucket, key, value = f"b{local.randrange(40)}", f"w{w}-{n}", f"{local.random()}"
                connection.request("PUT", f"/kv/{bucket}/{key}", body=value)
                response = connection.getresponse()
                response.read()
                if response.status == 201:
                    with lock:
                        acked.append((time.monotonic(), bucket, key, value))
                        if len(acked) >= 200:
                            enough.set()
                n += 1
        finally:
            connection.close()

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    assert enough.wait(timeout=60), f"writers too slow (seed {seed})"
    backupStarted = time.monotonic()
    code, out, err = cli(adminPort, "backup", str(tmp_path / "backup"))
    backupEnded = time.monotonic()
    stop.set()
    for t in threads:
        t.join(timeout=60)
    assert code == 0, err
    summary = json.loads(out)
    assert summary["complete"] and summary["alarms"] == 1, summary
    before = [a for a in acked if a[0] < backupStarted]
    during = [a for a in acked if backupStarted <= a[0] < backupEnded]
    assert len(before) >= 200
    process.send_signal(signal.SIGTERM)
    assertCleanExit(process)

    restored = tmp_path / "restored"
    result = subprocess.run(ADMIN + ["restore", str(tmp_path / "backup"), str(restored)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    process, port, adminPort = server(dataDir=restored)
    missing = [(b, k) for _, b, k, v in before if request(port, "GET", f"/kv/{b}/{k}") != (200, v)]
    assert missing == [], f"{len(missing)} acknowledged writes missing (seed {seed}, {len(during)} written during the backup)"
    code, out, err = cli(adminPort, "rows", "Thing", "noted", "notes")
    assert [r[2] for r in json.loads(out)["rows"]] == [f"note {i}" for i in range(5)]
    code, out, err = cli(adminPort, "show", "Thing", "alarmed")
    assert json.loads(out)["alarm"]["timerSet"] is True
    process.send_signal(signal.SIGTERM)
    assertCleanExit(process)
