"""Fill-in-the-middle prompts, one template per FIM token family (see
`sidecar.models.kinds.FIM_TOKEN_SETS`), and the fallback for models that have no FIM tokens.

A prompt is built as parts, tokenized one by one (`sidecar.completion.prompt`), so each part's
tokens do not depend on its neighbours and the prompt of the next keystroke shares a token
prefix with this one as long as its leading parts are unchanged: that prefix is what the
engine's prompt cache reuses. The order puts what changes least first: other files (the head),
then, for the families trained on both orders, the suffix before the prefix (SPM: the suffix
does not change while the user types at the cursor; measured in `sidecar.benchmarks.fim_order`).

Other files go where each family was trained to see them: the repo-level format where the
tokenizer has its tokens (Qwen2.5-Coder `<|repo_name|>`/`<|file_sep|>`, StarCoder2
`<repo_name>`/`<file_sep>`); otherwise plain text, each file under a one-line path header (what
llama.cpp does when no separator token exists).
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass
from typing import Any, Literal

from sidecar.models.kinds import FIM_TOKEN_SETS

ExtraFiles = list[tuple[str, str]]  # (path, text)
Order = Literal["psm", "spm"]

# The order used per family: SPM where the family was trained on it too (StarCoder's and Code
# Llama's training mixed PSM and SPM; Codestral only has SPM), PSM for the rest. Qwen2.5-Coder
# takes StarCoder's SPM form (`<|fim_prefix|><|fim_suffix|>{suf}<|fim_middle|>{pre}`: to a PSM
# model, an empty prefix and a middle that starts with ours) better than its own PSM: exact
# match 0.625 vs 0.425 on 80 HumanEval holes called directly (2026-12-05), and the suffix no
# longer follows the text being typed, so each keystroke re-prefills only the new tokens.
FIM_ORDER: dict[str, Order] = {
    "starcoder": "spm",
    "codellama": "spm",
    "codestral": "spm",
    "qwen": "spm",
    "deepseek": "psm",
}
# (repo name token, file separator token): the first spelling the tokenizer has wins.
REPO_TOKENS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "qwen": (("<|repo_name|>",), ("<|file_sep|>",)),
    "starcoder": (("<repo_name>", "<reponame>"), ("<file_sep>",)),
}

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


def repo_tokens(family: str | None, vocab: Container[str] | None) -> tuple[str, str] | None:
    """The family's repo-level tokens that `vocab` has, or None (then: plain context)."""
    if family not in REPO_TOKENS:
        return None
    if vocab is None:  # no tokenizer to ask: the family's first spelling
        return REPO_TOKENS[family][0][0], REPO_TOKENS[family][1][0]
    names, seps = REPO_TOKENS[family]
    name = next((t for t in names if t in vocab), None)
    sep = next((t for t in seps if t in vocab), None)
    return (name, sep) if name and sep else None


@dataclass
class FimParts:
    head: list[str]  # other files and the current file's header: the same from key to key
    body: list[str]  # prefix and suffix between the family's markers

    @property
    def text(self) -> str:
        return "".join(self.head + self.body)


def fim_parts(
    family: str | None,
    prefix: str,
    suffix: str,
    extra_files: ExtraFiles | None = None,
    repo: str | None = None,
    path: str | None = None,
    vocab: Container[str] | None = None,
    order: Order | None = None,
) -> FimParts:
    """The prompt for `family` as parts; the model's answer is the text between prefix and
    suffix. `family` None (or unknown) is the fallback: prefix-only continuation (the suffix
    is dropped). `path` names the current file where the format has a place for it; `order`
    overrides the family's (for measuring both)."""
    if not has_fim(family):
        return FimParts([plain_context(extra_files)], [prefix])
    assert family is not None
    pre, suf, mid = FIM_TOKEN_SETS[family]
    tokens = repo_tokens(family, vocab)
    head = ""
    if tokens and (extra_files or repo):
        name, sep = tokens
        nl = "\n" if family == "qwen" else ""  # Qwen ends the repo name line; StarCoder2 not
        head = f"{name}{repo or 'workspace'}{nl}"
        head += "".join(f"{sep}{p}\n{t}\n" for p, t in extra_files or [])
        if path:
            head += f"{sep}{path}\n"
    else:
        head = plain_context(extra_files)
    order = order or FIM_ORDER.get(family, "psm")
    if family == "codestral":
        body = [f"{suf}{suffix}", f"{pre}{prefix}"]
    elif family == "codellama" and order == "spm":
        body = [f"{pre} {suf}{suffix} {mid} ", prefix]  # "<PRE> <SUF>{suf} <MID> {pre}"
    elif family == "codellama":
        body = [f"{pre} {prefix} ", f"{suf}{suffix} {mid}"]
    elif order == "spm":  # StarCoder's SPM: <fim_prefix><fim_suffix>{suf}<fim_middle>{pre}
        body = [f"{pre}{suf}{suffix}{mid}", prefix]
    else:
        body = [f"{pre}{prefix}", f"{suf}{suffix}{mid}"]
    return FimParts([head] if head else [], body)


def build_fim_prompt(
    family: str | None,
    prefix: str,
    suffix: str,
    extra_files: ExtraFiles | None = None,
    repo: str | None = None,
    path: str | None = None,
) -> str:
    """`fim_parts` as one string (the HTTP `/v1/completions` with `suffix`)."""
    return fim_parts(family, prefix, suffix, extra_files, repo, path).text


def fim_stop_tokens(family: str | None) -> list[str]:
    """Strings that end a FIM answer (the family's own markers, never part of the middle)."""
    if not has_fim(family):
        return []
    assert family is not None
    stops = list(FIM_TOKEN_SETS[family])
    if family == "qwen":
        stops += ["<|file_sep|>", "<|repo_name|>", "<|endoftext|>", "<|fim_pad|>"]
    if family == "starcoder":
        stops += ["<file_sep>", "<|endoftext|>"]
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
