"""Hypothesis strategies for the relay's two vocabularies.

OpenAI client events are built with `st.builds` over the attrs classes of `relay.events.openai`
(one strategy per class in `CLIENT_EVENTS`); their payload dicts (session patches, response
parameters) are realistic beta or GA shapes.  Gemini server messages are built over
`relay.events.gemini`.  Text strategies range over all of Unicode except lone surrogates (which
JSON cannot carry).
"""

from __future__ import annotations

import base64
from typing import Any

import attrs
import orjson
from hypothesis import strategies as st

from relay.events import gemini as gm
from relay.events import openai as oa

S = st.SearchStrategy

# ---------------------------------------------------------------- scalars

THOUGHT_MARK = "\u2603thought\u2603"  # every thought part carries it; it must never reach the client
texts = st.text(st.characters(codec="utf-8"), max_size=24).filter(lambda t: THOUGHT_MARK not in t)
nonempty_texts = st.text(st.characters(codec="utf-8"), min_size=1, max_size=24).filter(lambda t: THOUGHT_MARK not in t)
names = st.from_regex(r"[a-z][a-z0-9_]{0,15}", fullmatch=True)
client_ids = st.one_of(st.from_regex(r"(msg|item|evt)_[A-Za-z0-9]{1,12}", fullmatch=True), nonempty_texts)
event_ids = st.none() | client_ids
audio_b64 = st.binary(min_size=2, max_size=32).map(lambda b: base64.b64encode(b).decode())
counts = st.integers(min_value=0, max_value=100_000)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts
)
json_values: S[Any] = st.recursive(
    json_scalars,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(texts, kids, max_size=4),
    max_leaves=16,
)
json_objects = st.dictionaries(texts, json_values, max_size=5)


# ---------------------------------------------------------------- conversation items

input_text_parts = st.builds(oa.ContentPart, type=st.just("input_text"), text=texts)
input_audio_parts = st.builds(
    oa.ContentPart, type=st.just("input_audio"), audio=audio_b64, transcript=st.none() | texts
)
item_reference_parts = st.builds(oa.ContentPart, type=st.just("item_reference"), id=client_ids)


def assistant_text_parts(ga: bool) -> S[oa.ContentPart]:
    return st.builds(oa.ContentPart, type=st.just("output_text" if ga else "text"), text=texts)


def message_items(role: str, ga: bool = False, client_id: bool = True) -> S[oa.Item]:
    """A message item as a client creates it; assistant content is `text` (beta) or `output_text` (GA)."""
    content = {
        "user": st.lists(input_text_parts | input_audio_parts, min_size=1, max_size=3),
        "system": st.lists(input_text_parts, min_size=1, max_size=2),
        "assistant": st.lists(assistant_text_parts(ga), min_size=1, max_size=2),
    }[role]
    return st.builds(
        oa.Item,
        type=st.just("message"),
        role=st.just(role),
        content=content,
        id=st.none() | client_ids if client_id else st.none(),
        object=st.none() | st.just("realtime.item"),
        status=st.none() | st.just("completed"),
    )


function_call_items = st.builds(
    oa.Item, type=st.just("function_call"), id=st.none() | client_ids, call_id=client_ids, name=names,
    arguments=json_objects.map(lambda d: orjson.dumps(d).decode()),
)
function_call_output_items = st.builds(
    oa.Item, type=st.just("function_call_output"), id=st.none() | client_ids, call_id=client_ids, output=texts,
)
any_items: S[oa.Item] = st.one_of(
    message_items("user"),
    message_items("system"),
    message_items("assistant", ga=False),
    message_items("assistant", ga=True),
    st.builds(oa.Item, type=st.just("message"), role=st.just("user"),
              content=st.lists(item_reference_parts, min_size=1, max_size=2)),
    function_call_items,
    function_call_output_items,
)


# ---------------------------------------------------------------- session patches

VOICES = ["alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar"]
BETA_FORMATS = ["pcm16", "g711_ulaw", "g711_alaw"]
GA_FORMATS = [{"type": "audio/pcm", "rate": 24000}, {"type": "audio/pcm"}, {"type": "audio/pcmu"},
              {"type": "audio/pcma"}]
