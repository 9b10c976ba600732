"""Flag text that looks like instructions to a model: retrieved chunks and tool output are data,
and a document that tries to give orders (override phrases, chat role markers, tool-call syntax,
hidden Unicode) is named in the artifacts, and can be dropped before the model sees it.

A heuristic, not a guarantee: it finds the common shapes of prompt injection so that a person
sees them; the prompts keep treating every document as delimited data either way.
"""

from __future__ import annotations

import re
import unicodedata

_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "override phrase",
        re.compile(
            r"\b(ignore|disregard|forget|override)\b[^.\n]{0,40}\b(previous|prior|above|earlier|"
            r"all|any|your|the)\b[^.\n]{0,20}\b(instructions?|prompts?|rules|directions|context)\b",
            re.IGNORECASE,
        ),
    ),
    (
        "override phrase",
        re.compile(
            r"\b(you are now|from now on,? you|act as (an?|the)|new instructions?:|"
            r"reply only with|respond only with|system prompt)\b",
            re.IGNORECASE,
        ),
    ),
    (
        "role marker",
        re.compile(
            r"(^|\n)\s*(system|assistant|developer)\s*:|<\|(im_start|im_end|system|assistant|"
            r"user|eot_id|start_header_id)\|>|\[/?INST\]|<</?SYS>>|^#{2,}\s*(system|instruction)",
            re.IGNORECASE | re.MULTILINE,
        ),
    ),
    (
        "tool-call syntax",
        re.compile(
            r"<\s*/?\s*(tool_call|function_call|tool_use)\b|\"(function_call|tool_calls)\"\s*:|"
            r"\{\s*\"name\"\s*:\s*\"[^\"]+\"\s*,\s*\"(arguments|parameters)\"\s*:",
            re.IGNORECASE,
        ),
    ),
)
_HIDDEN = frozenset(  # zero-width, bidirectional controls, invisible operators, BOM, tags
    (
        *range(0x200B, 0x2010),
        *range(0x202A, 0x202F),
        *range(0x2060, 0x2065),
        *range(0x2066, 0x206A),
        0xFEFF,
        *range(0xE0000, 0xE0080),
    )
)


def injection_reasons(text: str) -> list[str]:
    """Why ``text`` looks like instructions to a model (empty when it does not)."""
    reasons: list[str] = []
    for name, pattern in _PATTERNS:
        match = pattern.search(text)
        if match and name not in [r.split(":")[0] for r in reasons]:
            reasons.append(f"{name}: {' '.join(match.group(0).split())[:60]!r}")
    hidden = sorted({f"U+{ord(c):04X}" for c in text if ord(c) in _HIDDEN})
    if hidden:
        names = ", ".join(
            f"{code} {unicodedata.name(chr(int(code[2:], 16)), 'unnamed')}" for code in hidden[:3]
        )
        reasons.append(f"hidden Unicode: {names}")
    return reasons
