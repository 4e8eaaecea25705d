from urllib.parse import urlparse

from workers import Response, WorkerEntrypoint, env, fetch


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        path = urlparse(request.url).path
        if path == "/json":
            return Response.json({"greeting": self.env.GREETING, "method": request.method})
        if path == "/module-env":
            # The SDK's module-level env is the same env the Worker gets.
            return Response(f"{env.GREETING} from the module-level env")
        if path == "/proxy":
            # An outbound request to this same Worker's /json.
            url = urlparse(request.url)
            upstream = await fetch(f"{url.scheme}://{url.netloc}/json", method="POST")
            data = await upstream.json()
            return Response(f"upstream said {data['greeting']} to a {data['method']}", upstream.status)
        if path == "/teapot":
            return Response("I'm a teapot", 418, headers={"X-Kind": "teapot"})
        return Response(f"{self.env.GREETING} world!")
