"""Alarms: each object can schedule its own future, which survives restarts of the server.

    POST /<name>/schedule?in=<ms>   set the object's alarm <ms> milliseconds from now
    GET  /<name>                    JSON: the pending alarm (ms since the epoch, or null) and the
                                    runs so far (when each ran, and in which server process)

    twistd -n dotwist --app dotwist.examples.alarms
"""

import os
import time
from urllib.parse import parse_qs, urlsplit

from dotwist import App, DurableObject, Response, WorkerEntrypoint


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        name = urlsplit(request.url).path.strip("/").split("/")[0] or "default"
        return await self.env.TIMERS.getByName(name).fetch(request)


class Timer(DurableObject):
    async def fetch(self, request):
        url = urlsplit(request.url)
        if request.method == "POST" and url.path.endswith("/schedule"):
            delay = int(parse_qs(url.query).get("in", ["1000"])[0])
            await self.ctx.storage.setAlarm(time.time() * 1000 + delay)
        return Response.json({
            "alarm": await self.ctx.storage.getAlarm(),
            "runs": await self.ctx.storage.get("runs") or [],
        })

    async def alarm(self, alarmInfo):
        runs = await self.ctx.storage.get("runs") or []
        runs.append({"at": time.time(), "pid": os.getpid(), "retryCount": alarmInfo.retryCount})
        await self.ctx.storage.put("runs", runs)


app = App(Default, durableObjects={"TIMERS": Timer})
