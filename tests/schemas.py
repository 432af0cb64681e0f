"""Validation against the official SDKs' schemas (test dependencies only).

OpenAI server events are validated in pydantic strict mode against the `openai` SDK's unions for
the dialect; upstream messages against `google.genai.types.LiveClientMessage` (extra fields forbidden).
"""

from __future__ import annotations

from typing import Any, Literal, Optional

import pydantic
from google.genai import types as gtypes
from openai.types.beta.realtime.realtime_server_event import RealtimeServerEvent as BetaServerEvent
from openai.types.beta.realtime.transcription_session import ClientSecret, TranscriptionSession
from openai.types.realtime.realtime_server_event import RealtimeServerEvent as GAServerEvent
from openai.types.realtime.realtime_session_create_request import RealtimeSessionCreateRequest
from openai.types.realtime.realtime_transcription_session_create_request import (
    RealtimeTranscriptionSessionCreateRequest,
)
from openai.types.realtime.realtime_translation_server_event import (
    RealtimeTranslationServerEvent as TranslationServerEvent,
)


class _SocketTranscriptionSession(TranscriptionSession):
    # The SDK requires `client_secret`, yet its docstring says it "is not present when a session is updated via
    # the WebSocket API": over the socket it is null.
    client_secret: Optional[ClientSecret] = None  # noqa: UP045 - pydantic reads the annotation at runtime


class _BetaTranscriptionSessionEvent(pydantic.BaseModel):
    # The beta union has `transcription_session.updated` but not `.created`, which OpenAI sends first on
    # `?intent=transcription` (its OpenAPI spec's RealtimeBetaServerEventTranscriptionSessionCreated): both are
    # checked here, with the SDK's session model.
    event_id: str
    type: Literal["transcription_session.created", "transcription_session.updated"]
    session: _SocketTranscriptionSession


_ADAPTERS = {
    "beta": pydantic.TypeAdapter(BetaServerEvent),
    "ga": pydantic.TypeAdapter(GAServerEvent),
    "translation": pydantic.TypeAdapter(TranslationServerEvent),
}


def validate_openai(event: dict[str, Any], dialect: str) -> None:
    """Raise if `event` is not a valid server event of `dialect` ("beta", "ga", "both", or "translation": the
    translation socket's union)."""
    for d in ("beta", "ga") if dialect == "both" else (dialect,):
        try:
            if d == "beta" and event.get("type", "").startswith("transcription_session."):
                _BetaTranscriptionSessionEvent.model_validate(event, strict=True)
            else:
                _ADAPTERS[d].validate_python(event, strict=True)
        except pydantic.ValidationError as exc:
            raise AssertionError(f"{event.get('type')} is not a valid {d} server event: {exc}\n{event}") from None
        if d == "ga" and event.get("type") in ("session.created", "session.updated"):
            # the GA union takes a transcription session for a realtime one (every field is optional): the type
            # decides which model it must be
            session = event["session"]
            model = RealtimeTranscriptionSessionCreateRequest if session.get("type") == "transcription" \
                else RealtimeSessionCreateRequest
            try:
                model.model_validate(session, strict=True)
            except pydantic.ValidationError as exc:
                raise AssertionError(f"{event['type']}: not a valid {model.__name__}: {exc}\n{event}") from None


# Setup fields the SDK itself puts on the wire (google/genai/_live_converters.py maps
# LiveConnectConfig.realtime_input_config to setup.realtimeInputConfig) but that its LiveClientSetup
# model does not declare; they are validated against their own model instead.
_SETUP_FIELDS_OUTSIDE_MODEL = {"realtimeInputConfig": gtypes.RealtimeInputConfig}


def validate_gemini(message: dict[str, Any]) -> None:
    """Raise if `message` is not a valid Gemini Live client message."""
    try:
        if "setup" in message:
            setup = dict(message["setup"])
            for key, model in _SETUP_FIELDS_OUTSIDE_MODEL.items():
                if key in setup:
                    model.model_validate(setup.pop(key))
            message = {**message, "setup": setup}
        gtypes.LiveClientMessage.model_validate(message)
    except pydantic.ValidationError as exc:
        raise AssertionError(f"not a valid LiveClientMessage: {exc}\n{message}") from None
