// Markdown for the chat webview: markdown-it (raw HTML off), code highlighted by highlight.js,
// the result sanitized by DOMPurify before it becomes innerHTML. Bundled by esbuild.mjs.
// @ts-check
import DOMPurify from "dompurify";
import hljs from "highlight.js/lib/common";
import MarkdownIt from "markdown-it";

const md = new MarkdownIt({ html: false, linkify: true });

/** A fenced block as the panel shows it: a bar above the code (its language; Copy, Insert at
 * cursor, New file), then the highlighted code. The bar is its own row, so it never covers code.
 * An unclosed fence (a reply still streaming) runs to the end, as markdown-it parses it. */
md.renderer.rules.fence = (tokens, idx, _options, env) => {
  const token = tokens[idx];
  const lang = token.info.trim().split(/\s+/)[0] ?? "";
  const code = token.content.replace(/\n$/, "");
  const language = hljs.getLanguage(lang) ? lang : "";
  const html = language ? hljs.highlight(code, { language, ignoreIllegals: true }).value : md.utils.escapeHtml(code);
  const index = env.blocks.push({ code, language: lang }) - 1;
  const button = (action, label, title) =>
    `<button class="codeaction ${action}" data-action="${action}" data-code="${index}" title="${title}">${label}</button>`;
  return (
    `<div class="codeblock"><div class="codebar"><span class="lang">${md.utils.escapeHtml(lang || "text")}</span>` +
    `<span class="codeactions">${button("copy", "Copy", "Copy the code")}` +
    `${button("insert", "Insert", "Insert at the cursor")}${button("newFile", "New file", "Open the code in a new file")}</span></div>` +
    `<pre><code class="hljs${language ? ` language-${md.utils.escapeHtml(language)}` : ""}">${html}</code></pre></div>`
  );
};

/**
 * Markdown to sanitized HTML, and the code of its fenced blocks (for their buttons).
 * @param {string} text
 * @returns {{ html: string, blocks: { code: string, language: string }[] }}
 */
export function renderMarkdown(text) {
  const env = { blocks: /** @type {{ code: string, language: string }[]} */ ([]) };
  const html = md.render(text, env);
  return { html: DOMPurify.sanitize(html), blocks: env.blocks };
}
