// The chat panel and VS Code's chat stream through one helper (chat-stream.ts); here against a
// fake sidecar: deltas and the result reach the panel, Stop keeps what came, a sidecar that says
// "images not supported" gets the vision model's actions, VS Code's chat gets the text once.
import assert from "node:assert/strict";
import { test } from "node:test";
import * as vscode from "vscode";
import { ChatViewProvider } from "../../src/chat-view";
import { LocalChatProvider } from "../../src/lm-provider";
import type { ChatDelta, ModelEntry } from "../../src/protocol";

const entry = (id: string, kind: ModelEntry["kind"]): Partial<ModelEntry> => ({ id, kind, roles: [] });

/** A running sidecar whose `mlx/chat` streams `deltas` then answers `text` (or fails, or waits
 * for its token). */
function fakeSidecar(reply: { deltas: string[]; text?: string; error?: unknown; hang?: boolean }) {
  const deltas = new vscode.EventEmitter<ChatDelta>();
  const none = new vscode.EventEmitter<any>();
  const sent: any[] = [];
  const sidecar: any = {
    state: "running",
    onChatDelta: deltas.event,
    onModelsChanged: none.event,
    onDidChangeState: none.event,
    noteReply: () => undefined,
    request: async (method: string, params: any, token?: vscode.CancellationToken) => {
      if (method === "mlx/models/list") return { models: [entry("SmolLM2", "text")], remote: [] };
      sent.push(params);
      for (const d of reply.deltas) deltas.fire({ stream_token: params.stream_token, delta: d } as ChatDelta);
      if (reply.hang) {
        await new Promise<void>((resolve) => token!.onCancellationRequested(() => resolve()));
        throw new Error("cancelled");
      }
      if (reply.error) throw reply.error;
      const text = reply.text ?? reply.deltas.join("");
      return { text, tool_calls: [], finish_reason: "stop", model: "SmolLM2", usage: { completion_tokens: 2 } };
    },
  };
  return { sidecar, sent };
}

function open(chat: ChatViewProvider) {
  const posted: any[] = [];
  let receive: (m: any) => void = () => undefined;
  chat.resolveWebviewView({
    webview: {
      options: {},
      html: "",
      cspSource: "vscode-resource:",
      asWebviewUri: (u: vscode.Uri) => u,
      postMessage: async (m: any) => void posted.push(m),
      onDidReceiveMessage: (fn: any) => {
        receive = fn;
        return new vscode.Disposable(() => undefined);
      },
    },
    onDidDispose: () => new vscode.Disposable(() => undefined),
    show: () => undefined,
  } as any);
  return { posted, send: (m: any) => receive(m) };
}

const until = async (what: string, fn: () => unknown) => {
  for (let i = 0; i < 200 && !fn(); i++) await new Promise((r) => setTimeout(r, 5));
  assert.ok(fn(), what);
};

test("the chat panel streams the deltas, then shows the whole reply; the page has one nonce script", async () => {
  const { sidecar, sent } = fakeSidecar({ deltas: ["Hel", "lo"] });
  const chat = new ChatViewProvider(vscode.Uri.file("/ext"), sidecar);
  const { posted, send } = open(chat);
  send({ type: "send", text: "Hi" });
  await until("done", () => posted.some((m) => m.type === "done"));
  assert.deepEqual(
    posted.filter((m) => m.type === "delta").map((m) => m.delta),
    ["Hel", "lo"],
  );
  const done = posted.find((m) => m.type === "done");
  assert.equal(done.text, "Hello");
  assert.equal(sent[0].max_tokens, 512);
  assert.ok(!("model" in sent[0]), "no model chosen: the sidecar's");
  assert.deepEqual(
    chat.messages.map((m) => m.role),
    ["user", "assistant"],
  );
  const html = (chat as any).view.webview.html as string;
  assert.match(html, /script-src 'nonce-(\w+)'[\s\S]*<script nonce="\1"/);
  chat.dispose();
});

