// Unit tests of the extension's plain logic (no sidecar needed).
import assert from "node:assert/strict";
import { test } from "node:test";
import { backoffMs } from "../../src/client";
import { applyDelta, assistantMessage, newTurn } from "../../src/chat-turn";
import { userContent } from "../../src/chat-view";
import { DOWNLOAD_ITEM_ID, hubItem, modelItem, pickerItems } from "../../src/commands";
import { errorCode, formatBytes } from "../../src/protocol";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as vscode from "vscode";
import { runtimeDir } from "../../src/daemon";
import { commandFromSettings, daemonArgs, ensureManagedVenv, findOnPath } from "../../src/sidecar-path";
import { servedText, summarize } from "../../src/status-bar";
import { nameProblem, urlProblem } from "../../src/upstreams";

const launch = {
  mode: "stdio" as const,
  serverPath: "",
  pythonPath: "",
  pipPackage: "mlx-sidecar",
  modelsDir: "",
  httpPort: 0,
  logLevel: "INFO",
};

test("serverPath wins over pythonPath; pythonPath runs the module", () => {
  assert.deepEqual(commandFromSettings({ ...launch, serverPath: "/opt/mlx-sidecar", pythonPath: "/usr/bin/python3" }), {
    command: "/opt/mlx-sidecar",
    args: ["--log-level", "info", "stdio"],
    source: "serverPath",
  });
  assert.deepEqual(commandFromSettings({ ...launch, pythonPath: "/venv/bin/python", httpPort: 8080 }), {
    command: "/venv/bin/python",
    args: ["-m", "sidecar", "--log-level", "info", "stdio", "--http-port", "8080"],
    source: "pythonPath",
  });
  assert.equal(commandFromSettings(launch), undefined);
  assert.deepEqual(commandFromSettings({ ...launch, serverPath: "/s", logLevel: "DEBUG" })?.args, [
    "--log-level",
    "debug",
    "stdio",
  ]);
});

test("the daemon is the same command with `daemon` for `stdio`; its runtime dir follows the sidecar's rule", () => {
  const cmd = commandFromSettings({ ...launch, pythonPath: "/venv/bin/python", httpPort: 8080 })!;
  assert.deepEqual(
    daemonArgs(cmd),
    cmd.args.map((a) => (a === "stdio" ? "daemon" : a)),
  );
  assert.ok(daemonArgs(cmd).includes("daemon") && !daemonArgs(cmd).includes("stdio"));
  assert.deepEqual(daemonArgs(cmd).slice(-2), ["--http-port", "8080"]);
  assert.equal(runtimeDir({ MLX_SIDECAR_DAEMON_RUNTIME_DIR: "/tmp/x" }), "/tmp/x");
  assert.equal(runtimeDir({ XDG_RUNTIME_DIR: "/" }), "/mlx-sidecar");
  assert.equal(runtimeDir({}), path.join(os.homedir(), ".cache", "mlx-sidecar", "run"));
});

test("findOnPath finds executables only on the given PATH", () => {
  assert.equal(findOnPath("sh", "/bin"), "/bin/sh");
  assert.equal(findOnPath("definitely-not-a-command-xyz", "/bin:/usr/bin"), undefined);
});

test("restart backoff doubles and is capped", () => {
  assert.deepEqual([1, 2, 3, 4].map(backoffMs), [1000, 2000, 4000, 8000]);
  assert.equal(backoffMs(20), 30_000);
});

test("attached context goes before the question as fenced blocks", () => {
  const text = userContent("What does it do?", [
    { label: "calc.py:1-2", language: "python", text: "def f():\n    pass" },
  ]);
  assert.equal(text, "calc.py:1-2:\n```python\ndef f():\n    pass\n```\n\nWhat does it do?");
  assert.equal(userContent("hi", []), "hi");
});

test("sizes and list items", () => {
  assert.equal(formatBytes(538_000_000), "538 MB");
  assert.equal(formatBytes(1_500_000_000), "1.5 GB");
  assert.equal(formatBytes(undefined), "");
  const item = modelItem({
    id: "m",
    kind: "text",
    size_bytes: 2_000_000,
    quantization: null,
    loaded: true,
    roles: ["chat"],
  });
  assert.equal(item.description, "text · 2.0 MB · loaded");
  assert.equal(item.detail, "selected for chat");
  assert.equal(
    hubItem({ id: "org/m", kind: "text", size_bytes: 4_000_000_000, downloads: 1200 }).description,
    "4.0 GB · text · 1,200 downloads",
  );
});

test("status bar summary reads the completion model and tokens/s", () => {
  const roles = { completion: "A", chat: "B", embedding: "C" };
  assert.deepEqual(summarize({ roles, recent_tokens_per_s: 9.5 }), { model: "A", roles, tokensPerS: 9.5 });
  assert.deepEqual(summarize({ roles, recent_tokens_per_s: null }), { model: "A", roles, tokensPerS: undefined });
});

