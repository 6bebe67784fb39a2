// The Node baseline for the memory benchmark: a plain `ws` server on the
// port given by --bind host:port (the same flag as `switchboard`), with a
// /health endpoint, that greets each connection with one small JSON frame
// and answers pings. It does the least a hub must do, so it is a floor for
// Node, not a like-for-like hub. `--deflate` turns on `ws`'s
// permessage-deflate.
import { createServer } from "node:http";
import { WebSocketServer } from "ws";

const at = process.argv.indexOf("--bind");
const [host, port] = (at > 0 ? process.argv[at + 1] : "127.0.0.1:8080").split(":");
const http = createServer((request, response) => {
  response.writeHead(request.url === "/health" ? 200 : 404).end();
});
const perMessageDeflate = process.argv.includes("--deflate");
const wss = new WebSocketServer({ server: http, path: "/ws", perMessageDeflate });
let session = 0;
wss.on("connection", (socket) => {
  session += 1;
  socket.send(JSON.stringify({ type: "welcome", session: String(session), protocol: 1 }));
  socket.on("message", (data) => {
    if (JSON.parse(data).type === "ping") socket.send('{"type":"pong"}');
  });
});
http.listen(Number(port), host);
