// What every JavaScript test of this repository shares: a real `switchboard`
// process on a free loopback port, stopped when the test is done. No
// dependencies, so that the browser tests (tests/browser) and the Node.js,
// Deno and Bun tests (tests/node) both use it.
import { spawn } from "node:child_process";
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";

export const ROOT = fileURLToPath(new URL("../", import.meta.url));
/** The `switchboard` binary the tests run. */
export const HUB = process.env.SWITCHBOARD_BIN ?? `${ROOT}target/debug/switchboard`;
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
