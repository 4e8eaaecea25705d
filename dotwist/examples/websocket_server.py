"""Cloudflare's "Build a WebSocket server" example, ported line for line to dotwist.

The Worker sends every request to the one Durable Object named "foo". The object accepts WebSockets
on ``/websocket``, echoes each message with the prefix ``[Durable Object]: ``, counts its open
sockets, and reports the count on ``/getCurrentConnections``. Any other path gets the usage text.

A binary message is echoed as text: ``f"[Durable Object]: {event.data}"`` formats ``bytes`` the way
Python does (``[Durable Object]: b'...'``), where JavaScript would print ``[object Blob]``.

This is what ``twistd -n dotwist`` serves when no ``--app`` is given.
"""

from dotwist import App, DurableObject, Response, WebSocketPair, WorkerEntrypoint


# Worker
class Default(WorkerEntrypoint):
    async def fetch(self, request):
        # This example will always refer to the same Durable Object instance,
        # since it hardcodes the name "foo".
        id = self.env.WEBSOCKET_SERVER.idFromName("foo")
        stub = self.env.WEBSOCKET_SERVER.get(id)

        # Forward the request to the Durable Object.
        return await stub.fetch(request)


# Durable Object
class WebSocketServer(DurableObject):
    def __init__(self, ctx, env):
        super().__init__(ctx, env)

        # This is reset whenever the constructor runs because
        # regular WebSockets do not survive Durable Object resets.
        # WebSockets accepted via the Hibernation API can survive
        # a certain type of eviction, but this example will not cover that here.
        self.currentlyConnectedWebSockets = 0

    # Handle HTTP requests from clients.
    async def fetch(self, request):
        if request.url.endswith("/websocket"):
            # Expect to receive a WebSocket Upgrade request.
            # If there is one, accept the request and return a WebSocket Response.
            upgradeHeader = request.headers.get("Upgrade")
            if not upgradeHeader or upgradeHeader != "websocket":
                return Response("Durable Object expected Upgrade: websocket", status=426)

            # Creates two ends of a WebSocket connection.
            client, server = WebSocketPair()

            # Calling `accept()` informs the runtime that this WebSocket is to begin terminating
            # request within the Durable Object. It has the effect of "accepting" the connection,
            # and allowing the WebSocket to send and receive messages.
            server.accept()
            self.currentlyConnectedWebSockets += 1

            # Upon receiving a message from the client, the server replies with the same message,
            # but will prefix the message with "[Durable Object]: ".
            def onMessage(event):
                server.send(f"[Durable Object]: {event.data}")

            server.addEventListener("message", onMessage)

            # If the client closes the connection, the runtime will also close the connection.
            def onClose(cls):
                self.currentlyConnectedWebSockets -= 1
                server.close(cls.code, "Durable Object is closing WebSocket")

            server.addEventListener("close", onClose)

            return Response(None, status=101, webSocket=client)
        elif request.url.endswith("/getCurrentConnections"):
            if self.currentlyConnectedWebSockets == 1:
                return Response(
                    f"There is {self.currentlyConnectedWebSockets} WebSocket client connected to this Durable Object instance."
                )
            return Response(
                f"There are {self.currentlyConnectedWebSockets} WebSocket clients connected to this Durable Object instance."
            )

        # Unknown path, reply with usage info.
        return Response("""
This Durable Object supports the following endpoints:
  /websocket
    - Creates a WebSocket connection. Any messages sent to it are echoed with a prefix.
  /getCurrentConnections
    - A regular HTTP GET endpoint that returns the number of currently connected WebSocket clients.
""")


# Bindings (Cloudflare's wrangler.toml [[durable_objects.bindings]]): name -> class.
app = App(Default, durableObjects={"WEBSOCKET_SERVER": WebSocketServer})
