// Owns the language client: starts the sidecar, restarts it after a crash (with backoff),
// forwards settings, and exposes typed requests to the rest of the extension.
import * as vscode from "vscode";
import {
  CloseAction,
  type CloseHandlerResult,
  DidChangeConfigurationNotification,
  ErrorAction,
  type ErrorHandlerResult,
  LanguageClient,
  type LanguageClientOptions,
  type ServerOptions,
  State,
} from "vscode-languageclient/node";
import { type ChatDelta, METHODS, type ModelsChanged, type Requests } from "./protocol";
import { connectOrStart, killDaemon, runtimeDir, socketPath } from "./daemon";
import { daemonArgs, resolveSidecar, type SidecarCommand, sidecarEnv } from "./sidecar-path";
import { completionSettings, launchSettings, type LaunchSettings, SECTION, sidecarOptions } from "./settings";

/** Who answered the last reply: an upstream's name (and why a local request went there). */
export interface ServedBy {
  upstream: string | null;
  fallbackReason: string | null;
}

export type SidecarState = "starting" | "running" | "restarting" | "stopped" | "failed";

/** Backoff before restart n (1-based): 1 s, 2 s, 4 s, … capped at 30 s. */
export function backoffMs(attempt: number): number {
  return Math.min(1000 * 2 ** Math.max(0, attempt - 1), 30_000);
}

export const MAX_CRASHES = 5;
/** Requests that make the model work (shown as "busy"); status and model lists are not. */
const WORK_METHODS = new Set<string>([METHODS.chat, METHODS.embed, METHODS.download, METHODS.load]);
const CRASH_WINDOW_MS = 3 * 60_000;

/** The status bar's name for a request's work: the chat model it names, else its role. */
export function workLabel(method: string, params: unknown): string {
  const model = (params as { model?: unknown } | undefined)?.model;
  if (method === METHODS.chat) return typeof model === "string" && model ? model : "chat";
  if (method === METHODS.embed) return "embedding";
  if (method === METHODS.download) return "download";
  return "load";
}
const HEALTH_POLL_MS = 30_000;
/** The health fields of mlx/status (EngineStatus.healthy / health_reason, from the watchdog). */
type EngineHealth = { healthy?: boolean; health_reason?: string | null };

function sleep(ms: number, token?: vscode.CancellationToken): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    token?.onCancellationRequested(() => {
      clearTimeout(t);
      resolve();
    });
  });
}

export class SidecarClient implements vscode.Disposable {
  private client: LanguageClient | undefined;
  private crashes: number[] = [];
  private stopping = false;
  private restartTimer: NodeJS.Timeout | undefined;
  private clientDisposables: vscode.Disposable[] = [];
  private inflight = 0;
  private starting: Promise<void> | undefined;
  private healthTimer: NodeJS.Timeout | undefined;
  private toldDaemonLost = false;
  /** The daemon's runtime dir in daemon mode; undefined in stdio mode. */
  daemonDir: string | undefined;
  command: SidecarCommand | undefined;
  /** The launch settings the running sidecar was started with (JSON), to tell a real change of
   * them from a settings event that changed nothing of ours (VS Code rewriting the file). */
  private launched: string | undefined;
  private settleTimer: NodeJS.Timeout | undefined;
  lastError: string | undefined;
  state: SidecarState = "stopped";

  private readonly stateEmitter = new vscode.EventEmitter<SidecarState>();
  readonly onDidChangeState = this.stateEmitter.event;
  private readonly deltaEmitter = new vscode.EventEmitter<ChatDelta>();
  readonly onChatDelta = this.deltaEmitter.event;
  private readonly modelsEmitter = new vscode.EventEmitter<ModelsChanged>();
  readonly onModelsChanged = this.modelsEmitter.event;
  private readonly servedEmitter = new vscode.EventEmitter<ServedBy>();
  /** Fires after each chat reply: which upstream served it (none: the local engine). */
  readonly onReplyServed = this.servedEmitter.event;
  private readonly busyEmitter = new vscode.EventEmitter<boolean>();
  /** Fires when a request starts or ends: whether any runs (`running` says which). */
  readonly onBusy = this.busyEmitter.event;

  constructor(
    private readonly storage: vscode.Uri,
    readonly log: vscode.LogOutputChannel,
  ) {}

  get busy(): boolean {
    return this.inflight > 0;
  }

  private setState(s: SidecarState): void {
    this.state = s;
    this.stateEmitter.fire(s);
  }

  start(): Promise<void> {
    this.starting ??= this.doStart().finally(() => {
      this.starting = undefined;
    });
    return this.starting;
  }

