"""A plain Autobahn echo server on Twisted: the reference that dotwist is compared with.

Conformance runs and benchmarks start it beside dotwist so that results are measured against
Autobahn itself on the same machine, in the same run.

    python conformance/autobahn_echo.py PORT [--no-deflate]
"""

import sys

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.compress import (
    PerMessageDeflateOffer,
    PerMessageDeflateOfferAccept,
)
from twisted.internet import reactor


class EchoProtocol(WebSocketServerProtocol):
    def onMessage(self, payload, isBinary):
        self.sendMessage(payload, isBinary)


def acceptDeflate(offers):
    for offer in offers:
        if isinstance(offer, PerMessageDeflateOffer):
            return PerMessageDeflateOfferAccept(offer)
    return None


def main(argv):
    port = int(argv[1])
    factory = WebSocketServerFactory(f"ws://127.0.0.1:{port}")
    factory.protocol = EchoProtocol
    if "--no-deflate" not in argv:
        factory.setProtocolOptions(perMessageCompressionAccept=acceptDeflate)
    reactor.listenTCP(port, factory, interface="127.0.0.1")
    reactor.run()


if __name__ == "__main__":
    main(sys.argv)
