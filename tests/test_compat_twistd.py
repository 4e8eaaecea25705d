"""The Python Workers in tests/compat_apps, unmodified, served by `twistd dotwist --config` in
subprocesses, as a user moving from Cloudflare would run them; and its refusals at start."""

from __future__ import annotations

import http.client
import json
import signal
import struct
import time
from pathlib import Path

import pytest

from compatsupport import APPS, configOf, copyApp
from rawclient import RawWebSocket, httpGet, waitForPort
from support import freePort
from test_twistd import assertCleanExit, twistd


def request(port: int, path: str, method: str = "GET", body: bytes | None = None, headers=None) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read().decode("utf-8")
    finally:
        connection.close()


def until(check, deadline: float = 20.0):
    """Poll ``check`` until it returns something true: the subprocess's timers run on its real
    clock, which a test cannot drive."""
    end = time.monotonic() + deadline
    while True:
        value = check()
        if value or time.monotonic() > end:
            return value
        time.sleep(0.05)


@pytest.fixture
def serve(tmp_path):
    """Start `twistd -n dotwist --config <app's wrangler file>` on a free port; stop it after."""
    processes = []

    def start(name: str, *args: str, cwd: Path | None = None, config: bool = True) -> int:
        port = freePort()
        argv = ["dotwist", "--listen", f"tcp:{port}:interface=127.0.0.1", "--data-dir", str(tmp_path / "data")]
        if config:
            argv += ["--config", str(configOf(APPS / name))]
        process = twistd(*argv, *args, cwd=cwd or tmp_path)
        processes.append(process)
        waitForPort(port, process)
        return port

    yield start
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            assertCleanExit(process)


def test_hello_and_an_outbound_fetch(serve):
    """The hello Worker answers, and its workers.fetch reaches the network (itself)."""
    port = serve("hello")
    assert httpGet(port, "/") == (200, "Hello world!")
    assert httpGet(port, "/proxy") == (200, "upstream said Hello to a POST")


def test_rpc_list(serve):
    """The RPC list object stores and lists items through RPC."""
    port = serve("rpc_list")
    assert httpGet(port, "/todo/add/write%20tests") == (200, "1 item(s)")
    assert httpGet(port, "/todo/show") == (200, "write tests")


def test_chat_room_with_the_application_answering_the_close(serve):
    """The hibernating chat room over a real WebSocket: join and messages are broadcast, ping is
    auto-answered, and (compatibility date 2025-11-02) the close reply the client gets is the one
    its webSocketClose sent."""
    port = serve("chat")
    alice = RawWebSocket(port, "/room/lobby/alice")
    assert alice.status == 101
    assert json.loads(alice.receive()[1]) == {"type": "join", "name": "alice", "online": 1}
    alice.send(b"ping")
    assert alice.receive() == (1, b"pong")
    alice.send(b"hello")
    assert json.loads(alice.receive()[1]) == {"type": "message", "name": "alice", "text": "hello"}
    alice.send(struct.pack("!H", 1000) + b"bye", opcode=8)
    opcode, payload = alice.receive()
    assert opcode == 8
    assert (struct.unpack("!H", payload[:2])[0], payload[2:]) == (1000, b"Durable Object is closing WebSocket")
    alice.close()


def test_sql_counter_from_wrangler_toml_with_secrets_and_an_environment(serve):
    """wrangler.toml, .dev.vars and --env staging: the SQL counter counts, and its admin
    route checks the secret."""
    port = serve("sql_counter", "--env", "staging")
    assert request(port, "/x") == (200, "staging visits: 1")
    assert request(port, "/x") == (200, "staging visits: 2")
    assert request(port, "/reset") == (403, "Forbidden")
    assert request(port, "/reset", headers={"Authorization": "Bearer s3cret"}) == (200, "Hello, World!")


def test_alarm_batcher(serve):
    """The alarm batcher sends what was queued in one request when its alarm fires (the batch
    window shortened with --var)."""
    port = serve("alarm_batcher", "--var", "BATCH_MS=200")
    for item in (b"one", b"two"):
        assert request(port, "/", "POST", item)[0] == 200
    batches = until(lambda: json.loads(request(port, "/batches")[1]))
    assert batches == ["one,two"]


def test_ttl_object(serve):
    """The TTL object forgets a session about a second after its last request."""
    port = serve("ttl")
    assert httpGet(port, "/s") == (200, "seen 1 time(s)")
    assert httpGet(port, "/s") == (200, "seen 2 time(s)")
    last = [time.monotonic()]

    def forgotten() -> bool:
        # Each request extends the TTL (1 s of the subprocess's real clock), so look again only
        # once more than that has passed since the last look.
        if time.monotonic() - last[0] < 1.3:
            return False
        last[0] = time.monotonic()
        return httpGet(port, "/s")[1] == "seen 1 time(s)"

    assert until(forgotten)


def test_scheduled_worker_starts_with_its_crons(serve):
    """The cron Worker starts with its triggers; its fetch(self) answers (the crons themselves
    are checked in-process, on a clock the test drives)."""
    port = serve("cron")
    assert httpGet(port, "/") == (200, "[]")


def test_wrangler_file_in_the_working_directory(serve, tmp_path):
    """`twistd dotwist` with no --app and no --config serves the wrangler file of the working
    directory."""
    directory = copyApp("hello", tmp_path)
    port = serve("hello", cwd=directory, config=False)
    assert httpGet(port, "/") == (200, "Hello world!")


def test_a_mistake_in_the_file_stops_twistd_with_one_line_per_problem(tmp_path):
    """A Wrangler file with two mistakes: twistd exits 1, naming the file and each key, with no
    traceback and nothing served."""
    directory = copyApp("rpc_list", tmp_path)
    config = json.loads((directory / "wrangler.jsonc").read_text())
    config["durable_objects"]["bindings"][0]["class_name"] = "Todo"
    config["migrations"][0]["new_sqlite_classes"] = ["Todo"]
    config["r2_buckets"] = [{"binding": "FILES", "bucket_name": "files"}]
    (directory / "wrangler.jsonc").write_text(json.dumps(config))
    process = twistd("dotwist", "--config", str(directory / "wrangler.jsonc"), cwd=tmp_path)
    output = process.communicate(timeout=60)[0].decode()
    assert process.returncode == 1 and "Traceback" not in output
    assert "wrangler.jsonc: r2_buckets: dotwist has no R2 buckets (binding FILES)" in output
    process = twistd("dotwist", "--config", str(directory / "wrangler.jsonc"), "--allow-missing-bindings",
                     cwd=tmp_path)
    output = process.communicate(timeout=60)[0].decode()
    assert process.returncode == 1 and "Traceback" not in output
    assert "durable_objects.bindings[0].class_name: src/entry.py defines no class Todo" in output
    assert len(output.strip().splitlines()) <= 3


def test_a_refused_migration_stops_twistd_with_one_line(tmp_path):
    """Data of a class nothing accounts for: twistd exits 1 with the migration's message."""
    data = tmp_path / "data"
    (data / "Forgotten").mkdir(parents=True)
    (data / "Forgotten" / "x.sqlite").write_bytes(b"")
    process = twistd("dotwist", "--config", str(configOf(APPS / "rpc_list")), "--data-dir", str(data),
                     cwd=tmp_path)
    output = process.communicate(timeout=60)[0].decode()
    assert process.returncode == 1 and "Traceback" not in output
    assert "twistd dotwist: the data directory holds objects of Forgotten" in output
    assert len(output.strip().splitlines()) == 1
