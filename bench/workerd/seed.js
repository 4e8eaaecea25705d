// The seed app (Cloudflare's WebSocket-server Durable Object example, as described in the
// dotwist brief), for running on Cloudflare's own runtime, workerd, beside dotwist in bench/run.
//
// Worker: forwards every request to the one Durable Object named "foo".
// Durable Object WebSocketServer:
//   /websocket              accept the WebSocket, count it, reply "[Durable Object]: <msg>"
//   /getCurrentConnections  the number of currently connected WebSockets, as text
//   anything else           a usage text
import { DurableObject } from "cloudflare:workers";

export default {
  async fetch(request, env, ctx) {
    const id = env.WEBSOCKET_SERVER.idFromName("foo");
    const stub = env.WEBSOCKET_SERVER.get(id);
    return stub.fetch(request);
  },
};

export class WebSocketServer extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    this.currentlyConnectedWebSockets = 0;
  }

  async fetch(request) {
    const url = new URL(request.url);
    if (url.pathname === "/websocket") {
      if (request.headers.get("Upgrade") !== "websocket") {
        return new Response("Durable Object expected Upgrade: websocket", { status: 426 });
      }
      const [client, server] = Object.values(new WebSocketPair());
      server.accept();
      this.currentlyConnectedWebSockets += 1;
      let counted = true;
      const forget = () => {
        if (counted) {
          counted = false;
          this.currentlyConnectedWebSockets -= 1;
        }
      };
      server.addEventListener("message", (event) => {
        server.send(`[Durable Object]: ${event.data}`);
      });
      server.addEventListener("close", (event) => {
        forget();
        try {
          server.close(event.code === 1005 ? 1000 : event.code, "Durable Object is closing WebSocket");
        } catch (e) {
          // already closed
        }
      });
      server.addEventListener("error", forget);
      return new Response(null, { status: 101, webSocket: client });
    }
    if (url.pathname === "/getCurrentConnections") {
      return new Response(String(this.currentlyConnectedWebSockets), {
        headers: { "Content-Type": "text/plain" },
      });
    }
    return new Response(
      "Supported endpoints:\n" +
        "/websocket: expects a WebSocket upgrade request\n" +
        "/getCurrentConnections: the number of currently connected WebSockets\n",
      { headers: { "Content-Type": "text/plain" } },
    );
  }
}
