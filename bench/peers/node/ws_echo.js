// A plain Node.js `ws` echo server: a peer measured by bench/run.
//
//   node bench/peers/node/ws_echo.js PORT
//
// /websocket echoes every message unchanged (text as text, binary as binary), with ws's
// defaults except no permessage-deflate (as the reference runs --no-deflate);
// /getCurrentConnections answers the number of open WebSockets as text (the work the seed's HTTP
// path does, for the http_10 figure), from Node's own http server.
"use strict";
const http = require("http");
const { WebSocketServer } = require("ws");

const port = Number(process.argv[2]);
let open = 0;

const server = http.createServer((req, res) => {
  if (req.url === "/getCurrentConnections") {
    res.writeHead(200, { "Content-Type": "text/plain" });
    res.end(String(open));
  } else {
    res.writeHead(404);
    res.end();
  }
});
const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });
server.on("upgrade", (req, socket, head) => {
  if (req.url !== "/websocket") {
    socket.destroy();
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => {
    open += 1;
    ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary }));
    ws.on("close", () => {
      open -= 1;
    });
  });
});
server.listen(port, "127.0.0.1");
process.on("SIGTERM", () => process.exit(0));