voices = st.sampled_from(VOICES)
max_tokens = st.integers(min_value=1, max_value=4096) | st.just("inf")
tool_choices = st.sampled_from(["auto", "none", "required"])
ga_formats = st.sampled_from(GA_FORMATS).map(dict)
server_vad = st.fixed_dictionaries(
    {"type": st.just("server_vad")},
    optional={
        "threshold": st.floats(min_value=0, max_value=1),
        "prefix_padding_ms": st.integers(min_value=0, max_value=2000),
        "silence_duration_ms": st.integers(min_value=0, max_value=2000),
        "create_response": st.booleans(),
        "interrupt_response": st.booleans(),
    },
)
semantic_vad = st.fixed_dictionaries(
    {"type": st.just("semantic_vad")},
    optional={
        "eagerness": st.sampled_from(["low", "medium", "high", "auto"]),
        "create_response": st.booleans(),
        "interrupt_response": st.booleans(),
    },
)
transcriptions = st.fixed_dictionaries(
    {"model": st.sampled_from(["whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe"])},
    optional={"language": st.sampled_from(["en", "fr", "de", "ja"]), "prompt": texts},
)
noise_reductions = st.fixed_dictionaries({"type": st.sampled_from(["near_field", "far_field"])})
tools = st.lists(
    st.fixed_dictionaries({
        "type": st.just("function"),
        "name": names,
        "description": texts,
        "parameters": st.just({"type": "object", "properties": {"city": {"type": "string"}}}),
    }),
    max_size=2,
)


def beta_session_patches() -> S[dict[str, Any]]:
    """A beta `session.update` patch: flat keys, never `type`/`audio`/`output_modalities`."""
    return st.fixed_dictionaries({}, optional={
        "modalities": st.sampled_from([["text"], ["audio", "text"], ["text", "audio"]]),
        "instructions": texts,
        "voice": voices,
        "input_audio_format": st.sampled_from(BETA_FORMATS),
        "output_audio_format": st.sampled_from(BETA_FORMATS),
        "input_audio_transcription": st.none() | transcriptions,
        "input_audio_noise_reduction": st.none() | noise_reductions,
        "turn_detection": st.none() | server_vad | semantic_vad,
        "tools": tools,
        "tool_choice": tool_choices,
        "temperature": st.floats(min_value=0.6, max_value=1.2),
        "max_response_output_tokens": max_tokens,
        "speed": st.floats(min_value=0.25, max_value=1.5),
    })


def ga_session_patches() -> S[dict[str, Any]]:
    """A GA `session.update` patch: `type: realtime`, `output_modalities`, nested `audio`."""
    audio_in = st.fixed_dictionaries({}, optional={
        "format": ga_formats,
        "transcription": st.none() | transcriptions,
        "noise_reduction": st.none() | noise_reductions,
        "turn_detection": st.none() | server_vad | semantic_vad,
    })
    audio_out = st.fixed_dictionaries({}, optional={
        "format": ga_formats, "voice": voices, "speed": st.floats(min_value=0.25, max_value=1.5),
    })
    return st.fixed_dictionaries({"type": st.just("realtime")}, optional={
        "output_modalities": st.sampled_from([["text"], ["audio"]]),
        "instructions": texts,
        "audio": st.fixed_dictionaries({}, optional={"input": audio_in, "output": audio_out}),
        "tools": tools,
        "tool_choice": tool_choices,
        "max_output_tokens": max_tokens,
        "tracing": st.none() | st.just("auto"),
    })


def session_patches() -> S[dict[str, Any]]:
    return beta_session_patches() | ga_session_patches()


metadata = st.dictionaries(names, texts, max_size=3)


def beta_response_params() -> S[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional={
        "modalities": st.sampled_from([["text"], ["audio", "text"], ["text", "audio"]]),
        "instructions": texts,
        "voice": voices,
        "output_audio_format": st.sampled_from(BETA_FORMATS),
        "temperature": st.floats(min_value=0.6, max_value=1.2),
        "max_response_output_tokens": max_tokens,
        "conversation": st.sampled_from(["auto", "none"]),
        "metadata": metadata,
        "tool_choice": tool_choices,
    })


def ga_response_params() -> S[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional={
        "output_modalities": st.sampled_from([["text"], ["audio"]]),
        "instructions": texts,
        "audio": st.fixed_dictionaries({"output": st.fixed_dictionaries({}, optional={
            "format": ga_formats, "voice": voices})}),
        "max_output_tokens": max_tokens,
        "conversation": st.sampled_from(["auto", "none"]),
        "metadata": metadata,
        "tool_choice": tool_choices,
    })


# ---------------------------------------------------------------- client events


