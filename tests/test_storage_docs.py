"""The code examples of docs/storage.md are real.

Each ```python block of the page preceded by ``<!-- test: NAME -->`` is executed here and driven
through a ``Runtime`` with a ``task.Clock`` and a ``MemoryBackend`` (``clock.advance(0)`` runs the
end-of-turn commit), and does what the page says it does. A few claims the page makes in prose
are checked too.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from dotwist import App, DurableObject, Request, Response, WorkerEntrypoint
from dotwist.testing import FailingCommits, liveActor, makeRuntime, result
from dotwist.worker import Runtime

PAGE = Path(__file__).resolve().parent.parent / "docs" / "storage.md"
MARKED = re.compile(r"<!-- test: ([\w-]+) -->\n```python\n(.*?)```", re.S)
ANY_PYTHON = re.compile(r"```python\n(.*?)```", re.S)
TESTED = {
    "kv", "sql", "transaction", "transactionSync", "alarm", "input-gate", "output-gate",
    "coalescing", "reset",
}


def examples() -> dict[str, str]:
    return dict(MARKED.findall(PAGE.read_text(encoding="utf-8")))


def example(name: str) -> dict[str, Any]:
    """Run the page's block ``name``; return the names it defined."""
    namespace: dict[str, Any] = {"__name__": f"storage_docs_{name.replace('-', '_')}"}
    exec(compile(examples()[name], f"docs/storage.md <!-- test: {name} -->", "exec"), namespace)
    return namespace


def objectClass(namespace: dict[str, Any]) -> type:
    [cls] = [
        v for v in namespace.values()
        if isinstance(v, type) and issubclass(v, DurableObject) and v is not DurableObject
    ]
    return cls


class Worker(WorkerEntrypoint):
    async def fetch(self, request):
        return Response("worker")


def runtimeFor(cls: type, clock, backend=None, worker: type = Worker, binding: str = "NS") -> Runtime:
    return makeRuntime(App(worker, durableObjects={binding: cls}), clock=clock, storage=backend)


def storageOf(runtime: Runtime, stub) -> Any:
    return liveActor(runtime, stub).ctx.storage


def storeOf(runtime: Runtime, stub) -> Any:
    return liveActor(runtime, stub).storage().store


def call(stub, clock, url: str = "http://do/", **init: Any) -> Response:
    d = stub.fetch(url, init or None)
    clock.advance(0)
    return result(d)


def post(stub, clock, url: str, body: Any) -> Response:
    return call(stub, clock, url, method="POST", body=json.dumps(body))


def test_every_durable_object_example_is_marked_and_tested():
    """Every python block of the page that defines a Durable Object or a Worker is marked for
    testing, and every marked block has a test below."""
    text = PAGE.read_text(encoding="utf-8")
    marked = examples()
    for code in ANY_PYTHON.findall(text):
        if re.search(r"class \w+\((DurableObject|WorkerEntrypoint)\)", code):
            assert code in marked.values(), f"unmarked example:\n{code}"
    assert set(marked) == TESTED


def test_kv_example_returns_what_its_comments_say(clock):
    """The key-value example's calls return None for a missing key, a dict ordered by key, True,
    a count, and list() honours prefix, reverse and limit."""
    stub = runtimeFor(objectClass(example("kv")), clock).env.NS.getByName("pantry")
    answer = json.loads(call(stub, clock).body)
    assert answer == {
        "missing": None,
        "some": {"apples": 3, "plums": 0},
        "existed": True,
        "removed": 1,
        "kiwis": ["kiwis:green", "kiwis:gold"],
        "first": {"apples": 3},
    }
    assert list(answer["some"]) == ["apples", "plums"]


def test_get_tells_missing_from_none_only_with_a_list(clock):
    """get(key) gives None for a missing key and for a stored None; get([key]) omits the missing
    one and keeps the stored None, as the page says."""

    class Nones(DurableObject):
        async def fetch(self, request):
            storage = self.ctx.storage
            await storage.put("empty", None)
            return Response.json([
                await storage.get("empty"), await storage.get("absent"),
                await storage.get(["empty", "absent"]),
            ])

    stub = runtimeFor(Nones, clock).env.NS.getByName("n")
    assert json.loads(call(stub, clock).body) == [None, None, {"empty": None}]


