// A small fake of the `vscode` module: enough host API for vscode-languageclient and this
// extension to run under node:test. Unknown namespace members are harmless no-ops; tests
// script the UI through `ui` (quick pick / message answers) and read what was shown.
import * as fs from "node:fs";
import * as path from "node:path";

type Listener<T> = (e: T) => any;

export class Disposable {
  constructor(private readonly fn: () => void = () => undefined) {}
  static from(...ds: { dispose(): any }[]): Disposable {
    return new Disposable(() => ds.forEach((d) => d.dispose()));
  }
  dispose(): void {
    this.fn();
  }
}

export class EventEmitter<T> {
  private listeners = new Set<Listener<T>>();
  event = (listener: Listener<T>, thisArg?: any, disposables?: Disposable[]): Disposable => {
    const l = thisArg ? listener.bind(thisArg) : listener;
    this.listeners.add(l);
    const d = new Disposable(() => this.listeners.delete(l));
    disposables?.push(d);
    return d;
  };
  fire(e: T): void {
    for (const l of [...this.listeners]) l(e);
  }
  dispose(): void {
    this.listeners.clear();
  }
}

export class Uri {
  constructor(
    readonly scheme: string,
    readonly authority: string,
    readonly path: string,
    readonly query = "",
    readonly fragment = "",
  ) {}
  static parse(value: string): Uri {
    const m = /^([a-zA-Z][\w+.-]*):(?:\/\/([^/?#]*))?([^?#]*)(?:\?([^#]*))?(?:#(.*))?$/.exec(value);
    if (!m) return new Uri("file", "", value);
    return new Uri(m[1], m[2] ?? "", decodeURIComponent(m[3] || "/"), m[4] ?? "", m[5] ?? "");
  }
  static file(p: string): Uri {
    return new Uri("file", "", path.resolve(p));
  }
  static joinPath(base: Uri, ...parts: string[]): Uri {
    return new Uri(base.scheme, base.authority, path.posix.join(base.path, ...parts));
  }
  static from(c: { scheme: string; authority?: string; path?: string; query?: string; fragment?: string }): Uri {
    return new Uri(c.scheme, c.authority ?? "", c.path ?? "/", c.query ?? "", c.fragment ?? "");
  }
  get fsPath(): string {
    return this.path;
  }
  with(c: Partial<{ scheme: string; authority: string; path: string; query: string; fragment: string }>): Uri {
    return new Uri(
      c.scheme ?? this.scheme,
      c.authority ?? this.authority,
      c.path ?? this.path,
      c.query ?? this.query,
      c.fragment ?? this.fragment,
    );
  }
  toString(): string {
    const p = this.path.split("/").map(encodeURIComponent).join("/");
    return `${this.scheme}://${this.authority}${p}${this.query ? `?${this.query}` : ""}${this.fragment ? `#${this.fragment}` : ""}`;
  }
  toJSON(): any {
    return { scheme: this.scheme, path: this.path };
  }
}

export class Position {
  constructor(
    readonly line: number,
    readonly character: number,
  ) {}
  isEqual(o: Position): boolean {
    return o.line === this.line && o.character === this.character;
  }
  isBefore(o: Position): boolean {
    return this.line < o.line || (this.line === o.line && this.character < o.character);
  }
  translate(dl = 0, dc = 0): Position {
    return new Position(this.line + dl, this.character + dc);
  }
}

export class Range {
  readonly start: Position;
  readonly end: Position;
  constructor(a: any, b: any, c?: number, d?: number) {
    if (typeof a === "number") {
      this.start = new Position(a, b);
      this.end = new Position(c!, d!);
    } else {
      this.start = a;
      this.end = b;
    }
  }
  get isEmpty(): boolean {
    return this.start.isEqual(this.end);
  }
}

export class Selection extends Range {
  get anchor(): Position {
    return this.start;
  }
  get active(): Position {
    return this.end;
  }
}

export class CancellationTokenSource {
  private emitter = new EventEmitter<void>();
  private cancelled = false;
  readonly token: { readonly isCancellationRequested: boolean; onCancellationRequested: EventEmitter<void>["event"] };
  constructor() {
    const token = { onCancellationRequested: this.emitter.event } as any;
    Object.defineProperty(token, "isCancellationRequested", { get: () => this.cancelled });
    this.token = token;
  }
  cancel(): void {
    if (this.cancelled) return;
    this.cancelled = true;
    this.emitter.fire();
  }
  dispose(): void {
    this.emitter.dispose();
  }
}

export class InlineCompletionItem {
  constructor(
    public insertText: any,
    public range?: Range,
    public command?: any,
  ) {}
}
export class InlineCompletionList {
  constructor(public items: InlineCompletionItem[]) {}
}
export class SnippetString {
  constructor(public value = "") {}
}
export class MarkdownString {
  constructor(public value = "") {}
}
export class LanguageModelTextPart {
  constructor(public value: string) {}
}
export class ThemeIcon {
  constructor(public id: string) {}
}

export const InlineCompletionTriggerKind = { Invoke: 0, Automatic: 1 };
export const QuickPickItemKind = { Separator: -1, Default: 0 };
export const ProgressLocation = { SourceControl: 1, Window: 10, Notification: 15 };
export const StatusBarAlignment = { Left: 1, Right: 2 };
export const ConfigurationTarget = { Global: 1, Workspace: 2, WorkspaceFolder: 3 };
export const ViewColumn = { Active: -1, Beside: -2, One: 1 };
export const EndOfLine = { LF: 1, CRLF: 2 };

/** Any other class the client touches (CodeLens, Diagnostic…): a plain holder of its arguments. */
function genericClass(name: string): any {
  const C = class {
    args: any[];
    constructor(...args: any[]) {
      this.args = args;
    }
  };
  Object.defineProperty(C, "name", { value: name });
  return new Proxy(C, {
    get(target: any, prop) {
      if (prop in target) return target[prop];
      return typeof prop === "string" ? prop : undefined; // enum-like members
    },
  });
}

// ---- documents ---------------------------------------------------------------------------

export class FakeTextDocument {
  version = 1;
  isClosed = false;
  isDirty = false;
  isUntitled = false;
  eol = EndOfLine.LF;
  constructor(
    readonly uri: Uri,
    readonly languageId: string,
    private text: string,
  ) {}
  get fileName(): string {
    return this.uri.fsPath;
  }
  get lineCount(): number {
    return this.text.split("\n").length;
  }
  getText(range?: Range): string {
    if (!range) return this.text;
    return this.text.slice(this.offsetAt(range.start), this.offsetAt(range.end));
  }
  offsetAt(p: Position): number {
    const lines = this.text.split("\n");
    let off = 0;
    for (let i = 0; i < p.line && i < lines.length; i++) off += lines[i].length + 1;
    return off + Math.min(p.character, lines[Math.min(p.line, lines.length - 1)].length);
  }
  positionAt(offset: number): Position {
    const before = this.text.slice(0, offset).split("\n");
    return new Position(before.length - 1, before[before.length - 1].length);
  }
  lineAt(line: number | Position): any {
    const n = typeof line === "number" ? line : line.line;
    const text = this.text.split("\n")[n] ?? "";
    return { lineNumber: n, text, range: new Range(n, 0, n, text.length), isEmptyOrWhitespace: !text.trim() };
  }
  setText(text: string): void {
    this.text = text;
    this.version++;
  }
  save(): Promise<boolean> {
    return Promise.resolve(true);
  }
}

// ---- namespaces ---------------------------------------------------------------------------

function event(): any {
  return () => new Disposable();
}

function namespace(_name: string, impl: Record<string, any>): any {
  return new Proxy(impl, {
    get(target, prop) {
      if (prop in target) return target[prop as string];
      if (typeof prop !== "string") return undefined;
      if (/^on[A-Z]/.test(prop)) return event();
      if (/^(register|create|show|set|with|execute|apply|open|save|find|update)/.test(prop)) {
        return (..._args: any[]) => new Disposable();
      }
      return undefined;
    },
  });
}

export const settings = new Map<string, any>();
const configEmitter = new EventEmitter<any>();

function configuration(section?: string): any {
  const key = (k: string): string => (section ? `${section}.${k}` : k);
  return {
    get: (k: string, dflt?: any) => (settings.has(key(k)) ? settings.get(key(k)) : dflt),
    has: (k: string) => settings.has(key(k)),
    inspect: (k: string) => ({ key: key(k), globalValue: settings.get(key(k)) }),
    update: async (k: string, v: any) => {
      settings.set(key(k), v);
      configEmitter.fire({ affectsConfiguration: (s: string) => key(k).startsWith(s) });
    },
  };
}

const openEmitter = new EventEmitter<FakeTextDocument>();
const changeEmitter = new EventEmitter<any>();
const closeEmitter = new EventEmitter<FakeTextDocument>();
export const textDocuments: FakeTextDocument[] = [];

/** File system watchers the extension made: tests fire their events. */
export const watchers: { create: EventEmitter<Uri>; change: EventEmitter<Uri>; remove: EventEmitter<Uri> }[] = [];
export const renameEmitter = new EventEmitter<{ files: { oldUri: Uri; newUri: Uri }[] }>();

function fileSystemWatcher(): any {
  const w = { create: new EventEmitter<Uri>(), change: new EventEmitter<Uri>(), remove: new EventEmitter<Uri>() };
  watchers.push(w);
  return {
    onDidCreate: w.create.event,
    onDidChange: w.change.event,
    onDidDelete: w.remove.event,
    dispose: () => watchers.splice(watchers.indexOf(w), 1),
  };
}

export const workspace = namespace("workspace", {
  getConfiguration: configuration,
  onDidChangeConfiguration: configEmitter.event,
  onDidOpenTextDocument: openEmitter.event,
  onDidChangeTextDocument: changeEmitter.event,
  onDidCloseTextDocument: closeEmitter.event,
  textDocuments,
  notebookDocuments: [],
  workspaceFolders: undefined,
  asRelativePath: (u: any) => (typeof u === "string" ? u : path.basename(u.fsPath)),
  registerTextDocumentContentProvider: (scheme: string, provider: any) => {
    registered.contentProviders.set(scheme, provider);
    return new Disposable();
  },
  openTextDocument: async (u: any) =>
    textDocuments.find((d) => d.uri.toString() === String(u)) ?? new FakeTextDocument(u, "markdown", ""),
  createFileSystemWatcher: () => fileSystemWatcher(),
  onDidRenameFiles: renameEmitter.event,
  fs: { readFile: async (u: any) => new Uint8Array(fs.readFileSync(u.fsPath)) },
});

/** Opens a document the way VS Code would (didOpen reaches the server). */
export function openDocument(uri: Uri, languageId: string, text: string): FakeTextDocument {
  const doc = new FakeTextDocument(uri, languageId, text);
  textDocuments.push(doc);
  openEmitter.fire(doc);
  return doc;
}

/** Scripted UI: answer quick picks / messages with functions the test pushes. */
export const ui = {
  quickPickAnswers: [] as ((items: any[]) => any)[],
  messageAnswers: [] as ((message: string, items: string[]) => any)[],
  shown: [] as { level: string; message: string }[],
  progress: [] as any[],
  quickPicks: [] as any[],
  statusBarItems: [] as any[],
  panels: [] as any[],
  openedDocuments: [] as { uri: any; options?: any }[],
};

function showMessage(level: string) {
  return async (message: string, ...rest: any[]) => {
    ui.shown.push({ level, message });
    const items = rest.filter((r) => typeof r === "string");
    const answer = ui.messageAnswers.shift();
    return answer ? answer(message, items) : undefined;
  };
}

export const registered = {
  inlineProviders: [] as any[],
  commands: new Map<string, (...args: any[]) => any>(),
  webviewProviders: new Map<string, any>(),
  contentProviders: new Map<string, any>(),
  lmProviders: [] as { vendor: string; provider: any }[],
};

function outputChannel(name: string): any {
  const lines: string[] = [];
  const ch: any = {
    name,
    lines,
    logLevel: 2,
    onDidChangeLogLevel: event(),
    append: (s: string) => lines.push(s),
    appendLine: (s: string) => lines.push(s),
    replace: () => undefined,
    clear: () => undefined,
    show: () => undefined,
    hide: () => undefined,
    dispose: () => undefined,
  };
  for (const lvl of ["trace", "debug", "info", "warn", "error"])
    ch[lvl] = (s: any) => lines.push(`[${lvl}] ${String(s)}`);
  return ch;
}

export const window = namespace("window", {
  createOutputChannel: outputChannel,
  showInformationMessage: showMessage("info"),
  showWarningMessage: showMessage("warning"),
  showErrorMessage: showMessage("error"),
  showQuickPick: async (items: any, _opts?: any) => {
    const list = await items;
    const answer = ui.quickPickAnswers.shift();
    return answer ? answer(list) : undefined;
  },
  withProgress: async (opts: any, task: any) => {
    const cts = new CancellationTokenSource();
    ui.progress.push({ title: opts.title, cancellable: !!opts.cancellable, cancel: () => cts.cancel() });
    return task({ report: (p: any) => ui.progress.push(p) }, cts.token);
  },
  createQuickPick: () => {
    const change = new EventEmitter<string>();
    const accept = new EventEmitter<void>();
    const hide = new EventEmitter<void>();
    const qp: any = {
      items: [],
      selectedItems: [],
      value: "",
      busy: false,
      title: "",
      placeholder: "",
      onDidChangeValue: change.event,
      onDidAccept: accept.event,
      onDidHide: hide.event,
      show: () => undefined,
      hide: () => hide.fire(),
      dispose: () => undefined,
      // test drivers
      type: (v: string) => {
        qp.value = v;
        change.fire(v);
      },
      accept: (item: any) => {
        qp.selectedItems = [item];
        accept.fire();
      },
    };
    ui.quickPicks.push(qp);
    return qp;
  },
  createStatusBarItem: () => {
    const item: any = {
      history: [] as string[],
      tooltip: "",
      show: () => undefined,
      hide: () => undefined,
      dispose: () => undefined,
    };
    let text = "";
    Object.defineProperty(item, "text", {
      get: () => text,
      set: (v: string) => {
        text = v;
        item.history.push(v);
      },
    });
    ui.statusBarItems.push(item);
    return item;
  },
  setStatusBarMessage: () => new Disposable(),
  registerWebviewViewProvider: (id: string, provider: any) => {
    registered.webviewProviders.set(id, provider);
    return new Disposable();
  },
  /** A panel whose webview records what the extension posts; `send` plays the page's part. */
  createWebviewPanel: (viewType: string, title: string) => {
    const receive = new EventEmitter<any>();
    const disposed = new EventEmitter<void>();
    const panel: any = {
      viewType,
      title,
      posted: [] as any[],
      webview: {
        html: "",
        options: {},
        cspSource: "vscode-resource:",
        asWebviewUri: (u: Uri) => u,
        postMessage: async (m: any) => {
          panel.posted.push(m);
          return true;
        },
        onDidReceiveMessage: receive.event,
      },
      reveal: () => undefined,
      onDidDispose: disposed.event,
      dispose: () => disposed.fire(),
      send: (m: any) => receive.fire(m),
    };
    ui.panels.push(panel);
    return panel;
  },
  showTextDocument: async (doc: any, options?: any) => {
    ui.openedDocuments.push({ uri: doc?.uri ?? doc, options });
    return { document: doc, selection: options?.selection };
  },
  activeTextEditor: undefined,
  visibleTextEditors: [],
  onDidChangeActiveTextEditor: event(),
  onDidChangeVisibleTextEditors: event(),
  tabGroups: { all: [], onDidChangeTabs: event(), onDidChangeTabGroups: event() },
});

export const languages = namespace("languages", {
  registerInlineCompletionItemProvider: (_selector: any, provider: any) => {
    registered.inlineProviders.push(provider);
    return new Disposable(() => {
      const i = registered.inlineProviders.indexOf(provider);
      if (i >= 0) registered.inlineProviders.splice(i, 1);
    });
  },
  match: (selector: any, doc: FakeTextDocument): number => {
    const filters = Array.isArray(selector) ? selector : [selector];
    return filters.some((f: any) =>
      typeof f === "string"
        ? f === doc.languageId
        : (!f.scheme || f.scheme === doc.uri.scheme) && (!f.language || f.language === doc.languageId),
    )
      ? 10
      : 0;
  },
  createDiagnosticCollection: () => ({
    set: () => undefined,
    delete: () => undefined,
    clear: () => undefined,
    dispose: () => undefined,
  }),
});

export const commands = namespace("commands", {
  registerCommand: (id: string, fn: any) => {
    registered.commands.set(id, fn);
    return new Disposable(() => registered.commands.delete(id));
  },
  executeCommand: async (id: string, ...args: any[]) => registered.commands.get(id)?.(...args),
});

export const env = namespace("env", { language: "en", appName: "fake", machineId: "test", uiKind: 1 });
export const extensions = namespace("extensions", { all: [], getExtension: () => undefined });
export const version = "1.95.0";

const known: Record<string, any> = {
  Disposable,
  EventEmitter,
  Uri,
  Position,
  Range,
  Selection,
  CancellationTokenSource,
  InlineCompletionItem,
  InlineCompletionList,
  SnippetString,
  MarkdownString,
  ThemeIcon,
  LanguageModelTextPart,
  InlineCompletionTriggerKind,
  QuickPickItemKind,
  ProgressLocation,
  StatusBarAlignment,
  ConfigurationTarget,
  ViewColumn,
  EndOfLine,
  workspace,
  window,
  languages,
  commands,
  env,
  extensions,
  version,
};

// Modules compiled with __importStar copy own keys, so every name used must exist up front.
for (const name of [
  "CallHierarchyIncomingCall",
  "CallHierarchyItem",
  "CallHierarchyOutgoingCall",
  "CancellationError",
  "CodeAction",
  "CodeActionKind",
  "CodeActionTriggerKind",
  "CodeLens",
  "Color",
  "ColorInformation",
  "ColorPresentation",
  "CompletionItem",
  "CompletionItemKind",
  "CompletionItemTag",
  "CompletionList",
  "CompletionTriggerKind",
  "Diagnostic",
  "DiagnosticRelatedInformation",
  "DiagnosticSeverity",
  "DiagnosticTag",
  "DocumentHighlight",
  "DocumentHighlightKind",
  "DocumentLink",
  "DocumentSymbol",
  "FileType",
  "FoldingRange",
  "FoldingRangeKind",
  "Hover",
  "InlayHint",
  "InlayHintKind",
  "InlayHintLabelPart",
  "InlineValueEvaluatableExpression",
  "InlineValueText",
  "InlineValueVariableLookup",
  "LinkedEditingRanges",
  "Location",
  "LogLevel",
  "NotebookCellKind",
  "ParameterInformation",
  "RelativePattern",
  "SelectionRange",
  "SemanticTokens",
  "SemanticTokensEdit",
  "SemanticTokensEdits",
  "SemanticTokensLegend",
  "SignatureHelp",
  "SignatureHelpTriggerKind",
  "SignatureInformation",
  "SnippetTextEdit",
  "SymbolInformation",
  "SymbolKind",
  "SymbolTag",
  "TabInputCustom",
  "TabInputNotebook",
  "TabInputText",
  "TabInputTextDiff",
  "TextDocumentSaveReason",
  "TextEdit",
  "TypeHierarchyItem",
  "WorkspaceEdit",
])
  known[name] = genericClass(name);
for (const name of ["debug", "tasks", "notebooks", "scm", "tests", "authentication", "l10n", "chat"]) {
  known[name] = namespace(name, {});
}
// A host new enough to take chat model providers (VS Code 1.104+).
known.lm = namespace("lm", {
  registerLanguageModelChatProvider: (vendor: string, provider: any) => {
    registered.lmProviders.push({ vendor, provider });
    return new Disposable();
  },
});

/** The module object `require("vscode")` returns. */
export const vscodeModule = new Proxy(known, {
  get(target, prop) {
    if (prop in target) return target[prop as string];
    if (prop === "__esModule") return false;
    if (typeof prop !== "string") return undefined;
    if (/^[A-Z]/.test(prop)) {
      target[prop] = genericClass(prop);
      return target[prop];
    }
    target[prop] = namespace(prop, {});
    return target[prop];
  },
});
