"""OpenAI function parameters (JSON Schema) → Gemini's OpenAPI-subset `Schema`.

Live models ignore `parametersJsonSchema` and call tools with empty arguments (protocols.md 2.2 and
section 4, pitfall 4), so the relay sends `parameters` in Gemini's own dialect: upper-case types,
`nullable` instead of a `null` type, `$ref` inlined, and only the keywords Gemini knows.
"""

from __future__ import annotations

from typing import Any

# Keywords Gemini's Schema accepts (google.genai.types.Schema), with their JSON Schema spelling.
_PASS_THROUGH = {
    "description": "description",
    "format": "format",
    "enum": "enum",
    "minItems": "minItems",
    "maxItems": "maxItems",
    "minimum": "minimum",
    "maximum": "maximum",
    "minLength": "minLength",
    "maxLength": "maxLength",
    "minProperties": "minProperties",
    "maxProperties": "maxProperties",
    "pattern": "pattern",
    "title": "title",
    "default": "default",
    "example": "example",
    "propertyOrdering": "propertyOrdering",
}
_TYPES = {"string", "number", "integer", "boolean", "array", "object", "null"}
# Keywords that carry no constraint Gemini could use; dropped without a warning.
_SILENT = {"$schema", "$id", "$comment", "$defs", "definitions", "examples", "additionalProperties", "strict"}
_MAX_DEPTH = 24


class SchemaConverter:
    """Converts one tool's parameters; `dropped` lists the JSON Schema keywords left out."""

    def __init__(self, root: dict[str, Any]) -> None:
        self._root = root
        self.dropped: set[str] = set()

    def convert(self, schema: Any, depth: int = 0, refs: tuple[str, ...] = ()) -> dict[str, Any]:
        if not isinstance(schema, dict):
            return {"type": "OBJECT"} if depth == 0 else {}
        if depth > _MAX_DEPTH:
            self.dropped.add("(nesting too deep)")
            return {}
        if "$ref" in schema:
            ref = schema["$ref"]
            if ref in refs:  # a recursive schema cannot be inlined: stop at an untyped node
                self.dropped.add("$ref (recursive)")
                return {}
            target = self._resolve(ref)
            if target is None:
                self.dropped.add(f"$ref {ref}")
                return {}
            merged = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
            return self.convert(merged, depth, (*refs, ref))
        out: dict[str, Any] = {}
        nullable = False
        kind = schema.get("type")
        if isinstance(kind, list):
            kinds = [k for k in kind if k in _TYPES]
            nullable = "null" in kinds
            kinds = [k for k in kinds if k != "null"]
            if len(kinds) == 1:
                out["type"] = kinds[0].upper()
            elif len(kinds) > 1:
                out["anyOf"] = [{"type": k.upper()} for k in kinds]
        elif isinstance(kind, str) and kind in _TYPES:
            if kind == "null":
                nullable = True
            else:
                out["type"] = kind.upper()
        if "const" in schema:
            out["enum"] = [schema["const"]]
            out.setdefault("type", "STRING")
        for key, value in schema.items():
            if key in _PASS_THROUGH:
                if key == "enum":
                    if None in value:
                        nullable = True
                    value = [v for v in value if v is not None]
                out[_PASS_THROUGH[key]] = value
            elif key == "properties" and isinstance(value, dict):
                out["properties"] = {name: self.convert(sub, depth + 1, refs) for name, sub in value.items()}
                out.setdefault("type", "OBJECT")
            elif key == "required" and isinstance(value, list):
                out["required"] = [r for r in value if isinstance(r, str)]
            elif key == "items":
                out["items"] = self.convert(value, depth + 1, refs)
                out.setdefault("type", "ARRAY")
            elif key in ("anyOf", "oneOf") and isinstance(value, list):
                options = [self.convert(v, depth + 1, refs) for v in value]
                if any(o.get("nullable") and set(o) <= {"nullable"} for o in options):
                    nullable = True
                options = [o for o in options if not (o.get("nullable") and set(o) <= {"nullable"})]
                if len(options) == 1:
                    out.update({k: v for k, v in options[0].items() if k not in out})
                elif options:
                    out["anyOf"] = options
                if key == "oneOf":
                    self.dropped.add("oneOf (sent as anyOf)")
            elif key == "allOf" and isinstance(value, list):
                for part in value:
                    for k, v in self.convert(part, depth + 1, refs).items():
                        if k == "properties":
                            out.setdefault("properties", {}).update(v)
                        elif k == "required":
                            out["required"] = [*out.get("required", []), *v]
                        else:
                            out.setdefault(k, v)
            elif key not in ("type", "const", "$ref") and key not in _SILENT:
                self.dropped.add(key)
        if "enum" in out and "type" not in out:
            out["type"] = "STRING"
        if out.get("type") == "STRING" and "enum" in out:
            out["enum"] = [str(v) for v in out["enum"]]
        elif "enum" in out:
            # Gemini takes enums of strings only; a numeric enum becomes a plain number.
            self.dropped.add("enum (not strings)")
            del out["enum"]
        if nullable:
            out["nullable"] = True
        if depth == 0 and "type" not in out:
            out["type"] = "OBJECT"
        return out

    def _resolve(self, ref: Any) -> dict[str, Any] | None:
        if not isinstance(ref, str) or not ref.startswith("#"):
            return None
        node: Any = self._root
        for part in ref.lstrip("#").strip("/").split("/"):
            if not part:
                continue
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return node if isinstance(node, dict) else None


def to_gemini_schema(parameters: Any) -> tuple[dict[str, Any], set[str]]:
    """The Gemini `parameters` for an OpenAI tool's JSON Schema, and the keywords dropped."""
    conv = SchemaConverter(parameters if isinstance(parameters, dict) else {})
    out = conv.convert(parameters)
    if "type" not in out and "anyOf" not in out:
        out["type"] = "OBJECT"  # function parameters are an object, even when the schema said nothing usable
    return out, conv.dropped
