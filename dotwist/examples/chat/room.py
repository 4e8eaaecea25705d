"""``ChatRoom``: one object per room. It holds the members' WebSockets (hibernatable), the last
100 messages in SQL, and an alarm that deletes the history once the room has been empty long
enough.

What lives where, so that the room can leave memory between messages:

- members: the sockets themselves, accepted with ``ctx.acceptWebSocket(ws, ["member",
  "name:<name>"])``; each socket's attachment holds ``{"name", "ip", "joinedAt"}``;
- history: the SQL table ``messages`` (``id``, ``name``, ``text``, ``at``), trimmed to 100 rows;
- emptiness: the key ``emptySince`` (ms) while nobody is in a room that has history, and the
  object's alarm, which is set whenever the room has history.

Nothing else is kept in the instance: a woken room is rebuilt from the above.
"""

from __future__ import annotations

from typing import Any, Iterable, Optional
from urllib.parse import parse_qs, urlsplit

from twisted.logger import Logger

from dotwist import (
    DurableObject,
    DurableObjectError,
    Request,
    Response,
    WebSocketPair,
    WebSocketRequestResponsePair,
)

from .protocol import (
    HISTORY,
    MEMBER,
    PING,
    PONG,
    REFUSED,
    ChatError,
    Settings,
    checkName,
    clientAddress,
    encode,
    nowMs,
    parseClientMessage,
    rateLimited,
)

_log = Logger(namespace="dotwist.examples.chat")


