"""The chat's Worker: serves the page, makes private rooms, and routes each room's WebSockets to
its ``ChatRoom``.

    GET  /                              the page (index.html, chat.css, chat.js)
    POST /api/room                      a new private room: {"id": "<64 hex digits>"}
    GET  /api/room/<room>               {"members": [...], "messages": <stored>}
    GET  /api/room/<room>/websocket?name=<name>   join (Upgrade: websocket)

A room name of 64 hex digits is a private room's ID (``idFromString``); any other name is a
public room (``idFromName``).
"""

from __future__ import annotations

from importlib import resources
from typing import Any
from urllib.parse import unquote, urlsplit

from dotwist import DurableObjectNamespace, DurableObjectStub, Request, Response, WorkerEntrypoint

from .protocol import ChatError, checkRoomName, clientAddress, isPrivateRoomId

_PAGES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/chat.css": ("chat.css", "text/css; charset=utf-8"),
    "/chat.js": ("chat.js", "text/javascript; charset=utf-8"),
}
_files: dict[str, bytes] = {}


def page(filename: str) -> bytes:
    """A file of the page, read once from the installed package."""
    body = _files.get(filename)
    if body is None:
        body = _files[filename] = resources.files(__package__).joinpath(filename).read_bytes()
    return body


def _json(data: Any, status: int = 200) -> Response:
    response: Response = Response.json(data, status=status)
    return response


def _error(status: int, code: str, message: str) -> Response:
    return _json({"error": message, "code": code}, status)


class ChatWorker(WorkerEntrypoint):
    async def fetch(self, request: Request) -> Response:
        path = urlsplit(request.url).path
        if path in _PAGES:
            if request.method not in ("GET", "HEAD"):
                return _error(405, "method", f"{request.method} is not allowed here.")
            filename, contentType = _PAGES[path]
            return Response(page(filename), headers={"Content-Type": contentType, "Cache-Control": "no-cache"})
        if path == "/api/room":
            if request.method != "POST":
                return _error(405, "method", "POST /api/room makes a new private room.")
            return _json({"id": self.rooms().newUniqueId().toString()})
        parts = path.split("/")
        if len(parts) in (4, 5) and parts[:3] == ["", "api", "room"] and (len(parts) == 4 or parts[4] == "websocket"):
            try:
                stub = self.room(unquote(parts[3]))
            except ChatError as error:
                return _error(404 if error.code == "no-such-room" else 400, error.code, str(error))
            if len(parts) == 4:
                return _json(await stub.info())
            # The room reads the sender's address from this header (for its rate limiter).
            request.headers.set("CF-Connecting-IP", clientAddress(request.headers))
            response: Response = await stub.fetch(request)
            return response
        return _error(404, "not-found", f"Nothing at {path}.")

    def rooms(self) -> DurableObjectNamespace:
        rooms: DurableObjectNamespace = self.env.ROOMS
        return rooms

    def room(self, name: str) -> DurableObjectStub:
        checkRoomName(name)
        rooms = self.rooms()
        if isPrivateRoomId(name):
            try:
                return rooms.get(rooms.idFromString(name))
            except TypeError:
                raise ChatError("no-such-room", "There is no private room with this ID.") from None
        return rooms.get(rooms.idFromName(name))


