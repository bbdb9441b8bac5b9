// Unit tests of issue 25's editor logic: the dashboard's chart scales and device name, what the
// dashboard says the sidecar was started as, notification de-duplication, the status bar naming
// what runs, the model pickers' download entry, the index message, and how the sidecar's command
// is found (a configured one always; nothing installed without asking).
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { test } from "node:test";
import * as vscode from "vscode";
import { settings, ui } from "./fake-vscode";
import { SidecarClient, workLabel } from "../../src/client";
import { DOWNLOAD_ITEM_ID, pickerItems } from "../../src/commands";
import { languageId } from "../../src/chat-view";
import { parseSlash, SLASH_COMMANDS } from "../../src/chat-commands";
import { ChatStore, MAX_HISTORY } from "../../src/chat-store";
import { replyMeta } from "../../src/chat-turn";
import { Dedup, inform } from "../../src/notify";
import { resolveSidecar, SidecarNotStarted } from "../../src/sidecar-path";
import type { LaunchSettings } from "../../src/settings";
import { runningText } from "../../src/status-bar";
import { chartScale, deviceLabel, niceMax } from "../../src/status-history";
import { startedAs } from "../../src/status-page";
import { indexedMessage } from "../../src/workspace-index";

const python = process.env.SIDECAR_PYTHON ?? path.resolve(__dirname, "../../../../.venv/bin/python");

test("chart scale: the smallest span that holds the history, a round maximum, labelled axes", () => {
  const now = 1_000_000;
  // one sample 10 s ago: a one-minute chart, not a dot at the edge of a ten-minute one
  const fresh = chartScale([{ t: now - 10_000, v: 3 }], now, 600_000);
  assert.equal(fresh.spanMs, 60_000);
  assert.deepEqual(
    fresh.xTicks.map((t) => t.label),
    ["-1 min", "-30 s", "now"],
  );
  assert.equal(fresh.max, 5, "3 rounds up to 5");
  assert.deepEqual(
    fresh.yTicks.map((t) => t.label),
    ["0", "2.5", "5"],
  );
  // four minutes of history: five minutes shown; eleven: capped at the window
  assert.equal(chartScale([{ t: now - 240_000, v: 0 }], now, 600_000).spanMs, 300_000);
  assert.equal(chartScale([{ t: now - 660_000, v: 0 }], now, 600_000).spanMs, 600_000);
  assert.equal(chartScale([{ t: now - 240_000, v: 0 }], now, 600_000).xTicks[1].label, "-3 min");
  // no samples: a 0..1 chart, not NaN
  const empty = chartScale([], now, 600_000);
  assert.equal(empty.max, 1);
  assert.equal(empty.spanMs, 60_000);
  assert.deepEqual(
    [niceMax(0), niceMax(1), niceMax(1.2), niceMax(7), niceMax(12), niceMax(230)],
    [1, 1, 2, 10, 20, 500],
  );
});

test("the device as a reader says it, not MLX's repr", () => {
  assert.equal(deviceLabel("Device(cpu, 0)"), "CPU");
  assert.equal(deviceLabel("Device(gpu, 0)"), "GPU");
  assert.equal(deviceLabel("Device(gpu, 1)"), "GPU 1");
  assert.equal(deviceLabel("cpu"), "cpu");
});

