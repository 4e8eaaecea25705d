"""Metrics, in process on a fake clock: each one moves when the thing it counts happens."""

from __future__ import annotations

import pytest
from twisted.internet.defer import Deferred

from dotwist import App, DurableObject, Response, WebSocketPair
from dotwist.metrics import RuntimeCollector, makeRegistry
from dotwist.storage import encode
from dotwist.testing import ObjectsOnly, connectWebSocket, makeRuntime, result

import opsapp

NS = {"namespace": "Thing", "class": "Thing"}


def setUp(clock, storage=None, limits=None, app=None):
    runtime = makeRuntime(app or opsapp.app, clock=clock, storage=storage, limits=limits)
    registry = makeRegistry(RuntimeCollector(runtime), process=False)

    def value(name, **labels):
        found = registry.get_sample_value(name, {**NS, **labels} if "namespace" not in labels else labels)
        return 0.0 if found is None else found

    return runtime, value


def fetch(runtime, clock, method, path, body=None):
    """Send a request to the object the path names, and let its commit run."""
    name = path.strip("/").split("/")[1].split("?")[0]
    d = runtime.env.THINGS.getByName(name).fetch(f"http://h{path}", method=method, body=body)
    for _ in range(3):
        clock.advance(0)
    return result(d)


def test_events_by_kind_and_storage_operations_and_bytes(clock, tmp_path):
    """A fetch counts as a fetch event; its reads and writes count as storage operations, their
    key-value bytes and one commit in the latency histogram; SQL rows count as read and written."""
    runtime, value = setUp(clock, storage=tmp_path)
    assert value("dotwist_events_total", kind="fetch") == 0
    assert fetch(runtime, clock, "PUT", "/kv/a/k1", "hello").status == 201
    assert value("dotwist_events_total", kind="fetch") == 1
    assert value("dotwist_storage_operations_total", op="write") == 1
    assert value("dotwist_storage_bytes_total", direction="written") == len("k1") + len(encode("hello"))
    assert value("dotwist_storage_commit_seconds_count") >= 1
    assert value("dotwist_storage_commit_seconds_bucket", le="+Inf") == value("dotwist_storage_commit_seconds_count")
    assert (fetch(runtime, clock, "GET", "/kv/a/k1")).status == 200
    assert value("dotwist_storage_operations_total", op="read") == 1
    # That read was answered by the value cache; after an eviction it comes from the database.
    assert value("dotwist_storage_bytes_total", direction="read") == 0
    clock.advance(runtime.limits.evictAfter + 1)
    assert (fetch(runtime, clock, "GET", "/kv/a/k1")).status == 200
    assert value("dotwist_storage_bytes_total", direction="read") == len(encode("hello"))
    fetch(runtime, clock, "POST", "/sql/a", "a note")
    assert value("dotwist_storage_operations_total", op="sql") == 2
    assert value("dotwist_storage_sql_rows_total", direction="written") >= 1
    assert value("dotwist_objects", state="live") == 1
    assert value("dotwist_objects_constructed_total") == 2


def test_rpc_events_and_errors_by_kind(clock):
    """An RPC call counts as an rpc event; a fetch that raises counts as a fetch error."""

    class Calc(DurableObject):
        def add(self, a, b):
            return a + b

        async def fetch(self, request):
            raise ValueError("no")

    runtime, value = setUp(clock, app=App(ObjectsOnly, durableObjects={"CALC": Calc}))
    labels = {"namespace": "Calc", "class": "Calc"}
    assert result(runtime.env.CALC.getByName("x").add(1, 2)) == 3
    assert value("dotwist_events_total", kind="rpc", **labels) == 1
    d = runtime.env.CALC.getByName("x").fetch("http://h/")
    with pytest.raises(ValueError):
        result(d)
    assert value("dotwist_errors_total", kind="fetch", **labels) == 1
    assert value("dotwist_events_total", kind="fetch", **labels) == 1


def test_websocket_events_sockets_hibernation_and_departures(clock):
    """Plain and hibernatable sockets' messages and closes count by kind; a hibernatable socket
    counts as open, then as hibernated with its object once the object hibernates; an idle
    object without sockets is evicted."""
    runtime, value = setUp(clock, limits={"hibernateAfter": 5, "evictAfter": 50})
    plain = connectWebSocket(fetch(runtime, clock, "GET", "/ws/p"))
    plain.send("hi")
    assert plain.messages == ["hi"]
    assert value("dotwist_events_total", kind="websocket_message") == 1
    hib = connectWebSocket(fetch(runtime, clock, "GET", "/hws/h?tag=red"))
    hib.send("yo")
    clock.advance(0)
    assert hib.messages == ["yo"]
    assert value("dotwist_events_total", kind="websocket_message") == 2
    assert value("dotwist_hibernatable_websockets", state="live") == 1
    clock.advance(6)
    assert value("dotwist_objects", state="hibernated") == 1
    assert value("dotwist_hibernatable_websockets", state="hibernated") == 1
    assert value("dotwist_object_departures_total", state="hibernated") == 1
    plain.close()
    assert value("dotwist_events_total", kind="websocket_close") == 1
    clock.advance(60)
    assert value("dotwist_object_departures_total", state="evicted") == 1
    assert value("dotwist_objects", state="live") == 0


