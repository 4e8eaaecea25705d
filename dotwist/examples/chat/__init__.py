"""A chat app: rooms, a rate limiter per client, history in SQL, and a page to chat in.

    twistd -n dotwist --app dotwist.examples.chat        # then open http://127.0.0.1:8080/

- ``ChatWorker`` (``worker.py``) serves the page and routes ``/api/room/<room>/websocket`` to a
  room: ``idFromName`` for a named room, ``idFromString`` for a private one (``POST /api/room``
  makes one with ``newUniqueId``).
- ``ChatRoom`` (``room.py``) keeps its members' WebSockets with the Hibernation API, the last 100
  messages in ``ctx.storage.sql``, and an alarm that deletes them once the room has been empty for
  ``EMPTY_ROOM_TTL`` seconds.
- ``RateLimiter`` (``limiter.py``), one per client address, is asked by RPC before each message.
- ``protocol.py``: the rules (names, messages) and the JSON the room sends.

docs/chat.md describes the protocol and how it is built.
"""

from dotwist import App

from .limiter import RateLimiter
from .room import ChatRoom
from .worker import ChatWorker

app = App(ChatWorker, durableObjects={"ROOMS": ChatRoom, "LIMITERS": RateLimiter})

__all__ = ["ChatRoom", "ChatWorker", "RateLimiter", "app"]
