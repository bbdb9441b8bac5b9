// The settings' defaults are kept once (src/settings.ts DEFAULTS) and must equal package.json's
// `contributes.configuration` defaults; the sidecar is sent only the keys it reads.
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { test } from "node:test";
import {
  chatSettings,
  completionSettings,
  DEFAULTS,
  launchSettings,
  SECTION,
  sidecarOptions,
} from "../../src/settings";
import { settings } from "./fake-vscode";

const pkg = JSON.parse(fs.readFileSync(path.resolve(__dirname, "../../../package.json"), "utf8"));
const contributed: Record<string, { default?: unknown }> = pkg.contributes.configuration.properties;

test("every setting read has package.json's default, and every contributed setting is read", () => {
  for (const [key, value] of Object.entries(DEFAULTS)) {
    const entry = contributed[`${SECTION}.${key}`];
    assert.ok(entry, `${SECTION}.${key} is read but not in package.json`);
    assert.ok("default" in entry, `${SECTION}.${key} has no default in package.json`);
    assert.deepEqual(value, entry.default, `${SECTION}.${key}: the code's default differs from package.json's`);
  }
  const read = new Set(Object.keys(DEFAULTS).map((k) => `${SECTION}.${k}`));
  for (const key of Object.keys(contributed)) assert.ok(read.has(key), `${key} is in package.json but has no default`);
});

test("unset settings read as their defaults", () => {
  const saved = new Map(settings);
  settings.clear();
  try {
    assert.deepEqual(sidecarOptions(), {
      models: { completion: null, chat: null, embedding: null },
      httpPort: 0,
      completion: {
        enabled: true,
        maxTokens: 48,
        maxTimeMs: 1000,
        prefixTokens: 1024,
        suffixTokens: 256,
        contextTokens: 512,
        ringChunks: 16,
        chunkLines: 16,
      },
    });
    assert.deepEqual(completionSettings(), { enabled: true, debounceMs: 150 });
    assert.deepEqual(chatSettings(), { maxTokens: 512, temperature: undefined });
    assert.deepEqual(launchSettings(), {
      mode: "daemon",
      serverPath: "",
      pythonPath: "",
      pipPackage: "",
      modelsDir: "",
      httpPort: 0,
      logLevel: "INFO",
    });
  } finally {
    settings.clear();
    for (const [k, v] of saved) settings.set(k, v);
  }
});

test("the sidecar is sent only what it reads: no debounce, chat, modelsDir or logLevel", () => {
  const saved = new Map(settings);
  settings.clear();
  try {
    settings.set(`${SECTION}.completion.debounceMs`, 10);
    settings.set(`${SECTION}.chat.maxTokens`, 8);
    settings.set(`${SECTION}.chat.temperature`, 0);
    settings.set(`${SECTION}.modelsDir`, "/models");
    settings.set(`${SECTION}.logLevel`, "DEBUG");
    settings.set(`${SECTION}.chatModel`, " SmolLM2 ");
    settings.set(`${SECTION}.completion.contextChunks`, 4);
    const sent = sidecarOptions();
    assert.deepEqual(Object.keys(sent).sort(), ["completion", "httpPort", "models"]);
    assert.ok(!("debounceMs" in sent.completion));
    assert.equal(sent.models.chat, "SmolLM2");
    assert.equal(sent.completion.ringChunks, 4, "the sidecar's name for the chunk count");
    assert.deepEqual(completionSettings(), { enabled: true, debounceMs: 10 });
    assert.deepEqual(chatSettings(), { maxTokens: 8, temperature: 0 });
  } finally {
    settings.clear();
    for (const [k, v] of saved) settings.set(k, v);
  }
});
