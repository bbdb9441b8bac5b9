// End to end, what a new user meets (issue 25): a settings migration at startup still starts the
// configured pythonPath (no venv, no pip); a chat reply with markdown, a list and a code block in
// the dark and the light theme (the code bar does not cover code, Copy copies); one notification
// per model switch and none left after it; an image sent to a text-only model leads to a
// download of a vision model in two clicks.
// Run alone: node --test test/e2e/ux.test.mjs (env as in harness.mjs). Screenshots: test-artifacts/ux-*.png
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { artifacts, baseSettings, launch, python, repo, sharedModels } from "./harness.mjs";

/** What the fake OpenAI-compatible upstream answers every chat with. */
const CODE = 'def add(a, b):\n    """Return the sum of a and b."""\n    return a + b';
const REPLY = `Here is a **function** that adds two numbers:\n\n1. Take two numbers.\n2. Return their sum.\n\n\`\`\`python\n${CODE}\n\`\`\`\n\nCall it as \`add(1, 2)\`.`;

/** An OpenAI-compatible upstream (the sidecar's remote-endpoint feature) with one model,
 * "markdown", that streams REPLY: a fixed, rich reply the tiny local models cannot write. */
function fakeUpstream() {
  const server = http.createServer((req, res) => {
    if (req.method === "GET" && req.url === "/v1/models") {
      res.writeHead(200, { "content-type": "application/json" });
      return res.end(JSON.stringify({ object: "list", data: [{ id: "markdown", object: "model", owned_by: "e2e" }] }));
    }
    if (req.method === "POST" && req.url === "/v1/chat/completions") {
      let body = "";
      req.on("data", (d) => (body += d));
      req.on("end", () => {
        const stream = JSON.parse(body).stream;
        const base = { id: "chatcmpl-e2e", object: "chat.completion.chunk", created: 0, model: "markdown" };
        const usage = { prompt_tokens: 10, completion_tokens: 40, total_tokens: 50 };
        if (!stream) {
          res.writeHead(200, { "content-type": "application/json" });
          return res.end(
            JSON.stringify({
              ...base,
              object: "chat.completion",
              choices: [{ index: 0, message: { role: "assistant", content: REPLY }, finish_reason: "stop" }],
              usage,
            }),
          );
        }
        res.writeHead(200, { "content-type": "text/event-stream" });
        const pieces = REPLY.match(/[\s\S]{1,12}/g);
        for (const p of pieces)
          res.write(`data: ${JSON.stringify({ ...base, choices: [{ index: 0, delta: { content: p } }] })}\n\n`);
        res.write(
          `data: ${JSON.stringify({ ...base, choices: [{ index: 0, delta: {}, finish_reason: "stop" }], usage })}\n\n`,
        );
        res.end("data: [DONE]\n\n");
      });
      return undefined;
    }
    res.writeHead(404).end();
    return undefined;
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

/** The Python tests' local Hugging Face hub, serving the tiny vision model as a repo to download. */
async function hubServer() {
  const src = path.join(sharedModels, "tiny-qwen2-vl");
  const hub = spawn(
    python,
    [
      "-c",
      [
        "import sys; from pathlib import Path",
        "from tests.hub_server import HubServer, repo_from_dir",
        `s = HubServer([repo_from_dir("mlx-community/tiny-qwen2-vl-e2e", Path(${JSON.stringify(src)}), downloads=3, tags=["mlx"])], token=None).start()`,
        "print(s.url, flush=True); sys.stdin.read()",
      ].join("\n"),
    ],
    { cwd: repo, stdio: ["pipe", "pipe", "inherit"] },
  );
  const url = await new Promise((resolve, reject) => {
    hub.stdout.once("data", (d) => resolve(d.toString().trim()));
    hub.once("exit", (c) => reject(new Error(`hub server exited ${c}`)));
  });
  return { hub, url };
}

/** Lines of `ps` that install things: a venv being made or pip running. */
function installers() {
  const out = execFileSync("ps", ["-eo", "args="], { encoding: "utf8" });
  return out.split("\n").filter((l) => /mlx-e2e-ux-/.test(l) && /-m venv|pip install|-m pip/.test(l));
}

/** Visible notification toasts: their text, and whether one shows a progress bar. */
async function toasts(page) {
  return page.evaluate(() =>
    [...document.querySelectorAll(".notifications-toasts .notification-toast")]
      .filter((t) => t.getBoundingClientRect().height > 0)
      .map((t) => ({
        text: t.textContent ?? "",
        progress: !!t.querySelector(".monaco-progress-container.active, .monaco-progress-container.infinite"),
      })),
  );
}

const boxesOverlap = (a, b) =>
  a.x < b.x + b.width && b.x < a.x + a.width && a.y < b.y + b.height && b.y < a.y + a.height;

describe("a new user's first session (issue 25)", { timeout: 20 * 60_000 }, () => {
  let h;
  let upstream;
  let hub;
  const seenInstallers = [];
  let watch;

  before(async () => {
    upstream = await fakeUpstream();
    hub = await hubServer();
    watch = setInterval(() => seenInstallers.push(...installers()), 250);
    h = await launch({
      name: "ux",
      models: ["Qwen2.5-Coder-0.5B-Instruct", "SmolLM2-135M-Instruct", "all-MiniLM-L6-v2"],
      settings: (modelsDir) => ({
        ...baseSettings(modelsDir),
        // VS Code migrates this value at startup (to "Dark Modern"), rewriting settings.json.
        "workbench.colorTheme": "Default Dark Modern",
      }),
      env: {
        MLX_SIDECAR_UPSTREAMS__E2E__BASE_URL: `http://127.0.0.1:${upstream.address().port}/v1`,
        HF_ENDPOINT: hub.url,
        HF_HUB_DISABLE_TELEMETRY: "1",
      },
    });
  });

  after(async () => {
    clearInterval(watch);
    await h?.close();
    upstream?.close();
    hub?.hub.kill();
  });

  test("a settings migration at startup still starts the configured pythonPath: no venv, no pip", async () => {
    await h.step("startup", async () => {
      await h.page
        .locator(".statusbar-item", { hasText: /· idle/ })
        .first()
        .waitFor({ timeout: 180_000 });
      clearInterval(watch);
      const settings = JSON.parse(fs.readFileSync(h.settingsFile, "utf8"));
      console.log(`colorTheme after startup: ${settings["workbench.colorTheme"]}`);
      assert.notEqual(settings["workbench.colorTheme"], "Default Dark Modern", "VS Code migrated the theme setting");
      assert.deepEqual(seenInstallers, [], "no venv made, no pip run");
      const storage = path.join(h.userData, "User", "globalStorage", "mlx-sidecar.mlx-sidecar");
      assert.ok(!fs.existsSync(path.join(storage, "venv")), "no managed venv");
      // The dashboard says what runs: the daemon started from the configured python.
      await h.runCommand("MLX: Show Status");
      const dash = await h.frameWith("#dashboard h2");
      const sidecar = await dash.locator("section", { hasText: "started as" }).first().innerText();
      console.log(sidecar);
      assert.ok(sidecar.includes(`${python} -m sidecar`), sidecar);
      assert.match(sidecar, /sidecar .*daemon/);
      assert.doesNotMatch(sidecar, /Device\(/);
      await dash.locator("figure.chart svg text", { hasText: "now" }).first().waitFor({ timeout: 30_000 });
      await h.shot("ux-01-dashboard-dark");
    });
  });

  test("a reply with markdown, a list and a code block, in the dark and the light theme", async () => {
    await h.step("codeblock", async () => {
      const chat = await h.openChat();
      await chat.locator("#model option", { hasText: "e2e/markdown" }).waitFor({ state: "attached", timeout: 60_000 });
      await chat.locator("#model").selectOption("e2e/markdown");
      await chat.locator("#input").fill("Write add() in Python.");
      await chat.locator("#input").press("Enter");
      const block = chat.locator(".msg.assistant.done .codeblock").first();
      await block.waitFor({ timeout: 60_000 });
      assert.equal(await chat.locator(".msg.assistant.done .body ol li").count(), 2, "the list is a list");
      assert.equal(await block.locator(".lang").innerText(), "python");
      for (const theme of ["dark", "light"]) {
        if (theme === "light") {
          // to workbench.preferredLightColorTheme, "Light Modern"
          await h.runCommand("Preferences: Toggle between Light/Dark Themes");
          await chat.waitForFunction(() => document.body.classList.contains("vscode-light"), undefined, {
            timeout: 30_000,
          });
        }
        // The bar is above the code: no button covers any line of it.
        const code = await block.locator("pre code").boundingBox();
        for (const name of ["Copy", "Insert", "New file"]) {
          const button = await block.locator(".codebar button", { hasText: name }).boundingBox();
          assert.ok(button && code && !boxesOverlap(button, code), `${name} does not cover the code (${theme})`);
        }
        // One background for the block, none per line; keywords coloured unlike plain text.
        const look = await block.evaluate((b) => {
          const code = b.querySelector("pre code");
          const kw = b.querySelector(".hljs-keyword");
          return {
            codeBackground: getComputedStyle(code).backgroundColor,
            keyword: kw && getComputedStyle(kw).color,
            text: getComputedStyle(code).color,
          };
        });
        assert.ok(/rgba\(0, 0, 0, 0\)|transparent/.test(look.codeBackground), JSON.stringify(look));
        assert.ok(
          look.keyword && look.keyword !== look.text,
          `keywords are coloured (${theme}): ${JSON.stringify(look)}`,
        );
        await h.shot(`ux-02-codeblock-${theme}`);
        await h.page
          .locator(".part.sidebar")
          .screenshot({ path: path.join(artifacts, `ux-02-codeblock-${theme}-chat.png`) });
      }
      await block.locator(".codebar button", { hasText: "Copy" }).click();
      await block.locator(".codebar button", { hasText: "Copied" }).waitFor({ timeout: 10_000 });
      let copied = "";
      for (let i = 0; i < 50 && copied !== CODE; i++) {
        copied = await h.page.evaluate(() => navigator.clipboard.readText());
        if (copied !== CODE) await h.page.waitForTimeout(100);
      }
      assert.equal(copied, CODE);
    });
  });

  test("chat parity: / and @ complete, Regenerate asks again, History reopens a conversation", async () => {
    await h.step("parity", async () => {
      const chat = await h.frameWith("#input");
      const input = chat.locator("#input");
      await input.fill("");
      await input.pressSequentially("/ex");
      await chat.locator("#suggest .suggestion", { hasText: "/explain" }).waitFor({ timeout: 20_000 });
      await h.page.locator(".part.sidebar").screenshot({ path: path.join(artifacts, "ux-05a-slash-complete.png") });
      await input.press("Tab");
      assert.equal(await input.inputValue(), "/explain ");
      await input.fill("");
      await input.pressSequentially("what does @wor");
      await chat.locator("#suggest .suggestion", { hasText: "@workspace" }).waitFor({ timeout: 20_000 });
      await input.press("Enter"); // accepts the suggestion, does not send
      assert.equal(await input.inputValue(), "what does @workspace ");
      await input.fill("");
      // Regenerate: the last answer is asked again (one answer, not two)
      const answers = chat.locator(".msg.assistant.done");
      // the view may still be restoring the conversation after the theme switches
      await answers.first().waitFor({ timeout: 20_000 });
      assert.equal(await answers.count(), 1);
      // the old answer is marked: right after the click it may still be there (the request goes
      // through the extension host first), and while the new one streams it is not "done"
      await answers.first().evaluate((el) => el.setAttribute("data-old", "1"));
      await chat.locator(".msg.assistant.done button.regenerate").click();
      await chat.locator(".msg.assistant.done:not([data-old]) .codeblock").first().waitFor({ timeout: 60_000 });
      assert.equal(await answers.count(), 1);
      assert.equal(await chat.locator(".msg.assistant[data-old]").count(), 0);
      // New chat keeps the conversation in History; reopening shows it again
      await chat.locator("#new").click();
      await chat.locator("#history").click();
      const row = h.page.locator(".quick-input-list .monaco-list-row", { hasText: "Write add() in Python." }).first();
      await row.waitFor({ timeout: 20_000 });
      await h.shot("ux-05b-history");
      await row.click();
      await chat.locator(".msg.assistant.done .codeblock").first().waitFor({ timeout: 20_000 });
      await h.page.locator(".part.sidebar").screenshot({ path: path.join(artifacts, "ux-05c-reopened.png") });
    });
  });

  test("switching the model: one notification, none left when it is done", async () => {
    await h.step("switch", async () => {
      const seen = [];
      let polling = true;
      const poll = (async () => {
        while (polling) {
          seen.push(await toasts(h.page));
          await h.page.waitForTimeout(100);
        }
      })();
      await h.runCommand("MLX: Switch Model");
      await h.page.locator(".quick-input-list .monaco-list-row", { hasText: "chat" }).first().waitFor();
      await h.page.locator(".quick-input-widget input").fill("chat");
      await h.page.keyboard.press("Enter");
      const row = h.page.locator(".quick-input-list .monaco-list-row", { hasText: "SmolLM2-135M-Instruct" }).first();
      await row.waitFor({ timeout: 60_000 });
      assert.match(
        await h.page.locator(".quick-input-list").innerText(),
        /Download a model…/,
        "the picker ends with Download a model…",
      );
      await h.page.locator(".quick-input-widget input").fill("SmolLM2-135M-Instruct");
      await h.page.keyboard.press("Enter");
      await h.page
        .locator(".notifications-toasts", { hasText: "chat model is now SmolLM2-135M-Instruct" })
        .waitFor({ timeout: 120_000 });
      await h.page.waitForTimeout(1500);
      polling = false;
      await poll;
      await h.shot("ux-03-switched");
      const most = Math.max(...seen.map((s) => s.length));
      assert.equal(most, 1, `one notification at a time: ${JSON.stringify(seen.filter((s) => s.length > 1)[0])}`);
      const last = seen[seen.length - 1];
      assert.deepEqual(
        last.map((t) => t.progress),
        [false],
        `no progress notification left: ${JSON.stringify(last)}`,
      );
      assert.ok(!seen.flat().some((t) => t.progress), "the load's progress is in the status bar, not a toast");
    });
  });

  test("an image sent to a text-only model leads to a vision model download in two clicks", async () => {
    await h.step("vision", async () => {
      const png = execFileSync(python, [
        "-c",
        "import io,sys,numpy as np; from PIL import Image; b=io.BytesIO(); " +
          "Image.fromarray(np.random.default_rng(0).integers(0,255,(56,56,3),dtype=np.uint8)).save(b,format='PNG'); " +
          "sys.stdout.buffer.write(b.getvalue())",
      ]).toString("base64");
      const chat = await h.frameWith("#input");
      await chat.locator("#new").click();
      await chat.evaluate((b64) => {
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        const dt = new DataTransfer();
        dt.items.add(new File([bytes], "noise.png", { type: "image/png" }));
        const input = document.getElementById("input");
        input.focus();
        input.dispatchEvent(new ClipboardEvent("paste", { clipboardData: dt, bubbles: true, cancelable: true }));
      }, png);
      await chat.locator("#images img").first().waitFor({ timeout: 30_000 });
      await chat.locator("#input").fill("What is in this picture?");
      await chat.locator("#input").press("Enter");
      const download = chat.locator(".msg.error button", { hasText: "Download a vision model" });
      await download.waitFor({ timeout: 60_000 });
      await h.shot("ux-04a-needs-vision");
      await download.click(); // click 1
      const row = h.page.locator(".quick-input-list .monaco-list-row", { hasText: "tiny-qwen2-vl-e2e" }).first();
      await row.waitFor({ timeout: 60_000 });
      await h.shot("ux-04b-vision-search");
      await row.click(); // click 2
      await h.page
        .locator(".notifications-toasts", { hasText: /chat model is now .*tiny-qwen2-vl-e2e/ })
        .waitFor({ timeout: 180_000 });
      await chat.waitForFunction(() => /tiny-qwen2-vl-e2e/.test(document.getElementById("model").value), undefined, {
        timeout: 60_000,
      });
      await h.shot("ux-04c-vision-downloaded");
    });
  });
});
