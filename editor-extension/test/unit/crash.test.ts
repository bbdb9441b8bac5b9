// The real language client against a sidecar command that dies at once: the extension restarts
// it with backoff, then stops and says so (fake vscode host, no model needed).
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { test } from "node:test";
import * as vscode from "vscode";
import { SidecarClient, type SidecarState } from "../../src/client";
import { settings, ui } from "./fake-vscode";

test("a sidecar that keeps dying is restarted with backoff, then reported once", { timeout: 120_000 }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mlx-crash-"));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const fake = path.join(dir, "fake-sidecar");
  fs.writeFileSync(fake, "#!/bin/sh\necho 'boom: no model' >&2\nexit 3\n", { mode: 0o755 });
  settings.clear();
  settings.set("mlxSidecar.serverPath", fake);
  settings.set("mlxSidecar.mode", "stdio");
  const log = vscode.window.createOutputChannel("test", { log: true }) as vscode.LogOutputChannel & { lines: string[] };
  const sidecar = new SidecarClient(vscode.Uri.file(dir), log);
  const states: SidecarState[] = [];
  sidecar.onDidChangeState((s) => states.push(s));
  const t0 = Date.now();
  await sidecar.start().catch(() => undefined);
  // 1+2+4+8+16 s of backoff would be too slow for a test; wait for the first two restarts only.
  while (states.filter((s) => s === "starting").length < 3 && Date.now() - t0 < 60_000) {
    await new Promise((r) => setTimeout(r, 200));
  }
  const elapsed = Date.now() - t0;
  assert.ok(states.includes("restarting"), `restarting in ${states.join(",")}`);
  assert.ok(elapsed >= 3000, `two restarts take at least 1 s + 2 s of backoff (took ${elapsed} ms)`);
  assert.ok(!states.includes("running"), `never claims to be running: ${states.join(",")}\n${log.lines.join("\n")}`);
  assert.ok(
    log.lines.some((l) => /restarting in 1 s/.test(l)),
    log.lines.join("\n"),
  );
  await sidecar.stop();
  assert.equal(sidecar.state, "stopped");
  assert.ok(ui.shown.length <= 3, `not a flood of messages: ${JSON.stringify(ui.shown)}`);
  sidecar.dispose();
});
