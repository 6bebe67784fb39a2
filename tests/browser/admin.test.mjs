// The operator's page at /admin in real Chromium: it asks for the admin key
// (kept out of every URL), shows a user arriving from the example chat,
// broadcasts to them, creates a managed room, and disconnects them.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { serve } from "../../examples/chat-web/serve.mjs";
import { ROOT, TIMEOUT, freePort, launchChromium, screenshot, startHub, watchConsole } from "./harness.mjs";

const KEY = "admin-test-key";
let browser;
let site;
let hub;
const consoleLines = [];

before(async () => {
  hub = await startHub(await freePort(), ["--api-key", KEY]);
  site = await serve(`${ROOT}examples/chat-web`, 0);
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  site?.close();
  await hub?.stop();
});

test("an operator logs in, sees a user arrive, broadcasts, creates a room and disconnects the user", async () => {
  const admin = await browser.newPage();
  admin.setDefaultTimeout(TIMEOUT);
  watchConsole(admin, "admin", consoleLines);
  const requested = [];
  admin.on("request", (request) => requested.push(request.url()));
  try {
    await admin.goto(`${hub.http}/admin`);
    // This hub trusts `?user_id=`: the page says so where the operator looks.
    await admin.locator("#warnings:not([hidden])", { hasText: "auth.insecure" }).waitFor();

    // The API wants a key: the page asks for it; a wrong one is refused.
    await admin.locator("#login:not([hidden])").waitFor();
    await admin.fill("#key", "wrong");
    await admin.click("#login-form button");
    await admin.locator("#login-error", { hasText: "refused" }).waitFor();
    await admin.fill("#key", KEY);
    await admin.click("#login-form button");
    await admin.locator("#main:not([hidden])").waitFor();

    // A user arrives through the example chat.
    const chat = await browser.newPage();
    chat.setDefaultTimeout(TIMEOUT);
    watchConsole(chat, "chat", consoleLines);
    await chat.goto(`http://127.0.0.1:${site.address().port}/?hub=${encodeURIComponent(hub.url)}`);
    await chat.fill("#name", "alice");
    await chat.fill("#room", "general");
    await chat.click("#connect");
    await chat.waitForSelector('#status[data-state="connected"]');
    await admin.locator('#online tr[data-user="alice"]').waitFor();
    await admin.locator('#rooms tr[data-room="general"]').waitFor();
    assert.equal(await admin.textContent('#online tr[data-user="alice"] td:nth-child(2)'), "1");
    await admin.waitForFunction(() => Number(document.querySelector("#stat-connections").textContent) >= 1);

    // A broadcast from the page reaches the chat.
    await admin.fill('#broadcast-form input[name="event"]', "chat");
    await admin.fill('#broadcast-form input[name="room"]', "general");
    await admin.fill('#broadcast-form textarea[name="data"]', '{"text":"maintenance at five"}');
    await admin.click("#broadcast-form button");
    await admin.locator("#status", { hasText: "Broadcast to 1 connection" }).waitFor();
    await chat.locator("#log li", { hasText: "maintenance at five" }).waitFor();

    // A managed room, created from the page, is listed with its name.
    await admin.fill('#room-form input[name="id"]', "launch");
    await admin.fill('#room-form input[name="name"]', "Launch control");
    await admin.fill('#room-form input[name="description"]', "T-minus");
    await admin.click("#room-form button");
    await admin.locator("#status", { hasText: "Created room launch" }).waitFor();
    await admin.locator('#rooms tr[data-room="launch"]', { hasText: "Launch control" }).waitFor();
    await admin.click('#rooms tr[data-room="general"] button');
    await admin.locator("#room-members li", { hasText: "alice" }).waitFor();

    await screenshot(admin, "admin");

    // A managed room can be deleted from the page (after a confirmation).
    admin.once("dialog", (dialog) => dialog.accept());
    await admin.click('#rooms tr[data-room="launch"] button.danger');
    await admin.locator("#status", { hasText: "Deleted room launch" }).waitFor();
    await admin.locator('#rooms tr[data-room="launch"]').waitFor({ state: "detached" });

    // Disconnecting the user from the page closes the chat's connection.
    await admin.click('#online tr[data-user="alice"] button');
    await admin.locator("#status", { hasText: "Disconnected alice: 1 connection" }).waitFor();
    await admin.locator('#online tr[data-user="alice"]').waitFor({ state: "detached" });

    // The key never travelled in a URL.
    assert.ok(requested.length > 5, "the page made its requests");
    for (const url of requested) assert.ok(!url.includes(KEY), `the key leaked into ${url}`);
  } catch (err) {
    await screenshot(admin, "admin-failure").catch(() => {});
    throw new Error(`${err.message}\n${consoleLines.join("\n")}`, { cause: err });
  }
});
