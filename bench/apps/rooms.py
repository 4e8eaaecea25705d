"""bench/hibernation_bench.py's app: many rooms (Durable Objects), hibernatable or not.

    /hibernate/<k>   object <k> of HIBERNATING: accepts with ctx.acceptWebSocket, echoes in
                     webSocketMessage; with no other activity it leaves memory after the
                     runtime's hibernateAfter and the next message constructs it again.
    /plain/<k>       object <k> of PLAIN: accepts with server.accept() and a message listener;
                     such an object stays in memory while its sockets are open.

Both echo each message unchanged. Load it as ``--app rooms`` with ``bench/apps`` on PYTHONPATH
(or by file path, as the benchmark's launcher does).
"""

from urllib.parse import urlsplit

from dotwist import App, DurableObject, Response, WebSocketPair, WorkerEntrypoint


def _isUpgrade(request):
    # Case-insensitive: Autobahn's client sends "Upgrade: WebSocket".
    return (request.headers.get("Upgrade") or "").lower() == "websocket"


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        parts = urlsplit(request.url).path.strip("/").split("/")
        if len(parts) == 2 and parts[1]:
            kind, name = parts
            if kind == "hibernate":
                ns = self.env.HIBERNATING
            elif kind == "plain":
                ns = self.env.PLAIN
            else:
                return Response("not found", status=404)
            return await ns.get(ns.idFromName(name)).fetch(request)
        return Response("use /hibernate/<k> or /plain/<k>", status=404)


class HibernatingRoom(DurableObject):
    async def fetch(self, request):
        if not _isUpgrade(request):
            return Response("expected Upgrade: websocket", status=426)
        client, server = WebSocketPair()
        self.ctx.acceptWebSocket(server)
        return Response(None, status=101, webSocket=client)

    async def webSocketMessage(self, ws, message):
        ws.send(message)

    async def webSocketClose(self, ws, code, reason, wasClean):
        ws.close(code, "closing")


class PlainRoom(DurableObject):
    async def fetch(self, request):
        if not _isUpgrade(request):
            return Response("expected Upgrade: websocket", status=426)
        client, server = WebSocketPair()
        server.accept()

        def onMessage(event):
            server.send(event.data)

        def onClose(event):
            server.close(event.code, "closing")

        server.addEventListener("message", onMessage)
        server.addEventListener("close", onClose)
        return Response(None, status=101, webSocket=client)


app = App(Default, durableObjects={"HIBERNATING": HibernatingRoom, "PLAIN": PlainRoom})
