// Remote endpoints (a team's vLLM cluster, a hosted API, another sidecar): "MLX: Add Remote
// Endpoint…" asks a name, base URL and key. The key goes to SecretStorage (never settings.json);
// name and URL to the extension's global state. At every sidecar start they are declared with
// `mlx/upstreams/add` and the key handed over with `mlx/upstreams/setKey` (kept in the sidecar's
// memory only). Upstreams from the sidecar's own config file need no declaration, only a key.
import * as vscode from "vscode";
import type { SidecarClient } from "./client";
import { METHODS, type UpstreamsResult } from "./protocol";

export interface Endpoint {
  name: string;
  baseUrl: string;
}

const ENDPOINTS = "mlxSidecar.upstreams";
const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
export const secretKey = (name: string): string => `mlxSidecar.upstreamKey.${name}`;

/** Why `value` is no upstream name (undefined: it is one). */
export function nameProblem(value: string): string | undefined {
  return NAME.test(value) ? undefined : "letters, digits, '.', '_' or '-', starting with a letter or digit";
}

/** Why `value` is no base URL (undefined: it is one). */
export function urlProblem(value: string): string | undefined {
  try {
    const url = new URL(value);
    if (url.protocol !== "http:" && url.protocol !== "https:") return "an http:// or https:// URL";
  } catch {
    return "a URL such as http://cluster.example:8000/v1";
  }
  return undefined;
}

export class Upstreams implements vscode.Disposable {
  private readonly disposables: vscode.Disposable[] = [];

  constructor(
    private readonly context: Pick<vscode.ExtensionContext, "secrets" | "globalState">,
    private readonly sidecar: SidecarClient,
  ) {
    this.disposables.push(
      sidecar.onDidChangeState((s) => {
        if (s === "running") void this.declareAll();
      }),
      vscode.commands.registerCommand("mlxSidecar.addRemoteEndpoint", () => this.add()),
    );
  }

  endpoints(): Endpoint[] {
    return this.context.globalState.get<Endpoint[]>(ENDPOINTS) ?? [];
  }

  /** Declares every stored endpoint and hands over its key (after each sidecar start). */
  async declareAll(): Promise<void> {
    for (const e of this.endpoints()) {
      try {
        await this.declare(e);
      } catch (err) {
        this.sidecar.log.warn(`Remote endpoint ${e.name}: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
  }

  private async declare(e: Endpoint): Promise<UpstreamsResult> {
    let result = await this.sidecar.request(METHODS.upstreamsAdd, {
      name: e.name,
      base_url: e.baseUrl,
    });
    const key = await this.context.secrets.get(secretKey(e.name));
    if (key) result = await this.sidecar.request(METHODS.upstreamsSetKey, { upstream: e.name, key });
    return result;
  }

  async add(): Promise<void> {
    const name = await vscode.window.showInputBox({
      title: "MLX: Add Remote Endpoint (1/3)",
      prompt: "A short name; its models show as NAME/MODEL (an existing name is replaced)",
      placeHolder: "team",
      validateInput: nameProblem,
      ignoreFocusOut: true,
    });
    if (!name) return;
    const baseUrl = await vscode.window.showInputBox({
      title: "MLX: Add Remote Endpoint (2/3)",
      prompt: "The OpenAI-compatible base URL, up to and including /v1",
      placeHolder: "http://inference.internal:8000/v1",
      validateInput: urlProblem,
      ignoreFocusOut: true,
    });
    if (!baseUrl) return;
    const key = await vscode.window.showInputBox({
      title: "MLX: Add Remote Endpoint (3/3)",
      prompt: "Its API key (stored in VS Code's secret storage; leave empty for none)",
      password: true,
      ignoreFocusOut: true,
    });
    if (key === undefined) return;
    const endpoint = { name, baseUrl: baseUrl.trim() };
    if (key) await this.context.secrets.store(secretKey(name), key);
    else await this.context.secrets.delete(secretKey(name));
    await this.context.globalState.update(ENDPOINTS, [...this.endpoints().filter((e) => e.name !== name), endpoint]);
    try {
      const result = await this.declare(endpoint);
      const status = result.upstreams.find((u) => u.name === name);
      const models = status?.models ? `${status.models} models` : (status?.error ?? "no models listed yet");
      void vscode.window.showInformationMessage(`MLX: remote endpoint ${name} added (${models}).`);
    } catch (e) {
      void vscode.window.showErrorMessage(
        `MLX: remote endpoint ${name} saved, but the sidecar refused it: ${e instanceof Error ? e.message : String(e)}`,
      );
    }
  }

  dispose(): void {
    for (const d of this.disposables) d.dispose();
  }
}
