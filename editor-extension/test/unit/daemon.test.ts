// Two windows (two SidecarClients, the real vscode-languageclient) in daemon mode against the real
// Python sidecar: the first starts `mlx-sidecar daemon`, the second attaches to it over the socket;
// both chat on the one daemon; a `kill -9` of the daemon makes both reconnect, with one message
// each, to a new daemon that the first restart starts; when both leave, the daemon exits.
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { test } from "node:test";
import * as vscode from "vscode";
import { SidecarClient } from "../../src/client";
import { daemonPid } from "../../src/daemon";
import { settings, ui } from "./fake-vscode";

const repo = path.resolve(__dirname, "../../../..");
const python = process.env.SIDECAR_PYTHON ?? path.join(repo, ".venv/bin/python");
const models = process.env.MLX_SIDECAR_MODELS_DIR ?? path.join(repo, ".cache/test-models");

async function until<T>(what: string, fn: () => T | Promise<T>, timeoutMs = 120_000): Promise<NonNullable<T>> {
  const t0 = Date.now();
  for (;;) {
    const v = await fn();
    if (v) return v as NonNullable<T>;
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const chat = (c: SidecarClient) =>
  c.request("mlx/chat", { messages: [{ role: "user", content: "Hi" }], max_tokens: 2 });

test("two windows share one daemon, and both come back after it is killed", { timeout: 10 * 60_000 }, async () => {
  // Short: a Unix socket path has ~104 bytes at most.
  const dir = fs.mkdtempSync(path.join("/tmp", "mlxd-ext-"));
  const runtime = path.join(dir, "run");
  process.env.MLX_SIDECAR_DAEMON_RUNTIME_DIR = runtime;
  process.env.MLX_SIDECAR_DAEMON_GRACE_S = "1";
  process.env.MLX_SIDECAR_USE_HF_CACHE = "false";
  settings.clear();
  settings.set("mlxSidecar.mode", "daemon");
  settings.set("mlxSidecar.pythonPath", python);
  settings.set("mlxSidecar.modelsDir", models);
  const log = () => vscode.window.createOutputChannel("test", { log: true }) as vscode.LogOutputChannel;
  const windows = [new SidecarClient(vscode.Uri.file(dir), log()), new SidecarClient(vscode.Uri.file(dir), log())];
  const shownBefore = ui.shown.length;
  try {
    await Promise.all(windows.map((w) => w.start()));
    const pid = daemonPid(runtime);
    assert.ok(pid, "a daemon runs");
    for (const w of windows) assert.ok((await chat(w)).text !== undefined);
    for (const w of windows) {
      const status = await w.request("mlx/status", {});
      assert.equal(status.loaded.filter((m) => m.id === "SmolLM2-135M-Instruct").length, 1, "one copy");
    }
    assert.equal(daemonPid(runtime), pid, "the second window attached to the first one's daemon");

    process.kill(pid!, "SIGKILL");
    await until("both saw it go", () => windows.every((w) => w.state !== "running"), 30_000);
    const again = await until(
      "both reconnected to a new daemon",
      () => windows.every((w) => w.state === "running") && daemonPid(runtime) !== pid && daemonPid(runtime),
      180_000,
    );
    assert.notEqual(again, pid);
    for (const w of windows) assert.ok((await chat(w)).text !== undefined);
    const told = ui.shown.slice(shownBefore).filter((m) => /shared sidecar stopped/.test(JSON.stringify(m)));
    assert.equal(told.length, 2, `one message per window: ${JSON.stringify(told)}`);

    await Promise.all(windows.map((w) => w.stop()));
    await until("the daemon exits after the grace period", () => daemonPid(runtime) === undefined, 30_000);
  } finally {
    for (const w of windows) w.dispose();
    const left = daemonPid(runtime);
    if (left) process.kill(left, "SIGKILL");
    delete process.env.MLX_SIDECAR_DAEMON_RUNTIME_DIR;
    delete process.env.MLX_SIDECAR_DAEMON_GRACE_S;
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
