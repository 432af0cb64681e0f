"""Deterministic function calling for the emulator.

A user text turn that names a declared function (as a whole word) is answered with a `toolCall`
instead of a reply: one call per named function, in the order they appear.  The arguments are the
JSON object written right after the name (`get_weather {"city": "Paris"}`), or else one example
value per required parameter (strings "example", numbers 1.5, integers 1, booleans true, the first
enum value).  After a `toolResponse` answering every call, the model continues by itself with the
text `Result: <name> <response JSON>; ...`.  `[fault:cancel-tools]` in the turn sends a
`toolCallCancellation` for the calls right after them.  Which calls run NON_BLOCKING (the model talks
on while they run) and how `scheduling` is taken depend on the model (`models.py`, `session.py`).
"""

from __future__ import annotations

import json
import re
from typing import Any

_EXAMPLES = {"STRING": "example", "NUMBER": 1.5, "INTEGER": 1, "BOOLEAN": True, "ARRAY": [], "OBJECT": {}}


def declared_functions(setup: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """name → parameters schema, from setup.tools[].functionDeclarations (camelCase, normalized)."""
    out: dict[str, dict[str, Any]] = {}
    for tool in setup.get("tools") or ():
        if not isinstance(tool, dict):
            continue
        for decl in tool.get("functionDeclarations") or ():
            if isinstance(decl, dict) and isinstance(decl.get("name"), str):
                params = decl.get("parameters")
                out[decl["name"]] = params if isinstance(params, dict) else {}
    return out


def example_args(schema: dict[str, Any]) -> dict[str, Any]:
    args: dict[str, Any] = {}
    props = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
    for name in schema.get("required") or ():
        prop = props.get(name) if isinstance(props.get(name), dict) else {}
        if prop.get("enum"):
            args[name] = prop["enum"][0]
        else:
            args[name] = _EXAMPLES.get(str(prop.get("type", "STRING")).upper(), "example")
    return args


def calls_in(text: str, functions: dict[str, dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """The functions a user text names, in order, with their arguments."""
    found: list[tuple[int, str, dict[str, Any]]] = []
    decoder = json.JSONDecoder()
    for name, schema in functions.items():
        for match in re.finditer(rf"(?<![\w]){re.escape(name)}(?![\w])", text):
            rest = text[match.end():]
            stripped = rest.lstrip()
            args: Any = None
            if stripped.startswith("{"):
                try:
                    args, _ = decoder.raw_decode(stripped)
                except json.JSONDecodeError:
                    args = None
            if not isinstance(args, dict):
                args = example_args(schema)
            found.append((match.start(), name, args))
    found.sort(key=lambda f: f[0])
    return [(name, args) for _, name, args in found]


def result_text(responses: list[dict[str, Any]]) -> str:
    """The continuation after a toolResponse: deterministic, names each function and its result."""
    parts = []
    for r in responses:
        body = json.dumps(r.get("response"), sort_keys=True, separators=(",", ":"))
        parts.append(f"{r.get('name')} {body}")
    return "Result: " + "; ".join(parts)


def valid_function_responses(body: Any) -> list[dict[str, Any]] | None:
    """The functionResponses of a toolResponse, or None when Gemini would close with 1007
    (a missing name, or a response that is not a JSON object)."""
    if not isinstance(body, dict) or not isinstance(body.get("functionResponses"), list):
        return None
    out = []
    for r in body["functionResponses"]:
        if not isinstance(r, dict) or not isinstance(r.get("name"), str) or not isinstance(r.get("response"), dict):
            return None
        out.append(r)
    return out
