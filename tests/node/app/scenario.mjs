// What each runtime's script does with the installed package, against a live
// hub: two clients join a room, one publishes, the other receives; then the
// hub drops the receiver (POST /api/disconnect, code 4005), a message is
// published while it is away, and it must reconnect by itself, rejoin with
// `recovered: true`, and end up with every message exactly once, in order.
// The last two carry 3.6 KB of text, one replayed by the rejoin (replays go
// uncompressed) and one live: where the runtime's WebSocket negotiates
// permessage-deflate (Bun's, the `ws` package's), the live one crosses
// compressed. Last, the sender publishes bytes (a Uint8Array), which must
// arrive as a Uint8Array with the same bytes (the SDK sends and asks for
// binary messages; that they are binary on the wire is asserted in
// Chromium, tests/browser/binary.test.mjs).
//
// Plain ECMAScript plus `fetch` and `setTimeout`, so that Node.js, Deno and
// Bun all run it; failures throw.

const DEADLINE_MS = 10_000;

/** Resolves once `check()` holds; throws with `what` after the deadline. */
async function until(what, check) {
  const end = Date.now() + DEADLINE_MS;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((tick) => setTimeout(tick, 10));
  }
}

/**
 * Runs the scenario with `Client` (however the script imported it).
 * `connectAs(name)` gives a client's options for the user `name`, and
 * `user(name)` the user id the hub knows it by.
 */
export async function scenario(Client, { url, http, connectAs, user }) {
  const room = `runtime-${Math.random().toString(36).slice(2, 10)}`;
  const sender = new Client(url, connectAs("sender"));
  const receiver = new Client(url, {
    ...connectAs("receiver"),
    reconnect: { minDelayMs: 20, maxDelayMs: 200 },
  });
  const got = [];
  const joined = [];
  let connections = 0;
  let lost = 0;
  // A long message that arrived changed is counted as its negative.
  const pad = "compressible text in a long message ".repeat(100);
  receiver.on("chat", ({ data }) => got.push(data.n > 1 && data.pad !== pad ? -data.n : data.n));
  const blobs = [];
  receiver.on("blob", ({ data }) =>
    blobs.push(data instanceof Uint8Array ? Array.from(data).join(",") : `not bytes: ${JSON.stringify(data)}`),
  );
  receiver.on("connected", () => connections++);
  receiver.on("disconnected", () => lost++);
  receiver.on("joined", (event) => joined.push(event));
  try {
    await sender.connect();
    await receiver.connect();
    await sender.join(room);
    const members = await receiver.join(room);
    if (!members.includes(user("sender"))) throw new Error(`join answered ${JSON.stringify(members)}`);

    await sender.publish(room, "chat", { n: 1 });
    await until("the first message", () => got.length === 1);

    const response = await fetch(`${http}/api/disconnect`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ user: user("receiver"), code: 4005, reason: "runtime test" }),
    });
    const { disconnected } = await response.json();
    if (disconnected !== 1) throw new Error(`the hub disconnected ${disconnected} connections`);
    // Published while the receiver is away: it must come back by recovery.
    await until("the receiver to notice", () => lost === 1);
    await sender.publish(room, "chat", { n: 2, pad });
    await until("the reconnection", () => connections === 2);
    await until("the rejoin", () => joined.length === 2);
    if (joined[1].room !== room || joined[1].recovered !== true) {
      throw new Error(`the rejoin said ${JSON.stringify(joined[1])}`);
    }
    await sender.publish(room, "chat", { n: 3, pad });
    await until("the messages after the reconnection", () => got.length >= 3);
    // Anything more would arrive right behind the third: give it the chance.
    await new Promise((tick) => setTimeout(tick, 100));
    if (JSON.stringify(got) !== "[1,2,3]") throw new Error(`received ${JSON.stringify(got)}`);
    await sender.publish(room, "blob", new Uint8Array([0, 1, 128, 255]));
    await until("the bytes", () => blobs.length === 1);
    if (blobs[0] !== "0,1,128,255") throw new Error(`received ${blobs[0]} for the bytes`);
    return { got, connections };
  } finally {
    await sender.close();
    await receiver.close();
  }
}
