// One streamed `mlx/chat` request, as both the chat panel (chat-send.ts) and VS Code's chat
// (lm-provider.ts) make it: a stream token of its own, the mlx/chat/delta notifications that carry
// it folded into a Turn (and handed on as they come), the settings' token limit and temperature,
// the caller's token to cancel it; and how a failed request reads.
import type * as vscode from "vscode";
import type { SidecarClient } from "./client";
import { applyDelta, type Turn, type TurnUpdate } from "./chat-turn";
import { type ChatParams, type ChatResult, METHODS } from "./protocol";
import { chatSettings } from "./settings";

let seq = 0;

export interface ChatStreamRequest {
  messages: ChatParams["messages"];
  /** undefined: the request names none (the sidecar's chat model) */
  model?: string;
}

/** Sends the request; each delta goes into `turn` (which the caller keeps: after a cancel it holds
 * what came) and to `onUpdate`. Rejects as the request does (cancelled, or failed). */
export async function streamChat(
  sidecar: Pick<SidecarClient, "request" | "onChatDelta">,
  prefix: string,
  request: ChatStreamRequest,
  turn: Turn,
  onUpdate: (update: TurnUpdate) => void,
  token: vscode.CancellationToken,
): Promise<ChatResult> {
  const streamToken = `${prefix}-${Date.now()}-${++seq}`;
  const sub = sidecar.onChatDelta((d) => {
    if (d.stream_token === streamToken) for (const update of applyDelta(turn, d)) onUpdate(update);
  });
  try {
    const opts = chatSettings();
    return await sidecar.request(
      METHODS.chat,
      {
        messages: request.messages,
        ...(request.model !== undefined ? { model: request.model } : {}),
        max_tokens: opts.maxTokens,
        temperature: opts.temperature,
        stream_token: streamToken,
      } satisfies ChatParams,
      token,
    );
  } finally {
    sub.dispose();
  }
}

/** The end of the answer no delta brought (one still in flight when the result came), once. */
export function unstreamed(result: Pick<ChatResult, "text">, streamed: string): string {
  return result.text.length > streamed.length && result.text.startsWith(streamed)
    ? result.text.slice(streamed.length)
    : "";
}

/** A failed request's message. */
export function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
