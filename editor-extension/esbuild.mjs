// Bundles the extension into one file so the .vsix needs no node_modules, and the webview
// scripts (media/chat.js with markdown-it, DOMPurify and highlight.js; media/status.js) into
// dist/webview/ for the webviews' strict CSP (one nonce script each, nothing remote).
import * as esbuild from "esbuild";

const extension = {
  entryPoints: ["src/extension.ts"],
  bundle: true,
  outfile: "dist/extension.js",
  external: ["vscode"],
  format: "cjs",
  platform: "node",
  target: "node20",
  sourcemap: true,
  logLevel: "warning",
};

const webview = {
  entryPoints: ["media/chat.js", "media/status.js"],
  bundle: true,
  outdir: "dist/webview",
  format: "iife",
  platform: "browser",
  target: "es2022",
  minify: true,
  sourcemap: false,
  logLevel: "warning",
};

if (process.argv.includes("--watch")) {
  for (const options of [extension, webview]) await (await esbuild.context(options)).watch();
} else {
  await Promise.all([esbuild.build(extension), esbuild.build(webview)]);
}