  private async doStart(): Promise<void> {
    this.stopping = false;
    this.setState("starting");
    try {
      const launch = launchSettings();
      this.launched = JSON.stringify(launch);
      this.log.appendLine(`Launch settings: ${this.launched}`);
      this.command = await resolveSidecar(
        launch,
        this.storage,
        this.log,
        (why) => this.askToInstall(why),
        launchSettings,
      );
      this.log.appendLine(
        `Starting sidecar (${this.command.source}): ${this.command.command} ${this.command.args.join(" ")}`,
      );
      const env = sidecarEnv(launch);
      this.daemonDir = launch.mode === "daemon" ? runtimeDir(env) : undefined;
      const serverOptions = this.serverOptions(this.command, env);
      const client = new LanguageClient(SECTION, "MLX Sidecar", serverOptions, this.clientOptions());
      this.client = client;
      this.clientDisposables.push(
        client.onNotification(METHODS.chatDelta, (p: ChatDelta) => this.deltaEmitter.fire(p)),
        client.onNotification(METHODS.changed, (p: ModelsChanged) => this.modelsEmitter.fire(p)),
      );
      await client.start();
      // start() can resolve although the process already died (the close handler then restarts).
      if (this.client !== client || client.state !== State.Running) {
        throw new Error("the sidecar process exited during startup");
      }
      this.lastError = undefined;
      this.toldDaemonLost = false;
      this.setState("running");
      if (this.daemonDir) this.watchHealth(client, this.daemonDir);
    } catch (e) {
      this.lastError = e instanceof Error ? e.message : String(e);
      this.log.appendLine(`Sidecar failed to start: ${this.lastError}`);
      if (this.state === "starting") this.setState("failed");
      throw e;
    }
  }

  /** Nothing is installed without the user's yes: says why it is needed and asks. */
  private async askToInstall(why: string): Promise<boolean> {
    const install = "Install mlx-sidecar";
    const choice = await vscode.window.showWarningMessage(
      `MLX Sidecar: ${why} Install it into a Python environment of the extension's own (about a minute, ~300 MB)?`,
      install,
      "Open Settings",
    );
    if (choice === "Open Settings") {
      void vscode.commands.executeCommand("workbench.action.openSettings", `${SECTION}.pythonPath`);
    }
    return choice === install;
  }

  /** After a settings event that may touch how the sidecar starts: waits for the settings to
   * settle, then restarts only if the launch settings really differ from the running sidecar's
   * (else the other settings are sent to it). VS Code rewrites settings.json at startup when it
   * migrates a setting, and a read in the middle of that must not restart anything. */
  onLaunchSettingsEvent(settleMs = 750): Promise<void> {
    clearTimeout(this.settleTimer);
    return new Promise((resolve) => {
      this.settleTimer = setTimeout(() => {
        const now = JSON.stringify(launchSettings());
        this.log.appendLine(`Settings changed; launch settings now: ${now}`);
        const restart = this.launched !== undefined && now !== this.launched;
        if (restart) this.log.appendLine("Launch settings changed; restarting the sidecar.");
        void (restart ? this.restart() : this.pushSettings()).catch(() => undefined).then(resolve);
      }, settleMs);
    });
  }

  /** The launch settings this sidecar was started with. */
  get launchedWith(): LaunchSettings | undefined {
    return this.launched ? (JSON.parse(this.launched) as LaunchSettings) : undefined;
  }

  /** Daemon mode: a socket to the machine's sidecar (started detached when none answers);
   * stdio mode: a process of this window's own. */
  private serverOptions(command: SidecarCommand, env: NodeJS.ProcessEnv): ServerOptions {
    if (!this.daemonDir) return { command: command.command, args: command.args, options: { env } };
    const args = daemonArgs(command);
    this.log.appendLine(
      `Connecting to the shared sidecar on ${socketPath(this.daemonDir)} (if none runs: ${args.join(" ")})`,
    );
    return () => connectOrStart(command.command, args, env);
  }

  /** Polls mlx/status; an engine that says it is unhealthy (a stuck or dead worker) gets its daemon
   * ended, and the close handler below starts a new one. */
  private watchHealth(client: LanguageClient, dir: string): void {
    clearInterval(this.healthTimer);
    this.healthTimer = setInterval(() => {
      if (this.client !== client || client.state !== State.Running) return clearInterval(this.healthTimer);
      void client.sendRequest<EngineHealth>(METHODS.status, {}).then(
        (status) => {
          if (status.healthy !== false) return;
          this.log.error(`The sidecar is unhealthy (${status.health_reason ?? "no reason given"}); restarting it.`);
          this.tellDaemonLost(`the shared sidecar is unhealthy (${status.health_reason ?? "?"}); restarting it.`);
          killDaemon(dir);
        },
        () => undefined,
      );
    }, HEALTH_POLL_MS);
  }

  /** One message per outage, not one per retry. */
  private tellDaemonLost(what: string): void {
    if (this.toldDaemonLost) return;
    this.toldDaemonLost = true;
    void vscode.window.showWarningMessage(`MLX Sidecar: ${what}`);
  }

  private clientOptions(): LanguageClientOptions {
    return {
      documentSelector: [{ scheme: "file" }, { scheme: "untitled" }],
      outputChannel: this.log,
      initializationOptions: sidecarOptions(),
      // Our own close handler restarts with backoff; no retry prompt from the client.
      initializationFailedHandler: (error) => {
        this.log.error(`Sidecar initialization failed: ${error instanceof Error ? error.message : String(error)}`);
        return false;
      },
      errorHandler: {
        error: (): ErrorHandlerResult => ({ action: ErrorAction.Continue, handled: true }),
        closed: (): CloseHandlerResult => this.onClosed(),
      },
      middleware: {
        provideInlineCompletionItems: async (document, position, context, token, next) => {
          const opts = completionSettings();
          if (!opts.enabled) return null;
          // Debounce: VS Code cancels this token when the user types again.
          await sleep(opts.debounceMs, token);
          if (token.isCancellationRequested) return null;
          return this.tracked(() => Promise.resolve(next(document, position, context, token)), "completion");
        },
      },
    };
  }

