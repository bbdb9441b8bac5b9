// Command palette: download, switch, delete models; restart the sidecar (status: status-page.ts).
import * as vscode from "vscode";
import { WorkDoneProgress, type WorkDoneProgressBegin, type WorkDoneProgressReport } from "vscode-languageclient/node";
import type { SidecarClient } from "./client";
import { formatBytes, type HubModel, METHODS, type ModelEntry, type ModelList, type RemoteModel } from "./protocol";
import { type Role, setModelForRole } from "./settings";
import { inform, inStatusBar } from "./notify";

/** The picker entry that opens "Download Model…" instead (every model picker ends with it). */
export const DOWNLOAD_ITEM_ID = "mlx:download";
export const downloadItem = (): PickItem => ({
  id: DOWNLOAD_ITEM_ID,
  label: "$(cloud-download) Download a model…",
  description: "search the Hugging Face Hub",
  alwaysShow: true,
});

const ROLE_KINDS: Record<Role, string[]> = {
  completion: ["text"],
  chat: ["text", "vision"],
  embedding: ["embedding"],
};

export async function listModels(sidecar: SidecarClient): Promise<ModelEntry[]> {
  return (await sidecar.request(METHODS.list, {})).models;
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

export function modelItem(
  m: Pick<ModelEntry, "id" | "kind" | "size_bytes" | "quantization" | "loaded" | "roles">,
): vscode.QuickPickItem & { id: string } {
  const bits = [m.kind, formatBytes(m.size_bytes), m.quantization ?? "", m.loaded ? "loaded" : "not loaded"];
  return {
    id: m.id,
    label: m.id,
    description: bits.filter(Boolean).join(" · "),
    detail: m.roles.length ? `selected for ${m.roles.join(", ")}` : undefined,
  };
}

type PickItem = vscode.QuickPickItem & { id: string };

/** A picker's items for `role`: the local models of the right kind, then each upstream's models
 * under a separator named for the upstream (in the order the sidecar lists them). Inline
 * completion runs on local models only. */
export function pickerItems(list: Pick<ModelList, "models" | "remote">, role: Role): PickItem[] {
  const items = list.models.filter((m) => ROLE_KINDS[role].includes(m.kind)).map(modelItem);
  if (role === "completion") return [...items, downloadItem()];
  const byUpstream = new Map<string, RemoteModel[]>();
  for (const m of list.remote ?? []) byUpstream.set(m.upstream, [...(byUpstream.get(m.upstream) ?? []), m]);
  for (const [upstream, models] of byUpstream) {
    items.push({ id: "", label: upstream, kind: vscode.QuickPickItemKind.Separator });
    for (const m of models) items.push({ id: m.id, label: m.id, description: `remote · ${upstream}` });
  }
  return [...items, downloadItem()];
}

export function hubItem(
  m: Pick<HubModel, "id" | "size_bytes" | "kind" | "downloads">,
): vscode.QuickPickItem & { id: string } {
  const bits = [formatBytes(m.size_bytes), m.kind, m.downloads ? `${m.downloads.toLocaleString()} downloads` : ""];
  return { id: m.id, label: m.id, description: bits.filter(Boolean).join(" · ") };
}

/** `query`: searched at once (the picker opens with results); `selectFor`: the role the model is
 * selected for once downloaded (a download started from "this model cannot see images"). */
export interface DownloadOptions {
  query?: string;
  selectFor?: Role;
}

async function downloadModel(sidecar: SidecarClient, opts: DownloadOptions = {}): Promise<void> {
  const qp = vscode.window.createQuickPick<vscode.QuickPickItem & { id: string }>();
  qp.title = opts.selectFor ? `MLX: Download a ${opts.selectFor} model` : "MLX: Download Model";
  qp.placeholder = "Search the Hugging Face Hub (e.g. qwen coder 4bit), or type a repo id";
  qp.matchOnDescription = true;
  let timer: NodeJS.Timeout | undefined;
  let searchToken: vscode.CancellationTokenSource | undefined;
  const search = (query: string): void => {
    clearTimeout(timer);
    searchToken?.cancel();
    if (!query.trim()) {
      qp.items = [];
      return;
    }
    timer = setTimeout(async () => {
      const cts = new vscode.CancellationTokenSource();
      searchToken = cts;
      qp.busy = true;
      try {
        const found = (await sidecar.request(METHODS.search, { query, limit: 30 }, cts.token)).models;
        if (cts.token.isCancellationRequested) return;
        const items = found.map(hubItem);
        // A typed repo id is always downloadable, even when the search does not list it.
        if (query.includes("/") && !items.some((i) => i.id === query.trim())) {
          items.unshift({ id: query.trim(), label: query.trim(), description: "download this repo id" });
        }
        qp.items = items;
      } catch (e) {
        if (!cts.token.isCancellationRequested) {
          qp.items = [{ id: "", label: "$(error) Search failed", detail: errorText(e), alwaysShow: true }];
        }
      } finally {
        if (searchToken === cts) qp.busy = false;
      }
    }, 300);
  };
  qp.onDidChangeValue(search);
  if (opts.query) {
    qp.value = opts.query;
    search(opts.query);
  }
  const picked = await new Promise<string | undefined>((resolve) => {
    qp.onDidAccept(() => {
      const id = qp.selectedItems[0]?.id || (qp.value.includes("/") ? qp.value.trim() : "");
      if (id) {
        resolve(id);
        qp.hide();
      }
    });
    qp.onDidHide(() => resolve(undefined));
    qp.show();
  });
  qp.dispose();
  searchToken?.cancel();
  if (!picked) return;
  // A download takes minutes: a cancellable progress notification (and nothing else meanwhile).
  const done = await vscode.window.withProgress(
    { location: vscode.ProgressLocation.Notification, title: `Downloading ${picked}`, cancellable: true },
    async (progress, token) => {
      const workDoneToken = `mlx-download-${Date.now()}`;
      let last = 0;
      const client = sidecar.languageClient;
      const sub = client?.onProgress(WorkDoneProgress.type, workDoneToken, (p) => {
        if (p.kind === "end") return;
        const v = p as WorkDoneProgressBegin | WorkDoneProgressReport;
        const pct = typeof v.percentage === "number" ? v.percentage : undefined;
        progress.report({ message: v.message, increment: pct !== undefined ? pct - last : undefined });
        if (pct !== undefined) last = pct;
      });
      try {
        await sidecar.request(METHODS.download, { repo: picked, workDoneToken }, token);
        return true;
      } catch (e) {
        if (token.isCancellationRequested) void inform(`download:${picked}`, `MLX: download of ${picked} cancelled.`);
        else void vscode.window.showErrorMessage(`MLX: download of ${picked} failed: ${errorText(e)}`);
        return false;
      } finally {
        sub?.dispose();
      }
    },
  );
  if (!done) return;
  if (opts.selectFor) {
    await selectModel(sidecar, opts.selectFor, picked);
    return;
  }
  const use = await inform(`download:${picked}`, `MLX: downloaded ${picked}.`, "Use for chat", "Use for completion");
  if (use) await selectModel(sidecar, use === "Use for chat" ? "chat" : "completion", picked);
}

/** Loads `model` for `role` with progress in the status bar, then one message. */
export async function selectModel(sidecar: SidecarClient, role: Role, model: string): Promise<boolean> {
  return inStatusBar(`MLX: loading ${model} for ${role}`, async () => {
    try {
      await sidecar.request(METHODS.select, { role, model });
      await setModelForRole(role, model);
      void inform(`model:${role}:${model}`, `MLX: ${role} model is now ${model}.`);
      return true;
    } catch (e) {
      void vscode.window.showErrorMessage(`MLX: could not switch to ${model}: ${errorText(e)}`);
      return false;
    }
  });
}

async function pickRole(): Promise<Role | undefined> {
  const picked = await vscode.window.showQuickPick(
    [
      { label: "chat", role: "chat" as Role, description: "model of the chat panel" },
      { label: "completion", role: "completion" as Role, description: "model of inline completion" },
      { label: "embedding", role: "embedding" as Role, description: "model of embeddings" },
    ],
    { title: "MLX: Switch Model — which role?" },
  );
  return picked?.role;
}

async function switchModel(sidecar: SidecarClient, role?: Role): Promise<void> {
  role ??= await pickRole();
  if (!role) return;
  let items: PickItem[];
  try {
    items = pickerItems(await sidecar.request(METHODS.list, {}), role);
  } catch (e) {
    void vscode.window.showErrorMessage(`MLX: could not list models: ${errorText(e)}`);
    return;
  }
  if (!items.some((i) => i.id && i.id !== DOWNLOAD_ITEM_ID)) {
    const download = "Download a model…";
    const remote = "Add Remote Endpoint…";
    const choice = await vscode.window.showInformationMessage(`MLX: no ${role} model installed.`, download, remote);
    if (choice === download) await downloadModel(sidecar, { selectFor: role });
    if (choice === remote) await vscode.commands.executeCommand("mlxSidecar.addRemoteEndpoint");
    return;
  }
  const picked = await vscode.window.showQuickPick(items, { title: `MLX: ${role} model` });
  if (!picked?.id) return;
  if (picked.id === DOWNLOAD_ITEM_ID) return downloadModel(sidecar, { selectFor: role });
  await selectModel(sidecar, role, picked.id);
}

async function deleteModel(sidecar: SidecarClient): Promise<void> {
  let models: ModelEntry[];
  try {
    models = await listModels(sidecar);
  } catch (e) {
    void vscode.window.showErrorMessage(`MLX: could not list models: ${errorText(e)}`);
    return;
  }
  const picked = await vscode.window.showQuickPick(models.map(modelItem), { title: "MLX: Delete Model" });
  if (!picked) return;
  const sure = await vscode.window.showWarningMessage(
    `Delete ${picked.id} from disk?`,
    { modal: true, detail: picked.description },
    "Delete",
  );
  if (sure !== "Delete") return;
  try {
    await sidecar.request(METHODS.remove, { id: picked.id });
    void vscode.window.showInformationMessage(`MLX: deleted ${picked.id}.`);
  } catch (e) {
    void vscode.window.showErrorMessage(`MLX: could not delete ${picked.id}: ${errorText(e)}`);
  }
}

export function registerCommands(sidecar: SidecarClient): vscode.Disposable[] {
  const guard = (fn: () => Promise<void>) => async (): Promise<void> => {
    try {
      await fn();
    } catch (e) {
      void vscode.window.showErrorMessage(`MLX: ${errorText(e)}`);
    }
  };
  return [
    vscode.commands.registerCommand("mlxSidecar.downloadModel", (opts?: DownloadOptions) =>
      guard(() => downloadModel(sidecar, opts ?? {}))(),
    ),
    vscode.commands.registerCommand("mlxSidecar.switchModel", (role?: Role) =>
      guard(() => switchModel(sidecar, role))(),
    ),
    vscode.commands.registerCommand(
      "mlxSidecar.deleteModel",
      guard(() => deleteModel(sidecar)),
    ),
    vscode.commands.registerCommand("mlxSidecar.showLog", () => sidecar.log.show()),
    vscode.commands.registerCommand(
      "mlxSidecar.restartSidecar",
      guard(async () => {
        await sidecar.restart();
        vscode.window.setStatusBarMessage("MLX: sidecar restarted", 3000);
      }),
    ),
  ];
}
