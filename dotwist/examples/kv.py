"""A small durable key-value service: one Durable Object per bucket, backed by ``ctx.storage``.

    PUT    /<bucket>/<key>   store the request body; 201 once it is durable
    GET    /<bucket>/<key>   the stored body, or 404
    DELETE /<bucket>/<key>   204 if it existed, 404 if not
    GET    /<bucket>/        every key in the bucket, as JSON
    POST   /<bucket>/_incr/<key>   add 1 to a counter and return the new value

The response to a write is not sent before the write is durable (the output gate), so a client
that got ``201`` can rely on the value surviving a crash of the server.
"""

from urllib.parse import unquote, urlsplit

from dotwist import App, DurableObject, Response, WorkerEntrypoint


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        path = urlsplit(request.url).path
        bucket, _, rest = path.lstrip("/").partition("/")
        if not bucket:
            return Response("Use /<bucket>/<key>\n", status=400)
        return await self.env.BUCKETS.getByName(unquote(bucket)).fetch(request)


class Bucket(DurableObject):
    async def fetch(self, request):
        path = urlsplit(request.url).path
        key = unquote(path.lstrip("/").partition("/")[2])
        storage = self.ctx.storage
        if key.startswith("_incr/") and request.method == "POST":
            name = key[len("_incr/"):]
            value = (await storage.get(name) or 0) + 1
            await storage.put(name, value)
            return Response.json(value)
        if not key:
            return Response.json(await storage.list())
        if request.method == "PUT":
            await storage.put(key, await request.text())
            return Response("stored\n", status=201)
        if request.method == "DELETE":
            existed = await storage.delete(key)
            return Response(None, status=204) if existed else Response("not found\n", status=404)
        value = await storage.get(key)
        if value is None:
            return Response("not found\n", status=404)
        return Response(value if isinstance(value, str) else str(value))


app = App(Default, durableObjects={"BUCKETS": Bucket})
