// The chat panel's conversation: the history sent to the model, what the panel shows, the code
// and images attached to the next question, kept across restarts (chat-store.ts) and in the
// history of past conversations; each change is posted to the webview.
import * as vscode from "vscode";
import type { ChatMessage, ChatResult } from "./protocol";
import { assistantMessage, replyMeta, type Turn } from "./chat-turn";
import { type ContextItem, type ImageAttachment, IMAGE_TYPES, imageProblem, userMessageContent } from "./chat-content";
import { sourceLinks } from "./chat-sources";
import type { ChatStore, ShownTurn } from "./chat-store";
import { ago } from "./workspace-index";

export class ChatSession {
  messages: ChatMessage[] = [];
  shown: ShownTurn[] = [];
  private context: ContextItem[] = [];
  private images: ImageAttachment[] = [];
  /** What the last question took with it, given back if its answer fails. */
  private asked: { context: ContextItem[]; images: ImageAttachment[] } = { context: [], images: [] };

  constructor(
    private readonly store: ChatStore | undefined,
    private readonly post: (message: unknown) => void,
  ) {
    const saved = store?.load();
    if (saved) ({ messages: this.messages, shown: this.shown } = saved);
  }

  /** What a webview that (re)opens draws: the conversation and the attachments. */
  restore(): void {
    this.post({
      type: "restore",
      shown: this.shown.map((t) => this.forWebview(t)),
      context: this.context.map((c) => c.label),
    });
    this.postImages();
  }

  /** A new conversation; the one before goes to the history. */
  clear(): void {
    void this.store?.archive({ messages: this.messages, shown: this.shown });
    this.messages = [];
    this.shown = [];
    this.context = [];
    this.images = [];
    this.asked = { context: [], images: [] };
    void this.store?.clear();
    this.post({ type: "cleared" });
  }

  /** "History": the past conversations of this workspace; the one picked becomes the current
   * one (the current one goes to the history). Nothing changes while `busy` (a reply streams). */
  async showHistory(busy: () => boolean): Promise<void> {
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
    if (!picked || !this.store || busy()) return;
    const chosen = await this.store.take(picked.index);
    if (!chosen) return;
    await this.store.archive({ messages: this.messages, shown: this.shown });
    this.messages = chosen.messages;
    this.shown = chosen.shown;
    this.persist();
    this.post({ type: "cleared" });
    this.post({ type: "restore", shown: this.shown.map((t) => this.forWebview(t)), context: [] });
  }

  persist(): void {
    void this.store?.save({ messages: this.messages, shown: this.shown });
  }

  /** An assistant turn with its sources as links for the webview. */
  private forWebview(t: ShownTurn): unknown {
    return t.role === "assistant" ? { ...t, sources: sourceLinks(t.sources ?? []) } : t;
  }

  // --- what goes with the next question ---------------------------------------------------

  get hasContext(): boolean {
    return this.context.length > 0;
  }

  get hasImages(): boolean {
    return this.images.length > 0;
  }

  /** `show` false: the chips are drawn when the question goes (a slash command's code). */
  addContext(item: ContextItem, show = true): void {
    this.context.push(item);
    if (show) this.postContext();
  }

  removeContext(index: number): void {
    this.context.splice(index, 1);
    this.postContext();
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

  removeImage(index: number): void {
    this.images.splice(index, 1);
    this.postImages();
  }

  async pickImage(): Promise<void> {
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

  private postContext(): void {
    this.post({ type: "context", items: this.context.map((c) => c.label) });
  }

  private postImages(): void {
    this.post({ type: "images", items: this.images });
  }

  // --- the turns ----------------------------------------------------------------------------

  /** The question (`typed` as shown, `text` as asked) with what is attached, which it takes. */
  addQuestion(typed: string, text: string): void {
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
    this.asked = { context: this.context, images: this.images };
    this.context = [];
    this.images = [];
    this.postContext();
    this.postImages();
  }

  /** The question whose answer failed goes too: sent again, it is asked again, with the code and
   * images it took (attached again, before any attached since). */
  dropQuestion(): void {
    this.messages.pop();
    this.shown.pop();
    this.context = [...this.asked.context, ...this.context];
    this.images = [...this.asked.images, ...this.images];
    this.asked = { context: [], images: [] };
    this.postContext();
    this.postImages();
  }

  /** Drops the last answer, for asking again; false: the last turn is no answer (or none is
   * left to answer). */
  dropLastReply(): boolean {
    if (this.shown[this.shown.length - 1]?.role !== "assistant") return false;
    this.shown.pop();
    while (this.messages.length && this.messages[this.messages.length - 1].role !== "user") this.messages.pop();
    return this.messages.length > 0;
  }

  /** The model's whole answer. */
  addReply(result: ChatResult): void {
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
  }

  /** What had come of an answer when Stop ended it. */
  addStopped(partial: Turn): void {
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
  }
}
