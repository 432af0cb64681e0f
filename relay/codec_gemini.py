"""The Gemini Live wire codec: camelCase JSON (text or binary frames) ⇄ `relay.events.gemini`."""

from __future__ import annotations

from typing import Any

import attrs
import orjson
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override
from cattrs.preconf.orjson import make_converter

from relay.events import gemini as gm


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word.title() for word in rest)


def _is_gemini_class(cls: Any) -> bool:
    return attrs.has(cls) and getattr(cls, "__module__", "") == gm.__name__


def _make_converter():
    # Upstream frames come from Google, not from users: skip detailed validation (it is slow) and
    # ignore keys this relay does not know yet (Google adds fields).
    conv = make_converter(forbid_extra_keys=False, detailed_validation=False, omit_if_default=True)

    def structure_factory(cls: type) -> Any:
        renames = {f.name: override(rename=camel(f.name)) for f in attrs.fields(cls)}
        return make_dict_structure_fn(cls, conv, **renames)

    def unstructure_factory(cls: type) -> Any:
        renames = {f.name: override(rename=camel(f.name), omit_if_default=True) for f in attrs.fields(cls)}
        return make_dict_unstructure_fn(cls, conv, **renames)

    conv.register_structure_hook_factory(_is_gemini_class, structure_factory)
    conv.register_unstructure_hook_factory(_is_gemini_class, unstructure_factory)
    return conv


_conv = _make_converter()


class UpstreamProtocolError(Exception):
    """An upstream frame that is not a Gemini Live server message."""


def parse_server_message(frame: str | bytes) -> gm.ServerMessage:
    try:
        data = orjson.loads(frame)
    except orjson.JSONDecodeError as exc:
        raise UpstreamProtocolError(f"upstream sent a frame that is not JSON: {exc.args[0]}") from None
    if not isinstance(data, dict):
        raise UpstreamProtocolError("upstream sent a JSON value that is not an object")
    audio = _audio_chunk(data)
    if audio is not None:
        return audio
    try:
        return _conv.structure(data, gm.ServerMessage)
    except Exception as exc:
        raise UpstreamProtocolError(f"upstream sent a malformed message: {type(exc).__name__}") from None


def _audio_chunk(data: dict[str, Any]) -> gm.ServerMessage | None:
    """The message a spoken reply is made of (one inline audio part, nothing else), built without cattrs: it is
    most of what Gemini sends, and structuring it generically cost more than the rest of its translation.
    None for any other shape; conformance checks that both ways agree."""
    if len(data) != 1:
        return None
    content = data.get("serverContent")
    if type(content) is not dict or len(content) != 1:
        return None
    turn = content.get("modelTurn")
    if type(turn) is not dict or len(turn) != 1:
        return None
    parts = turn.get("parts")
    if type(parts) is not list or len(parts) != 1 or type(parts[0]) is not dict or len(parts[0]) != 1:
        return None
    blob = parts[0].get("inlineData")
    if type(blob) is not dict or len(blob) != 2:
        return None
    mime, payload = blob.get("mimeType"), blob.get("data")
    if type(mime) is not str or type(payload) is not str:
        return None
    part = gm.Part(inline_data=gm.Blob(mime_type=mime, data=payload))
    return gm.ServerMessage(server_content=gm.ServerContent(model_turn=gm.Content(parts=[part])))


def server_message_to_dict(msg: gm.ServerMessage) -> dict[str, Any]:
    return _conv.unstructure(msg)


def dumps(message: dict[str, Any]) -> bytes:
    return orjson.dumps(message)