  private onClosed(): CloseHandlerResult {
    if (this.stopping) return { action: CloseAction.DoNotRestart, handled: true };
    const now = Date.now();
    this.crashes = [...this.crashes.filter((t) => now - t < CRASH_WINDOW_MS), now];
    const attempt = this.crashes.length;
    if (attempt > MAX_CRASHES) {
      this.lastError = `The sidecar stopped ${attempt} times in 3 minutes; not restarting it.`;
      this.setState("failed");
      void vscode.window
        .showErrorMessage(`MLX Sidecar: ${this.lastError} See the log for why.`, "Show Log", "Restart")
        .then((choice) => {
          if (choice === "Show Log") this.log.show();
          if (choice === "Restart") void this.restart();
        });
      return { action: CloseAction.DoNotRestart, handled: true };
    }
    if (this.daemonDir) this.tellDaemonLost("the shared sidecar stopped; reconnecting (a new one starts if needed).");
    const wait = backoffMs(attempt);
    this.log.appendLine(
      `Sidecar exited unexpectedly; restarting in ${wait / 1000} s (attempt ${attempt}/${MAX_CRASHES}).`,
    );
    this.setState("restarting");
    this.restartTimer = setTimeout(() => void this.restart(false).catch(() => undefined), wait);
    return { action: CloseAction.DoNotRestart, handled: true };
  }

  async stop(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.restartTimer);
    clearTimeout(this.settleTimer);
    clearInterval(this.healthTimer);
    const client = this.client;
    this.client = undefined;
    for (const d of this.clientDisposables.splice(0)) d.dispose();
    if (client) {
      try {
        if (client.state !== State.Stopped) await client.stop(5000);
      } catch (e) {
        this.log.appendLine(`Stopping the sidecar: ${e instanceof Error ? e.message : String(e)}`);
      }
      await client.dispose().catch(() => undefined);
    }
    this.setState("stopped");
  }

  /** Stops and starts the sidecar; a user-requested restart also forgets earlier crashes. */
  async restart(byUser = true): Promise<void> {
    if (byUser) this.crashes = [];
    // A start in flight finishes first: else start() below would hand back that start, made
    // with the settings of before.
    await this.starting?.catch(() => undefined);
    await this.stop();
    await this.start();
  }

  /** Sends the current settings to the running sidecar. */
  async pushSettings(): Promise<void> {
    if (!this.client || this.state !== "running") return;
    await this.client.sendNotification(DidChangeConfigurationNotification.type, {
      settings: { [SECTION]: sidecarOptions() },
    });
  }

  /** What runs now, one entry per request in flight: a role ("chat", "completion", "embedding")
   * or a model id (a chat request that names its model), or "download" / "load". */
  private readonly work: string[] = [];

  get running(): readonly string[] {
    return this.work;
  }

  private async tracked<T>(fn: () => Promise<T>, what: string): Promise<T> {
    this.work.push(what);
    this.inflight++;
    this.busyEmitter.fire(true); // also when more starts: what runs changed
    try {
      return await fn();
    } finally {
      this.work.splice(this.work.indexOf(what), 1);
      this.busyEmitter.fire(--this.inflight > 0);
    }
  }

  /** Send an `mlx/*` request: its params and result are typed by `Requests` (protocol.ts,
   * generated from the sidecar's models). */
  async request<M extends keyof Requests>(
    method: M,
    params: Requests[M]["params"],
    token?: vscode.CancellationToken,
  ): Promise<Requests[M]["result"]> {
    type R = Requests[M]["result"];
    if (this.starting) await this.starting;
    const client = this.client;
    if (!client || this.state !== "running") {
      throw new Error(`The MLX sidecar is not running (${this.state}${this.lastError ? `: ${this.lastError}` : ""}).`);
    }
    // Pass no token rather than `undefined`: jsonrpc would send [params, null] by position.
    const send = () => (token ? client.sendRequest<R>(method, params, token) : client.sendRequest<R>(method, params));
    return WORK_METHODS.has(method) ? this.tracked(send, workLabel(method, params)) : send();
  }

  noteReply(upstream: string | null | undefined, fallbackReason?: string | null): void {
    this.servedEmitter.fire({ upstream: upstream ?? null, fallbackReason: fallbackReason ?? null });
  }

  /** The underlying client (for $/progress subscriptions). */
  get languageClient(): LanguageClient | undefined {
    return this.client;
  }

  dispose(): void {
    void this.stop();
    this.stateEmitter.dispose();
    this.deltaEmitter.dispose();
    this.modelsEmitter.dispose();
    this.busyEmitter.dispose();
    this.servedEmitter.dispose();
  }
}