def test_operation_options_behave_as_described(clock):
    """allowUnconfirmed lets the response leave before the commit, noCache and allowConcurrency
    are accepted, and an unknown option is a TypeError naming it."""

    class Options(DurableObject):
        async def fetch(self, request):
            storage = self.ctx.storage
            if request.url.endswith("/unconfirmed"):
                await storage.put("k", 1, allowUnconfirmed=True)
                return Response("sent early")
            if request.url.endswith("/unknown"):
                try:
                    await storage.get("k", {"fast": True})
                except TypeError as e:
                    return Response(str(e))
            value = await storage.get("k", noCache=True, allowConcurrency=True)
            return Response(str(value))

    runtime = runtimeFor(Options, clock)
    stub = runtime.env.NS.getByName("o")
    early = stub.fetch("http://do/unconfirmed")
    assert result(early).body == b"sent early"  # before clock.advance(0): not held
    assert storeOf(runtime, stub).hasPendingWrites
    clock.advance(0)
    assert not storeOf(runtime, stub).hasPendingWrites
    assert call(stub, clock, "http://do/read").body == b"1"
    assert call(stub, clock, "http://do/unknown").body == b"Unknown storage option(s): fast"


def test_sql_example_inserts_and_reads_back(clock):
    """The SQL example's INSERT ... RETURNING gives the new id and one written row; the SELECT
    gives columnNames, raw rows and rowsRead as its comments say."""
    stub = runtimeFor(objectClass(example("sql")), clock).env.NS.getByName("book")
    assert json.loads(post(stub, clock, "http://do/", {"author": "ann", "text": "hi"}).body) == {
        "id": 1, "rowsWritten": 1,
    }
    assert json.loads(post(stub, clock, "http://do/", {"author": "bo", "text": "yo"}).body)["id"] == 2
    assert json.loads(call(stub, clock).body) == {
        "columns": ["author", "text"],
        "rows": [["ann", "hi"], ["bo", "yo"]],
        "rowsRead": 2,
        "count": 2,
    }


def test_transaction_example_keeps_both_puts(clock):
    """The transfer keeps both puts when there is enough money."""
    stub = runtimeFor(objectClass(example("transaction")), clock).env.NS.getByName("bank")
    assert json.loads(call(stub, clock, "http://do/transfer/60").body) == {
        "outcome": "done", "alice": 40, "bob": 60,
    }


def test_transaction_example_undoes_both_puts_on_rollback(clock):
    """The transfer undoes both puts after txn.rollback() when there is not enough money, and
    the response is sent."""
    stub = runtimeFor(objectClass(example("transaction")), clock).env.NS.getByName("bank")
    call(stub, clock, "http://do/transfer/60")
    assert json.loads(call(stub, clock, "http://do/transfer/60").body) == {
        "outcome": "refused", "alice": 40, "bob": 60,
    }


def test_transaction_sync_example_undoes_a_partial_booking(clock):
    """transactionSync keeps a whole booking, and undoes the seats booked before a taken one
    (and the kv counter) when the booking fails."""
    runtime = runtimeFor(objectClass(example("transactionSync")), clock)
    stub = runtime.env.NS.getByName("show")
    assert call(stub, clock, "http://do/book/A1,A2").body == b"booked"
    failed = call(stub, clock, "http://do/book/A3,A2")
    assert failed.status == 409 and b"UNIQUE constraint failed" in failed.body
    storage = storageOf(runtime, stub)
    seats = storage.sql.exec("SELECT seat FROM seats ORDER BY seat").raw().toArray()
    assert seats == [["A1"], ["A2"]]
    assert storage.kv.get("bookings") == 1


