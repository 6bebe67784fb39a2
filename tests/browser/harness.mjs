// Shared pieces of the browser tests: a real `switchboard` process on a free
// loopback port, the example's static server, and Debian's Chromium driven
// by playwright-core (which cannot download a browser of its own here).
import { spawn } from "node:child_process";
import { createServer } from "node:net";
import { mkdir } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { serve } from "../../examples/chat-web/serve.mjs";

export const ROOT = fileURLToPath(new URL("../../", import.meta.url));
export const ARTIFACTS = `${ROOT}tests/artifacts`;
const HUB = process.env.SWITCHBOARD_BIN ?? `${ROOT}target/debug/switchboard`;
/** Every wait in these tests ends by this deadline at the latest. */
export const TIMEOUT = 15_000;

/** A loopback port nothing listens on right now. */
export function freePort() {
  return new Promise((done, fail) => {
    const probe = createServer().once("error", fail);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address();
      probe.close(() => done(port));
    });
  });
}

/** Starts `switchboard` on `port` (with `args` added); resolves once its health endpoint answers. */
export async function startHub(port, args = []) {
  const child = spawn(HUB, ["--bind", `127.0.0.1:${port}`, "--log", "warn", ...args], { stdio: ["ignore", "ignore", "inherit"] });
  const deadline = Date.now() + TIMEOUT;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`switchboard exited with ${child.exitCode}`);
    try {
      const response = await fetch(`http://127.0.0.1:${port}/health`);
      if (response.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error("switchboard did not start in time");
    await new Promise((tick) => setTimeout(tick, 25));
  }
  return {
    url: `ws://127.0.0.1:${port}/ws`,
    http: `http://127.0.0.1:${port}`,
    /** SIGTERM, then wait for the process to exit. */
    stop: () =>
      new Promise((done) => {
        if (child.exitCode !== null) return done();
        child.once("exit", () => done());
        child.kill("SIGTERM");
      }),
  };
}

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
