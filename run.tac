# Deploy dotwist with twistd:   twistd -ny run.tac
#
# This serves Cloudflare's WebSocket server example on port 8080, exactly as `twistd -n dotwist`
# does. To serve your own app, point `app` at your module (its `app` attribute) or at
# "module:attribute", and list where to listen as Twisted endpoint descriptions. The environment
# variables below let a deployment change both without editing this file.
import os

from dotwist.service import installAsyncioReactor

# Workers and Durable Objects can use asyncio on Twisted's asyncio reactor (docs/asyncio.md).
# Install it before anything imports the global reactor; `twistd -r NAME -ny run.tac` overrides it.
installAsyncioReactor(os.environ.get("DOTWIST_LOOP", "auto"))

from dotwist.tap import makeApplication  # noqa: E402

application = makeApplication(
    app=os.environ.get("DOTWIST_APP", "dotwist.examples.websocket_server"),
    listen=os.environ.get("DOTWIST_LISTEN", "tcp:8080").split(),
    # bindings={"WEBSOCKET_SERVER": "myapp:MyServer"},   # replace a binding's class
    # **{"max-message-size": 1048576},                  # any `twistd dotwist` option
)