test("managed venv: reused when installed; a failed pip install says what to set", { timeout: 120_000 }, async () => {
  const log = vscode.window.createOutputChannel("t") as any;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mlx-venv-"));
  try {
    const bin = path.join(dir, "venv", "bin");
    fs.mkdirSync(bin, { recursive: true });
    fs.writeFileSync(path.join(bin, "mlx-sidecar"), "#!/bin/sh\n", { mode: 0o755 });
    fs.writeFileSync(path.join(dir, "venv", ".mlx-sidecar-installed"), "mlx-sidecar");
    assert.equal(await ensureManagedVenv(vscode.Uri.file(dir), "mlx-sidecar", log), path.join(bin, "mlx-sidecar"));
    fs.rmSync(path.join(dir, "venv"), { recursive: true });
    await assert.rejects(
      ensureManagedVenv(vscode.Uri.file(dir), "/nonexistent/mlx-sidecar", log),
      /pip could not install "\/nonexistent\/mlx-sidecar" \(python -m pip install failed: ERROR: Invalid requirement.*\)\. Set mlxSidecar\.pipPackage .* or mlxSidecar\.pythonPath/s,
    );
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("model pickers list remote models grouped by upstream, after the local ones", () => {
  const local = (id: string, kind: "text" | "embedding") => ({
    id,
    kind,
    size_bytes: 1,
    quantization: null,
    loaded: false,
    roles: [],
  });
  const remote = (upstream: string, model: string) => ({
    id: `${upstream}/${model}`,
    upstream,
    model,
    owned_by: upstream,
    created: 0,
    object: "model" as const,
  });
  const list: any = {
    models: [local("Smol", "text"), local("MiniLM", "embedding")],
    remote: [remote("team", "Qwen3-32B"), remote("team", "Llama-70B"), remote("hosted", "gpt-x")],
  };
  const chat = pickerItems(list, "chat");
  assert.deepEqual(
    chat.map((i) => [i.label, i.kind === vscode.QuickPickItemKind.Separator]),
    [
      ["Smol", false],
      ["team", true],
      ["team/Qwen3-32B", false],
      ["team/Llama-70B", false],
      ["hosted", true],
      ["hosted/gpt-x", false],
      ["$(cloud-download) Download a model…", false],
    ],
  );
  assert.equal(chat.find((i) => i.label === "hosted")?.id, ""); // a separator picks nothing
  assert.deepEqual(
    pickerItems(list, "completion").map((i) => i.id),
    ["Smol", DOWNLOAD_ITEM_ID],
  ); // inline completion stays local
});

test("remote endpoint input checks", () => {
  assert.equal(nameProblem("team"), undefined);
  assert.match(nameProblem("my team") ?? "", /letters/);
  assert.equal(urlProblem("http://cluster:8000/v1"), undefined);
  assert.match(urlProblem("ftp://x") ?? "", /http/);
  assert.match(urlProblem("cluster") ?? "", /URL/);
  assert.equal(servedText({ upstream: null, fallbackReason: null }), "");
  assert.equal(
    servedText({ upstream: "team", fallbackReason: "queue_wait" }),
    "\nLast chat reply from upstream team (fallback: queue wait)",
  );
});

test("chat turn: reasoning, text and tool calls from deltas stay apart; the history keeps the calls", () => {
  const turn = newTurn();
  const call = { id: "call_1", name: "get_time", arguments: '{"zone":"UTC"}' };
  const updates = [
    { stream_token: "t", delta: "", reasoning: "Let me think.", tool_calls: null },
    { stream_token: "t", delta: "Checking.", reasoning: null, tool_calls: null },
    { stream_token: "t", delta: "", reasoning: null, tool_calls: [call] },
  ].flatMap((d) => applyDelta(turn, d));
  assert.deepEqual(updates, [
    { type: "reasoning", delta: "Let me think." },
    { type: "delta", delta: "Checking." },
    { type: "toolCalls", calls: [call] },
  ]);
  assert.deepEqual(turn, { text: "Checking.", reasoning: "Let me think.", toolCalls: [call] });
  assert.deepEqual(assistantMessage({ text: turn.text, tool_calls: turn.toolCalls }), {
    role: "assistant",
    content: "Checking.",
    tool_calls: [{ id: "call_1", type: "function", function: { name: "get_time", arguments: '{"zone":"UTC"}' } }],
  });
  assert.deepEqual(assistantMessage({ text: "Hi.", tool_calls: [] }), { role: "assistant", content: "Hi." });
});

test("errorCode reads the machine code the sidecar puts in a JSON-RPC error's data", () => {
  const rpc = Object.assign(new Error("model 'x' does not take images"), {
    code: -32602,
    data: { code: "images_not_supported" },
  });
  assert.equal(errorCode(rpc), "images_not_supported");
  // the message alone decides nothing: no data, no code
  assert.equal(errorCode(new Error("model 'x' does not take images")), undefined);
  assert.equal(errorCode({ data: { code: 7 } }), undefined);
  assert.equal(errorCode(undefined), undefined);
});
