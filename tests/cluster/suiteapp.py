"""The app of the remote-owner suite (tests/cluster/test_remote_suites.py): one Durable Object
class, ``Suite``, that runs storage and lifecycle scenarios, each a named *case* made of *steps*.

    GET /case/<case>/<name>/<step>   the Worker calls object <name> (stub.fetch, or RPC for the
                                     cases in ``RPC_CASES``), which runs the step and answers what
                                     it observed, as JSON
    GET /case/<case>/<name>/dump     everything the object stores (key-value pairs but "boots",
                                     SQL tables and rows, the alarm) and what its instance saw

Every answer carries ``ranOn`` (the node whose process ran the object's code, from the
``DOTWIST_TEST_NODE`` environment variable) and ``worker`` (the node whose Worker got the request),
so that the test sees where each side ran; the rest is the observation, compared between a
cluster whose owner is another node and a single process. Values that JSON cannot carry (bytes,
non-finite floats) are tagged by ``_plain``.

A step that the test polls (``until:<what>``) answers ``{"done": bool, ...}``.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
from urllib.parse import unquote, urlsplit

from dotwist import App, DurableObject, Response, WorkerEntrypoint

#: A fixed far-future alarm time (2100-01-01 UTC, in ms), the same on every run and target.
FAR = 4102444800000

#: The cases and their steps, in order. ``until:`` steps are polled until they answer done;
#: ``wait:evicted`` is the test's own wait (the object's instance must leave memory).
CASES = {
    "kv-single": ["run"],
    "kv-many": ["run"],
    "kv-sync": ["run"],
    "list-options": ["run"],
    "value-types": ["put", "get"],
    "rpc-values": ["run"],
    "transaction-commit": ["run"],
    "transaction-rollback": ["run"],
    "transaction-sync": ["run"],
    "sql-exec": ["run"],
    "sql-cursor": ["run"],
    "sql-errors": ["run"],
    "delete-all": ["run"],
    "alarm-api": ["run"],
    "alarm-fires": ["set", "until:fired"],
    "bcw-constructor": ["concurrent"],
    "constructor-state": ["incr", "incr", "incr"],
    "output-gate": ["write", "read"],
    "eviction": ["write", "wait:evicted", "read"],
    "alarm-retry": ["set", "until:retried"],
    "wait-until": ["run", "until:written"],
    "exception": ["boom", "after"],
    "rpc-exception": ["run", "after"],
    "abort": ["run", "after"],
    "constructor-error": ["first", "second"],
}

#: Cases whose steps the Worker runs as an RPC call (``stub.step(case, step)``), not a fetch.
RPC_CASES = {"rpc-values", "rpc-exception", "abort", "constructor-error"}

NODE = "DOTWIST_TEST_NODE"


def _plain(value):
    """``value`` as JSON can carry it, with the type of what JSON cannot say kept in a tag."""
    if isinstance(value, bytes):
        return {"$bytes": value.hex()}
    if isinstance(value, float) and not math.isfinite(value):
        return {"$float": repr(value)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _typed(value):
    """The value's type tree (``dict`` and ``list`` with their members' types)."""
    if isinstance(value, dict):
        return {str(k): _typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_typed(v) for v in value]
    return type(value).__name__


def _error(e):
    return {"type": type(e).__name__, "message": str(e)}


#: The values the value-types and rpc-values cases store or send, and compare.
VALUES = {
    "str": "h\u00e9llo \u2713 \U0001f600",
    "empty": "",
    "bytes": b"\x00\xffraw\n",
    "int": 42,
    "bigint": 2**53 + 1,
    "negative": -7,
    "float": 3.25,
    "inf": float("inf"),
    "true": True,
    "none": None,
    "list": [1, "two", 3.5, None, [b"\x01"]],
    "dict": {"a": [1, {"b": None}], "c": "x", "d": {"e": b"\x02", "f": 1.5}},
}


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        parts = [unquote(p) for p in urlsplit(request.url).path.strip("/").split("/")]
        if len(parts) != 4 or parts[0] != "case":
            return Response("Use /case/<case>/<name>/<step>\n", status=400)
        _, case, name, step = parts
        stub = self.env.SUITE.getByName(name)
        worker = os.environ.get(NODE)
        if case in RPC_CASES and step != "dump":
            try:
                args = (VALUES,) if case == "rpc-values" else ()
                observed = await stub.step(case, step, *args)
                if case == "rpc-values":
                    # The values as the caller got them back, compared with what was sent.
                    got = observed["values"]
                    observed["types"] = _typed(got)
                    observed["same"] = {k: got[k] == v and _typed(got[k]) == _typed(v) for k, v in VALUES.items()}
                observed = _plain(observed)
            except Exception as e:
                # What the caller of an RPC method sees of the object's exception.
                observed = {"caught": _error(e), "ranOn": None,
                            **{flag: getattr(e, flag, None)
                               for flag in ("remote", "retryable", "overloaded", "durableObjectReset")}}
            observed["worker"] = worker
            return Response(json.dumps(observed), headers={"content-type": "application/json"})
        if case == "bcw-constructor" and step != "dump":
            # Three calls sent at once to an object whose constructor is still in its
            # blockConcurrencyWhile: none may run before it ends, and they run in order.
            async def one(i):
                response = await stub.fetch(f"http://suite/case/{case}/{name}/{step}?i={i}")
                return json.loads(await response.text())

            answers = await asyncio.gather(*(one(i) for i in range(3)))
            observed = {"answers": [{k: v for k, v in a.items() if k != "ranOn"} for a in answers],
                        "ranOn": answers[0]["ranOn"], "worker": worker}
            return Response(json.dumps(observed), headers={"content-type": "application/json"})
        response = await stub.fetch(request)  # an exception from the object is not caught: 500
        body = json.loads(await response.text())
        body["worker"] = worker
        return Response(json.dumps(body), status=response.status,
                        headers={"content-type": "application/json"})


class Suite(DurableObject):
    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        self.calls = 0  # in memory only: an instance's count of calls
        self.log = ["init start"]

        async def boot():
            boots = (await ctx.storage.get("boots") or 0) + 1
            await ctx.storage.put("boots", boots)
            # Long enough for the calls sent at once (bcw-constructor) to be waiting at the gate.
            await asyncio.sleep(0.05)
            if (ctx.id.name or "").startswith("constructor-error") and boots == 1:
                # "boots" was committed at the end of the first turn; this write, in the turn
                # that raises, goes with the reset.
                await ctx.storage.put("ctorFailed", boots)
                raise RuntimeError("the constructor fails the first time")
            self.boots = boots
            self.log.append("init end")

        ctx.blockConcurrencyWhile(boot)

    # -- the two ways in --------------------------------------------------------------------------

    async def fetch(self, request):
        url = urlsplit(request.url)
        _, case, name, step = [unquote(p) for p in url.path.strip("/").split("/")]
        self.calls += 1
        if step == "dump":
            observed = await self.dump()
        else:
            method = getattr(self, "case_" + case.replace("-", "_"))
            observed = await method(step.split(":")[-1], url.query)
        observed["ranOn"] = os.environ.get(NODE)
        return Response(json.dumps(_plain(observed)), headers={"content-type": "application/json"})

    async def step(self, case, step, *args):
        self.calls += 1
        method = getattr(self, "rpc_" + case.replace("-", "_"))
        observed = await method(step, *args)
        observed["ranOn"] = os.environ.get(NODE)
        return observed

    async def alarm(self, alarmInfo=None):
        storage = self.ctx.storage
        if await storage.get("alarmFailsOnce") and not alarmInfo.isRetry:
            await storage.put("alarmFailed", alarmInfo.retryCount)
            raise RuntimeError("the alarm handler fails its first run")
        ran = await storage.get("alarmRan") or []
        ran.append([os.environ.get(NODE), alarmInfo.retryCount, alarmInfo.isRetry])
        await storage.put("alarmRan", ran)

    async def dump(self):
        """What survives: the key-value pairs (the constructor's counter aside), the SQL tables
        and their rows, the alarm; and this instance's count of calls."""
        storage = self.ctx.storage
        kv = {k: v for k, v in (await storage.list()).items() if k != "boots"}
        tables = {}
        names = storage.sql.exec(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '\\_cf\\_%' ESCAPE '\\' "
            "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name"
        ).toArray()
        for row in names:
            tables[row["name"]] = storage.sql.exec(f'SELECT * FROM "{row["name"]}" ORDER BY rowid').raw().toArray()
        return {"kv": kv, "types": _typed(kv), "sql": tables, "alarm": await storage.getAlarm(),
                "calls": self.calls}

    # -- the cases --------------------------------------------------------------------------------

    async def case_kv_single(self, step, query):
        s = self.ctx.storage
        out = {"absent": await s.get("a")}
        await s.put("a", 1)
        out["afterPut"] = await s.get("a")
        await s.put("a", "replaced")
        out["afterReplace"] = await s.get("a")
        out["deleted"] = await s.delete("a")
        out["deletedAgain"] = await s.delete("a")
        out["afterDelete"] = await s.get("a")
        await s.put("kept", {"n": 1})
        out["kept"] = await s.get("kept")
        return out

    async def case_kv_many(self, step, query):
        s = self.ctx.storage
        await s.put({"k1": 1, "k3": 3, "k2": 2, "empty": None})
        out = {"many": await s.get(["k3", "absent", "k1", "empty"])}
        out["manyOrder"] = list(out["many"])
        out["deletedCount"] = await s.delete(["k1", "absent", "k2"])
        out["after"] = await s.get(["k1", "k2", "k3"])
        out["emptyIsNone"] = await s.get("empty")
        return out

    async def case_kv_sync(self, step, query):
        kv = self.ctx.storage.kv
        kv.put("s1", [1, 2])
        kv.put("s2", "two")
        out = {"get": kv.get("s1"), "absent": kv.get("nope"), "list": kv.list(prefix="s")}
        out["deleted"] = kv.delete("s2")
        out["after"] = kv.list()
        out["viaAsync"] = await self.ctx.storage.get("s1")
        return out

    async def case_list_options(self, step, query):
        s = self.ctx.storage
        await s.put({k: i for i, k in enumerate(["a", "b", "c", "d", "e", "p:1", "p:2", "p:3", "q"])})

        async def keys(**options):
            return list(await s.list(**options))

        return {
            "all": await keys(),
            "startEnd": await keys(start="b", end="d"),
            "start": await keys(start="p:2"),
            "startAfter": await keys(startAfter="p:2"),
            "end": await keys(end="b"),
            "prefix": await keys(prefix="p:"),
            "reverse": await keys(reverse=True),
            "limit": await keys(limit=3),
            "reverseLimit": await keys(reverse=True, limit=2),
            "prefixReverseLimit": await keys(prefix="p:", reverse=True, limit=2),
            "startEndReverse": await keys(start="b", end="e", reverse=True),
            "values": await s.list(prefix="p:"),
            "emptyRange": await keys(start="x", end="y"),
        }

    async def case_value_types(self, step, query):
        s = self.ctx.storage
        if step == "put":
            await s.put(VALUES)
            # Read back in the same instance (from its cache, if it has one).
            got = await s.get(list(VALUES))
            return {"same": {k: got[k] == v and _typed(got[k]) == _typed(v) for k, v in VALUES.items()}}
        got = await s.get(list(VALUES))
        return {"got": got, "types": _typed(got),
                "same": {k: got[k] == v and _typed(got[k]) == _typed(v) for k, v in VALUES.items()}}

    async def rpc_rpc_values(self, step, values):
        # The arguments as the object received them; stored, and sent back as the result.
        await self.ctx.storage.put("echo", values)
        return {"received": {k: values[k] == v and _typed(values[k]) == _typed(v) for k, v in VALUES.items()},
                "values": values}

    async def case_transaction_commit(self, step, query):
        s = self.ctx.storage
        await s.put("balance", 10)

        async def move(txn):
            balance = await txn.get("balance")
            await txn.put("balance", balance - 3)
            await txn.put("moved", 3)
            await txn.delete("nothing")
            return {"inside": await txn.get(["balance", "moved"])}

        returned = await s.transaction(move)
        return {"returned": returned, "after": await s.get(["balance", "moved"])}

    async def case_transaction_rollback(self, step, query):
        s = self.ctx.storage
        await s.put("balance", 10)
        s.sql.exec("CREATE TABLE IF NOT EXISTS ledger (amount INTEGER)")

        async def failing(txn):
            await txn.put("balance", 0)
            await txn.put("ghost", True)
            s.sql.exec("INSERT INTO ledger VALUES (-10)")
            raise ValueError("insufficient funds")

        out = {}
        try:
            await s.transaction(failing)
        except ValueError as e:
            out["raised"] = _error(e)

        async def explicit(txn):
            await txn.put("balance", 5)
            txn.rollback()
            return "rolled back"

        out["explicit"] = await s.transaction(explicit)
        out["after"] = await s.get(["balance", "ghost"])
        out["ledger"] = s.sql.exec("SELECT count(*) AS n FROM ledger").one()
        return out

    async def case_transaction_sync(self, step, query):
        s = self.ctx.storage
        s.sql.exec("CREATE TABLE seats (seat TEXT PRIMARY KEY, who TEXT)")

        def book(who, *seats):
            for seat in seats:
                s.sql.exec("INSERT INTO seats VALUES (?, ?)", seat, who)
            s.kv.put("last", who)
            return len(seats)

        out = {"booked": s.transactionSync(lambda: book("ann", "1A", "1B"))}
        try:
            s.transactionSync(lambda: book("bob", "2A", "1A"))  # 1A is taken: all of it undone
        except Exception as e:
            out["failed"] = type(e).__name__
        out["seats"] = s.sql.exec("SELECT seat, who FROM seats ORDER BY seat").toArray()
        out["last"] = await s.get("last")
        return out

    async def case_sql_exec(self, step, query):
        sql = self.ctx.storage.sql
        sql.exec("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, price REAL, data BLOB, note TEXT)")
        inserted = sql.exec(
            "INSERT INTO items (name, price, data, note) VALUES (?, ?, ?, ?) RETURNING id",
            "tea", 2.5, b"\x00\x01", None,
        ).one()
        sql.exec("INSERT INTO items (name, price, data, note) VALUES (?, ?, ?, ?)", "cake", 4, b"", "big")
        sql.exec("INSERT INTO items (name, price) VALUES ('bun', 1)")
        rows = sql.exec("SELECT * FROM items WHERE price > ? ORDER BY id", 1.5).toArray()
        return {
            "inserted": inserted,
            "rows": rows,
            "types": _typed(rows),
            "count": sql.exec("SELECT count(*) AS n FROM items").one(),
            "multi": sql.exec("UPDATE items SET note = 'x' WHERE id = 3; SELECT id, note FROM items WHERE id = ?", 3).toArray(),
        }

    async def case_sql_cursor(self, step, query):
        sql = self.ctx.storage.sql
        sql.exec("CREATE TABLE nums (n INTEGER)")
        written = sql.exec("INSERT INTO nums VALUES (1), (2), (3), (4)")
        cursor = sql.exec("SELECT n, n * n AS sq FROM nums ORDER BY n")
        first = next(cursor)
        rest = cursor.toArray()
        raw = sql.exec("SELECT n FROM nums WHERE n > ? ORDER BY n", 2).raw().toArray()
        read = sql.exec("SELECT * FROM nums")
        list(read)
        updated = sql.exec("UPDATE nums SET n = n + 10 WHERE n <= 2")
        return {
            "insertWritten": written.rowsWritten,
            "columns": cursor.columnNames,
            "first": first,
            "rest": rest,
            "raw": raw,
            "rowsRead": read.rowsRead,
            "updateWritten": updated.rowsWritten,
            "attribute": sql.exec("SELECT max(n) AS top FROM nums").one()["top"],
        }

    async def case_sql_errors(self, step, query):
        sql = self.ctx.storage.sql
        sql.exec("CREATE TABLE u (k TEXT PRIMARY KEY)")
        sql.exec("INSERT INTO u VALUES ('one')")
        out = {}
        for label, statement, bindings in [
            ("syntax", "SELEC nothing", ()),
            ("noTable", "SELECT * FROM missing", ()),
            ("unique", "INSERT INTO u VALUES (?)", ("one",)),
            ("tooFewBindings", "INSERT INTO u VALUES (?)", ()),
            ("transaction", "BEGIN TRANSACTION", ()),
        ]:
            try:
                sql.exec(statement, *bindings)
                out[label] = "no error"
            except Exception as e:
                out[label] = type(e).__name__
        try:
            sql.exec("SELECT * FROM u WHERE k = 'none'").one()
        except Exception as e:
            out["oneOfNone"] = _error(e)
        try:
            sql.exec("INSERT INTO u VALUES ('two'); INSERT INTO u VALUES ('one')")
        except Exception as e:
            out["batch"] = type(e).__name__
        out["rows"] = sql.exec("SELECT k FROM u ORDER BY k").raw().toArray()
        return out

    async def case_delete_all(self, step, query):
        s = self.ctx.storage
        await s.put({"x": 1, "y": 2})
        s.sql.exec("CREATE TABLE t (v)")
        s.sql.exec("INSERT INTO t VALUES (1)")
        await s.setAlarm(FAR)
        before = {"keys": sorted(await s.list()), "alarm": await s.getAlarm()}
        await s.deleteAll()
        tables = s.sql.exec("SELECT count(*) AS n FROM sqlite_master WHERE type = 'table' AND name = 't'").one()
        after = {"keys": sorted(await s.list()), "alarm": await s.getAlarm(), "tableT": tables["n"]}
        await s.put("afterwards", "written after deleteAll")
        return {"before": before, "after": after}

    async def case_alarm_api(self, step, query):
        s = self.ctx.storage
        out = {"none": await s.getAlarm()}
        await s.setAlarm(FAR)
        out["set"] = await s.getAlarm()
        await s.setAlarm(FAR + 60_000)
        out["replaced"] = await s.getAlarm()
        await s.deleteAlarm()
        out["deleted"] = await s.getAlarm()
        await s.setAlarm(FAR)  # left set: the alarm must survive the owner's death
        out["left"] = await s.getAlarm()
        return out

    async def case_alarm_fires(self, step, query):
        s = self.ctx.storage
        if step == "set":
            import time

            await s.setAlarm(time.time() * 1000 + 1000)
            return {"scheduled": await s.getAlarm() is not None, "ran": await s.get("alarmRan")}
        ran = await s.get("alarmRan")
        return {"done": ran is not None, "ran": ran, "alarmAfter": await s.getAlarm()}

    async def case_alarm_retry(self, step, query):
        s = self.ctx.storage
        if step == "set":
            import time

            await s.put("alarmFailsOnce", True)
            await s.setAlarm(time.time() * 1000 + 500)
            return {"scheduled": await s.getAlarm() is not None}
        ran = await s.get("alarmRan")
        return {"done": ran is not None, "ran": ran, "failed": await s.get("alarmFailed"),
                "alarmAfter": await s.getAlarm()}

    async def case_wait_until(self, step, query):
        s = self.ctx.storage
        if step == "run":
            async def later():
                await asyncio.sleep(0.2)  # the work goes on after the answer left
                await s.put("later", "written by waitUntil")

            self.ctx.waitUntil(later())
            return {"answered": True, "later": await s.get("later")}
        later = await s.get("later")
        return {"done": later is not None, "later": later}

    async def rpc_abort(self, step):
        s = self.ctx.storage
        if step == "run":
            await s.put("beforeAbort", self.calls)
            self.memory = "lost with the instance"
            self.ctx.abort("stop here")
        return {"calls": self.calls, "boots": self.boots, "memory": getattr(self, "memory", None),
                "beforeAbort": await s.get("beforeAbort")}

    async def rpc_constructor_error(self, step):
        s = self.ctx.storage
        return {"calls": self.calls, "boots": self.boots, "ctorFailed": await s.get("ctorFailed")}

    async def case_bcw_constructor(self, step, query):
        self.log.append(query)
        return {"boots": self.boots, "log": list(self.log)}

    async def case_constructor_state(self, step, query):
        await self.ctx.storage.put("calls", self.calls)
        return {"calls": self.calls, "boots": self.boots}

    async def case_output_gate(self, step, query):
        s = self.ctx.storage
        if step == "write":
            s.put("gated", "written before the answer")  # not awaited: the output gate holds it
            return {"answered": True}
        return {"gated": await s.get("gated"), "boots": self.boots}

    async def case_eviction(self, step, query):
        s = self.ctx.storage
        if step == "write":
            await s.put("evict", "kept in storage")
            self.memory = "kept in memory"
        return {"calls": self.calls, "boots": self.boots, "memory": getattr(self, "memory", None),
                "stored": await s.get("evict")}

    async def case_exception(self, step, query):
        s = self.ctx.storage
        if step == "boom":
            await s.put("beforeBoom", self.calls)
            raise ValueError("boom from the object's code")
        return {"calls": self.calls, "boots": self.boots, "beforeBoom": await s.get("beforeBoom")}

    async def rpc_rpc_exception(self, step):
        if step == "run":
            await self.ctx.storage.put("rpcBoom", self.calls)
            raise KeyError("missing from the object's code")
        return {"calls": self.calls, "boots": self.boots, "rpcBoom": await self.ctx.storage.get("rpcBoom")}


app = App(Default, durableObjects={"SUITE": Suite})
