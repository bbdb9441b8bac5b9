// The one scaffold of the extension's webviews (the chat view, the status page): what they may
// load (media/ and the bundles esbuild.mjs makes in dist/webview/), a strict CSP with a fresh
// nonce for the one script, the stylesheet, and a bare <body> so VS Code's theme classes
// (vscode-light, vscode-dark, vscode-high-contrast) land on it for the CSS.
import * as vscode from "vscode";

/** What one page is made of: files under media/ (style) and dist/webview/ (script). */
export interface WebviewPage {
  title: string;
  /** the bundle in dist/webview/, e.g. "chat.js" */
  script: string;
  /** the stylesheet in media/, e.g. "chat.css" */
  style: string;
  /** the page's elements, inside <body> before the script */
  body: string;
}

function roots(extensionUri: vscode.Uri): { media: vscode.Uri; bundles: vscode.Uri } {
  return {
    media: vscode.Uri.joinPath(extensionUri, "media"),
    bundles: vscode.Uri.joinPath(extensionUri, "dist", "webview"),
  };
}

/** Scripts on, and nothing loaded from outside media/ and dist/webview/. */
export function webviewOptions(extensionUri: vscode.Uri): vscode.WebviewOptions {
  const { media, bundles } = roots(extensionUri);
  return { enableScripts: true, localResourceRoots: [media, bundles] };
}

export function nonce(): string {
  return Array.from({ length: 32 }, () => Math.floor(Math.random() * 36).toString(36)).join("");
}

/** The page's HTML: nothing remote, no inline script, one nonce script (the bundle). */
export function webviewHtml(webview: vscode.Webview, extensionUri: vscode.Uri, page: WebviewPage): string {
  const { media, bundles } = roots(extensionUri);
  const once = nonce();
  const script = webview.asWebviewUri(vscode.Uri.joinPath(bundles, page.script));
  const style = webview.asWebviewUri(vscode.Uri.joinPath(media, page.style));
  const csp = [
    "default-src 'none'",
    `style-src ${webview.cspSource}`,
    `script-src 'nonce-${once}'`,
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
<title>${page.title}</title>
</head>
<body>
${page.body}
<script nonce="${once}" src="${script}"></script>
</body>
</html>`;
}
