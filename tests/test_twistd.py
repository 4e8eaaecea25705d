"""dotwist as users run it: `twistd dotwist` and `twistd -ny run.tac` as subprocesses, the
plugin, and the options' errors."""

from __future__ import annotations

import signal
import struct
import subprocess
from pathlib import Path

import pytest
from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins

from dotwist.tap import Options

from rawclient import RawWebSocket, httpGet, waitForPort
from support import Twistd, freePort

ROOT = Path(__file__).resolve().parent.parent


def twistd(*args: str, cwd: Path, env: dict | None = None) -> Twistd:
    return Twistd(*args, cwd=cwd, env=env)


def assertCleanExit(process: subprocess.Popen) -> str:
    """twistd shut down in order and exited 0 (dotwist handles SIGTERM itself, so Twisted does not
    re-raise the signal); returns its output."""
    output = process.communicate(timeout=60)[0].decode()
    assert process.returncode == 0, output[-2000:]
    assert "Server Shut Down." in output and "Traceback" not in output
    return output


@pytest.fixture
def stopAfter():
    processes = []
    yield processes.append
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


def test_plugin_is_found_without_importing_dotwist():
    """twistd finds the dotwist plugin; the plugin module itself is one ServiceMaker."""
    makers = {p.tapname: p for p in getPlugins(IServiceMaker)}
    assert makers["dotwist"].module == "dotwist.tap"


def test_twistd_dotwist_serves_the_seed_and_closes_sockets_with_1001_on_sigterm(tmp_path, stopAfter):
    """`twistd -n dotwist --listen ...` serves the seed; SIGTERM closes an open WebSocket with
    1001 and the process exits cleanly."""
    port = freePort()
    process = twistd("dotwist", "--listen", f"tcp:{port}:interface=127.0.0.1", cwd=tmp_path)
    stopAfter(process)
    waitForPort(port, process)
    status, body = httpGet(port, "/")
    assert status == 200 and body.startswith("\nThis Durable Object supports")
    ws = RawWebSocket(port)
    assert ws.status == 101
    ws.send(b"hi")
    assert ws.receive() == (1, b"[Durable Object]: hi")
    assert httpGet(port, "/getCurrentConnections")[1].startswith("There is 1 WebSocket client")
    process.send_signal(signal.SIGTERM)
    opcode, payload = ws.receive()
    assert opcode == 8 and struct.unpack("!H", payload[:2])[0] == 1001
    ws.send(payload[:2], opcode=8)
    output = assertCleanExit(process)
    ws.close()
    assert "dotwist serving with AsyncioSelectorReactor" in output


def test_twistd_r_epoll_keeps_working(tmp_path, stopAfter):
    """`twistd -r epoll dotwist` runs on the epoll reactor (the service says so) and serves."""
    port = freePort()
    process = twistd("-r", "epoll", "dotwist", "--listen", f"tcp:{port}:interface=127.0.0.1", cwd=tmp_path)
    stopAfter(process)
    waitForPort(port, process)
    assert httpGet(port, "/getCurrentConnections")[0] == 200
    process.send_signal(signal.SIGTERM)
    assert "dotwist serving with EPollReactor" in assertCleanExit(process)


def test_run_tac_deploys_the_same_service(tmp_path, stopAfter):
    """`twistd -ny run.tac` serves the seed; DOTWIST_LISTEN chooses the port."""
    port = freePort()
    process = twistd(
        "-y", str(ROOT / "run.tac"), cwd=tmp_path, env={"DOTWIST_LISTEN": f"tcp:{port}:interface=127.0.0.1"}
    )
    stopAfter(process)
    waitForPort(port, process)
    assert httpGet(port, "/getCurrentConnections") == (
        200,
        "There are 0 WebSocket clients connected to this Durable Object instance.",
    )
    process.send_signal(signal.SIGTERM)
    assert "dotwist serving with AsyncioSelectorReactor" in assertCleanExit(process)


