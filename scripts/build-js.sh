#!/usr/bin/env bash
# Builds the npm package in sdk-js/pkg with wasm-pack (an ES module for
# browsers, size-optimized) and prints the sizes.
# Needs wasm-pack and the matching wasm-bindgen CLI on PATH
# (./scripts/test.sh installs both), and npm (for binaryen's wasm-opt and
# esbuild, sdk-js/tools/).
set -euo pipefail
cd "$(dirname "$0")/.."

# --mode no-install: use the wasm-bindgen on PATH; wasm-pack's own download
# of it cannot work offline.
# The `wasm-release` profile (root Cargo.toml) optimizes for size with LTO.
wasm-pack --quiet build sdk-js --profile wasm-release --target web --mode no-install --out-dir pkg

wasm=sdk-js/pkg/switchboard_js_bg.wasm

# Drop the `name` and `producers` custom sections: function names for stack
# traces and toolchain notes, over a third of the file. Custom sections are
# skippable by definition, so this cannot change behaviour. (`strip = true`
# in the profile would also drop `target_features`, which wasm-bindgen reads.)
node -e '
const fs = require("fs");
const file = process.argv[1];
const wasm = fs.readFileSync(file);
const leb = (at) => { let value = 0, shift = 0, byte;
  do { byte = wasm[at++]; value += (byte & 0x7f) * 2 ** shift; shift += 7; } while (byte & 0x80);
  return [value, at]; };
const kept = [wasm.subarray(0, 8)];
for (let at = 8; at < wasm.length;) {
  const start = at, id = wasm[at++];
  const [size, body] = leb(at);
  at = body + size;
  if (id === 0) {
    const [length, name] = leb(body);
    const section = wasm.subarray(name, name + length).toString();
    if (section === "name" || section === "producers") continue;
  }
  kept.push(wasm.subarray(start, at));
}
fs.writeFileSync(file, Buffer.concat(kept));
' "$wasm"

(cd sdk-js/tools && npm ci --no-audit --no-fund --loglevel=error)

# Optimize the module with binaryen's wasm-opt (the npm build: Debian's is
# too old to read what rustc emits now, and wasm-pack's own download cannot
# work offline). -O1 rather than -Oz: measured on this module, -Oz makes it
# 12% smaller raw but larger gzipped, which is what a page downloads, while
# -O1 saves about 2.5 KB gzipped. The features are those rustc's wasm32
# target turns on; wasm-opt's passes keep what the module does.
sdk-js/tools/node_modules/.bin/wasm-opt -O1 --converge \
    --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
    --enable-mutable-globals --enable-reference-types --enable-multivalue \
    "$wasm" -o "$wasm.opt"
mv "$wasm.opt" "$wasm"

# Minify the JavaScript glue wasm-bindgen writes. Its JSDoc repeats the
# TypeScript declarations, which the package ships beside it and editors
# read instead. Exported names (`Client`, `init`) and property names are
# kept; only the glue's internal helpers get short names, which costs stack
# traces nothing an app can act on. esbuild parses the file, so this cannot
# change what it does.
glue=sdk-js/pkg/switchboard_js.js
sdk-js/tools/node_modules/.bin/esbuild "$glue" --format=esm --minify \
    --legal-comments=none --log-level=warning \
    --banner:js='/* @ts-self-types="./switchboard_js.d.ts" */' --outfile="$glue.min"
mv "$glue.min" "$glue"

# The package's main entry loads the module on import (sdk-js/js/index.js,
# top-level await), so bundler users never call init(); "switchboard-js/web"
# is wasm-pack's own module, with its init(), for pages that want to decide
# when it loads. wasm-pack writes neither the entry nor `exports`.
# The entries are minified like the glue: their comments are for readers of
# this repository, not for every page that downloads them.
cp sdk-js/js/index.d.ts sdk-js/pkg/
for entry in index node; do
    sdk-js/tools/node_modules/.bin/esbuild "sdk-js/js/$entry.js" --format=esm --minify \
        --legal-comments=none --log-level=warning --outfile="sdk-js/pkg/$entry.js"
done
# Node.js, Deno and Bun get `node.js` (the module read from disk, no
# top-level await), and `require()` gets the same bundled as CommonJS, so
# that every Node version that can run the SDK can require it. (An app that
# both imports and requires the package gets two instances of the module.)
sdk-js/tools/node_modules/.bin/esbuild sdk-js/pkg/node.js --bundle --format=cjs --platform=node \
    --minify-syntax --legal-comments=none --log-level=warning \
    --inject:sdk-js/js/import-meta-url.js --define:import.meta.url=import_meta_url \
    --outfile=sdk-js/pkg/node.cjs
node -e '
const fs = require("fs");
const file = "sdk-js/pkg/package.json";
const pkg = JSON.parse(fs.readFileSync(file, "utf8"));
pkg.main = "index.js";
pkg.module = "index.js";
pkg.types = "index.d.ts";
pkg.files = [...new Set([...pkg.files, "index.js", "index.d.ts", "node.js", "node.cjs"])];
// The entries run init() when evaluated: bundlers (for pages, and for
// servers: Next.js, Vite SSR) must not skip them.
pkg.sideEffects = [...new Set([...(pkg.sideEffects || []), "./index.js", "./node.js", "./node.cjs"])];
pkg.engines = { node: ">=18" };
// Browsers and bundlers for them take `index.js`; Node.js, Deno and Bun
// (which all match `node`) the entry that reads the module from disk.
pkg.exports = {
  ".": {
    types: "./index.d.ts",
    browser: "./index.js",
    node: { import: "./node.js", require: "./node.cjs" },
    default: "./index.js",
  },
  "./web": { types: "./switchboard_js.d.ts", default: "./switchboard_js.js" },
  "./switchboard_js_bg.wasm": "./switchboard_js_bg.wasm",
  "./package.json": "./package.json",
};
fs.writeFileSync(file, JSON.stringify(pkg, null, 2) + "\n");
'

# What a page downloads for `import { Client } from "switchboard-js"`: the
# entry, the bindings and the module, each gzipped as a server would.
gz() { gzip -9 -c "$1" | wc -c; }
wasm_gz=$(gz "$wasm")
js_gz=$(gz sdk-js/pkg/switchboard_js.js)
entry_gz=$(gz sdk-js/pkg/index.js)
total=$((wasm_gz + js_gz + entry_gz))
printf 'switchboard-js: %s bytes wasm (%s gzipped) + %s bytes JS (%s gzipped) + entry (%s gzipped) = %s bytes gzipped\n' \
    "$(wc -c < "$wasm")" "$wasm_gz" "$(wc -c < sdk-js/pkg/switchboard_js.js)" "$js_gz" "$entry_gz" "$total"

# The size budget: the package stays under 100 KiB gzipped (issue 12). A
# change that crosses it fails here, with the figures above, rather than
# being noticed by users.
budget=$((100 * 1024))
if [ "$total" -ge "$budget" ]; then
    echo "switchboard-js is ${total} bytes gzipped, over its budget of ${budget}" >&2
    echo "(twiggy: see sdk-js/README.md, \"Size\")" >&2
    exit 1
fi
