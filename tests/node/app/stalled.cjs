// A connection attempt abandoned mid-handshake, with the `ws` package as the
// WebSocket: the attempt's deadline passes against a listener that accepts
// TCP and never answers the upgrade, then `close()` drops the socket. `ws`
// then emits `error` on it, and Node ends a process on an `error` event
// nobody listens to: this script must live to print what it saw.
// Usage: node stalled.cjs WS_PACKAGE_PATH
const net = require("node:net");
const { Client } = require("switchboard-js");

delete globalThis.WebSocket;
const WebSocket = require(process.argv[2]);
const silent = net.createServer(() => {}).listen(0, "127.0.0.1", async () => {
  const url = `ws://127.0.0.1:${silent.address().port}/ws`;
  const client = new Client(url, { userId: "stalled", WebSocket, connectTimeoutMs: 200, reconnect: false });
  const outcome = await client.connect().then(
    () => ({ connected: true }),
    (error) => ({ kind: error.kind }),
  );
  // A second attempt, abandoned by close() while it waits for the upgrade.
  const again = new Client(url, { userId: "stalled", WebSocket });
  again.connect().catch(() => {});
  await new Promise((tick) => setTimeout(tick, 100));
  await again.close();
  await client.close();
  // `ws` reports the aborted handshakes on a later tick: let them come.
  await new Promise((tick) => setTimeout(tick, 200));
  console.log(JSON.stringify(outcome));
  silent.close();
  process.exit(0);
});
