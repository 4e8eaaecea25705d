"""The chat room: members and messages over WebSockets, hibernation, and the alarm that forgets
a room nobody is in."""

import json

import pytest

from dotwist.testing import (
    evictDurableObject,
    isDurableObjectInMemory,
    runDurableObjectAlarm,
    runInDurableObject,
)


async def join(dotwist, name, room="lobby"):
    ws = await dotwist.webSocket(f"/room/{room}?name={name}")
    welcome = json.loads(await ws.receive())
    assert welcome["type"] == "welcome"
    return ws, welcome["history"]


def history(instance, ctx):
    return ctx.storage.get("history")


@pytest.mark.parametrize("dotwist_transport", ["memory", "tcp"])
async def test_members_hear_each_other(dotwist):
    """A message reaches every member, the sender too, in-process and over a real port."""
    alice, _ = await join(dotwist, "alice")
    bob, _ = await join(dotwist, "bob")
    alice.send("hi bob")
    expected = {"type": "message", "name": "alice", "text": "hi bob"}
    assert json.loads(await alice.receive()) == expected
    assert json.loads(await bob.receive()) == expected
    event = await bob.close(1000, "bye")
    assert event.code == 1000


async def test_history_is_given_to_who_joins(dotwist):
    """A member who joins later is welcomed with what was said."""
    alice, _ = await join(dotwist, "alice")
    alice.send("first")
    await alice.receive()
    _, said = await join(dotwist, "bob")
    assert said == [{"name": "alice", "text": "first"}]


async def test_room_hibernates_and_wakes(dotwist):
    """After 10 idle seconds the room leaves memory with its sockets open; a message wakes it."""
    alice, _ = await join(dotwist, "alice")
    room = dotwist.env.ROOMS.getByName("lobby")
    dotwist.clock.settle(9.9)
    assert isDurableObjectInMemory(room)
    dotwist.clock.settle(0.1)
    assert not isDurableObjectInMemory(room)
    alice.send("anyone?")
    assert json.loads(await alice.receive())["text"] == "anyone?"


async def test_hibernation_on_demand(dotwist):
    """evictDurableObject hibernates a room with members at once."""
    alice, _ = await join(dotwist, "alice")
    await evictDurableObject(dotwist.env.ROOMS.getByName("lobby"))
    alice.send("still here")
    assert json.loads(await alice.receive())["text"] == "still here"


async def test_empty_room_forgets_its_history_when_its_alarm_runs(dotwist):
    """When the last member leaves, an alarm is set; running it deletes the history."""
    alice, _ = await join(dotwist, "alice")
    alice.send("hello")
    await alice.receive()
    await alice.close()
    room = dotwist.env.ROOMS.getByName("lobby")
    assert await runInDurableObject(room, lambda instance, ctx: ctx.storage.getAlarm()) is not None
    assert await runDurableObjectAlarm(room) is True
    assert await runInDurableObject(room, history) is None


async def test_the_alarm_fires_an_hour_after_the_room_empties(dotwist):
    """Without the helper: the history is still there just before the hour, gone a minute after."""
    alice, _ = await join(dotwist, "alice")
    alice.send("hello")
    await alice.receive()
    await alice.close()
    room = dotwist.env.ROOMS.getByName("lobby")
    dotwist.clock.settle(3599)
    assert await runInDurableObject(room, history) == [{"name": "alice", "text": "hello"}]
    dotwist.clock.settle(61)  # the room set its alarm from time.time(), a moment after the clock's start
    assert await runInDurableObject(room, history) is None


async def test_joining_cancels_the_alarm(dotwist):
    """Someone joining an empty room keeps its history."""
    alice, _ = await join(dotwist, "alice")
    alice.send("hello")
    await alice.receive()
    await alice.close()
    await join(dotwist, "bob")
    room = dotwist.env.ROOMS.getByName("lobby")
    assert await runDurableObjectAlarm(room) is False
    assert await runInDurableObject(room, history) == [{"name": "alice", "text": "hello"}]
