// Status dashboard webview: draws what StatusPage (src/status-page.ts) posts, with DOM APIs only
// (no innerHTML of sidecar text); charts are inline SVG polylines. Bundled by esbuild.mjs.
// @ts-check
import { chartPoints, chartScale, deviceLabel } from "../src/status-history";
import { formatBytes } from "../src/protocol";

(function () {
  // @ts-expect-error acquireVsCodeApi is a global of the webview host, unknown to TypeScript
  const vscode = acquireVsCodeApi();
  const root = /** @type {HTMLElement} */ (document.getElementById("dashboard"));
  const SVG = "http://www.w3.org/2000/svg";

  /** @param {string} tag @param {string} [text] @param {string} [cls] */
  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined) e.textContent = text;
    if (cls) e.className = cls;
    return e;
  }

  function section(title, ...children) {
    const s = el("section");
    s.append(el("h2", title), ...children);
    return s;
  }

  function table(headers, rows) {
    const t = el("table");
    const head = el("tr");
    headers.forEach((h) => head.appendChild(el("th", h)));
    t.appendChild(head);
    for (const row of rows) {
      const tr = el("tr");
      row.forEach((c) => tr.appendChild(el("td", String(c))));
      t.appendChild(tr);
    }
    return t;
  }

  function ago(seconds) {
    if (seconds < 60) return `${Math.round(seconds)} s ago`;
    if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
    if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
    return `${Math.round(seconds / 86400)} d ago`;
  }

  /** A labelled bar: part of a whole (memory against the budget). */
  function bar(label, value, whole) {
    const row = el("div", undefined, "bar");
    const pct = whole > 0 ? Math.min(100, (100 * value) / whole) : 0;
    const track = el("div", undefined, "track");
    const fill = el("div", undefined, "fill");
    fill.style.width = `${pct.toFixed(1)}%`;
    track.appendChild(fill);
    row.append(el("span", label, "label"), track, el("span", formatBytes(value), "value"));
    return row;
  }

  /** @param {string} tag @param {Record<string, string | number>} attrs */
  function svgEl(tag, attrs, text) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
    if (text !== undefined) e.textContent = text;
    return e;
  }

  /** A small line chart of one series: a y axis from 0 to a round maximum, an x axis over the
   * smallest span that holds the history ("-2 min" … "now"), gridlines; one sample is a dot. */
  function chart(title, series, now, windowMs, unit) {
    const W = 320;
    const H = 96;
    const left = 30; // room for the y labels
    const bottom = 16; // room for the x labels
    const top = 6;
    const right = 14; // room for "now" centred on the right edge
    const w = W - left - right;
    const h = H - top - bottom;
    const scale = chartScale(series, now, windowMs);
    const box = el("figure", undefined, "chart");
    const svg = svgEl("svg", {
      viewBox: `0 0 ${W} ${H}`,
      role: "img",
      "aria-label": `${title} over the last ${scale.xTicks[0].label.slice(1)}`,
    });
    for (const t of scale.yTicks) {
      const y = top + h - t.at * h;
      svg.appendChild(svgEl("line", { x1: left, x2: left + w, y1: y, y2: y, class: t.at === 0 ? "axis" : "grid" }));
      svg.appendChild(svgEl("text", { x: left - 4, y: y + 3, "text-anchor": "end", class: "tick" }, t.label));
    }
    svg.appendChild(svgEl("line", { x1: left, x2: left, y1: top, y2: top + h, class: "axis" }));
    for (const t of scale.xTicks) {
      const x = left + t.at * w;
      const anchor = t.at === 0 ? "start" : t.at === 1 ? "end" : "middle";
      svg.appendChild(
        svgEl("text", { x: t.at === 1 ? x + right - 1 : x, y: H - 3, "text-anchor": anchor, class: "tick" }, t.label),
      );
    }
    const plot = svgEl("g", { transform: `translate(${left},${top})` });
    if (series.length === 1) {
      const [x, y] = chartPoints(series, now, scale.spanMs, w, h, scale.max).split(",");
      plot.appendChild(svgEl("circle", { cx: x, cy: y, r: 2.5, class: "dot" }));
    } else if (series.length > 1) {
      plot.appendChild(
        svgEl("polyline", { points: chartPoints(series, now, scale.spanMs, w, h, scale.max), class: "line" }),
      );
    }
    svg.appendChild(plot);
    const last = series.length ? series[series.length - 1].v : 0;
    const max = Math.max(0, ...series.map((p) => p.v));
    const caption = el(
      "figcaption",
      series.length ? `${title}: ${fmt(last)}${unit} now, max ${fmt(max)}${unit}` : `${title}: no samples yet`,
    );
    box.append(caption, svg);
    return box;
  }

  const fmt = (v) => (Number.isInteger(v) ? String(v) : v.toFixed(1));

  function render(m) {
    const parts = [];
    const s = m.status;
    const head = [`state: ${m.state}`];
    if (s) head.push(s.healthy ? "healthy" : `unhealthy: ${s.health_reason ?? ""}`, `device: ${deviceLabel(s.device)}`);
    if (s) head.push(`up ${Math.round(s.uptime_s)} s`);
    const sidecar = section("Sidecar", el("p", head.join(" · ")));
    if (m.daemon) sidecar.appendChild(el("p", m.daemon));
    if (m.command) sidecar.appendChild(el("p", `started as: ${m.command}`, "mono"));
    if (m.lastError) sidecar.appendChild(el("p", `last error: ${m.lastError}`, "error"));
    if (m.error) sidecar.appendChild(el("p", `status request failed: ${m.error}`, "error"));
    const log = el("button", "Show Log");
    log.addEventListener("click", () => vscode.postMessage({ type: "showLog" }));
    sidecar.appendChild(log);
    parts.push(sidecar);

    if (s) {
      const series = (key) => m.history.map((p) => ({ t: p.t, v: p[key] }));
      const charts = el("div", undefined, "charts");
      charts.append(
        chart("tokens/s", series("tokensPerS"), m.now, m.windowMs, ""),
        chart("queued requests", series("queue"), m.now, m.windowMs, ""),
        chart("running requests", series("running"), m.now, m.windowMs, ""),
      );
      parts.push(section("Activity", charts));
      const mem = s.memory;
      parts.push(
        section(
          "Memory",
          el("p", `${formatBytes(mem.used_bytes)} used of a ${formatBytes(mem.budget_bytes)} budget`),
          bar("weights", mem.models_bytes, mem.budget_bytes),
          bar("KV caches", mem.kv_bytes, mem.budget_bytes),
          bar("prompt caches", mem.prompt_cache_bytes, mem.budget_bytes),
          bar("MLX active", mem.active_bytes, mem.budget_bytes),
        ),
      );
      const loaded = new Map(s.loaded.map((l) => [l.id, l]));
      const rows = m.models.map((x) => {
        const l = loaded.get(x.id);
        const state = l ? (l.busy ? "busy" : `idle ${Math.round(l.idle_s)} s`) : "on disk";
        return [x.id, x.kind, x.roles.join(", "), formatBytes(x.size_bytes), state];
      });
      parts.push(section("Models", table(["id", "kind", "roles", "size", "state"], rows)));
    }

    const ws = m.workspace;
    const index = section("Workspace index");
    if (ws && ws.root && ws.files) {
      const fresh = ws.last_indexed_at ? ago(m.now / 1000 - ws.last_indexed_at) : "never";
      index.append(
        el("p", ws.root, "mono"),
        table(
          ["files", "chunks", "text", "index on disk", "indexed", "model"],
          [
            [
              ws.files,
              ws.chunks,
              formatBytes(ws.bytes),
              formatBytes(ws.index_bytes),
              ws.indexing ? "indexing now…" : fresh,
              ws.model ?? "",
            ],
          ],
        ),
      );
    } else {
      index.appendChild(el("p", "Not indexed yet: run it to use @workspace in the chat.", "hint"));
    }
    const run = el("button", "Index Workspace");
    run.addEventListener("click", () => vscode.postMessage({ type: "indexWorkspace" }));
    index.appendChild(run);
    parts.push(index);

    if (s?.upstreams?.length) {
      parts.push(
        section(
          "Remote upstreams",
          table(
            ["name", "base URL", "key from", "breaker", "listed"],
            s.upstreams.map((u) => [u.name, u.base_url, u.key_source, u.breaker, u.error ?? `${u.models} models`]),
          ),
        ),
      );
    }
    root.replaceChildren(...parts);
  }

  window.addEventListener("message", (event) => {
    if (event.data?.type === "state") render(event.data);
  });
  vscode.postMessage({ type: "ready" });
})();
