"""The app bench/soak_bench.py serves while hostile clients attack it: the seed, objects made on
demand, and the notes a normal client writes and checks.

    GET /websocket          the seed's WebSocket (echo with "[Durable Object]: ")
    POST /obj/<name>        object <name> counts the request in its storage; the count back
    POST /notes/<n>         the "normal" object stores note n, durably; "ok n" back
    GET /notes              "<count> <smallest> <largest>" of the notes stored
    anything else           the seed's usage text
"""

from urllib.parse import urlsplit

from dotwist import App, DurableObject, Response, WorkerEntrypoint
from dotwist.examples.websocket_server import WebSocketServer


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        path = urlsplit(request.url).path
        if path.startswith("/obj/"):
            return await self.env.OBJECTS.getByName(path[5:]).fetch(request)
        if path.startswith("/notes"):
            return await self.env.NOTES.getByName("normal").fetch(request)
        return await self.env.WEBSOCKET_SERVER.getByName("foo").fetch(request)


class Counted(DurableObject):
    async def fetch(self, request):
        count = (await self.ctx.storage.get("count") or 0) + 1
        await self.ctx.storage.put("count", count)
        return Response(str(count))


class Notes(DurableObject):
    async def fetch(self, request):
        path = urlsplit(request.url).path
        if request.method == "POST":
            n = int(path.rsplit("/", 1)[1])
            await self.ctx.storage.put(f"note:{n:09d}", n)
            return Response(f"ok {n}")
        notes = await self.ctx.storage.list(prefix="note:")
        values = sorted(notes.values())
        if not values:
            return Response("0 - -")
        return Response(f"{len(values)} {values[0]} {values[-1]}")


app = App(
    Default,
    durableObjects={"WEBSOCKET_SERVER": WebSocketServer, "OBJECTS": Counted, "NOTES": Notes},
)
