"""Fixed frames and small helpers shared by the translator state machine and the regression tests."""

from __future__ import annotations

import base64
from typing import Any

import orjson

from conformance.checker import name_of
from relay.events import gemini as gm

ITEM_EVENTS = {"beta": ["conversation.item.created"], "ga": ["conversation.item.added", "conversation.item.done"]}
# turnCompleteReason → (response status, status_details.reason)
OUTCOME = {
    "MAX_TOKENS": ("incomplete", "max_output_tokens"), "GENERATED_CONTENT_SAFETY": ("incomplete", "content_filter"),
    "PROHIBITED_INPUT_CONTENT": ("incomplete", "content_filter"), "MALFORMED_FUNCTION_CALL": ("failed", None),
    "NEED_MORE_INPUT": ("completed", None),
}

# Client frames the relay must answer with exactly one `error` (and nothing else), in any dialect.
MALFORMED: list[bytes] = [
    b"{not json", b"", b"\xff\xfe\x00", b'{"type": "response.create"', b"[1, 2, 3]", b'"session.update"', b"null",
    b'{"event_id": "e-missing"}', b'{"type": "no.such.event", "event_id": "e-unknown"}',
    b'{"type": 7, "event_id": "e-type"}',
    b'{"type": "conversation.item.retrieve", "item_id": 5, "event_id": "e1"}',
    b'{"type": "conversation.item.delete", "event_id": "e2"}',
    b'{"type": "conversation.item.truncate", "item_id": "x", "content_index": "0", "audio_end_ms": 0}',
    b'{"type": "input_text", "text": ["a"], "event_id": "e3"}',
    b'{"type": "input_text", "text": "hi", "event_id": 3}',
    b'{"type": "conversation.item.create", "event_id": "e4", "item": {"type": "message", "role": "user",'
    b' "content": [{"type": "input_text", "text": 42}]}}',
    b'{"type": "conversation.item.create", "item": "hello", "event_id": "\xc3\xa9v\xc3\xa9nement"}',
    b'{"type": "conversation.item.create", "item": {"type": "message", "role": "robot",'
    b' "content": [{"type": "input_text", "text": "x"}]}, "event_id": "e5"}',
    b'{"type": "conversation.item.create", "item": {"type": "message", "role": "user", "content": []}}',
    b'{"type": "conversation.item.create", "item": {"type": "function_call", "name": "f"}, "event_id": "e12"}',
    b'{"type": "conversation.item.create", "item": {"type": "function_call_output", "call_id": "nobody",'
    b' "output": "{}"}, "event_id": "e13"}',
    b'{"type": "session.update", "session": {"temperature": "hot"}, "event_id": "e6"}',
    b'{"type": "session.update", "session": [], "event_id": "e7"}',
    b'{"type": "response.create", "response": "now", "event_id": "e8"}',
    b'{"type": "response.create", "response": {"modalities": "text"}, "event_id": "e9"}',
    b'{"type": "response.cancel", "response_id": 7}',
    b'{"type": "input_audio_buffer.append", "event_id": "e10"}',
    b'{"type": "input_audio_buffer.append", "audio": "%%% not base64 %%%", "event_id": "e11"}',
]

# Upstream frames that are not Gemini server messages.
UPSTREAM_GARBAGE: list[bytes] = [
    b"not json", b"[]", b'"setupComplete"', b'{"serverContent": {"modelTurn": {"parts": 5}}}',
    b'{"usageMetadata": {"promptTokenCount": "many"}}', b'{"setupComplete": 5}',
]

# Events about the user's side of a turn (audio buffer, VAD, user items, input transcription): they may
# precede a response.created when buffered audio becomes the user's turn.
INPUT_SIDE = {
    "input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped", "input_audio_buffer.committed",
    "conversation.item.input_audio_transcription.delta", "conversation.item.input_audio_transcription.completed",
}


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


