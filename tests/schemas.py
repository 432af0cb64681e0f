"""Validation against the official SDKs' schemas (test dependencies only).

OpenAI server events are validated in pydantic strict mode against the `openai` SDK's unions for
the dialect; upstream messages against `google.genai.types.LiveClientMessage` (extra fields forbidden).
"""

from __future__ import annotations

from typing import Any

import pydantic
from google.genai import types as gtypes
from openai.types.beta.realtime.realtime_server_event import RealtimeServerEvent as BetaServerEvent
from openai.types.realtime.realtime_server_event import RealtimeServerEvent as GAServerEvent

_ADAPTERS = {
    "beta": pydantic.TypeAdapter(BetaServerEvent),
    "ga": pydantic.TypeAdapter(GAServerEvent),
}


def validate_openai(event: dict[str, Any], dialect: str) -> None:
    """Raise if `event` is not a valid server event of `dialect` ("beta", "ga", or "both")."""
    for d in ("beta", "ga") if dialect == "both" else (dialect,):
        try:
            _ADAPTERS[d].validate_python(event, strict=True)
        except pydantic.ValidationError as exc:
            raise AssertionError(f"{event.get('type')} is not a valid {d} server event: {exc}\n{event}") from None


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
