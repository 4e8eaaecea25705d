"""Test helpers for real sockets: servers on loopback and real clients. (In-memory helpers are
in ``dotwist.testing``.)"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from autobahn.websocket.compress import (
    PerMessageDeflateOffer,
    PerMessageDeflateResponse,
    PerMessageDeflateResponseAccept,
)
from twisted.internet import defer, endpoints, reactor
from twisted.internet.defer import Deferred, DeferredQueue

from dotwist.config import Limits
from dotwist.service import DotwistService
from dotwist.testing import Harness
from dotwist.worker import App


class Twistd(subprocess.Popen):  # type: ignore[type-arg]
    """``twistd -n --pidfile= ARGS`` as a user runs it. Its output (standard output and error)
    goes to an unnamed temporary file, not to a pipe: a pipe that nobody reads fills after
    64 KiB, a few hundred access-log lines, and the server then blocks on its next log line and
    stops serving (a load test would see timeouts that are the test's own doing).
    ``communicate()`` waits for the exit and returns ``(output, None)``, as with a pipe."""

    def __init__(self, *args: str, cwd: Path, env: Optional[dict[str, str]] = None) -> None:
        self._output = tempfile.TemporaryFile()
        super().__init__(
            [str(Path(sys.executable).parent / "twistd"), "-n", "--pidfile=", *args],
            cwd=cwd,
            env={**os.environ, **(env or {})},
            stdout=self._output,
            stderr=subprocess.STDOUT,
        )

    def output(self) -> bytes:
        """Everything the process wrote so far."""
        self._output.flush()
        with open(self._output.fileno(), "rb", closefd=False) as reader:
            reader.seek(0)
            return reader.read()

    def communicate(self, input: Any = None, timeout: Optional[float] = None) -> tuple[bytes, None]:
        assert input is None, "twistd reads nothing from its standard input"
        self.wait(timeout=timeout)
        return self.output(), None


async def serve(app: App, limits: Optional[Limits] = None) -> tuple[DotwistService, int]:
    """Serve ``app`` on 127.0.0.1, an ephemeral port, on the reactor's real time (as production
    runs); returns the started service (stop it when done) and the port."""
    harness = Harness(app, transport="tcp", realTime=True, limits=limits, reactor=reactor)
    return harness.service, harness.port


class Client(WebSocketClientProtocol):
    """An Autobahn client that queues what it receives. ``lowercaseUpgrade`` makes it send
    ``Upgrade: websocket`` as browsers do (Autobahn itself sends ``WebSocket``)."""

    lowercaseUpgrade = True

    def __init__(self) -> None:
        super().__init__()
        self.messages: DeferredQueue[Any] = DeferredQueue()
        self.opened: Deferred[None] = Deferred()
        self.closed: Deferred[tuple[bool, Optional[int], Optional[str]]] = Deferred()
        self.pongs: DeferredQueue[bytes] = DeferredQueue()
        self._handshakeSent = False

    def sendData(self, data: bytes, sync: bool = False, chopsize: Optional[int] = None) -> None:
        if not self._handshakeSent:
            self._handshakeSent = True
            if self.lowercaseUpgrade:
                data = data.replace(b"Upgrade: WebSocket", b"Upgrade: websocket")
        super().sendData(data, sync, chopsize)

    def onOpen(self) -> None:
        self.opened.callback(None)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.messages.put(payload if isBinary else payload.decode("utf-8"))

    def onPong(self, payload: bytes) -> None:
        self.pongs.put(payload)

    def onClose(self, wasClean: bool, code: Optional[int], reason: Optional[str]) -> None:
        if not self.opened.called:
            self.opened.errback(ConnectionError(f"handshake failed: {reason}"))
        self.closed.callback((wasClean, code, reason))


async def connectWS(
    port: int, path: str = "/websocket", deflate: bool = False, lowercaseUpgrade: bool = True
) -> Client:
    """Open a WebSocket with Autobahn's client and wait for the handshake."""
    factory = WebSocketClientFactory(f"ws://127.0.0.1:{port}{path}")

    class _Client(Client):
        pass

    _Client.lowercaseUpgrade = lowercaseUpgrade
    factory.protocol = _Client
    if deflate:
        factory.setProtocolOptions(
            perMessageCompressionOffers=[PerMessageDeflateOffer()],
            perMessageCompressionAccept=lambda response: PerMessageDeflateResponseAccept(response)
            if isinstance(response, PerMessageDeflateResponse)
            else None,
        )
    endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port)
    protocol = await endpoint.connect(factory)
    await protocol.opened
    return protocol


_given: set[int] = set()


def freePort() -> int:
    """A port that was free a moment ago (for subprocesses, which must be told a port).

    Taken at random below the kernel's ephemeral range (32768 and up on Linux), so that no
    outgoing connection of any process (load generators, wstest, PostgreSQL clients) can take
    it between now and the subprocess's listen, and never the same one twice in this process."""
    import random

    for _ in range(200):
        port = random.randrange(20000, 32000)
        if port in _given:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _given.add(port)
        return port
    with socket.socket() as s:  # the low range is crowded: let the kernel pick
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def turns(n: int = 3) -> None:
    """Let the real reactor run ``n`` iterations (so that loopback bytes get delivered)."""
    for _ in range(n):
        d: Deferred[None] = Deferred()
        reactor.callLater(0, d.callback, None)
        await d


__all__ = ["defer"]
