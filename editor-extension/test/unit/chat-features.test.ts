// Unit tests of issue 14's editor logic without a sidecar: image content parts and their
// limits, @workspace source links, the conversation store, the workspace update batch, the
// status charts, and the guard around VS Code's language model API.
import assert from "node:assert/strict";
import { test } from "node:test";
import * as vscode from "vscode";
import { dataUrlBytes, imageProblem, MAX_IMAGE_BYTES, userMessageContent, withoutImages } from "../../src/chat-content";
import { sourceLinks, sourceUri } from "../../src/chat-sources";
import { ChatStore, KEY, MAX_TURNS } from "../../src/chat-store";
import { visionProblem } from "../../src/chat-view";
import { chatInformation, lmApi, registerLocalChatModels, toChatMessages } from "../../src/lm-provider";
import type { ModelEntry, ModelList } from "../../src/protocol";
import { chartPoints, StatusHistory } from "../../src/status-history";
import { indexSummary, PendingUpdate, watched } from "../../src/workspace-index";

const PNG = "data:image/png;base64," + Buffer.from("\x89PNG fake image bytes").toString("base64");

function memento(): vscode.Memento & { kept: Map<string, unknown> } {
  const kept = new Map<string, unknown>();
  return {
    kept,
    keys: () => [...kept.keys()],
    get: ((k: string, d?: unknown) => (kept.has(k) ? kept.get(k) : d)) as vscode.Memento["get"],
    update: async (k: string, v: unknown) => void (v === undefined ? kept.delete(k) : kept.set(k, v)),
  };
}

function entry(id: string, kind: ModelEntry["kind"]): ModelEntry {
  return {
    id,
    object: "model",
    created: 0,
    owned_by: "local",
    kind,
    path: `/models/${id}`,
    source: "store",
    size_bytes: 1,
    quantization: null,
    fim: null,
    loaded: false,
    pinned: false,
    roles: [],
  };
}

test("a turn without images is a plain string; with images, a text part then image_url parts", () => {
  const context = [{ label: "a.py:1-2", language: "python", text: "x = 1" }];
  assert.equal(userMessageContent("why?", context, []), "a.py:1-2:\n```python\nx = 1\n```\n\nwhy?");
  assert.deepEqual(userMessageContent("what is this?", [], [{ name: "shot.png", dataUrl: PNG }]), [
    { type: "text", text: "what is this?" },
    { type: "image_url", image_url: { url: PNG } },
  ]);
});

test("images: PNG and JPEG only, at most MAX_IMAGE_BYTES decoded", () => {
  assert.equal(dataUrlBytes("data:image/png;base64," + Buffer.alloc(101).toString("base64")), 101);
  assert.equal(imageProblem("a.png", PNG), undefined);
  assert.equal(imageProblem("b.jpg", "data:image/jpeg;base64,/9j/"), undefined);
  assert.match(imageProblem("c.gif", "data:image/gif;base64,R0lG") ?? "", /not a PNG or JPEG/);
  const big = "data:image/png;base64," + "A".repeat(Math.ceil(((MAX_IMAGE_BYTES + 3) * 4) / 3));
  assert.match(imageProblem("big.png", big) ?? "", /big\.png is 8\.0 MiB; images of at most 8\.0 MiB/);
});

test("a text-only chat model with images names the vision model to switch to", () => {
  const models = [entry("SmolLM2", "text"), entry("tiny-qwen2-vl", "vision")];
  assert.equal(visionProblem("tiny-qwen2-vl", models), undefined);
  assert.deepEqual(visionProblem("SmolLM2", models), {
    message:
      "SmolLM2 is a text-only model and cannot see images. Switch to tiny-qwen2-vl (a vision model) to send them.",
    vision: "tiny-qwen2-vl",
  });
  assert.match(visionProblem("SmolLM2", [models[0]])?.message ?? "", /Download a vision model/);
});

