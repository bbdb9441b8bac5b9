// One message per event. Work in progress goes to the status bar (ProgressLocation.Window), its
// result is one notification; the same message for the same event again within a few seconds (a
// model switched from the chat panel and reported back by the sidecar, a retry) is dropped.
import * as vscode from "vscode";

export const DEDUP_MS = 5000;

/** Decides which messages are shown: a key already shown within `windowMs` is not shown again. */
export class Dedup {
  private readonly shownAt = new Map<string, number>();

  constructor(
    readonly windowMs = DEDUP_MS,
    private readonly now: () => number = Date.now,
  ) {}

  /** True (and remembered) when `key` was not shown within the window. */
  take(key: string): boolean {
    const t = this.now();
    for (const [k, at] of this.shownAt) if (t - at >= this.windowMs) this.shownAt.delete(k);
    if (this.shownAt.has(key)) return false;
    this.shownAt.set(key, t);
    return true;
  }
}

const dedup = new Dedup();

/** An information message with actions, unless the same message for the same `key` (the event)
 * was just shown; resolves with the action picked (undefined: dismissed or not shown). Running an
 * action is the caller's. Another message for the same key is news ("cancelled", then
 * "downloaded" on a retry) and is always shown. */
export async function inform(key: string, message: string, ...actions: string[]): Promise<string | undefined> {
  if (!dedup.take(`${key}\n${message}`)) return undefined;
  return vscode.window.showInformationMessage(message, ...actions);
}

/** Work shown in the status bar while it runs (no notification that outlives it). */
export function inStatusBar<T>(title: string, task: () => Promise<T>): Thenable<T> {
  return vscode.window.withProgress({ location: vscode.ProgressLocation.Window, title }, task);
}
