// Command palette: download, switch, delete models; restart the sidecar (status: status-page.ts).
import * as vscode from "vscode";
import { WorkDoneProgress, type WorkDoneProgressBegin, type WorkDoneProgressReport } from "vscode-languageclient/node";
import type { SidecarClient } from "./client";
import {
  formatBytes,
  type HubModel,
  METHODS,
  type ModelEntry,
  type ModelList,
  type RemoteModel,
  type SearchResults,
} from "./protocol";
import { type Role, setModelForRole } from "./settings";

const ROLE_KINDS: Record<Role, string[]> = {
  completion: ["text"],
  chat: ["text", "vision"],
  embedding: ["embedding"],
};

export async function listModels(sidecar: SidecarClient): Promise<ModelEntry[]> {
  return (await sidecar.request<ModelList>(METHODS.list, {})).models;
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
  if (role === "completion") return items;
  const byUpstream = new Map<string, RemoteModel[]>();
  for (const m of list.remote ?? []) byUpstream.set(m.upstream, [...(byUpstream.get(m.upstream) ?? []), m]);
  for (const [upstream, models] of byUpstream) {
    items.push({ id: "", label: upstream, kind: vscode.QuickPickItemKind.Separator });
    for (const m of models) items.push({ id: m.id, label: m.id, description: `remote · ${upstream}` });
  }
  return items;
}

export function hubItem(
  m: Pick<HubModel, "id" | "size_bytes" | "kind" | "downloads">,
): vscode.QuickPickItem & { id: string } {
  const bits = [formatBytes(m.size_bytes), m.kind, m.downloads ? `${m.downloads.toLocaleString()} downloads` : ""];
  return { id: m.id, label: m.id, description: bits.filter(Boolean).join(" · ") };
}

async function downloadModel(sidecar: SidecarClient): Promise<void> {
  const qp = vscode.window.createQuickPick<vscode.QuickPickItem & { id: string }>();
  qp.title = "MLX: Download Model";
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
        const found = (await sidecar.request<SearchResults>(METHODS.search, { query, limit: 30 }, cts.token)).models;
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
  await vscode.window.withProgress(
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
        void vscode.window.showInformationMessage(`MLX: downloaded ${picked}.`);
      } catch (e) {
        if (token.isCancellationRequested)
          void vscode.window.showInformationMessage(`MLX: download of ${picked} cancelled.`);
        else void vscode.window.showErrorMessage(`MLX: download of ${picked} failed: ${errorText(e)}`);
      } finally {
        sub?.dispose();
      }
    },
  );
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
    items = pickerItems(await sidecar.request<ModelList>(METHODS.list, {}), role);
  } catch (e) {
    void vscode.window.showErrorMessage(`MLX: could not list models: ${errorText(e)}`);
    return;
  }
  if (!items.some((i) => i.id)) {
    void vscode.window.showInformationMessage(
      `MLX: no ${role} model installed. Use "MLX: Download Model…" or "MLX: Add Remote Endpoint…".`,
    );
    return;
  }
  const picked = await vscode.window.showQuickPick(items, { title: `MLX: ${role} model` });
  if (!picked?.id) return;
  await vscode.window.withProgress(
    { location: vscode.ProgressLocation.Notification, title: `Loading ${picked.id} for ${role}…` },
    async () => {
      try {
        await sidecar.request(METHODS.select, { role, model: picked.id });
        await setModelForRole(role, picked.id);
        vscode.window.setStatusBarMessage(`MLX: ${role} model is now ${picked.id}`, 5000);
        void vscode.window.showInformationMessage(`MLX: ${role} model is now ${picked.id}.`);
      } catch (e) {
        void vscode.window.showErrorMessage(`MLX: could not switch to ${picked.id}: ${errorText(e)}`);
      }
    },
  );
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
    vscode.commands.registerCommand(
      "mlxSidecar.downloadModel",
      guard(() => downloadModel(sidecar)),
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
