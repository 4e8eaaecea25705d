"""The app the cluster tests serve on every node, by object name:

    POST /append/<name>?v=V        append V to the object's list "vals" (answered once durable)
    GET  /read/<name>              the list
    POST /blob/<name>?kb=K&v=V     store K KiB under "blob" and append V
    POST /storage/<name>?n=N       key-value, SQL and transactions (one rolled back); the state
    GET  /state/<name>             the state: every key-value pair and the SQL notes
    POST /wipe/<name>              deleteAll(); the state
    POST /rpc-append/<name>?v=V    the same append, through an RPC method of the stub
    GET  /boom/<name>              the object's RPC method raises ValueError
    GET  /unavailable/<name>       the object's RPC method raises a retryable DurableObjectError
    POST /alarm/<name>?in=MS       set the alarm MS from now; alarm() appends "alarm" to "vals"
    POST /hold/<name>?v=V&url=U    append V, then wait for GET U (a gate the test opens), then
                                   append V + "-after"
    GET  /ws/<name>                a plain WebSocket: echo, "count" answers the number of messages;
                                   when the reply to a client's close is the application's
                                   (web_socket_manual_reply_to_close), it answers "app says"
    GET  /hws/<name>               a hibernatable WebSocket: echo, "vals" answers the list,
                                   anything starting with "put:" appends the rest to "vals";
                                   answers a client's close with "hibernatable says" (as above)

Every answer from the object is JSON with the node that ran it and the owner's epoch (from the
``dotwist-node``/``dotwist-epoch`` headers the cluster sets on its responses; the RPC answers
carry the node from the environment variable the test sets).
"""

from __future__ import annotations

import json
import os
import time
from urllib.parse import parse_qs, unquote, urlsplit

from dotwist import App, DurableObject, DurableObjectError, Response, WebSocket, WebSocketPair, WorkerEntrypoint


def _query(request):
    return {k: v[0] for k, v in parse_qs(urlsplit(request.url).query).items()}


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        parts = urlsplit(request.url).path.strip("/").split("/")
        if len(parts) < 2:
            return Response("Use /<action>/<name>\n", status=400)
        action, name = parts[0], unquote(parts[1])
        stub = self.env.LOG.getByName(name)
        if action == "rpc-append":
            result = await stub.append(_query(request)["v"])
            return Response(json.dumps(result), headers={"content-type": "application/json"})
        if action == "boom":
            try:
                await stub.boom()
            except ValueError as e:
                return Response(json.dumps({"error": type(e).__name__, "message": str(e)}))
        if action == "unavailable":
            try:
                await stub.unavailable()
            except DurableObjectError as e:
                return Response(json.dumps({"error": type(e).__name__, "retryable": e.retryable,
                                            "message": str(e)}))
        response = await stub.fetch(request)
        if response.webSocket is not None:
            return response
        body = json.loads(await response.text())
        body["node"] = response.headers.get("dotwist-node")
        body["epoch"] = int(response.headers.get("dotwist-epoch") or 0)
        body["worker"] = os.environ.get("DOTWIST_TEST_NODE")
        return Response(json.dumps(body), status=response.status,
                        headers={"content-type": "application/json"})


class Log(DurableObject):
    async def append(self, v):
        vals = await self.ctx.storage.get("vals") or []
        vals.append(v)
        await self.ctx.storage.put("vals", vals)
        return {"vals": vals, "node": os.environ.get("DOTWIST_TEST_NODE")}

    async def boom(self):
        raise ValueError("boom from the object")

    async def unavailable(self):
        raise DurableObjectError("not now", retryable=True)

    async def alarm(self):
        vals = await self.ctx.storage.get("vals") or []
        vals.append("alarm")
        await self.ctx.storage.put("vals", vals)

    async def fetch(self, request):
        url = urlsplit(request.url)
        action = url.path.strip("/").split("/")[0]
        query = _query(request)
        storage = self.ctx.storage
        if action == "append":
            result = await self.append(query["v"])
            return Response(json.dumps({"vals": result["vals"]}))
        if action == "blob":
            await storage.put("blob", "x" * (int(query["kb"]) * 1024) + query["v"])
            result = await self.append(query["v"])
            return Response(json.dumps({"vals": result["vals"]}))
        if action == "storage":
            # Key-value, SQL, a transaction that rolls back and one that commits.
            n = int(query["n"])
            storage.sql.exec("CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, text TEXT)")
            storage.sql.exec("INSERT INTO notes (text) VALUES (?)", f"note {n}")
            await storage.put({f"k:{n}": n, f"other:{n}": [n]})

            def failing():
                storage.sql.exec("INSERT INTO notes (text) VALUES ('rolled back')")
                raise ValueError("roll back")

            try:
                storage.transactionSync(failing)
            except ValueError:
                pass

            async def moving(txn):
                await txn.put("moved", n)
                await txn.delete(f"other:{n}")

            await storage.transaction(moving)
            return Response(json.dumps(await self._state()))
        if action == "state":
            return Response(json.dumps(await self._state()))
        if action == "wipe":
            await storage.deleteAll()
            return Response(json.dumps(await self._state()))
        if action == "read":
            return Response(json.dumps({"vals": await storage.get("vals") or []}))
        if action == "alarm":
            await storage.setAlarm(time.time() * 1000 + int(query.get("in", "0")))
            return Response(json.dumps({"vals": await storage.get("vals") or []}))
        if action == "hold":
            await self.append(query["v"])
            import treq

            await treq.get(query["url"])
            result = await self.append(query["v"] + "-after")
            return Response(json.dumps({"vals": result["vals"]}))
        if action == "ws":
            client, server = WebSocketPair()
            server.accept()
            count = [0]

            def onMessage(event):
                count[0] += 1
                if event.data == "count":
                    server.send(str(count[0]))
                elif event.data == "close":
                    server.close(4001, "asked to close")
                else:
                    server.send(event.data)

            def onClose(event):
                if server.readyState == WebSocket.READY_STATE_CLOSING:
                    # The reply to the client's close is the application's (before 2026-04-07).
                    server.close(event.code if event.code != 1005 else 1000, "app says")
                return self.ctx.storage.put("closed", [event.code, event.reason])

            server.addEventListener("message", onMessage)
            server.addEventListener("close", onClose)
            return Response(None, status=101, webSocket=client)
        if action == "hws":
            client, server = WebSocketPair()
            self.ctx.acceptWebSocket(server)
            return Response(None, status=101, webSocket=client)
        if action == "closed":
            return Response(json.dumps({"closed": await storage.get("closed")}))
        return Response(json.dumps({"error": "unknown action"}), status=404)

    async def _state(self):
        storage = self.ctx.storage
        try:
            notes = [r["text"] for r in storage.sql.exec("SELECT text FROM notes ORDER BY id").toArray()]
        except Exception:
            notes = None
        return {"kv": {k: v for k, v in (await storage.list()).items()}, "notes": notes}

    async def webSocketMessage(self, ws, message):
        if message == "vals":
            ws.send(json.dumps(await self.ctx.storage.get("vals") or []))
        elif isinstance(message, str) and message.startswith("put:"):
            result = await self.append(message[4:])
            ws.send(json.dumps(result["vals"]))
        elif message == "close":
            ws.close(4002, "hibernatable asked to close")
        else:
            ws.send(message)

    async def webSocketClose(self, ws, code, reason, wasClean):
        if ws.readyState == WebSocket.READY_STATE_CLOSING:
            ws.close(code if code != 1005 else 1000, "hibernatable says")
        await self.ctx.storage.put("closed", [code, reason])


app = App(Default, durableObjects={"LOG": Log})