@pytest.mark.parametrize(
    "args,message",
    [
        (["--app", "no_such_module_here"], "cannot import 'no_such_module_here'"),
        (["--app", "dotwist.examples.echo:Echo"], "not a dotwist.App"),
        (["--listen", "nonsense:1"], "is not a valid endpoint"),
        (["--max-message-size", "lots"], "positive whole number"),
        (["--binding", "NS"], "NAME=module:Class"),
    ],
)
def test_bad_options_give_one_clear_line(tmp_path, args, message):
    """A bad option or app exits 1 with a short message naming the problem, no traceback."""
    process = twistd("dotwist", *args, cwd=tmp_path)
    output = process.communicate(timeout=60)[0].decode()
    assert process.returncode == 1
    assert message in output and "Traceback" not in output
    assert len(output.strip().splitlines()) <= 3


def test_options_defaults_and_overrides():
    """No options: the seed on tcp:8080; --binding replaces a class, --var adds a value."""
    options = Options()
    options.parseOptions([])
    assert options["listen"] == ["tcp:8080"]
    assert set(options["appObject"].durableObjects) == {"WEBSOCKET_SERVER"}
    options = Options()
    options.parseOptions(
        ["--binding", "WEBSOCKET_SERVER=dotwist.examples.echo:Echo", "--var", "GREETING=hi",
         "--listen", "tcp:1", "--listen", "tcp:2"]
    )
    assert options["appObject"].durableObjects["WEBSOCKET_SERVER"].__name__ == "Echo"
    assert options["appObject"].vars == {"GREETING": "hi"} and options["listen"] == ["tcp:1", "tcp:2"]
    with pytest.raises(SystemExit, match="not a DurableObject"):
        Options().parseOptions(["--binding", "X=dotwist.examples.echo:Default"])


def test_library_calls_raise_and_never_exit():
    """The library's options and makeApplication raise UsageError; only the twistd entry
    (dotwist.tap.Options) turns a mistake into an exit."""
    from twisted.python import usage

    from dotwist import service

    with pytest.raises(usage.UsageError, match="cannot import 'missing'"):
        service.makeApplication(app="missing")
    with pytest.raises(usage.UsageError, match="not a valid endpoint"):
        service.Options().parseOptions(["--listen", "nonsense:1"])
    with pytest.raises(usage.UsageError, match="positive whole number"):
        service.Options().parseOptions(["--max-message-size", "-3"])


def test_alarm_survives_a_restart_of_twistd(tmp_path, stopAfter):
    """An alarm set in one `twistd dotwist` process, which is then killed with SIGKILL, fires in
    the next process started on the same data directory. The alarm is due 300 ms after it is
    set: the kill is immediate and starting twistd takes longer, so it comes due while no server
    runs (tests/test_lifecycle.py checks that case deterministically, on an injected clock)."""
    import json
    import time

    data = tmp_path / "data"
    args = ["dotwist", "--app", "dotwist.examples.alarms", "--data-dir", str(data)]
    port = freePort()
    first = twistd(*args, "--listen", f"tcp:{port}:interface=127.0.0.1", cwd=tmp_path)
    stopAfter(first)
    waitForPort(port, first)
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("POST", "/t/schedule?in=300")
    scheduled = json.loads(connection.getresponse().read())
    assert scheduled["alarm"] is not None and scheduled["runs"] == []
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)

    port = freePort()
    second = twistd(*args, "--listen", f"tcp:{port}:interface=127.0.0.1", cwd=tmp_path)
    stopAfter(second)
    waitForPort(port, second)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        state = json.loads(httpGet(port, "/t")[1])
        if state["runs"]:
            break
        time.sleep(0.1)  # waiting on a subprocess's real clock: there is nothing to inject
    assert [run["pid"] for run in state["runs"]] == [second.pid]
    assert state["alarm"] is None
    assert state["runs"][0]["at"] * 1000 >= scheduled["alarm"]
    second.send_signal(signal.SIGTERM)
    assertCleanExit(second)