test("sources: one link per file, ranges merged, opening at the first range", () => {
  const links = sourceLinks([
    { path: "bookshelf/auth.py", start_line: 30, end_line: 40 },
    { path: "bookshelf/db.py", start_line: 1, end_line: 9 },
    { path: "bookshelf/auth.py", start_line: 1, end_line: 12 },
    { path: "bookshelf/auth.py", start_line: 13, end_line: 20 },
  ]);
  assert.deepEqual(links, [
    { label: "bookshelf/auth.py:1-20, 30-40", path: "bookshelf/auth.py", start_line: 1, end_line: 20 },
    { label: "bookshelf/db.py:1-9", path: "bookshelf/db.py", start_line: 1, end_line: 9 },
  ]);
  (vscode.workspace as any).workspaceFolders = [{ uri: vscode.Uri.file("/repo"), name: "repo", index: 0 }];
  try {
    assert.equal(sourceUri({ path: "bookshelf/auth.py" })?.fsPath, "/repo/bookshelf/auth.py");
    assert.equal(sourceUri({ path: "/abs/x.py" })?.fsPath, "/abs/x.py");
  } finally {
    (vscode.workspace as any).workspaceFolders = undefined;
  }
});

test("the conversation store keeps messages and shown turns, without image data", async () => {
  const m = memento();
  const store = new ChatStore(m);
  assert.deepEqual(store.load(), { messages: [], shown: [] });
  await store.save({
    messages: [
      { role: "user", content: userMessageContent("what is this?", [], [{ name: "a.png", dataUrl: PNG }]) },
      { role: "assistant", content: "a cat" },
    ],
    shown: [
      { role: "user", text: "what is this?", context: [], images: ["a.png"] },
      { role: "assistant", text: "a cat", sources: [{ path: "x.py", start_line: 1, end_line: 2 }], meta: "2 tokens" },
    ],
  });
  assert.ok(!JSON.stringify(m.kept.get(KEY)).includes("base64"), "no image bytes in workspace state");
  const again = new ChatStore(m).load();
  assert.deepEqual(again.messages, [
    { role: "user", content: "what is this?\n\n[1 image not kept]" },
    { role: "assistant", content: "a cat" },
  ]);
  assert.equal(again.shown.length, 2);
  assert.deepEqual(withoutImages("plain"), "plain");
  await store.clear();
  assert.deepEqual(store.load(), { messages: [], shown: [] });
  // an unknown layout (another version) is ignored, not half-read
  await m.update(KEY, { version: 99, messages: "x" });
  assert.deepEqual(store.load(), { messages: [], shown: [] });
});

test("a cut history starts at a user turn", async () => {
  const m = memento();
  const messages = Array.from({ length: MAX_TURNS + 1 }, (_, i) => ({
    role: i % 2 ? ("user" as const) : ("assistant" as const),
    content: `${i}`,
  }));
  await new ChatStore(m).save({ messages, shown: [] });
  const kept = new ChatStore(m).load().messages;
  assert.equal(kept[0].role, "user");
  assert.equal(kept[kept.length - 1].content, `${MAX_TURNS}`);
});

test("the store keeps the last MAX_TURNS turns", async () => {
  const m = memento();
  const shown = Array.from({ length: MAX_TURNS + 5 }, (_, i) => ({ role: "assistant" as const, text: `${i}` }));
  await new ChatStore(m).save({ messages: [], shown });
  const kept = new ChatStore(m).load().shown;
  assert.equal(kept.length, MAX_TURNS);
  assert.equal(kept[0].text, "5");
});

test("workspace updates are batched: last word per path, renames kept", () => {
  const u = new PendingUpdate();
  assert.ok(u.empty);
  u.change("/r/a.py");
  u.remove("/r/a.py");
  u.remove("/r/b.py");
  u.change("/r/b.py");
  u.rename("/r/c.py", "/r/d.py");
  assert.deepEqual(u.take(), {
    changed: ["/r/b.py"],
    deleted: ["/r/a.py"],
    renamed: [{ old: "/r/c.py", new: "/r/d.py" }],
  });
  assert.ok(u.empty);
  assert.ok(watched("/r/src/a.py"));
  assert.ok(!watched("/r/.git/index") && !watched("/r/web/node_modules/x/y.js") && !watched("/r/.venv"));
  assert.equal(
    indexSummary({ files: 3, chunks: 9, last_indexed_at: 100 }, 100_000 + 180_000),
    "3 files, 9 chunks, indexed 3 min ago",
  );
});

