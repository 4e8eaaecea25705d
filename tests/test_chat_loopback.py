"""The chat example over real sockets: served in process on loopback (treq and Autobahn's
client), served by `twistd -n dotwist --app dotwist.examples.chat` as a user runs it, and served
from a non-editable install of the package (the page is package data)."""

from __future__ import annotations

import asyncio
import contextvars
import json
import os
import signal
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest_twisted
import treq
from twisted.internet import reactor

from dotwist.examples import chat

from rawclient import RawWebSocket, httpGet, waitForPort
from support import Twistd, connectWS, freePort, serve, turns

ROOT = Path(__file__).resolve().parent.parent


def recreateTimerHandle() -> None:
    """Work around a core issue these tests reveal (see the report of issue 16). Under the asyncio
    reactor, a timed call made during an object's event (its end-of-turn commit, its idle timer)
    makes the reactor re-create its one asyncio timer handle, which copies the current context,
    ``currentActor()`` included; that handle then runs every later timed call and re-creates
    itself in the same context, so later tests (run by pytest-twisted from a timed call) would
    run as that object. Moving a call sooner re-creates the handle in the caller's context, here
    an empty one, from a plain asyncio callback (inside a timed call, the running handle would
    re-create itself in its own context when it finishes)."""

    def moveSooner() -> None:
        reactor.callLater(3600, lambda: None).reset(0)

    asyncio.get_event_loop().call_soon(moveSooner, context=contextvars.Context())


@pytest_twisted.async_yield_fixture
async def server():
    service, port = await serve(chat.app)
    yield port
    for protocol in list(service.factory.connections):
        protocol.dropConnection(abort=True)
    await service.stopService()
    await turns(3)  # the rooms' last webSocketClose events (and their commits) run
    recreateTimerHandle()
    await turns(2)


async def nextJson(client: Any) -> dict[str, Any]:
    return json.loads(await client.messages.get())


@pytest_twisted.ensureDeferred
async def test_page_and_private_room_over_http(server):
    """GET / is the page (HTML that loads chat.js and chat.css); POST /api/room answers a new ID
    as JSON, and GET /api/room/<id> shows that room, empty."""
    response = await treq.get(f"http://127.0.0.1:{server}/", persistent=False)
    page = await response.text("utf-8")
    assert response.code == 200 and response.headers.getRawHeaders("content-type") == ["text/html; charset=utf-8"]
    assert '<script src="/chat.js" defer></script>' in page and 'href="/chat.css"' in page
    response = await treq.post(f"http://127.0.0.1:{server}/api/room", persistent=False)
    roomId = (await response.json())["id"]
    response = await treq.get(f"http://127.0.0.1:{server}/api/room/{roomId}", persistent=False)
    assert await response.json() == {"members": [], "messages": 0}


@pytest_twisted.ensureDeferred
async def test_two_clients_chat_over_websockets(server):
    """Two Autobahn clients join one room, hear each other join, exchange messages, and one hears
    the other leave."""
    alice = await connectWS(server, "/api/room/lobby/websocket?name=alice")
    assert (await nextJson(alice))["members"] == ["alice"]
    bob = await connectWS(server, "/api/room/lobby/websocket?name=bob")
    assert (await nextJson(bob))["members"] == ["alice", "bob"]
    assert (await nextJson(alice))["type"] == "join"
    alice.sendMessage(json.dumps({"type": "message", "text": "hi bob"}).encode())
    for client in (alice, bob):
        message = await nextJson(client)
        assert (message["name"], message["text"], message["id"]) == ("alice", "hi bob", 1)
    bob.sendMessage(json.dumps({"type": "message", "text": "hi alice ✓"}).encode())
    for client in (alice, bob):
        assert (await nextJson(client))["text"] == "hi alice ✓"
    bob.sendClose(1000)
    await bob.closed
    leave = await nextJson(alice)
    assert (leave["type"], leave["name"], leave["members"]) == ("leave", "bob", ["alice"])
    alice.sendClose(1000)
    await alice.closed


@pytest_twisted.ensureDeferred
async def test_refused_name_gets_its_reason_and_close_code_4400(server):
    """Over a real socket, a name that is too long gets the error message, then a close frame
    with code 4400 and the reason, which a browser shows in its CloseEvent."""
    client = await connectWS(server, "/api/room/lobby/websocket?name=" + "n" * 40)
    assert (await nextJson(client))["code"] == "name-too-long"
    wasClean, code, reason = await client.closed
    assert (wasClean, code, reason) == (True, 4400, "Names are at most 32 characters long (this one has 40).")


