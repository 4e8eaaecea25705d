"""The admin interface's work (dotwist.admin.inspector), in process: listing objects on disk and
in memory with their names, reading storage page by page, deleting, firing alarms; and the
dotwist-admin command on a stopped server's data directory."""

from __future__ import annotations

import json
import os

import pytest

from dotwist.admin.cli import main
from dotwist.admin.inspector import AdminError, Inspector, jsonValue
from dotwist.datadir import DataDirLock
from dotwist.names import SqliteNameIndex
from dotwist.storage.alarmindex import SqliteAlarmIndex
from dotwist.testing import connectWebSocket, makeRuntime, result

import opsapp


def runtimeOn(clock, dataDir, **limits):
    runtime = makeRuntime(
        opsapp.app, clock=clock, storage=dataDir, limits=limits or None,
        alarmIndex=SqliteAlarmIndex(os.path.join(dataDir, "alarms.sqlite")),
    )
    runtime.registry.names = SqliteNameIndex(os.path.join(dataDir, "names.sqlite"))
    runtime.start()
    return runtime


def fetch(runtime, clock, method, path, body=None):
    name = path.strip("/").split("/")[1].split("?")[0]
    d = runtime.env.THINGS.getByName(name).fetch(f"http://h{path}", method=method, body=body)
    for _ in range(3):
        clock.advance(0)
    return result(d)


def idOf(runtime, name):
    return runtime.env.THINGS.idFromName(name).toString()


def stop(runtime, clock):
    d = runtime.close()
    clock.advance(0)
    result(d)
    runtime.registry.names.close()


@pytest.fixture
def data(tmp_path, clock):
    """A data directory where objects alpha (3 keys, 3 SQL rows, an alarm) and beta (1 key) were
    written by a server that has stopped."""
    dataDir = str(tmp_path / "data")
    runtime = runtimeOn(clock, dataDir)
    clock.advance(10_000)
    for i in range(3):
        assert fetch(runtime, clock, "PUT", f"/kv/alpha/k{i}", f"v{i}").status == 201
        fetch(runtime, clock, "POST", "/sql/alpha", f"note {i}")
    fetch(runtime, clock, "POST", "/alarm/alpha?in=3600000")
    fetch(runtime, clock, "PUT", "/kv/beta/only", "x")
    stop(runtime, clock)
    return dataDir


def test_listing_finds_objects_never_loaded_since_start_with_their_names(data, clock):
    """After a restart, objects on disk are listed (evicted: not loaded since the start) with
    their names from the name index; loading one makes it live; pages follow IDs."""
    runtime = runtimeOn(clock, data)
    inspector = Inspector(runtime)
    listing = inspector.objects("Thing")
    byName = {row["name"]: row for row in listing["objects"]}
    assert set(byName) == {"alpha", "beta"}
    assert byName["alpha"]["id"] == idOf(runtime, "alpha")
    assert {row["state"] for row in listing["objects"]} == {"evicted"}
    assert listing["next"] is None
    fetch(runtime, clock, "GET", "/kv/beta/only")
    assert {r["name"]: r["state"] for r in inspector.objects("Thing")["objects"]}["beta"] == "live"
    first = inspector.objects("Thing", limit=1)
    second = inspector.objects("Thing", limit=1, after=first["next"])
    assert len(first["objects"]) == len(second["objects"]) == 1 and second["next"] is None
    assert first["objects"][0]["id"] < second["objects"][0]["id"]
    [ns] = inspector.namespaces()
    assert ns == {"namespace": "Thing", "class": "Thing", "bound": True, "live": 1, "hibernated": 0, "stored": 2}
    assert inspector.findByName("Thing", "alpha") == [idOf(runtime, "alpha")]
    stop(runtime, clock)


def test_object_details_storage_pages_and_sql(data, clock):
    """An object's details show its name, alarm and storage; KV entries and SQL rows come page by
    page, through the live object's own storage when it is live."""
    runtime = runtimeOn(clock, data)
    inspector = Inspector(runtime)
    alpha = idOf(runtime, "alpha")
    shown = inspector.object("Thing", alpha)
    assert shown["name"] == "alpha" and shown["state"] == "evicted"
    assert shown["alarm"]["scheduledTime"] > 0 and shown["alarm"]["timerSet"] is True
    assert shown["storage"]["keys"] == 3 and shown["storage"]["tables"] == ["notes"]
    assert shown["storage"]["size"] > 0
    page = inspector.kv("Thing", alpha, limit=2)
    assert [e["key"] for e in page["entries"]] == ["k0", "k1"] and page["next"] == "k1"
    rest = inspector.kv("Thing", alpha, limit=2, startAfter=page["next"])
    assert rest["entries"] == [{"key": "k2", "value": "v2"}] and rest["next"] is None
    assert inspector.tables("Thing", alpha)["tables"][0]["rows"] == 3
    rows = inspector.rows("Thing", alpha, "notes", limit=2)
    assert rows["columns"] == ["_rowid_", "id", "text"] and len(rows["rows"]) == 2
    more = inspector.rows("Thing", alpha, "notes", limit=2, after=rows["next"])
    assert [r[2] for r in more["rows"]] == ["note 2"] and more["next"] is None
    fetch(runtime, clock, "PUT", "/kv/alpha/k9", "live value")
    assert inspector.object("Thing", alpha)["state"] == "live"
    assert inspector.kv("Thing", alpha, prefix="k9")["entries"] == [{"key": "k9", "value": "live value"}]
    with pytest.raises(AdminError, match="no table 'nope'"):
        inspector.rows("Thing", alpha, "nope")
    with pytest.raises(AdminError, match="not an object ID"):
        inspector.object("Thing", "abc")
    with pytest.raises(AdminError, match="not a namespace name"):
        inspector.objects("../etc")
    stop(runtime, clock)


