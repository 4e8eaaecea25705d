"""The Python Workers in tests/compat_apps, written as Cloudflare's published examples are
(`from workers import ...`, `from js import ...`), run unmodified from their wrangler files,
in-process on a clock the test drives. (tests/test_compat_twistd.py runs them under twistd.)"""

import datetime
import json
import time

import pytest

from dotwist.compat import finder

from compatsupport import APPS, CompatApp


@pytest.fixture
def load():
    """Load apps by name; each is closed, its modules unloaded and the compatibility names
    removed after the test."""
    loaded = []

    def make(name, *args, **kwargs):
        app = CompatApp(APPS / name, *args, **kwargs)
        loaded.append(app)
        return app

    yield make
    for app in reversed(loaded):
        app.close()
    finder.uninstall()


def test_hello(load):
    """The hello Worker: Response in the SDK's spellings, Response.json, vars, the module-level
    env, a positional status."""
    app = load("hello")
    assert app.text("/") == (200, "Hello world!")
    response = app.request("/json", method="POST")
    assert response.headers.get("content-type") == "application/json"
    assert json.loads(response.body) == {"greeting": "Hello", "method": "POST"}
    assert app.text("/module-env") == (200, "Hello from the module-level env")
    teapot = app.request("/teapot")
    assert (teapot.status, teapot.headers.get("x-kind")) == (418, "teapot")


def test_var_on_the_command_line_overrides_the_file(load):
    """--var GREETING=... replaces the file's value."""
    app = load("hello", "--var", "GREETING=Howdy")
    assert app.text("/") == (200, "Howdy world!")


def test_rpc_list_keeps_items_across_a_restart(load, tmp_path):
    """The RPC list object: items added through RPC (stored with pyodide's to_js) are listed,
    cleared, and survive a restart on the same data directory."""
    app = load("rpc_list", dataDir=tmp_path)
    assert app.text("/") == (400, "Use /<list>/add/<item>, /<list>/show or /<list>/clear")
    assert app.text("/groceries/add/milk") == (200, "1 item(s)")
    assert app.text("/groceries/add/two%20eggs") == (200, "2 item(s)")
    assert app.text("/groceries/show") == (200, "milk\ntwo eggs")
    assert app.text("/chores/show") == (200, "(empty)")
    app.close()
    again = load("rpc_list", dataDir=tmp_path)
    assert again.text("/groceries/show") == (200, "milk\ntwo eggs")
    assert again.text("/groceries/clear") == (200, "cleared")
    assert again.text("/groceries/show") == (200, "(empty)")


def test_chat_room_broadcasts_hibernates_and_wakes(load):
    """The hibernating chat room: joins and messages are broadcast, ping is answered without
    waking the room, the room leaves memory when idle and wakes with its members' attachments;
    a member who leaves is announced."""
    app = load("chat")
    alice = app.websocket("/room/lobby/alice")
    assert json.loads(alice.messages[-1]) == {"type": "join", "name": "alice", "online": 1}
    bob = app.websocket("/room/lobby/bob")
    assert json.loads(alice.messages[-1]) == {"type": "join", "name": "bob", "online": 2}
    alice.send("hello")
    app.settle()
    assert json.loads(bob.messages[-1]) == {"type": "message", "name": "alice", "text": "hello"}
    assert app.runtime.registry.liveObjects() == 1
    app.advance(11)  # idle past the hibernation delay
    assert app.runtime.registry.liveObjects() == 0
    bob.send("ping")
    assert bob.messages[-1] == "pong" and app.runtime.registry.liveObjects() == 0
    bob.send("/who")
    app.settle()
    assert json.loads(bob.messages[-1]) == {"type": "who", "names": ["alice", "bob"]}
    bob.close(1000, "bye")
    app.settle()
    assert json.loads(alice.messages[-1]) == {"type": "leave", "name": "bob", "online": 1}
    assert app.text("/elsewhere")[0] == 404


def test_sql_counter_with_toml_dev_vars_and_an_environment(load):
    """The SQL counter (wrangler.toml): rows read as row.count and row["count"], a secret from
    .dev.vars, and --env staging with its own vars."""
    app = load("sql_counter")
    assert app.text("/a") == (200, "visits: 1")
    assert app.text("/a") == (200, "visits: 2")
    assert app.text("/b") == (200, "visits: 1")
    top = json.loads(app.request("/top").body)
    assert top == {"label": "visits", "top": [{"path": "/a", "count": 2}, {"path": "/b", "count": 1}]}
    assert app.text("/reset") == (403, "Forbidden")
    assert app.text("/reset", headers={"Authorization": "Bearer s3cret"}) == (200, "Hello, World!")
    staging = load("sql_counter", "--env", "staging")
    assert staging.text("/a") == (200, "staging visits: 1")


def test_alarm_batcher_sends_one_batch(load):
    """The alarm batcher: requests are queued under integer keys, one alarm (set with
    js.Date.now()) sends them upstream as a list body, which before 2026-02-19 is joined with
    commas; `async def alarm(self)` takes no alarmInfo."""
    app = load("alarm_batcher")
    for item in ("a", "b", "c"):
        response = app.request("/", method="POST", body=item)
        assert json.loads(response.body)["queued"] == "abc".index(item) + 1
    assert json.loads(app.request("/batches").body) == []
    app.advance(10)
    assert json.loads(app.request("/batches").body) == ["a,b,c"]
    assert json.loads(app.request("/", method="POST", body="d").body) == {"queued": 1}


def test_alarm_batcher_with_a_later_date_refuses_a_list_of_strings(load):
    """With --compatibility-date 2026-03-01 a list body is iterated, so a list of strings fails
    as it does on Cloudflare ("did not return bytes"): no batch arrives, the alarm is retried."""
    app = load("alarm_batcher", "--compatibility-date", "2026-03-01")
    app.request("/", method="POST", body="a")
    app.advance(10)
    assert json.loads(app.request("/batches").body) == []


def test_ttl_object_forgets_after_its_time_to_live(load):
    """The TTL object: every request extends an alarm set from time.time(); when it fires,
    deleteAll() forgets everything."""
    app = load("ttl", start=time.time())
    assert app.text("/session-1") == (200, "seen 1 time(s)")
    assert app.text("/session-1") == (200, "seen 2 time(s)")
    app.advance(0.5)
    assert app.text("/session-1") == (200, "seen 3 time(s)")
    app.advance(5)
    assert app.text("/session-1") == (200, "seen 1 time(s)")


def test_scheduled_handler_runs_on_its_crons(load):
    """The scheduled Worker: scheduled(controller, env, ctx) runs once per cron expression due
    each minute, on the injected clock; `async def fetch(self)` takes no request."""
    start = datetime.datetime(2026, 1, 1, 0, 0, 30, tzinfo=datetime.timezone.utc).timestamp()
    app = load("cron", start=start)
    assert json.loads(app.request("/").body) == []
    app.advance(30)  # 00:01
    app.advance(60)  # 00:02
    runs = json.loads(app.request("/").body)
    minute = 60_000
    t0 = (start - 30) * 1000
    assert runs == [
        ["* * * * *", t0 + minute],
        ["* * * * *", t0 + 2 * minute],
        ["*/2 * * * *", t0 + 2 * minute],
    ]
