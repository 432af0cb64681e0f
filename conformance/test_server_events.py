"""Every server event class (relay/events/openai.py), generated with the values the translator can give it and
written by the relay's serializer for each dialect, is a valid server event of the `openai` SDK (pydantic strict),
carries every field of the event unchanged, and is absent exactly from the dialect that lacks it.

The state machine checks the same of every event a session emits; this covers each class over its whole range
of values, including combinations a session reaches rarely.
"""

from __future__ import annotations

import base64
import inspect
from typing import Any

import attrs
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from conformance import strategies as cs
from relay.codec import serialize
from relay.events import openai as oa
from relay.session_config import SessionConfig, apply_beta, apply_ga
from tests.schemas import validate_openai

SERVER_CLASSES = sorted((cls for _, cls in inspect.getmembers(oa, inspect.isclass)
                         if attrs.has(cls) and hasattr(cls, "WIRE")), key=lambda c: c.__name__)

ids = st.from_regex(r"(item|resp|call)_[A-Za-z0-9]{1,24}", fullmatch=True)
b64_audio = st.binary(min_size=0, max_size=12).map(lambda b: base64.b64encode(b + b).decode())
indexes = st.integers(0, 20)
ms = st.integers(0, 10**7)


def parts(role: str) -> st.SearchStrategy[oa.ContentPart]:
    if role == "assistant":
        return st.one_of(st.builds(oa.ContentPart, type=st.just("text"), text=cs.texts),
                         st.builds(oa.ContentPart, type=st.just("audio"), transcript=cs.texts))
    if role == "system":
        return st.builds(oa.ContentPart, type=st.just("input_text"), text=cs.texts)
    return st.one_of(
        st.builds(oa.ContentPart, type=st.just("input_text"), text=cs.texts),
        st.builds(oa.ContentPart, type=st.just("input_audio"), transcript=st.none() | cs.texts),
        st.builds(oa.ContentPart, type=st.just("input_image"), image_url=st.just("data:image/png;base64,iVBORw0KGgo="),
                  detail=st.sampled_from(["auto", "low", "high"])),
    )


statuses = st.sampled_from(["completed", "in_progress", "incomplete"])


@st.composite
def messages(draw: st.DrawFn) -> oa.Item:
    role = draw(st.sampled_from(["user", "assistant", "system"]))
    return oa.Item(type="message", id=draw(ids), object="realtime.item", status=draw(statuses), role=role,
                   content=draw(st.lists(parts(role), min_size=role != "user", max_size=3)))


items = st.one_of(
    messages(),
    st.builds(oa.Item, type=st.just("function_call"), id=ids, object=st.just("realtime.item"), status=statuses,
              call_id=ids, name=cs.names, arguments=cs.json_objects.map(lambda o: orjson.dumps(o).decode())),
    st.builds(oa.Item, type=st.just("function_call_output"), id=ids, object=st.just("realtime.item"),
              status=st.just("completed"), call_id=ids, output=cs.texts),
)

usages = st.builds(oa.Usage, **{f.name: cs.counts for f in attrs.fields(oa.Usage)})
OUTCOMES = [("in_progress", None), ("completed", None), ("cancelled", "client_cancelled"),
            ("cancelled", "turn_detected"), ("incomplete", "max_output_tokens"), ("incomplete", "content_filter"),
            ("failed", None)]


@st.composite
def responses(draw: st.DrawFn) -> oa.Response:
    status, reason = draw(st.sampled_from(OUTCOMES))
    error = ({"type": "server_error", "code": "upstream_closed", "message": draw(cs.texts)}
             if status == "failed" and draw(st.booleans()) else None)
    return oa.Response(
        id=draw(ids), status=status, status_reason=reason, error=error,
        output=draw(st.lists(items, max_size=3)), usage=None if status == "in_progress" else draw(usages),
        conversation_id=draw(st.none() | ids), modalities=draw(st.sampled_from([("text",), ("audio", "text")])),
        voice=draw(cs.voices | ids.map(lambda i: {"id": i})),
        output_audio_format=draw(st.sampled_from(cs.BETA_FORMATS)),
        temperature=draw(st.floats(0.6, 1.2)), max_output_tokens=draw(cs.max_tokens),
        metadata=draw(st.none() | cs.metadata))


@st.composite
def sessions(draw: st.DrawFn) -> SessionConfig:
    cfg = SessionConfig(id=draw(ids))
    if draw(st.booleans()):
        apply_ga(cfg, draw(cs.ga_session_patches()))
    else:
        apply_beta(cfg, draw(cs.beta_session_patches()))
    return cfg


