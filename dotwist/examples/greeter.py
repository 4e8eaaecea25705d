"""A Worker and a Durable Object: each name gets its own object, which counts its visitors."""

from urllib.parse import urlsplit

from dotwist import App, DurableObject, Response, WorkerEntrypoint


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        name = urlsplit(request.url).path.strip("/") or "world"
        stub = self.env.GREETERS.getByName(name)  # one object per name, anywhere
        return await stub.fetch(request)


class Greeter(DurableObject):
    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        self.visits = 0  # in memory: lives as long as this instance

    async def fetch(self, request):
        self.visits += 1
        return Response.json({"hello": self.ctx.id.name, "visits": self.visits})


app = App(Default, durableObjects={"GREETERS": Greeter})
