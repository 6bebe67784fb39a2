// The package's entry: the module is ready on import, no `init()` needed.
export * from "./switchboard_js.js";
export { default } from "./switchboard_js.js";