def test_delete_resets_a_live_object_and_removes_storage_alarm_and_sockets(data, clock):
    """Deleting a live object resets it (its hibernatable socket closes with 1011), removes its
    file, its alarm and its name; the next request finds it empty."""
    runtime = runtimeOn(clock, data)
    inspector = Inspector(runtime)
    alpha = idOf(runtime, "alpha")
    socket = connectWebSocket(fetch(runtime, clock, "GET", "/hws/alpha?tag=t"))
    assert inspector.object("Thing", alpha)["sockets"] == [{"tags": ["t"], "readyState": 1}]
    outcome = inspector.delete("Thing", alpha)
    assert outcome["hadStorage"] and outcome["wasLive"] and outcome["socketsClosed"] == 1
    assert socket.closes == [(1011, "Durable Object deleted")]
    assert runtime.registry.alarms.scheduled("Thing", alpha) is None
    assert not os.path.exists(runtime.registry.storage.pathFor("Thing", alpha))
    assert fetch(runtime, clock, "GET", "/kv/alpha/k0").status == 404
    assert [r["name"] for r in inspector.objects("Thing")["objects"]] != ["alpha", "beta"]
    stop(runtime, clock)
    index = SqliteAlarmIndex(os.path.join(data, "alarms.sqlite"))
    assert [e for e in index.entries() if e[1] == alpha] == []
    index.close()


def test_fire_alarm_runs_it_now_as_an_event_of_the_object(data, clock):
    """Firing an alarm set an hour ahead runs alarm() now and consumes the alarm."""
    runtime = runtimeOn(clock, data)
    inspector = Inspector(runtime)
    alpha = idOf(runtime, "alpha")
    fired = inspector.fireAlarm("Thing", alpha)
    for _ in range(3):
        clock.advance(0)
    assert result(fired)["fired"] is True
    assert fetch(runtime, clock, "GET", "/kv/alpha/runs").status == 200
    assert inspector.object("Thing", alpha)["alarm"] is None
    again = inspector.fireAlarm("Thing", alpha)
    clock.advance(0)
    assert result(again)["fired"] is False
    stop(runtime, clock)


def test_json_values():
    """Stored values that JSON cannot hold are tagged with their type."""
    import datetime

    assert jsonValue({"a": [1, 2.5, None, True]}) == {"a": [1, 2.5, None, True]}
    assert jsonValue(b"\x00\x01") == {"$type": "bytes", "value": "AAE="}
    assert jsonValue(2**64) == {"$type": "int", "value": str(2**64)}
    assert jsonValue(datetime.date(2026, 1, 2)) == {"$type": "date", "value": "2026-01-02"}
    assert jsonValue({1: "x"}) == {"$type": "map", "value": [[1, "x"]]}


def cli(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, (json.loads(captured.out) if captured.out.strip().startswith(("{", "[")) else captured.out), captured.err


def test_cli_on_a_stopped_servers_data_directory(data, capsys, tmp_path):
    """dotwist-admin --data-dir lists, finds by name, shows, reads pages, backs up, deletes and
    reindexes without a server; it refuses to run while another process holds the directory."""
    code, listing, _ = cli(capsys, "--data-dir", data, "list", "Thing")
    assert code == 0 and sorted(r["name"] for r in listing["objects"]) == ["alpha", "beta"]
    code, shown, _ = cli(capsys, "--data-dir", data, "show", "Thing", "alpha")
    assert code == 0 and shown["name"] == "alpha" and shown["alarm"] is not None
    code, kv, _ = cli(capsys, "--data-dir", data, "kv", "Thing", "alpha", "--limit", "1", "--all")
    assert [e["key"] for e in kv["entries"]] == ["k0", "k1", "k2"]
    code, rows, _ = cli(capsys, "--data-dir", data, "rows", "Thing", "alpha", "notes", "--limit", "2", "--all")
    assert [r[2] for r in rows["rows"]] == ["note 0", "note 1", "note 2"]
    code, _, err = cli(capsys, "--data-dir", data, "fire-alarm", "Thing", "alpha")
    assert code == 1 and "needs a running server" in err
    code, summary, _ = cli(capsys, "--data-dir", data, "backup", str(tmp_path / "copy"))
    assert code == 0 and summary["objects"] == 2 and summary["alarms"] == 1 and summary["names"] == 2
    code, deleted, _ = cli(capsys, "--data-dir", data, "delete", "Thing", "beta")
    assert code == 0 and deleted["hadStorage"] is True
    os.unlink(os.path.join(data, "names.sqlite"))
    code, counts, _ = cli(capsys, "--data-dir", data, "reindex")
    assert code == 0 and counts == {"alarms": 1, "names": 1}
    code, found, _ = cli(capsys, "--data-dir", data, "find", "Thing", "alpha")
    assert code == 0 and len(found["ids"]) == 1
    lock = DataDirLock(data)
    lock.acquire()
    try:
        code, _, err = cli(capsys, "--data-dir", data, "list", "Thing")
        assert code == 1 and "in use by another process" in err and "--url" in err
    finally:
        lock.release()
    code, restored, _ = cli(capsys, "restore", str(tmp_path / "copy"), str(tmp_path / "restored"))
    assert code == 0 and restored["objects"] == 2
    code, listing, _ = cli(capsys, "--data-dir", str(tmp_path / "restored"), "list", "Thing")
    assert sorted(r["name"] for r in listing["objects"]) == ["alpha", "beta"]
    code, _, err = cli(capsys, "restore", str(tmp_path / "copy"), str(tmp_path / "restored"))
    assert code == 1 and "not empty" in err
