// permessage-deflate in real Chromium: the browser's own offer is accepted
// with no option on the package's side, a long room message reaches the page
// compressed and intact, a long message the page publishes (Chromium
// compresses what it sends) is inflated by the hub and reaches another page,
// and a burst of long messages arrives intact and in order. Whether the hub
// joins some of the burst inside one batched message depends on timing (it
// did in 3 runs of 4 here); `tests/tests/compression.rs` makes it happen
// every time, with a raw client.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { serve } from "../../examples/chat-web/serve.mjs";
import { ROOT, clientPage as openClientPage, freePort, launchChromium, startHub } from "./harness.mjs";

let browser;
let site;
let hub;

before(async () => {
  hub = await startHub(await freePort());
  site = await serve(ROOT, 0);
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  site?.close();
  await hub?.stop();
});

const clientPage = () => openClientPage(browser, site);

/**
 * Starts a client on `page` as `user` in `room` that collects the data of
 * `count` messages of `event`; resolves once it has joined, to `{ all }`:
 * the promise of what it collects (wrapped, so that awaiting the joined
 * client does not wait for the messages too).
 */
async function collector(page, { user, room, event, count }) {
  const collected = page.evaluate(
    async ({ url, user, room, event, count }) => {
      const client = window.makeClient(url, { userId: user });
      const got = [];
      const done = new Promise((resolve) => {
        client.on(event, (message) => {
          got.push(message.data);
          if (got.length === count) resolve();
        });
      });
      await client.connect();
      await client.join(room);
      window.collecting = true;
      await done;
      client.close();
      return got;
    },
    { url: hub.url, user, room, event, count },
  );
  await page.waitForFunction(() => window.collecting === true);
  return { all: collected };
}

/** The hub's `/metrics` figure `name` (with its labels). */
async function figure(name) {
  const text = await (await fetch(`${hub.http}/metrics`)).text();
  const line = text.split("\n").find((line) => line.startsWith(name));
  assert.ok(line, `${name} in /metrics`);
  return Number(line.split(" ").pop());
}

/** A JSON-ish text of about `length` characters that compresses well. */
function longText(tag, length) {
  let text = `${tag}:`;
  for (let n = 0; text.length < length; n++) text += ` item ${n} of the ${tag} list;`;
  return text;
}

test("Chromium's own offer is accepted: the socket reports permessage-deflate", async () => {
  const page = await clientPage();
  const extensions = await page.evaluate(
    (url) =>
      new Promise((resolve, reject) => {
        const socket = new WebSocket(`${url}?user_id=raw`);
        socket.onopen = () => {
          resolve(socket.extensions);
          socket.close();
        };
        socket.onerror = () => reject(new Error("the socket failed"));
      }),
    hub.url,
  );
  assert.equal(extensions, "permessage-deflate; server_no_context_takeover; client_no_context_takeover");
  await page.close();
});

test("a long room message arrives compressed and intact both ways through the package", async () => {
  const reader = await clientPage();
  const writer = await clientPage();
  const connectedBefore = await figure("switchboard_deflate_connections_total");
  const inflatedBefore = await figure("switchboard_deflate_inflated_messages_total");
  const beforeBytes = await figure('switchboard_deflate_payload_bytes_total{stage="before"}');
  const afterBytes = await figure('switchboard_deflate_payload_bytes_total{stage="after"}');

  // The reader waits for two messages: one from the HTTP API, one the
  // writer page publishes.
  const received = (await collector(reader, { user: "reader", room: "zip", event: "long", count: 2 })).all;

  const fromApi = longText("api", 20_000);
  const response = await fetch(`${hub.http}/api/broadcast`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ room: "zip", event: "long", data: { text: fromApi } }),
  });
  assert.ok(response.ok, `broadcast: ${response.status}`);

  const fromPage = longText("page", 30_000);
  await writer.evaluate(
    async ({ url, text }) => {
      const client = window.makeClient(url, { userId: "writer" });
      await client.connect();
      await client.join("zip");
      await client.publish("zip", "long", { text });
      client.close();
    },
    { url: hub.url, text: fromPage },
  );

  const got = await received;
  assert.deepEqual(
    got.map((data) => data.text),
    [fromApi, fromPage],
  );
  // Both pages negotiated it, the page's message came compressed, and what
  // the hub wrote to them shrank.
  assert.ok((await figure("switchboard_deflate_connections_total")) >= connectedBefore + 2);
  assert.ok((await figure("switchboard_deflate_inflated_messages_total")) > inflatedBefore);
  const before = (await figure('switchboard_deflate_payload_bytes_total{stage="before"}')) - beforeBytes;
  const after = (await figure('switchboard_deflate_payload_bytes_total{stage="after"}')) - afterBytes;
  assert.ok(before > 50_000, `${before} bytes before compression`);
  assert.ok(after * 4 < before, `${after} of ${before} bytes after compression`);
  await reader.close();
  await writer.close();
});

test("a burst of long messages reaches a batching page intact and in order", async () => {
  const reader = await clientPage();
  const writer = await clientPage();
  const count = 20;
  const received = (await collector(reader, { user: "burst-reader", room: "burst", event: "burst", count })).all;
  const texts = Array.from({ length: count }, (_, n) => longText(`burst ${n}`, 2_000 + 100 * n));
  // Published without waiting for each ack: the hub takes them in together
  // and the reader's queue gets them back to back.
  await writer.evaluate(
    async ({ url, texts }) => {
      const client = window.makeClient(url, { userId: "burst-writer" });
      await client.connect();
      await client.join("burst");
      await Promise.all(texts.map((text, n) => client.publish("burst", "burst", { n, text })));
      client.close();
    },
    { url: hub.url, texts },
  );
  const got = await received;
  assert.deepEqual(
    got.map(({ n }) => n),
    texts.map((_, n) => n),
  );
  assert.deepEqual(
    got.map(({ text }) => text),
    texts,
  );
  await reader.close();
  await writer.close();
});
