// switchboard-js under webpack 5: tests/browser/webpack-app imports the
// package with no init() call and no webpack configuration beyond entry and
// output (./scripts/test.sh runs its build), and works in Chromium against a
// real hub: two pages chat.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFile, readdir } from "node:fs/promises";
import { ROOT, bundledApp, screenshot } from "./harness.mjs";

const APP = `${ROOT}tests/browser/webpack-app`;
let app;

before(async () => {
  app = await bundledApp(`${APP}/dist`);
});

after(async () => {
  await app?.close();
});

test("a webpack 5 bundle imports the package without init() and chats", async () => {
  const source = await readFile(`${APP}/src/index.js`, "utf8");
  assert.match(source, /import \{ Client \} from "switchboard-js";/);
  assert.doesNotMatch(source, /init\(/, "the page never initializes the module itself");
  const built = await readdir(`${APP}/dist`); // built by ./scripts/test.sh (npm run build)
  assert.ok(built.some((file) => file.endsWith(".wasm")), `webpack emitted the module as an asset: ${built}`);

  let ann;
  try {
    ann = await app.open("ann");
    const bob = await app.open("bob");
    await ann.fill("#text", "hello from webpack");
    await ann.click("#say button");
    await bob.locator("#log li", { hasText: "ann: hello from webpack" }).waitFor();
    await ann.locator("#log li", { hasText: "ann: hello from webpack" }).waitFor();
    await bob.close();
  } catch (err) {
    if (ann) await screenshot(ann, "webpack-failure").catch(() => {});
    throw new Error(`${err.message}\n${app.consoleLines.join("\n")}`, { cause: err });
  }
});
