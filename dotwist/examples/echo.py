"""The conformance app: every message on ``/echo`` goes socket -> Worker -> namespace -> object
-> socket and back unchanged (text as text, binary as binary).

The Autobahn testsuite's fuzzing client runs against it (``conformance/run``), so that the whole
Durable Object path is what is tested, not Autobahn alone.
"""

from dotwist import App, DurableObject, Response, WebSocketPair, WorkerEntrypoint


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        path = request.url.split("?", 1)[0]
        if path.endswith("/echo"):
            return await self.env.ECHO.getByName("echo").fetch(request)
        return Response("Use /echo for the WebSocket echo.\n", status=404)


class Echo(DurableObject):
    async def fetch(self, request):
        # Case-insensitive (RFC 6455): Autobahn's client, which the fuzzer uses, sends "WebSocket".
        if (request.headers.get("Upgrade") or "").lower() != "websocket":
            return Response("Expected Upgrade: websocket", status=426)
        client, server = WebSocketPair()
        server.accept()

        def onMessage(event):
            server.send(event.data)

        server.addEventListener("message", onMessage)
        return Response(None, status=101, webSocket=client)


app = App(Default, durableObjects={"ECHO": Echo})
