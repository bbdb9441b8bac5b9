// Sending from the chat panel: a typed message (a slash command asks its question about the
// editor's code; images need a vision model) becomes the question, and the model's answer
// streams into the panel (chat-stream.ts); Stop keeps what came, a failure names its way out.
import * as vscode from "vscode";
import type { SidecarClient } from "./client";
import { errorCode } from "./protocol";
import { newTurn, type Turn } from "./chat-turn";
import { VISION_QUERY, visionProblem } from "./chat-content";
import { activeFileContext, selectionContext } from "./chat-editor";
import { parseSlash } from "./chat-commands";
import { errorText, streamChat } from "./chat-stream";
import type { ChatModels } from "./chat-models";
import type { ChatSession } from "./chat-session";

export class ChatSender {
  private current: { cts: vscode.CancellationTokenSource; turn: Turn } | undefined;

  constructor(
    private readonly sidecar: SidecarClient,
    private readonly session: ChatSession,
    private readonly models: ChatModels,
    private readonly post: (message: unknown) => void,
    /** "/new" */
    private readonly newChat: () => void,
  ) {}

  /** Whether an answer streams now. */
  get busy(): boolean {
    return this.current !== undefined;
  }

  stop(): void {
    this.current?.cts.cancel();
  }

  async send(typed: string): Promise<void> {
    if ((!typed.trim() && !this.session.hasImages) || this.current) return;
    let text = typed;
    const slash = parseSlash(typed);
    if (slash && !slash.prompt) {
      this.newChat(); // "/new"
      return;
    }
    if (slash?.prompt) {
      // The code comes from the editor unless some is attached already.
      if (!this.session.hasContext) {
        const code = selectionContext() ?? activeFileContext();
        if (!code) {
          this.post({
            type: "error",
            message: `/${slash.command.name} works on code: open a file (and select the part to ${slash.command.name === "explain" ? "explain" : "work on"}).`,
          });
          return;
        }
        this.session.addContext(code, false);
      }
      text = slash.prompt;
    }
    const chatModel = this.models.chatModel();
    const blocked = this.session.hasImages ? visionProblem(chatModel, this.models.models) : undefined;
    if (blocked) {
      // The images stay attached: one click switches the model, then Send again.
      this.post({ type: "needsVision", message: blocked.message, model: blocked.vision, text, query: VISION_QUERY });
      return;
    }
    this.session.addQuestion(typed, text);
    await this.reply(typed, true);
  }

  /** Asks the model again for the last answer: that answer is dropped, the question stays. */
  async regenerate(): Promise<void> {
    if (this.current || !this.session.dropLastReply()) return;
    this.post({ type: "dropLastReply" });
    await this.reply("", false);
  }

  /** Streams the model's answer to the conversation into a new assistant turn. */
  private async reply(text: string, newUserTurn: boolean): Promise<void> {
    const cts = new vscode.CancellationTokenSource();
    const turn = newTurn();
    this.current = { cts, turn };
    this.post({ type: "start" });
    try {
      const request = { messages: this.session.messages, model: this.models.requestModel() };
      const result = await streamChat(this.sidecar, "chat", request, turn, (u) => this.post(u), cts.token);
      this.sidecar.noteReply(result.served_by, result.fallback_reason);
      this.session.addReply(result);
    } catch (e) {
      if (cts.token.isCancellationRequested) this.session.addStopped(turn);
      else {
        if (newUserTurn) this.session.dropQuestion();
        this.post(this.failure(e, text));
      }
    } finally {
      cts.dispose();
      this.current = undefined;
      this.session.persist();
    }
  }

  /** What the panel is told of a failed request: every way out the message names is a button
   * (images the model cannot see: switch to an installed vision model, or download one). */
  private failure(e: unknown, text: string): unknown {
    const message = errorText(e);
    if (errorCode(e) !== "images_not_supported") return { type: "error", message };
    return { type: "needsVision", message, model: this.models.visionModel(), text, query: VISION_QUERY };
  }
}
