// A runtime without a WebSocket, and none passed: `connect()` must reject at
// once with `no_websocket`, not retry. Prints what it saw as JSON.
// Usage: node no-websocket.mjs WS_URL
import { Client } from "switchboard-js";

delete globalThis.WebSocket;
const client = new Client(process.argv[2], { userId: "nobody", reconnect: { minDelayMs: 10, maxDelayMs: 20 } });
const errors = [];
client.on("error", (error) => errors.push(error.kind));
const started = Date.now();
const outcome = await client.connect().then(
  () => ({ connected: true }),
  (error) => ({ kind: error.kind, message: error.message }),
);
const ms = Date.now() - started;
// Ten reconnect delays later, a client that kept trying would have said so.
await new Promise((tick) => setTimeout(tick, 200));
console.log(JSON.stringify({ ...outcome, errors, ms }));
await client.close();
