// switchboard-js in a bundler app: tests/vite-app imports the package with
// no init() call, is built by Vite 7 (./scripts/test.sh runs the build), and
// works in Chromium against a real hub.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFile, stat } from "node:fs/promises";
import { serve } from "../../examples/chat-web/serve.mjs";
import { ROOT, TIMEOUT, freePort, launchChromium, screenshot, startHub, watchConsole } from "./harness.mjs";

const APP = `${ROOT}tests/vite-app`;
let browser;
let site;
let hub;
const consoleLines = [];

before(async () => {
  hub = await startHub(await freePort());
  site = await serve(`${APP}/dist`, 0);
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  site?.close();
  await hub?.stop();
});

test("a Vite build imports the package without init() and talks to the hub", async () => {
  const source = await readFile(`${APP}/src/main.js`, "utf8");
  assert.match(source, /import \{ Client \} from "switchboard-js";/);
  assert.doesNotMatch(source, /init\(/, "the app never initializes the module itself");
  await stat(`${APP}/dist/index.html`); // built by ./scripts/test.sh (npm run build)

  const page = await browser.newPage();
  page.setDefaultTimeout(TIMEOUT);
  watchConsole(page, "vite", consoleLines);
  try {
    await page.goto(`http://127.0.0.1:${site.address().port}/?hub=${encodeURIComponent(hub.url)}&user=bundled`);
    await page.locator("#status", { hasText: "connected" }).waitFor();
    await page.locator("#log li", { hasText: "bundled: built by vite" }).waitFor();
  } catch (err) {
    await screenshot(page, "vite-failure").catch(() => {});
    throw new Error(`${err.message}\n${consoleLines.join("\n")}`, { cause: err });
  }
});
