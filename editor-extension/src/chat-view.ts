// The chat panel: a Webview view in its own activity-bar container. The conversation lives here;
// the webview (media/chat.js) only renders and sends user actions.
import * as vscode from "vscode";
import type { SidecarClient } from "./client";
import { type ChatMessage, type ChatParams, type ChatResult, METHODS, type ModelList } from "./protocol";
import { applyDelta, assistantMessage, newTurn, type Turn } from "./chat-turn";
import { setModelForRole, sidecarOptions } from "./settings";

interface ContextItem {
  label: string;
  language: string;
  text: string;
}

type FromWebview =
  | { type: "ready" }
  | { type: "send"; text: string }
  | { type: "stop" }
  | { type: "newChat" }
  | { type: "pickModel"; model: string }
  | { type: "addSelection" }
  | { type: "addFile" }
  | { type: "removeContext"; index: number }
  | { type: "insert"; code: string };

/** The user turn sent to the model: attached context as fenced blocks, then the question. */
export function userContent(text: string, context: ContextItem[]): string {
  const blocks = context.map((c) => `${c.label}:\n\`\`\`${c.language}\n${c.text}\n\`\`\``);
  return [...blocks, text].join("\n\n");
}

export class ChatViewProvider implements vscode.WebviewViewProvider, vscode.Disposable {
  static readonly viewId = "mlxSidecar.chat";
  private view: vscode.WebviewView | undefined;
  private messages: ChatMessage[] = [];
  private context: ContextItem[] = [];
  private current: { token: string; cts: vscode.CancellationTokenSource; turn: Turn } | undefined;
  private seq = 0;
  private readonly disposables: vscode.Disposable[] = [];

  constructor(
    private readonly extensionUri: vscode.Uri,
    private readonly sidecar: SidecarClient,
  ) {
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
    view.webview.options = { enableScripts: true, localResourceRoots: [media] };
    view.webview.html = this.html(view.webview, media);
    view.webview.onDidReceiveMessage((m: FromWebview) => void this.onMessage(m), undefined, this.disposables);
    view.onDidDispose(() => {
      this.view = undefined;
    });
  }

  private html(webview: vscode.Webview, media: vscode.Uri): string {
    const nonce = Array.from({ length: 32 }, () => Math.floor(Math.random() * 36).toString(36)).join("");
    const script = webview.asWebviewUri(vscode.Uri.joinPath(media, "chat.js"));
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
  </div>
  <textarea id="input" rows="3" placeholder="Ask MLX… (Enter to send, Shift+Enter for a new line)" aria-label="Message"></textarea>
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
      const current = sidecarOptions().models.chat ?? local.find((m) => m.roles.includes("chat"))?.id ?? "";
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
        this.post({ type: "restore", messages: this.messages, context: this.context.map((c) => c.label) });
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
    }
  }

  newChat(): void {
    this.current?.cts.cancel();
    this.messages = [];
    this.context = [];
    this.post({ type: "cleared" });
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
    if (!text.trim() || this.current) return;
    const content = userContent(text, this.context);
    this.messages.push({ role: "user", content });
    this.post({ type: "user", text, context: this.context.map((c) => c.label) });
    this.context = [];
    this.postContext();
    const token = `chat-${Date.now()}-${++this.seq}`;
    const cts = new vscode.CancellationTokenSource();
    this.current = { token, cts, turn: newTurn() };
    this.post({ type: "start" });
    const opts = sidecarOptions().chat;
    const chatModel = sidecarOptions().models.chat;
    try {
      const result = await this.sidecar.request<ChatResult>(
        METHODS.chat,
        {
          messages: this.messages,
          ...(chatModel ? { model: chatModel } : {}),
          max_tokens: opts.maxTokens,
          temperature: opts.temperature,
          stream_token: token,
        } satisfies ChatParams,
        cts.token,
      );
      this.messages.push({ role: "assistant", content: result.text });
      this.sidecar.noteReply(result.served_by, result.fallback_reason);
      this.messages.push(assistantMessage(result));
      this.post({
        type: "done",
        text: result.text,
        reasoning: result.reasoning,
        tool_calls: result.tool_calls,
        finish_reason: result.finish_reason,
        model: result.model,
        usage: result.usage,
      });
    } catch (e) {
      const partial = this.current?.turn ?? newTurn();
      if (cts.token.isCancellationRequested) {
        const reply = { text: partial.text, tool_calls: partial.toolCalls };
        if (partial.text || partial.toolCalls.length) this.messages.push(assistantMessage(reply));
        this.post({
          type: "done",
          text: partial.text,
          reasoning: partial.reasoning,
          tool_calls: partial.toolCalls,
          finish_reason: "cancelled",
        });
      } else {
        this.messages.pop();
        this.post({ type: "error", message: e instanceof Error ? e.message : String(e) });
      }
    } finally {
      cts.dispose();
      this.current = undefined;
    }
  }

  dispose(): void {
    this.current?.cts.cancel();
    for (const d of this.disposables) d.dispose();
  }
}
