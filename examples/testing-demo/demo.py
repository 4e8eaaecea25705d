"""A counter and a chat room: the app that docs/testing.md tests, and this project's tests test.

Serve it with ``twistd -n dotwist --app demo`` (from this directory).
"""

import json
import time
from urllib.parse import parse_qs, urlsplit

from dotwist import App, DurableObject, Response, WebSocketPair, WorkerEntrypoint

#: A room nobody is in forgets its history after this long (seconds).
EMPTY_ROOM_TTL = 3600


class Counter(DurableObject):
    async def increment(self, by=1):
        count = (await self.ctx.storage.get("count") or 0) + by
        await self.ctx.storage.put("count", count)
        return count

    async def fetch(self, request):
        return Response(str(await self.increment()))


class ChatRoom(DurableObject):
    async def fetch(self, request):
        if (request.headers.get("upgrade") or "").lower() != "websocket":
            return Response("Expected a WebSocket", status=426)
        name = parse_qs(urlsplit(request.url).query).get("name", ["anonymous"])[0]
        client, server = WebSocketPair()
        self.ctx.acceptWebSocket(server)
        server.serializeAttachment({"name": name})
        await self.ctx.storage.deleteAlarm()  # someone is here: keep the history
        history = await self.ctx.storage.get("history") or []
        server.send(json.dumps({"type": "welcome", "history": history}))
        return Response(None, status=101, webSocket=client)

    async def webSocketMessage(self, ws, message):
        entry = {"name": ws.deserializeAttachment()["name"], "text": message}
        history = (await self.ctx.storage.get("history") or [])[-99:] + [entry]
        await self.ctx.storage.put("history", history)
        for member in self.ctx.getWebSockets():
            member.send(json.dumps({"type": "message", **entry}))

    async def webSocketClose(self, ws, code, reason, wasClean):
        if not self.ctx.getWebSockets():  # the last member left
            await self.ctx.storage.setAlarm(time.time() * 1000 + EMPTY_ROOM_TTL * 1000)

    async def alarm(self, alarmInfo):
        await self.ctx.storage.deleteAll()


class Worker(WorkerEntrypoint):
    async def fetch(self, request):
        path = urlsplit(request.url).path.strip("/").split("/")
        if len(path) == 2 and path[0] == "counter":
            return await self.env.COUNTER.getByName(path[1]).fetch(request)
        if len(path) == 2 and path[0] == "room":
            return await self.env.ROOMS.getByName(path[1]).fetch(request)
        return Response("Not found", status=404)


app = App(Worker, durableObjects={"COUNTER": Counter, "ROOMS": ChatRoom})
