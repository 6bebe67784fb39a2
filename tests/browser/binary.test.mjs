// Bytes through the browser package in real Chromium: a page publishes a
// Uint8Array and an ArrayBuffer, another page receives each as a Uint8Array
// with the same bytes, carried by binary WebSocket messages both ways (seen
// in Chromium's own frame log), reads them back from history, and gets
// bytes sent privately; a JSON payload beside them is untouched.
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

/** A page of the package, with the WebSocket frames it sends and receives: `{ page, frames }`. */
async function clientPage() {
  const page = await openClientPage(browser, site);
  const frames = { sent: [], received: [] };
  page.on("websocket", (socket) => {
    socket.on("framesent", ({ payload }) => frames.sent.push(payload));
    socket.on("framereceived", ({ payload }) => frames.received.push(payload));
  });
  return { page, frames };
}

/** Every byte value, then some: `length` bytes no text encoding would survive. */
function blob(length) {
  return Array.from({ length }, (_, n) => (n * 7) % 256);
}

test("bytes published from one page arrive in another as a Uint8Array, in binary messages both ways", async () => {
  const reader = await clientPage();
  const writer = await clientPage();
  const first = blob(5_000);
  const second = blob(300).reverse();

  const received = reader.page.evaluate(
    async ({ url }) => {
      const client = window.makeClient(url, { userId: "reader" });
      const got = [];
      const done = new Promise((resolve) => {
        client.on("message", (message) => {
          got.push({
            event: message.event,
            isBytes: message.data instanceof Uint8Array,
            data: message.data instanceof Uint8Array ? Array.from(message.data) : message.data,
          });
          if (got.length === 3) resolve();
        });
      });
      await client.connect();
      await client.join("files");
      window.joined = true;
      await done;
      // The same messages from the room's history: bytes again.
      const page = await client.history("files");
      client.close();
      return {
        live: got,
        history: page.messages.map((message) => ({
          isBytes: message.data instanceof Uint8Array,
          data: message.data instanceof Uint8Array ? Array.from(message.data) : message.data,
        })),
      };
    },
    { url: hub.url },
  );
  await reader.page.waitForFunction(() => window.joined === true);

  await writer.page.evaluate(
    async ({ url, first, second }) => {
      const client = window.makeClient(url, { userId: "writer" });
      await client.connect();
      await client.join("files");
      await client.publish("files", "upload", new Uint8Array(first));
      await client.publish("files", "upload", new Uint8Array(second).buffer);
      await client.publish("files", "note", { text: "done" });
      client.close();
    },
    { url: hub.url, first, second },
  );

  const { live, history } = await received;
  assert.deepEqual(live, [
    { event: "upload", isBytes: true, data: first },
    { event: "upload", isBytes: true, data: second },
    { event: "note", isBytes: false, data: { text: "done" } },
  ]);
  assert.deepEqual(history, [
    { isBytes: true, data: first },
    { isBytes: true, data: second },
    { isBytes: false, data: { text: "done" } },
  ]);
  // Binary frames on the wire (Playwright hands them over as Buffers),
  // and no base64 of the payload in any text frame but the history page's
  // answer (JSON, where bytes are base64 text).
  assert.equal(writer.frames.sent.filter((payload) => Buffer.isBuffer(payload)).length, 2);
  assert.equal(reader.frames.received.filter((payload) => Buffer.isBuffer(payload)).length, 2);
  const base64 = Buffer.from(first).toString("base64").slice(0, 40);
  const carrying = reader.frames.received.filter((payload) => typeof payload === "string" && payload.includes(base64));
  assert.equal(carrying.length, 1);
  assert.ok(carrying[0].startsWith('{"type":"ack"'), carrying[0].slice(0, 80));
  await reader.page.close();
  await writer.page.close();
});

test("bytes sent privately arrive as a Uint8Array, and a JSON-only socket reads base64 text", async () => {
  const { page } = await clientPage();
  const result = await page.evaluate(
    async ({ url }) => {
      // A plain socket that did not ask for binary.
      const plain = new WebSocket(`${url}?user_id=plain`);
      const plainFrames = [];
      plain.onmessage = (event) => plainFrames.push(event.data);
      await new Promise((resolve) => (plain.onopen = resolve));
      const receiver = window.makeClient(url, { userId: "receiver" });
      const got = new Promise((resolve) => receiver.on("secret", (message) => resolve(message.data)));
      const view = new Promise((resolve) => receiver.on("view", (message) => resolve(message.data)));
      await receiver.connect();
      const sender = window.makeClient(url, { userId: "sender" });
      await sender.connect();
      await sender.send("receiver", "secret", new Uint8Array([0, 1, 2, 254, 255]));
      await sender.send("plain", "secret", new Uint8Array([0, 1, 2, 254, 255]));
      // Any view of bytes: what it covers of its buffer, as bytes.
      const shorts = new Int16Array([7, 1, -1, 9]);
      await sender.send("receiver", "view", new Int16Array(shorts.buffer, 2, 2));
      const data = await got;
      const viewed = await view;
      // The plain socket's message, once it is there.
      while (!plainFrames.some((text) => typeof text === "string" && text.includes('"secret"'))) {
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      receiver.close();
      sender.close();
      plain.close();
      return {
        isBytes: data instanceof Uint8Array,
        bytes: Array.from(data),
        viewed: Array.from(viewed),
        plain: JSON.parse(plainFrames.find((text) => text.includes('"secret"'))),
      };
    },
    { url: hub.url },
  );
  assert.deepEqual({ isBytes: result.isBytes, bytes: result.bytes }, { isBytes: true, bytes: [0, 1, 2, 254, 255] });
  assert.deepEqual(result.viewed, [1, 0, 255, 255], "the two shorts the view covers, little-endian");
  assert.equal(result.plain.encoding, "base64");
  assert.equal(result.plain.data, Buffer.from([0, 1, 2, 254, 255]).toString("base64"));
  await page.close();
});
