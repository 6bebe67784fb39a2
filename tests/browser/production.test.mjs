// The npm package in production conditions, in real Chromium: failures that
// will never heal end `connect()` with one clear error kind instead of
// retrying forever, and clients the page lets go of are collected, their
// connections closed, their callbacks released.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { serve } from "../../examples/chat-web/serve.mjs";
import { ROOT, TIMEOUT, clientPage as openClientPage, freePort, launchChromium, startHub } from "./harness.mjs";

let browser;
let site;
let hub;

before(async () => {
  hub = await startHub(await freePort());
  site = await serve(ROOT, 0);
  // `gc()` on the page, so collection is asked for, not hoped for.
  browser = await launchChromium(["--js-flags=--expose-gc"]);
});

after(async () => {
  await browser?.close();
  site?.close();
  await hub?.stop();
});

const clientPage = () => openClientPage(browser, site);

/** `connect()` of a client made with `options`, and its `error` events, as `{ kind, errors }`. */
function connectOutcome(page, url, options) {
  return page.evaluate(
    async ({ url, options }) => {
      const client = window.makeClient(url, options);
      const errors = [];
      client.on("error", (error) => errors.push(error.kind));
      try {
        await client.connect();
        return { kind: "connected", errors };
      } catch (error) {
        return { kind: error.kind, errors };
      } finally {
        client.close();
      }
    },
    { url, options },
  );
}

test("headers cannot go with a browser's upgrade: the client warns once and connects without them", async () => {
  const page = await clientPage();
  const warnings = [];
  page.on("console", (message) => {
    if (message.type() === "warning") warnings.push(message.text());
  });
  const outcome = await connectOutcome(page, hub.url, { userId: "headers", headers: { "X-Team": "blue" } });
  assert.deepEqual(outcome, { kind: "connected", errors: [] });
  assert.deepEqual(warnings.filter((text) => text.includes("headers")), [
    "switchboard: browsers cannot send headers with a WebSocket upgrade; ignoring them",
  ]);
});

test("a runtime without WebSocket ends connect() with no_websocket, once", async () => {
  const page = await clientPage();
  await page.evaluate(() => {
    window.WebSocket = undefined;
  });
  const outcome = await connectOutcome(page, hub.url, { userId: "nows" });
  assert.equal(outcome.kind, "no_websocket");
  assert.ok(outcome.errors.length <= 1, `at most one error event: ${outcome.errors}`);
  await page.close();
});

test("closes before opening end connect() with unauthorized_or_unreachable", async () => {
  const page = await clientPage();
  // Chromium spaces out repeated failed WebSocket attempts to one host.
  page.setDefaultTimeout(4 * TIMEOUT);
  // A hub that requires tokens refuses the upgrade with 401, which a
  // browser shows only as a close before opening (1006), as it does for an
  // address nobody listens on.
  const port = await freePort();
  const guarded = await startHub(port, ["--jwt-secret", "browser-secret"]);
  const nobody = `ws://127.0.0.1:${await freePort()}/ws`;
  try {
    for (const url of [guarded.url, nobody]) {
      const outcome = await connectOutcome(page, url, {
        userId: "stranger",
        reconnect: { minDelayMs: 10, maxDelayMs: 20 },
      });
      assert.equal(outcome.kind, "unauthorized_or_unreachable", url);
      // One transport error per attempt before the last, which ends it.
      assert.ok(outcome.errors.length < 12, `${url}: ${outcome.errors}`);
    }
  } finally {
    await guarded.stop();
  }
  await page.close();
});

test("1,000 clients created, used and closed are all collected", async () => {
  const page = await clientPage();
  page.setDefaultTimeout(4 * TIMEOUT);
  const outcome = await page.evaluate(
    async ({ url, total, connected, timeout }) => {
      let freed = 0;
      const alive = new Set();
      const registry = new FinalizationRegistry((n) => {
        freed += 1;
        alive.delete(n);
      });
      // One batch per call, so that nothing of it stays in this frame
      // (a suspended async function keeps its last locals alive).
      const batch = async (start, size) => {
        const clients = [];
        for (let n = start; n < start + size; n += 1) {
          const client = window.makeClient(url, { userId: `many-${n}` });
          // Callbacks that hold the client and a large value: what the
          // package keeps of them must not keep either alive.
          const ballast = new Array(1_000).fill(n);
          client.on("message", () => ballast.length + client.state);
          client.on("error", () => ballast.length);
          registry.register(client, n);
          alive.add(n);
          clients.push(client);
        }
        // Every tenth connects, joins and publishes; Chromium opens one
        // WebSocket to a host at a time, which makes a thousand slow.
        const live = clients.filter((_, at) => at % 10 === 0);
        await Promise.all(live.map((client) => client.connect().then(() => client.join("crowd"))));
        await live[0].publish("crowd", "hello", start);
        for (const client of clients) client.close();
      };
      for (let start = 0; start < total; start += 50) await batch(start, 50);
      window.events.length = 0;
      const deadline = performance.now() + timeout;
      while (freed < total && performance.now() < deadline) {
        window.gc();
        await new Promise((tick) => setTimeout(tick, 50));
      }
      return { freed, connected, alive: [...alive].slice(0, 5) };
    },
    { url: hub.url, total: 1_000, connected: 100, timeout: TIMEOUT },
  );
  assert.deepEqual(outcome, { freed: 1_000, connected: 100, alive: [] });
  await page.close();
});

test("a client the page lets go of without closing stops and leaves the hub", async () => {
  const page = await clientPage();
  const user = `forgotten-${Date.now()}`;
  await page.evaluate(
    async ({ url, user }) => {
      const client = window.makeClient(url, { userId: user });
      await client.connect();
      await client.join("lobby");
      // No close(): the only references go out of scope here.
    },
    { url: hub.url, user },
  );
  const connections = async () => {
    const response = await fetch(`${hub.http}/api/connections?user=${user}`);
    const body = await response.json();
    return body.connections.length;
  };
  assert.equal(await connections(), 1);
  const deadline = Date.now() + TIMEOUT;
  while ((await connections()) > 0) {
    assert.ok(Date.now() < deadline, "the forgotten client is still connected");
    await page.evaluate(() => window.gc());
    await new Promise((tick) => setTimeout(tick, 100));
  }
  await page.close();
});
