// The chat panel: a Webview view in its own activity-bar container. The conversation lives here;
// the webview (media/chat.js) only renders and sends user actions.
import * as vscode from "vscode";
import type { SidecarClient } from "./client";
import {
  type ChatMessage,
  type ChatParams,
  type ChatResult,
  METHODS,
  type ModelEntry,
  type ModelList,
  type Source,
} from "./protocol";
import { applyDelta, assistantMessage, newTurn, type Turn } from "./chat-turn";
import { type ContextItem, type ImageAttachment, IMAGE_TYPES, imageProblem, userMessageContent } from "./chat-content";
import { openSource, sourceLinks } from "./chat-sources";
import type { ChatStore, ShownTurn } from "./chat-store";
import { setModelForRole, sidecarOptions } from "./settings";

export { userContent } from "./chat-content";

type FromWebview =
  | { type: "ready" }
  | { type: "send"; text: string }
  | { type: "stop" }
  | { type: "newChat" }
  | { type: "pickModel"; model: string }
  | { type: "addSelection" }
  | { type: "addFile" }
  | { type: "removeContext"; index: number }
  | { type: "insert"; code: string }
  | { type: "attachImage"; name: string; dataUrl: string }
  | { type: "pickImage" }
  | { type: "removeImage"; index: number }
  | { type: "openSource"; source: Source }
  | { type: "switchModel"; model?: string };

/** The chat model a request goes to, and whether it takes images; undefined: not known. */
export function visionProblem(model: string, models: ModelEntry[]): { message: string; vision?: string } | undefined {
  const entry = models.find((m) => m.id === model);
  if (!entry || entry.kind === "vision") return undefined;
  const vision = models.find((m) => m.kind === "vision")?.id;
  return {
    message: `${model} is a text-only model and cannot see images. ${
      vision ? `Switch to ${vision} (a vision model) to send them.` : "Download a vision model to send them."
    }`,
    vision,
  };
}

export class ChatViewProvider implements vscode.WebviewViewProvider, vscode.Disposable {
  static readonly viewId = "mlxSidecar.chat";
  private view: vscode.WebviewView | undefined;
  private messages: ChatMessage[] = [];
  private shown: ShownTurn[] = [];
  private context: ContextItem[] = [];
  private images: ImageAttachment[] = [];
  private models: ModelEntry[] = [];
  private currentModel = "";
  /** The model this panel switched to, until the setting says so or changes to another: a
   * settings write lands some time after it resolves, and the next Send must not miss it. */
  private picked: { model: string; over: string | null } | undefined;
  private current: { token: string; cts: vscode.CancellationTokenSource; turn: Turn } | undefined;
  private seq = 0;
  private readonly disposables: vscode.Disposable[] = [];

  constructor(
    private readonly extensionUri: vscode.Uri,
    private readonly sidecar: SidecarClient,
    private readonly store?: ChatStore,
  ) {
    const saved = store?.load();
    if (saved) ({ messages: this.messages, shown: this.shown } = saved);
    this.disposables.push(
      sidecar.onChatDelta((d) => {
        if (this.current && d.stream_token === this.current.token) {
          for (const update of applyDelta(this.current.turn, d)) this.post(update);
        }
      }),
      sidecar.onModelsChanged(() => void this.sendModels()),
      sidecar.onDidChangeState((s) => {
        if (s === "running") void this.sendModels();
      }),
    );
  }

  resolveWebviewView(view: vscode.WebviewView): void {
    this.view = view;
    const media = vscode.Uri.joinPath(this.extensionUri, "media");
    const bundles = vscode.Uri.joinPath(this.extensionUri, "dist", "webview");
    view.webview.options = { enableScripts: true, localResourceRoots: [media, bundles] };
    view.webview.html = this.html(view.webview, media, bundles);
    view.webview.onDidReceiveMessage((m: FromWebview) => void this.onMessage(m), undefined, this.disposables);
    view.onDidDispose(() => {
      this.view = undefined;
    });
  }

