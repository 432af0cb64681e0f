"""OpenAI Realtime events, one attrs class per wire message, in one internal vocabulary.

Client events are parsed by `relay.codec` (lenient about extra keys, strict about types).  Server
events are written by the dialect serializers in `relay.codec`: the classes below carry beta and GA
names in `WIRE` and the serializer applies the GA renames and content-type asymmetries (as in the
openai-python SDK's `openai.types.beta.realtime` and `openai.types.realtime` event types), so the translator
never thinks about dialects.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import attrs

Json = Any

# ---------------------------------------------------------------- conversation items


@attrs.define(slots=True)
class ContentPart:
    """One part of a message item.  `type` is internal: text|audio for assistant output,
    input_text|input_audio|input_image|item_reference for user/system input."""

    type: str
    text: str | None = None
    audio: str | None = None
    transcript: str | None = None
    id: str | None = None
    image_url: str | None = None  # input_image: a data URL
    detail: str | None = None  # input_image: auto | low | high
    # Not on the wire: how much audio the part holds, in ms (the relay keeps no streamed audio bytes).
    audio_ms: float = attrs.field(default=0.0, eq=False, repr=False)
    # Not on the wire: the Gemini blob of an input_image or input_audio part, checked when the item was created.
    blob: dict[str, str] | None = attrs.field(default=None, eq=False, repr=False)


@attrs.define(slots=True)
class Item:
    """A conversation item as the client sends it and as the relay stores it."""

    type: str = "message"
    id: str | None = None
    object: str | None = None
    status: str | None = None
    role: str | None = None
    content: list[ContentPart] | None = None
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None
    output: str | None = None


# ---------------------------------------------------------------- client events


@attrs.frozen
class SessionUpdate:
    TYPE: ClassVar[str] = "session.update"
    session: dict[str, Json]
    event_id: str | None = None


@attrs.frozen
class TranscriptionSessionUpdate:
    TYPE: ClassVar[str] = "transcription_session.update"
    session: dict[str, Json]
    event_id: str | None = None


@attrs.frozen
class InputAudioBufferAppend:
    TYPE: ClassVar[str] = "input_audio_buffer.append"
    audio: str
    event_id: str | None = None


@attrs.frozen
class InputAudioBufferCommit:
    TYPE: ClassVar[str] = "input_audio_buffer.commit"
    event_id: str | None = None


@attrs.frozen
class InputAudioBufferClear:
    TYPE: ClassVar[str] = "input_audio_buffer.clear"
    event_id: str | None = None


@attrs.frozen
class OutputAudioBufferClear:
    TYPE: ClassVar[str] = "output_audio_buffer.clear"
    event_id: str | None = None


@attrs.frozen
class ConversationItemCreate:
    TYPE: ClassVar[str] = "conversation.item.create"
    item: Item
    previous_item_id: str | None = None
    event_id: str | None = None


@attrs.frozen
class ConversationItemRetrieve:
    TYPE: ClassVar[str] = "conversation.item.retrieve"
    item_id: str
    event_id: str | None = None


@attrs.frozen
class ConversationItemTruncate:
    TYPE: ClassVar[str] = "conversation.item.truncate"
    item_id: str
    content_index: int
    audio_end_ms: int
    event_id: str | None = None


@attrs.frozen
class ConversationItemDelete:
    TYPE: ClassVar[str] = "conversation.item.delete"
    item_id: str
    event_id: str | None = None


@attrs.frozen
class ResponseCreate:
    TYPE: ClassVar[str] = "response.create"
    response: dict[str, Json] | None = None
    event_id: str | None = None


@attrs.frozen
class ResponseCancel:
    TYPE: ClassVar[str] = "response.cancel"
    response_id: str | None = None
    event_id: str | None = None


@attrs.frozen
class InputText:
    """`{"type": "input_text", "text": …}`: the shorthand LiteLLM's docs use for a user text turn
    that asks for a response."""

    TYPE: ClassVar[str] = "input_text"
    text: str
    event_id: str | None = None


ClientEvent = (
    SessionUpdate
    | TranscriptionSessionUpdate
    | InputAudioBufferAppend
    | InputAudioBufferCommit
    | InputAudioBufferClear
    | OutputAudioBufferClear
    | ConversationItemCreate
    | ConversationItemRetrieve
    | ConversationItemTruncate
    | ConversationItemDelete
    | ResponseCreate
    | ResponseCancel
    | InputText
)

CLIENT_EVENTS: dict[str, type] = {
    cls.TYPE: cls
    for cls in (
        SessionUpdate,
        TranscriptionSessionUpdate,
        InputAudioBufferAppend,
        InputAudioBufferCommit,
        InputAudioBufferClear,
        OutputAudioBufferClear,
        ConversationItemCreate,
        ConversationItemRetrieve,
        ConversationItemTruncate,
        ConversationItemDelete,
        ResponseCreate,
        ResponseCancel,
        InputText,
    )
}

# ---------------------------------------------------------------- server event payloads


@attrs.define(slots=True)
class Usage:
    total_tokens: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    input_text_tokens: int = 0
    input_audio_tokens: int = 0
    input_image_tokens: int = 0
    cached_tokens: int = 0
    output_text_tokens: int = 0
    output_audio_tokens: int = 0


@attrs.define(slots=True)
class Response:
    id: str
    status: Literal["in_progress", "completed", "cancelled", "incomplete", "failed"] = "in_progress"
    status_reason: str | None = None
    error: dict[str, Json] | None = None
    output: list[Item] = attrs.Factory(list)
    usage: Usage | None = None
    conversation_id: str | None = None
    modalities: tuple[str, ...] = ("text",)
    voice: str | None = None
    output_audio_format: str = "pcm16"
    temperature: float | None = None
    max_output_tokens: int | Literal["inf"] = "inf"
    metadata: dict[str, str] | None = None


@attrs.frozen
class ErrorInfo:
    type: str
    code: str | None
    message: str
    param: str | None = None
    event_id: str | None = None


# ---------------------------------------------------------------- server events
# WIRE = (beta name, GA name); None means the event does not exist in that dialect and is not sent.


@attrs.frozen
class SessionCreated:
    WIRE: ClassVar[tuple[str | None, str | None]] = ("session.created", "session.created")
    session: Any  # relay.session_config.SessionConfig, rendered per dialect


@attrs.frozen
class SessionUpdated:
    WIRE: ClassVar[tuple[str | None, str | None]] = ("session.updated", "session.updated")
    session: Any
    # Not an OpenAI field (clients ignore unknown keys): says which changes wait for the next
    # upstream connection, since Gemini fixes its config at setup.
    notice: str | None = attrs.field(default=None, metadata={"omit_if_none": True})


@attrs.frozen
class TranscriptionSessionCreated:
    """A transcription session's first event: beta names it apart, GA sends `session.created` with
    `session.type: "transcription"`."""

    WIRE: ClassVar[tuple[str | None, str | None]] = ("transcription_session.created", "session.created")
    session: Any


@attrs.frozen
class TranscriptionSessionUpdated:
    WIRE: ClassVar[tuple[str | None, str | None]] = ("transcription_session.updated", "session.updated")
    session: Any


@attrs.frozen
class ConversationItemAdded:
    WIRE: ClassVar[tuple[str | None, str | None]] = ("conversation.item.created", "conversation.item.added")
    item: Item
    previous_item_id: str | None = None


@attrs.frozen
class ConversationItemDone:
    WIRE: ClassVar[tuple[str | None, str | None]] = (None, "conversation.item.done")
    item: Item
    previous_item_id: str | None = None


@attrs.frozen
class ConversationItemRetrieved:
    WIRE: ClassVar[tuple[str | None, str | None]] = ("conversation.item.retrieved", "conversation.item.retrieved")
    item: Item


@attrs.frozen
class ConversationItemDeleted:
    WIRE: ClassVar[tuple[str | None, str | None]] = ("conversation.item.deleted", "conversation.item.deleted")
    item_id: str


@attrs.frozen
class ConversationItemTruncated:
    WIRE: ClassVar[tuple[str | None, str | None]] = ("conversation.item.truncated", "conversation.item.truncated")
    item_id: str
    content_index: int
    audio_end_ms: int


@attrs.frozen
class ResponseCreated:
    WIRE: ClassVar[tuple[str | None, str | None]] = ("response.created", "response.created")
    response: Response


@attrs.frozen
class ResponseDone:
    WIRE: ClassVar[tuple[str | None, str | None]] = ("response.done", "response.done")
    response: Response


@attrs.frozen
class OutputItemAdded:
    WIRE: ClassVar[tuple[str | None, str | None]] = ("response.output_item.added", "response.output_item.added")
    response_id: str
    output_index: int
    item: Item


@attrs.frozen
class OutputItemDone:
    WIRE: ClassVar[tuple[str | None, str | None]] = ("response.output_item.done", "response.output_item.done")
    response_id: str
    output_index: int
    item: Item


@attrs.frozen
class _PartEvent:
    """Fields shared by every event about one content part of one response item."""

    response_id: str
    item_id: str
    output_index: int
    content_index: int


@attrs.frozen
class ContentPartAdded(_PartEvent):
    WIRE: ClassVar[tuple[str | None, str | None]] = ("response.content_part.added", "response.content_part.added")
    part: ContentPart


@attrs.frozen
class ContentPartDone(_PartEvent):
    WIRE: ClassVar[tuple[str | None, str | None]] = ("response.content_part.done", "response.content_part.done")
    part: ContentPart


@attrs.frozen
class TextDelta(_PartEvent):
    WIRE: ClassVar[tuple[str | None, str | None]] = ("response.text.delta", "response.output_text.delta")
    delta: str


@attrs.frozen
class TextDone(_PartEvent):
    WIRE: ClassVar[tuple[str | None, str | None]] = ("response.text.done", "response.output_text.done")
    text: str


@attrs.frozen
class AudioDelta(_PartEvent):
    WIRE: ClassVar[tuple[str | None, str | None]] = ("response.audio.delta", "response.output_audio.delta")
    delta: str


@attrs.frozen
class AudioDone(_PartEvent):
    WIRE: ClassVar[tuple[str | None, str | None]] = ("response.audio.done", "response.output_audio.done")


@attrs.frozen
class AudioTranscriptDelta(_PartEvent):
    WIRE: ClassVar[tuple[str | None, str | None]] = (
        "response.audio_transcript.delta",
        "response.output_audio_transcript.delta",
    )
    delta: str


@attrs.frozen
class AudioTranscriptDone(_PartEvent):
    WIRE: ClassVar[tuple[str | None, str | None]] = (
        "response.audio_transcript.done",
        "response.output_audio_transcript.done",
    )
    transcript: str


@attrs.frozen
class FunctionCallArgumentsDelta:
    WIRE: ClassVar[tuple[str | None, str | None]] = (
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
    )
    response_id: str
    item_id: str
    output_index: int
    call_id: str
    delta: str


@attrs.frozen
class FunctionCallArgumentsDone:
    WIRE: ClassVar[tuple[str | None, str | None]] = (
        "response.function_call_arguments.done",
        "response.function_call_arguments.done",
    )
    response_id: str
    item_id: str
    output_index: int
    call_id: str
    name: str  # required in GA, accepted in beta
    arguments: str


@attrs.frozen
class InputAudioBufferCommitted:
    WIRE: ClassVar[tuple[str | None, str | None]] = ("input_audio_buffer.committed", "input_audio_buffer.committed")
    item_id: str
    previous_item_id: str | None = None


@attrs.frozen
class InputAudioBufferCleared:
    WIRE: ClassVar[tuple[str | None, str | None]] = ("input_audio_buffer.cleared", "input_audio_buffer.cleared")


@attrs.frozen
class SpeechStarted:
    WIRE: ClassVar[tuple[str | None, str | None]] = (
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_started",
    )
    audio_start_ms: int
    item_id: str


@attrs.frozen
class InputAudioBufferTimeoutTriggered:
    """GA only: `idle_timeout_ms` passed with no speech after a response."""

    WIRE: ClassVar[tuple[str | None, str | None]] = (None, "input_audio_buffer.timeout_triggered")
    audio_start_ms: int
    audio_end_ms: int
    item_id: str


@attrs.frozen
class SpeechStopped:
    WIRE: ClassVar[tuple[str | None, str | None]] = (
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.speech_stopped",
    )
    audio_end_ms: int
    item_id: str


@attrs.frozen
class InputTranscriptionDelta:
    WIRE: ClassVar[tuple[str | None, str | None]] = (
        "conversation.item.input_audio_transcription.delta",
        "conversation.item.input_audio_transcription.delta",
    )
    item_id: str
    content_index: int
    delta: str


@attrs.frozen
class InputTranscriptionFailed:
    WIRE: ClassVar[tuple[str | None, str | None]] = (
        "conversation.item.input_audio_transcription.failed",
        "conversation.item.input_audio_transcription.failed",
    )
    item_id: str
    content_index: int
    error: dict[str, Any]


@attrs.frozen
class InputTranscriptionCompleted:
    WIRE: ClassVar[tuple[str | None, str | None]] = (
        "conversation.item.input_audio_transcription.completed",
        "conversation.item.input_audio_transcription.completed",
    )
    item_id: str
    content_index: int
    transcript: str
    usage: dict[str, Any]


@attrs.frozen
class ErrorEvent:
    WIRE: ClassVar[tuple[str | None, str | None]] = ("error", "error")
    error: ErrorInfo


ServerEvent = Any  # any class above with a WIRE attribute
