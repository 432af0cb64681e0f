"""JSON Schema → Gemini Schema conversion on generated schemas: it never crashes, and what it
produces always validates as google.genai.types.Schema."""

from __future__ import annotations

from typing import Any

from google.genai import types as gtypes
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.translate.schema import to_gemini_schema
from relay.translate.tools import declarations

TYPES = ["string", "number", "integer", "boolean", "array", "object", "null"]
names = st.text(st.characters(categories=["Ll", "Lu", "Nd"], include_characters="_"), min_size=1, max_size=8)
scalars = st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=5)


def schemas() -> st.SearchStrategy[dict[str, Any]]:
    leaf = st.fixed_dictionaries(
        {},
        optional={
            "type": st.sampled_from(TYPES) | st.lists(st.sampled_from(TYPES), min_size=1, max_size=3),
            "description": st.text(max_size=10),
            "enum": st.lists(scalars, min_size=1, max_size=3),
            "const": scalars,
            "format": st.sampled_from(["date-time", "email", "int32"]),
            "minimum": st.integers(-3, 3), "maximum": st.integers(-3, 3),
            "pattern": st.just("^a+$"), "default": scalars,
            "additionalProperties": st.booleans(), "patternProperties": st.just({"x": {}}),
            "$ref": st.sampled_from(["#/$defs/Thing", "#/$defs/Missing", "#", "http://elsewhere/x"]),
        },
    )

    def extend(inner: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
        return st.one_of(
            st.builds(lambda props, req, base: {**base, "type": "object", "properties": props,
                                                "required": req},
                      st.dictionaries(names, inner, max_size=3), st.lists(names, max_size=2), leaf),
            st.builds(lambda items, base: {**base, "type": "array", "items": items}, inner, leaf),
            st.builds(lambda opts, key: {key: opts}, st.lists(inner, min_size=1, max_size=3),
                      st.sampled_from(["anyOf", "oneOf", "allOf"])),
        )

    return st.recursive(leaf, extend, max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(schema=schemas(), thing=schemas())
def test_converted_schema_always_validates(schema: dict[str, Any], thing: dict[str, Any]) -> None:
    root = {**schema, "$defs": {"Thing": thing}}
    out, dropped = to_gemini_schema(root)
    assert isinstance(dropped, set)
    gtypes.Schema.model_validate(out)
    assert out.get("type") == "OBJECT" or "anyOf" in out or out.get("type")


@settings(max_examples=100, deadline=None)
@given(schema=schemas(), name=names)
def test_declarations_validate_as_function_declarations(schema: dict[str, Any], name: str) -> None:
    decls, _ = declarations([{"type": "function", "name": name, "description": "d", "parameters": schema}])
    for decl in decls:
        gtypes.FunctionDeclaration.model_validate(decl)


def test_recursive_ref_terminates() -> None:
    tree = {"type": "object", "properties": {"child": {"$ref": "#"}}}
    out, dropped = to_gemini_schema(tree)
    gtypes.Schema.model_validate(out)
    assert "$ref (recursive)" in dropped
