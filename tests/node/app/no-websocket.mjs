// A runtime without a WebSocket, and none passed: `connect()` must reject at
// once with `no_websocket`, not retry. Prints what it saw as JSON.
// Usage: node no-websocket.mjs WS_URL
import { Client } from "switchboard-js";

delete globalThis.WebSocket;
const client = new Client(process.argv[2], { userId: "nobody" });
const errors = [];
client.on("error", (error) => errors.push(error.kind));
const started = Date.now();
const outcome = await client.connect().then(
  () => ({ connected: true }),
  (error) => ({ kind: error.kind, message: error.message }),
);
console.log(JSON.stringify({ ...outcome, errors, ms: Date.now() - started }));
await client.close();
