"""Fill-in-the-middle prompts, one template per FIM token family (see
`sidecar.models.kinds.FIM_TOKEN_SETS`), and the fallback for models that have no FIM tokens.

Other files (cross-file context) go where each family was trained to see them: Qwen2.5-Coder's
repo-level format (`<|repo_name|>`, `<|file_sep|>`); the others get them as plain text ahead of
the prefix, each under a one-line path header (what llama.cpp does when no separator token exists).
"""

from __future__ import annotations

from typing import Any

from sidecar.models.kinds import FIM_TOKEN_SETS

ExtraFiles = list[tuple[str, str]]  # (path, text)

FIM_SYSTEM = (
    "You complete code. The user shows a file with a hole marked <HOLE>. Reply with only the code "
    "that replaces <HOLE>: no explanation, no markdown fences, nothing that is already before or "
    "after the hole."
)
HOLE = "<HOLE>"


def has_fim(family: str | None) -> bool:
    return bool(family) and family in FIM_TOKEN_SETS


HASH_COMMENT = {
    "py",
    "sh",
    "bash",
    "zsh",
    "rb",
    "pl",
    "r",
    "yaml",
    "yml",
    "toml",
    "cfg",
    "ini",
    "mk",
}
DASH_COMMENT = {"sql", "lua", "hs", "elm", "ada"}


def comment_for(path: str) -> str:
    """The line-comment marker of the file's language (by extension), for path headers."""
    ext = path.rsplit(".", 1)[-1].lower() if "." in path else ""
    if ext in HASH_COMMENT or path.endswith(("Makefile", "Dockerfile")):
        return "#"
    if ext in DASH_COMMENT:
        return "--"
    return "//"


def plain_context(extra_files: ExtraFiles | None) -> str:
    """Other files as plain text, each under a commented path header line."""
    return "".join(
        f"{comment_for(path)} {path}\n{text.rstrip()}\n\n" for path, text in extra_files or []
    )


def build_fim_prompt(
    family: str | None,
    prefix: str,
    suffix: str,
    extra_files: ExtraFiles | None = None,
    repo: str | None = None,
    path: str | None = None,
) -> str:
    """The raw prompt for `family`; the model's answer is the text between prefix and suffix.

    `family` None (or unknown) is the fallback: prefix-only continuation (the suffix is dropped).
    `path` names the current file where the template has a place for it (Qwen repo format).
    """
    if not has_fim(family):
        return plain_context(extra_files) + prefix
    assert family is not None
    pre, suf, mid = FIM_TOKEN_SETS[family]
    if family == "qwen":
        head = ""
        if extra_files or repo:
            head = f"<|repo_name|>{repo or 'workspace'}\n"
            head += "".join(f"<|file_sep|>{p}\n{t}\n" for p, t in extra_files or [])
            if path:
                head += f"<|file_sep|>{path}\n"
        return f"{head}{pre}{prefix}{suf}{suffix}{mid}"
    prefix = plain_context(extra_files) + prefix
    if family == "codellama":
        return f"{pre} {prefix} {suf}{suffix} {mid}"
    if family == "codestral":
        return f"{suf}{suffix}{pre}{prefix}"
    # starcoder, deepseek: prefix, suffix, middle
    return f"{pre}{prefix}{suf}{suffix}{mid}"


def fim_stop_tokens(family: str | None) -> list[str]:
    """Strings that end a FIM answer (the family's own markers, never part of the middle)."""
    if not has_fim(family):
        return []
    assert family is not None
    stops = list(FIM_TOKEN_SETS[family])
    if family == "qwen":
        stops += ["<|file_sep|>", "<|repo_name|>", "<|endoftext|>", "<|fim_pad|>"]
    if family == "codellama":
        stops += ["<EOT>"]
    return stops


def fim_chat_messages(
    prefix: str, suffix: str, extra_files: ExtraFiles | None = None, path: str | None = None
) -> list[dict[str, Any]]:
    """Chat-style fallback for models without FIM tokens: "fill the hole, reply with code only".

    Small chat models still add fences or repeat the line they were given: post-processing
    (`sidecar.completion.postprocess`) strips both.
    """
    context = ""
    if extra_files:
        context = "Other files in the project:\n" + "".join(
            f"--- {p}\n{t.rstrip()}\n" for p, t in extra_files
        )
        context += "\n"
    name = f" {path}" if path else ""
    user = f"{context}File{name}:\n{prefix}{HOLE}{suffix}"
    return [{"role": "system", "content": FIM_SYSTEM}, {"role": "user", "content": user}]
