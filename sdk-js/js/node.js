// The package's entry in Node.js, Deno and Bun (the `node` condition of its
// `exports`). It reads the WebAssembly module from disk, since Node's
// `fetch` cannot read `file:` URLs, and instantiates it synchronously, with
// no top-level await, so that `require()` of this ES module works too where
// Node allows it (20.19+, 22.12+). `node.cjs` is this file built as
// CommonJS for older ones (scripts/build-js.sh).
import { readFileSync } from "node:fs";
import { initSync } from "./switchboard_js.js";

initSync({ module: readFileSync(new URL("./switchboard_js_bg.wasm", import.meta.url)) });

export * from "./switchboard_js.js";
// Code written for the `web` entry (`await init()` first) keeps working:
// a second call returns the module already loaded.
export { default } from "./switchboard_js.js";
