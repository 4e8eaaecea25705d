"""Real asyncio libraries inside Durable Objects, on the real asyncio reactor and real sockets:
aiohttp's client, redis-py's asyncio client, and treq (Twisted) in the same code."""

from __future__ import annotations

import os
import socket
import uuid

import pytest
import pytest_twisted
import treq

from dotwist import App, DurableObject, Response, WorkerEntrypoint

from support import serve

REDIS = ("127.0.0.1", 6379)


def redisAvailable() -> bool:
    try:
        with socket.create_connection(REDIS, timeout=1):
            return True
    except OSError:
        return False


needsRedis = pytest.mark.skipif(
    not redisAvailable() and os.environ.get("DOTWIST_REQUIRE_SERVICES") != "1",
    reason="Redis is not running on 127.0.0.1:6379 (CI sets DOTWIST_REQUIRE_SERVICES=1 and runs it)",
)


class Front(WorkerEntrypoint):
    async def fetch(self, request):
        if request.url.endswith("/plain"):
            return Response("plain text from the Worker")
        return await self.env.NS.getByName("o").fetch(request)


class Clients(DurableObject):
    async def fetch(self, request):
        import asyncio

        import aiohttp

        path = request.url.rsplit("/", 1)[1]
        base = request.url.rsplit("/", 1)[0]
        if path == "aiohttp":
            async with aiohttp.ClientSession() as session:
                async with session.get(base + "/plain") as response:
                    body = await response.text()
            await self.ctx.storage.put("fetched", body)
            return Response(f"{response.status} {await self.ctx.storage.get('fetched')}")
        if path == "redis":
            import redis.asyncio as redis

            key = request.headers.get("x-key")
            client = redis.Redis(host=REDIS[0], port=REDIS[1])
            try:
                counts = await asyncio.gather(*(client.incr(key) for _ in range(5)))
                stored = int(await client.get(key))
                await client.delete(key)
            finally:
                await client.aclose()
            await self.ctx.storage.put("redis", stored)
            return Response(f"{sorted(counts)} {await self.ctx.storage.get('redis')}")
        if path == "mixed":
            async def viaAiohttp():
                async with aiohttp.ClientSession() as session:
                    async with session.get(base + "/plain") as response:
                        return await response.text()

            async def viaTreq():
                response = await treq.get(base + "/plain", persistent=False)
                return await response.text()

            await self.ctx.storage.put("k", "stored")
            texts = await asyncio.gather(viaAiohttp(), viaTreq(), self.ctx.storage.get("k"))
            return Response(" | ".join(texts))
        return Response("?", status=404)


@pytest_twisted.ensureDeferred
async def test_aiohttp_client_inside_an_object():
    """An object uses aiohttp's client to call a local HTTP server, then storage: both work in
    one handler, on the reactor's asyncio loop."""
    service, port = await serve(App(Front, durableObjects={"NS": Clients}))
    try:
        response = await treq.get(f"http://127.0.0.1:{port}/aiohttp", persistent=False)
        assert await response.text() == "200 plain text from the Worker"
    finally:
        await service.stopService()


@needsRedis
@pytest_twisted.ensureDeferred
async def test_redis_asyncio_client_inside_an_object():
    """An object uses redis-py's asyncio client (five INCRs gathered at once), then storage."""
    service, port = await serve(App(Front, durableObjects={"NS": Clients}))
    try:
        key = f"dotwist-test-{uuid.uuid4()}"
        response = await treq.get(f"http://127.0.0.1:{port}/redis", headers={"x-key": key}, persistent=False)
        assert await response.text() == "[1, 2, 3, 4, 5] 5"
    finally:
        await service.stopService()


@pytest_twisted.ensureDeferred
async def test_aiohttp_treq_and_storage_gathered_in_one_handler():
    """asyncio.gather over an aiohttp call, a treq call (a Deferred) and a storage read."""
    service, port = await serve(App(Front, durableObjects={"NS": Clients}))
    try:
        response = await treq.get(f"http://127.0.0.1:{port}/mixed", persistent=False)
        assert await response.text() == (
            "plain text from the Worker | plain text from the Worker | stored"
        )
    finally:
        await service.stopService()


class SchedulesTimers(DurableObject):
    async def fetch(self, request):
        from twisted.internet import reactor

        from dotwist.context import CURRENT

        # A reactor timer due sooner than any other: the asyncio reactor re-arms its one timer
        # handle from here, and that handle runs every later timer in the context it was made in.
        reactor.callLater(0.001, lambda: None)
        handle = reactor._timerHandle  # Twisted's asyncio reactor's one asyncio TimerHandle
        return Response(repr(handle._context.get(CURRENT)))


@pytest_twisted.ensureDeferred
async def test_reactor_timers_are_not_armed_in_the_context_of_the_object_that_scheduled_them():
    """When an object's code schedules a reactor timer, the asyncio reactor's timer handle is made
    in an empty context, not the object's: the timers it runs later (anyone's) start with no
    current object, as under Twisted's other reactors, instead of running as that object and
    routing their calls through its gates."""
    service, port = await serve(App(Front, durableObjects={"NS": SchedulesTimers}))
    try:
        response = await treq.get(f"http://127.0.0.1:{port}/x", persistent=False)
        assert await response.text() == "None"
    finally:
        await service.stopService()
