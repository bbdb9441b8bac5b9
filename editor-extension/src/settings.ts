// The extension's settings, read in one place: their defaults (DEFAULTS, which a unit test holds
// equal to package.json's `contributes.configuration`), what the sidecar receives (as
// initializationOptions at start and through workspace/didChangeConfiguration later: only the
// keys it reads) and what only the extension itself reads.
import * as vscode from "vscode";
import type { InitCompletionOptions, InitOptions } from "./protocol";

export const SECTION = "mlxSidecar";

/** Every setting the extension reads (its key under SECTION) and its default: the same as the
 * `default` in package.json (test/unit/settings.test.ts checks both ways). */
export const DEFAULTS = {
  mode: "daemon",
  serverPath: "",
  pythonPath: "",
  pipPackage: "",
  modelsDir: "",
  httpPort: 0,
  "completion.enabled": true,
  "completion.debounceMs": 150,
  "completion.maxTokens": 48,
  "completion.maxTimeMs": 1000,
  "completion.prefixTokens": 1024,
  "completion.suffixTokens": 256,
  "completion.contextTokens": 512,
  "completion.contextChunks": 16,
  "completion.chunkLines": 16,
  "chat.maxTokens": 512,
  "chat.temperature": null as number | null,
  completionModel: "",
  chatModel: "",
  embeddingModel: "",
  logLevel: "INFO",
};

export type SettingKey = keyof typeof DEFAULTS;

/** A setting's value, its DEFAULTS entry when unset. */
export function setting<K extends SettingKey>(key: K): (typeof DEFAULTS)[K] {
  return vscode.workspace.getConfiguration(SECTION).get<(typeof DEFAULTS)[K]>(key, DEFAULTS[key]);
}

/** Exactly what the sidecar reads of its InitOptions (generated from sidecar/lsp/options.py: a
 * key or type that differs fails to compile, and so does a key the sidecar does not read). */
export interface SidecarOptions extends InitOptions {
  models: { completion: string | null; chat: string | null; embedding: string | null };
  httpPort: number;
  completion: Required<
    Pick<
      InitCompletionOptions,
      | "enabled"
      | "maxTokens"
      | "maxTimeMs"
      | "prefixTokens"
      | "suffixTokens"
      | "contextTokens"
      | "ringChunks"
      | "chunkLines"
    >
  >;
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

const orNull = (s: string | undefined): string | null => (s && s.trim() ? s.trim() : null);

/** The model each role's setting names; null: the sidecar's default. */
export function modelSettings(): SidecarOptions["models"] {
  return {
    completion: orNull(setting("completionModel")),
    chat: orNull(setting("chatModel")),
    embedding: orNull(setting("embeddingModel")),
  };
}

/** What the sidecar receives: the model roles, the OpenAI port and the completion options. */
export function sidecarOptions(): SidecarOptions {
  return {
    models: modelSettings(),
    httpPort: setting("httpPort"),
    completion: {
      enabled: setting("completion.enabled"),
      maxTokens: setting("completion.maxTokens"),
      maxTimeMs: setting("completion.maxTimeMs"),
      prefixTokens: setting("completion.prefixTokens"),
      suffixTokens: setting("completion.suffixTokens"),
      contextTokens: setting("completion.contextTokens"),
      // The sidecar calls the chunk count `ringChunks` (its context ring).
      ringChunks: setting("completion.contextChunks"),
      chunkLines: setting("completion.chunkLines"),
    },
  };
}

/** Inline completion as the extension itself runs it (the sidecar is told `enabled` too). */
export function completionSettings(): { enabled: boolean; debounceMs: number } {
  return { enabled: setting("completion.enabled"), debounceMs: setting("completion.debounceMs") };
}

/** What each chat request names (the chat panel's and VS Code's chat's). */
export function chatSettings(): { maxTokens: number; temperature?: number } {
  return {
    maxTokens: setting("chat.maxTokens"),
    // unset: the request names none and the sidecar's one default applies (greedy)
    temperature: setting("chat.temperature") ?? undefined,
  };
}

export function launchSettings(): LaunchSettings {
  return {
    mode: setting("mode") === "stdio" ? "stdio" : "daemon",
    serverPath: setting("serverPath").trim(),
    pythonPath: setting("pythonPath").trim(),
    pipPackage: setting("pipPackage").trim(),
    modelsDir: setting("modelsDir").trim(),
    httpPort: setting("httpPort"),
    logLevel: setting("logLevel"),
  };
}

/** Settings whose change needs a new sidecar process (the rest are sent to the running one). */
export const RESTART_KEYS = ["mode", "serverPath", "pythonPath", "pipPackage", "modelsDir", "httpPort", "logLevel"].map(
  (k) => `${SECTION}.${k}`,
);

export async function setModelForRole(role: Role, model: string): Promise<void> {
  const key = role === "completion" ? "completionModel" : role === "chat" ? "chatModel" : "embeddingModel";
  await vscode.workspace.getConfiguration(SECTION).update(key, model, vscode.ConfigurationTarget.Global);
}

export type Role = "completion" | "chat" | "embedding";
