import time
from urllib.parse import urlparse

from workers import DurableObject, Response, WorkerEntrypoint


class Session(DurableObject):
    # Time To Live (TTL) in milliseconds
    timeToLiveMs = 1000

    async def fetch(self, _request):
        # Extend the TTL immediately following every request to the object.
        await self.ctx.storage.setAlarm(int(time.time() * 1000) + self.timeToLiveMs)
        seen = (await self.ctx.storage.get("seen") or 0) + 1
        await self.ctx.storage.put("seen", seen)
        return Response(f"seen {seen} time(s)")

    async def alarm(self):
        await self.ctx.storage.deleteAll()


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        stub = self.env.SESSIONS.getByName(urlparse(request.url).path)
        return await stub.fetch(request)
