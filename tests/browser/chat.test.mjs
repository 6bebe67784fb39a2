// The example chat page in real Chromium: two pages chat through a real hub,
// private messages included, and page A rides out a hub restart.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { serve } from "../../examples/chat-web/serve.mjs";
import { ROOT, TIMEOUT, freePort, launchChromium, screenshot, startHub, watchConsole } from "./harness.mjs";

let browser;
let site;
let hubPort;
let hub;
const consoleLines = [];

before(async () => {
  hubPort = await freePort();
  hub = await startHub(hubPort);
  site = await serve(`${ROOT}examples/chat-web`, 0);
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  site?.close();
  await hub?.stop();
});

async function openChat(name) {
  const page = await browser.newPage();
  page.setDefaultTimeout(TIMEOUT);
  watchConsole(page, name, consoleLines);
  const { port } = site.address();
  await page.goto(`http://127.0.0.1:${port}/?hub=${encodeURIComponent(hub.url)}`);
  await page.fill("#name", name);
  await page.fill("#room", "general");
  await page.click("#connect");
  await page.waitForSelector("main:not([hidden])");
  await page.waitForSelector('#status[data-state="connected"]');
  return page;
}

async function say(page, text, to = "") {
  await page.fill("#to", to);
  await page.fill("#text", text);
  await page.click("#send");
}

const logLine = (page, text) => page.locator("#log li", { hasText: text });

test("two pages chat through the hub, see each other, and survive a hub restart", async () => {
  try {
    const alice = await openChat("alice");
    const bob = await openChat("bob");

    // Presence: each sees the other in the room.
    await alice.locator("#present li", { hasText: "bob" }).waitFor();
    await bob.locator("#present li", { hasText: "alice" }).waitFor();

    // Room messages reach both pages, the sender's included.
    await say(alice, "hello bob");
    await logLine(bob, "hello bob").waitFor();
    await logLine(alice, "hello bob").waitFor();
    assert.match(await logLine(bob, "hello bob").innerText(), /^alice: hello bob/);

    // Private messages reach only the addressee.
    await say(bob, "psst alice", "alice");
    await logLine(alice, "psst alice").waitFor();
    assert.match(await logLine(alice, "psst alice").innerText(), /bob \(private\)/);

    await screenshot(alice, "chat-alice");
    await screenshot(bob, "chat-bob");

    // The hub restarts on the same port: the page shows it reconnecting,
    // then connected again, rejoins the room and keeps receiving.
    await hub.stop();
    await alice.locator("#log li", { hasText: "reconnecting" }).first().waitFor();
    hub = await startHub(hubPort);
    await alice.waitForSelector('#status[data-state="connected"]');
    await bob.waitForSelector('#status[data-state="connected"]');
    await say(bob, "back again");
    await logLine(alice, "back again").waitFor();
    await screenshot(alice, "chat-alice-after-restart");
  } catch (error) {
    error.message += `\nbrowser console:\n${consoleLines.join("\n")}`;
    throw error;
  }
});