def client_event_strategies() -> dict[type, S[Any]]:
    """One strategy per client event class (keys cover `oa.CLIENT_EVENTS`)."""
    return {
        oa.SessionUpdate: st.builds(oa.SessionUpdate, session=session_patches(), event_id=event_ids),
        oa.TranscriptionSessionUpdate: st.builds(
            oa.TranscriptionSessionUpdate,
            session=st.fixed_dictionaries({}, optional={
                "input_audio_format": st.sampled_from(BETA_FORMATS),
                "input_audio_transcription": transcriptions,
                "turn_detection": st.none() | server_vad,
            }),
            event_id=event_ids,
        ),
        oa.InputAudioBufferAppend: st.builds(oa.InputAudioBufferAppend, audio=audio_b64, event_id=event_ids),
        oa.InputAudioBufferCommit: st.builds(oa.InputAudioBufferCommit, event_id=event_ids),
        oa.InputAudioBufferClear: st.builds(oa.InputAudioBufferClear, event_id=event_ids),
        oa.OutputAudioBufferClear: st.builds(oa.OutputAudioBufferClear, event_id=event_ids),
        oa.ConversationItemCreate: st.builds(
            oa.ConversationItemCreate, item=any_items, previous_item_id=st.none() | st.just("root") | client_ids,
            event_id=event_ids,
        ),
        oa.ConversationItemRetrieve: st.builds(oa.ConversationItemRetrieve, item_id=client_ids, event_id=event_ids),
        oa.ConversationItemTruncate: st.builds(
            oa.ConversationItemTruncate, item_id=client_ids, content_index=st.integers(0, 3),
            audio_end_ms=st.integers(0, 600_000), event_id=event_ids,
        ),
        oa.ConversationItemDelete: st.builds(oa.ConversationItemDelete, item_id=client_ids, event_id=event_ids),
        oa.ResponseCreate: st.builds(
            oa.ResponseCreate, response=st.none() | beta_response_params() | ga_response_params(), event_id=event_ids
        ),
        oa.ResponseCancel: st.builds(oa.ResponseCancel, response_id=st.none() | client_ids, event_id=event_ids),
        oa.InputText: st.builds(oa.InputText, text=texts, event_id=event_ids),
    }


def client_events() -> S[Any]:
    return st.one_of(*client_event_strategies().values())


def to_wire(event: Any) -> dict[str, Any]:
    """A client event as its JSON object, written independently of `relay.codec`: attrs fields that
    are None are left out, `null` inside free-form payload dicts is kept.  Fields left out of equality
    (`ContentPart.audio_ms`) are the relay's bookkeeping, not wire fields."""
    out = attrs.asdict(event, filter=lambda field, value: value is not None and field.eq)
    out["type"] = event.TYPE
    return out


# ---------------------------------------------------------------- Gemini server messages

TURN_COMPLETE_REASONS = [
    "MALFORMED_FUNCTION_CALL", "RESPONSE_REJECTED", "NEED_MORE_INPUT", "PROHIBITED_INPUT_CONTENT",
    "GENERATED_CONTENT_SAFETY", "GENERATED_AUDIO_SAFETY", "MAX_TOKENS", "MAX_REGENERATION_REACHED",
]

pcm16_b64 = st.binary(min_size=1, max_size=16).map(lambda b: base64.b64encode(b + b).decode())  # whole samples
blobs = st.builds(gm.Blob, mime_type=st.just("audio/pcm;rate=24000"), data=pcm16_b64)
text_parts = st.builds(gm.Part, text=nonempty_texts)
thought_parts = st.builds(gm.Part, text=texts.map(lambda t: THOUGHT_MARK + t), thought=st.just(True))
audio_parts = st.builds(gm.Part, inline_data=blobs)
# Any byte count, odd ones included: the relay carries the half sample to the next chunk.
odd_audio_parts = st.builds(gm.Part, inline_data=st.builds(
    gm.Blob, mime_type=st.just("audio/pcm;rate=24000"),
    data=st.binary(min_size=1, max_size=17).map(lambda b: base64.b64encode(b).decode())))