def test_alarm_runs_retries_and_failures(clock, tmp_path):
    """An alarm whose handler raises counts a run per try, a retry per rescheduling, an alarm
    error per failure, and one failure when its retries are used up."""
    runtime, value = setUp(clock, storage=tmp_path)
    runtime.start()
    clock.advance(1000)  # a real-looking "now" for the alarm times
    fetch(runtime, clock, "POST", "/failing-alarm/a")
    clock.advance(0.001)
    assert value("dotwist_alarm_runs_total") == 1
    assert value("dotwist_alarm_retries_total") == 1
    assert value("dotwist_errors_total", kind="alarm") == 1
    for _ in range(20):
        clock.advance(300)
    assert value("dotwist_alarm_runs_total") == 7
    assert value("dotwist_alarm_retries_total") == 6
    assert value("dotwist_alarm_failures_total") == 1
    assert value("dotwist_events_total", kind="alarm") == 7


def test_resets_overloads_and_gate_waits(clock):
    """abort() counts a reset; a call past maxPendingCalls counts as overloaded; events behind
    blockConcurrencyWhile count as input gate waits; a response behind a write as an output gate
    wait."""
    release: Deferred[None] = Deferred()

    class Slow(DurableObject):
        async def hold(self):
            await self.ctx.blockConcurrencyWhile(lambda: release)
            return "held"

        def ping(self):
            return "pong"

        async def write(self):
            await self.ctx.storage.put("k", 1)
            return "written"

        def abort(self):
            self.ctx.abort("test")

    runtime, value = setUp(clock, limits={"maxPendingCalls": 2}, app=App(ObjectsOnly, durableObjects={"S": Slow}))
    labels = {"namespace": "Slow", "class": "Slow"}
    stub = runtime.env.S.getByName("x")
    held = stub.hold()
    waiting = stub.ping()
    refused = stub.ping()
    with pytest.raises(Exception, match="overloaded|Overloaded|too many"):
        result(refused)
    assert value("dotwist_overloaded_total", **labels) == 1
    assert value("dotwist_gate_waits_total", gate="input", **labels) == 1
    release.callback(None)
    assert result(held) == "held" and result(waiting) == "pong"
    written = stub.write()
    assert not written.called
    clock.advance(0)
    assert result(written) == "written"
    assert value("dotwist_gate_waits_total", gate="output", **labels) == 1
    assert value("dotwist_resets_total", **labels) == 0
    stub.abort()
    assert value("dotwist_resets_total", **labels) == 1
    assert value("dotwist_object_departures_total", state="broken", **labels) == 1
    # Counts of objects that left memory are kept.
    assert value("dotwist_gate_waits_total", gate="input", **labels) == 1


def test_constructor_errors(clock):
    """A constructor that raises counts as a constructor error and a reset."""

    class Broken(DurableObject):
        def __init__(self, ctx, env):
            raise RuntimeError("cannot build")

        def ping(self):
            return 1

    runtime, value = setUp(clock, app=App(ObjectsOnly, durableObjects={"B": Broken}))
    labels = {"namespace": "Broken", "class": "Broken"}
    with pytest.raises(Exception):
        result(runtime.env.B.getByName("x").ping())
    assert value("dotwist_errors_total", kind="constructor", **labels) == 1
    assert value("dotwist_resets_total", **labels) == 1


def test_object_errors_are_logged_with_class_id_and_name(clock):
    """An exception from an object's fetch is logged with the object's class, ID and name."""
    from twisted.logger import globalLogPublisher

    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        runtime, value = setUp(clock)
        d = runtime.env.THINGS.getByName("zed").fetch("http://h/boom/zed")
        with pytest.raises(ValueError):
            result(d)
    finally:
        globalLogPublisher.removeObserver(events.append)
    mine = [e for e in events if e.get("log_namespace") == "dotwist.objects" and e.get("kind") == "fetch"]
    assert mine, events
    event = mine[0]
    oid = runtime.env.THINGS.idFromName("zed").toString()
    assert event["cls"] == "Thing" and event["objectId"] == oid and event["objectName"] == "zed"
    from twisted.logger import formatEvent

    text = formatEvent(event)
    assert oid in text and "'zed'" in text and "ValueError: boom from the object" in text
    assert value("dotwist_errors_total", kind="fetch") == 1
