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
