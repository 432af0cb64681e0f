"""Codec properties: client events and Gemini server messages survive a round trip through their
wire form, and no JSON a client can send makes the client codec raise anything but ClientError."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from conformance import strategies as cs
from relay import codec
from relay.codec_gemini import (
    UpstreamProtocolError,
    _audio_chunk,
    _conv,
    parse_server_message,
    server_message_to_dict,
)
from relay.errors import ClientError
from relay.events import gemini as gm
from relay.events import openai as oa

CLASSES = sorted(oa.CLIENT_EVENTS.values(), key=lambda c: c.TYPE)


def test_every_client_event_class_has_a_strategy() -> None:
    assert set(cs.client_event_strategies()) == set(oa.CLIENT_EVENTS.values())


# ---------------------------------------------------------------- client events


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.TYPE)
@given(data=st.data())
def test_client_event_round_trips_through_the_codec(cls: type, data: st.DataObject) -> None:
    event = data.draw(cs.client_event_strategies()[cls])
    wire = codec.unstructure_client_event(event)
    assert wire["type"] == cls.TYPE
    assert wire == cs.to_wire(event)
    assert codec.structure_client_event(wire) == event
    assert codec.structure_client_event(orjson.loads(orjson.dumps(wire))) == event


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.TYPE)
@given(data=st.data())
def test_client_event_json_bytes_structure_back(cls: type, data: st.DataObject) -> None:
    # Written by the independent encoder, not by relay.codec.
    event = data.draw(cs.client_event_strategies()[cls])
    frame = orjson.dumps(cs.to_wire(event))
    assert codec.structure_client_event(codec.parse_json(frame)) == event


def test_unstructure_keeps_null_in_session_patch() -> None:
    """Found by the round trip (fixed in b2fa471): nulls inside payload dicts used to be dropped."""
    event = oa.SessionUpdate(session={"turn_detection": None})
    wire = codec.unstructure_client_event(event)
    assert wire == {"type": "session.update", "session": {"turn_detection": None}}
    assert codec.structure_client_event(wire) == event


# ---------------------------------------------------------------- hostile client JSON


def _check_client_error(exc: ClientError) -> None:
    assert isinstance(exc.code, str) and exc.code
    assert isinstance(exc.message, str) and exc.message
    assert exc.param is None or isinstance(exc.param, str)
    if exc.code in ("invalid_type", "missing_required_parameter"):
        assert exc.param, exc.message


def _structure_or_client_error(data: dict[str, Any]) -> None:
    try:
        event = codec.structure_client_event(data)
    except ClientError as exc:
        _check_client_error(exc)
    else:
        assert isinstance(event, oa.CLIENT_EVENTS[data["type"]])


@st.composite
def mutated_events(draw: st.DrawFn) -> dict[str, Any]:
    """A valid client event with one node replaced by arbitrary JSON, or one object key removed."""
    wire = orjson.loads(orjson.dumps(cs.to_wire(draw(cs.client_events()))))
    path = draw(st.sampled_from(cs.json_paths(wire)))
    parent = wire
    for key in path[:-1]:
        parent = parent[key]
    if isinstance(parent, dict) and draw(st.booleans()):
        del parent[path[-1]]
    else:
        parent[path[-1]] = draw(cs.json_values)
    return wire


@given(cs.json_values)
@example([1, 2, 3])
@example({"type": None})
@example({"type": "conversation.item.create", "item": "x"})
def test_any_json_value_parses_to_an_event_or_a_client_error(value: Any) -> None:
    try:
        data = codec.parse_json(orjson.dumps(value))
    except ClientError as exc:
        _check_client_error(exc)
        assert not isinstance(value, dict)
        return
    _structure_or_client_error(data)


@given(st.binary(max_size=64) | cs.texts.map(str.encode))
@example(b"{not json")
@example(b"")
def test_any_bytes_parse_to_an_object_or_a_client_error(frame: bytes) -> None:
    try:
        data = codec.parse_json(frame)
    except ClientError as exc:
        _check_client_error(exc)
    else:
        assert isinstance(data, dict)


@given(st.fixed_dictionaries(
    {"type": st.sampled_from(sorted(oa.CLIENT_EVENTS)) | cs.json_values},
    optional={"event_id": cs.json_values},
).flatmap(lambda base: cs.json_objects.map(lambda extra: {**extra, **base})))
def test_arbitrary_objects_with_a_type_structure_or_raise_client_error(data: dict[str, Any]) -> None:
    _structure_or_client_error(data)


@given(mutated_events())
@example({"type": "conversation.item.create", "item": {"type": "message", "content": [{"text": 1}]}})
@example({"type": "conversation.item.truncate", "item_id": "i", "content_index": True, "audio_end_ms": 0})
@example({"type": "response.create", "response": []})
def test_mutated_client_events_structure_or_raise_client_error(data: dict[str, Any]) -> None:
    _structure_or_client_error(data)


# ---------------------------------------------------------------- Gemini server messages


@given(cs.server_messages)
def test_gemini_server_message_round_trips(message: gm.ServerMessage) -> None:
    wire = server_message_to_dict(message)
    assert parse_server_message(orjson.dumps(wire)) == message
    assert parse_server_message(orjson.dumps(wire).decode()) == message


_scalars = st.one_of(st.text(max_size=8), st.integers(), st.none(), st.booleans())
_blobs = st.dictionaries(st.sampled_from(["mimeType", "data", "displayName"]), _scalars, max_size=3)
_audio_shaped = st.builds(
    lambda blob, extra_part, extra_turn, extra_content, extra_top: {
        "serverContent": {"modelTurn": {"parts": [{"inlineData": blob, **extra_part}], **extra_turn}, **extra_content},
        **extra_top},
    _blobs,
    *(st.dictionaries(st.sampled_from(keys), st.booleans(), max_size=1)
      for keys in (["text", "thought"], ["role"], ["turnComplete", "interrupted"], ["usageMetadata", "goAway"])),
)


@given(_audio_shaped)
@example({"serverContent": {"modelTurn": {"parts": [{"inlineData": {"mimeType": "audio/pcm;rate=24000",
                                                                    "data": "AAAA"}}]}}})
def test_the_audio_fast_path_agrees_with_the_generic_structuring(data: dict[str, Any]) -> None:
    fast = _audio_chunk(data)
    if fast is None:
        return
    assert fast == _conv.structure(data, gm.ServerMessage)


def _keys(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [k for key, child in value.items() if key != "args" for k in (key, *_keys(child))]
    if isinstance(value, list):
        return [k for child in value for k in _keys(child)]
    return []


@given(cs.server_messages)
def test_gemini_wire_names_are_camel_case(message: gm.ServerMessage) -> None:
    assert all("_" not in key for key in _keys(server_message_to_dict(message)))


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        (b'{"setupComplete":{}}', gm.ServerMessage(setup_complete=gm.SetupComplete())),
        (b'{"usageMetadata":{"promptTokenCount":3,"candidatesTokenCount":5}}',
         gm.ServerMessage(usage_metadata=gm.UsageMetadata(prompt_token_count=3, candidates_token_count=5))),
        (b'{"usageMetadata":{"responseTokenCount":5,"responseTokensDetails":[{"modality":"TEXT","tokenCount":5}]}}',
         gm.ServerMessage(usage_metadata=gm.UsageMetadata(
             response_token_count=5, response_tokens_details=[gm.ModalityTokenCount("TEXT", 5)]))),
        (b'{"serverContent":{"turnComplete":true,"turnCompleteReason":"MAX_TOKENS","grounding":{}},"newKey":1}',
         gm.ServerMessage(server_content=gm.ServerContent(turn_complete=True, turn_complete_reason="MAX_TOKENS"))),
        (b'{"goAway":{"timeLeft":"50s"}}', gm.ServerMessage(go_away=gm.GoAway("50s"))),
    ],
)
def test_gemini_wire_examples_parse(frame: bytes, expected: gm.ServerMessage) -> None:
    assert parse_server_message(frame) == expected


@given(cs.json_values)
@example({"serverContent": {"modelTurn": {"parts": "x"}}})
@example({"usageMetadata": {"promptTokenCount": "many"}})
def test_any_upstream_json_parses_or_raises_upstream_protocol_error(value: Any) -> None:
    try:
        message = parse_server_message(orjson.dumps(value))
    except UpstreamProtocolError:
        return
    assert isinstance(value, dict) and isinstance(message, gm.ServerMessage)
