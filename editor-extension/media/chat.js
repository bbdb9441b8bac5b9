// Chat webview: renders the conversation (markdown via media/markdown.js, tool-call cards,
// folded reasoning, images, @workspace sources) and sends user actions to the extension.
// No remote resources; markdown is sanitized before it becomes HTML. Bundled by esbuild.mjs.
// @ts-check
import { renderMarkdown } from "./markdown.js";

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
  const DOWNLOAD = "mlx:download"; // the model picker's last entry
  let shownModel = "";

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
    const { html, blocks } = renderMarkdown(text);
    body.innerHTML = html;
    body.classList.toggle("cursor", !done);
    body.querySelectorAll("button.codeaction").forEach((b) => {
      const button = /** @type {HTMLButtonElement} */ (b);
      button.addEventListener("click", () => {
        const block = blocks[Number(button.dataset.code)] ?? { code: "", language: "" };
        const message = { type: button.dataset.action, code: block.code, language: block.language };
        if (button.dataset.action !== "copy") return vscode.postMessage(message);
        // The webview's own clipboard (this click is the user gesture it needs); where the host
        // does not allow it, the extension's (vscode.env.clipboard).
        const copied = navigator.clipboard?.writeText(block.code) ?? Promise.reject(new Error("no clipboard"));
        copied.catch(() => vscode.postMessage(message));
        button.textContent = "Copied";
        setTimeout(() => (button.textContent = "Copy"), 1500);
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

  /** The files an @workspace reply used, as links that open the file at the lines. */
  function setSources(el, links) {
    if (!links || !links.length) return;
    const box = document.createElement("div");
    box.className = "sources";
    box.append("Sources: ");
    links.forEach((link, i) => {
      const a = document.createElement("a");
      a.href = "#";
      a.className = "source";
      a.textContent = link.label;
      a.title = `Open ${link.path} at line ${link.start_line}`;
      a.addEventListener("click", (e) => {
        e.preventDefault();
        const { path, start_line, end_line } = link;
        vscode.postMessage({ type: "openSource", source: { path, start_line, end_line } });
      });
      if (i) box.append(", ");
      box.appendChild(a);
    });
    el.appendChild(box);
  }

  function setMeta(el, text) {
    const meta = document.createElement("div");
    meta.className = "meta";
    meta.textContent = text ?? "";
    el.appendChild(meta);
    // Only the last answer can be asked again.
    messages.querySelectorAll("button.regenerate").forEach((b) => b.remove());
    const again = document.createElement("button");
    again.className = "link regenerate";
    again.textContent = "Regenerate";
    again.title = "Ask again for this answer";
    again.addEventListener("click", () => vscode.postMessage({ type: "regenerate" }));
    meta.append(" ", again);
  }

  /** A finished assistant turn: answer, thinking, tool calls, sources, meta. */
  function finish(el, m) {
    setAssistant(el, m.text ?? "", true);
    setReasoning(el, m.reasoning ?? "", true);
    setToolCalls(el, m.tool_calls ?? []);
    setSources(el, m.sources);
    setMeta(el, m.meta);
    el.classList.add("done");
  }

  function thumbnails(urls) {
    const box = document.createElement("div");
    box.className = "thumbs";
    for (const url of urls) {
      const img = document.createElement("img");
      img.src = url;
      img.alt = "attached image";
      box.appendChild(img);
    }
    return box;
  }

  /** The images waiting to be sent, each removable. */
  function showImages(items) {
    const box = $("images");
    box.replaceChildren(
      ...items.map((item, index) => {
        const chip = document.createElement("span");
        chip.className = "imagechip";
        const img = document.createElement("img");
        img.src = item.dataUrl;
        img.alt = item.name;
        img.title = item.name;
        const x = document.createElement("button");
        x.textContent = "×";
        x.title = `Remove ${item.name}`;
        x.addEventListener("click", () => vscode.postMessage({ type: "removeImage", index }));
        chip.append(img, x);
        return chip;
      }),
    );
  }

  /** Image files (paste, drop) go to the extension as data: URLs; it checks type and size. */
  function attachFiles(files) {
    for (const file of files) {
      if (!file.type.startsWith("image/")) continue;
      const reader = new FileReader();
      reader.onload = () =>
        vscode.postMessage({ type: "attachImage", name: file.name || "pasted image", dataUrl: String(reader.result) });
      reader.readAsDataURL(file);
    }
  }

  function setBusy(busy) {
    send.hidden = busy;
    stop.hidden = !busy;
  }

  function submit() {
    const text = input.value;
    if ((!text.trim() && !$("images").childElementCount) || streaming) return;
    input.value = "";
    vscode.postMessage({ type: "send", text });
  }

  send.addEventListener("click", submit);
  stop.addEventListener("click", () => vscode.postMessage({ type: "stop" }));
  $("new").addEventListener("click", () => vscode.postMessage({ type: "newChat" }));
  $("history").addEventListener("click", () => vscode.postMessage({ type: "history" }));

  // Completions in the composer: "/" at the start (slash commands), "@" at a word's start
  // (@workspace, files). The extension answers "suggest" with "suggestions".
  const suggest = $("suggest");
  let suggestions = { query: "", items: [], index: 0 };
  function currentToken() {
    const before = input.value.slice(0, input.selectionStart ?? input.value.length);
    if (/^\/[a-z]*$/.test(before)) return before;
    const at = /(?:^|\s)(@[\w./-]*)$/.exec(before);
    return at ? at[1] : "";
  }
  function closeSuggest() {
    suggestions = { query: "", items: [], index: 0 };
    suggest.hidden = true;
  }
  function drawSuggest() {
    suggest.replaceChildren(
      ...suggestions.items.map((item, i) => {
        const row = document.createElement("div");
        row.className = `suggestion${i === suggestions.index ? " active" : ""}`;
        row.setAttribute("role", "option");
        const label = document.createElement("span");
        label.className = "label";
        label.textContent = item.label;
        const detail = document.createElement("span");
        detail.className = "detail";
        detail.textContent = item.detail;
        row.append(label, detail);
        row.addEventListener("mousedown", (e) => {
          e.preventDefault();
          acceptSuggestion(i);
        });
        return row;
      }),
    );
    suggest.hidden = !suggestions.items.length;
  }
  function acceptSuggestion(i) {
    const item = suggestions.items[i];
    if (!item) return;
    const end = input.selectionStart ?? input.value.length;
    const start = end - suggestions.query.length;
    input.value = input.value.slice(0, start) + item.insert + input.value.slice(end);
    input.selectionStart = input.selectionEnd = start + item.insert.length;
    if (item.path) vscode.postMessage({ type: "addPath", path: item.path });
    closeSuggest();
    input.focus();
  }
  input.addEventListener("input", () => {
    const token = currentToken();
    if (token) vscode.postMessage({ type: "suggest", query: token });
    else closeSuggest();
  });
  input.addEventListener("blur", () => setTimeout(closeSuggest, 100));
  $("addSelection").addEventListener("click", () => vscode.postMessage({ type: "addSelection" }));
  $("addFile").addEventListener("click", () => vscode.postMessage({ type: "addFile" }));
  $("addImage").addEventListener("click", () => vscode.postMessage({ type: "pickImage" }));
  input.addEventListener("paste", (e) => {
    const files = [...(e.clipboardData?.files ?? [])].filter((f) => f.type.startsWith("image/"));
    if (files.length) {
      e.preventDefault();
      attachFiles(files);
    }
  });
  const composer = $("composer");
  composer.addEventListener("dragover", (e) => {
    e.preventDefault();
    composer.classList.add("dropping");
  });
  composer.addEventListener("dragleave", () => composer.classList.remove("dropping"));
  composer.addEventListener("drop", (e) => {
    e.preventDefault();
    composer.classList.remove("dropping");
    attachFiles([...(e.dataTransfer?.files ?? [])]);
  });
  model.addEventListener("change", () => {
    if (model.value === DOWNLOAD) {
      model.value = shownModel; // stays on the model in use until a download is selected
      vscode.postMessage({ type: "downloadModel" });
    } else {
      shownModel = model.value;
      vscode.postMessage({ type: "pickModel", model: model.value });
    }
  });
  input.addEventListener("keydown", (e) => {
    if (!suggest.hidden && suggestions.items.length) {
      const n = suggestions.items.length;
      if (e.key === "ArrowDown" || e.key === "ArrowUp") {
        e.preventDefault();
        suggestions.index = (suggestions.index + (e.key === "ArrowDown" ? 1 : n - 1)) % n;
        drawSuggest();
        return;
      }
      if (e.key === "Tab" || (e.key === "Enter" && !e.shiftKey)) {
        e.preventDefault();
        acceptSuggestion(suggestions.index);
        return;
      }
      if (e.key === "Escape") {
        e.preventDefault();
        closeSuggest();
        return;
      }
    }
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
        // The picker ends with a way to get another model.
        const download = document.createElement("option");
        download.value = DOWNLOAD;
        download.textContent = "Download a model…";
        model.appendChild(download);
        if (m.current) model.value = m.current;
        shownModel = model.value;
        break;
      }
      case "restore":
        for (const turn of m.shown) {
          if (turn.role === "user") {
            const el = add("user", "You");
            const labels = [...turn.context, ...turn.images.map((n) => `image: ${n}`)];
            if (labels.length) el.insertBefore(chips(labels, false), el.querySelector(".body"));
            /** @type {HTMLElement} */ (el.querySelector(".body")).textContent = turn.text;
          } else finish(add("assistant", "MLX"), turn);
        }
        $("context").replaceChildren(chips(m.context, true));
        break;
      case "user": {
        const el = add("user", "You");
        if (m.context.length) el.insertBefore(chips(m.context, false), el.querySelector(".body"));
        if (m.imageUrls?.length) el.insertBefore(thumbnails(m.imageUrls), el.querySelector(".body"));
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
        if (streaming) finish(streaming.el, m);
        streaming = null;
        setBusy(false);
        break;
      case "images":
        showImages(m.items);
        break;
      case "suggestions":
        // an answer to what is typed now, not to an earlier keystroke
        if (m.query === currentToken()) {
          suggestions = { query: m.query, items: m.items, index: 0 };
          drawSuggest();
        }
        break;
      case "dropLastReply": {
        const replies = messages.querySelectorAll(".msg.assistant");
        replies[replies.length - 1]?.remove();
        break;
      }
      case "needsVision": {
        // A text-only chat model and images attached: say so, one click switches. Also the answer
        // to a sent question (the sidecar's images_not_supported): its reply ends here.
        if (streaming) streaming.el.remove();
        streaming = null;
        setBusy(false);
        const el = add("error", "Images need a vision model");
        /** @type {HTMLElement} */ (el.querySelector(".body")).textContent = m.message;
        // Every action the message names is a button: switch (when a vision model is installed)
        // and download one (then it is selected for chat).
        const buttons = document.createElement("div");
        buttons.className = "actions";
        const action = (cls, label, message) => {
          const button = document.createElement("button");
          button.className = cls;
          button.textContent = label;
          button.addEventListener("click", () => {
            vscode.postMessage(message);
            el.remove();
          });
          buttons.appendChild(button);
        };
        if (m.model) action("switch", `Switch to ${m.model}`, { type: "switchModel", model: m.model });
        action(m.model ? "download secondary" : "download", "Download a vision model…", {
          type: "downloadModel",
          query: m.query,
        });
        el.appendChild(buttons);
        if (!input.value && m.text) input.value = m.text;
        messages.scrollTop = messages.scrollHeight;
        break;
      }
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
        $("images").replaceChildren();
        streaming = null;
        setBusy(false);
        break;
    }
  });

  vscode.postMessage({ type: "ready" });
})();
