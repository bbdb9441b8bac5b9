// The conversation, kept per workspace across restarts (context.workspaceState): the history
// sent to the model and what the panel shows, images left out (see withoutImages).
import type * as vscode from "vscode";
import type { ChatMessage, Source, ToolCall } from "./protocol";
import { withoutImages } from "./chat-content";

/** One entry of the panel, as it is drawn again after a restart. */
export type ShownTurn =
  | { role: "user"; text: string; context: string[]; images: string[] }
  | {
      role: "assistant";
      text: string;
      reasoning?: string | null;
      tool_calls?: ToolCall[];
      sources?: Source[];
      meta?: string;
    };

export interface Conversation {
  messages: ChatMessage[];
  shown: ShownTurn[];
}

export const KEY = "mlxSidecar.chat.conversation";
const VERSION = 1;
/** Turns kept: older ones are dropped first (a long chat must not grow workspace state forever). */
export const MAX_TURNS = 200;

export class ChatStore {
  constructor(private readonly memento: vscode.Memento) {}

  load(): Conversation {
    const saved = this.memento.get<{ version: number } & Conversation>(KEY);
    if (!saved || saved.version !== VERSION || !Array.isArray(saved.messages) || !Array.isArray(saved.shown)) {
      return { messages: [], shown: [] };
    }
    return { messages: saved.messages, shown: saved.shown };
  }

  async save(c: Conversation): Promise<void> {
    let messages = c.messages.slice(-MAX_TURNS).map((m) => ({ ...m, content: withoutImages(m.content) }));
    // The history starts at a user turn (a cut inside a tool exchange would confuse templates).
    const first = messages.findIndex((m) => m.role === "user");
    messages = first < 0 ? [] : messages.slice(first);
    await this.memento.update(KEY, { version: VERSION, messages, shown: c.shown.slice(-MAX_TURNS) });
  }

  async clear(): Promise<void> {
    await this.memento.update(KEY, undefined);
  }
}
