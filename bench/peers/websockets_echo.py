"""A plain ``websockets`` echo server on uvloop: a peer measured by bench/run.

    python bench/peers/websockets_echo.py PORT [--asyncio]

Any path echoes every message unchanged (text as text, binary as binary), with the library's
defaults (keepalive pings, queue sizes) except no permessage-deflate (as the reference runs
``--no-deflate``). ``websockets`` is not an HTTP server (its plain HTTP answers close the
connection), so it has no HTTP figure. ``--asyncio`` runs on the stock asyncio loop instead.
"""

import asyncio
import sys

from websockets.asyncio.server import ServerConnection, serve


async def echo(ws: ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


async def serveForever(port: int) -> None:
    async with serve(echo, "127.0.0.1", port, compression=None) as server:
        await server.serve_forever()


def main(argv: list[str]) -> None:
    port = int(argv[1])
    if "--asyncio" in argv:
        asyncio.run(serveForever(port))
    else:
        import uvloop

        uvloop.run(serveForever(port))


if __name__ == "__main__":
    main(sys.argv)
