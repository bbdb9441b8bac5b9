// The extension's settings, read in one place, and the shape the sidecar receives
// (as initializationOptions at start and through workspace/didChangeConfiguration later).
import * as vscode from "vscode";
import type { InitOptions } from "./protocol";

export const SECTION = "mlxSidecar";

/** The sidecar's InitOptions (generated from sidecar/lsp/options.py: a key or type that differs
 * fails to compile) plus what only the extension reads (unknown keys are ignored there). */
export interface SidecarOptions extends InitOptions {
  models: { completion: string | null; chat: string | null; embedding: string | null };
  completion: {
    enabled: boolean;
    debounceMs: number;
    maxTokens: number;
    maxTimeMs: number;
    prefixTokens: number;
    suffixTokens: number;
    contextTokens: number;
    ringChunks: number;
    chunkLines: number;
  };
  chat: { maxTokens: number; temperature?: number };
  modelsDir: string | null;
  httpPort: number;
  logLevel: string;
}

/** "daemon": every window shares the machine's one sidecar (started by the first); "stdio": a
 * sidecar process of this window's own (each loads its own models). */
export type SidecarMode = "daemon" | "stdio";

export interface LaunchSettings {
  mode: SidecarMode;
  serverPath: string;
  pythonPath: string;
  pipPackage: string;
  modelsDir: string;
  httpPort: number;
  logLevel: string;
}

function config(): vscode.WorkspaceConfiguration {
  return vscode.workspace.getConfiguration(SECTION);
}

const orNull = (s: string | undefined): string | null => (s && s.trim() ? s.trim() : null);

export function sidecarOptions(): SidecarOptions {
  const c = config();
  return {
    models: {
      completion: orNull(c.get<string>("completionModel")),
      chat: orNull(c.get<string>("chatModel")),
      embedding: orNull(c.get<string>("embeddingModel")),
    },
    completion: {
      enabled: c.get<boolean>("completion.enabled", true),
      debounceMs: c.get<number>("completion.debounceMs", 150),
      maxTokens: c.get<number>("completion.maxTokens", 48),
      maxTimeMs: c.get<number>("completion.maxTimeMs", 1000),
      prefixTokens: c.get<number>("completion.prefixTokens", 1024),
      suffixTokens: c.get<number>("completion.suffixTokens", 256),
      contextTokens: c.get<number>("completion.contextTokens", 512),
      // The sidecar calls the chunk count `ringChunks` (its context ring).
      ringChunks: c.get<number>("completion.contextChunks", 16),
      chunkLines: c.get<number>("completion.chunkLines", 16),
    },
    chat: {
      maxTokens: c.get<number>("chat.maxTokens", 512),
      // unset: the request names none and the sidecar's one default applies (greedy)
      temperature: c.get<number | null>("chat.temperature", null) ?? undefined,
    },
    modelsDir: orNull(c.get<string>("modelsDir")),
    httpPort: c.get<number>("httpPort", 0),
    logLevel: c.get<string>("logLevel", "INFO"),
  };
}

export function launchSettings(): LaunchSettings {
  const c = config();
  return {
    mode: c.get<string>("mode", "daemon") === "stdio" ? "stdio" : "daemon",
    serverPath: c.get<string>("serverPath", "").trim(),
    pythonPath: c.get<string>("pythonPath", "").trim(),
    pipPackage: c.get<string>("pipPackage", "").trim(),
    modelsDir: c.get<string>("modelsDir", "").trim(),
    httpPort: c.get<number>("httpPort", 0),
    logLevel: c.get<string>("logLevel", "INFO"),
  };
}

/** Settings whose change needs a new sidecar process (the rest are sent to the running one). */
export const RESTART_KEYS = ["mode", "serverPath", "pythonPath", "pipPackage", "modelsDir", "httpPort", "logLevel"].map(
  (k) => `${SECTION}.${k}`,
);

export async function setModelForRole(role: Role, model: string): Promise<void> {
  const key = role === "completion" ? "completionModel" : role === "chat" ? "chatModel" : "embeddingModel";
  await config().update(key, model, vscode.ConfigurationTarget.Global);
}

export type Role = "completion" | "chat" | "embedding";