test("Stop keeps what came as the answer", async () => {
  const { sidecar } = fakeSidecar({ deltas: ["Par"], hang: true });
  const chat = new ChatViewProvider(vscode.Uri.file("/ext"), sidecar);
  const { posted, send } = open(chat);
  send({ type: "send", text: "Hi" });
  await until("streaming", () => posted.some((m) => m.type === "delta"));
  send({ type: "stop" });
  await until("done", () => posted.some((m) => m.type === "done"));
  const done = posted.find((m) => m.type === "done");
  assert.equal(done.finish_reason, "cancelled");
  assert.equal(done.text, "Par");
  chat.dispose();
});

test("images_not_supported with no vision model installed offers the download; other errors are plain", async () => {
  const error = Object.assign(new Error("model 'SmolLM2' does not take images"), {
    data: { code: "images_not_supported" },
  });
  const { sidecar } = fakeSidecar({ deltas: [], error });
  const chat = new ChatViewProvider(vscode.Uri.file("/ext"), sidecar);
  const { posted, send } = open(chat);
  send({ type: "send", text: "What is this?" });
  await until("failed", () => posted.some((m) => m.type === "needsVision" || m.type === "error"));
  const needs = posted.find((m) => m.type === "needsVision");
  assert.ok(needs, "the vision actions, not a plain error");
  assert.equal(needs.model, undefined, "nothing to switch to");
  assert.equal(needs.query, "qwen2-vl", "Download a vision model… searches for one");
  assert.equal(needs.text, "What is this?");
  assert.ok(!posted.some((m) => m.type === "error"));
  assert.equal(chat.messages.length, 0, "the question goes too: sent again, it is asked again");
  chat.dispose();

  const other = fakeSidecar({ deltas: [], error: new Error("boom") });
  const chat2 = new ChatViewProvider(vscode.Uri.file("/ext"), other.sidecar);
  const view2 = open(chat2);
  view2.send({ type: "send", text: "Hi" });
  await until("failed", () => view2.posted.some((m) => m.type === "error"));
  assert.deepEqual(
    view2.posted.filter((m) => m.type === "error").map((m) => m.message),
    ["boom"],
  );
  chat2.dispose();
});

test("a question whose answer fails gives its images back: Send again sends them", async () => {
  const error = Object.assign(new Error("model 'SmolLM2' does not take images"), {
    data: { code: "images_not_supported" },
  });
  const { sidecar, sent } = fakeSidecar({ deltas: [], error });
  const chat = new ChatViewProvider(vscode.Uri.file("/ext"), sidecar);
  const { posted, send } = open(chat);
  const png = "data:image/png;base64,iVBORw0KGgo=";
  send({ type: "attachImage", name: "shot.png", dataUrl: png });
  send({ type: "send", text: "What is this?" });
  await until("failed", () => posted.some((m) => m.type === "needsVision"));
  const images = posted.filter((m) => m.type === "images");
  assert.deepEqual(
    images[images.length - 1].items.map((i: any) => i.name),
    ["shot.png"],
    "the image is attached again",
  );
  send({ type: "send", text: "What is this?" });
  await until("sent again", () => sent.length === 2);
  const asked = sent[1].messages[sent[1].messages.length - 1];
  assert.equal(sent[1].messages.length, 1, "one question, not the failed one and its copy");
  assert.ok(JSON.stringify(asked.content).includes(png), "the second request carries the image");
  chat.dispose();
});

test("VS Code's chat gets the streamed text, and the rest of the result once", async () => {
  const { sidecar, sent } = fakeSidecar({ deltas: ["Hel"], text: "Hello" });
  const provider = new LocalChatProvider(sidecar);
  const parts: any[] = [];
  await provider.provideLanguageModelChatResponse(
    { id: "SmolLM2" } as any,
    [{ role: 1, content: [new vscode.LanguageModelTextPart("Hi")] }],
    {},
    { report: (p: any) => parts.push(p) },
    new vscode.CancellationTokenSource().token,
  );
  assert.deepEqual(
    parts.map((p) => p.value),
    ["Hel", "lo"],
  );
  assert.equal(sent[0].model, "SmolLM2");
  assert.match(sent[0].stream_token, /^lm-/);
  provider.dispose();
});
