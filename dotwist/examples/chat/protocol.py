"""The chat's rules and its wire format: what a valid name, room name and message is, the JSON
messages the room sends, the settings read from ``env``, and the time the objects read.

No I/O here: the room, the rate limiter and the Worker share these functions, and the tests
check them through the objects.
"""

from __future__ import annotations

import json
import time
import unicodedata
from dataclasses import dataclass
from typing import Any, Optional

MAX_NAME = 32
MAX_ROOM_NAME = 32
MAX_TEXT = 500
HISTORY = 100

#: Tag on every member's socket (``ctx.getWebSockets(MEMBER)``); each also has ``name:<name>``.
MEMBER = "member"
#: The keep-alive the page sends; the runtime answers it without waking the room.
PING = '{"type":"ping"}'
PONG = '{"type":"pong"}'
#: Close code for a socket refused at the door (a bad name): the page does not reconnect.
REFUSED = 4400


class ChatError(Exception):
    """Something the sender did wrong: ``code`` for programs, the message for people."""

    def __init__(self, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.code = code
        self.extra = extra

    def toMessage(self) -> str:
        return encode({"type": "error", "code": self.code, "message": str(self), **self.extra})


def encode(message: dict[str, Any]) -> str:
    return json.dumps(message, ensure_ascii=False, separators=(",", ":"))


def _hasControl(text: str) -> bool:
    # Cc: the C0 and C1 controls, DEL, and so newlines and tabs too (the page sends one line).
    return any(unicodedata.category(c) == "Cc" for c in text)


def checkName(name: str) -> str:
    """The member name, or ``ChatError`` saying what is wrong with it."""
    if not name.strip():
        raise ChatError("name-empty", "Pick a name to join the room.")
    if len(name) > MAX_NAME:
        raise ChatError("name-too-long", f"Names are at most {MAX_NAME} characters long (this one has {len(name)}).")
    if _hasControl(name):
        raise ChatError("name-control", "Names cannot contain control characters (such as newlines or tabs).")
    if name != name.strip():
        raise ChatError("name-spaces", "Names cannot start or end with spaces.")
    return name


def checkRoomName(room: str) -> str:
    if not room:
        raise ChatError("room-empty", "A room needs a name.")
    if len(room) > MAX_ROOM_NAME and not isPrivateRoomId(room):
        raise ChatError("room-too-long", f"Room names are at most {MAX_ROOM_NAME} characters long.")
    if _hasControl(room):
        raise ChatError("room-control", "Room names cannot contain control characters.")
    return room


def isPrivateRoomId(room: str) -> bool:
    """A 64-hex-digit room name is a private room's ID (from ``POST /api/room``)."""
    return len(room) == 64 and all(c in "0123456789abcdef" for c in room)


def parseClientMessage(raw: Any) -> str:
    """The text of a chat message from a client's frame, or ``ChatError``."""
    if not isinstance(raw, str):
        raise ChatError("bad-message", "Messages are JSON text frames, not binary.")
    try:
        data = json.loads(raw)
    except ValueError:
        raise ChatError("bad-message", 'Messages are JSON: {"type": "message", "text": "..."}.') from None
    if not isinstance(data, dict) or data.get("type") != "message":
        raise ChatError("bad-message", 'Unknown message; send {"type": "message", "text": "..."}.')
    text = data.get("text")
    if not isinstance(text, str) or not text.strip():
        raise ChatError("text-empty", "A message needs some text.")
    if len(text) > MAX_TEXT:
        raise ChatError("text-too-long", f"Messages are at most {MAX_TEXT} characters long (this one has {len(text)}).")
    if _hasControl(text):
        raise ChatError("text-control", "Messages cannot contain control characters (such as newlines or tabs).")
    return text


def rateLimited(retryAfterMs: int, text: str) -> ChatError:
    """The answer to a message refused by the rate limiter; ``text`` is the message, so that the
    client can offer it again (several may be in flight)."""
    seconds = max(1, -(-retryAfterMs // 1000))
    return ChatError(
        "rate-limited",
        f"You are sending messages too fast; you may send again in {seconds} s.",
        retryAfterMs=retryAfterMs,
        text=text,
    )


def nowMs(env: Any) -> int:
    """Milliseconds since the epoch: the runtime's time.

    ``twistd dotwist`` runs on the reactor's clock, which is ``time.time()``; a test that runs the
    app on a ``task.Clock`` binds it as the ``CLOCK`` var so that message times, the rate limiter
    and the alarm all follow the clock it advances.
    """
    clock = getattr(env, "CLOCK", None)
    return int((clock.seconds() if clock is not None else time.time()) * 1000)


def _number(env: Any, name: str, default: float) -> float:
    value = getattr(env, name, None)
    if value is None:
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = -1.0
    if not number > 0:
        raise ValueError(f"{name} must be a positive number, not {value!r}")
    return number


@dataclass(frozen=True)
class Settings:
    """What a deployment can change, as ``env`` vars (``twistd dotwist --var NAME=value``)."""

    #: Seconds a room must stay empty before its alarm deletes its history (``EMPTY_ROOM_TTL``).
    emptyRoomTtl: float = 24 * 3600.0
    #: Messages a client may send in a burst (``RATE_LIMIT_BURST``).
    rateLimitBurst: float = 5.0
    #: Seconds per message once the burst is spent (``RATE_LIMIT_INTERVAL``).
    rateLimitInterval: float = 1.0

    @classmethod
    def fromEnv(cls, env: Any) -> "Settings":
        return cls(
            emptyRoomTtl=_number(env, "EMPTY_ROOM_TTL", cls.emptyRoomTtl),
            rateLimitBurst=_number(env, "RATE_LIMIT_BURST", cls.rateLimitBurst),
            rateLimitInterval=_number(env, "RATE_LIMIT_INTERVAL", cls.rateLimitInterval),
        )


def clientAddress(headers: Any) -> str:
    """Who is sending, for the rate limiter: ``CF-Connecting-IP``, which dotwist's HTTP edge sets
    to the connection's peer address, as Cloudflare's edge does (``unknown`` if a request arrived
    without one, as over a UNIX socket; see docs/chat.md)."""
    value: Optional[str] = headers.get("CF-Connecting-IP")
    value = (value or "").strip()
    return value[:64] if value else "unknown"