@pytest_twisted.ensureDeferred
async def test_rate_limit_over_websockets(server):
    """Without CF-Connecting-IP every client shares the limiter named "unknown": after a burst of
    5 the next message is refused with the wait in milliseconds."""
    alice = await connectWS(server, "/api/room/limits/websocket?name=alice")
    await nextJson(alice)
    for i in range(6):
        alice.sendMessage(json.dumps({"type": "message", "text": f"m{i}"}).encode())
    replies = [await nextJson(alice) for _ in range(6)]
    refused = [r for r in replies if r["type"] == "error"]
    assert len(refused) == 1 and refused[0]["code"] == "rate-limited" and 0 < refused[0]["retryAfterMs"] <= 1000
    delivered = [r["text"] for r in replies if r["type"] == "message"]
    assert sorted(delivered + [refused[0]["text"]]) == [f"m{i}" for i in range(6)]
    alice.sendClose(1000)
    await alice.closed


def twistd(*args: str, cwd: Path, env: dict[str, str] | None = None) -> Twistd:
    return Twistd(*args, cwd=cwd, env=env)


def receiveJson(ws: RawWebSocket) -> dict[str, Any]:
    opcode, payload = ws.receive()
    assert opcode == 1, (opcode, payload)
    return json.loads(payload)


def join(port: int, name: str, room: str = "lobby") -> tuple[RawWebSocket, dict[str, Any]]:
    ws = RawWebSocket(port, f"/api/room/{room}/websocket?name={name}")
    assert ws.status == 101
    return ws, receiveJson(ws)


def stopTwistd(process: subprocess.Popen, sockets: list[RawWebSocket]) -> str:
    """SIGTERM: every socket gets a 1001 close, which it answers; twistd exits cleanly."""
    process.send_signal(signal.SIGTERM)
    for ws in sockets:
        while True:
            opcode, payload = ws.receive()
            if opcode == 8:
                break
        assert struct.unpack("!H", payload[:2])[0] == 1001
        ws.send(payload[:2], opcode=8)
    output = process.communicate(timeout=30)[0].decode()
    for ws in sockets:
        ws.close()
    assert process.returncode == 0 and "Traceback" not in output, output  # graceful stop: 0
    return output


def test_twistd_serves_the_chat_and_keeps_history_across_a_restart(tmp_path):
    """`twistd -n dotwist --app dotwist.examples.chat` serves the page; two clients chat; after a
    SIGTERM and a new twistd on the same data directory, a newcomer gets the history."""
    data = str(tmp_path / "data")
    port = freePort()
    args = ["dotwist", "--app", "dotwist.examples.chat", "--data-dir", data, "--listen", f"tcp:{port}:interface=127.0.0.1"]
    first = twistd(*args, cwd=tmp_path)
    try:
        waitForPort(port, first)
        status, page = httpGet(port, "/")
        assert status == 200 and "<title>dotwist chat</title>" in page
        alice, welcome = join(port, "alice")
        assert welcome == {"type": "welcome", "name": "alice", "members": ["alice"], "history": []}
        bob, welcome = join(port, "bob")
        assert welcome["members"] == ["alice", "bob"]
        assert receiveJson(alice)["type"] == "join"
        alice.send(json.dumps({"type": "message", "text": "hello from alice"}).encode())
        bob.send(json.dumps({"type": "message", "text": "hello from bob"}).encode())
        for ws in (alice, bob):
            got = [receiveJson(ws) for _ in range(2)]
            assert sorted((m["name"], m["text"]) for m in got) == [("alice", "hello from alice"), ("bob", "hello from bob")]
        stopTwistd(first, [alice, bob])
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()

    second = twistd(*args, cwd=tmp_path)
    try:
        waitForPort(port, second)
        carol, welcome = join(port, "carol")
        assert sorted((m["name"], m["text"]) for m in welcome["history"]) == [
            ("alice", "hello from alice"), ("bob", "hello from bob")]
        stopTwistd(second, [carol])
    finally:
        if second.poll() is None:
            second.kill()
            second.wait()


def test_a_non_editable_install_serves_the_page_from_the_package(tmp_path):
    """`pip install .` (not editable) ships the page as package data: the installed module,
    imported from the install directory and not from this checkout, serves the same bytes."""
    source = tmp_path / "src"
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in files.decode().split("\0"):
        if name and (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            (source / name).write_bytes((ROOT / name).read_bytes())
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(source)],
        check=True, capture_output=True,
    )
    probe = (
        "import json, dotwist.examples.chat.worker as w; "
        "print(json.dumps([w.__file__] + [w.page(f).decode() for f in ('index.html', 'chat.js', 'chat.css')]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(site)},
        capture_output=True, check=True,
    ).stdout
    where, *pages = json.loads(out)
    assert where.startswith(str(site))
    assert pages == [(ROOT / "dotwist" / "examples" / "chat" / f).read_text() for f in ("index.html", "chat.js", "chat.css")]
