"""A plain picows echo server on uvloop: a peer measured by bench/run.

    python bench/peers/picows_echo.py PORT [--asyncio]

picows hands the application frames, not messages; wsload sends every message as one frame, so
echoing each data frame as it comes is an echo of each message. Close frames are answered and
the connection is then closed; pings are answered by picows itself (its default). There is no
HTTP path. ``--asyncio`` runs on the stock asyncio loop instead of uvloop.
"""

import asyncio
import sys

from picows import WSFrame, WSListener, WSMsgType, WSTransport, WSUpgradeRequest, ws_create_server


class Echo(WSListener):
    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()
        elif kind == WSMsgType.TEXT or kind == WSMsgType.BINARY or kind == WSMsgType.CONTINUATION:
            transport.send(kind, frame.get_payload_as_memoryview(), frame.fin)


def listener(request: WSUpgradeRequest) -> Echo:
    return Echo()


async def serveForever(port: int) -> None:
    server = await ws_create_server(listener, "127.0.0.1", port)
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
