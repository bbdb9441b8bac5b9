// Entry point: wires the sidecar client, chat view, commands and status bar together.
import * as vscode from "vscode";
import { SidecarClient } from "./client";
import { ChatViewProvider } from "./chat-view";
import { registerCommands } from "./commands";
import { RESTART_KEYS, SECTION } from "./settings";
import { SidecarNotStarted } from "./sidecar-path";
import { ChatStore } from "./chat-store";
import { registerLocalChatModels } from "./lm-provider";
import { StatusBar } from "./status-bar";
import { StatusPage } from "./status-page";
import { WorkspaceIndexer } from "./workspace-index";
import { Upstreams } from "./upstreams";

let sidecar: SidecarClient | undefined;

/** What activate() returns: other extensions (and the tests) can reach the running sidecar. */
export interface MlxSidecarApi {
  sidecar: SidecarClient;
  chat: ChatViewProvider;
  indexer: WorkspaceIndexer;
  status: StatusPage;
  /** Whether the local models were offered to VS Code's chat (the host has the lm API). */
  lmRegistered: boolean;
}

export async function activate(context: vscode.ExtensionContext): Promise<MlxSidecarApi> {
  const log = vscode.window.createOutputChannel("MLX Sidecar", { log: true });
  sidecar = new SidecarClient(context.globalStorageUri, log);
  const chat = new ChatViewProvider(context.extensionUri, sidecar, new ChatStore(context.workspaceState));
  const indexer = new WorkspaceIndexer(sidecar);
  const status = new StatusPage(context.extensionUri, sidecar);
  const lm = registerLocalChatModels(sidecar);
  if (lm) context.subscriptions.push(lm);
  context.subscriptions.push(
    indexer,
    status,
    log,
    sidecar,
    chat,
    new StatusBar(sidecar),
    new Upstreams(context, sidecar),
    vscode.window.registerWebviewViewProvider(ChatViewProvider.viewId, chat, {
      webviewOptions: { retainContextWhenHidden: true },
    }),
    vscode.commands.registerCommand("mlxSidecar.newChat", () => chat.newChat()),
    vscode.commands.registerCommand("mlxSidecar.chatHistory", () => chat.showHistory()),
    vscode.commands.registerCommand("mlxSidecar.addSelectionToChat", () => chat.addSelection()),
    vscode.commands.registerCommand("mlxSidecar.addFileToChat", () => chat.addFile()),
    ...registerCommands(sidecar),
    vscode.workspace.onDidChangeConfiguration(async (e) => {
      if (!e.affectsConfiguration(SECTION) || !sidecar) return;
      log.appendLine(
        `Configuration event (restart keys: ${RESTART_KEYS.filter((k) => e.affectsConfiguration(k)).join(", ") || "none"})`,
      );
      if (RESTART_KEYS.some((k) => e.affectsConfiguration(k))) await sidecar.onLaunchSettingsEvent();
      else await sidecar.pushSettings().catch(() => undefined);
    }),
  );
  // Start in the background: activation must not wait for a venv install or model load.
  sidecar.start().catch((e) => {
    if (e instanceof SidecarNotStarted && e.told) return; // the user was asked and said no
    void vscode.window
      .showErrorMessage(
        `MLX Sidecar could not start: ${e instanceof Error ? e.message : String(e)}`,
        "Show Log",
        "Open Settings",
      )
      .then((choice) => {
        if (choice === "Show Log") log.show();
        if (choice === "Open Settings") void vscode.commands.executeCommand("workbench.action.openSettings", SECTION);
      });
  });
  return { sidecar, chat, indexer, status, lmRegistered: lm !== undefined };
}

export async function deactivate(): Promise<void> {
  await sidecar?.stop();
}
