// The chat panel's model picker: the models it lists (local ones, then remote "UPSTREAM/MODEL"
// ones), the one requests go to, and switching to another (one click from "this model cannot see
// images").
import * as vscode from "vscode";
import type { SidecarClient } from "./client";
import { errorText } from "./chat-stream";
import { METHODS, type ModelEntry } from "./protocol";
import { modelSettings, setModelForRole } from "./settings";
import { inform, inStatusBar } from "./notify";

export class ChatModels {
  /** The local chat and vision models, as the sidecar last listed them. */
  models: ModelEntry[] = [];
  private currentModel = "";
  /** The model this panel switched to, until the setting says so or changes to another: a
   * settings write lands some time after it resolves, and the next Send must not miss it. */
  private picked: { model: string; over: string | null } | undefined;

  constructor(
    private readonly sidecar: SidecarClient,
    private readonly post: (message: unknown) => void,
    /** whether the panel is open (the picker is only asked for then) */
    private readonly open: () => boolean,
  ) {}

  /** Tells the webview's picker the models and the one in use. */
  async refresh(): Promise<void> {
    if (!this.open() || this.sidecar.state !== "running") return;
    try {
      const list = await this.sidecar.request(METHODS.list, {});
      const local = list.models.filter((m) => m.kind !== "embedding");
      const current = this.chosen() ?? local.find((m) => m.roles.includes("chat"))?.id ?? "";
      this.models = local;
      this.currentModel = current;
      // Remote models ("UPSTREAM/MODEL") after the local ones, grouped by upstream.
      const remote = (list.remote ?? []).map((m) => m.id);
      this.post({ type: "models", models: [...local.map((m) => m.id), ...remote], current });
    } catch {
      // the picker keeps what it had
    }
  }

  /** Picked in the webview's picker. */
  async choose(model: string): Promise<void> {
    this.pick(model);
    // A remote model ("UPSTREAM/MODEL") is named by each request; the chat role (the
    // setting) is the sidecar's local model, which it checks and would warn about.
    if (this.models.some((x) => x.id === model)) await setModelForRole("chat", model);
  }

  private pick(model: string): void {
    this.picked = { model, over: modelSettings().chat };
  }

  /** The model picked here (until the setting changes), else the setting's; undefined: neither. */
  private chosen(): string | undefined {
    if (this.picked && modelSettings().chat !== this.picked.over) this.picked = undefined;
    return this.picked?.model ?? modelSettings().chat ?? undefined;
  }

  /** The model requests go to: the one picked here, else the setting, else the sidecar's. */
  chatModel(): string {
    return this.chosen() ?? this.currentModel;
  }

  /** The model a request names: undefined when neither this panel nor the setting chose one
   * (the sidecar's chat model answers). */
  requestModel(): string | undefined {
    return this.picked || modelSettings().chat ? this.chatModel() : undefined;
  }

  /** An installed vision model's id, if there is one. */
  visionModel(): string | undefined {
    return this.models.find((m) => m.kind === "vision")?.id;
  }

  /** Select `model` for chat (loads it); none: the command's picker. */
  async switchTo(model?: string): Promise<void> {
    if (!model) {
      await vscode.commands.executeCommand("mlxSidecar.switchModel", "chat");
      return;
    }
    try {
      await inStatusBar(`MLX: loading ${model} for chat`, () =>
        this.sidecar.request(METHODS.select, { role: "chat", model }),
      );
      this.pick(model);
      await setModelForRole("chat", model);
      this.currentModel = model;
      await this.refresh();
      void inform(`model:chat:${model}`, `MLX: chat model is now ${model}.`);
    } catch (e) {
      this.post({ type: "error", message: `Could not switch to ${model}: ${errorText(e)}` });
    }
  }
}
