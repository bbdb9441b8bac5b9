// One assistant turn as it streams: the answer, the model's thinking and its tool calls, kept
// apart as the sidecar sends them (mlx/chat/delta), and the message that goes into the history.
import type { ChatDelta, ChatMessage, ChatResult, ToolCall } from "./protocol";

export interface Turn {
  text: string;
  reasoning: string;
  toolCalls: ToolCall[];
}

/** What the webview is told about one delta. */
export type TurnUpdate =
  { type: "delta"; delta: string } | { type: "reasoning"; delta: string } | { type: "toolCalls"; calls: ToolCall[] };

export function newTurn(): Turn {
  return { text: "", reasoning: "", toolCalls: [] };
}

/** Fold a delta into the turn; the updates for the webview, reasoning first. */
export function applyDelta(turn: Turn, d: ChatDelta): TurnUpdate[] {
  const updates: TurnUpdate[] = [];
  if (d.reasoning) {
    turn.reasoning += d.reasoning;
    updates.push({ type: "reasoning", delta: d.reasoning });
  }
  if (d.delta) {
    turn.text += d.delta;
    updates.push({ type: "delta", delta: d.delta });
  }
  if (d.tool_calls?.length) {
    turn.toolCalls.push(...d.tool_calls);
    updates.push({ type: "toolCalls", calls: d.tool_calls });
  }
  return updates;
}

/** The assistant message for the history: the answer and its calls (the thinking stays out:
 * chat templates drop earlier turns' thinking). */
export function assistantMessage(reply: Pick<ChatResult, "text" | "tool_calls">): ChatMessage {
  const message: ChatMessage = { role: "assistant", content: reply.text };
  if (reply.tool_calls.length) {
    message.tool_calls = reply.tool_calls.map((c) => ({
      id: c.id,
      type: "function" as const,
      function: { name: c.name, arguments: c.arguments },
    }));
  }
  return message;
}

/** The line under a reply: why it stopped, its length (when known: an upstream that reports no
 * usage counts 0, which is not the reply's length), the model. */
export function replyMeta(finish: string, tokens?: number, model?: string | null): string {
  const bits: string[] = [];
  if (finish === "cancelled") bits.push("stopped");
  else if (finish === "length") bits.push("stopped at the token limit");
  else if (finish === "tool_calls") bits.push("asked to run tools (not run here)");
  if (tokens) bits.push(`${tokens} tokens`);
  if (model) bits.push(model);
  return bits.join(" · ");
}
