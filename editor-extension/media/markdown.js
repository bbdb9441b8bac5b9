// Markdown for the chat webview: markdown-it (raw HTML off), code highlighted by highlight.js,
// the result sanitized by DOMPurify before it becomes innerHTML. Bundled by esbuild.mjs.
// @ts-check
import DOMPurify from "dompurify";
import hljs from "highlight.js/lib/common";
import MarkdownIt from "markdown-it";

const md = new MarkdownIt({ html: false, linkify: true });

/** A fenced block as the panel shows it: highlighted, with an Insert button. An unclosed fence
 * (a reply still streaming) runs to the end, as markdown-it parses it. */
md.renderer.rules.fence = (tokens, idx, _options, env) => {
  const token = tokens[idx];
  const lang = token.info.trim().split(/\s+/)[0] ?? "";
  const code = token.content.replace(/\n$/, "");
  const language = hljs.getLanguage(lang) ? lang : "";
  const html = language ? hljs.highlight(code, { language, ignoreIllegals: true }).value : md.utils.escapeHtml(code);
  const index = env.blocks.push(code) - 1;
  return (
    `<div class="codeblock"><button class="insert" data-code="${index}" title="Insert at cursor">Insert</button>` +
    `<pre><code class="hljs${language ? ` language-${md.utils.escapeHtml(language)}` : ""}">${html}</code></pre></div>`
  );
};

/**
 * Markdown to sanitized HTML, and the code of its fenced blocks (for the Insert buttons).
 * @param {string} text
 * @returns {{ html: string, blocks: string[] }}
 */
export function renderMarkdown(text) {
  const env = { blocks: /** @type {string[]} */ ([]) };
  const html = md.render(text, env);
  return { html: DOMPurify.sanitize(html), blocks: env.blocks };
}
