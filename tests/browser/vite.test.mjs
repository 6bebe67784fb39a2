// switchboard-js in a bundled app: examples/react, a React chat on the
// `useSwitchboard` hook, imports the package with no init() call, is built
// by Vite 7 (./scripts/test.sh runs the build), and works in Chromium
// against a real hub: two pages see each other and chat.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFile, stat } from "node:fs/promises";
import { ROOT, bundledApp, screenshot } from "./harness.mjs";

const APP = `${ROOT}examples/react`;
let app;

before(async () => {
  app = await bundledApp(`${APP}/dist`);
});

after(async () => {
  await app?.close();
});

test("a Vite-built React app imports the package without init() and chats through the hook", async () => {
  const hook = await readFile(`${APP}/src/useSwitchboard.js`, "utf8");
  assert.match(hook, /import \{ Client \} from "switchboard-js";/);
  for (const file of ["src/useSwitchboard.js", "src/main.js"]) {
    const source = await readFile(`${APP}/${file}`, "utf8");
    assert.doesNotMatch(source, /init\(/, `${file} never initializes the module itself`);
  }
  await stat(`${APP}/dist/index.html`); // built by ./scripts/test.sh (npm run build)

  let ann;
  try {
    ann = await app.open("ann");
    const bob = await app.open("bob");
    await ann.locator("#members li", { hasText: "bob" }).waitFor();
    await bob.locator("#members li", { hasText: "ann" }).waitFor();
    await ann.fill("#text", "hello from react");
    await ann.click("#say button");
    await bob.locator("#log li", { hasText: "ann: hello from react" }).waitFor();
    await ann.locator("#log li", { hasText: "ann: hello from react" }).waitFor();
    await bob.close();
    await ann.locator("#members li", { hasText: "bob" }).waitFor({ state: "detached" });
  } catch (err) {
    if (ann) await screenshot(ann, "react-failure").catch(() => {});
    throw new Error(`${err.message}\n${app.consoleLines.join("\n")}`, { cause: err });
  }
});
