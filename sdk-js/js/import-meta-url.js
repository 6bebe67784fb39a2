// Stands in for `import.meta.url` when scripts/build-js.sh bundles the Node
// entry as CommonJS (esbuild's `--inject`), where only `__filename` exists.
export const import_meta_url = require("node:url").pathToFileURL(__filename).href;
