from urllib.parse import urlparse

from js import Date
from workers import DurableObject, Response, WorkerEntrypoint


class Batcher(DurableObject):
    """Queues each request's body; an alarm sends the queue upstream in one request."""

    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        self.storage = ctx.storage

        @self.ctx.blockConcurrencyWhile
        async def initialize():
            vals = await self.storage.list(reverse=True, limit=1)
            self.count = int(next(iter(vals))) if len(vals) > 0 else 0

    async def fetch(self, request):
        self.count += 1

        # If there is no alarm set, set one: everything queued until it fires is one batch.
        current_alarm = await self.storage.getAlarm()
        if current_alarm is None:
            self.storage.setAlarm(Date.now() + int(self.env.BATCH_MS))

        await self.storage.put(self.count, await request.text())
        return Response.json({"queued": self.count})

    async def alarm(self):
        vals = await self.storage.list()
        await self.env.UPSTREAM.fetch(
            "http://upstream/batch", method="POST", body=list(vals.values())
        )
        await self.storage.deleteAll()
        self.count = 0


class Sink(DurableObject):
    """Keeps every batch the upstream service received."""

    async def record(self, batch):
        batches = await self.ctx.storage.get("batches") or []
        batches.append(batch)
        await self.ctx.storage.put("batches", batches)

    async def batches(self):
        return await self.ctx.storage.get("batches") or []


class Upstream(WorkerEntrypoint):
    async def fetch(self, request):
        await self.env.SINK.getByName("sink").record(await request.text())
        return Response("stored", status=202)


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        if urlparse(request.url).path == "/batches":
            return Response.json(await self.env.SINK.getByName("sink").batches())
        stub = self.env.BATCHER.getByName("foo")
        return await stub.fetch(request)
