// The chat panel's page: its elements and a strict CSP (a nonce script, the bundle of
// media/chat.js made by esbuild.mjs, media/chat.css).
import * as vscode from "vscode";

export function chatHtml(webview: vscode.Webview, media: vscode.Uri, bundles: vscode.Uri): string {
  const nonce = Array.from({ length: 32 }, () => Math.floor(Math.random() * 36).toString(36)).join("");
  // media/chat.js with markdown-it, DOMPurify and highlight.js, bundled by esbuild.mjs
  const script = webview.asWebviewUri(vscode.Uri.joinPath(bundles, "chat.js"));
  const style = webview.asWebviewUri(vscode.Uri.joinPath(media, "chat.css"));
  const csp = [
    "default-src 'none'",
    `style-src ${webview.cspSource}`,
    `script-src 'nonce-${nonce}'`,
    `img-src ${webview.cspSource} data:`,
    `font-src ${webview.cspSource}`,
  ].join("; ");
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="UTF-8">
<meta http-equiv="Content-Security-Policy" content="${csp}">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<link href="${style}" rel="stylesheet">
<title>MLX Chat</title>
</head>
<body>
<div id="toolbar">
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
</div>
<script nonce="${nonce}" src="${script}"></script>
</body>
</html>`;
}
