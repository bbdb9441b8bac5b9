// What the chat takes from and gives to the editors: the selection or a file as context, a code
// block inserted at the cursor or opened in a new file.
import * as vscode from "vscode";
import type { ContextItem } from "./chat-content";
import { languageId } from "./chat-commands";

export function documentContext(doc: vscode.TextDocument): ContextItem {
  return { label: vscode.workspace.asRelativePath(doc.uri), language: doc.languageId, text: doc.getText() };
}

/** The active editor's selection as context; undefined: no editor or nothing selected. */
export function selectionContext(): ContextItem | undefined {
  const editor = vscode.window.activeTextEditor;
  if (!editor || !editor.selection || editor.selection.isEmpty) return undefined;
  const s = editor.selection;
  const name = vscode.workspace.asRelativePath(editor.document.uri);
  return {
    label: `${name}:${s.start.line + 1}-${s.end.line + 1}`,
    language: editor.document.languageId,
    text: editor.document.getText(s),
  };
}

/** The file of the active (else a visible) editor as context. */
export function activeFileContext(): ContextItem | undefined {
  const editor = vscode.window.activeTextEditor ?? vscode.window.visibleTextEditors[0];
  return editor && documentContext(editor.document);
}

export async function insertAtCursor(code: string): Promise<void> {
  const editor =
    vscode.window.visibleTextEditors.find((e) => e === vscode.window.activeTextEditor) ??
    vscode.window.visibleTextEditors[0];
  if (!editor) {
    void vscode.window.showInformationMessage("MLX: open an editor to insert the code into.");
    return;
  }
  await editor.edit((b) => {
    for (const sel of editor.selections) b.replace(sel, code);
  });
}

/** A code block in a new untitled editor, in its language when VS Code knows it. */
export async function openInNewFile(code: string, fence?: string): Promise<void> {
  const wanted = languageId(fence);
  const known = wanted && (await vscode.languages.getLanguages()).includes(wanted);
  const doc = await vscode.workspace.openTextDocument({ content: code, language: known ? wanted : undefined });
  await vscode.window.showTextDocument(doc, { preview: false });
}
