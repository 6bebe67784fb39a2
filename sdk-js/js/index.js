// The package's entry: it fetches and instantiates the WebAssembly module
// once, when first imported (top-level await), so an application writes
// `import { Client } from "switchboard-js"` and uses `new Client(…)` at once,
// with no `init()`. Vite and webpack 5 emit the .wasm file as an asset from
// the `new URL(…, import.meta.url)` below; browsers run this file as it is.
// Pages that want to decide when the module loads import
// "switchboard-js/web" and call its `init()`.
import init from "./switchboard_js.js";

await init({ module_or_path: new URL("./switchboard_js_bg.wasm", import.meta.url) });

export * from "./switchboard_js.js";
// Code written for the `web` entry (`await init()` first) keeps working:
// a second call returns the module already loaded.
export { default } from "./switchboard_js.js";
