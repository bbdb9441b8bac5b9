// End to end in a real VS Code (code-server) driven by playwright-core in Debian's chromium:
// inline completion (ghost text + Tab), the chat view (streamed reply), "MLX: Switch Model…",
// an image pasted into the chat reaching the tiny vision model, "@workspace" citing the right file
// of the fixture repo, the status dashboard.
// Needs: CODE_SERVER_NODE (node 24), CODE_SERVER_ENTRY (code-server's out/node/entry.js),
// SIDECAR_PYTHON (python with the sidecar), MLX_SIDECAR_MODELS_DIR, and the built .vsix.
// Screenshots go to editor-extension/test-artifacts/.
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../..");
const artifacts = path.join(root, "test-artifacts");
const vsix = process.env.VSIX ?? path.join(root, "mlx-sidecar.vsix");
const node = process.env.CODE_SERVER_NODE ?? path.join(os.homedir(), ".cache/mlx-sidecar-ci/node-24.9.0/bin/node");
const entry =
  process.env.CODE_SERVER_ENTRY ??
  path.join(os.homedir(), ".cache/mlx-sidecar-ci/code-server-4.139.1/node_modules/code-server/out/node/entry.js");
const python = process.env.SIDECAR_PYTHON ?? path.resolve(root, "../.venv/bin/python");
const modelsDir = process.env.MLX_SIDECAR_MODELS_DIR ?? path.resolve(root, "../.cache/test-models");
const browserPath = process.env.CHROMIUM ?? "/usr/bin/chromium";

const SOURCE = 'def add(a, b):\n    """Return the sum of a and b."""\n    return';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "mlx-e2e-"));
// The daemon's runtime dir: short (a socket path must fit in 108 bytes), removed in `after`.
const runtimeDir = fs.mkdtempSync("/tmp/mlxd-e2e-");
const userData = path.join(tmp, "user-data");
const extDir = path.join(tmp, "extensions");
const workspace = path.join(tmp, "workspace");
let server;
let browser;
let page;
const serverLog = [];

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function shot(name) {
  fs.mkdirSync(artifacts, { recursive: true });
  const file = path.join(artifacts, `${name}.png`);
  await page.screenshot({ path: file });
  console.log(`screenshot: ${file}`);
  return file;
}

/** Runs a step; on failure keeps a screenshot, what the chat panel shows, and the tails of
 * code-server's and the sidecar daemon's logs. */
async function step(name, fn) {
  try {
    return await fn();
  } catch (e) {
    if (page) await shot(`FAILED-${name}`).catch(() => undefined);
    console.log(serverLog.join("").slice(-4000));
    for (const f of page?.frames() ?? []) {
      const shown = await f
        .locator("#messages")
        .innerText({ timeout: 1_000 })
        .catch(() => undefined);
      if (shown !== undefined) console.log(`chat panel:\n${shown.slice(-2000)}`);
    }
    const daemonLog = path.join(runtimeDir, "daemon.log");
    if (fs.existsSync(daemonLog)) console.log(`daemon log:\n${fs.readFileSync(daemonLog, "utf8").slice(-6000)}`);
    throw e;
  }
}

/** Sends with `send`, then waits until the chat's last assistant turn has streamed text: seen
 * with the typing cursor still on by an observer set up before sending (a short reply can
 * start and finish between two polls). An error shown in the panel fails at once with its text. */
async function replyStreams(frame, send) {
  await frame.evaluate(() => {
    window.__streamed = false;
    new MutationObserver(() => {
      const bodies = document.querySelectorAll(".msg.assistant .body.cursor");
      const body = bodies[bodies.length - 1];
      if (body && body.textContent.trim().length > 0) window.__streamed = true;
    }).observe(document.getElementById("messages"), {
      subtree: true,
      childList: true,
      characterData: true,
      attributes: true,
    });
  });
  await send();
  const seen = await frame.waitForFunction(
    () => {
      const errors = document.querySelectorAll(".msg.error .body");
      if (errors.length) return `error: ${errors[errors.length - 1].textContent}`;
      return window.__streamed ? "streaming" : false;
    },
    undefined,
    { timeout: 120_000, polling: 50 },
  );
  assert.equal(await seen.jsonValue(), "streaming");
}

