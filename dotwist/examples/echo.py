"""The conformance app: every message goes socket -> Worker -> namespace -> object -> socket and
back unchanged (text as text, binary as binary).

- ``/echo``: the object accepts with ``server.accept()`` and echoes from a message listener.
- ``/hibernate``: the object accepts with ``ctx.acceptWebSocket()`` and echoes from
  ``webSocketMessage`` (the WebSocket Hibernation API).

The Autobahn testsuite's fuzzing client runs against both (``conformance/run``), so that the whole
Durable Object path is what is tested, not Autobahn alone.
"""

from dotwist import App, DurableObject, Response, WebSocketPair, WorkerEntrypoint


def isUpgrade(request):
    # Case-insensitive (RFC 6455): Autobahn's client, which the fuzzer uses, sends "WebSocket".
    return (request.headers.get("Upgrade") or "").lower() == "websocket"


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        path = request.url.split("?", 1)[0]
        if path.endswith("/echo"):
            return await self.env.ECHO.getByName("echo").fetch(request)
        if path.endswith("/hibernate"):
            return await self.env.HIBERNATING_ECHO.getByName("echo").fetch(request)
        return Response("Use /echo or /hibernate for the WebSocket echo.\n", status=404)


class Echo(DurableObject):
    async def fetch(self, request):
        if not isUpgrade(request):
            return Response("Expected Upgrade: websocket", status=426)
        client, server = WebSocketPair()
        server.accept()

        def onMessage(event):
            server.send(event.data)

        server.addEventListener("message", onMessage)
        return Response(None, status=101, webSocket=client)


class HibernatingEcho(DurableObject):
    async def fetch(self, request):
        if not isUpgrade(request):
            return Response("Expected Upgrade: websocket", status=426)
        client, server = WebSocketPair()
        self.ctx.acceptWebSocket(server)
        return Response(None, status=101, webSocket=client)

    def webSocketMessage(self, ws, message):
        ws.send(message)


app = App(Default, durableObjects={"ECHO": Echo, "HIBERNATING_ECHO": HibernatingEcho})
