"""Gemini Live server messages (BidiGenerateContent), one attrs class per wire object.

Field names are snake_case here and camelCase on the wire; `relay.codec_gemini` converts.  One
message may carry several top-level keys at once (e.g. the last `serverContent` with
`usageMetadata`), so `ServerMessage` has one optional field per key rather than a tagged union.
Messages the relay sends upstream are plain dicts built by `relay.translate.setup`/`turns` and are
validated against `google.genai.types.LiveClientMessage` in the tests.
"""

from __future__ import annotations

from typing import Any

import attrs


@attrs.define(slots=True)
class Blob:
    mime_type: str | None = None
    data: str | None = None


@attrs.define(slots=True)
class Part:
    text: str | None = None
    thought: bool | None = None
    inline_data: Blob | None = None


@attrs.define(slots=True)
class Content:
    role: str | None = None
    parts: list[Part] | None = None


@attrs.define(slots=True)
class Transcription:
    text: str | None = None
    finished: bool | None = None


@attrs.define(slots=True)
class ServerContent:
    model_turn: Content | None = None
    turn_complete: bool | None = None
    generation_complete: bool | None = None
    interrupted: bool | None = None
    input_transcription: Transcription | None = None
    output_transcription: Transcription | None = None
    turn_complete_reason: str | None = None
    waiting_for_input: bool | None = None
    # IN_PROGRESS | REQUIRES_ACTION | IDLE, "always sent alongside turn_complete" where the model reports it.
    interaction_status: str | None = None


@attrs.define(slots=True)
class ModalityTokenCount:
    modality: str | None = None
    token_count: int | None = None


@attrs.define(slots=True)
class UsageMetadata:
    prompt_token_count: int | None = None
    cached_content_token_count: int | None = None
    response_token_count: int | None = None
    candidates_token_count: int | None = None  # Vertex's name for responseTokenCount
    tool_use_prompt_token_count: int | None = None
    thoughts_token_count: int | None = None
    total_token_count: int | None = None
    prompt_tokens_details: list[ModalityTokenCount] | None = None
    response_tokens_details: list[ModalityTokenCount] | None = None
    candidates_tokens_details: list[ModalityTokenCount] | None = None


@attrs.define(slots=True)
class FunctionCall:
    id: str | None = None
    name: str | None = None
    args: dict[str, Any] | None = None


@attrs.define(slots=True)
class ToolCall:
    function_calls: list[FunctionCall] | None = None


@attrs.define(slots=True)
class ToolCallCancellation:
    ids: list[str] | None = None


@attrs.define(slots=True)
class GoAway:
    time_left: str | None = None


@attrs.define(slots=True)
class SessionResumptionUpdate:
    new_handle: str | None = None
    resumable: bool | None = None
    last_consumed_client_message_index: str | None = None


@attrs.define(slots=True)
class VoiceActivity:
    voice_activity_type: str | None = None


@attrs.define(slots=True)
class SetupComplete:
    session_id: str | None = None


@attrs.define(slots=True)
class ServerMessage:
    setup_complete: SetupComplete | None = None
    server_content: ServerContent | None = None
    usage_metadata: UsageMetadata | None = None
    tool_call: ToolCall | None = None
    tool_call_cancellation: ToolCallCancellation | None = None
    go_away: GoAway | None = None
    session_resumption_update: SessionResumptionUpdate | None = None
    voice_activity: VoiceActivity | None = None
