import json
from urllib.parse import unquote, urlparse

from js import Date, WebSocketPair, WebSocketRequestResponsePair
from workers import DurableObject, Response, WorkerEntrypoint


class ChatRoom(DurableObject):
    """A chat room on the WebSocket Hibernation API: the room may leave memory between messages;
    each socket carries its member's name in its attachment."""

    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        # Answered by the runtime without waking the room.
        self.ctx.setWebSocketAutoResponse(WebSocketRequestResponsePair.new("ping", "pong"))

    async def fetch(self, request):
        upgrade = request.headers.get("Upgrade")
        if not upgrade or upgrade.lower() != "websocket":
            return Response("Expected Upgrade: websocket", status=426)
        name = unquote(urlparse(request.url).path.rsplit("/", 1)[-1]) or "anonymous"
        client, server = WebSocketPair.new().object_values()
        self.ctx.acceptWebSocket(server, [name])
        server.serializeAttachment({"name": name, "joined": Date.now()})
        self.broadcast({"type": "join", "name": name, "online": len(self.ctx.getWebSockets())})
        return Response(None, status=101, web_socket=client)

    async def webSocketMessage(self, ws, message):
        member = ws.deserializeAttachment()
        if message == "/who":
            names = sorted(s.deserializeAttachment()["name"] for s in self.ctx.getWebSockets())
            ws.send(json.dumps({"type": "who", "names": names}))
            return
        self.broadcast({"type": "message", "name": member["name"], "text": message})

    async def webSocketClose(self, ws, code, reason, wasClean):
        # With this compatibility date the runtime leaves the close reply to us.
        ws.close(code, "Durable Object is closing WebSocket")
        member = ws.deserializeAttachment()
        self.broadcast({"type": "leave", "name": member["name"], "online": len(self.ctx.getWebSockets())})

    async def webSocketError(self, ws, error):
        ws.close(1011, "WebSocket error")
        print(f"WebSocket error: {error}")

    def broadcast(self, event):
        text = json.dumps(event)
        for ws in self.ctx.getWebSockets():
            try:
                ws.send(text)
            except Exception as e:
                print(f"Error broadcasting: {e}")


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        path = urlparse(request.url).path
        if path.startswith("/room/"):
            room = path.split("/")[2]
            if not room:
                return Response("Room name required", status=400)
            return await self.env.ROOMS.getByName(room).fetch(request)
        return Response("Not found. Connect a WebSocket to /room/<room>/<your name>.", status=404)