model_turns = st.builds(
    gm.Content, role=st.just("model"), parts=st.lists(text_parts | thought_parts | audio_parts, min_size=1, max_size=3)
)
gm_transcriptions = st.builds(gm.Transcription, text=texts, finished=st.none() | st.booleans())
modality_counts = st.lists(
    st.builds(gm.ModalityTokenCount, modality=st.sampled_from(["TEXT", "AUDIO", "IMAGE", "VIDEO"]),
              token_count=counts),
    max_size=3,
)
_common_usage = {
    "prompt_token_count": counts, "total_token_count": st.none() | counts,
    "cached_content_token_count": st.none() | counts, "thoughts_token_count": st.none() | counts,
    "tool_use_prompt_token_count": st.none() | counts, "prompt_tokens_details": st.none() | modality_counts,
}
usage_ai_studio = st.builds(
    gm.UsageMetadata, response_token_count=counts, response_tokens_details=st.none() | modality_counts,
    **_common_usage,
)
usage_vertex = st.builds(
    gm.UsageMetadata, candidates_token_count=counts, candidates_tokens_details=st.none() | modality_counts,
    **_common_usage,
)
usage_metadata = usage_ai_studio | usage_vertex
server_contents = st.builds(
    gm.ServerContent,
    model_turn=st.none() | model_turns,
    turn_complete=st.none() | st.booleans(),
    generation_complete=st.none() | st.booleans(),
    interrupted=st.none() | st.booleans(),
    input_transcription=st.none() | gm_transcriptions,
    output_transcription=st.none() | gm_transcriptions,
    turn_complete_reason=st.none() | st.sampled_from(TURN_COMPLETE_REASONS),
    waiting_for_input=st.none() | st.booleans(),
)
setup_completes = st.builds(gm.SetupComplete, session_id=st.none() | client_ids)
go_aways = st.builds(gm.GoAway, time_left=st.integers(0, 600).map(lambda s: f"{s}s"))
resumption_updates = st.builds(
    gm.SessionResumptionUpdate, new_handle=st.none() | client_ids, resumable=st.none() | st.booleans(),
    last_consumed_client_message_index=st.none() | st.integers(0, 10**6).map(str),
)
tool_call_cancellations = st.builds(gm.ToolCallCancellation, ids=st.lists(client_ids, min_size=1, max_size=3))
tool_calls = st.builds(gm.ToolCall, function_calls=st.lists(
    st.builds(gm.FunctionCall, id=client_ids, name=names, args=st.none() | json_objects), min_size=1, max_size=2))
voice_activities = st.builds(gm.VoiceActivity, voice_activity_type=st.sampled_from(["ACTIVITY_START", "ACTIVITY_END"]))

_single_key_messages = st.one_of(
    st.builds(gm.ServerMessage, setup_complete=setup_completes),
    st.builds(gm.ServerMessage, server_content=server_contents),
    st.builds(gm.ServerMessage, server_content=server_contents, usage_metadata=usage_metadata),
    st.builds(gm.ServerMessage, usage_metadata=usage_metadata),
    st.builds(gm.ServerMessage, go_away=go_aways),
    st.builds(gm.ServerMessage, session_resumption_update=resumption_updates),
    st.builds(gm.ServerMessage, tool_call_cancellation=tool_call_cancellations),
    st.builds(gm.ServerMessage, tool_call=tool_calls),
    st.builds(gm.ServerMessage, voice_activity=voice_activities),
)
server_messages: S[gm.ServerMessage] = _single_key_messages | st.builds(
    gm.ServerMessage,
    setup_complete=st.none() | setup_completes,
    server_content=st.none() | server_contents,
    usage_metadata=st.none() | usage_metadata,
    tool_call=st.none() | tool_calls,
    tool_call_cancellation=st.none() | tool_call_cancellations,
    go_away=st.none() | go_aways,
    session_resumption_update=st.none() | resumption_updates,
    voice_activity=st.none() | voice_activities,
)

# Messages that must produce no client event: they carry no model output and no end of turn.
quiet_server_messages: S[gm.ServerMessage] = st.one_of(
    st.builds(gm.ServerMessage, server_content=st.builds(
        gm.ServerContent, generation_complete=st.just(True), waiting_for_input=st.none() | st.booleans())),
    st.builds(gm.ServerMessage, usage_metadata=usage_metadata),
    st.builds(gm.ServerMessage, go_away=go_aways),
    st.builds(gm.ServerMessage, session_resumption_update=resumption_updates),
    st.builds(gm.ServerMessage, tool_call_cancellation=tool_call_cancellations),
    st.builds(gm.ServerMessage, setup_complete=setup_completes),
    st.builds(gm.ServerMessage, voice_activity=voice_activities),
)


def upstream_faults(garbage: list[bytes]) -> S[tuple[str, int | None, Any]]:
    """(how, close code or HTTP status, reason/message/frame) for the ways an upstream ends."""
    return st.one_of(
        st.tuples(st.just("closed"), st.sampled_from([1011, 1007, 1008, 1000, 4003, None]), texts),
        st.tuples(st.just("failed"), st.sampled_from([401, 403, 404, 500, 503, None]), nonempty_texts),
        st.tuples(st.just("garbage"), st.none(), st.sampled_from(garbage)),
        st.tuples(st.just("stalled"), st.none(), st.sampled_from([0.5, 60.0])),
    )


def json_paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path (keys and indexes) into a JSON value, its root left out: where a mutation can go."""
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, child in value.items():
            out += json_paths(child, (*prefix, key))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            out += json_paths(child, (*prefix, i))
    return out