async function runCommand(title) {
  await page.keyboard.press("F1");
  const input = page.locator(".quick-input-widget input");
  await input.waitFor({ state: "visible", timeout: 20_000 });
  await input.fill(`>${title}`);
  await page.locator(".quick-input-list .monaco-list-row", { hasText: title }).first().waitFor({ timeout: 20_000 });
  await page.keyboard.press("Enter");
}

async function chatFrame() {
  for (let i = 0; i < 120; i++) {
    for (const f of page.frames()) {
      if (
        (await f
          .locator("#input")
          .count()
          .catch(() => 0)) > 0
      )
        return f;
    }
    await page.waitForTimeout(500);
  }
  throw new Error("chat webview did not appear");
}

describe("MLX Sidecar in code-server", { timeout: 15 * 60_000 }, () => {
  before(async () => {
    assert.ok(fs.existsSync(vsix), `build the .vsix first (${vsix})`);
    fs.mkdirSync(path.join(userData, "User"), { recursive: true });
    fs.mkdirSync(workspace, { recursive: true });
    // The workspace: the fixture repo of the workspace-index tests, plus the file we type in.
    fs.cpSync(path.resolve(root, "../tests/fixtures/workspace-repo"), workspace, { recursive: true });
    fs.writeFileSync(path.join(workspace, "calc.py"), SOURCE);
    fs.writeFileSync(
      path.join(userData, "User", "settings.json"),
      JSON.stringify(
        {
          "mlxSidecar.pythonPath": python,
          "mlxSidecar.modelsDir": modelsDir,
          "mlxSidecar.completion.maxTokens": 8,
          "mlxSidecar.completion.debounceMs": 50,
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
          "editor.inlineSuggest.enabled": true,
          "editor.quickSuggestions": { other: false, comments: false, strings: false },
          "editor.suggestOnTriggerCharacters": false,
          "editor.autoClosingBrackets": "never",
          "editor.autoClosingQuotes": "never",
          "files.autoSave": "off",
          "window.restoreWindows": "none",
        },
        null,
        2,
      ),
    );
    execFileSync(node, [entry, "--user-data-dir", userData, "--extensions-dir", extDir, "--install-extension", vsix], {
      stdio: "inherit",
    });
    const port = await freePort();
    server = spawn(
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
      // Its own process group, so `after` ends code-server's helpers and the sidecar with it.
      // The window's sidecar is the default daemon, in a runtime dir of this run's own (short: a socket
      // path), which exits 2 s after code-server's window closes.
      {
        stdio: ["ignore", "pipe", "pipe"],
        env: {
          ...process.env,
          MLX_SIDECAR_MODELS_DIR: modelsDir,
          MLX_SIDECAR_DAEMON_RUNTIME_DIR: runtimeDir,
          MLX_SIDECAR_DAEMON_GRACE_S: "2",
          MLX_SIDECAR_WORKSPACE_INDEX_DIR: path.join(tmp, "workspace-index"),
        },
        detached: true,
      },
    );
    const ready = new Promise((resolve, reject) => {
      const onData = (d) => {
        serverLog.push(d.toString());
        if (/HTTP server listening/.test(d.toString())) resolve();
      };
      server.stdout.on("data", onData);
      server.stderr.on("data", onData);
      server.on("exit", (code) => reject(new Error(`code-server exited (${code}): ${serverLog.join("")}`)));
    });
    await ready;
    browser = await chromium.launch({
      executablePath: browserPath,
      headless: true,
      args: ["--no-sandbox", "--disable-gpu"],
    });
    page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    await page.goto(`http://127.0.0.1:${port}/?folder=${encodeURIComponent(workspace)}`);
    await page.locator(".monaco-workbench").waitFor({ timeout: 120_000 });
  });

  after(async () => {
    await browser?.close().catch(() => undefined);
    if (server?.pid) {
      try {
        process.kill(-server.pid, "SIGTERM");
      } catch {
        // already gone
      }
    }
    // the daemon leaves 2 s after the window
    await new Promise((r) => setTimeout(r, 3000));
    fs.rmSync(tmp, { recursive: true, force: true });
    fs.rmSync(runtimeDir, { recursive: true, force: true });
  });

  test("the sidecar starts and the status bar says so", async () => {
    await step("startup", async () => {
      const item = page.locator(".statusbar-item", { hasText: /idle|busy/ });
      await item.first().waitFor({ timeout: 180_000 });
      await shot("01-startup");
    });
  });

  test("ghost text appears in a Python file and Tab accepts it", async () => {
    await step("inline", async () => {
      await page.keyboard.press("Control+P");
      await page.locator(".quick-input-widget input").fill("calc.py");
      await page
        .locator(".quick-input-list .monaco-list-row", { hasText: "calc.py" })
        .first()
        .waitFor({ timeout: 30_000 });
      await page.keyboard.press("Enter");
      const editor = page.locator(".monaco-editor .view-lines").first();
      await editor.waitFor({ timeout: 30_000 });
      await editor.click();
      await page.keyboard.press("Control+End");
      await page.keyboard.type(" a", { delay: 50 });
      const ghost = page.locator(".ghost-text-decoration, .ghost-text-decoration-preview, .ghost-text");
      for (let attempt = 0; attempt < 3; attempt++) {
        try {
          await ghost.first().waitFor({ timeout: 60_000 });
          break;
        } catch (e) {
          if (attempt === 2) throw e;
          await page.keyboard.press("Alt+Backslash"); // editor.action.inlineSuggest.trigger
        }
      }
      const suggested = (await ghost.allTextContents()).join("");
      console.log(`ghost text: ${JSON.stringify(suggested)}`);
      await shot("02-ghost-text");
      await page.keyboard.press("Tab");
      await page.keyboard.press("Control+S");
      await page.waitForTimeout(1500);
      const saved = fs.readFileSync(path.join(workspace, "calc.py"), "utf8");
      console.log(`saved: ${JSON.stringify(saved)}`);
      assert.ok(saved.startsWith(`${SOURCE} a`), "typed text is kept");
      assert.ok(saved.length > `${SOURCE} a`.length, "Tab inserted the suggestion");
      const firstWord = suggested.trim().split(/\s+/)[0];
      if (firstWord) assert.ok(saved.includes(firstWord), `inserted text contains the ghost text (${firstWord})`);
      await shot("03-accepted");
    });
  });

  test("the chat view streams a reply", async () => {
    await step("chat", async () => {
      await page.locator('.activitybar [aria-label^="MLX Chat"]').first().click();
      const frame = await chatFrame();
      await frame.locator("#input").fill("Say hello.");
      // Streaming: the assistant bubble shows text (with the typing cursor) before it is done.
      await replyStreams(frame, () => frame.locator("#input").press("Enter"));
      await frame.locator(".msg.user").first().waitFor({ timeout: 30_000 });
      await shot("04a-chat-streaming");
      await frame.locator(".msg.assistant.done").first().waitFor({ timeout: 180_000 });
      const reply = await frame.locator(".msg.assistant .body").first().innerText();
      console.log(`chat reply: ${JSON.stringify(reply)}`);
      assert.ok(reply.trim().length > 0, "the reply has text");
      const meta = await frame.locator(".msg.assistant .meta").first().innerText();
      assert.match(meta, /tokens/);
      await shot("04b-chat-done");
    });
  });

  test("MLX: Switch Model… changes the chat model", async () => {
    await step("switch", async () => {
      await runCommand("MLX: Switch Model");
      await page
        .locator(".quick-input-list .monaco-list-row", { hasText: "chat" })
        .first()
        .waitFor({ timeout: 20_000 });
      await page.locator(".quick-input-widget input").fill("chat");
      await page.keyboard.press("Enter");
      const row = page.locator(".quick-input-list .monaco-list-row", { hasText: "SmolLM2-135M-Instruct" }).first();
      await row.waitFor({ timeout: 60_000 });
      await shot("05-switch-model-picker");
      await page.locator(".quick-input-widget input").fill("SmolLM2-135M-Instruct");
      await page.keyboard.press("Enter");
      await page
        .locator(".notifications-toasts", { hasText: "chat model is now SmolLM2-135M-Instruct" })
        .waitFor({ timeout: 120_000 });
      await shot("06-switched");
      const settings = JSON.parse(fs.readFileSync(path.join(userData, "User", "settings.json"), "utf8"));
      assert.equal(settings["mlxSidecar.chatModel"], "SmolLM2-135M-Instruct");
    });
  });

  test("an image pasted into the chat reaches the vision model and a reply streams", async () => {
    await step("image", async () => {
      // Sampled: greedy decoding of the tiny model's random weights makes no visible text.
      const file = path.join(userData, "User", "settings.json");
      const userSettings = JSON.parse(fs.readFileSync(file, "utf8"));
      fs.writeFileSync(file, JSON.stringify({ ...userSettings, "mlxSidecar.chat.temperature": 1 }, null, 2));
      const png = execFileSync(python, [
        "-c",
        "import io,sys,numpy as np; from PIL import Image; b=io.BytesIO(); " +
          "Image.fromarray(np.random.default_rng(0).integers(0,255,(56,56,3),dtype=np.uint8)).save(b,format='PNG'); " +
          "sys.stdout.buffer.write(b.getvalue())",
      ]).toString("base64");
      // the chat view is open from the chat test (clicking its icon again would close it)
      const frame = await chatFrame();
      await frame.locator("#new").click();
      await frame.evaluate((b64) => {
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        const dt = new DataTransfer();
        dt.items.add(new File([bytes], "noise.png", { type: "image/png" }));
        const input = document.getElementById("input");
        input.focus();
        input.dispatchEvent(new ClipboardEvent("paste", { clipboardData: dt, bubbles: true, cancelable: true }));
      }, png);
      await frame.locator("#images img").first().waitFor({ timeout: 30_000 });
      await frame.locator("#input").fill("What is in this picture?");
      await frame.locator("#input").press("Enter");
      // SmolLM2 (text only) is the chat model: one click switches to the vision model.
      const button = frame.locator(".msg.error button.switch", { hasText: "tiny-qwen2-vl" });
      await button.waitFor({ timeout: 60_000 });
      await shot("08a-needs-vision");
      await button.click();
      await frame.waitForFunction(() => document.getElementById("model").value === "tiny-qwen2-vl", undefined, {
        timeout: 60_000,
      });
      await replyStreams(frame, () => frame.locator("#input").press("Enter"));
      // the question that went to the vision model shows its image
      await frame.waitForFunction(
        () => {
          const users = document.querySelectorAll(".msg.user");
          return users.length > 0 && users[users.length - 1].querySelector(".thumbs img") !== null;
        },
        undefined,
        { timeout: 60_000 },
      );
      await shot("08b-image-streaming");
      await frame
        .locator(".msg.assistant.done .meta", { hasText: "tiny-qwen2-vl" })
        .first()
        .waitFor({ timeout: 180_000 });
      await shot("08c-image-done");
    });
  });

  test("MLX: Index Workspace, then @workspace cites the right file as a link", async () => {
    await step("workspace", async () => {
      await runCommand("MLX: Index Workspace");
      await page
        .locator(".notifications-toasts", { hasText: /workspace index(ed| up to date) — \d+ files, \d+ chunks/ })
        .waitFor({ timeout: 300_000 });
      await shot("09a-indexed");
      const frame = await chatFrame();
      await frame.locator("#new").click();
      await frame.locator("#input").fill("@workspace How are passwords hashed and checked at login?");
      await frame.locator("#input").press("Enter");
      const link = frame.locator(".msg.assistant.done .sources a", { hasText: "bookshelf/auth.py" }).first();
      await link.waitFor({ timeout: 180_000 });
      await shot("09b-workspace-sources");
      await link.click();
      await page.locator(".tab", { hasText: "auth.py" }).first().waitFor({ timeout: 30_000 });
      await shot("09c-source-opened");
    });
  });

  test("clicking the status bar item opens the status dashboard", async () => {
    await step("status", async () => {
      await page
        .locator(".statusbar-item", { hasText: /· (idle|busy)/ })
        .first()
        .click();
      await page.locator(".tab", { hasText: "MLX Sidecar Status" }).first().waitFor({ timeout: 30_000 });
      let dashboard;
      for (let i = 0; i < 60 && !dashboard; i++) {
        for (const f of page.frames()) {
          if (
            (await f
              .locator("#dashboard h2", { hasText: "Models" })
              .count()
              .catch(() => 0)) > 0
          )
            dashboard = f;
        }
        if (!dashboard) await page.waitForTimeout(500);
      }
      assert.ok(dashboard, "the dashboard drew its sections");
      // one sample is a dot, more a line
      await dashboard
        .locator("figure.chart svg polyline, figure.chart svg circle")
        .first()
        .waitFor({ timeout: 30_000 });
      const index = await dashboard.locator("section", { hasText: "Workspace index" }).innerText();
      assert.match(index, /chunks/, index);
      await shot("10-status-dashboard");
    });
  });
});
