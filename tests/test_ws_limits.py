"""Bad WebSocket input on the Durable Object path: oversized messages close with 1009, invalid
UTF-8 with 1007, protocol errors with 1002, and other sockets on the same object carry on."""

import struct

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.threads import deferToThread

from dotwist.config import Limits
from dotwist.examples import echo

from rawclient import RawWebSocket
from support import connectWS, serve
from seeded import randbytes


def closeCodeAfter(port, path, frames):
    """Send raw frames on a fresh socket; return the close code the server sends back."""
    ws = RawWebSocket(port, path)
    assert ws.status == 101
    for opcode, payload, fin in frames:
        ws.send(payload, opcode=opcode) if fin else ws.sock.sendall(_frame(opcode, payload, fin=False))
    while True:
        opcode, payload = ws.receive()
        if opcode == 8:
            ws.close()
            return struct.unpack("!H", payload[:2])[0]


def _frame(opcode, payload, fin=True):
    import os

    mask = randbytes(4, "ws_limits mask")
    header = bytes([(0x80 if fin else 0) | opcode, 0x80 | len(payload)])
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("path", ["/echo", "/hibernate"])
async def test_bad_input_closes_only_that_socket(path):
    """1009 for a message over the limit, 1007 for invalid UTF-8, 1002 for a reserved opcode;
    a neighbour socket on the same object still echoes afterwards."""
    service, port = await serve(echo.app, Limits().replace(maxMessageSize=1000))
    try:
        neighbour = await connectWS(port, path, lowercaseUpgrade=False)
        cases = [
            ([(2, b"x" * 1001, True)], 1009),
            ([(1, b"\xff\xfe", True)], 1007),
            ([(3, b"reserved opcode", True)], 1002),
        ]
        for frames, code in cases:
            assert await deferToThread(closeCodeAfter, port, path, frames) == code
            neighbour.sendMessage(b"still here")
            assert await neighbour.messages.get() == "still here"
        neighbour.sendMessage(b"y" * 1000, isBinary=True)
        assert await neighbour.messages.get() == b"y" * 1000
        neighbour.sendClose(1000)
        await neighbour.closed
    finally:
        await service.stopService()
