// A code-server with the packaged .vsix installed, opened in headless chromium (playwright-core),
// for one spec file: its own user data, extensions, workspace, daemon runtime dir and index dir,
// all under one temp dir that close() removes.
// Needs: CODE_SERVER_NODE (node 24), CODE_SERVER_ENTRY (code-server's out/node/entry.js),
// SIDECAR_PYTHON (python with the sidecar), MLX_SIDECAR_MODELS_DIR, and the built .vsix.
import { spawn, execFileSync } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = path.dirname(fileURLToPath(import.meta.url));
export const root = path.resolve(here, "../..");
export const repo = path.resolve(root, "..");
export const artifacts = path.join(root, "test-artifacts");
export const vsix = process.env.VSIX ?? path.join(root, "mlx-sidecar.vsix");
export const node =
  process.env.CODE_SERVER_NODE ?? path.join(os.homedir(), ".cache/mlx-sidecar-ci/node-24.9.0/bin/node");
export const entry =
  process.env.CODE_SERVER_ENTRY ??
  path.join(os.homedir(), ".cache/mlx-sidecar-ci/code-server-4.139.1/node_modules/code-server/out/node/entry.js");
export const python = process.env.SIDECAR_PYTHON ?? path.join(repo, ".venv/bin/python");
export const sharedModels = process.env.MLX_SIDECAR_MODELS_DIR ?? path.join(repo, ".cache/test-models");
const browserPath = process.env.CHROMIUM ?? "/usr/bin/chromium";

/** The settings every spec starts from (quiet workbench, the sidecar from SIDECAR_PYTHON). */
export function baseSettings(modelsDir) {
  return {
    "mlxSidecar.pythonPath": python,
    "mlxSidecar.modelsDir": modelsDir,
    "mlxSidecar.completion.enabled": false,
    "mlxSidecar.chat.maxTokens": 16,
    "mlxSidecar.chat.temperature": 0,
    "workbench.startupEditor": "none",
    "workbench.tips.enabled": false,
    "workbench.welcomePage.walkthroughs.openOnInstall": false,
    "workbench.secondarySideBar.defaultVisibility": "hidden",
    "security.workspace.trust.enabled": false,
    "telemetry.telemetryLevel": "off",
    "extensions.ignoreRecommendations": true,
    "chat.disableAIFeatures": true,
    "files.autoSave": "off",
    "window.restoreWindows": "none",
  };
}

function findFiles(dir, pattern) {
  const found = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile() && pattern.test(e.name)) found.push(path.join(e.parentPath ?? e.path, e.name));
  }
  return found;
}

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** Starts code-server + chromium. `settings(modelsDir)`: the user settings; `models`: the model
 * folders of MLX_SIDECAR_MODELS_DIR this run's own models dir links to; `env`: more environment. */
