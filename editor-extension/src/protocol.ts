// Types of the sidecar's mlx/* JSON-RPC methods (see DESIGN.md "Contract").
export interface ChatMessage {
  role: "system" | "user" | "assistant";
  content: string;
}

export interface ChatParams {
  messages: ChatMessage[];
  model?: string;
  max_tokens?: number;
  temperature?: number;
  stream_token?: string;
}

export interface ChatResult {
  text: string;
  finish_reason: string;
  usage: { prompt_tokens: number; completion_tokens: number };
  model: string;
}

export interface ChatDelta {
  stream_token: string;
  delta: string;
}

export interface ModelInfo {
  id: string;
  kind: string;
  size_bytes?: number | null;
  quantization?: string | null;
  loaded?: boolean;
  fim?: boolean;
  roles?: string[];
  [key: string]: unknown;
}

export interface HubModel {
  id: string;
  size_bytes?: number | null;
  downloads?: number | null;
  kind?: string | null;
  [key: string]: unknown;
}

export type Status = Record<string, unknown>;

export const METHODS = {
  chat: "mlx/chat",
  chatDelta: "mlx/chat/delta",
  embed: "mlx/embed",
  list: "mlx/models/list",
  search: "mlx/models/search",
  download: "mlx/models/download",
  remove: "mlx/models/delete",
  load: "mlx/models/load",
  unload: "mlx/models/unload",
  select: "mlx/models/select",
  changed: "mlx/models/changed",
  status: "mlx/status",
} as const;

export function formatBytes(n: number | null | undefined): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return "";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let v = n;
  let i = 0;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${v >= 100 || i === 0 ? v.toFixed(0) : v.toFixed(1)} ${units[i]}`;
}
