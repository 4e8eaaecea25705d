"""The chat example (dotwist.examples.chat) in process, on an injected clock: rooms, history,
the rate limiter, validation, hibernation and the alarm that forgets empty rooms."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest
from twisted.internet.defer import Deferred

from dotwist import DurableObjectError, Headers, Request
from dotwist.examples import chat
from dotwist.examples.chat.protocol import MAX_NAME, MAX_TEXT
from dotwist.storage import SqliteBackend
from dotwist.storage.alarmindex import SqliteAlarmIndex
from dotwist.testing import TestClock, connectWebSocket, makeRuntime, result
from dotwist.worker import Runtime

START = 1_700_000_000.0  # the clocks start at a plausible epoch time, in seconds


def chatRuntime(clock: TestClock, storage: Any = None, index: Any = None, **vars: Any) -> Runtime:
    """The chat app on ``clock`` (bound as CLOCK, so the objects read their time from it)."""
    app = chat.app.withBindings(vars={"CLOCK": clock, **vars})
    return makeRuntime(app, clock=clock, storage=storage, alarmIndex=index)


@pytest.fixture
def clock() -> TestClock:
    return TestClock(start=START)


class Member:
    """One chat client: a WebSocket to a room, joined to an in-memory connection."""

    def __init__(self, runtime: Runtime, clock: TestClock, name: str, room: str = "lobby", ip: str = "203.0.113.1") -> None:
        self.clock = clock
        url = f"http://chat.test/api/room/{quote(room)}/websocket?name={quote(name)}"
        headers = Headers({"Upgrade": "websocket", "CF-Connecting-IP": ip})
        d = runtime.fetch(Request(url, headers=headers))
        clock.runReady()
        self.transport = connectWebSocket(result(d))
        self.seen = 0

    def send(self, text: str) -> None:
        self.raw(json.dumps({"type": "message", "text": text}))

    def raw(self, frame: Any) -> None:
        self.transport.send(frame)
        self.clock.runReady()

    def received(self) -> list[dict[str, Any]]:
        """The JSON messages that arrived since the last call."""
        new = self.transport.sent[self.seen :]
        self.seen = len(self.transport.sent)
        assert all(not isBinary for _, isBinary in new)
        return [json.loads(payload) for payload, _ in new]

    def leave(self) -> None:
        self.transport.close(1000)
        self.clock.runReady()


def info(runtime: Runtime, clock: TestClock, room: str = "lobby") -> dict[str, Any]:
    d = runtime.fetch(Request(f"http://chat.test/api/room/{room}"))
    clock.runReady()
    response = result(d)
    return result(Deferred.fromCoroutine(response.json()))


def texts(messages: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(m["name"], m["text"]) for m in messages if m["type"] == "message"]


def test_members_chat_and_hear_joins_and_leaves(clock):
    """Two members get a welcome with the member list, each other's messages (the sender too),
    and join and leave notices with the new member list."""
    runtime = chatRuntime(clock)
    alice = Member(runtime, clock, "alice")
    assert alice.received() == [{"type": "welcome", "name": "alice", "members": ["alice"], "history": []}]
    bob = Member(runtime, clock, "Bob")
    assert bob.received()[0]["members"] == ["alice", "Bob"]
    assert alice.received() == [{"type": "join", "name": "Bob", "at": START * 1000, "members": ["alice", "Bob"]}]
    clock.advance(2.5)
    alice.send("hello <b>Bob</b> & co")
    message = {"type": "message", "id": 1, "name": "alice", "text": "hello <b>Bob</b> & co", "at": (START + 2.5) * 1000}
    assert alice.received() == [message] and bob.received() == [message]
    bob.leave()
    assert alice.received() == [{"type": "leave", "name": "Bob", "at": (START + 2.5) * 1000, "members": ["alice"]}]


def test_second_socket_of_a_name_is_not_announced_twice(clock):
    """A member with two tabs is listed once; only the last tab to close announces the leave."""
    runtime = chatRuntime(clock)
    alice = Member(runtime, clock, "alice")
    alice.received()
    first = Member(runtime, clock, "bob")
    second = Member(runtime, clock, "bob")
    assert [m["type"] for m in alice.received()] == ["join"]
    assert second.received()[0]["members"] == ["alice", "bob"]
    first.leave()
    assert alice.received() == []
    second.leave()
    assert [m["type"] for m in alice.received()] == ["leave"]


def test_history_is_replayed_after_a_server_restart(tmp_path, clock):
    """Messages sent before the runtime closes are replayed, in order, to a member who joins a new
    runtime on the same data directory."""
    runtime = chatRuntime(clock, SqliteBackend(str(tmp_path)), SqliteAlarmIndex(str(tmp_path / "alarms.sqlite")))
    alice = Member(runtime, clock, "alice")
    bob = Member(runtime, clock, "bob", ip="203.0.113.2")
    for who, text in [(alice, "one"), (bob, "two"), (alice, "three")]:
        who.send(text)
    runtime.close()

    later = TestClock(start=START + 3600)
    runtime = chatRuntime(later, SqliteBackend(str(tmp_path)), SqliteAlarmIndex(str(tmp_path / "alarms.sqlite")))
    runtime.start()
    carol = Member(runtime, later, "carol")
    welcome = carol.received()[0]
    assert welcome["members"] == ["carol"]
    assert texts(welcome["history"]) == [("alice", "one"), ("bob", "two"), ("alice", "three")]
    assert [m["id"] for m in welcome["history"]] == [1, 2, 3]
    carol.send("four")
    assert carol.received()[0]["id"] == 4
    runtime.close()


def test_history_keeps_the_last_100_messages(clock):
    """After 105 messages, a new member is given the last 100, oldest first."""
    runtime = chatRuntime(clock, RATE_LIMIT_BURST=1000)
    alice = Member(runtime, clock, "alice")
    for i in range(105):
        alice.send(f"m{i}")
    history = Member(runtime, clock, "bob").received()[0]["history"]
    assert [m["text"] for m in history] == [f"m{i}" for i in range(5, 105)]
    assert info(runtime, clock)["messages"] == 100


def test_rate_limit_refuses_tells_when_and_recovers(clock):
    """A client may send a burst of 5; the 6th is refused, not stored, and the client is told in
    how many milliseconds it may send again; at that moment it can. Another address is not
    affected meanwhile."""
    runtime = chatRuntime(clock)
    alice = Member(runtime, clock, "alice", ip="203.0.113.1")
    bob = Member(runtime, clock, "bob", ip="203.0.113.2")
    alice.received(), bob.received()
    for i in range(5):
        alice.send(f"burst {i}")
    alice.send("one too many")
    replies = alice.received()
    assert texts(replies) == [("alice", f"burst {i}") for i in range(5)]
    assert replies[-1] == {
        "type": "error",
        "code": "rate-limited",
        "message": "You are sending messages too fast; you may send again in 1 s.",
        "retryAfterMs": 1000,
        "text": "one too many",
    }
    assert len(texts(bob.received())) == 5 and info(runtime, clock)["messages"] == 5
    bob.send("bob is fine")
    assert texts(alice.received()) == [("bob", "bob is fine")]

    clock.advance(0.4)
    alice.send("still too soon")
    assert alice.received()[-1]["retryAfterMs"] == 600
    clock.advance(0.6)
    alice.send("now")
    assert texts(alice.received()) == [("alice", "now")]
    alice.send("and again too soon")
    assert alice.received()[-1]["code"] == "rate-limited"
    clock.advance(5)  # a full bucket again: a new burst of 5
    for i in range(5):
        alice.send(f"second burst {i}")
    assert len(texts(alice.received())) == 5
    assert info(runtime, clock)["messages"] == 12


@pytest.mark.parametrize(
    "name,code,message",
    [
        ("", "name-empty", "Pick a name to join the room."),
        ("   ", "name-empty", "Pick a name to join the room."),
        ("x" * (MAX_NAME + 1), "name-too-long", "Names are at most 32 characters long (this one has 33)."),
        ("tab\there", "name-control", "Names cannot contain control characters (such as newlines or tabs)."),
        ("line\nbreak", "name-control", "Names cannot contain control characters (such as newlines or tabs)."),
        ("bell\x07", "name-control", "Names cannot contain control characters (such as newlines or tabs)."),
        ("c1\x85", "name-control", "Names cannot contain control characters (such as newlines or tabs)."),
        (" ada", "name-spaces", "Names cannot start or end with spaces."),
    ],
)
def test_bad_names_are_refused_at_the_door(clock, name, code, message):
    """A bad name gets one error message saying what is wrong and a close with 4400 (the page does
    not retry); it never becomes a member, nobody hears of it, nothing is stored."""
    runtime = chatRuntime(clock)
    alice = Member(runtime, clock, "alice")
    alice.received()
    refused = Member(runtime, clock, name)
    assert refused.received() == [{"type": "error", "code": code, "message": message}]
    assert refused.transport.closes == [(4400, message)]
    assert alice.received() == []
    assert info(runtime, clock) == {"members": ["alice"], "messages": 0}


def test_longest_name_and_message_are_accepted(clock):
    """Exactly 32 characters of name and 500 of text (emoji count as one) are fine."""
    runtime = chatRuntime(clock)
    name = "é" * MAX_NAME
    member = Member(runtime, clock, name)
    member.send("🙂" * MAX_TEXT)
    assert texts(member.received()) == [(name, "🙂" * MAX_TEXT)]


@pytest.mark.parametrize(
    "frame,code,message",
    [
        ('{"type": "message", "text": ""}', "text-empty", "A message needs some text."),
        ('{"type": "message", "text": "  "}', "text-empty", "A message needs some text."),
        ('{"type": "message"}', "text-empty", "A message needs some text."),
        ('{"type": "message", "text": 5}', "text-empty", "A message needs some text."),
        (json.dumps({"type": "message", "text": "x" * (MAX_TEXT + 1)}), "text-too-long",
         "Messages are at most 500 characters long (this one has 501)."),
        ('{"type": "message", "text": "two\\nlines"}', "text-control",
         "Messages cannot contain control characters (such as newlines or tabs)."),
        ('{"type": "message", "text": "nul\\u0000"}', "text-control",
         "Messages cannot contain control characters (such as newlines or tabs)."),
        ('{"type": "message", "text": "esc\\u001b[31m"}', "text-control",
         "Messages cannot contain control characters (such as newlines or tabs)."),
        ("hello", "bad-message", 'Messages are JSON: {"type": "message", "text": "..."}.'),
        ('["message", "hi"]', "bad-message", 'Unknown message; send {"type": "message", "text": "..."}.'),
        ('{"type": "shout", "text": "hi"}', "bad-message", 'Unknown message; send {"type": "message", "text": "..."}.'),
        (b'{"type": "message", "text": "hi"}', "bad-message", "Messages are JSON text frames, not binary."),
    ],
)
def test_bad_messages_get_a_clear_error_and_nothing_is_stored(clock, frame, code, message):
    """A bad message is answered to its sender only, with a code and a sentence; nothing is
    stored or broadcast, the sender stays a member and can send a good one next."""
    runtime = chatRuntime(clock)
    alice = Member(runtime, clock, "alice")
    bob = Member(runtime, clock, "bob")
    alice.received(), bob.received()
    alice.raw(frame)
    assert alice.received() == [{"type": "error", "code": code, "message": message}]
    assert bob.received() == [] and info(runtime, clock) == {"members": ["alice", "bob"], "messages": 0}
    alice.send("fine")
    assert texts(bob.received()) == [("alice", "fine")]


def test_idle_room_hibernates_and_wakes_for_the_next_message(clock):
    """After 10 s idle the room leaves memory while its members stay connected; a keep-alive is
    answered without waking it; the next message wakes it, and everyone gets it with the right
    name (from the sockets' attachments) and the member list is intact."""
    runtime = chatRuntime(clock)
    rooms = runtime.registry.namespaces["ChatRoom"]
    alice = Member(runtime, clock, "alice")
    bob = Member(runtime, clock, "bob")
    alice.send("before")
    alice.received(), bob.received()
    clock.advance(11)
    assert rooms.actors == {} and alice.transport.closes == [] and bob.transport.closes == []
    alice.raw('{"type":"ping"}')
    assert alice.received() == [{"type": "pong"}] and rooms.actors == {}
    bob.send("after")
    assert len(rooms.actors) == 1
    message = {"type": "message", "id": 2, "name": "bob", "text": "after", "at": (START + 11) * 1000}
    assert alice.received() == [message] and bob.received() == [message]
    assert info(runtime, clock) == {"members": ["alice", "bob"], "messages": 2}
    clock.advance(11)
    assert rooms.actors == {}
    alice.leave()
    assert bob.received() == [{"type": "leave", "name": "alice", "at": (START + 22) * 1000, "members": ["bob"]}]


def test_alarm_deletes_the_history_of_a_room_empty_for_the_ttl(tmp_path, clock):
    """With EMPTY_ROOM_TTL=60: a room's history survives while it has members and for 60 s after
    the last one leaves; a member who comes back within them restarts the count; once it has
    been empty for 60 s the alarm deletes the history, and the room's file is gone."""
    storage = SqliteBackend(str(tmp_path))
    runtime = chatRuntime(clock, storage, SqliteAlarmIndex(str(tmp_path / "alarms.sqlite")), EMPTY_ROOM_TTL="60")
    alice = Member(runtime, clock, "alice")
    alice.send("remember me")
    clock.advance(150)  # a member stays: the history stays
    clock.runReady()
    assert info(runtime, clock)["messages"] == 1
    alice.leave()
    clock.advance(40)
    Member(runtime, clock, "bob").leave()  # back within the TTL: empty again from now
    clock.advance(59)
    clock.runReady()
    assert info(runtime, clock) == {"members": [], "messages": 1}
    clock.advance(1.5)
    clock.runReady()
    assert info(runtime, clock) == {"members": [], "messages": 0}
    assert Member(runtime, clock, "carol").received()[0]["history"] == []
    clock.advance(200)  # everyone's gone, nothing is stored: the room leaves memory and disk
    assert list((tmp_path / "ChatRoom").glob("*.sqlite")) == []
    runtime.close()


def test_alarm_cleans_up_a_room_whose_members_vanished_in_a_crash(tmp_path, clock):
    """A room with history always has an alarm, so even when no member ever closed (the server
    was killed), the next runtime deletes the history after the room has been empty for the TTL."""
    def start(at: float) -> tuple[Runtime, TestClock]:
        c = TestClock(start=at)
        r = chatRuntime(c, SqliteBackend(str(tmp_path)), SqliteAlarmIndex(str(tmp_path / "alarms.sqlite")), EMPTY_ROOM_TTL="60")
        r.start()
        return r, c

    runtime, first = start(START)
    Member(runtime, first, "alice").send("left behind")
    runtime.close()  # no webSocketClose: as after kill -9

    runtime, later = start(START + 61)
    later.runReady()  # the alarm was due: it finds the room empty and starts counting
    assert info(runtime, later)["messages"] == 1
    later.advance(59)
    later.runReady()
    assert info(runtime, later)["messages"] == 1
    later.advance(1.5)
    later.runReady()
    assert info(runtime, later)["messages"] == 0
    runtime.close()


def http(runtime: Runtime, clock: TestClock, url: str, method: str = "GET") -> tuple[int, str, str]:
    d = runtime.fetch(Request("http://chat.test" + url, method=method))
    clock.runReady()
    response = result(d)
    return response.status, response.headers.get("content-type") or "", (response.body or b"").decode()


def test_private_rooms_by_id_and_refused_room_names(clock):
    """POST /api/room gives a new 64-hex ID that is a room of its own; an ID the namespace did not
    mint is 404, and bad room names are 400, all with a JSON error."""
    runtime = chatRuntime(clock)
    status, kind, body = http(runtime, clock, "/api/room", "POST")
    roomId = json.loads(body)["id"]
    assert status == 200 and kind == "application/json" and len(roomId) == 64
    assert http(runtime, clock, "/api/room", "POST")[2] != body
    Member(runtime, clock, "alice", room=roomId).send("secret")
    assert info(runtime, clock, roomId)["messages"] == 1 and info(runtime, clock)["messages"] == 0
    status, _, body = http(runtime, clock, "/api/room/" + "0" * 64)
    assert (status, json.loads(body)["code"]) == (404, "no-such-room")
    assert json.loads(http(runtime, clock, "/api/room/" + "x" * 33)[2]) == {
        "error": "Room names are at most 32 characters long.", "code": "room-too-long"}
    assert http(runtime, clock, "/api/room/a%0Ab")[0] == 400
    assert http(runtime, clock, "/api/room")[0] == 405
    status, _, body = http(runtime, clock, "/api/room/lobby/websocket")
    assert (status, body) == (426, "Expected Upgrade: websocket")


def test_named_rooms_are_separate(clock):
    """Members of different rooms hear nothing of each other."""
    runtime = chatRuntime(clock)
    alice = Member(runtime, clock, "alice", room="one")
    bob = Member(runtime, clock, "bob", room="two words")
    alice.received(), bob.received()
    alice.send("in one")
    assert bob.received() == [] and info(runtime, clock, "two%20words") == {"members": ["bob"], "messages": 0}


@pytest.mark.parametrize(
    "path,kind,marker",
    [
        ("/", "text/html; charset=utf-8", "<title>dotwist chat</title>"),
        ("/chat.js", "text/javascript; charset=utf-8", "textContent"),
        ("/chat.css", "text/css; charset=utf-8", "#log"),
    ],
)
def test_the_page_is_served(clock, path, kind, marker):
    """The Worker serves the page's three files with their content types."""
    status, contentType, body = http(chatRuntime(clock), clock, path)
    assert (status, contentType) == (200, kind) and marker in body


def test_unknown_paths_are_404(clock):
    """Anything else is a 404 with a JSON error."""
    status, _, body = http(chatRuntime(clock), clock, "/nope")
    assert status == 404 and json.loads(body) == {"error": "Nothing at /nope.", "code": "not-found"}


def test_bad_settings_are_refused_with_their_name(clock):
    """A setting that is not a positive number fails the room's construction with a message
    naming it (the join gets a 500 and the log says why)."""
    runtime = chatRuntime(clock, EMPTY_ROOM_TTL="soon")
    d = runtime.fetch(Request("http://chat.test/api/room/x/websocket?name=a", headers={"Upgrade": "websocket"}))
    clock.runReady()
    with pytest.raises(DurableObjectError, match="EMPTY_ROOM_TTL must be a positive number, not 'soon'"):
        result(d)


def test_a_message_whose_limiter_left_memory_meanwhile_is_still_delivered(clock):
    """When the sender's rate limiter leaves memory while the room's call to it waits for the
    room's last write to commit (a dotwist bug, tests/test_rpc_eviction_race.py), the room asks
    a new limiter and the message is delivered anyway."""
    runtime = chatRuntime(clock)
    evictAfter = runtime.limits.evictAfter
    alice = Member(runtime, clock, "alice", ip="203.0.113.1")
    bob = Member(runtime, clock, "bob", ip="203.0.113.2")

    def bothSend() -> None:  # in one turn: bob's message is uncommitted when alice's arrives
        bob.transport.send('{"type":"message","text":"from bob"}')
        alice.transport.send('{"type":"message","text":"from alice"}')

    # Scheduled before alice's limiter exists, so it runs just before that limiter's idle check.
    clock.callLater(evictAfter, bothSend)
    alice.send("first")
    alice.received(), bob.received()
    clock.advance(evictAfter)
    clock.runReady()
    assert texts(bob.received()) == [("bob", "from bob"), ("alice", "from alice")]
    assert runtime.registry.namespaces["RateLimiter"].actors  # a new limiter was constructed


def test_docs_list_every_error_code():
    """Every error code the app can send is in docs/chat.md (its protocol tables)."""
    import re
    from pathlib import Path

    package = Path(chat.__file__).parent
    source = "".join((package / name).read_text() for name in ("protocol.py", "room.py", "worker.py"))
    codes = set(re.findall(r'ChatError\(\s*"([a-z-]+)"', source)) | set(re.findall(r'_error\(\d+, "([a-z-]+)"', source))
    docs = (package.parents[2] / "docs" / "chat.md").read_text()
    assert len(codes) >= 12
    assert sorted(code for code in codes if f"`{code}`" not in docs) == []
