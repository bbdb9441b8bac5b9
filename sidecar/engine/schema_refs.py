"""Whether a JSON schema's `$ref`s let it be satisfied by any finite JSON value.

llguidance compiles `{"$ref": A}` with `A -> B -> A`, or an object whose required property is the
object itself, without complaint: the first then allows no output at all (the sequence ends
empty, "stop"), the second only ever deeper nesting (until max_tokens, then an internal error
with llguidance's state and grammar). Neither is a schema anyone can be answered with, so they
are refused up front as an invalid `response_format`.

By hand because no JSON-schema library answers it: `jsonschema` validates instances and
`referencing` resolves refs, but neither says whether a schema has a finite instance. This is
the "productive symbols" check of a context-free grammar, over the schema keywords that force
content: `required` properties, `minItems` with `items`/`prefixItems`, `allOf`, and
`anyOf`/`oneOf`/`type` lists (one finite branch is enough). It errs towards "finite": a keyword
it does not know never makes a schema fail here (llguidance still enforces it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MAX_STEPS = 20_000  # schema nodes visited at most; past it the schema is assumed finite


class Finite:
    def __init__(self, root: Mapping[str, Any]) -> None:
        self.root = root
        self.steps = 0
        self.proven: set[str] = set()  # refs known to have a finite instance

    def ref_target(self, ref: str) -> Any:
        if ref == "#":
            return self.root
        if not ref.startswith("#/"):
            return None  # not local: not ours to judge
        node: Any = self.root
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if isinstance(node, Mapping) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                return None
        return node

    def check(self, schema: Any, open_refs: frozenset[str] = frozenset()) -> bool:
        """Whether `schema` has a finite instance, with the refs in `open_refs` being expanded
        on the way here (meeting one again is the infinite path)."""
        self.steps += 1
        if self.steps > MAX_STEPS or not isinstance(schema, Mapping):
            return True
        ref = schema.get("$ref")
        if isinstance(ref, str):
            if ref in self.proven:
                return True
            if ref in open_refs:
                return False
            target = self.ref_target(ref)
            if target is not None:
                if not self.check(target, open_refs | {ref}):
                    return False
                self.proven.add(ref)
        for sub in schema.get("allOf") or []:
            if not self.check(sub, open_refs):
                return False
        for key in ("anyOf", "oneOf"):
            branches = schema.get(key)
            if (
                isinstance(branches, list)
                and branches
                and not any(self.check(b, open_refs) for b in branches)
            ):
                return False
        types = schema.get("type")
        kinds = (
            {str(t) for t in types} if isinstance(types, list) else {str(types)} if types else set()
        )
        if not kinds or not kinds <= {"object", "array"} or "enum" in schema or "const" in schema:
            # untyped: a scalar satisfies the object and array keywords; a scalar or an unknown
            # type: not ours to judge (llguidance names an unknown type itself)
            return True
        if "object" in kinds and self.object_ok(schema, open_refs):
            return True
        return "array" in kinds and self.array_ok(schema, open_refs)

    def object_ok(self, schema: Mapping[str, Any], open_refs: frozenset[str]) -> bool:
        properties = schema.get("properties")
        required = schema.get("required")
        if not isinstance(properties, Mapping) or not isinstance(required, list):
            return True
        return all(
            self.check(properties[name], open_refs)
            for name in required
            if isinstance(name, str) and name in properties
        )

    def array_ok(self, schema: Mapping[str, Any], open_refs: frozenset[str]) -> bool:
        least = schema.get("minItems")
        if not isinstance(least, int) or least <= 0:
            return True
        prefix = schema.get("prefixItems")
        if isinstance(prefix, list) and prefix:
            if not all(self.check(p, open_refs) for p in prefix[:least]):
                return False
            if least <= len(prefix):
                return True
        items = schema.get("items")
        return self.check(items, open_refs) if isinstance(items, Mapping) else True


def has_finite_instance(schema: Mapping[str, Any]) -> bool:
    return Finite(schema).check(schema)
