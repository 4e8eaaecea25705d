from twisted.application.service import ServiceMaker

dotwist = ServiceMaker(
    "dotwist",
    "dotwist.tap",
    "Serve Workers and Durable Objects (HTTP and WebSockets) on one port",
    "dotwist",
)
