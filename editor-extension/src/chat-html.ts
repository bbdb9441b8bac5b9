// The chat panel's page: its elements, in the extension's one webview scaffold (webview.ts: a
// strict CSP, the bundle of media/chat.js made by esbuild.mjs, media/chat.css).
import type * as vscode from "vscode";
import { webviewHtml } from "./webview";

const BODY = `<div id="toolbar">
  <select id="model" title="Chat model" aria-label="Chat model"></select>
  <button id="history" title="Past conversations" aria-label="Past conversations">History</button>
  <button id="new" title="New chat" aria-label="New chat">New</button>
</div>
<div id="messages" role="log" aria-live="polite">
  <div id="empty" class="hint">Ask about your code. Attach the selection or the current file for context.<br>Runs locally on the MLX sidecar.</div>
</div>
<div id="context"></div>
<div id="composer">
  <div id="attach">
  <button id="addSelection" class="link" title="Add the editor selection as context">+ selection</button>
  <button id="addFile" class="link" title="Add the current file as context">+ file</button>
  <button id="addImage" class="link" title="Attach a PNG or JPEG image (or paste / drop one)">+ image</button>
  </div>
  <div id="images"></div>
  <div id="suggest" role="listbox" hidden></div>
  <textarea id="input" rows="3" placeholder="Ask MLX… (/ for commands, @ for the project and files; paste or drop images; Enter to send)" aria-label="Message"></textarea>
  <div id="actions">
  <button id="send">Send</button>
  <button id="stop" hidden>Stop</button>
  </div>
</div>`;

export function chatHtml(webview: vscode.Webview, extensionUri: vscode.Uri): string {
  // media/chat.js with markdown-it, DOMPurify and highlight.js, bundled by esbuild.mjs
  return webviewHtml(webview, extensionUri, { title: "MLX Chat", script: "chat.js", style: "chat.css", body: BODY });
}
