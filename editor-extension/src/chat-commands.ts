import * as vscode from "vscode";

// The chat's slash commands: the common actions on the editor's selection (or, without one, the
// current file), as Continue and Copilot Chat have them. "/explain tail" asks the template with
// the user's own words after it.

export interface SlashCommand {
  name: string;
  description: string;
  /** the question sent with the code; undefined: an action of the panel (/new) */
  prompt?: string;
}

export const SLASH_COMMANDS: SlashCommand[] = [
  { name: "explain", description: "explain the selected code", prompt: "Explain what this code does, step by step." },
  {
    name: "fix",
    description: "find and fix bugs in the selected code",
    prompt: "Find the bugs in this code and give a fixed version in one code block, then say what you changed.",
  },
  {
    name: "tests",
    description: "write unit tests for the selected code",
    prompt:
      "Write unit tests for this code in one code block, with the test framework the code's language usually uses.",
  },
  { name: "new", description: "start a new chat" },
];

/** What a message that starts with "/name" asks; undefined: it is no command (sent as typed). */
export function parseSlash(text: string): { command: SlashCommand; prompt?: string } | undefined {
  const m = /^\/([a-z]+)\b\s*([\s\S]*)$/.exec(text.trim());
  const command = m && SLASH_COMMANDS.find((c) => c.name === m[1]);
  if (!m || !command) return undefined;
  if (!command.prompt) return { command };
  const extra = m[2].trim();
  return { command, prompt: extra ? `${command.prompt} ${extra}` : command.prompt };
}

export interface Suggestion {
  /** what replaces the typed token */
  insert: string;
  label: string;
  detail: string;
  /** a file to add as context */
  path?: string;
}

/** Completions for the composer: slash commands after "/", "@workspace" and files after "@". */
export async function composerSuggestions(query: string): Promise<Suggestion[]> {
  if (query.startsWith("/")) {
    return SLASH_COMMANDS.filter((c) => `/${c.name}`.startsWith(query)).map((c) => ({
      insert: `/${c.name} `,
      label: `/${c.name}`,
      detail: c.description,
    }));
  }
  if (!query.startsWith("@")) return [];
  const word = query.slice(1).toLowerCase();
  const items: Suggestion[] = [];
  if ("workspace".startsWith(word)) {
    items.push({ insert: "@workspace ", label: "@workspace", detail: "answer from the indexed project" });
  }
  const glob = `**/*${word.replace(/[^\w.-]/g, "")}*`;
  const files = await vscode.workspace.findFiles(glob, "**/{node_modules,.git,.venv,__pycache__}/**", 8);
  for (const f of files) {
    items.push({
      insert: "",
      label: `@${vscode.workspace.asRelativePath(f)}`,
      detail: "add the file as context",
      path: f.fsPath,
    });
  }
  return items;
}

/** A fence's info word as a VS Code language id ("py" is "python"); undefined: plain text. */
export function languageId(fence: string | undefined): string | undefined {
  const word = (fence ?? "").trim().toLowerCase();
  const aliases: Record<string, string> = {
    py: "python",
    js: "javascript",
    ts: "typescript",
    sh: "shellscript",
    bash: "shellscript",
    shell: "shellscript",
    zsh: "shellscript",
    yml: "yaml",
    md: "markdown",
    rs: "rust",
    "c++": "cpp",
  };
  return word ? (aliases[word] ?? word) : undefined;
}