def response_side(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`events` without the user-side ones."""
    return [
        e for e in events
        if e["type"] not in INPUT_SIDE
        and not (name_of(e) in ("conversation.item.created", "conversation.item.done") and client_side(e["item"]))
    ]


def client_side(item: dict[str, Any]) -> bool:
    """A user message or a function_call_output: an item of the client's, not of a response."""
    return item.get("role") == "user" or item["type"] == "function_call_output"


def deltas(events: list[dict[str, Any]], name: str) -> list[str]:
    return [e["delta"] for e in events if name_of(e) == name]


def with_id(event: dict[str, Any], event_id: str | None) -> dict[str, Any]:
    return event if event_id is None else {**event, "event_id": event_id}


def pcm16(ms: int) -> str:
    """`ms` of 24 kHz pcm16 (a quiet ramp), base64."""
    samples = bytes(b for i in range(24 * ms) for b in ((i * 37) & 0xFF, 0))
    return base64.b64encode(samples).decode()


def tagged_pcm16(ms: int, tag: int) -> str:
    """`ms` of 24 kHz pcm16 whose every 100 ms chunk differs from those of other tags, base64: the ledger
    tells appended chunks apart by their data."""
    samples = b"".join(((i * 37 + tag * 7919) & 0xFFFF).to_bytes(2, "little") for i in range(24 * ms))
    return base64.b64encode(samples).decode()


def expected_dialect(data: dict[str, Any]) -> str:
    """The dialect the first client event implies when no header chose one (GA-only shapes)."""
    kind = data.get("type")
    if kind == "session.update":
        body = data.get("session")
        return "ga" if isinstance(body, dict) and {"type", "output_modalities", "audio"} & set(body) else "beta"
    if kind == "response.create":
        body = data.get("response")
        return "ga" if isinstance(body, dict) and {"output_modalities", "audio"} & set(body) else "beta"
    if kind == "conversation.item.create" and isinstance(data.get("item"), dict):
        content = data["item"].get("content")
        if isinstance(content, list) and any(
            isinstance(p, dict) and p.get("type") in ("output_text", "output_audio") for p in content
        ):
            return "ga"
    return "beta"


def audio_format(response: dict[str, Any]) -> str:
    """The output audio format of a response object in either dialect, as a beta name."""
    if "output_audio_format" in response:
        return response["output_audio_format"]
    kind = response["audio"]["output"]["format"]["type"]
    return {"audio/pcm": "pcm16", "audio/pcmu": "g711_ulaw", "audio/pcma": "g711_alaw"}[kind]


def visible_output(content: gm.ServerContent) -> tuple[str, list[str]]:
    """What a Gemini serverContent shows the client: its text (not thoughts) and transcript, its audio chunks."""
    parts = (content.model_turn.parts or []) if content.model_turn else []
    text = "".join(p.text for p in parts if p.text and not p.thought)
    if content.output_transcription and content.output_transcription.text:
        text += content.output_transcription.text
    return text, [p.inline_data.data for p in parts if p.inline_data and p.inline_data.data]


def function_response_body(output: str) -> dict[str, Any]:
    """What Gemini gets for a function_call_output's `output`: a JSON object as it is, anything else wrapped."""
    try:
        value = orjson.loads(output) if output else ""
    except orjson.JSONDecodeError:
        value = output
    return value if isinstance(value, dict) else {"output": value}


def speaks(response: dict[str, Any]) -> bool:
    return "audio" in response.get("modalities", response.get("output_modalities", ()))


DELTA_NAMES = {"response.text.delta", "response.audio.delta", "response.audio_transcript.delta"}


def lifecycle(events: list[dict[str, Any]]) -> list[str]:
    """Canonical (beta) event names, each run of deltas squashed to one "deltas"."""
    out: list[str] = []
    for e in events:
        name = "deltas" if name_of(e) in DELTA_NAMES else name_of(e)
        if not (name == "deltas" and out and out[-1] == "deltas"):
            out.append(name)
    return out


def expected_lifecycle(audio: bool, dialect: str) -> list[str]:
    """protocols.md 1.9 B (text) and C (audio), in canonical names."""
    done = ["response.audio.done", "response.audio_transcript.done"] if audio else ["response.text.done"]
    item_done = ["conversation.item.done"] if dialect == "ga" else []
    return ["response.created", "response.output_item.added", "conversation.item.created",
            "response.content_part.added", "deltas", *done, "response.content_part.done",
            "response.output_item.done", *item_done, "response.done"]


def assert_echoed(patch: Any, rendered: Any, path: str = "session") -> None:
    """Every value of a session patch is in the rendered session: objects may gain keys (defaults,
    `rate` of a format), everything else is equal."""
    if isinstance(patch, dict):
        assert isinstance(rendered, dict), f"{path}: {rendered!r}"
        for key, value in patch.items():
            assert key in rendered, f"{path}.{key} missing"
            assert_echoed(value, rendered[key], f"{path}.{key}")
    else:
        assert patch == rendered, f"{path}: sent {patch!r}, session says {rendered!r}"
