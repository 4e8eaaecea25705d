from urllib.parse import urlparse

from workers import DurableObject, Response, WorkerEntrypoint


class Counter(DurableObject):
    """Hit counts per path in the object's SQLite database."""

    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        self.sql = ctx.storage.sql
        self.sql.exec(
            "CREATE TABLE IF NOT EXISTS hits (path TEXT PRIMARY KEY, count INTEGER NOT NULL)"
        )

    async def hit(self, path):
        self.sql.exec(
            "INSERT INTO hits VALUES (?, 1) ON CONFLICT(path) DO UPDATE SET count = count + 1",
            path,
        )
        return self.sql.exec("SELECT count FROM hits WHERE path = ?", path).one().count

    async def top(self):
        rows = self.sql.exec("SELECT path, count FROM hits ORDER BY count DESC, path")
        return [{"path": row.path, "count": row["count"]} for row in rows]

    async def reset(self):
        self.sql.exec("DELETE FROM hits")
        return self.sql.exec("SELECT 'Hello, World!' AS greeting").one().greeting


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        path = urlparse(request.url).path
        counter = self.env.COUNTERS.getByName("site")
        if path == "/top":
            return Response.json({"label": self.env.LABEL, "top": await counter.top()})
        if path == "/reset":
            if request.headers.get("Authorization") != f"Bearer {self.env.ADMIN_TOKEN}":
                return Response("Forbidden", status=403)
            return Response(await counter.reset())
        return Response(f"{self.env.LABEL}: {await counter.hit(path)}")