  private html(webview: vscode.Webview, media: vscode.Uri, bundles: vscode.Uri): string {
    const nonce = Array.from({ length: 32 }, () => Math.floor(Math.random() * 36).toString(36)).join("");
    // media/chat.js with markdown-it, DOMPurify and highlight.js, bundled by esbuild.mjs
    const script = webview.asWebviewUri(vscode.Uri.joinPath(bundles, "chat.js"));
    const style = webview.asWebviewUri(vscode.Uri.joinPath(media, "chat.css"));
    const csp = [
      "default-src 'none'",
      `style-src ${webview.cspSource}`,
      `script-src 'nonce-${nonce}'`,
      `img-src ${webview.cspSource} data:`,
      `font-src ${webview.cspSource}`,
    ].join("; ");
    return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="UTF-8">
<meta http-equiv="Content-Security-Policy" content="${csp}">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<link href="${style}" rel="stylesheet">
<title>MLX Chat</title>
</head>
<body>
<div id="toolbar">
  <select id="model" title="Chat model" aria-label="Chat model"></select>
  <button id="new" title="New chat" aria-label="New chat">New</button>
</div>
<div id="messages" role="log" aria-live="polite">
  <div id="empty" class="hint">Ask about your code. Attach the selection or the current file for context.<br>Runs locally on the MLX sidecar.</div>
</div>
<div id="context"></div>
<div id="composer">
  <div id="attach">
    <button id="addSelection" class="link" title="Add the editor selection as context">+ selection</button>
    <button id="addFile" class="link" title="Add the current file as context">+ file</button>
    <button id="addImage" class="link" title="Attach a PNG or JPEG image (or paste / drop one)">+ image</button>
  </div>
  <div id="images"></div>
  <textarea id="input" rows="3" placeholder="Ask MLX… (@workspace searches the project; paste or drop images; Enter to send)" aria-label="Message"></textarea>
  <div id="actions">
    <button id="send">Send</button>
    <button id="stop" hidden>Stop</button>
  </div>
</div>
<script nonce="${nonce}" src="${script}"></script>
</body>
</html>`;
  }

  private post(message: unknown): void {
    void this.view?.webview.postMessage(message);
  }

  private async sendModels(): Promise<void> {
    if (!this.view || this.sidecar.state !== "running") return;
    try {
      const list = await this.sidecar.request<ModelList>(METHODS.list, {});
      const local = list.models.filter((m) => m.kind !== "embedding");
      const current =
        this.picked?.model ?? sidecarOptions().models.chat ?? local.find((m) => m.roles.includes("chat"))?.id ?? "";
      this.models = local;
      this.currentModel = current;
      // Remote models ("UPSTREAM/MODEL") after the local ones, grouped by upstream.
      const remote = (list.remote ?? []).map((m) => m.id);
      this.post({ type: "models", models: [...local.map((m) => m.id), ...remote], current });
    } catch {
      // the picker keeps what it had
    }
  }

  private async onMessage(m: FromWebview): Promise<void> {
    switch (m.type) {
      case "ready":
        this.post({
          type: "restore",
          shown: this.shown.map((t) => this.forWebview(t)),
          context: this.context.map((c) => c.label),
        });
        this.postImages();
        await this.sendModels();
        break;
      case "send":
        await this.send(m.text);
        break;
      case "stop":
        this.current?.cts.cancel();
        break;
      case "newChat":
        this.newChat();
        break;
      case "pickModel":
        this.pick(m.model);
        await setModelForRole("chat", m.model);
        break;
      case "addSelection":
        this.addSelection();
        break;
      case "addFile":
        this.addFile();
        break;
      case "removeContext":
        this.context.splice(m.index, 1);
        this.postContext();
        break;
      case "insert":
        await this.insertAtCursor(m.code);
        break;
      case "attachImage":
        this.attachImage(m.name, m.dataUrl);
        break;
      case "pickImage":
        await this.pickImage();
        break;
      case "removeImage":
        this.images.splice(m.index, 1);
        this.postImages();
        break;
      case "openSource":
        await openSource(m.source);
        break;
      case "switchModel":
        await this.switchModel(m.model);
        break;
    }
  }

  newChat(): void {
    this.current?.cts.cancel();
    this.messages = [];
    this.shown = [];
    this.context = [];
    this.images = [];
    void this.store?.clear();
    this.post({ type: "cleared" });
  }

  private pick(model: string): void {
    this.picked = { model, over: sidecarOptions().models.chat };
  }

  /** The model requests go to: the one picked here, else the setting, else the sidecar's. */
  private chatModel(): string {
    if (this.picked && sidecarOptions().models.chat !== this.picked.over) this.picked = undefined;
    return this.picked?.model ?? sidecarOptions().models.chat ?? this.currentModel;
  }

  /** An assistant turn with its sources as links for the webview. */
  private forWebview(t: ShownTurn): unknown {
    return t.role === "assistant" ? { ...t, sources: sourceLinks(t.sources ?? []) } : t;
  }

  private persist(): void {
    void this.store?.save({ messages: this.messages, shown: this.shown });
  }

  attachImage(name: string, dataUrl: string): boolean {
    const problem = imageProblem(name, dataUrl);
    if (problem) {
      void vscode.window.showWarningMessage(`MLX: ${problem}`);
      return false;
    }
    this.images.push({ name, dataUrl });
    this.postImages();
    return true;
  }

  private postImages(): void {
    this.post({ type: "images", items: this.images });
  }

  private async pickImage(): Promise<void> {
    const picked = await vscode.window.showOpenDialog({
      canSelectMany: true,
      filters: { Images: ["png", "jpg", "jpeg"] },
      title: "Attach images to the chat",
    });
    for (const uri of picked ?? []) {
      const bytes = await vscode.workspace.fs.readFile(uri);
      const name = uri.path.split("/").pop() ?? "image";
      const type = /\.png$/i.test(name) ? IMAGE_TYPES[0] : IMAGE_TYPES[1];
      this.attachImage(name, `data:${type};base64,${Buffer.from(bytes).toString("base64")}`);
    }
  }

  /** One click from "this model cannot see images": select the vision model (or pick one). */
  private async switchModel(model?: string): Promise<void> {
    if (!model) {
      await vscode.commands.executeCommand("mlxSidecar.switchModel", "chat");
      return;
    }
    try {
      await this.sidecar.request(METHODS.select, { role: "chat", model });
      this.pick(model);
      await setModelForRole("chat", model);
      this.currentModel = model;
      await this.sendModels();
      vscode.window.setStatusBarMessage(`MLX: chat model is now ${model}`, 5000);
    } catch (e) {
      this.post({
        type: "error",
        message: `Could not switch to ${model}: ${e instanceof Error ? e.message : String(e)}`,
      });
    }
  }

  private postContext(): void {
    this.post({ type: "context", items: this.context.map((c) => c.label) });
  }

  addSelection(): void {
    const editor = vscode.window.activeTextEditor;
    if (!editor || editor.selection.isEmpty) {
      void vscode.window.showInformationMessage("MLX: select some code in an editor first.");
      return;
    }
    const s = editor.selection;
    const name = vscode.workspace.asRelativePath(editor.document.uri);
    this.context.push({
      label: `${name}:${s.start.line + 1}-${s.end.line + 1}`,
      language: editor.document.languageId,
      text: editor.document.getText(s),
    });
    this.postContext();
    void this.reveal();
  }

  addFile(): void {
    const editor = vscode.window.activeTextEditor;
    if (!editor) {
      void vscode.window.showInformationMessage("MLX: open a file first.");
      return;
    }
    this.context.push({
      label: vscode.workspace.asRelativePath(editor.document.uri),
      language: editor.document.languageId,
      text: editor.document.getText(),
    });
    this.postContext();
    void this.reveal();
  }

  private async reveal(): Promise<void> {
    if (!this.view) await vscode.commands.executeCommand(`${ChatViewProvider.viewId}.focus`);
    else this.view.show(true);
  }

  private async insertAtCursor(code: string): Promise<void> {
    const editor =
      vscode.window.visibleTextEditors.find((e) => e === vscode.window.activeTextEditor) ??
      vscode.window.visibleTextEditors[0];
    if (!editor) {
      void vscode.window.showInformationMessage("MLX: open an editor to insert the code into.");
      return;
    }
    await editor.edit((b) => {
      for (const sel of editor.selections) b.replace(sel, code);
    });
  }

  private async send(text: string): Promise<void> {
    if ((!text.trim() && !this.images.length) || this.current) return;
    const chatModel = this.chatModel();
    const blocked = this.images.length ? visionProblem(chatModel, this.models) : undefined;
    if (blocked) {
      // The images stay attached: one click switches the model, then Send again.
      this.post({ type: "needsVision", message: blocked.message, model: blocked.vision, text });
      return;
    }
    const content = userMessageContent(text, this.context, this.images);
    this.messages.push({ role: "user", content });
    const shownUser: ShownTurn = {
      role: "user",
      text,
      context: this.context.map((c) => c.label),
      images: this.images.map((i) => i.name),
    };
    this.shown.push(shownUser);
    this.post({ ...shownUser, type: "user", imageUrls: this.images.map((i) => i.dataUrl) });
    this.context = [];
    this.images = [];
    this.postContext();
    this.postImages();
    const token = `chat-${Date.now()}-${++this.seq}`;
    const cts = new vscode.CancellationTokenSource();
    this.current = { token, cts, turn: newTurn() };
    this.post({ type: "start" });
    const opts = sidecarOptions().chat;
    try {
      const result = await this.sidecar.request<ChatResult>(
        METHODS.chat,
        {
          messages: this.messages,
          ...(this.picked || sidecarOptions().models.chat ? { model: this.chatModel() } : {}),
          max_tokens: opts.maxTokens,
          temperature: opts.temperature,
          stream_token: token,
        } satisfies ChatParams,
        cts.token,
      );
      this.sidecar.noteReply(result.served_by, result.fallback_reason);
      this.messages.push(assistantMessage(result));
      const meta = replyMeta(result.finish_reason, result.usage?.completion_tokens, result.model);
      const shown: ShownTurn = {
        role: "assistant",
        text: result.text,
        reasoning: result.reasoning,
        tool_calls: result.tool_calls,
        sources: result.sources ?? [],
        meta,
      };
      this.shown.push(shown);
      const { finish_reason, usage, model } = result;
      this.post({ ...(this.forWebview(shown) as object), type: "done", finish_reason, usage, model });
    } catch (e) {
      const partial = this.current?.turn ?? newTurn();
      if (cts.token.isCancellationRequested) {
        const reply = { text: partial.text, tool_calls: partial.toolCalls };
        if (partial.text || partial.toolCalls.length) this.messages.push(assistantMessage(reply));
        const shown: ShownTurn = {
          role: "assistant",
          text: partial.text,
          reasoning: partial.reasoning,
          tool_calls: partial.toolCalls,
          meta: replyMeta("cancelled"),
        };
        this.shown.push(shown);
        this.post({ ...shown, type: "done", finish_reason: "cancelled" });
      } else {
        this.messages.pop();
        this.shown.pop();
        const message = e instanceof Error ? e.message : String(e);
        const vision = /does not take images/.test(message) ? this.models.find((m) => m.kind === "vision") : undefined;
        if (vision) this.post({ type: "needsVision", message, model: vision.id, text });
        else this.post({ type: "error", message });
      }
    } finally {
      cts.dispose();
      this.current = undefined;
      this.persist();
    }
  }

  dispose(): void {
    this.persist();
    this.current?.cts.cancel();
    for (const d of this.disposables) d.dispose();
  }
}

/** The line under a reply: why it stopped, its length, the model. */
export function replyMeta(finish: string, tokens?: number, model?: string | null): string {
  const bits: string[] = [];
  if (finish === "cancelled") bits.push("stopped");
  else if (finish === "length") bits.push("stopped at the token limit");
  else if (finish === "tool_calls") bits.push("asked to run tools (not run here)");
  if (tokens !== undefined) bits.push(`${tokens} tokens`);
  if (model) bits.push(model);
  return bits.join(" · ");
}
