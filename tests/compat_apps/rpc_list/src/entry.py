from urllib.parse import unquote, urlparse

from pyodide.ffi import to_js
from workers import DurableObject, Response, WorkerEntrypoint


class TodoList(DurableObject):
    async def items(self):
        stored = await self.ctx.storage.get("items")
        return stored if stored else []

    async def add(self, item):
        items = await self.items()
        items.append(item)
        await self.ctx.storage.put("items", to_js(items))
        return len(items)

    async def clear(self):
        await self.ctx.storage.delete("items")


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        parts = urlparse(request.url).path.strip("/").split("/")
        if not parts[0]:
            return Response("Use /<list>/add/<item>, /<list>/show or /<list>/clear", status=400)
        stub = self.env.LISTS.get(self.env.LISTS.idFromName(parts[0]))
        action = parts[1] if len(parts) > 1 else "show"
        if action == "add" and len(parts) > 2:
            count = await stub.add(unquote(parts[2]))
            return Response(f"{count} item(s)")
        if action == "clear":
            await stub.clear()
            return Response("cleared")
        items = await stub.items()
        return Response("\n".join(items) if items else "(empty)")
