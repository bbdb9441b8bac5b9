// The workspace index from the editor: "MLX: Index Workspace" (mlx/workspace/index with a
// cancellable progress notification fed by $/progress) and file watchers that tell the sidecar
// what was created, changed, deleted or renamed (mlx/workspace/update), batched.
import * as vscode from "vscode";
import { WorkDoneProgress, type WorkDoneProgressBegin, type WorkDoneProgressReport } from "vscode-languageclient/node";
import type { SidecarClient } from "./client";
import { METHODS, type WorkspaceIndexResult, type WorkspaceRename, type WorkspaceUpdateParams } from "./protocol";

/** Changes gathered for one mlx/workspace/update. */
export class PendingUpdate {
  private changed = new Set<string>();
  private deleted = new Set<string>();
  private renamed: WorkspaceRename[] = [];

  change(path: string): void {
    this.deleted.delete(path);
    this.changed.add(path);
  }

  remove(path: string): void {
    this.changed.delete(path);
    this.deleted.add(path);
  }

  rename(old: string, path: string): void {
    this.changed.delete(old);
    this.renamed.push({ old, new: path });
  }

  get empty(): boolean {
    return !this.changed.size && !this.deleted.size && !this.renamed.length;
  }

  /** The params, and the batch emptied. */
  take(): WorkspaceUpdateParams {
    const params: WorkspaceUpdateParams = {
      changed: [...this.changed],
      deleted: [...this.deleted],
      renamed: this.renamed,
    };
    this.changed = new Set();
    this.deleted = new Set();
    this.renamed = [];
    return params;
  }
}

/** Paths worth telling the index about: not inside VCS metadata or dependency folders (the
 * sidecar's walker skips those too; this saves the round trips git and npm cause). */
export function watched(path: string): boolean {
  return !/[\\/](\.git|node_modules|\.venv|__pycache__)([\\/]|$)/.test(path);
}

/** "12 files, 40 chunks, indexed 3 min ago" */
export function indexSummary(
  s: { files: number; chunks: number; last_indexed_at: number | null },
  now = Date.now(),
): string {
  const when = s.last_indexed_at ? ago(now - s.last_indexed_at * 1000) : "never";
  return `${s.files} files, ${s.chunks} chunks, indexed ${when}`;
}

/** The one message after "Index Workspace": what the index holds now (as the dashboard says),
 * whether this run changed it, short enough for a notification's one line. */
export function indexedMessage(result: WorkspaceIndexResult): string {
  const { run, status } = result;
  const holds = `${status.files} files, ${status.chunks} chunks`;
  const changed = run.files_indexed + run.files_deleted + run.files_renamed;
  // A toast shows about 60 characters on one line: what the index holds comes first.
  return changed ? `MLX: workspace indexed — ${holds}.` : `MLX: workspace index up to date — ${holds}.`;
}

export function ago(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

export class WorkspaceIndexer implements vscode.Disposable {
  private readonly disposables: vscode.Disposable[] = [];
  private readonly pending = new PendingUpdate();
  private timer: ReturnType<typeof setTimeout> | undefined;
  /** Watchers report only once the workspace has been indexed (the sidecar has a root). */
  private indexed = false;

  constructor(
    private readonly sidecar: SidecarClient,
    private readonly debounceMs = 500,
  ) {
    const watcher = vscode.workspace.createFileSystemWatcher("**/*");
    this.disposables.push(
      watcher,
      watcher.onDidCreate((u) => this.queue(u, () => this.pending.change(u.fsPath))),
      watcher.onDidChange((u) => this.queue(u, () => this.pending.change(u.fsPath))),
      watcher.onDidDelete((u) => this.queue(u, () => this.pending.remove(u.fsPath))),
      vscode.workspace.onDidRenameFiles((e) =>
        this.queue(undefined, () => e.files.forEach((f) => this.pending.rename(f.oldUri.fsPath, f.newUri.fsPath))),
      ),
      vscode.commands.registerCommand("mlxSidecar.indexWorkspace", () => this.index()),
      sidecar.onDidChangeState((state) => {
        if (state === "running") void this.checkIndexed();
      }),
    );
  }

  /** An index on disk from an earlier session is kept fresh too. */
  private async checkIndexed(): Promise<void> {
    const root = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
    if (!root) return;
    try {
      const status = await this.sidecar.request(METHODS.workspaceStatus, { root });
      this.indexed ||= status.files > 0;
    } catch {
      // no index: the watchers wait for "MLX: Index Workspace"
    }
  }

  private queue(uri: vscode.Uri | undefined, record: () => void): void {
    if (!this.indexed || (uri && !watched(uri.fsPath))) return;
    record();
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.flush(), this.debounceMs);
  }

  /** Send what was gathered (also called by tests instead of waiting for the debounce). */
  async flush(): Promise<WorkspaceIndexResult | undefined> {
    clearTimeout(this.timer);
    if (this.pending.empty || this.sidecar.state !== "running") return undefined;
    try {
      return await this.sidecar.request(METHODS.workspaceUpdate, this.pending.take());
    } catch (e) {
      this.sidecar.log.warn(`workspace update failed: ${e instanceof Error ? e.message : String(e)}`);
      return undefined;
    }
  }

  /** Index the first workspace folder, with progress in a cancellable notification. */
  async index(): Promise<WorkspaceIndexResult | undefined> {
    const folder = vscode.workspace.workspaceFolders?.[0];
    if (!folder) {
      const open = "Open Folder…";
      const choice = await vscode.window.showInformationMessage("MLX: open a folder to index it.", open);
      if (choice === open) void vscode.commands.executeCommand("workbench.action.files.openFolder");
      return undefined;
    }
    return vscode.window.withProgress(
      { location: vscode.ProgressLocation.Notification, title: "MLX: indexing the workspace", cancellable: true },
      async (progress, token) => {
        const workDoneToken = `mlx-index-${Date.now()}`;
        let last = 0;
        const sub = this.sidecar.languageClient?.onProgress(WorkDoneProgress.type, workDoneToken, (p) => {
          if (p.kind === "end") return;
          const v = p as WorkDoneProgressBegin | WorkDoneProgressReport;
          const pct = typeof v.percentage === "number" ? v.percentage : undefined;
          progress.report({ message: v.message, increment: pct !== undefined ? pct - last : undefined });
          if (pct !== undefined) last = pct;
        });
        try {
          const result = await this.sidecar.request(
            METHODS.workspaceIndex,
            { root: folder.uri.fsPath, work_done_token: workDoneToken },
            token,
          );
          this.indexed = true;
          void vscode.window.showInformationMessage(indexedMessage(result));
          return result;
        } catch (e) {
          if (token.isCancellationRequested) {
            this.indexed = true; // what was done is kept; keep it fresh
            void vscode.window.showInformationMessage("MLX: indexing cancelled; the files done so far are kept.");
          } else {
            void vscode.window.showErrorMessage(`MLX: indexing failed: ${e instanceof Error ? e.message : String(e)}`);
          }
          return undefined;
        } finally {
          sub?.dispose();
        }
      },
    );
  }

  dispose(): void {
    clearTimeout(this.timer);
    for (const d of this.disposables) d.dispose();
  }
}
