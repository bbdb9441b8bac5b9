// The chat panel: a Webview view in its own activity-bar container. The webview (media/chat.js)
// only renders and sends user actions; this provider hands them to the conversation
// (chat-session.ts), the model picker (chat-models.ts) and sending (chat-send.ts).
import * as vscode from "vscode";
import type { SidecarClient } from "./client";
import type { ChatMessage, Source } from "./protocol";
import { chatHtml } from "./chat-html";
import { documentContext, insertAtCursor, openInNewFile, selectionContext } from "./chat-editor";
import { openSource } from "./chat-sources";
import type { ChatStore } from "./chat-store";
import { composerSuggestions } from "./chat-commands";
import { ChatModels } from "./chat-models";
import { ChatSender } from "./chat-send";
import { ChatSession } from "./chat-session";
import { webviewOptions } from "./webview";

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
  private readonly session: ChatSession;
  private readonly models: ChatModels;
  private readonly sender: ChatSender;
  private readonly disposables: vscode.Disposable[] = [];

  constructor(
    private readonly extensionUri: vscode.Uri,
    sidecar: SidecarClient,
    store?: ChatStore,
  ) {
    const post = (message: unknown) => this.post(message);
    this.session = new ChatSession(store, post);
    this.models = new ChatModels(sidecar, post, () => this.view !== undefined);
    this.sender = new ChatSender(sidecar, this.session, this.models, post, () => this.newChat());
    const refresh = () => void this.models.refresh();
    this.disposables.push(
      sidecar.onModelsChanged(refresh),
      vscode.workspace.onDidChangeConfiguration((e) => {
        if (e.affectsConfiguration("mlxSidecar.chatModel")) refresh();
      }),
      sidecar.onDidChangeState((s) => {
        if (s === "running") refresh();
      }),
    );
  }

  private post(message: unknown): void {
    void this.view?.webview.postMessage(message);
  }

  /** The history the model is sent (the conversation's). */
  get messages(): ChatMessage[] {
    return this.session.messages;
  }

  resolveWebviewView(view: vscode.WebviewView): void {
    this.view = view;
    view.webview.options = webviewOptions(this.extensionUri);
    view.webview.html = chatHtml(view.webview, this.extensionUri);
    view.webview.onDidReceiveMessage((m: FromWebview) => void this.onMessage(m), undefined, this.disposables);
    view.onDidDispose(() => {
      this.view = undefined;
    });
  }

  private async onMessage(m: FromWebview): Promise<void> {
    switch (m.type) {
      case "ready":
        this.session.restore();
        await this.models.refresh();
        break;
      case "send":
        await this.sender.send(m.text);
        break;
      case "stop":
        this.sender.stop();
        break;
      case "newChat":
        this.newChat();
        break;
      case "pickModel":
        await this.models.choose(m.model);
        break;
      case "addSelection":
        this.addSelection();
        break;
      case "addFile":
        this.addFile();
        break;
      case "removeContext":
        this.session.removeContext(m.index);
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
        await this.session.pickImage();
        break;
      case "removeImage":
        this.session.removeImage(m.index);
        break;
      case "openSource":
        await openSource(m.source);
        break;
      case "switchModel":
        await this.models.switchTo(m.model);
        break;
      case "regenerate":
        await this.regenerate();
        break;
      case "history":
        await this.showHistory();
        break;
      case "suggest":
        // completions for the composer (chat-commands.ts), for what is typed now
        this.post({ type: "suggestions", query: m.query, items: await composerSuggestions(m.query) });
        break;
      case "addPath":
        // "@file" picked in the composer: the file becomes context, like "+ file"
        this.session.addContext(documentContext(await vscode.workspace.openTextDocument(vscode.Uri.file(m.path))));
        break;
      case "downloadModel":
        // then selected for chat: the panel goes on with the downloaded model
        await vscode.commands.executeCommand("mlxSidecar.downloadModel", { query: m.query, selectFor: "chat" });
        break;
    }
  }

  newChat(): void {
    this.sender.stop();
    this.session.clear();
  }

  /** "History": the past conversations of this workspace; the one picked becomes the current
   * one (the current one goes to the history). */
  showHistory(): Promise<void> {
    return this.session.showHistory(() => this.sender.busy);
  }

  attachImage(name: string, dataUrl: string): boolean {
    return this.session.attachImage(name, dataUrl);
  }

  /** Asks the model again for the last answer: that answer is dropped, the question stays. */
  regenerate(): Promise<void> {
    return this.sender.regenerate();
  }

  addSelection(): void {
    const item = selectionContext();
    if (!item) {
      void vscode.window.showInformationMessage("MLX: select some code in an editor first.");
      return;
    }
    this.session.addContext(item);
    void this.reveal();
  }

  addFile(): void {
    const editor = vscode.window.activeTextEditor;
    if (!editor) {
      void vscode.window.showInformationMessage("MLX: open a file first.");
      return;
    }
    this.session.addContext(documentContext(editor.document));
    void this.reveal();
  }

  private async reveal(): Promise<void> {
    if (!this.view) await vscode.commands.executeCommand(`${ChatViewProvider.viewId}.focus`);
    else this.view.show(true);
  }

  dispose(): void {
    this.session.persist();
    this.sender.stop();
    for (const d of this.disposables) d.dispose();
  }
}
