// Shared pieces of the browser tests: a real `switchboard` process on a free
// loopback port, the example's static server, and Debian's Chromium driven
// by playwright-core (which cannot download a browser of its own here).
import { mkdir } from "node:fs/promises";
import { chromium } from "playwright-core";
import { serve } from "../../examples/chat-web/serve.mjs";

import { ROOT, TIMEOUT, freePort, startHub } from "../hub.mjs";

export { ROOT, TIMEOUT, freePort, startHub };
export const ARTIFACTS = `${ROOT}tests/artifacts`;

/** Headless Chromium with the flags this machine's closed network needs (and `extra`). */
export function launchChromium(extra = []) {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: [
      ...extra,
      "--no-sandbox",
      "--disable-gpu",
      "--disable-dev-shm-usage",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}

/** Saves a screenshot under the git-ignored tests/artifacts folder. */
export async function screenshot(page, name) {
  await mkdir(ARTIFACTS, { recursive: true });
  const path = `${ARTIFACTS}/${name}.png`;
  await page.screenshot({ path, fullPage: true });
  return path;
}

/**
 * A new page of `tests/browser/pages/client.html`, served by `site` (a
 * static server of the repository), once it exposes `window.makeClient`.
 */
export async function clientPage(browser, site) {
  const page = await browser.newPage();
  page.setDefaultTimeout(TIMEOUT);
  await page.goto(`http://127.0.0.1:${site.address().port}/tests/browser/pages/client.html`);
  await page.waitForFunction(() => document.title === "ready");
  return page;
}

/** Fails the test with the page's console output when a page script throws. */
export function watchConsole(page, label, sink) {
  page.on("console", (message) => sink.push(`[${label}] ${message.type()}: ${message.text()}`));
  page.on("pageerror", (error) => sink.push(`[${label}] pageerror: ${error.message}`));
}

/**
 * What the bundled apps' tests share: a hub, a static server of the built
 * app in `dist`, and Chromium. `open(user)` loads the page as `user` against
 * the hub and waits until it shows `#status[data-state="connected"]`;
 * `consoleLines` collects every page's console for failure messages.
 */
export async function bundledApp(dist) {
  const hub = await startHub(await freePort());
  const site = await serve(dist, 0);
  const browser = await launchChromium();
  const consoleLines = [];
  return {
    consoleLines,
    async open(user) {
      const page = await browser.newPage();
      page.setDefaultTimeout(TIMEOUT);
      watchConsole(page, user, consoleLines);
      const address = `http://127.0.0.1:${site.address().port}/?hub=${encodeURIComponent(hub.url)}&user=${user}`;
      await page.goto(address);
      await page.locator('#status[data-state="connected"]').waitFor();
      return page;
    },
    async close() {
      await browser.close();
      site.close();
      await hub.stop();
    },
  };
}
