"""asyncio inside a Durable Object: a price cache in front of a slow upstream service.

``GET /price/<symbol>`` goes to the object named after the symbol. The object reads its cached
price and the time it was fetched at once (``asyncio.gather`` over two storage reads), and if the
price is older than ``MAX_AGE`` seconds it asks the upstream with aiohttp, within
``asyncio.timeout``, retrying with ``asyncio.sleep`` between tries, then stores what it got.
Requests for one symbol that arrive while a refresh is running wait for that refresh (an
``asyncio.Event``) instead of calling the upstream again.

The upstream is ``env.UPSTREAM`` (``--var UPSTREAM=http://...``); it answers
``GET <UPSTREAM>/<symbol>`` with a JSON number.

    twistd -n dotwist --app dotwist.examples.prices --var UPSTREAM=http://127.0.0.1:9000
"""

import asyncio
import time
from urllib.parse import urlsplit

import aiohttp

from dotwist import App, DurableObject, Response, WorkerEntrypoint

MAX_AGE = 60.0
TRIES = 3


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        parts = urlsplit(request.url).path.strip("/").split("/")
        if len(parts) != 2 or parts[0] != "price" or not parts[1].isalnum():
            return Response("GET /price/<symbol>", status=404)
        return await self.env.PRICES.getByName(parts[1].upper()).fetch(request)


class Prices(DurableObject):
    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        self.refreshing = None  # an asyncio.Event while a refresh runs

    async def fetch(self, request):
        price, fetchedAt = await asyncio.gather(
            self.ctx.storage.get("price"), self.ctx.storage.get("fetchedAt")
        )
        if price is None or time.time() - fetchedAt > MAX_AGE:
            if self.refreshing is None:
                self.refreshing = asyncio.Event()
                try:
                    price = await self.refresh()
                finally:
                    self.refreshing.set()
                    self.refreshing = None
            else:
                await self.refreshing.wait()
                price = await self.ctx.storage.get("price")
            if price is None:
                return Response.json({"error": "upstream unavailable"}, status=503)
        return Response.json({"symbol": self.ctx.id.name, "price": price})

    async def refresh(self):
        url = f"{self.env.UPSTREAM}/{self.ctx.id.name}"
        async with aiohttp.ClientSession() as session:
            for attempt in range(TRIES):
                try:
                    async with asyncio.timeout(2):
                        async with session.get(url) as response:
                            response.raise_for_status()
                            price = await response.json()
                except (aiohttp.ClientError, TimeoutError):
                    await asyncio.sleep(0.1 * 2**attempt)
                    continue
                await self.ctx.storage.put({"price": price, "fetchedAt": time.time()})
                return price
        return None


app = App(Default, durableObjects={"PRICES": Prices}, vars={"UPSTREAM": "http://127.0.0.1:9000"})
