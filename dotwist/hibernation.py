"""The WebSocket Hibernation API's bookkeeping: which sockets an object accepted with
``ctx.acceptWebSocket``, their tags, and the object's auto-response and event timeout.

A ``HibernationRecord`` belongs to the registry, not to an object instance, so it outlives the
instance: when an idle object leaves memory (hibernates), its sockets stay open here, and the next
event constructs the object again and finds ``getWebSockets()`` and each socket's attachment as
they were. Pure bookkeeping; no I/O: the record is given the function that delivers an event to
the object, and the one that finds the object's live incarnation.
"""

from __future__ import annotations

import datetime as _dt
from typing import TYPE_CHECKING, Any, Callable, Optional

from .errors import RangeError
from .ids import DurableObjectId
from . import websocket

if TYPE_CHECKING:  # pragma: no cover
    from .objects import Actor
    from .websocket import Event, WebSocket

MAX_TAGS = 10
MAX_TAG_LENGTH = 256
MAX_SOCKETS = 32_768

_HANDLERS = {"message": "webSocketMessage", "close": "webSocketClose", "error": "webSocketError"}


class WebSocketRequestResponsePair:
    """An auto-response: a text message equal to ``request`` is answered with ``response`` by the
    runtime, without waking the object."""

    __slots__ = ("request", "response")

    def __init__(self, request: str, response: str) -> None:
        if not isinstance(request, str) or not isinstance(response, str):
            raise TypeError("WebSocketRequestResponsePair takes two strings")
        self.request = request
        self.response = response

    def __repr__(self) -> str:
        return f"WebSocketRequestResponsePair({self.request!r}, {self.response!r})"


class HibernationRecord:
    """The hibernatable sockets of one object, kept by the registry across incarnations.

    ``deliver(record, ws, kind, event)`` takes an event on one of the sockets to the object;
    ``findLive(namespace, key)`` gives the object's incarnation in memory, if any (what the
    sockets send passes its output gate).
    """

    def __init__(
        self,
        namespace: str,
        objectId: DurableObjectId,
        deliver: Callable[["HibernationRecord", "WebSocket", str, "Event"], None],
        findLive: Callable[[str, str], Optional["Actor"]],
    ) -> None:
        self.namespace = namespace
        self.objectId = objectId
        self.deliver = deliver
        self._findLive = findLive
        self.sockets: dict["WebSocket", None] = {}  # insertion-ordered set of server ends
        self.autoResponse: Optional[WebSocketRequestResponsePair] = None
        self.eventTimeout: Optional[int] = None

    def liveActor(self) -> Optional["Actor"]:
        return self._findLive(self.namespace, self.objectId.toString())

    def accept(self, ws: "WebSocket", tags: Optional[list[str]]) -> None:
        tags = list(tags or [])
        if len(tags) > MAX_TAGS:
            raise RangeError(f"A WebSocket can have at most {MAX_TAGS} tags (got {len(tags)}).")
        for tag in tags:
            if not isinstance(tag, str):
                raise TypeError(f"WebSocket tags must be strings, not {type(tag).__name__}")
            if len(tag) > MAX_TAG_LENGTH:
                raise RangeError(f"A WebSocket tag can be at most {MAX_TAG_LENGTH} characters long.")
        if len(self.sockets) >= MAX_SOCKETS:
            raise RangeError(
                f"A Durable Object can accept at most {MAX_SOCKETS} hibernatable WebSockets."
            )
        self.sockets[ws] = None
        try:
            websocket.makeHibernatable(ws, self, tags)
        except BaseException:
            del self.sockets[ws]
            raise

    def getWebSockets(self, tag: Optional[str] = None) -> list["WebSocket"]:
        if tag is None:
            return list(self.sockets)
        return [ws for ws in self.sockets if tag in websocket.tagsOf(ws)]

    def getTags(self, ws: "WebSocket") -> list[str]:
        if websocket.hibernationRecordOf(ws) is not self:
            raise TypeError("getTags() takes a WebSocket this object accepted with acceptWebSocket().")
        return list(websocket.tagsOf(ws))

    def autoResponseTimestamp(self, ws: "WebSocket") -> Optional[_dt.datetime]:
        return websocket.autoResponseTime(ws)

    def remove(self, ws: "WebSocket") -> None:
        self.sockets.pop(ws, None)

    def autoRespond(self, ws: "WebSocket", data: Any, now: float) -> bool:
        """Answer ``data`` from the auto-response if it matches; True if it did."""
        pair = self.autoResponse
        if pair is None or data != pair.request:
            return False
        websocket.autoRespond(ws, pair.response, now)
        return True

    def handlerCall(self, ws: "WebSocket", kind: str, event: "Event") -> tuple[str, tuple[Any, ...]]:
        """The object's handler for an event, and its arguments."""
        if isinstance(event, websocket.MessageEvent):
            return _HANDLERS[kind], (ws, event.data)
        if isinstance(event, websocket.CloseEvent):
            return _HANDLERS[kind], (ws, event.code, event.reason, event.wasClean)
        return _HANDLERS[kind], (ws, event.error)


__all__ = [
    "HibernationRecord",
    "MAX_SOCKETS",
    "MAX_TAGS",
    "MAX_TAG_LENGTH",
    "WebSocketRequestResponsePair",
]
