"""The app the operations tests serve: key-value writes, SQL rows, alarms, slow requests, errors,
plain and hibernatable WebSockets, all by object name.

    PUT  /kv/<name>/<key>          store the body (201 once durable)
    GET  /kv/<name>/<key>          the stored body, or 404
    POST /sql/<name>               insert the body as a row of table notes
    POST /alarm/<name>?in=MS       set the alarm MS from now (alarm() counts its runs in "runs")
    POST /failing-alarm/<name>     set an alarm now whose handler raises
    GET  /slow/<name>?ms=MS        answer after MS milliseconds (writes key "slow" first)
    GET  /boom/<name>              the object's fetch raises
    GET  /ws/<name>                a plain WebSocket (echo)
    GET  /hws/<name>?tag=T         a hibernatable WebSocket with tag T (echo)
"""

from __future__ import annotations

import time
from urllib.parse import parse_qs, unquote, urlsplit

from twisted.internet.defer import Deferred

from dotwist import App, DurableObject, Response, WebSocketPair, WorkerEntrypoint


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        parts = urlsplit(request.url).path.strip("/").split("/")
        if len(parts) < 2:
            return Response("Use /<action>/<name>/...\n", status=400)
        return await self.env.THINGS.getByName(unquote(parts[1])).fetch(request)


class Thing(DurableObject):
    async def fetch(self, request):
        url = urlsplit(request.url)
        parts = url.path.strip("/").split("/")
        action, rest = parts[0], [unquote(p) for p in parts[2:]]
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        storage = self.ctx.storage
        if action == "kv":
            if request.method == "PUT":
                await storage.put(rest[0], await request.text())
                return Response("stored\n", status=201)
            value = await storage.get(rest[0])
            return Response(str(value), status=200) if value is not None else Response("not found\n", status=404)
        if action == "sql":
            storage.sql.exec("CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, text TEXT)")
            storage.sql.exec("INSERT INTO notes (text) VALUES (?)", await request.text())
            return Response("noted\n", status=201)
        if action == "alarm":
            await storage.setAlarm(time.time() * 1000 + int(query.get("in", "0")))
            return Response("set\n")
        if action == "failing-alarm":
            await storage.put("fail", True)
            await storage.setAlarm(1)  # long past, on any clock: due at once
            return Response("set\n")
        if action == "slow":
            await storage.put("slow", "started")
            from twisted.internet import reactor

            done: Deferred[None] = Deferred()
            reactor.callLater(int(query.get("ms", "500")) / 1000, done.callback, None)
            await done
            await storage.put("slow", "finished")
            return Response("slow done\n")
        if action == "boom":
            raise ValueError("boom from the object")
        if action in ("ws", "hws"):
            client, server = WebSocketPair()
            if action == "ws":
                server.accept()
                server.addEventListener("message", lambda event: server.send(event.data))
            else:
                self.ctx.acceptWebSocket(server, [query.get("tag", "none")])
            return Response(None, status=101, webSocket=client)
        return Response("unknown action\n", status=404)

    async def alarm(self, info=None):
        storage = self.ctx.storage
        await storage.put("runs", (await storage.get("runs") or 0) + 1)
        if await storage.get("fail"):
            raise RuntimeError("this alarm fails")

    async def webSocketMessage(self, ws, message):
        ws.send(message)


app = App(Default, durableObjects={"THINGS": Thing})
