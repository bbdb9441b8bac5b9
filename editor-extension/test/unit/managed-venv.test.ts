// What a user who installs only the .vsix gets: the extension's own venv, made from the sidecar
// wheel the .vsix carries plus the default models' packages, runs the sidecar on its own.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { test } from "node:test";
import * as vscode from "vscode";
import { bundledWheel, ensureManagedVenv, sidecarRequirement } from "../../src/sidecar-path";

const ext = path.resolve(__dirname, "..", "..", "..");

test("the requirement: the pipPackage setting, else the bundled wheel, else PyPI's mlx-sidecar", () => {
  assert.equal(sidecarRequirement("mlx-sidecar==0.2", "/x/mlx_sidecar-0.1.0-py3-none-any.whl"), "mlx-sidecar==0.2");
  assert.equal(
    sidecarRequirement("", "/x/mlx_sidecar-0.1.0-py3-none-any.whl"),
    "/x/mlx_sidecar-0.1.0-py3-none-any.whl",
  );
  assert.equal(sidecarRequirement("", undefined), "mlx-sidecar");
  assert.equal(bundledWheel(path.join(os.tmpdir(), "no-such-dir")), undefined);
});

// `npm run package` builds the wheel; CI (which sets VSIX) must have it, a bare `npm test` may not.
const wheel = bundledWheel(path.join(ext, "python"));
const skip = !wheel && !process.env.VSIX ? "no bundled wheel: run `npm run package` first" : false;

test(
  "a managed venv from the bundled wheel installs the sidecar and its default models",
  { skip, timeout: 900_000 },
  async () => {
    assert.ok(wheel, "npm run package should have put the sidecar wheel in python/");
    const log = vscode.window.createOutputChannel("t") as any;
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mlx-managed-"));
    try {
      const sidecar = await ensureManagedVenv(vscode.Uri.file(dir), sidecarRequirement("", wheel), log);
      assert.equal(sidecar, path.join(dir, "venv", "bin", "mlx-sidecar"));
      const models = path.join(dir, "models");
      const env = { ...process.env, MLX_SIDECAR_USE_HF_CACHE: "false" };
      const run = (...args: string[]) =>
        execFileSync(sidecar, ["--models-dir", models, ...args], { encoding: "utf8", env });
      run("models", "setup-defaults");
      const listed = JSON.parse(run("models", "list", "--json")).map(
        (m: { id: string; kind: string }) => `${m.id}:${m.kind}`,
      );
      assert.deepEqual(listed.sort(), [
        "Qwen2.5-Coder-0.5B-Instruct:text",
        "SmolLM2-135M-Instruct:text",
        "all-MiniLM-L6-v2:embedding",
      ]);
      // a second start reuses the venv instead of installing again
      const again = Date.now();
      assert.equal(await ensureManagedVenv(vscode.Uri.file(dir), sidecarRequirement("", wheel), log), sidecar);
      assert.ok(Date.now() - again < 1000);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  },
);
