"""The conformance app echoes unchanged through both WebSocket APIs, over real sockets."""

import pytest
import pytest_twisted

from dotwist.examples import echo

from support import connectWS, serve


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("path", ["/echo", "/hibernate"])
async def test_echo_unchanged_text_and_binary(path):
    """Text comes back as the same text, binary as the same bytes, with Autobahn's own client."""
    service, port = await serve(echo.app)
    try:
        client = await connectWS(port, path, lowercaseUpgrade=False)
        client.sendMessage("héllo".encode())
        assert await client.messages.get() == "héllo"
        client.sendMessage(b"\x00\x01\xff", isBinary=True)
        assert await client.messages.get() == b"\x00\x01\xff"
        client.sendMessage(b"")
        assert await client.messages.get() == ""
        client.sendClose(1000)
        assert (await client.closed)[0]
    finally:
        await service.stopService()
