"""Source files cut into chunks along their structure, each a unit worth retrieving on its own.

- Python: `ast` gives the top-level functions and classes (a large class is cut into its
  methods, named `Class.method`); the module code between them (imports, constants) is a chunk
  of its own.
- Markdown: one chunk per heading's section, named by the heading.
- Anything else: blocks of lines that start at column 0 after a blank line (how most C-family,
  JavaScript, Go, Rust, shell and config files lay out their top-level items), merged up to
  TARGET_LINES, named by the first definition keyword found (`function x`, `class X`, `fn x`...).
  Why not tree-sitter: `tree-sitter-language-pack` (the maintained wheel of grammars) downloads
  its grammars at first use from GitHub, which an offline machine cannot; the older
  `tree-sitter-languages` wheel bundles them but is unmaintained since 2024 and pins an old
  tree-sitter. The blank-line blocks cut the same places for code laid out as formatters do.
- Lines: any chunk longer than MAX_LINES is cut into windows of MAX_LINES (the fallback that keeps
  each chunk near the embedding model's 256-token window).

Line numbers are 1-based and inclusive, as editors show them.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

TARGET_LINES = 30  # blocks are merged up to this many lines
MAX_LINES = 40  # a longer chunk is cut into windows of this many lines
MIN_CLASS_SPLIT = 40  # classes longer than this are cut into their methods
# What is embedded of a chunk, at most (~300 tokens): all-MiniLM-L6-v2 was trained on 256-token
# inputs, and one forward pass costs the worker time a keystroke may wait for (pacing.py).
EMBED_CHARS = 1200

DEFINITION = re.compile(
    r"^\s*(?:export\s+)?(?:default\s+)?(?:pub(?:\([^)]*\))?\s+)?(?:async\s+)?(?:static\s+)?"
    r"(?:function\*?|class|def|fn|func|interface|type|struct|enum|trait|impl|module|"
    r"const|let|var|macro_rules!)\s+([A-Za-z_$][\w$]*)"
)
HEADING = re.compile(r"^(#{1,6})\s+(.*\S)\s*$")


@dataclass(frozen=True)
class FileChunk:
    path: str  # relative to the workspace root, with "/" separators
    start_line: int  # 1-based, inclusive
    end_line: int  # 1-based, inclusive
    symbol: str | None
    text: str

    def embed_text(self) -> str:
        """What is embedded: the path and symbol name carry meaning the body may not."""
        head = f"{self.path}" + (f" {self.symbol}" if self.symbol else "")
        return f"{head}\n{self.text}"[:EMBED_CHARS]


def chunk_file(path: str, text: str) -> list[FileChunk]:
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not any(line.strip() for line in lines):
        return []
    spans: list[tuple[int, int, str | None]] | None = None  # 0-based, end exclusive
    if path.endswith((".py", ".pyi")):
        try:
            spans = python_spans(text, len(lines))
        except RecursionError:  # an AST too deep to walk: plain blocks then
            spans = None
    elif path.endswith((".md", ".markdown", ".rst")):
        spans = heading_spans(lines)
    if spans is None:
        spans = block_spans(lines)
    chunks = []
    for start, end, symbol in spans:
        for s in range(start, end, MAX_LINES):
            e = min(end, s + MAX_LINES)
            body = "\n".join(lines[s:e])
            if body.strip():
                chunks.append(FileChunk(path, s + 1, e, symbol, body))
    return chunks


def python_spans(text: str, n_lines: int) -> list[tuple[int, int, str | None]] | None:
    """Top-level definitions (large classes by method) and the code between them; None when the
    file does not parse (then it is cut as plain blocks)."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        # MemoryError: CPython's parser stack overflows on deep nesting (`x = ------...1`)
        return None
    spans: list[tuple[int, int, str | None]] = []
    cursor = 0  # first line not yet in a span

    def gap(until: int) -> None:
        nonlocal cursor
        if until > cursor:
            spans.append((cursor, until, None))
        cursor = max(cursor, until)

    for node in tree.body:
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            continue
        start = min([node.lineno, *(d.lineno for d in node.decorator_list)]) - 1
        end = node.end_lineno or node.lineno
        gap(start)
        methods = (
            [m for m in node.body if isinstance(m, ast.FunctionDef | ast.AsyncFunctionDef)]
            if isinstance(node, ast.ClassDef)
            else []
        )
        if methods and end - start > MIN_CLASS_SPLIT:
            first = methods[0]
            head_end = min([first.lineno, *(d.lineno for d in first.decorator_list)]) - 1
            spans.append((start, max(start + 1, head_end), node.name))  # class line, docstring
            cursor = max(start + 1, head_end)
            for m in methods:
                m_start = min([m.lineno, *(d.lineno for d in m.decorator_list)]) - 1
                if m_start > cursor:
                    spans.append((cursor, m_start, node.name))
                m_end = m.end_lineno or m.lineno
                spans.append((m_start, m_end, f"{node.name}.{m.name}"))
                cursor = m_end
            if end > cursor:
                spans.append((cursor, end, node.name))
        else:
            spans.append((start, end, node.name))
        cursor = end
    gap(n_lines)
    return merge_small([s for s in spans if s[1] > s[0]])


def merge_small(spans: list[tuple[int, int, str | None]]) -> list[tuple[int, int, str | None]]:
    """Unnamed module code next to other unnamed code is one chunk up to TARGET_LINES."""
    merged: list[tuple[int, int, str | None]] = []
    for start, end, symbol in spans:
        if (
            merged
            and symbol is None
            and merged[-1][2] is None
            and end - merged[-1][0] <= TARGET_LINES
        ):
            merged[-1] = (merged[-1][0], end, None)
        else:
            merged.append((start, end, symbol))
    return merged


def heading_spans(lines: list[str]) -> list[tuple[int, int, str | None]]:
    starts: list[tuple[int, str | None]] = [(0, None)]
    fenced = False
    for i, line in enumerate(lines):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        match = None if fenced else HEADING.match(line)
        if match and i > 0:
            starts.append((i, match.group(2)))
        elif match:
            starts[0] = (0, match.group(2))
    bounds = [s for s, _ in starts[1:]] + [len(lines)]
    return [(s, e, name) for (s, name), e in zip(starts, bounds, strict=True) if e > s]


def block_spans(lines: list[str]) -> list[tuple[int, int, str | None]]:
    """Blocks that start at column 0 after a blank line, merged up to TARGET_LINES."""
    starts = [0]
    for i in range(1, len(lines)):
        line = lines[i]
        top_level = line.strip() and not line[0].isspace() and line[0] not in "})]"
        if top_level and not lines[i - 1].strip():
            starts.append(i)
    bounds = list(zip(starts, [*starts[1:], len(lines)], strict=True))
    spans: list[tuple[int, int, str | None]] = []
    for start, end in bounds:
        symbol = block_symbol(lines[start:end])
        if (
            spans
            and end - spans[-1][0] <= TARGET_LINES
            and (spans[-1][2] is None or symbol is None)
        ):
            prev = spans[-1]
            spans[-1] = (prev[0], end, prev[2] or symbol)
        else:
            spans.append((start, end, symbol))
    return spans


def block_symbol(lines: list[str]) -> str | None:
    for line in lines[:8]:
        match = DEFINITION.match(line)
        if match:
            return match.group(1)
    return None