export async function launch({ name, settings, models, env = {} }) {
  if (!fs.existsSync(vsix)) throw new Error(`build the .vsix first (${vsix})`);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), `mlx-e2e-${name}-`));
  const userData = path.join(tmp, "user-data");
  const extDir = path.join(tmp, "extensions");
  const workspace = path.join(tmp, "workspace");
  const modelsDir = path.join(tmp, "models");
  // Short: the daemon's socket path must fit in 108 bytes.
  const runtimeDir = fs.mkdtempSync("/tmp/mlxd-e2e-");
  fs.mkdirSync(path.join(userData, "User"), { recursive: true });
  fs.mkdirSync(workspace, { recursive: true });
  fs.mkdirSync(modelsDir);
  for (const m of models) {
    const src = path.join(sharedModels, m);
    if (!fs.existsSync(src)) throw new Error(`${m} is not in ${sharedModels} (scripts/ci.sh builds the tests' models)`);
    fs.symlinkSync(src, path.join(modelsDir, m));
  }
  const settingsFile = path.join(userData, "User", "settings.json");
  fs.writeFileSync(settingsFile, JSON.stringify(settings(modelsDir), null, 2));
  execFileSync(node, [entry, "--user-data-dir", userData, "--extensions-dir", extDir, "--install-extension", vsix], {
    stdio: "inherit",
  });
  const port = await freePort();
  const serverLog = [];
  // Its own process group, so close() ends code-server's helpers with it; the window's sidecar is
  // the default daemon in this run's runtime dir, which exits 2 s after the window closes.
  const server = spawn(
    node,
    [
      entry,
      "--auth",
      "none",
      "--bind-addr",
      `127.0.0.1:${port}`,
      "--user-data-dir",
      userData,
      "--extensions-dir",
      extDir,
      "--disable-telemetry",
      "--disable-update-check",
      "--disable-workspace-trust",
      "--disable-getting-started-override",
      workspace,
    ],
    {
      stdio: ["ignore", "pipe", "pipe"],
      env: {
        ...process.env,
        MLX_SIDECAR_MODELS_DIR: modelsDir,
        MLX_SIDECAR_DAEMON_RUNTIME_DIR: runtimeDir,
        MLX_SIDECAR_DAEMON_GRACE_S: "2",
        MLX_SIDECAR_WORKSPACE_INDEX_DIR: path.join(tmp, "workspace-index"),
        XDG_STATE_HOME: path.join(tmp, "state"),
        ...env,
      },
      detached: true,
    },
  );
  await new Promise((resolve, reject) => {
    const onData = (d) => {
      serverLog.push(d.toString());
      if (/HTTP server listening/.test(d.toString())) resolve();
    };
    server.stdout.on("data", onData);
    server.stderr.on("data", onData);
    server.on("exit", (code) => reject(new Error(`code-server exited (${code}): ${serverLog.join("")}`)));
  });
  const browser = await chromium.launch({
    executablePath: browserPath,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu"],
  });
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: `http://127.0.0.1:${port}` });
  const page = await context.newPage();
  await page.goto(`http://127.0.0.1:${port}/?folder=${encodeURIComponent(workspace)}`);
  await page.locator(".monaco-workbench").waitFor({ timeout: 120_000 });

  const h = {
    tmp,
    userData,
    workspace,
    modelsDir,
    runtimeDir,
    settingsFile,
    page,
    serverLog,
    /** Changes user settings as the user would (VS Code notices the file). */
    updateSettings(patch) {
      const now = JSON.parse(fs.readFileSync(settingsFile, "utf8"));
      fs.writeFileSync(settingsFile, JSON.stringify({ ...now, ...patch }, null, 2));
    },
    async shot(file) {
      fs.mkdirSync(artifacts, { recursive: true });
      const out = path.join(artifacts, `${file}.png`);
      await page.screenshot({ path: out });
      console.log(`screenshot: ${out}`);
      return out;
    },
    /** Runs a step; on failure keeps a screenshot and the server log tail. */
    async step(stepName, fn) {
      try {
        return await fn();
      } catch (e) {
        await h.shot(`FAILED-${name}-${stepName}`).catch(() => undefined);
        console.log(serverLog.join("").slice(-4000));
        console.log(`settings.json now: ${fs.readFileSync(settingsFile, "utf8")}`);
        for (const log of findFiles(userData, /MLX Sidecar\.log$/))
          console.log(`--- ${log}\n${fs.readFileSync(log, "utf8").slice(-4000)}`);
        throw e;
      }
    },
    async runCommand(title) {
      await page.keyboard.press("F1");
      const input = page.locator(".quick-input-widget input");
      await input.waitFor({ state: "visible", timeout: 20_000 });
      await input.fill(`>${title}`);
      await page.locator(".quick-input-list .monaco-list-row", { hasText: title }).first().waitFor({ timeout: 20_000 });
      await page.keyboard.press("Enter");
    },
    /** The frame of a webview that has `selector` (the chat: "#input"; the dashboard: "#dashboard"). */
    async frameWith(selector, timeoutMs = 60_000) {
      const t0 = Date.now();
      while (Date.now() - t0 < timeoutMs) {
        for (const f of page.frames()) {
          if (
            (await f
              .locator(selector)
              .count()
              .catch(() => 0)) > 0
          )
            return f;
        }
        await page.waitForTimeout(300);
      }
      throw new Error(`no webview with ${selector}`);
    },
    async openChat() {
      await page.locator('.activitybar [aria-label^="MLX Chat"]').first().click();
      return h.frameWith("#input");
    },
    async close() {
      await browser.close().catch(() => undefined);
      try {
        process.kill(-server.pid, "SIGTERM");
      } catch {
        // already gone
      }
      // the daemon leaves 2 s after the window; it must not outlive the test
      await new Promise((r) => setTimeout(r, 3000));
      fs.rmSync(tmp, { recursive: true, force: true });
      fs.rmSync(runtimeDir, { recursive: true, force: true });
    },
  };
  return h;
}
