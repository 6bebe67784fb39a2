// The Node peer for the scale benchmarks: a bare room hub on `ws` 8, what a
// team would write in an afternoon. It greets each connection, and for
// `join` adds it to the room and acks; for `publish` serializes the message
// once and sends it to every member; for `send` to every connection of the
// user it names. No presence, no history, no limits: a
// floor for what a Node hub costs, not a like-for-like one.
//
//   node bench/node/ws-hub.mjs --bind 127.0.0.1:8080 [--deflate]
//
// `--deflate` turns on `ws`'s permessage-deflate with its defaults (the
// server keeps a compression context per connection, frames from 1 KiB).
import { createServer } from "node:http";
import { WebSocketServer } from "ws";

const at = process.argv.indexOf("--bind");
const [host, port] = (at > 0 ? process.argv[at + 1] : "127.0.0.1:8080").split(":");
const http = createServer((request, response) => {
  response.writeHead(request.url === "/health" ? 200 : 404).end();
});
const perMessageDeflate = process.argv.includes("--deflate");
const wss = new WebSocketServer({ server: http, path: "/ws", backlog: 4096, perMessageDeflate });
const rooms = new Map();
const users = new Map();
let sessions = 0;

wss.on("connection", (socket, request) => {
  sessions += 1;
  const user = new URL(request.url, "http://hub").searchParams.get("user_id") ?? "anonymous";
  const joined = new Set();
  let mine = users.get(user);
  if (!mine) users.set(user, (mine = new Set()));
  mine.add(socket);
  socket.send(JSON.stringify({ type: "welcome", session: String(sessions), user, protocol: 1 }));
  socket.on("message", (data) => {
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      return;
    }
    switch (frame.type) {
      case "join": {
        let members = rooms.get(frame.room);
        if (!members) rooms.set(frame.room, (members = new Set()));
        members.add(socket);
        joined.add(frame.room);
        if (frame.id) socket.send(JSON.stringify({ type: "ack", id: frame.id }));
        break;
      }
      case "publish": {
        const text = JSON.stringify({
          type: "message", room: frame.room, from: user, event: frame.event, data: frame.data, ts: Date.now(),
        });
        for (const member of rooms.get(frame.room) ?? []) member.send(text);
        if (frame.id) socket.send(JSON.stringify({ type: "ack", id: frame.id }));
        break;
      }
      case "send": {
        const text = JSON.stringify({
          type: "message", to: frame.to, from: user, event: frame.event, data: frame.data, ts: Date.now(),
        });
        for (const tab of users.get(frame.to) ?? []) tab.send(text);
        if (frame.id) socket.send(JSON.stringify({ type: "ack", id: frame.id }));
        break;
      }
      case "ping":
        socket.send(frame.id ? JSON.stringify({ type: "pong", id: frame.id }) : '{"type":"pong"}');
        break;
    }
  });
  socket.on("close", () => {
    mine.delete(socket);
    if (mine.size === 0) users.delete(user);
    for (const room of joined) {
      const members = rooms.get(room);
      members?.delete(socket);
      if (members?.size === 0) rooms.delete(room);
    }
  });
});
http.listen({ port: Number(port), host, backlog: 4096 });