test("status charts: samples over the window, drawn right to left from now", () => {
  const h = new StatusHistory(60_000);
  const status = (tps: number | null, queue: number) => ({
    recent_tokens_per_s: tps,
    queue_depth: queue,
    running: 1,
    memory: { used_bytes: 5 } as any,
  });
  h.add(status(10, 0), 0);
  h.add(status(null, 3), 30_000);
  h.add(status(20, 1), 60_000);
  assert.deepEqual(
    h.all.map((s) => [s.tokensPerS, s.queue]),
    [
      [10, 0],
      [0, 3],
      [20, 1],
    ],
  );
  h.add(status(5, 0), 90_000); // the first falls out of the 60 s window
  assert.deepEqual(
    h.all.map((s) => s.t),
    [30_000, 60_000, 90_000],
  );
  const pts = chartPoints(
    h.all.map((s) => ({ t: s.t, v: s.tokensPerS })),
    90_000,
    60_000,
    100,
    50,
  );
  assert.equal(pts, "0.0,50.0 50.0,0.0 100.0,37.5"); // 0, the max (20) at the top, 5
});

test("language model provider: registered only where the host has the API", () => {
  assert.equal(lmApi({}), undefined);
  assert.equal(lmApi({ lm: {} }), undefined);
  assert.equal(lmApi({ lm: { selectChatModels: () => [] } }), undefined, "an older host's lm namespace");
  const fakeSidecar: any = {
    log: { warn: () => undefined },
    onModelsChanged: () => undefined,
    onDidChangeState: () => undefined,
  };
  assert.equal(registerLocalChatModels(fakeSidecar, { lm: {} }), undefined, "no API: nothing registered, no error");
  const calls: string[] = [];
  const host = {
    lm: {
      registerLanguageModelChatProvider: (vendor: string) => {
        calls.push(vendor);
        return new vscode.Disposable(() => undefined);
      },
    },
  };
  assert.ok(registerLocalChatModels(fakeSidecar, host));
  assert.deepEqual(calls, ["mlx-sidecar"]);
  const throwing = {
    lm: {
      registerLanguageModelChatProvider: () => {
        throw new Error("no contribution");
      },
    },
  };
  assert.equal(registerLocalChatModels(fakeSidecar, throwing), undefined, "a host that refuses: no crash");
});

test("the picker lists local text and vision models; host messages become mlx/chat messages", () => {
  const list: ModelList = {
    models: [entry("SmolLM2", "text"), entry("MiniLM", "embedding"), entry("vl", "vision")],
    roles: {} as any,
    remote: [],
  };
  const info = chatInformation(list, 64);
  assert.deepEqual(
    info.map((i) => [i.id, i.capabilities.imageInput, i.maxOutputTokens]),
    [
      ["SmolLM2", false, 64],
      ["vl", true, 64],
    ],
  );
  const img = new Uint8Array([1, 2, 3]);
  assert.deepEqual(
    toChatMessages([
      { role: 1, content: [new vscode.LanguageModelTextPart("Hi "), new vscode.LanguageModelTextPart("there")] },
      { role: 2, content: [new vscode.LanguageModelTextPart("Hello")] },
      { role: 1, content: [new vscode.LanguageModelTextPart("and this?"), { mimeType: "image/png", data: img }] },
    ]),
    [
      { role: "user", content: "Hi there" },
      { role: "assistant", content: "Hello" },
      {
        role: "user",
        content: [
          { type: "text", text: "and this?" },
          { type: "image_url", image_url: { url: "data:image/png;base64,AQID" } },
        ],
      },
    ],
  );
});
