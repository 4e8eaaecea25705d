"""A plain aiohttp WebSocket echo server on uvloop: a peer measured by bench/run.

    python bench/peers/aiohttp_echo.py PORT [--asyncio]

``/websocket`` echoes every message unchanged (text as text, binary as binary);
``/getCurrentConnections`` answers the number of open WebSockets as text, the work the seed's
HTTP path does, for the ``http_10`` figure. Defaults are aiohttp's, except: no access log, no
permessage-deflate (as the reference runs ``--no-deflate``). ``--asyncio`` runs on the stock
asyncio loop instead of uvloop.
"""

import asyncio
import sys

from aiohttp import WSMsgType, web


def makeApp() -> web.Application:
    open_ = 0

    async def websocket(request: web.Request) -> web.StreamResponse:
        nonlocal open_
        ws = web.WebSocketResponse(compress=False)
        await ws.prepare(request)
        open_ += 1
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    await ws.send_str(msg.data)
                elif msg.type == WSMsgType.BINARY:
                    await ws.send_bytes(msg.data)
        finally:
            open_ -= 1
        return ws

    async def count(request: web.Request) -> web.Response:
        return web.Response(text=str(open_))

    app = web.Application()
    app.router.add_get("/websocket", websocket)
    app.router.add_get("/getCurrentConnections", count)
    return app


def main(argv: list[str]) -> None:
    port = int(argv[1])
    if "--asyncio" in argv:
        loop = asyncio.new_event_loop()
    else:
        import uvloop

        loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    web.run_app(makeApp(), host="127.0.0.1", port=port, access_log=None, print=None, loop=loop)


if __name__ == "__main__":
    main(sys.argv)