def test_alarm_example_stores_the_time_and_the_alarm_runs(clock):
    """setAlarm with a naive datetime stores that time as UTC milliseconds (the number in the
    comment), and when the clock reaches it, alarm() runs and the alarm is cleared."""
    stub = runtimeFor(objectClass(example("alarm")), clock).env.NS.getByName("r")
    assert json.loads(post(stub, clock, "http://do/", {}).body) == {
        "alarm": 1893488400000, "reminded": 0,
    }
    clock.advance(1893488400 + 1 - clock.seconds())
    clock.advance(0)
    assert json.loads(call(stub, clock).body) == {"alarm": None, "reminded": 1}


def test_set_alarm_without_handler_is_refused(clock):
    """A class without alarm() cannot call setAlarm(): Cloudflare's TypeError."""

    class NoHandler(DurableObject):
        async def fetch(self, request):
            try:
                await self.ctx.storage.setAlarm(0)
            except TypeError as e:
                return Response(str(e))
            return Response("set")

    stub = runtimeFor(NoHandler, clock).env.NS.getByName("n")
    assert call(stub, clock).body == (
        b"Your Durable Object class must have an alarm() handler in order to call setAlarm()"
    )


def test_input_gate_example_counts_concurrent_requests(clock):
    """Two requests sent at the same moment to the counter get 1 and 2, never 1 and 1."""
    runtime = runtimeFor(objectClass(example("input-gate")), clock)
    stub = runtime.env.NS.getByName("c")
    first, second = stub.fetch("http://do/"), stub.fetch("http://do/")
    clock.pump([0.001] * 10)
    assert (result(first).body, result(second).body) == (b"1", b"2")


def test_output_gate_example_answers_only_after_the_commit(clock):
    """The 201 is held until the end-of-turn commit, and by then the order is stored."""
    runtime = runtimeFor(objectClass(example("output-gate")), clock)
    stub = runtime.env.NS.getByName("main")
    d = stub.fetch("http://do/", {"method": "POST", "body": json.dumps({"id": 7, "item": "tea"})})
    assert not d.called
    storage, store = storageOf(runtime, stub), storeOf(runtime, stub)
    assert store.hasPendingWrites
    clock.advance(0)
    assert result(d).status == 201
    assert not store.hasPendingWrites
    assert storage.kv.get("order:7") == {"id": 7, "item": "tea"}


def test_coalescing_example_commits_once_and_all_or_nothing(clock):
    """The three writes of one turn are one commit; when that commit fails none of them is
    stored."""
    Ledger = objectClass(example("coalescing"))
    backend = FailingCommits()
    runtime = runtimeFor(Ledger, clock, backend)
    stub = runtime.env.NS.getByName("l")
    storage = storageOf(runtime, stub)
    commits = []
    store = storeOf(runtime, stub)
    commit = store.commit
    store.commit = lambda: (commits.append(1), commit())[1]
    assert call(stub, clock).body == b"-10"
    assert commits == [1]
    assert storage.kv.get("history") == [-10]
    assert storage.sql.exec("SELECT count(*) AS n FROM audit").one() == {"n": 0}

    backend.failing = True
    with pytest.raises(Exception):
        call(stub, clock)
    backend.failing = False
    fresh = storageOf(runtime, stub)
    assert (fresh.kv.get("balance"), fresh.kv.get("history")) == (-10, [-10])


def test_reset_example_turns_a_failed_write_into_503(clock):
    """When the order's commit fails, the Worker of the example gets a DurableObjectError with
    durableObjectReset and answers 503; the order is not stored, and a retry then succeeds."""
    Orders = objectClass(example("output-gate"))
    Default = example("reset")["Default"]
    backend = FailingCommits()
    runtime = runtimeFor(Orders, clock, backend, worker=Default, binding="ORDERS")
    order = {"id": 1, "item": "cake"}

    def send() -> Response:
        d = runtime.fetch(Request("http://shop/", {"method": "POST", "body": json.dumps(order)}))
        clock.advance(0)
        return result(d)

    backend.failing = True
    failed = send()
    assert failed.status == 503 and failed.body == b"the order was not saved; try again"
    backend.failing = False
    stub = runtime.env.ORDERS.getByName("main")
    assert storageOf(runtime, stub).kv.get("order:1") is None
    assert send().status == 201
    assert storageOf(runtime, stub).kv.get("order:1") == order
