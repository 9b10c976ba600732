"""Fit a JSON schema into a reply's token limit, so a grammar-constrained reply always closes.

A small model decoding under a JSON-schema grammar can loop inside a string until ``max_tokens``
runs out, leaving half an object. Giving every unbounded string a ``maxLength`` makes the
largest admissible reply fit. Structure (keys, braces, numbers, enums) is counted at a token per
character, the most it can take; the tokens left are shared between the unbounded strings at
``STRING_CHARS_PER_TOKEN``. Strings the caller bounded keep
their bounds; unbounded arrays and free-form objects cannot be fitted and are counted once, so a
reply that still hits the limit is reported by the parser, naming the limit to raise.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any

_SCALAR_CHARS = {"boolean": 5, "null": 4, "integer": 17, "number": 40}
"""Longest text of a scalar under llama.cpp's JSON grammar (digits are capped at 16)."""
STRING_CHARS_PER_TOKEN = 1.5
"""Below the densest text measured with SmolLM2's tokenizer: a degenerate repetition loop, the
way small models fail, runs at 1.7 characters per token; English prose at 3.5. Denser text
(CJK: 0.5) can still reach the limit, and the parser then names the limit to raise."""
_END_TOKENS = 4
"""Room for the end-of-reply token and a separator the grammar may add."""
_MAX_DEPTH = 32


@dataclass
class _Size:
    """The largest reply of a sub-schema: fixed characters plus unbounded string slots."""

    fixed: int = 0
    slots: int = 0
    strings: list[dict[str, Any]] = field(default_factory=list)

    def add(self, other: _Size, times: int = 1) -> None:
        self.fixed += other.fixed * times
        self.slots += other.slots * times
        self.strings += other.strings


def _resolve(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if not isinstance(ref, str) or not ref.startswith("#/"):
        return node
    target: Any = root
    for part in ref[2:].split("/"):
        target = target.get(part, {}) if isinstance(target, dict) else {}
    return target if isinstance(target, dict) else {}


def _types(node: dict[str, Any]) -> list[str]:
    kind = node.get("type")
    if isinstance(kind, list):
        return [str(k) for k in kind]
    return [str(kind)] if kind else []


def _choice(options: list[Any], root: dict[str, Any], depth: int) -> _Size:
    """One of several options: the largest, with every option's strings bounded alike."""
    size = _Size()
    for option in options:
        if isinstance(option, dict):
            one = _measure(option, root, depth + 1)
            size.fixed, size.slots = max(size.fixed, one.fixed), max(size.slots, one.slots)
            size.strings += one.strings
    return size


def _measure(node: dict[str, Any], root: dict[str, Any], depth: int) -> _Size:
    if depth > _MAX_DEPTH:  # a recursive schema: its depth is the model's choice
        return _Size()
    node = _resolve(node, root)
    for key in ("anyOf", "oneOf"):
        if isinstance(node.get(key), list):
            return _choice(node[key], root, depth)
    if "enum" in node or "const" in node:
        values = node.get("enum", [node.get("const")])
        return _Size(fixed=max((len(json.dumps(v)) for v in values), default=4))
    types = _types(node)
    size = _Size()
    if "null" in types and len(types) > 1:
        types.remove("null")  # nullable: the value is the bigger one
    kind = types[0] if types else ("object" if "properties" in node else "")
    if kind == "string":
        if "maxLength" in node or "pattern" in node or "format" in node:
            return _Size(fixed=int(node.get("maxLength", 64)) + 2)
        return _Size(fixed=2, slots=1, strings=[node])
    if kind == "object":
        size.fixed = 2
        for name, child in (node.get("properties") or {}).items():
            size.fixed += len(json.dumps(name)) + 3
            if isinstance(child, dict):
                size.add(_measure(child, root, depth + 1))
        return size
    if kind == "array":
        size.fixed = 2
        for item in node.get("prefixItems") or []:
            if isinstance(item, dict):
                size.fixed += 2
                size.add(_measure(item, root, depth + 1))
        items = node.get("items")
        if isinstance(items, dict):
            count = int(node.get("maxItems", max(int(node.get("minItems", 0)), 1)))
            size.fixed += 2 * count
            size.add(_measure(items, root, depth + 1), times=count)
        return size
    return _Size(fixed=_SCALAR_CHARS.get(kind, 0))


def fit_schema(schema: dict[str, Any], max_tokens: int) -> dict[str, Any]:
    """A copy of ``schema`` whose unbounded strings have a ``maxLength`` that makes the largest
    reply fit in ``max_tokens`` (at least ``minLength``, and at least one character)."""
    fitted = copy.deepcopy(schema)
    size = _measure(fitted, fitted, 0)
    if not size.slots:
        return fitted
    room = (max_tokens - _END_TOKENS - size.fixed) * STRING_CHARS_PER_TOKEN
    share = max(int(room // size.slots), 1)
    for string in size.strings:
        string["maxLength"] = max(share, int(string.get("minLength", 0)))
    return fitted


_JSON_MODE_KEY_CHARS = 24


def json_mode_grammar(max_tokens: int) -> str:
    """A GBNF grammar for JSON mode that fits ``max_tokens``: a flat object of one member per
    128 tokens (2 to 8), keys of up to 24 characters, and string, number, boolean or null
    values; strings get what the structure leaves (about 140 characters each). llama.cpp's own
    JSON grammar is unbounded, and a small model nests keys until the limit cuts it off."""
    members = min(max(max_tokens // 128, 2), 8)
    per_member = _JSON_MODE_KEY_CHARS + 8  # quotes, colon, spaces, comma, value quotes
    room = max_tokens - _END_TOKENS - 2 - members * per_member
    string_chars = max(int(room * STRING_CHARS_PER_TOKEN // members), 1)
    return "\n".join(
        [
            f'root ::= "{{" space ( member ( "," space member ){{0,{members - 1}}} )? "}}" space',
            'member ::= key ":" space value',
            f'key ::= "\\"" [a-zA-Z0-9_ -]{{1,{_JSON_MODE_KEY_CHARS}}} "\\"" space',
            'value ::= string | number | "true" space | "false" space | "null" space',
            f'string ::= "\\"" char{{0,{string_chars}}} "\\"" space',
            'number ::= "-"? ([0] | [1-9] [0-9]{0,15}) ("." [0-9]{1,16})? space',
            'char ::= [^"\\\\\\x7F\\x00-\\x1F] | [\\\\] (["\\\\bfnrt] | "u" [0-9a-fA-F]{4})',
            'space ::= " "?',
        ]
    )