errors = st.builds(oa.ErrorInfo, type=st.sampled_from(["invalid_request_error", "server_error"]),
                   code=st.none() | cs.names, message=cs.nonempty_texts, param=st.none() | cs.names,
                   event_id=st.none() | cs.client_ids)

# Per field name, the values the translator gives it (the rest by its annotation: str, int).
FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "item": items, "response": responses(), "session": sessions(), "error": errors,
    "part": st.one_of(st.builds(oa.ContentPart, type=st.just("text"), text=cs.texts),
                      st.builds(oa.ContentPart, type=st.just("audio"), transcript=cs.texts)),
    "usage": st.builds(lambda s: {"type": "duration", "seconds": s}, st.floats(0, 3600)),
    "delta": cs.texts, "text": cs.texts, "transcript": cs.texts, "arguments": cs.texts, "name": cs.names,
    "notice": st.none() | cs.nonempty_texts, "previous_item_id": st.none() | ids,
    "output_index": indexes, "content_index": indexes, "audio_start_ms": ms, "audio_end_ms": ms,
}
AUDIO_DELTA = {"delta": b64_audio}  # response.audio.delta carries base64


def events_of(cls: type) -> st.SearchStrategy[Any]:
    fields = {f.name: {**FIELDS, **(AUDIO_DELTA if cls is oa.AudioDelta else {})}.get(f.name, ids)
              for f in attrs.fields(cls)}
    return st.builds(cls, **fields)


def test_every_server_event_class_is_generated_here() -> None:
    unknown = {f.name for cls in SERVER_CLASSES for f in attrs.fields(cls)} - set(FIELDS) - {
        "item_id", "response_id", "call_id"}
    assert not unknown, f"server event fields with no strategy: {unknown}"
    assert len(SERVER_CLASSES) >= 29  # every class with a WIRE name pair


@pytest.mark.parametrize("cls", SERVER_CLASSES, ids=lambda c: c.WIRE[0] or c.WIRE[1])
@given(data=st.data())
def test_server_events_are_valid_in_both_dialects_and_keep_their_fields(cls: type, data: st.DataObject) -> None:
    event = data.draw(events_of(cls))
    for dialect, name in (("beta", cls.WIRE[0]), ("ga", cls.WIRE[1]), (None, cls.WIRE[0])):
        frame = serialize(event, "event_abc", dialect)  # type: ignore[arg-type]
        if name is None:
            assert frame is None, f"{cls.__name__} does not exist in {dialect}"
            continue
        assert frame is not None
        wire = orjson.loads(frame)
        assert wire["type"] == name and wire["event_id"] == "event_abc"
        validate_openai(wire, dialect or "beta")
        for field in attrs.fields(cls):
            value = getattr(event, field.name)
            if isinstance(value, (str, int, float)) and not isinstance(value, bool):
                assert wire[field.name] == value, field.name
            elif value is None and not field.metadata.get("omit_if_none"):
                assert wire[field.name] is None, field.name
        check_payload(event, wire, dialect == "ga")


def check_payload(event: Any, wire: dict[str, Any], ga: bool) -> None:
    """What the dialect serializers rename or reshape, read back."""
    item = getattr(event, "item", None)
    if isinstance(item, oa.Item):
        out = wire["item"]
        assert (out["id"], out["type"], out.get("status")) == (item.id, item.type, item.status)
        if item.type == "message":
            kept = [p for p in item.content or () if ga or p.type != "input_image"]
            assert [p.get("text") for p in out["content"]] == [p.text for p in kept]
            assert [p.get("transcript") for p in out["content"]] == [
                p.transcript for p in kept]
        else:
            assert out["call_id"] == item.call_id
    response = getattr(event, "response", None)
    if isinstance(response, oa.Response):
        out = wire["response"]
        assert (out["id"], out["status"], out["metadata"]) == (response.id, response.status, response.metadata)
        assert [i["id"] for i in out["output"]] == [i.id for i in response.output]
        details = out["status_details"]
        assert (details is None) == (response.status in ("in_progress", "completed"))
        if details is not None:
            assert details["reason"] == response.status_reason
        if response.usage is not None:
            assert out["usage"]["total_tokens"] == response.usage.total_tokens
            assert out["usage"]["output_token_details"]["audio_tokens"] == response.usage.output_audio_tokens
    error = getattr(event, "error", None)
    if isinstance(error, oa.ErrorInfo):
        assert wire["error"] == attrs.asdict(error)
