// The Socket.IO peer for the scale benchmarks: the room hub a team builds on
// Socket.IO 4.8 with its own primitives. Each connection joins a room named
// after its user (`user:<id>`); `join` joins a room and acks; `publish`
// emits to the room with `io.to(room).emit`; `send` emits to the user's
// room, reaching every connection of that user. WebSocket transport only,
// no per-message compression unless `--deflate`: the same wire as the other
// hubs.
//
//   node bench/node/socketio-hub.mjs --bind 127.0.0.1:8080 [--deflate]
import { createServer } from "node:http";
import { Server } from "socket.io";

const at = process.argv.indexOf("--bind");
const [host, port] = (at > 0 ? process.argv[at + 1] : "127.0.0.1:8080").split(":");
const http = createServer((request, response) => {
  response.writeHead(request.url === "/health" ? 200 : 404).end();
});
// `--deflate`: permessage-deflate as Socket.IO documents it (frames from 1 KiB).
const perMessageDeflate = process.argv.includes("--deflate") ? { threshold: 1024 } : false;
const io = new Server(http, { transports: ["websocket"], serveClient: false, perMessageDeflate });

io.on("connection", (socket) => {
  const user = socket.handshake.query.user_id ?? "anonymous";
  socket.join(`user:${user}`);
  socket.on("join", (room, ack) => {
    socket.join(room);
    if (typeof ack === "function") ack({});
  });
  socket.on("publish", (frame, ack) => {
    io.to(frame.room).emit("message", {
      room: frame.room, from: user, event: frame.event, data: frame.data, ts: Date.now(),
    });
    if (typeof ack === "function") ack({});
  });
  socket.on("send", (frame, ack) => {
    io.to(`user:${frame.to}`).emit("message", {
      to: frame.to, from: user, event: frame.event, data: frame.data, ts: Date.now(),
    });
    if (typeof ack === "function") ack({});
  });
});
http.listen({ port: Number(port), host, backlog: 4096 });
