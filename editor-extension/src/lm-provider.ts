// The local chat models in VS Code's own chat model picker, where the host has the API
// (`vscode.lm.registerLanguageModelChatProvider`, VS Code 1.104+). Older hosts and code-server
// builds without it get nothing registered and no error. @types/vscode is pinned to 1.95 (the
// oldest host we run on), so the API's shapes are declared here, as much as we use of them.
import * as vscode from "vscode";
import type { SidecarClient } from "./client";
import { newTurn, type TurnUpdate } from "./chat-turn";
import { errorText, streamChat, unstreamed } from "./chat-stream";
import { type ContentPart, METHODS, type ModelList } from "./protocol";
import { chatSettings } from "./settings";

export const VENDOR = "mlx-sidecar";

export interface ChatInformation {
  id: string;
  name: string;
  family: string;
  version: string;
  tooltip?: string;
  detail?: string;
  maxInputTokens: number;
  maxOutputTokens: number;
  capabilities: { imageInput?: boolean; toolCalling?: boolean | number };
}

/** A request message as the host hands it over: role 1 user, 2 assistant; parts of which we
 * read text (`value`) and images (`mimeType` + `data`); tool parts are left out (no tools here). */
export interface HostMessage {
  role: number;
  content: readonly unknown[];
  name?: string;
}

interface LmApi {
  registerLanguageModelChatProvider(vendor: string, provider: unknown): vscode.Disposable;
}

/** The host's `vscode.lm` if it can register chat providers, else undefined. */
export function lmApi(host: unknown = vscode): LmApi | undefined {
  const lm = (host as { lm?: Partial<LmApi> }).lm;
  return typeof lm?.registerLanguageModelChatProvider === "function" ? (lm as LmApi) : undefined;
}

/** Roughly 4 characters a token: the host asks counts to budget prompts, and an exact count
 * would be a tokenizer round trip per message. */
export function estimateTokens(text: string): number {
  return Math.ceil(text.length / 4);
}

/** The local text and vision models as the picker lists them. */
export function chatInformation(list: ModelList, maxOutputTokens: number): ChatInformation[] {
  return list.models
    .filter((m) => m.kind === "text" || m.kind === "vision")
    .map((m) => ({
      id: m.id,
      name: `${m.id} (MLX, local)`,
      family: "mlx",
      version: m.quantization ?? "local",
      tooltip: `Runs on this machine on the MLX sidecar (${m.kind} model)`,
      detail: "local",
      maxInputTokens: 8192,
      maxOutputTokens,
      capabilities: { imageInput: m.kind === "vision", toolCalling: false },
    }));
}

/** Host messages to `mlx/chat` messages: text parts joined, images as data: URL parts. */
export function toChatMessages(
  messages: readonly HostMessage[],
): { role: "user" | "assistant"; content: string | ContentPart[] }[] {
  return messages.map((m) => {
    const parts: ContentPart[] = [];
    for (const p of m.content) {
      const part = p as { value?: unknown; mimeType?: unknown; data?: unknown };
      if (typeof part.value === "string") parts.push({ type: "text", text: part.value });
      else if (
        typeof part.mimeType === "string" &&
        part.mimeType.startsWith("image/") &&
        part.data instanceof Uint8Array
      ) {
        const url = `data:${part.mimeType};base64,${Buffer.from(part.data).toString("base64")}`;
        parts.push({ type: "image_url", image_url: { url } });
      }
    }
    const role = m.role === 2 ? "assistant" : "user";
    const images = parts.some((p) => p.type === "image_url");
    return { role, content: images ? parts : parts.map((p) => p.text ?? "").join("") };
  });
}

export class LocalChatProvider {
  private readonly changed = new vscode.EventEmitter<void>();
  readonly onDidChangeLanguageModelChatInformation = this.changed.event;
  private readonly disposables: vscode.Disposable[];

  constructor(private readonly sidecar: SidecarClient) {
    this.disposables = [
      this.changed,
      sidecar.onModelsChanged(() => this.changed.fire()),
      sidecar.onDidChangeState((s) => {
        if (s === "running") this.changed.fire();
      }),
    ];
  }

  dispose(): void {
    for (const d of this.disposables) d.dispose();
  }

  async provideLanguageModelChatInformation(): Promise<ChatInformation[]> {
    if (this.sidecar.state !== "running") return [];
    const list = await this.sidecar.request(METHODS.list, {});
    return chatInformation(list, chatSettings().maxTokens);
  }

  /** Streams the reply from `mlx/chat` as text parts; the host's token cancels it. */
  async provideLanguageModelChatResponse(
    model: ChatInformation,
    messages: readonly HostMessage[],
    _options: unknown,
    progress: vscode.Progress<unknown>,
    token: vscode.CancellationToken,
  ): Promise<void> {
    const TextPart = (vscode as unknown as { LanguageModelTextPart: new (v: string) => unknown }).LanguageModelTextPart;
    const turn = newTurn();
    const report = (u: TurnUpdate) => {
      if (u.type === "delta") progress.report(new TextPart(u.delta));
    };
    const request = { model: model.id, messages: toChatMessages(messages) };
    const result = await streamChat(this.sidecar, "lm", request, turn, report, token);
    const rest = unstreamed(result, turn.text);
    if (rest) progress.report(new TextPart(rest));
  }

  async provideTokenCount(_model: ChatInformation, text: string | HostMessage): Promise<number> {
    if (typeof text === "string") return estimateTokens(text);
    return estimateTokens(
      toChatMessages([text])
        .map((m) => (typeof m.content === "string" ? m.content : ""))
        .join(""),
    );
  }
}

/** Registers the provider where the host can take it; nothing (and no error) elsewhere. */
export function registerLocalChatModels(sidecar: SidecarClient, host: unknown = vscode): vscode.Disposable | undefined {
  const lm = lmApi(host);
  if (!lm) return undefined;
  try {
    const provider = new LocalChatProvider(sidecar);
    return vscode.Disposable.from(lm.registerLanguageModelChatProvider(VENDOR, provider), provider);
  } catch (e) {
    // e.g. a host that has the function but not our package.json contribution
    sidecar.log.warn(`local models not offered to VS Code's chat: ${errorText(e)}`);
    return undefined;
  }
}
