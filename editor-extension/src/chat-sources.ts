// The files an `@workspace` reply was given (ChatResult.sources), as links: one per file, its
// line ranges merged, opening the file at the first range.
import * as path from "node:path";
import * as vscode from "vscode";
import type { Source } from "./protocol";

export interface SourceLink {
  /** "bookshelf/auth.py:10-24, 40-52" */
  label: string;
  path: string;
  start_line: number;
  end_line: number;
}

/** One link per file in first-cited order, ranges sorted and overlapping ones merged. */
export function sourceLinks(sources: Source[]): SourceLink[] {
  const byPath = new Map<string, [number, number][]>();
  for (const s of sources) {
    const ranges = byPath.get(s.path) ?? [];
    ranges.push([s.start_line, s.end_line]);
    byPath.set(s.path, ranges);
  }
  return [...byPath].map(([file, ranges]) => {
    ranges.sort((a, b) => a[0] - b[0]);
    const merged: [number, number][] = [];
    for (const r of ranges) {
      const last = merged[merged.length - 1];
      if (last && r[0] <= last[1] + 1) last[1] = Math.max(last[1], r[1]);
      else merged.push([...r]);
    }
    const lines = merged.map(([a, b]) => (a === b ? `${a}` : `${a}-${b}`)).join(", ");
    return { label: `${file}:${lines}`, path: file, start_line: merged[0][0], end_line: merged[0][1] };
  });
}

/** The file a source names: absolute as given, else under the first workspace folder. */
export function sourceUri(source: Pick<Source, "path">): vscode.Uri | undefined {
  if (path.isAbsolute(source.path)) return vscode.Uri.file(source.path);
  const root = vscode.workspace.workspaceFolders?.[0]?.uri;
  return root ? vscode.Uri.joinPath(root, ...source.path.split("/")) : undefined;
}

/** Open the file with the cited lines selected and in view. */
export async function openSource(source: Pick<Source, "path" | "start_line" | "end_line">): Promise<void> {
  const uri = sourceUri(source);
  if (!uri) {
    void vscode.window.showInformationMessage(`MLX: open the workspace that holds ${source.path}.`);
    return;
  }
  const start = new vscode.Position(Math.max(0, source.start_line - 1), 0);
  const end = new vscode.Position(Math.max(0, source.end_line - 1), Number.MAX_SAFE_INTEGER);
  await vscode.window.showTextDocument(uri, { selection: new vscode.Range(start, end), preview: true });
}
