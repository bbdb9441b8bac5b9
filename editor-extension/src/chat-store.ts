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
export const HISTORY_KEY = "mlxSidecar.chat.history";
/** Past conversations kept per workspace (newest first). */
export const MAX_HISTORY = 30;

/** A past conversation in the history list. */
export interface PastConversation extends Conversation {
  /** the first question, shortened */
  title: string;
  /** ms since the epoch of its last turn */
  at: number;
}

/** A conversation's title: its first question's first line, at most 60 characters. */
export function titleOf(c: Conversation): string {
  const first = c.shown.find((t) => t.role === "user");
  const line = (first?.text ?? "").trim().split("\n")[0] || "(images only)";
  return line.length > 60 ? `${line.slice(0, 59)}…` : line;
}
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

  history(): PastConversation[] {
    const saved = this.memento.get<PastConversation[]>(HISTORY_KEY);
    return Array.isArray(saved) ? saved : [];
  }

  /** Puts a conversation (with at least one turn) at the top of the history. */
  async archive(c: Conversation, at = Date.now()): Promise<void> {
    if (!c.shown.length) return;
    const messages = c.messages.slice(-MAX_TURNS).map((m) => ({ ...m, content: withoutImages(m.content) }));
    const entry: PastConversation = { title: titleOf(c), at, messages, shown: c.shown.slice(-MAX_TURNS) };
    await this.memento.update(HISTORY_KEY, [entry, ...this.history()].slice(0, MAX_HISTORY));
  }

  /** Takes conversation `index` out of the history (it becomes the current one). */
  async take(index: number): Promise<PastConversation | undefined> {
    const all = this.history();
    const [picked] = all.splice(index, 1);
    if (picked) await this.memento.update(HISTORY_KEY, all);
    return picked;
  }
}
