"""Test your Workers and Durable Objects in-process, deterministically (``docs/testing.md``).

With pytest, the plugin (``dotwist.testing.pytest_plugin``, registered when dotwist is installed)
gives each test a ``dotwist`` fixture: a ``Harness`` running your app with its own storage and its
own ``TestClock``. Everything here works without pytest too:

- ``Harness``: an app running for one test: ``env``, ``clock``, ``SELF`` (``fetch``,
  ``webSocket``), ``run``, ``restart``, ``close``; in-process, or over a real port with the same
  client API.
- With Cloudflare's names (``cloudflare:test``): ``runInDurableObject``,
  ``runDurableObjectAlarm``, ``listDurableObjectIds``, ``evictDurableObject``; and
  ``abortDurableObject`` (a reset, as ``ctx.abort()``) and ``isDurableObjectInMemory``.
- ``TestClock`` (``settle``, ``runReady``) and ``ClockLoop`` (asyncio on that clock).
- Lower level: ``makeRuntime``, ``liveActor``, ``result``, ``FakeConnection``,
  ``connectWebSocket``, and the misbehaving backends ``FailingCommits`` and ``LaterCommits``.

Importing this package imports no reactor; a harness over a real port uses the global one.
"""

from ..lifecycle import ObjectLifecycle
from ..websocket import CloseEvent
from .backends import FailingCommits, LaterCommits
from .client import (
    ClientWebSocket,
    FakeConnection,
    InProcessClient,
    WebSocketClosed,
    WebSocketRefused,
    WorkerClient,
    connectWebSocket,
)
from .clock import ClockLoop, TestClock
from .durable_objects import (
    abortDurableObject,
    evictDurableObject,
    isDurableObjectInMemory,
    listDurableObjectIds,
    runDurableObjectAlarm,
    runInDurableObject,
)
from .harness import Harness, NotReady
from .runtime import ObjectsOnly, liveActor, makeRuntime, result

__all__ = [
    "ClientWebSocket",
    "ClockLoop",
    "CloseEvent",
    "FailingCommits",
    "FakeConnection",
    "Harness",
    "InProcessClient",
    "LaterCommits",
    "NotReady",
    "ObjectLifecycle",
    "ObjectsOnly",
    "TestClock",
    "WebSocketClosed",
    "WebSocketRefused",
    "WorkerClient",
    "abortDurableObject",
    "connectWebSocket",
    "evictDurableObject",
    "isDurableObjectInMemory",
    "liveActor",
    "listDurableObjectIds",
    "makeRuntime",
    "result",
    "runDurableObjectAlarm",
    "runInDurableObject",
]