class ChatRoom(DurableObject):
    def __init__(self, ctx: Any, env: Any) -> None:
        super().__init__(ctx, env)
        self.settings = Settings.fromEnv(env)
        self.hasTable: Optional[bool] = None  # unknown until asked; deleteAll() drops the table
        # The page's keep-alive is answered by the runtime: it never wakes a hibernated room.
        ctx.setWebSocketAutoResponse(WebSocketRequestResponsePair(PING, PONG))

    # -- joining ------------------------------------------------------------------------------

    async def fetch(self, request: Request) -> Response:
        if (request.headers.get("Upgrade") or "").lower() != "websocket":
            return Response("Expected Upgrade: websocket", status=426)
        name = parse_qs(urlsplit(request.url).query).get("name", [""])[0]
        client, server = WebSocketPair()
        try:
            checkName(name)
        except ChatError as error:
            # Refused at the door: tell the client why, over the socket (a browser cannot read
            # an HTTP error body), and close it. Nothing is stored, nobody else hears of it.
            server.accept()
            server.send(error.toMessage())
            server.close(REFUSED, str(error)[:123])
            return Response(None, status=101, webSocket=client)
        now = nowMs(self.env)
        self.ctx.acceptWebSocket(server, [MEMBER, "name:" + name])
        server.serializeAttachment({"name": name, "ip": clientAddress(request.headers), "joinedAt": now})
        kv = self.ctx.storage.kv
        if kv.get("emptySince") is not None:
            kv.delete("emptySince")
        members = self.members()
        server.send(encode({"type": "welcome", "name": name, "members": members, "history": self.history()}))
        if len(self.ctx.getWebSockets("name:" + name)) == 1:  # a second tab of a member is no news
            self.broadcast({"type": "join", "name": name, "at": now, "members": members}, exclude=server)
        return Response(None, status=101, webSocket=client)

    # -- talking ------------------------------------------------------------------------------

    async def webSocketMessage(self, ws: Any, message: Any) -> None:
        member = ws.deserializeAttachment()
        try:
            text = parseClientMessage(message)
            wait = await self.askLimiter(member["ip"], text)
            if wait:
                raise rateLimited(wait, text)
        except ChatError as error:
            ws.send(error.toMessage())
            return
        now = nowMs(self.env)
        sql = self.ctx.storage.sql
        if not self.hasTable:
            sql.exec(
                "CREATE TABLE IF NOT EXISTS messages "
                "(id INTEGER PRIMARY KEY, name TEXT NOT NULL, text TEXT NOT NULL, at INTEGER NOT NULL)"
            )
            self.hasTable = True
        messageId = sql.exec(
            "INSERT INTO messages (name, text, at) VALUES (?, ?, ?) RETURNING id", member["name"], text, now
        ).one()["id"]
        assert isinstance(messageId, int)  # an INTEGER PRIMARY KEY
        sql.exec("DELETE FROM messages WHERE id <= ?", messageId - HISTORY)
        if await self.ctx.storage.getAlarm() is None:
            await self.ctx.storage.setAlarm(now + self.settings.emptyRoomTtl * 1000)
        # Sent once the row is on disk (the output gate): nobody sees a message a crash can lose.
        self.broadcast({"type": "message", "id": messageId, "name": member["name"], "text": text, "at": now})

    # -- leaving ------------------------------------------------------------------------------

    async def webSocketClose(self, ws: Any, code: int, reason: str, wasClean: bool) -> None:
        member = ws.deserializeAttachment()
        if member is None:
            return
        now = nowMs(self.env)
        if not self.ctx.getWebSockets("name:" + member["name"]):
            self.broadcast({"type": "leave", "name": member["name"], "at": now, "members": self.members()})
        if not self.ctx.getWebSockets(MEMBER) and self.tableExists():
            await self.ctx.storage.put("emptySince", now)
            await self.ctx.storage.setAlarm(now + self.settings.emptyRoomTtl * 1000)

    async def webSocketError(self, ws: Any, error: Any) -> None:
        pass  # webSocketClose follows and does the leaving

    # -- forgetting ---------------------------------------------------------------------------

    async def alarm(self, alarmInfo: Any) -> None:
        """Delete the history once the room has been empty for ``EMPTY_ROOM_TTL``; otherwise look
        again later. The alarm is set whenever the room has history, so even a room whose members
        vanished in a crash (no ``webSocketClose``) is cleaned up."""
        storage = self.ctx.storage
        now = nowMs(self.env)
        ttl = int(self.settings.emptyRoomTtl * 1000)
        if self.ctx.getWebSockets(MEMBER):
            await storage.setAlarm(now + ttl)
            return
        emptySince = await storage.get("emptySince")
        if emptySince is None:  # members left without a close (the server was killed)
            await storage.put("emptySince", now)
            emptySince = now
        if now - emptySince >= ttl:
            await storage.deleteAll()  # the messages, emptySince, the alarm: the room is new again
            self.hasTable = False
        else:
            await storage.setAlarm(emptySince + ttl)

    # -- what anyone may ask ----------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """The room at a glance (``GET /api/room/<name>``): its members and stored messages."""
        count = self.ctx.storage.sql.exec("SELECT count(*) AS n FROM messages").one()["n"] if self.tableExists() else 0
        return {"members": self.members(), "messages": count}

    # -- helpers ------------------------------------------------------------------------------

    async def askLimiter(self, ip: str, text: str) -> int:
        """The sender's limiter's answer: 0, or the milliseconds to wait.

        A call that fails as retryable, or because the limiter was reset, is tried once more with
        a new stub (a broken stub stays broken). dotwist fails a call, as retryable, when the
        limiter left memory while the call waited for this room's last write to commit
        (tests/test_rpc_eviction_race.py); the retry constructs the limiter again. If the retry
        fails too, the sender is told to send the message again.
        """
        try:
            try:
                wait: int = await self.env.LIMITERS.getByName(ip).take()
            except DurableObjectError as error:
                if not (error.retryable or error.durableObjectReset):
                    raise
                wait = await self.env.LIMITERS.getByName(ip).take()
        except DurableObjectError:
            _log.failure("The rate limiter for {ip} failed", ip=ip)
            raise ChatError(
                "try-again", "The server could not take this message; please send it again.", text=text
            ) from None
        return wait

    def members(self) -> list[str]:
        names = {ws.deserializeAttachment()["name"] for ws in self.ctx.getWebSockets(MEMBER)}
        return sorted(names, key=lambda n: (n.casefold(), n))

    def tableExists(self) -> bool:
        if self.hasTable is None:
            found = self.ctx.storage.sql.exec("PRAGMA table_list('messages')").toArray()
            self.hasTable = bool(found)
        return self.hasTable

    def history(self) -> list[dict[str, Any]]:
        if not self.tableExists():
            return []
        rows = self.ctx.storage.sql.exec("SELECT id, name, text, at FROM messages ORDER BY id").toArray()
        return [{"type": "message", **row} for row in rows]

    def broadcast(self, message: dict[str, Any], exclude: Any = None) -> None:
        data = encode(message)
        sockets: Iterable[Any] = self.ctx.getWebSockets(MEMBER)
        for ws in sockets:
            if ws is exclude:
                continue
            try:
                ws.send(data)
            except TypeError:
                pass  # closing already: its webSocketClose is on the way
