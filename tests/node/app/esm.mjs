// The ES module entry, as an app in Node.js, Deno or Bun imports it, with
// the runtime's own WebSocket: a user id in the URL (a hub without tokens),
// or, when two tokens are given, each client's token in an `Authorization`
// header on the upgrade (a hub that requires tokens; their users are
// `esm-sender` and `esm-receiver`).
// Usage: <runtime> esm.mjs WS_URL HTTP_URL [SENDER_TOKEN RECEIVER_TOKEN]
import { Client } from "switchboard-js";
import { scenario } from "./scenario.mjs";

const [url, http, senderToken, receiverToken] = globalThis.Deno?.args ?? process.argv.slice(2);
const tokens = { sender: senderToken, receiver: receiverToken };
const result = await scenario(Client, {
  url,
  http,
  connectAs: (name) =>
    senderToken ? { headers: { Authorization: `Bearer ${tokens[name]}` } } : { userId: `esm-${name}` },
  user: (name) => `esm-${name}`,
});
console.log(JSON.stringify(result));
