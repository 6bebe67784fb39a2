// The npm package as a user gets it: `npm pack`, install the tarball into a
// fresh project, and use it from a page in real Chromium.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtemp, readFile, writeFile, readdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { serve } from "../../examples/chat-web/serve.mjs";
import { ROOT, TIMEOUT, freePort, launchChromium, startHub } from "./harness.mjs";

let hub;
let browser;
let site;

before(async () => {
  hub = await startHub(await freePort());
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  site?.close();
  await hub?.stop();
});

const npm = (args, cwd) => execFileSync("npm", [...args, "--no-audit", "--no-fund"], { cwd, encoding: "utf8" });

test("the packed tarball installs into a fresh project and works there", async () => {
  const work = await mkdtemp(join(tmpdir(), "switchboard-pack-"));
  npm(["pack", "--pack-destination", work], `${ROOT}sdk-js/pkg`);
  const tarball = (await readdir(work)).find((name) => name.endsWith(".tgz"));
  assert.ok(tarball, "npm pack produced a tarball");

  const project = join(work, "fresh-app");
  execFileSync("mkdir", ["-p", project]);
  await writeFile(join(project, "package.json"), JSON.stringify({ name: "fresh-app", private: true, type: "module" }));
  npm(["install", "--offline", join(work, tarball)], project);

  const installed = JSON.parse(await readFile(join(project, "node_modules/switchboard-js/package.json"), "utf8"));
  assert.equal(installed.name, "switchboard-js");
  assert.ok(!JSON.stringify(installed).includes("example.invalid"), "no placeholder URL");
  for (const field of ["version", "description", "license", "files", "types", "module", "exports"]) {
    assert.ok(installed[field], `package.json has ${field}`);
  }
  const files = await readdir(join(project, "node_modules/switchboard-js"));
  for (const file of ["index.js", "index.d.ts", "node.js", "node.cjs", "switchboard_js.js", "switchboard_js_bg.wasm", "switchboard_js.d.ts", "README.md"]) {
    assert.ok(files.includes(file), `the package ships ${file}`);
  }
  const types = await readFile(join(project, "node_modules/switchboard-js/switchboard_js.d.ts"), "utf8");
  assert.match(types, /export interface ClientOptions/);
  assert.match(types, /join\(room: string\): Promise<string\[\]>/);
  assert.match(types, /fallbacks\?: string\[\]/);

  // A page of the fresh project: connect, join, and receive a message from a
  // second client whose first URL is dead, so it connects through its fallback.
  const dead = `ws://127.0.0.1:${await freePort()}/ws`;
  await writeFile(
    join(project, "index.html"),
    `<!doctype html><script type="module">
      // The package's entry loads the module on import: no init().
      import { Client } from "./node_modules/switchboard-js/index.js";
      const client = new Client(${JSON.stringify(hub.url)}, { userId: "fresh" });
      client.on("hello", (m) => { document.title = "received " + m.data.n; });
      await client.connect();
      await client.join("fresh-room");
      const roamer = new Client(${JSON.stringify(dead)}, { userId: "roamer", fallbacks: [${JSON.stringify(hub.url)}] });
      await roamer.connect();
      await roamer.join("fresh-room");
      await roamer.publish("fresh-room", "hello", { n: 42 });
    </script>`,
  );
  site = await serve(project, 0);
  const page = await browser.newPage();
  await page.goto(`http://127.0.0.1:${site.address().port}/`);
  await page.waitForFunction(() => document.title === "received 42", null, { timeout: TIMEOUT });
});
