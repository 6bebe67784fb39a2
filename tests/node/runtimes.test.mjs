// switchboard-js outside the browser, as a user gets it: the package packed
// with `npm pack` (scripts/build-js.sh builds it first), installed into a
// fresh project, and used against live hubs from Node.js (`import` and
// `require`), Deno and Bun. Deno and Bun come from their npm packages
// (this folder's devDependencies), which ship their binaries.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFile, execFileSync } from "node:child_process";
import { cp, mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { HUB, ROOT, freePort, startHub } from "../hub.mjs";

const HERE = fileURLToPath(new URL("./", import.meta.url));
const SECRET = "runtime-test-secret";
/** Every script gets this long, then is killed and fails its test. */
const SCRIPT_TIMEOUT = 30_000;

let hub;
let tokenHub;
let work;
let project;

before(async () => {
  [hub, tokenHub] = await Promise.all([
    freePort().then((port) => startHub(port)),
    freePort().then((port) => startHub(port, ["--jwt-secret", SECRET])),
  ]);
  work = await mkdtemp(join(tmpdir(), "switchboard-runtimes-"));
  execFileSync("npm", ["pack", "--pack-destination", work, "--silent"], { cwd: `${ROOT}sdk-js/pkg` });
  const tarball = (await readdir(work)).find((name) => name.endsWith(".tgz"));
  project = join(work, "app");
  await cp(join(HERE, "app"), project, { recursive: true });
  await writeFile(join(project, "package.json"), JSON.stringify({ name: "app", private: true, type: "module" }));
  execFileSync("npm", ["install", "--offline", "--no-audit", "--no-fund", "--silent", join(work, tarball)], {
    cwd: project,
  });
});

after(async () => {
  await hub?.stop();
  await tokenHub?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

/** A token for `user` that the token hub accepts, from `switchboard token`. */
function token(user) {
  return execFileSync(HUB, ["--jwt-secret", SECRET, "token", "--user", user], { encoding: "utf8" }).trim();
}

/** Runs `command args` in the fresh project; resolves with its stdout. */
function output(command, args) {
  return new Promise((done, fail) => {
    execFile(command, args, { cwd: project, timeout: SCRIPT_TIMEOUT }, (error, stdout, stderr) => {
      if (error) return fail(new Error(`${command} ${args.join(" ")} failed: ${error.message}\n${stdout}\n${stderr}`));
      done(stdout);
    });
  });
}

/** Runs `command args` in the fresh project; resolves with its stdout's last line as JSON. */
async function run(command, args) {
  return JSON.parse((await output(command, args)).trim().split("\n").at(-1));
}

/** Node 22+ has a global WebSocket; Node 20 has it behind a flag. */
const NODE_FLAGS = Number(process.versions.node.split(".")[0]) < 22 ? ["--experimental-websocket"] : [];
const EVERY_MESSAGE_ONCE = { got: [1, 2, 3], connections: 2 };
const tokens = () => [token("esm-sender"), token("esm-receiver")];

test("Node.js, `import`: join, publish, receive, and a reconnect that loses and repeats nothing", async () => {
  assert.deepEqual(await run("node", [...NODE_FLAGS, "esm.mjs", hub.url, hub.http]), EVERY_MESSAGE_ONCE);
});

test("Node.js, `import`, the token in an Authorization header on the upgrade", async () => {
  const result = await run("node", [...NODE_FLAGS, "esm.mjs", tokenHub.url, tokenHub.http, ...tokens()]);
  assert.deepEqual(result, EVERY_MESSAGE_ONCE);
});

test("Node.js, `require`: the CommonJS entry, with the `ws` package as the WebSocket and a header token", async () => {
  const ws = join(HERE, "node_modules/ws");
  const result = await run("node", ["cjs.cjs", tokenHub.url, tokenHub.http, ws, token("cjs-sender"), token("cjs-receiver")]);
  assert.deepEqual(result, EVERY_MESSAGE_ONCE);
});

test("Node.js, `ws`: an attempt abandoned mid-handshake does not end the process", async () => {
  const result = await run("node", ["stalled.cjs", join(HERE, "node_modules/ws")]);
  assert.deepEqual(result, { kind: "gave_up" });
});

test("Node.js without a WebSocket: connect() rejects at once with no_websocket, and no retries", async () => {
  const result = await run("node", ["no-websocket.mjs", hub.url]);
  assert.equal(result.kind, "no_websocket");
  assert.match(result.message, /pass a WebSocket constructor/);
  assert.deepEqual(result.errors, ["no_websocket"]);
  assert.ok(result.ms < 1_000, `rejected after ${result.ms} ms`);
});

const deno = join(HERE, "node_modules/.bin/deno");
const DENO_FLAGS = ["run", "--allow-net", "--allow-read", "--allow-env"];

test("Deno: the same ES module script", async () => {
  assert.deepEqual(await run(deno, [...DENO_FLAGS, "esm.mjs", hub.url, hub.http]), EVERY_MESSAGE_ONCE);
  const result = await run(deno, [...DENO_FLAGS, "esm.mjs", tokenHub.url, tokenHub.http, ...tokens()]);
  assert.deepEqual(result, EVERY_MESSAGE_ONCE);
});

const bun = join(HERE, "node_modules/.bin/bun");

test("Bun: the same ES module script", async () => {
  assert.deepEqual(await run(bun, ["esm.mjs", hub.url, hub.http]), EVERY_MESSAGE_ONCE);
  const result = await run(bun, ["esm.mjs", tokenHub.url, tokenHub.http, ...tokens()]);
  assert.deepEqual(result, EVERY_MESSAGE_ONCE);
});

test("sdk-js/README.md's example runs as printed, against a live hub", async () => {
  const example = await readFile(join(HERE, "app/use.mjs"), "utf8");
  assert.ok(example.includes('"ws://localhost:8080/ws"'), "the example names the hub's default URL");
  await writeFile(join(project, "use-here.mjs"), example.replace("ws://localhost:8080/ws", hub.url));
  const printed = await output("node", [...NODE_FLAGS, "use-here.mjs"]);
  assert.match(printed, /^connected /m);
  assert.match(printed, /^alice in general: \{ text: 'hi' \}$/m, "its own message came back");
});

test("the README's JavaScript example runs as printed, against a live hub", async () => {
  const example = await readFile(join(HERE, "app/quickstart.mjs"), "utf8");
  assert.ok(example.includes('"ws://127.0.0.1:8080/ws"'), "the example names the hub's default URL");
  await writeFile(join(project, "quickstart-here.mjs"), example.replace("ws://127.0.0.1:8080/ws", hub.url));
  const printed = await output("node", [...NODE_FLAGS, "quickstart-here.mjs"]);
  assert.match(printed, /^alice \{ text: 'hi' \}$/m, "its own message came back");
  assert.match(printed, /^\[ 'alice' \] 0$/m, "join answered alice; bob has no connection");
});
