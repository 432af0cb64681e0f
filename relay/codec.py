"""Wire codecs: OpenAI client events in, OpenAI server events out (one serializer per dialect).

Built on `cattrs.preconf.orjson`.  Parsing is lenient about extra keys (clients send extras) and
strict about types: a string where a number belongs is an `invalid_type` error, never coerced.
Dialect differences live here, in the unstructure hooks, not in the translator.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import attrs
import cattrs
import orjson
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override
from cattrs.preconf.orjson import make_converter

from relay.errors import ClientError
from relay.events import openai as oa
from relay.session_config import GA_FORMATS, Dialect, SessionConfig, render, voice_name

# ---------------------------------------------------------------- parsing client events


def _strict(kind: type, name: str):
    def hook(value: Any, _: Any) -> Any:
        if type(value) is not kind and not (kind is float and type(value) is int):
            raise TypeError(f"expected {name}")
        return value

    return hook


def _make_client_converter() -> cattrs.Converter:
    conv = make_converter(forbid_extra_keys=False, detailed_validation=True)
    conv.register_structure_hook(str, _strict(str, "a string"))
    conv.register_structure_hook(int, _strict(int, "an integer"))
    conv.register_structure_hook(float, _strict(float, "a number"))
    conv.register_structure_hook(bool, _strict(bool, "a boolean"))

    def any_dict(value: Any, _: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise TypeError("expected an object")
        return value

    conv.register_structure_hook_func(lambda t: t == dict[str, Any], any_dict)
    # audio_ms is the relay's own bookkeeping, never read from or written to the wire
    hidden = {"audio_ms": override(omit=True), "blob": override(omit=True)}
    conv.register_structure_hook(oa.ContentPart, make_dict_structure_fn(oa.ContentPart, conv, **hidden))
    conv.register_unstructure_hook(oa.ContentPart, make_dict_unstructure_fn(oa.ContentPart, conv, **hidden))
    return conv


_client = _make_client_converter()

_EXPECTED = {"str": "a string", "int": "an integer", "float": "a number", "bool": "a boolean"}


def _error_from_cattrs(exc: Exception, type_name: str) -> ClientError:
    # transform_error yields messages like "invalid value for type, expected str @ $.item.content[0].text"
    for line in cattrs.transform_error(exc, path="$"):
        msg, _, path = line.rpartition(" @ ")
        param = path.removeprefix("$.").removeprefix("$") or None
        if msg.startswith("required field missing"):
            return ClientError(
                "missing_required_parameter", f"Missing required parameter: '{param}'.", param
            )
        expected = "a valid value"
        if "expected " in msg:
            raw = msg.split("expected ", 1)[1].removesuffix(" | None")
            expected = _EXPECTED.get(raw, raw)
        return ClientError("invalid_type", f"Invalid type for '{param}': expected {expected}.", param)
    return ClientError("invalid_event", f"Invalid '{type_name}' event.")


def parse_json(frame: str | bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(frame)
    except orjson.JSONDecodeError as exc:
        raise ClientError("invalid_json", f"The event is not valid JSON: {exc.args[0]}") from None
    if not isinstance(data, dict):
        raise ClientError("invalid_event", "An event must be a JSON object.")
    return data


def event_id_of(data: Any) -> str | None:
    eid = data.get("event_id") if isinstance(data, dict) else None
    return eid if isinstance(eid, str) else None


# A JSON string value of "event_id", escapes included, up to 512 characters.
_EVENT_ID = re.compile(r'"event_id"\s*:\s*("(?:[^"\\]|\\.){0,512}")')
HEAD = 4096  # characters of an oversized event searched for its event_id


def event_id_in_head(frame: str | bytes) -> str | None:
    """The event_id of an event too large to parse, if it comes in its first HEAD characters (clients put it
    beside `type`, ahead of the payload): so that even that error names the event it refuses."""
    head = frame[:HEAD]
    if isinstance(head, bytes):
        head = head.decode("utf-8", "replace")
    match = _EVENT_ID.search(head)
    if match is None:
        return None
    try:
        value = orjson.loads(match.group(1))
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, str) else None


def structure_client_event(data: dict[str, Any]) -> oa.ClientEvent:
    kind = data.get("type")
    if kind is None:
        raise ClientError("missing_required_parameter", "The 'type' field is missing.", "type")
    if not isinstance(kind, str):
        raise ClientError("invalid_type", "Invalid type for 'type': expected a string.", "type")
    cls = oa.CLIENT_EVENTS.get(kind)
    if cls is None:
        raise ClientError(
            "invalid_value",
            f"Invalid value: '{kind[:100]}'. Supported values are: "
            + ", ".join(f"'{k}'" for k in oa.CLIENT_EVENTS)
            + ".",
            "type",
        )
    try:
        return _client.structure(data, cls)
    except (cattrs.BaseValidationError, TypeError, ValueError, KeyError) as exc:
        raise _error_from_cattrs(exc, kind) from None


def _make_client_writer() -> cattrs.Converter:
    # Fields left at their default (None) are left out; values inside free-form payloads such as a
    # session patch's `turn_detection: null` are data and stay.
    conv = make_converter(omit_if_default=True)
    conv.register_unstructure_hook(
        oa.ContentPart, make_dict_unstructure_fn(oa.ContentPart, conv, _cattrs_omit_if_default=True,
                                                 audio_ms=override(omit=True), blob=override(omit=True),
                                                 type=override(omit_if_default=False))
    )
    conv.register_unstructure_hook(
        oa.Item, make_dict_unstructure_fn(oa.Item, conv, _cattrs_omit_if_default=True,
                                          type=override(omit_if_default=False))
    )
    return conv


_client_writer = _make_client_writer()


def unstructure_client_event(event: oa.ClientEvent) -> dict[str, Any]:
    """The inverse of `structure_client_event` (for round-trip properties and test clients)."""
    out = _client_writer.unstructure(event)
    out["type"] = event.TYPE
    return out


# ---------------------------------------------------------------- writing server events

# Assistant content: GA items say output_text/output_audio, GA content parts keep text/audio.
_GA_ITEM_CONTENT = {"text": "output_text", "audio": "output_audio"}


def _part(part: oa.ContentPart, ga_item: bool) -> dict[str, Any]:
    kind = _GA_ITEM_CONTENT.get(part.type, part.type) if ga_item else part.type
    out: dict[str, Any] = {"type": kind}
    if part.text is not None:
        out["text"] = part.text
    if part.audio is not None:
        out["audio"] = part.audio
    if part.transcript is not None or part.type in ("audio", "input_audio"):
        out["transcript"] = part.transcript
    if part.id is not None:
        out["id"] = part.id
    if part.image_url is not None:
        out["image_url"] = part.image_url
        if part.detail is not None:
            out["detail"] = part.detail
    return out


def _item(item: oa.Item, ga: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"id": item.id, "object": "realtime.item", "type": item.type}
    if item.status is not None:
        out["status"] = item.status
    if item.type == "message":
        out["role"] = item.role
        # The beta protocol has no image parts: its clients see the rest of the item.
        out["content"] = [_part(p, ga) for p in item.content or () if ga or p.type != "input_image"]
    elif item.type == "function_call":
        out["call_id"] = item.call_id
        out["name"] = item.name
        out["arguments"] = item.arguments or ""
    elif item.type == "function_call_output":
        out["call_id"] = item.call_id
        out["output"] = item.output or ""
    return out


def _usage(u: oa.Usage | None, ga: bool) -> dict[str, Any] | None:
    if u is None:
        return None
    inp: dict[str, Any] = {
        "text_tokens": u.input_text_tokens,
        "audio_tokens": u.input_audio_tokens,
        "cached_tokens": u.cached_tokens,
    }
    if ga:
        inp["image_tokens"] = u.input_image_tokens
        inp["cached_tokens_details"] = {"text_tokens": u.cached_tokens, "audio_tokens": 0, "image_tokens": 0}
    return {
        "total_tokens": u.total_tokens,
        "input_tokens": u.input_tokens,
        "output_tokens": u.output_tokens,
        "input_token_details": inp,
        "output_token_details": {"text_tokens": u.output_text_tokens, "audio_tokens": u.output_audio_tokens},
    }


def _response(r: oa.Response, ga: bool) -> dict[str, Any]:
    details = None
    if r.status in ("cancelled", "incomplete", "failed"):
        details = {"type": r.status, "reason": r.status_reason}
        if r.error is not None:
            details["error"] = r.error
    out: dict[str, Any] = {
        "object": "realtime.response",
        "id": r.id,
        "status": r.status,
        "status_details": details,
        "output": [_item(i, ga) for i in r.output],
        "conversation_id": r.conversation_id,
        "usage": _usage(r.usage, ga),
        "metadata": r.metadata,
    }
    if ga:
        out["output_modalities"] = ["audio"] if "audio" in r.modalities else ["text"]
        out["max_output_tokens"] = r.max_output_tokens
        out["audio"] = {"output": {"format": GA_FORMATS[r.output_audio_format], "voice": voice_name(r.voice)}}
    else:
        out["modalities"] = list(r.modalities)
        out["voice"] = voice_name(r.voice)  # a name in both dialects' response schemas
        out["output_audio_format"] = r.output_audio_format
        out["temperature"] = r.temperature
        out["max_output_tokens"] = r.max_output_tokens
    return out


def _payload(value: Any, ga: bool, dialect: Dialect | None) -> Any:
    if isinstance(value, oa.Item):
        return _item(value, ga)
    if isinstance(value, oa.ContentPart):
        return _part(value, ga_item=False)
    if isinstance(value, oa.Response):
        return _response(value, ga)
    if isinstance(value, oa.ErrorInfo):
        return attrs.asdict(value)
    if isinstance(value, SessionConfig):
        return render(value, dialect)
    return value


def serialize(event: Any, event_id: str, dialect: Dialect | None) -> bytes | None:
    """One server event as JSON bytes for `dialect` (None: not yet known, neutral shapes);
    None when the event does not exist in that dialect."""
    ga = dialect == "ga"
    name = event.WIRE[1] if ga else event.WIRE[0]
    if name is None:
        return None
    out: dict[str, Any] = {"type": name, "event_id": event_id}
    for field, omit_if_none in _fields(type(event)):
        value = getattr(event, field)
        if value is None:
            if omit_if_none:
                continue
        elif type(value) not in _PLAIN:
            value = _payload(value, ga, dialect)
        out[field] = value
    return orjson.dumps(out)


_PLAIN = frozenset((str, int, float, bool))  # JSON as they are: most fields of most events


@functools.cache
def _fields(cls: type) -> tuple[tuple[str, bool], ...]:
    """(name, omit when None) per field of an event class: read once, not per event."""
    return tuple((f.name, bool(f.metadata.get("omit_if_none"))) for f in attrs.fields(cls))
