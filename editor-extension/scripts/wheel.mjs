// Builds the sidecar's wheel (the Python package at the repository root) into python/, which the
// .vsix carries: the extension's managed venv installs it when no sidecar is configured, so a
// user who installs only the .vsix gets the matching sidecar with no PyPI release needed.
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";

const ext = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const repo = path.resolve(ext, "..");
const out = path.join(ext, "python");
const python = process.env.SIDECAR_PYTHON || (process.platform === "win32" ? "python" : "python3");

fs.rmSync(out, { recursive: true, force: true });
fs.mkdirSync(out);
execFileSync(python, ["-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", out, repo], {
  stdio: ["ignore", "inherit", "inherit"],
});
const wheels = fs.readdirSync(out).filter((f) => /^mlx_sidecar-.*\.whl$/.test(f));
if (wheels.length !== 1)
  throw new Error(`expected one mlx_sidecar wheel in ${out}, found ${wheels.join(", ") || "none"}`);
console.log(`sidecar wheel: python/${wheels[0]}`);
