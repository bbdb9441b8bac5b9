// Chat webview: renders the conversation (markdown with code blocks) and sends user actions
// to the extension. No remote resources; all text is escaped before it becomes HTML.
// @ts-check
(function () {
  // @ts-expect-error acquireVsCodeApi is a global of the webview host, unknown to TypeScript
  const vscode = acquireVsCodeApi();
  const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));
  const messages = $("messages");
  const input = /** @type {HTMLTextAreaElement} */ ($("input"));
  const model = /** @type {HTMLSelectElement} */ ($("model"));
  const send = $("send");
  const stop = $("stop");
  let streaming = null; // { el, text, reasoning, calls }

  const escapeHtml = (s) =>
    s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");

  function inline(s) {
    return escapeHtml(s)
      .replace(/`([^`]+)`/g, "<code>$1</code>")
      .replace(/\*\*([^*]+)\*\*/g, "<strong>$1</strong>")
      .replace(/(^|[^*])\*([^*\s][^*]*)\*/g, "$1<em>$2</em>");
  }

  function prose(text) {
    const out = [];
    let list = null;
    for (const line of text.split("\n")) {
      const item = /^\s*(?:[-*]|\d+\.)\s+(.*)$/.exec(line);
      const heading = /^(#{1,6})\s+(.*)$/.exec(line);
      if (item) {
        if (!list) {
          list = [];
        }
        list.push(`<li>${inline(item[1])}</li>`);
        continue;
      }
      if (list) {
        out.push(`<ul>${list.join("")}</ul>`);
        list = null;
      }
      if (heading) out.push(`<p><strong>${inline(heading[2])}</strong></p>`);
      else if (line.trim()) out.push(`<p>${inline(line)}</p>`);
    }
    if (list) out.push(`<ul>${list.join("")}</ul>`);
    return out.join("");
  }

  /** Markdown to HTML: fenced code blocks (an unclosed fence while streaming too), then prose. */
  function render(text) {
    const parts = [];
    const fence = /```([\w+-]*)[^\n]*\n([\s\S]*?)(?:```|$)/g;
    let last = 0;
    let m;
    let i = 0;
    while ((m = fence.exec(text)) !== null) {
      parts.push(prose(text.slice(last, m.index)));
      const code = m[2].replace(/\n$/, "");
      parts.push(
        `<div class="codeblock"><button class="insert" data-code="${i}" title="Insert at cursor">Insert</button>` +
          `<pre><code class="language-${escapeHtml(m[1])}">${escapeHtml(code)}</code></pre></div>`,
      );
      i++;
      last = fence.lastIndex;
      if (m[0].length === 0) break;
    }
    parts.push(prose(text.slice(last)));
    return parts.join("");
  }

  function codeBlocks(text) {
    const blocks = [];
    const fence = /```[^\n]*\n([\s\S]*?)(?:```|$)/g;
    let m;
    while ((m = fence.exec(text)) !== null) blocks.push(m[1].replace(/\n$/, ""));
    return blocks;
  }

  function chips(labels, removable) {
    const el = document.createElement("div");
    el.className = "chips";
    labels.forEach((label, index) => {
      const chip = document.createElement("span");
      chip.className = "chip";
      chip.textContent = label;
      if (removable) {
        const x = document.createElement("button");
        x.textContent = "×";
        x.title = "Remove";
        x.addEventListener("click", () => vscode.postMessage({ type: "removeContext", index }));
        chip.appendChild(x);
      }
      el.appendChild(chip);
    });
    return el;
  }

  function add(kind, who) {
    $("empty")?.remove();
    const el = document.createElement("div");
    el.className = `msg ${kind}`;
    const w = document.createElement("div");
    w.className = "who";
    w.textContent = who;
    const body = document.createElement("div");
    body.className = "body";
    el.append(w, body);
    messages.appendChild(el);
    return el;
  }

  function setAssistant(el, text, done) {
    const body = /** @type {HTMLElement} */ (el.querySelector(".body"));
    body.innerHTML = render(text);
    body.classList.toggle("cursor", !done);
    const blocks = codeBlocks(text);
    body.querySelectorAll("button.insert").forEach((b) => {
      b.addEventListener("click", () => {
        const code = blocks[Number(/** @type {HTMLElement} */ (b).dataset.code)] ?? "";
        vscode.postMessage({ type: "insert", code });
      });
    });
    messages.scrollTop = messages.scrollHeight;
  }

  /** The model's thinking, folded: a <details> above the answer, made on first use. */
  function setReasoning(el, text, done) {
    let details = /** @type {HTMLDetailsElement | null} */ (el.querySelector("details.reasoning"));
    if (!text) return;
    if (!details) {
      details = document.createElement("details");
      details.className = "reasoning";
      const summary = document.createElement("summary");
      const pre = document.createElement("div");
      pre.className = "thought";
      details.append(summary, pre);
      el.insertBefore(details, el.querySelector(".body"));
    }
    /** @type {HTMLElement} */ (details.querySelector("summary")).textContent = done ? "Thought" : "Thinking…";
    /** @type {HTMLElement} */ (details.querySelector(".thought")).textContent = text;
  }

  /** Tool calls as cards: the function's name and its arguments (pretty-printed when JSON). */
  function setToolCalls(el, calls) {
    let list = el.querySelector(".toolcalls");
    if (!calls || !calls.length) return;
    if (!list) {
      list = document.createElement("div");
      list.className = "toolcalls";
      el.insertBefore(list, el.querySelector(".meta"));
    }
    list.replaceChildren(
      ...calls.map((call) => {
        const card = document.createElement("div");
        card.className = "toolcall";
        const name = document.createElement("div");
        name.className = "toolname";
        name.textContent = `Tool call: ${call.name}`;
        const args = document.createElement("pre");
        let text = call.arguments;
        try {
          text = JSON.stringify(JSON.parse(call.arguments), null, 2);
        } catch {
          // shown as sent
        }
        args.textContent = text;
        card.append(name, args);
        return card;
      }),
    );
    messages.scrollTop = messages.scrollHeight;
  }

  function setBusy(busy) {
    send.hidden = busy;
    stop.hidden = !busy;
  }

  function submit() {
    const text = input.value;
    if (!text.trim() || streaming) return;
    input.value = "";
    vscode.postMessage({ type: "send", text });
  }

  send.addEventListener("click", submit);
  stop.addEventListener("click", () => vscode.postMessage({ type: "stop" }));
  $("new").addEventListener("click", () => vscode.postMessage({ type: "newChat" }));
  $("addSelection").addEventListener("click", () => vscode.postMessage({ type: "addSelection" }));
  $("addFile").addEventListener("click", () => vscode.postMessage({ type: "addFile" }));
  model.addEventListener("change", () => vscode.postMessage({ type: "pickModel", model: model.value }));
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) {
      e.preventDefault();
      submit();
    }
  });

  window.addEventListener("message", (event) => {
    const m = event.data;
    switch (m.type) {
      case "models": {
        model.innerHTML = "";
        for (const id of m.models) {
          const o = document.createElement("option");
          o.value = id;
          o.textContent = id;
          model.appendChild(o);
        }
        if (m.current) model.value = m.current;
        break;
      }
      case "restore":
        for (const msg of m.messages) {
          if (msg.role === "user") add("user", "You").querySelector(".body").textContent = msg.content;
          else {
            const el = add("assistant", "MLX");
            setAssistant(el, msg.content ?? "", true);
            const calls = (msg.tool_calls ?? []).map((c) => ({
              name: c.function.name,
              arguments:
                typeof c.function.arguments === "string" ? c.function.arguments : JSON.stringify(c.function.arguments),
            }));
            setToolCalls(el, calls);
          }
        }
        $("context").replaceChildren(chips(m.context, true));
        break;
      case "user": {
        const el = add("user", "You");
        if (m.context.length) el.insertBefore(chips(m.context, false), el.querySelector(".body"));
        /** @type {HTMLElement} */ (el.querySelector(".body")).textContent = m.text;
        break;
      }
      case "start":
        streaming = { el: add("assistant", "MLX"), text: "", reasoning: "", calls: [] };
        setAssistant(streaming.el, "", false);
        setBusy(true);
        break;
      case "delta":
        if (streaming) {
          streaming.text += m.delta;
          setAssistant(streaming.el, streaming.text, false);
        }
        break;
      case "reasoning":
        if (streaming) {
          streaming.reasoning += m.delta;
          setReasoning(streaming.el, streaming.reasoning, false);
        }
        break;
      case "toolCalls":
        if (streaming) {
          streaming.calls.push(...m.calls);
          setToolCalls(streaming.el, streaming.calls);
        }
        break;
      case "done":
        if (streaming) {
          setAssistant(streaming.el, m.text ?? streaming.text, true);
          setReasoning(streaming.el, m.reasoning ?? streaming.reasoning, true);
          setToolCalls(streaming.el, m.tool_calls ?? streaming.calls);
          const meta = document.createElement("div");
          meta.className = "meta";
          const bits = [];
          if (m.finish_reason === "cancelled") bits.push("stopped");
          else if (m.finish_reason === "length") bits.push("stopped at the token limit");
          else if (m.finish_reason === "tool_calls") bits.push("asked to run tools (not run here)");
          if (m.usage) bits.push(`${m.usage.completion_tokens} tokens`);
          if (m.model) bits.push(m.model);
          meta.textContent = bits.join(" · ");
          streaming.el.appendChild(meta);
          streaming.el.classList.add("done");
        }
        streaming = null;
        setBusy(false);
        break;
      case "error": {
        if (streaming) streaming.el.remove();
        streaming = null;
        const el = add("error", "Error");
        /** @type {HTMLElement} */ (el.querySelector(".body")).textContent = m.message;
        setBusy(false);
        break;
      }
      case "context":
        $("context").replaceChildren(chips(m.items, true));
        break;
      case "cleared":
        messages.innerHTML = '<div id="empty" class="hint">New chat. Ask about your code.</div>';
        $("context").replaceChildren();
        streaming = null;
        setBusy(false);
        break;
    }
  });

  vscode.postMessage({ type: "ready" });
})();
