// "MLX: Show Status" as a webview dashboard: models and memory, tokens/s and queue over the last
// minutes (charts drawn by media/status.js from StatusHistory), the workspace index's size and
// freshness. Polls `mlx/status` (and `mlx/workspace/status`) while open, more slowly while closed
// so the charts have a history when it opens.
import * as fs from "node:fs";
import * as vscode from "vscode";
import type { SidecarClient } from "./client";
import { type EditorStatus, METHODS, type ModelList, type WorkspaceStatus } from "./protocol";
import { StatusHistory } from "./status-history";
import { daemonPid } from "./daemon";
import { daemonArgs } from "./sidecar-path";
import { webviewHtml, webviewOptions } from "./webview";

/** The command line the sidecar this window uses runs as: in daemon mode the daemon's own (from
 * /proc where there is one: another window may have started it, with another command), else
 * this window's process's. */
export function startedAs(
  sidecar: Pick<SidecarClient, "command" | "daemonDir">,
  cmdline: (pid: number) => string | undefined = procCmdline,
): { command?: string; daemon?: string } {
  const cmd = sidecar.command;
  if (!cmd) return {};
  if (!sidecar.daemonDir) return { command: `${cmd.command} ${cmd.args.join(" ")}` };
  const pid = daemonPid(sidecar.daemonDir);
  const actual = pid !== undefined ? cmdline(pid) : undefined;
  return {
    command: actual ?? `${cmd.command} ${daemonArgs(cmd).join(" ")}`,
    daemon: `shared daemon${pid !== undefined ? ` (pid ${pid})` : ""}, socket in ${sidecar.daemonDir}`,
  };
}

function procCmdline(pid: number): string | undefined {
  try {
    const raw = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8");
    return raw.split("\0").filter(Boolean).join(" ") || undefined;
  } catch {
    return undefined; // not Linux, or gone
  }
}

export const OPEN_POLL_MS = 2000;
export const CLOSED_POLL_MS = 15_000;

/** One message to the dashboard: everything it draws. */
export interface DashboardState {
  type: "state";
  state: string;
  command?: string;
  /** Daemon mode: which shared sidecar this window is connected to. */
  daemon?: string;
  lastError?: string;
  error?: string;
  status?: EditorStatus;
  models: ModelList["models"];
  workspace?: WorkspaceStatus;
  history: StatusHistory["all"];
  windowMs: number;
  now: number;
}

export class StatusPage implements vscode.Disposable {
  static readonly viewType = "mlxSidecar.statusPage";
  readonly history = new StatusHistory();
  private panel: vscode.WebviewPanel | undefined;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private readonly disposables: vscode.Disposable[] = [];

  constructor(
    private readonly extensionUri: vscode.Uri,
    private readonly sidecar: SidecarClient,
  ) {
    this.disposables.push(
      vscode.commands.registerCommand("mlxSidecar.showStatus", () => this.show()),
      sidecar.onDidChangeState(() => this.schedule(0)),
    );
    this.schedule(CLOSED_POLL_MS);
  }

  async show(): Promise<void> {
    if (this.panel) {
      this.panel.reveal();
    } else {
      this.panel = vscode.window.createWebviewPanel(
        StatusPage.viewType,
        "MLX Sidecar Status",
        vscode.ViewColumn.Active,
        webviewOptions(this.extensionUri),
      );
      this.panel.webview.html = webviewHtml(this.panel.webview, this.extensionUri, {
        title: "MLX Sidecar Status",
        script: "status.js",
        style: "status.css",
        body: '<main id="dashboard" aria-live="polite"><p class="hint">Loading…</p></main>',
      });
      this.panel.webview.onDidReceiveMessage(
        (m: { type: string }) => {
          if (m.type === "ready") void this.poll();
          if (m.type === "indexWorkspace") void vscode.commands.executeCommand("mlxSidecar.indexWorkspace");
          if (m.type === "showLog") this.sidecar.log.show();
        },
        undefined,
        this.disposables,
      );
      this.panel.onDidDispose(() => {
        this.panel = undefined;
        this.schedule(CLOSED_POLL_MS);
      });
    }
    await this.poll();
  }

  private schedule(ms: number): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.poll(), ms);
    this.timer.unref?.(); // never what keeps the extension host (or a test) alive
  }

  /** One sample: asked, kept in the history, posted to the open dashboard. */
  async poll(): Promise<DashboardState> {
    clearTimeout(this.timer);
    const state: DashboardState = {
      type: "state",
      state: this.sidecar.state,
      ...startedAs(this.sidecar),
      lastError: this.sidecar.lastError,
      models: [],
      history: this.history.all,
      windowMs: this.history.windowMs,
      now: Date.now(),
    };
    if (this.sidecar.state === "running") {
      try {
        const [status, list] = await Promise.all([
          this.sidecar.request(METHODS.status, {}),
          this.sidecar.request(METHODS.list, {}),
        ]);
        state.status = status;
        state.models = list.models;
        state.workspace = status.workspace;
        const root = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
        if (root && status.workspace?.root !== root) {
          state.workspace = await this.sidecar.request(METHODS.workspaceStatus, { root }).catch(() => status.workspace);
        }
        this.history.add(status);
        state.history = this.history.all;
      } catch (e) {
        state.error = e instanceof Error ? e.message : String(e);
      }
    }
    void this.panel?.webview.postMessage(state);
    this.schedule(this.panel ? OPEN_POLL_MS : CLOSED_POLL_MS);
    return state;
  }

  dispose(): void {
    clearTimeout(this.timer);
    this.panel?.dispose();
    for (const d of this.disposables) d.dispose();
  }
}
