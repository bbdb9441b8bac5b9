// The machine's one sidecar (`mlx-sidecar daemon`): where its socket is, the token handshake, and
// starting it when none answers. Mirrors sidecar/daemon/paths.py, auth.py and client.py.
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { PassThrough, type Readable } from "node:stream";

const RESPAWN_MS = 3000;
const POLL_MS = 100;
const HANDSHAKE_MS = 10_000;

/** $MLX_SIDECAR_DAEMON_RUNTIME_DIR, else $XDG_RUNTIME_DIR/mlx-sidecar, else ~/.cache/mlx-sidecar/run. */
export function runtimeDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.MLX_SIDECAR_DAEMON_RUNTIME_DIR) return env.MLX_SIDECAR_DAEMON_RUNTIME_DIR;
  const xdg = env.XDG_RUNTIME_DIR;
  if (xdg && fs.existsSync(xdg)) return path.join(xdg, "mlx-sidecar");
  return path.join(os.homedir(), ".cache", "mlx-sidecar", "run");
}

export const socketPath = (dir: string) => path.join(dir, "sidecar.sock");

export class DaemonRefused extends Error {}

function readToken(dir: string): string {
  try {
    return fs.readFileSync(path.join(dir, "token"), "utf8").trim();
  } catch {
    return "";
  }
}

export interface DaemonConnection {
  reader: Readable;
  writer: net.Socket;
}

/** Connects and presents the token; rejects with the socket error (ENOENT, ECONNREFUSED: none runs)
 * or DaemonRefused. What follows the `ok` line goes through a PassThrough, which holds it until the
 * language client reads: a socket left flowing without a reader would drop what the daemon sends. */
export function connectDaemon(dir: string): Promise<DaemonConnection> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(socketPath(dir));
    let buffer = Buffer.alloc(0);
    const timer = setTimeout(() => fail(new DaemonRefused("the daemon did not answer the token")), HANDSHAKE_MS);
    const fail = (e: Error) => {
      clearTimeout(timer);
      socket.destroy();
      reject(e);
    };
    const onData = (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      const end = buffer.indexOf(10);
      if (end < 0) return;
      clearTimeout(timer);
      socket.off("data", onData);
      socket.off("error", fail);
      socket.off("close", onClose);
      const line = buffer.subarray(0, end).toString();
      if (line !== "ok") return fail(new DaemonRefused(`the daemon refused this window: ${line}`));
      const reader = new PassThrough();
      if (buffer.length > end + 1) reader.write(buffer.subarray(end + 1));
      socket.pipe(reader);
      resolve({ reader, writer: socket });
    };
    socket.once("connect", () => socket.write(`${readToken(dir)}\n`));
    socket.on("data", onData);
    socket.on("error", fail);
    const onClose = () => fail(new DaemonRefused("the daemon closed the connection"));
    socket.once("close", onClose);
  });
}

/** Starts the daemon detached (it outlives this window), its output in the runtime dir's log. */
export function startDaemon(command: string, args: string[], env: NodeJS.ProcessEnv, dir: string): void {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const logPath = path.join(dir, "daemon.log");
  try {
    // Past 1 MiB the log becomes daemon.log.1, as the Python client does (sidecar/daemon/paths.py).
    if (fs.statSync(logPath).size > 1 << 20) fs.renameSync(logPath, `${logPath}.1`);
  } catch {
    // no log yet
  }
  const log = fs.openSync(logPath, "a", 0o600);
  try {
    spawn(command, args, { detached: true, stdio: ["ignore", log, log], env }).unref();
  } finally {
    fs.closeSync(log);
  }
}

const notRunning = (e: unknown) => {
  const code = (e as NodeJS.ErrnoException).code;
  return code === "ENOENT" || code === "ECONNREFUSED";
};

/** A connection to the running daemon, starting one (again every few seconds) until `timeoutMs`. */
export async function connectOrStart(
  command: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  timeoutMs = 120_000,
): Promise<DaemonConnection> {
  const dir = runtimeDir(env);
  const t0 = Date.now();
  let spawnedAt: number | undefined;
  for (;;) {
    try {
      return await connectDaemon(dir);
    } catch (e) {
      if (!notRunning(e)) throw e;
    }
    const now = Date.now();
    if (now - t0 > timeoutMs) {
      throw new Error(`No sidecar daemon answered on ${socketPath(dir)}; see ${path.join(dir, "daemon.log")}.`);
    }
    if (spawnedAt === undefined || now - spawnedAt > RESPAWN_MS) {
      startDaemon(command, args, env, dir);
      spawnedAt = now;
    }
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

/** The daemon's pid from its pid file, if it runs. */
export function daemonPid(dir: string): number | undefined {
  try {
    const pid = Number(fs.readFileSync(path.join(dir, "daemon.pid"), "utf8").trim());
    process.kill(pid, 0);
    return pid;
  } catch {
    return undefined;
  }
}

/** Ends an unhealthy daemon (SIGTERM, then SIGKILL after `graceMs`): the windows' restart starts a new one. */
export function killDaemon(dir: string, graceMs = 5000): boolean {
  const pid = daemonPid(dir);
  if (pid === undefined) return false;
  process.kill(pid, "SIGTERM");
  setTimeout(() => {
    if (daemonPid(dir) === pid) process.kill(pid, "SIGKILL");
  }, graceMs).unref();
  return true;
}
