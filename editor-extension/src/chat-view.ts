// The chat panel: a Webview view in its own activity-bar container. The conversation lives here;
// the webview (media/chat.js) only renders and sends user actions.
import * as vscode from "vscode";
import type { SidecarClient } from "./client";
import { type ChatMessage, type ChatParams, errorCode, METHODS, type ModelEntry, type Source } from "./protocol";
import { applyDelta, assistantMessage, newTurn, replyMeta, type Turn } from "./chat-turn";
import {
  type ContextItem,
  type ImageAttachment,
  IMAGE_TYPES,
  imageProblem,
  userMessageContent,
  VISION_QUERY,
  visionProblem,
} from "./chat-content";
import { chatHtml } from "./chat-html";
import { activeFileContext, documentContext, insertAtCursor, openInNewFile, selectionContext } from "./chat-editor";
import { openSource, sourceLinks } from "./chat-sources";
import type { ChatStore, ShownTurn } from "./chat-store";
import { composerSuggestions, parseSlash } from "./chat-commands";
import { setModelForRole, sidecarOptions } from "./settings";
import { ago } from "./workspace-index";
import { inform, inStatusBar } from "./notify";

export { userContent, visionProblem } from "./chat-content";
export { replyMeta } from "./chat-turn";
export { languageId } from "./chat-commands";

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
  | { type: "copy"; code: string }
  | { type: "newFile"; code: string; language?: string }
  | { type: "attachImage"; name: string; dataUrl: string }
  | { type: "pickImage" }
  | { type: "removeImage"; index: number }
  | { type: "openSource"; source: Source }
  | { type: "switchModel"; model?: string }
  | { type: "downloadModel"; query?: string }
  | { type: "regenerate" }
  | { type: "history" }
  | { type: "suggest"; query: string }
  | { type: "addPath"; path: string };

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
      vscode.workspace.onDidChangeConfiguration((e) => {
        if (e.affectsConfiguration("mlxSidecar.chatModel")) void this.sendModels();
      }),
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
    view.webview.html = chatHtml(view.webview, media, bundles);
    view.webview.onDidReceiveMessage((m: FromWebview) => void this.onMessage(m), undefined, this.disposables);
    view.onDidDispose(() => {
      this.view = undefined;
    });
  }

  private post(message: unknown): void {
    void this.view?.webview.postMessage(message);
  }

  private async sendModels(): Promise<void> {
    if (!this.view || this.sidecar.state !== "running") return;
    try {
      const list = await this.sidecar.request(METHODS.list, {});
      const local = list.models.filter((m) => m.kind !== "embedding");
      const current = this.chosen() ?? local.find((m) => m.roles.includes("chat"))?.id ?? "";
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
        // A remote model ("UPSTREAM/MODEL") is named by each request; the chat role (the
        // setting) is the sidecar's local model, which it checks and would warn about.
        if (this.models.some((x) => x.id === m.model)) await setModelForRole("chat", m.model);
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
        await insertAtCursor(m.code);
        break;
      case "copy":
        await vscode.env.clipboard.writeText(m.code);
        break;
      case "newFile":
        await openInNewFile(m.code, m.language);
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
      case "regenerate":
        await this.regenerate();
        break;
      case "history":
        await this.showHistory();
        break;
      case "suggest":
        await this.suggest(m.query);
        break;
      case "addPath":
        await this.addPath(m.path);
        break;
      case "downloadModel":
        // then selected for chat: the panel goes on with the downloaded model
        await vscode.commands.executeCommand("mlxSidecar.downloadModel", { query: m.query, selectFor: "chat" });
        break;
    }
  }

  newChat(): void {
    this.current?.cts.cancel();
    void this.store?.archive({ messages: this.messages, shown: this.shown });
    this.messages = [];
    this.shown = [];
    this.context = [];
    this.images = [];
    void this.store?.clear();
    this.post({ type: "cleared" });
  }

  /** "History": the past conversations of this workspace; the one picked becomes the current
   * one (the current one goes to the history). */
  async showHistory(): Promise<void> {
    const past = this.store?.history() ?? [];
    if (!past.length) {
      void vscode.window.showInformationMessage("MLX: no earlier conversations in this workspace yet.");
      return;
    }
    const picked = await vscode.window.showQuickPick(
      past.map((c, index) => ({
        index,
        label: c.title,
        description: `${c.shown.length} turns · ${ago(Date.now() - c.at)}`,
      })),
      { title: "MLX: Chat history", placeHolder: "Reopen a conversation" },
    );
    if (!picked || !this.store || this.current) return;
    const chosen = await this.store.take(picked.index);
    if (!chosen) return;
    await this.store.archive({ messages: this.messages, shown: this.shown });
    this.messages = chosen.messages;
    this.shown = chosen.shown;
    this.persist();
    this.post({ type: "cleared" });
    this.post({ type: "restore", shown: this.shown.map((t) => this.forWebview(t)), context: [] });
  }

  /** Completions for the composer (chat-commands.ts), for what is typed now. */
  private async suggest(query: string): Promise<void> {
    this.post({ type: "suggestions", query, items: await composerSuggestions(query) });
  }

  /** "@file" picked in the composer: the file becomes context, like "+ file". */
  private async addPath(fsPath: string): Promise<void> {
    this.context.push(documentContext(await vscode.workspace.openTextDocument(vscode.Uri.file(fsPath))));
    this.postContext();
  }

  private pick(model: string): void {
    this.picked = { model, over: sidecarOptions().models.chat };
  }

  /** The model picked here (until the setting changes), else the setting's; undefined: neither. */
  private chosen(): string | undefined {
    if (this.picked && sidecarOptions().models.chat !== this.picked.over) this.picked = undefined;
    return this.picked?.model ?? sidecarOptions().models.chat ?? undefined;
  }

  /** The model requests go to: the one picked here, else the setting, else the sidecar's. */
  private chatModel(): string {
    return this.chosen() ?? this.currentModel;
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
      await inStatusBar(`MLX: loading ${model} for chat`, () =>
        this.sidecar.request(METHODS.select, { role: "chat", model }),
      );
      this.pick(model);
      await setModelForRole("chat", model);
      this.currentModel = model;
      await this.sendModels();
      void inform(`model:chat:${model}`, `MLX: chat model is now ${model}.`);
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
    const item = selectionContext();
    if (!item) {
      void vscode.window.showInformationMessage("MLX: select some code in an editor first.");
      return;
    }
    this.context.push(item);
    this.postContext();
    void this.reveal();
  }

  addFile(): void {
    const editor = vscode.window.activeTextEditor;
    if (!editor) {
      void vscode.window.showInformationMessage("MLX: open a file first.");
      return;
    }
    this.context.push(documentContext(editor.document));
    this.postContext();
    void this.reveal();
  }

  private async reveal(): Promise<void> {
    if (!this.view) await vscode.commands.executeCommand(`${ChatViewProvider.viewId}.focus`);
    else this.view.show(true);
  }

  private async send(typed: string): Promise<void> {
    if ((!typed.trim() && !this.images.length) || this.current) return;
    let text = typed;
    const slash = parseSlash(typed);
    if (slash && !slash.prompt) {
      this.newChat(); // "/new"
      return;
    }
    if (slash?.prompt) {
      // The code comes from the editor unless some is attached already.
      if (!this.context.length) {
        const code = selectionContext() ?? activeFileContext();
        if (!code) {
          this.post({
            type: "error",
            message: `/${slash.command.name} works on code: open a file (and select the part to ${slash.command.name === "explain" ? "explain" : "work on"}).`,
          });
          return;
        }
        this.context.push(code);
      }
      text = slash.prompt;
    }
    const chatModel = this.chatModel();
    const blocked = this.images.length ? visionProblem(chatModel, this.models) : undefined;
    if (blocked) {
      // The images stay attached: one click switches the model, then Send again.
      this.post({ type: "needsVision", message: blocked.message, model: blocked.vision, text, query: VISION_QUERY });
      return;
    }
    const content = userMessageContent(text, this.context, this.images);
    this.messages.push({ role: "user", content });
    const shownUser: ShownTurn = {
      role: "user",
      text: typed,
      context: this.context.map((c) => c.label),
      images: this.images.map((i) => i.name),
    };
    this.shown.push(shownUser);
    this.post({ ...shownUser, type: "user", imageUrls: this.images.map((i) => i.dataUrl) });
    this.context = [];
    this.images = [];
    this.postContext();
    this.postImages();
    await this.reply(typed, true);
  }

  /** Asks the model again for the last answer: that answer is dropped, the question stays. */
  async regenerate(): Promise<void> {
    if (this.current || this.shown[this.shown.length - 1]?.role !== "assistant") return;
    this.shown.pop();
    while (this.messages.length && this.messages[this.messages.length - 1].role !== "user") this.messages.pop();
    if (!this.messages.length) return;
    this.post({ type: "dropLastReply" });
    await this.reply("", false);
  }

  /** Streams the model's answer to `this.messages` into a new assistant turn. */
  private async reply(text: string, newUserTurn: boolean): Promise<void> {
    const token = `chat-${Date.now()}-${++this.seq}`;
    const cts = new vscode.CancellationTokenSource();
    this.current = { token, cts, turn: newTurn() };
    this.post({ type: "start" });
    const opts = sidecarOptions().chat;
    try {
      const result = await this.sidecar.request(
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
        if (newUserTurn) {
          // the question goes too: sent again, it is asked again
          this.messages.pop();
          this.shown.pop();
        }
        const message = e instanceof Error ? e.message : String(e);
        const vision =
          errorCode(e) === "images_not_supported" ? this.models.find((m) => m.kind === "vision") : undefined;
        if (vision) this.post({ type: "needsVision", message, model: vision.id, text, query: VISION_QUERY });
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
