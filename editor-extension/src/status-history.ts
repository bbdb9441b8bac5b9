// Recent samples of `mlx/status` for the status dashboard's charts (tokens/s, queue), and the
// charts themselves as inline SVG paths (no chart library: a polyline is a few lines).
import type { EditorStatus } from "./protocol";

export interface Sample {
  /** ms since the epoch */
  t: number;
  tokensPerS: number;
  queue: number;
  running: number;
  usedBytes: number;
}

export class StatusHistory {
  private samples: Sample[] = [];

  constructor(readonly windowMs = 10 * 60_000) {}

  add(status: Pick<EditorStatus, "recent_tokens_per_s" | "queue_depth" | "running" | "memory">, t = Date.now()): void {
    this.samples.push({
      t,
      tokensPerS: status.recent_tokens_per_s ?? 0,
      queue: status.queue_depth,
      running: status.running,
      usedBytes: status.memory.used_bytes,
    });
    const oldest = t - this.windowMs;
    while (this.samples.length && this.samples[0].t < oldest) this.samples.shift();
  }

  get all(): readonly Sample[] {
    return this.samples;
  }
}

/** An SVG polyline's `points` for values over time in a width x height box: time runs over the
 * window ending at `now`, values from 0 (bottom) to the max (at least `floor`, top). */
export function chartPoints(
  series: { t: number; v: number }[],
  now: number,
  windowMs: number,
  width: number,
  height: number,
  floor = 1,
): string {
  const max = Math.max(floor, ...series.map((p) => p.v));
  return series
    .map((p) => {
      const x = width - ((now - p.t) / windowMs) * width;
      const y = height - (p.v / max) * height;
      return `${x.toFixed(1)},${y.toFixed(1)}`;
    })
    .join(" ");
}

/** The time spans a chart may show: the smallest that holds the history is used, so a fresh
 * history fills the chart instead of a sliver at its right edge. */
export const SPANS_MS = [60_000, 2 * 60_000, 5 * 60_000, 10 * 60_000];

/** 1, 2 or 5 times a power of ten, at least `v` (and at least `floor`). */
export function niceMax(v: number, floor = 1): number {
  const x = Math.max(v, floor);
  const p = 10 ** Math.floor(Math.log10(x));
  return [1, 2, 5, 10].map((m) => m * p).find((n) => n >= x - 1e-9) ?? 10 * p;
}

export interface ChartScale {
  /** the time the chart spans, ending now */
  spanMs: number;
  /** the value at the top of the chart */
  max: number;
  /** labels under the x axis: position 0..1 from the left, text such as "-2 min" or "now" */
  xTicks: { at: number; label: string }[];
  /** labels beside the y axis: position 0..1 from the bottom, the value */
  yTicks: { at: number; label: string }[];
}

function spanLabel(ms: number): string {
  return ms >= 60_000 ? `-${Math.round(ms / 60_000)} min` : `-${Math.round(ms / 1000)} s`;
}

/** The axes of a chart of `series` at `now`: the smallest span of SPANS_MS (at most `windowMs`)
 * that holds the oldest sample, a rounded maximum, ticks at the ends and middle of each axis. */
export function chartScale(series: { t: number; v: number }[], now: number, windowMs: number, floor = 1): ChartScale {
  const oldest = series.length ? now - series[0].t : 0;
  const spans = SPANS_MS.filter((s) => s <= windowMs);
  const spanMs = spans.find((s) => s >= oldest) ?? (spans.length ? spans[spans.length - 1] : windowMs);
  const max = niceMax(Math.max(0, ...series.map((p) => p.v)), floor);
  const fmt = (v: number) => (Number.isInteger(v) ? String(v) : v.toFixed(1));
  return {
    spanMs,
    max,
    xTicks: [
      { at: 0, label: spanLabel(spanMs) },
      { at: 0.5, label: spanLabel(spanMs / 2) },
      { at: 1, label: "now" },
    ],
    yTicks: [
      { at: 0, label: "0" },
      { at: 0.5, label: fmt(max / 2) },
      { at: 1, label: fmt(max) },
    ],
  };
}

/** "Device(cpu, 0)" (MLX's repr) as a reader would say it: "CPU"; "Device(gpu, 0)": "GPU". */
export function deviceLabel(device: string): string {
  const m = /^Device\((\w+),\s*(\d+)\)$/.exec(device.trim());
  if (!m) return device;
  const kind = m[1].toUpperCase();
  return m[2] === "0" ? kind : `${kind} ${m[2]}`;
}
