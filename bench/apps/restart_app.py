"""The app bench/restart_bench.py restarts: objects that store a value, and objects that hold
hibernatable WebSockets.

    PUT /kv/<name>     store the body under "k"       GET /kv/<name>   the stored value
    GET /hws/<name>    a hibernatable WebSocket
"""

from dotwist import App, DurableObject, Response, WebSocketPair, WorkerEntrypoint


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        name = request.url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
        return await self.env.THINGS.getByName(name).fetch(request)


class Thing(DurableObject):
    async def fetch(self, request):
        if "/hws/" in request.url:
            client, server = WebSocketPair()
            self.ctx.acceptWebSocket(server)
            return Response(None, status=101, webSocket=client)
        if request.method == "PUT":
            await self.ctx.storage.put("k", await request.text())
            return Response("stored\n", status=201)
        value = await self.ctx.storage.get("k")
        return Response(value or "", status=200 if value is not None else 404)

    async def webSocketMessage(self, ws, message):
        ws.send(message)


app = App(Default, durableObjects={"THINGS": Thing})
