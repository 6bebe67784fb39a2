// Bundles src/index.js with webpack 5's defaults for a production build
// (no loaders, no plugins, no `experiments`): top-level await and the
// `new URL("…wasm", import.meta.url)` asset in switchboard-js are handled
// by webpack itself. Writes dist/ with the page.
import { copyFile, mkdir } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import webpack from "webpack";

const here = fileURLToPath(new URL(".", import.meta.url));

const stats = await new Promise((done, fail) =>
  webpack(
    {
      mode: "production",
      context: here,
      entry: "./src/index.js",
      output: { path: `${here}dist`, filename: "main.js", clean: true },
      performance: { hints: false },
    },
    (err, result) => (err ? fail(err) : done(result)),
  ),
);
if (stats.hasErrors()) {
  console.error(stats.toString("errors-only"));
  process.exit(1);
}
await mkdir(`${here}dist`, { recursive: true });
await copyFile(`${here}index.html`, `${here}dist/index.html`);
console.log(stats.toString({ preset: "summary", colors: false }));