test("started as: in daemon mode the daemon's own command line, not this window's stdio one", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mlx-started-"));
  try {
    const command = { command: "/py", args: ["-m", "sidecar", "stdio"], source: "pythonPath" as const };
    assert.deepEqual(startedAs({ command, daemonDir: undefined }), { command: "/py -m sidecar stdio" });
    // no daemon runs: the command this window would start it with
    const none = startedAs({ command, daemonDir: dir });
    assert.equal(none.command, "/py -m sidecar daemon");
    // one runs (this process stands in for it): its real command line, started by whoever
    fs.writeFileSync(path.join(dir, "daemon.pid"), String(process.pid));
    const running = startedAs({ command, daemonDir: dir }, () => "/other/python -m sidecar daemon");
    assert.equal(running.command, "/other/python -m sidecar daemon");
    assert.match(running.daemon ?? "", new RegExp(`shared daemon \\(pid ${process.pid}\\)`));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("notifications: the same message for the same event within the window is shown once", () => {
  let now = 0;
  const d = new Dedup(5000, () => now);
  assert.equal(d.take("model:chat:A"), true);
  assert.equal(d.take("model:chat:A"), false, "the chat panel and the command report one switch");
  assert.equal(d.take("model:chat:B"), true, "another event is another message");
  now = 4999;
  assert.equal(d.take("model:chat:A"), false);
  now = 5000;
  assert.equal(d.take("model:chat:A"), true, "a later switch to the same model is a new event");
});

test("notifications: another message for the same event is shown (a retried download after a cancel)", async () => {
  const shown = ui.shown.length;
  await inform("download:org/m", "MLX: download of org/m cancelled.");
  await inform("download:org/m", "MLX: downloaded org/m.");
  await inform("download:org/m", "MLX: downloaded org/m.");
  assert.deepEqual(
    ui.shown.slice(shown).map((m) => m.message),
    ["MLX: download of org/m cancelled.", "MLX: downloaded org/m."],
  );
});

test("a reply's footer says its length only when it is known", () => {
  assert.equal(replyMeta("stop", 12, "SmolLM2"), "12 tokens · SmolLM2");
  assert.equal(replyMeta("length", 0, "team/gpt"), "stopped at the token limit · team/gpt");
  assert.equal(replyMeta("cancelled"), "stopped");
});

test("the status bar names what runs: the chat's model, not the completion model", () => {
  const roles = { completion: "tiny-fim-qwen", chat: "SmolLM2", embedding: "MiniLM" };
  assert.equal(runningText(["chat"], roles), "SmolLM2");
  assert.equal(runningText(["e2e/markdown"], roles), "e2e/markdown");
  assert.equal(runningText(["completion", "chat", "chat"], roles), "tiny-fim-qwen, SmolLM2");
  assert.equal(workLabel("mlx/chat", { model: "qwen-vl" }), "qwen-vl");
  assert.equal(workLabel("mlx/chat", {}), "chat");
  assert.equal(workLabel("mlx/embed", {}), "embedding");
});

test("every model picker ends with Download a model…", () => {
  const list = {
    models: [
      { id: "SmolLM2", kind: "text", size_bytes: 1, quantization: null, loaded: false, roles: ["chat"] },
      { id: "MiniLM", kind: "embedding", size_bytes: 1, quantization: null, loaded: false, roles: [] },
    ],
    remote: [{ id: "team/big", upstream: "team" }],
  } as any;
  for (const role of ["chat", "completion", "embedding"] as const) {
    const items = pickerItems(list, role);
    assert.equal(items[items.length - 1].id, DOWNLOAD_ITEM_ID, role);
  }
  assert.deepEqual(
    pickerItems(list, "chat").map((i) => i.id),
    ["SmolLM2", "", "team/big", DOWNLOAD_ITEM_ID],
  );
});

test("the index message says what the index holds, also when nothing changed", () => {
  const status = {
    root: "/w",
    files: 37,
    chunks: 108,
    bytes: 1,
    index_bytes: 1,
    last_indexed_at: 1,
    indexing: false,
    model: "m",
  };
  const run = {
    files_seen: 37,
    files_indexed: 0,
    files_unchanged: 37,
    files_deleted: 0,
    files_skipped: 0,
    files_renamed: 0,
    chunks_stored: 0,
    texts_embedded: 0,
    seconds: 0.1,
  };
  const unchanged = indexedMessage({ run, status });
  assert.equal(unchanged, "MLX: workspace index up to date — 37 files, 108 chunks.");
  assert.doesNotMatch(unchanged, /\b0 files/);
  assert.ok(unchanged.length <= 60, `fits a notification's line: ${unchanged.length}`);
  assert.equal(
    indexedMessage({ run: { ...run, files_indexed: 3 }, status }),
    "MLX: workspace indexed — 37 files, 108 chunks.",
  );
});

test("a fence's language as a VS Code language id", () => {
  assert.equal(languageId("py"), "python");
  assert.equal(languageId("TypeScript"), "typescript");
  assert.equal(languageId(""), undefined);
});

function launch(over: Partial<LaunchSettings>): LaunchSettings {
  return {
    mode: "stdio",
    serverPath: "",
    pythonPath: "",
    pipPackage: "",
    modelsDir: "",
    httpPort: 0,
    logLevel: "INFO",
    ...over,
  };
}

test("a configured pythonPath is the one used; one that cannot be used is explained and nothing installed unasked", async () => {
  const storage = fs.mkdtempSync(path.join(os.tmpdir(), "mlx-resolve-"));
  const log = vscode.window.createOutputChannel("t") as any;
  const asked: string[] = [];
  const no = async (why: string) => {
    asked.push(why);
    return false;
  };
  try {
    if (fs.existsSync(python)) {
      const cmd = await resolveSidecar(launch({ pythonPath: python }), vscode.Uri.file(storage), log, no);
      assert.equal(cmd.source, "pythonPath");
      assert.deepEqual(cmd.args.slice(0, 2), ["-m", "sidecar"]);
      assert.deepEqual(asked, [], "a working interpreter is used without a question");
    }
    // missing: told why, asked, declined: no venv
    await assert.rejects(
      resolveSidecar(launch({ pythonPath: "/no/such/python" }), vscode.Uri.file(storage), log, no),
      (e: unknown) => e instanceof SidecarNotStarted && /\/no\/such\/python does not exist/.test(e.message),
    );
    // a Python without the package: the reason is the import error
    await assert.rejects(
      resolveSidecar(launch({ pythonPath: "/usr/bin/python3" }), vscode.Uri.file(storage), log, no),
      /cannot import the sidecar \(.*No module named 'sidecar'/,
    );
    assert.equal(asked.length, 2);
    assert.match(asked[0], /mlxSidecar\.pythonPath cannot be used/);
    // nothing configured at the first read but there at the second (settings being rewritten)
    if (fs.existsSync(python)) {
      const reread = await resolveSidecar(launch({}), vscode.Uri.file(storage), log, no, () =>
        launch({ pythonPath: python }),
      );
      assert.equal(reread.command, python);
      assert.equal(asked.length, 2, "no question: the configured interpreter appeared");
    }
    assert.ok(!fs.existsSync(path.join(storage, "venv")), "no venv was made");
    // The user said yes once (the managed venv is there): used again without a question, with a warning.
    const bin = path.join(storage, "venv", "bin");
    fs.mkdirSync(bin, { recursive: true });
    fs.writeFileSync(path.join(bin, "mlx-sidecar"), "#!/bin/sh\n", { mode: 0o755 });
    fs.writeFileSync(path.join(storage, "venv", ".mlx-sidecar-installed"), "some-req");
    const shown = ui.shown.length;
    const managed = await resolveSidecar(
      launch({ pythonPath: "/no/such/python", pipPackage: "some-req" }),
      vscode.Uri.file(storage),
      log,
      no,
    );
    assert.equal(managed.source, "managed venv");
    assert.equal(asked.length, 2, "not asked again");
    assert.match(ui.shown[shown]?.message ?? "", /pythonPath cannot be used.*Using the extension's own environment/);
  } finally {
    fs.rmSync(storage, { recursive: true, force: true });
  }
});

test("slash commands: the action's question with the user's words after it; others are sent as typed", () => {
  const fix = parseSlash("/fix the off-by-one");
  assert.equal(fix?.command.name, "fix");
  assert.match(fix?.prompt ?? "", /^Find the bugs in this code.* the off-by-one$/);
  assert.equal(parseSlash("/explain")?.prompt, SLASH_COMMANDS[0].prompt);
  assert.equal(parseSlash("/new")?.prompt, undefined, "/new is an action of the panel");
  assert.equal(parseSlash("/nope do it"), undefined);
  assert.equal(parseSlash("what does /fix do?"), undefined);
});

test("chat history: New chat keeps the conversation; reopening takes it out of the list", async () => {
  const kept = new Map<string, unknown>();
  const memento = {
    keys: () => [...kept.keys()],
    get: ((k: string, d?: unknown) => (kept.has(k) ? kept.get(k) : d)) as vscode.Memento["get"],
    update: async (k: string, v: unknown) => void kept.set(k, v),
  };
  const store = new ChatStore(memento);
  const conv = (q: string) => ({
    messages: [{ role: "user" as const, content: q }],
    shown: [{ role: "user" as const, text: q, context: [], images: [] }],
  });
  await store.archive({ messages: [], shown: [] });
  assert.equal(store.history().length, 0, "an empty chat is not kept");
  await store.archive(conv("How are passwords hashed?\nsecond line"), 1);
  await store.archive(conv("x".repeat(100)), 2);
  assert.deepEqual(
    store.history().map((c) => c.title),
    [`${"x".repeat(59)}…`, "How are passwords hashed?"],
  );
  const reopened = await store.take(1);
  assert.equal(reopened?.messages[0].content, "How are passwords hashed?\nsecond line");
  assert.equal(store.history().length, 1);
  for (let i = 0; i < MAX_HISTORY + 5; i++) await store.archive(conv(`q${i}`), i);
  assert.equal(store.history().length, MAX_HISTORY);
});

test("a settings event that changes nothing of the launch settings restarts nothing; a real change does", async () => {
  const storage = fs.mkdtempSync(path.join(os.tmpdir(), "mlx-relaunch-"));
  settings.clear();
  settings.set("mlxSidecar.mode", "stdio");
  settings.set("mlxSidecar.serverPath", "/no/such/sidecar"); // cannot be used: asked, declined, failed
  const log = vscode.window.createOutputChannel("t", { log: true }) as vscode.LogOutputChannel;
  const client = new SidecarClient(vscode.Uri.file(storage), log);
  const starts = () => states.filter((s) => s === "starting").length;
  const states: string[] = [];
  client.onDidChangeState((s) => states.push(s));
  try {
    await assert.rejects(client.start(), SidecarNotStarted);
    assert.equal(starts(), 1);
    // VS Code rewriting settings.json: read empty for a moment, then as before
    settings.set("mlxSidecar.serverPath", "");
    void client.onLaunchSettingsEvent(50);
    settings.set("mlxSidecar.serverPath", "/no/such/sidecar");
    await client.onLaunchSettingsEvent(50);
    assert.equal(starts(), 1, "no restart for a flap");
    settings.set("mlxSidecar.serverPath", "/another/missing/sidecar");
    await client.onLaunchSettingsEvent(50);
    assert.equal(starts(), 2, "a changed path starts again");
  } finally {
    await client.stop();
    client.dispose();
    settings.clear();
    fs.rmSync(storage, { recursive: true, force: true });
  }
});
