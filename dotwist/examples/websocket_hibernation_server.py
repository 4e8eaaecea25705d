"""Cloudflare's "Build a WebSocket server with WebSocket Hibernation" example, ported to dotwist.

The same endpoints as the seed (``dotwist.examples.websocket_server``), but the object accepts
sockets with ``ctx.acceptWebSocket``: when it is idle, it leaves memory while the sockets stay
open, and the next message constructs it again and calls ``webSocketMessage``. The count comes from
``ctx.getWebSockets()``, which survives hibernation (an in-memory counter would not).

    twistd -n dotwist --app dotwist.examples.websocket_hibernation_server
"""

from dotwist import App, DurableObject, Response, WebSocketPair, WorkerEntrypoint


# Worker
class Default(WorkerEntrypoint):
    async def fetch(self, request):
        # This example will refer to the same Durable Object instance,
        # since the name "foo" is hardcoded.
        id = self.env.WEBSOCKET_HIBERNATION_SERVER.idFromName("foo")
        stub = self.env.WEBSOCKET_HIBERNATION_SERVER.get(id)
        return await stub.fetch(request)


# Durable Object
class WebSocketHibernationServer(DurableObject):
    async def fetch(self, request):
        if request.url.endswith("/websocket"):
            # Expect to receive a WebSocket Upgrade request.
            # If there is one, accept the request and return a WebSocket Response.
            upgradeHeader = request.headers.get("Upgrade")
            if not upgradeHeader or upgradeHeader != "websocket":
                return Response("Durable Object expected Upgrade: websocket", status=426)

            # Creates two ends of a WebSocket connection.
            client, server = WebSocketPair()

            # Calling `acceptWebSocket()` informs the runtime that this WebSocket is to begin
            # terminating request within the Durable Object. It has the effect of "accepting" the
            # connection, and allowing the WebSocket to send and receive messages.
            # Unlike `ws.accept()`, `ctx.acceptWebSocket(ws)` informs the runtime that the
            # WebSocket is "hibernatable", so the runtime does not need to pin this Durable Object
            # to memory while the connection is open. During periods of inactivity, the Durable
            # Object can be evicted from memory, but the WebSocket connection will remain open.
            # If at some later point the WebSocket receives a message, the runtime will recreate
            # the Durable Object (run the constructor) and deliver the message to the appropriate
            # handler.
            self.ctx.acceptWebSocket(server)

            return Response(None, status=101, webSocket=client)
        elif request.url.endswith("/getCurrentConnections"):
            # Retrieves all currently connected websockets accepted via `acceptWebSocket()`.
            numConnections = len(self.ctx.getWebSockets())
            if numConnections == 1:
                return Response(
                    f"There is {numConnections} WebSocket client connected to this Durable Object instance."
                )
            return Response(
                f"There are {numConnections} WebSocket clients connected to this Durable Object instance."
            )

        # Unknown path, reply with usage info.
        return Response("""
This Durable Object supports the following endpoints:
  /websocket
    - Creates a WebSocket connection. Any messages sent to it are echoed with a prefix.
  /getCurrentConnections
    - A regular HTTP GET endpoint that returns the number of currently connected WebSocket clients.
""")

    async def webSocketMessage(self, ws, message):
        # Upon receiving a message from the client, reply with the same message,
        # but will prefix the message with "[Durable Object]: ".
        ws.send(f"[Durable Object]: {message}")

    async def webSocketClose(self, ws, code, reason, wasClean):
        # If the client closes the connection, the runtime will invoke the webSocketClose()
        # handler. The runtime has already answered the client's close frame, so this is a no-op
        # kept from the original.
        ws.close(code, "Durable Object is closing WebSocket")


app = App(Default, durableObjects={"WEBSOCKET_HIBERNATION_SERVER": WebSocketHibernationServer})
