// Browser-aware reconnect: while the browser is offline the client spends no
// attempts, and the `online` event makes it retry at once instead of waiting
// out its backoff delay. Playwright's setOffline drives Chromium's real
// network state (navigator.onLine and the offline/online events).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { serve } from "../../examples/chat-web/serve.mjs";
import { ROOT, TIMEOUT, freePort, launchChromium, startHub } from "./harness.mjs";

let browser;
let site;
let hub;
let hubPort;

before(async () => {
  hubPort = await freePort();
  hub = await startHub(hubPort);
  site = await serve(ROOT, 0);
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  site?.close();
  await hub?.stop();
});

test("offline spends no attempts and online reconnects at once", async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  await page.goto(`http://127.0.0.1:${site.address().port}/tests/browser/pages/client.html`);
  await page.waitForFunction(() => document.title === "ready");

  // A 20 s backoff: only the `online` event can bring the client back sooner.
  await page.evaluate(async (url) => {
    window.client = window.makeClient(url, {
      userId: "roamer",
      reconnect: { minDelayMs: 20000, maxDelayMs: 20000 },
    });
    await window.client.connect();
    await window.client.join("field");
  }, hub.url);

  // Going offline drops the connection at once: the page hears about it from
  // the `offline` event, not from a close frame that the emulated offline
  // network would never deliver.
  await context.setOffline(true);
  await page.waitForFunction(() => window.events.some((e) => e.name === "disconnected"));
  assert.equal(await page.evaluate(() => navigator.onLine), false);
  const dropped = await page.evaluate(() => window.events.find((e) => e.name === "disconnected").payload);
  assert.equal(dropped.willReconnect, true);
  assert.match(dropped.reason, /offline/);
  // The hub restarts while the page is offline: nothing may be attempted
  // against it until the network is back.
  await hub.stop();

  hub = await startHub(hubPort);
  const wentOnline = await page.evaluate(() => performance.now());
  await context.setOffline(false);
  await page.waitForFunction(
    (since) => window.events.some((e) => e.name === "joined" && e.at > since),
    wentOnline,
  );
  const events = await page.evaluate(() => window.events);
  const rejoinedAt = events.findLast((e) => e.name === "joined").at;
  assert.ok(rejoinedAt - wentOnline < 5000, `rejoined ${Math.round(rejoinedAt - wentOnline)} ms after going online`);

  // No attempt was spent while offline: the only attempts after the first
  // connection are those made after going online, starting from 0.
  const lostAt = events.find((e) => e.name === "disconnected").at;
  const attempts = events.filter((e) => e.name === "connecting" && e.at > lostAt);
  assert.ok(attempts.every((e) => e.at >= wentOnline), "no attempt while offline");
  assert.deepEqual(attempts.map((e) => e.payload.attempt), [0]);
  await context.close();
});
