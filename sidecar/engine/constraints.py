"""Constrained decoding: a grammar a sequence's tokens must follow, as a per-sequence logits
processor inside the shared batch.

A `Constraint` is what a request asks for (a JSON schema, any JSON object, or a Lark grammar);
`Guide` is one running sequence's matcher: mlx_lm's GenerationBatch calls it with the sequence's
tokens so far and its logits row, it consumes the newest token and masks every token the grammar
does not allow next. Sequences without a guide in the same batch are untouched.

Why llguidance (over xgrammar and outlines-core):
- it computes a token mask on the fly from a lazy lexer and an Earley parser, in ~30 µs for
  SmolLM2's 49k vocabulary on this CPU, with no per-schema precompilation over the vocabulary
  (outlines-core builds an index over the whole vocabulary per schema, seconds for big schemas;
  xgrammar precomputes per-grammar token caches and its fast path is a CUDA/torch kernel);
- one engine for JSON schema, Lark (with embedded `%json{...}`, which tool-call markup such as
  `<tool_call>{json}</tool_call>` needs) and regex, compiled in well under a millisecond;
- a plain numpy bitmask API and `LLTokenizer` from a Hugging Face fast tokenizer (`llguidance.hf`).
Its mlx helper applies the mask with a Metal kernel, which this Linux CPU lacks, so the mask is
unpacked with numpy and applied with one `mx.where` here.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import llguidance
import llguidance.hf
import llguidance.numpy
import mlx.core as mx
import numpy as np

from sidecar.engine.schema_refs import has_finite_instance
from sidecar.errors import EngineError

ConstraintKind = Literal["json_schema", "json_object", "lark"]
# Compact JSON (no whitespace between tokens): fewer tokens, and a document that always ends;
# with flexible whitespace a weak model can emit blanks forever.
JSON_OPTIONS: dict[str, Any] = {"whitespace_flexible": False}
COMPILED_GRAMMARS = 128  # matchers kept compiled, per (tokenizer, grammar)
TOKENIZERS = 8  # llguidance tokenizers kept (building one takes ~0.4 s)


class ConstraintError(EngineError):
    """A response_format (schema or grammar) that cannot be enforced."""

    code = "invalid_response_format"
    param = "response_format"


@dataclass(frozen=True)
class Constraint:
    """What a sequence's output must match. `grammar` is llguidance's grammar text (JSON), built
    and checked by the constructors; `name` is for messages and logs."""

    kind: ConstraintKind
    grammar: str
    name: str = ""

    @classmethod
    def json_schema(
        cls, schema: Mapping[str, Any] | bool, strict: bool = False, name: str = ""
    ) -> Constraint:
        """Output is JSON valid against `schema`. `strict`: a keyword llguidance cannot enforce
        is an error; otherwise such keywords are ignored and the rest is enforced."""
        if isinstance(schema, bool):
            schema = {} if schema else {"not": {}}
        if not isinstance(schema, Mapping):
            raise ConstraintError("json_schema.schema must be a JSON object")
        if not has_finite_instance(schema):
            raise ConstraintError(
                "invalid json_schema: no finite JSON value satisfies it (a $ref cycle, or a "
                "required property that always needs another level of itself)"
            )
        options = {**JSON_OPTIONS, "lenient": not strict}
        try:
            grammar = llguidance.LLMatcher.grammar_from_json_schema(
                json.dumps(schema),
                defaults=options,  # type: ignore[arg-type]
            )
        except (ValueError, TypeError) as e:
            raise ConstraintError(f"invalid json_schema: {e}") from None
        return cls("json_schema", _checked(grammar, "json_schema"), name)

    @classmethod
    def json_object(cls) -> Constraint:
        """Output is one JSON object (OpenAI's `{"type": "json_object"}`)."""
        return _JSON_OBJECT

    @classmethod
    def lark(cls, grammar_text: str, name: str = "") -> Constraint:
        """Output matches a Lark grammar in llguidance's dialect (rule `start`; may embed
        `%json{...}` schemas, see `lark_json`, and name special tokens as `<|...|>`)."""
        if not isinstance(grammar_text, str) or not grammar_text.strip():
            raise ConstraintError("grammar must be non-empty text")
        grammar = llguidance.LLMatcher.grammar_from_lark(grammar_text)
        return cls("lark", _checked(grammar, "grammar"), name)


def lark_json(schema: Mapping[str, Any]) -> str:
    """`schema` as a `%json{...}` lexeme to embed in a Lark grammar, compact like
    `Constraint.json_schema` (a bare `%json` allows whitespace anywhere, which a weak model may
    emit without end)."""
    guidance = {**JSON_OPTIONS, **schema.get("x-guidance", {})}
    return "%json" + json.dumps({**schema, "x-guidance": guidance})


def _checked(grammar: str, what: str) -> str:
    error = llguidance.LLMatcher.validate_grammar(grammar)
    if error:
        raise ConstraintError(f"invalid {what}: {error.strip()}")
    return grammar


_JSON_OBJECT = Constraint(
    "json_object",
    llguidance.LLMatcher.grammar_from_json_schema(
        '{"type": "object"}',
        defaults=JSON_OPTIONS,  # type: ignore[arg-type]
    ),
    "json_object",
)


# -- compiled per tokenizer --


@functools.lru_cache(maxsize=TOKENIZERS)
def _ll_tokenizer(tokenizer: Any, eos_ids: tuple[int, ...]) -> llguidance.LLTokenizer:
    hf = getattr(tokenizer, "_tokenizer", tokenizer)  # mlx_lm's TokenizerWrapper wraps it
    try:
        return llguidance.hf.from_tokenizer(hf, eos_token=list(eos_ids))
    except ValueError as e:  # a slow (Python) tokenizer
        raise ConstraintError(f"this model's tokenizer cannot be constrained: {e}") from None


@functools.lru_cache(maxsize=COMPILED_GRAMMARS)
def _compiled(tokenizer: Any, eos_ids: tuple[int, ...], grammar: str) -> llguidance.LLMatcher:
    matcher = llguidance.LLMatcher(_ll_tokenizer(tokenizer, eos_ids), grammar, log_level=0)
    if matcher.is_error():
        raise ConstraintError(f"invalid response_format: {readable(matcher.get_error())}")
    return matcher


def make_guide(constraint: Constraint, tokenizer: Any, eos_ids: list[int]) -> Guide:
    """A fresh matcher for one sequence (the grammar compiles once per tokenizer; ~0.4 s the
    first time a tokenizer is seen, so call this off the event loop)."""
    template = _compiled(tokenizer, tuple(sorted(eos_ids)), constraint.grammar)
    return Guide(template.deep_copy(), _ll_tokenizer(tokenizer, tuple(sorted(eos_ids))))


def readable(error: str | None) -> str:
    """llguidance's error without the parser state and grammar it appends (internal detail,
    and the whole schema again)."""
    return (error or "").split("<state>")[0].split("<grammar>")[0].strip()


class Guide:
    """One sequence's matcher, called by mlx_lm as a logits processor: `(tokens, logits)` ->
    logits. The first call sees the prompt (nothing to consume); each later call sees one more
    token, the one sampled last, which the matcher consumes before it masks the next."""

    def __init__(self, matcher: llguidance.LLMatcher, tokenizer: llguidance.LLTokenizer) -> None:
        self.matcher = matcher
        self._seen: int | None = None  # tokens of the context already consumed
        self._bitmask = llguidance.numpy.allocate_token_bitmask(1, tokenizer.vocab_size)
        self._allowed: np.ndarray | None = None  # bool per logit, reused
        self._failure: str | None = None

    @property
    def complete(self) -> bool:
        """The grammar allows nothing more (but end of sequence): the sequence ends here."""
        return self.matcher.is_stopped() and not self.matcher.is_error()

    @property
    def error(self) -> str | None:
        if self._failure is not None:
            return self._failure
        if not self.matcher.is_error():
            return None
        return readable(self.matcher.get_error()) or "the output left the grammar"

    def __call__(self, tokens: mx.array, logits: mx.array) -> mx.array:
        """Never raises: it runs inside the whole batch's step, and one sequence's failure must
        not fail its batch mates; the runner ends this sequence on `error` instead."""
        if self._failure is not None:
            return logits
        try:
            return self._masked(tokens, logits)
        except Exception as e:
            self._failure = f"{type(e).__name__}: {e}"
            return logits

    def _masked(self, tokens: mx.array, logits: mx.array) -> mx.array:
        n = tokens.size
        if self._seen is None:
            self._seen = n
        elif n > self._seen:
            new = tokens[self._seen :].tolist()
            self._seen = n
            self.matcher.consume_tokens(new)  # type: ignore[arg-type]
        if self.matcher.is_error():
            return logits  # the runner ends the sequence with the error
        llguidance.numpy.fill_next_token_bitmask(self.matcher, self._bitmask)
        vocab = logits.shape[-1]
        if self._allowed is None or self._allowed.size != vocab:
            self._allowed = np.zeros(vocab, dtype=np.bool_)
        bits = np.unpackbits(self._bitmask.view(np.uint8), bitorder="little")
        k = min(vocab, bits.size)
        self._allowed[:k] = bits[:k]  # ids past the tokenizer's vocabulary stay masked
        return mx.where(mx.array(self._allowed), logits, mx.array(-mx.inf, dtype=logits.dtype))
