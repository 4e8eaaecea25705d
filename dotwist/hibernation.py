"""The WebSocket Hibernation API's bookkeeping: which sockets an object accepted with
``ctx.acceptWebSocket``, their tags and attachments, and the object's auto-response.

A ``HibernationRecord`` belongs to the registry, not to an object instance, so it outlives the
instance: when an idle object is dropped from memory (hibernated), its sockets stay open here, and
the next event constructs the object again and finds ``getWebSockets()`` and each socket's
attachment as they were. Pure bookkeeping; no I/O.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any, Optional, TYPE_CHECKING

from .errors import RangeError
from .storage import codec

if TYPE_CHECKING:  # pragma: no cover
    from .objects import Actor, Namespace
    from .websocket import WebSocket

MAX_TAGS = 10
MAX_TAG_LENGTH = 256
MAX_SOCKETS = 32_768
MAX_ATTACHMENT = 16 * 1024


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
    """The hibernatable sockets of one object, kept by the registry across incarnations."""

    def __init__(self, namespace: "Namespace", objectId: Any) -> None:
        self.namespace = namespace
        self.objectId = objectId
        self.sockets: dict[Any, None] = {}  # insertion-ordered set of server ends
        self.autoResponse: Optional[WebSocketRequestResponsePair] = None
        self.eventTimeout: Optional[int] = None

    def liveActor(self) -> Optional["Actor"]:
        return self.namespace.actors.get(self.objectId.toString())

    def accept(self, ws: "WebSocket", tags: Optional[list[str]]) -> None:
        if getattr(ws, "_isClientEnd", True):
            raise TypeError("acceptWebSocket() takes the server end of a WebSocketPair.")
        if ws._accepted or ws._hib is not None:
            raise TypeError("This WebSocket has already been accepted.")
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
        ws._tags = tags
        ws._hib = self
        ws._accepted = True
        self.sockets[ws] = None
        early, ws._early = ws._early, None
        for kind, event in early or ():
            ws._route(kind, event)

    def getWebSockets(self, tag: Optional[str] = None) -> list["WebSocket"]:
        if tag is None:
            return list(self.sockets)
        return [ws for ws in self.sockets if tag in ws._tags]

    def getTags(self, ws: "WebSocket") -> list[str]:
        if ws._hib is not self:
            raise TypeError("getTags() takes a WebSocket this object accepted with acceptWebSocket().")
        return list(ws._tags)

    def remove(self, ws: "WebSocket") -> None:
        self.sockets.pop(ws, None)

    def autoRespond(self, ws: "WebSocket", data: Any, now: float) -> bool:
        """Answer ``data`` from the auto-response if it matches; True if it did."""
        pair = self.autoResponse
        if pair is None or data != pair.request:
            return False
        ws._autoResponseTimestamp = _dt.datetime.fromtimestamp(now, _dt.timezone.utc)
        ws._peer._transmit(pair.response.encode("utf-8"), False)
        return True


def serializeAttachment(ws: "WebSocket", value: Any) -> None:
    data = codec.encode(value)
    if len(data) > MAX_ATTACHMENT:
        raise RangeError(
            f"A WebSocket attachment can be at most {MAX_ATTACHMENT} bytes serialized "
            f"(this one is {len(data)})."
        )
    ws._attachment = data


def deserializeAttachment(ws: "WebSocket") -> Any:
    data = ws._attachment
    return None if data is None else codec.decode(data)
