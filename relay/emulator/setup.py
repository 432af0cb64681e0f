"""The ``setup`` message of the Gemini Live emulator: what it honours and how it validates it.

What depends on the model is asked of its row in ``models.py``; what depends on the backend is here.
"""

from __future__ import annotations

from typing import Any

import attrs

from .audio import InputSettings, parse_input_settings
from .context import Compression, parse_compression
from .models import LEGACY, ModelRules, rules_for
from .tools import declared_functions
from .wire import INVALID_ARGUMENT, Backend, ProtocolError, voice_tone_hz

__all__ = ["SessionConfig", "parse_setup"]


@attrs.define
class SessionConfig:
    """The parts of ``setup`` the emulator honours (keys already camelCased)."""

    model: str
    modality: str
    system_instruction: Any = None
    max_output_tokens: int | None = None
    input_transcription: bool = False
    output_transcription: bool = False
    # Kept verbatim as well as parsed, for anything that wants to look at the raw request.
    realtime_input_config: dict[str, Any] = attrs.Factory(dict)
    input_settings: InputSettings = attrs.Factory(InputSettings)
    voice: str | None = None
    tone_hz: int = voice_tone_hz(None)
    # ``sessionResumption`` as sent (None: no handles), and its parts the emulator acts on.
    resumption: dict[str, Any] | None = None
    resume_handle: str | None = None
    transparent: bool = False
    compression: Compression | None = None
    # Declared functions, name → parameters schema; ``contextUpdate`` may replace them.
    functions: dict[str, dict[str, Any]] = attrs.Factory(dict)
    # Those of them whose calls run NON_BLOCKING on this model (the model talks on meanwhile).
    non_blocking: frozenset[str] = frozenset()
    # The model's row, and whether the setup turned thinking on (replies start with a thought).
    rules: ModelRules = LEGACY
    thinking: bool = False
    # A translation model's ``translationConfig.targetLanguageCode`` (None: it has none, and
    # streams silence).
    target_language: str | None = None


def _dig(body: dict[str, Any], *keys: str) -> Any:
    """The value at a nested path, None where it stops; a non-object on the way is a 1007."""
    value: Any = body
    for key in keys:
        if value is None:
            return None
        if not isinstance(value, dict):
            raise ProtocolError.of(INVALID_ARGUMENT)
        value = value.get(key)
    return value


def _check_backend(body: dict[str, Any], ric: dict[str, Any], backend: Backend) -> None:
    """Fields only one of the two APIs has (protocols.md 2.2; the SDK's converters raise on them)."""
    if backend is Backend.VERTEX and "labels" in body:
        raise ProtocolError.of(INVALID_ARGUMENT)
    # The SDK sends explicitVadSignal at the top of setup; it is also refused inside realtimeInputConfig.
    vertex_only = "explicitVadSignal" in body or "explicitVadSignal" in ric
    if backend is Backend.STUDIO and (vertex_only or _dig(body, "sessionResumption", "transparent")):
        raise ProtocolError.of(INVALID_ARGUMENT)


def _transcriptions(body: dict[str, Any], rules: ModelRules) -> tuple[bool, bool]:
    """(input, output) transcription: as set up for a conversation; a transcription model's answer
    is the transcript already, so it sends neither; a translation model always transcribes what it
    says, and what it hears when asked to."""
    asked_input = body.get("inputAudioTranscription") is not None
    asked_output = body.get("outputAudioTranscription") is not None
    if rules.kind == "transcription":
        return False, False
    if rules.kind == "translation":
        return asked_input, True
    return asked_input, asked_output


def parse_setup(body: Any, backend: Backend) -> SessionConfig:
    """Validate a normalized ``setup`` body on ``backend``; raise ProtocolError(1007) like the service does."""
    if not isinstance(body, dict):
        raise ProtocolError.of(INVALID_ARGUMENT)
    model = body.get("model")
    gen = body.get("generationConfig") or {}
    if not isinstance(model, str) or not model or not isinstance(gen, dict):
        raise ProtocolError.of(INVALID_ARGUMENT)
    # Vertex defaults to AUDIO when absent (the SDK fills it in); the service wants exactly one.
    modalities = gen.get("responseModalities") or ["AUDIO"]
    if not isinstance(modalities, list) or len(modalities) != 1 or modalities[0] not in ("TEXT", "AUDIO"):
        raise ProtocolError.of(INVALID_ARGUMENT)
    max_tokens = gen.get("maxOutputTokens")
    if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int)):
        raise ProtocolError.of(INVALID_ARGUMENT)
    ric = body.get("realtimeInputConfig") or {}
    resumption = body.get("sessionResumption")
    if not isinstance(ric, dict) or not isinstance(resumption, dict | None):
        raise ProtocolError.of(INVALID_ARGUMENT)
    voice = _dig(gen, "speechConfig", "voiceConfig", "prebuiltVoiceConfig", "voiceName")
    handle = _dig(body, "sessionResumption", "handle")
    transparent = _dig(body, "sessionResumption", "transparent")
    if not (isinstance(voice, str | None) and isinstance(handle, str | None) and isinstance(transparent, bool | None)):
        raise ProtocolError.of(INVALID_ARGUMENT)
    _check_backend(body, ric, backend)
    rules = rules_for(model)
    thinking = rules.check_setup(body, gen, modalities[0])
    input_transcription, output_transcription = _transcriptions(body, rules)
    return SessionConfig(
        model=model,
        modality=modalities[0],
        system_instruction=body.get("systemInstruction"),
        max_output_tokens=max_tokens,
        input_transcription=input_transcription,
        output_transcription=output_transcription,
        realtime_input_config=ric,
        input_settings=rules.input_settings(parse_input_settings(ric)),
        voice=voice,
        tone_hz=voice_tone_hz(voice),
        resumption=resumption,
        resume_handle=handle or None,
        transparent=bool(transparent),
        compression=parse_compression(body.get("contextWindowCompression")),
        functions=declared_functions(body),
        non_blocking=rules.non_blocking(body.get("tools")),
        rules=rules,
        thinking=thinking,
        target_language=rules.translation_target(gen),
    )
