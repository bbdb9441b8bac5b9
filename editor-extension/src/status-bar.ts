// Status bar item: completion model, busy/idle, tokens/s of recent work; click shows status.
import * as vscode from "vscode";
import type { ServedBy, SidecarClient } from "./client";
import { type EditorStatus, METHODS } from "./protocol";

/** What the status bar shows of an mlx/status reply: the models per role, recent tokens/s. */
export function summarize(status: Pick<EditorStatus, "roles" | "recent_tokens_per_s">): {
  model: string;
  roles: Record<string, string>;
  tokensPerS?: number;
} {
  const tps = status.recent_tokens_per_s;
  return {
    model: status.roles.completion,
    roles: { ...status.roles },
    tokensPerS: tps !== null && Number.isFinite(tps) ? tps : undefined,
  };
}

/** What is running, for the status bar: each request's model once, a role named by the model
 * that serves it ("chat" is the chat model), in the order they started. */
export function runningText(running: readonly string[], roles: Record<string, string>): string {
  const names = running.map((w) => (w in roles ? roles[w] : w));
  return [...new Set(names)].join(", ");
}

/** The tooltip line for the last chat reply's origin ("" when the local engine answered). */
export function servedText(s: ServedBy): string {
  if (!s.upstream) return "";
  const why = s.fallbackReason ? ` (fallback: ${s.fallbackReason.replace("_", " ")})` : "";
  return `\nLast chat reply from upstream ${s.upstream}${why}`;
}

export class StatusBar implements vscode.Disposable {
  private readonly item = vscode.window.createStatusBarItem("mlxSidecar.status", vscode.StatusBarAlignment.Right, 100);
  private model: string | undefined;
  private roles: Record<string, string> = {};
  private tps: number | undefined;
  private served: ServedBy = { upstream: null, fallbackReason: null };
  private readonly disposables: vscode.Disposable[] = [];
  private refreshTimer: NodeJS.Timeout | undefined;

  constructor(private readonly sidecar: SidecarClient) {
    this.item.name = "MLX Sidecar";
    this.item.command = "mlxSidecar.showStatus";
    this.disposables.push(
      sidecar.onDidChangeState(() => {
        this.render();
        if (sidecar.state === "running") void this.refresh();
      }),
      sidecar.onBusy((busy) => {
        this.render();
        if (!busy) this.scheduleRefresh();
      }),
      sidecar.onModelsChanged(() => void this.refresh()),
      sidecar.onReplyServed((s) => {
        this.served = s;
        this.render();
      }),
    );
    this.render();
    this.item.show();
  }

  private scheduleRefresh(): void {
    clearTimeout(this.refreshTimer);
    this.refreshTimer = setTimeout(() => void this.refresh(), 300);
  }

  async refresh(): Promise<void> {
    if (this.sidecar.state !== "running") return;
    try {
      const s = summarize(await this.sidecar.request(METHODS.status, {}));
      this.model = s.model;
      this.roles = s.roles;
      this.tps = s.tokensPerS ?? this.tps;
    } catch {
      // shown as state instead
    }
    this.render();
  }

  render(): void {
    const state = this.sidecar.state;
    let icon = "$(hubot)";
    let text: string;
    if (state === "running") {
      if (this.sidecar.busy) icon = "$(loading~spin)";
      // Busy: the models that run now (a chat on its model, not the completion model).
      const busy = this.sidecar.busy ? runningText(this.sidecar.running, this.roles) : "";
      const parts = busy ? [busy, "busy"] : [this.model ?? "MLX", this.sidecar.busy ? "busy" : "idle"];
      if (this.tps !== undefined && this.tps > 0) parts.push(`${this.tps.toFixed(1)} tok/s`);
      if (this.served.upstream) parts.push(`$(cloud) ${this.served.upstream}`);
      text = `${icon} ${parts.join(" · ")}`;
    } else if (state === "failed") {
      text = "$(error) MLX: stopped";
    } else {
      text = `$(loading~spin) MLX: ${state}`;
    }
    this.item.text = text;
    const roles = Object.entries(this.roles)
      .map(([role, model]) => `\n${role}: ${model}`)
      .join("");
    this.item.tooltip =
      `MLX Sidecar — ${state}${this.sidecar.lastError ? `\n${this.sidecar.lastError}` : ""}${roles}` +
      `${servedText(this.served)}\nClick for status.`;
  }

  dispose(): void {
    clearTimeout(this.refreshTimer);
    for (const d of this.disposables) d.dispose();
    this.item.dispose();
  }
}
