"""The upstream `setup` message, built from the effective OpenAI session (protocols.md 3.4)."""

from __future__ import annotations

from typing import Any

from relay.models import ModelCaps
from relay.session_config import SessionConfig
from relay.translate.tools import declarations

# OpenAI voice names → Gemini prebuilt voices (the same choices LiteLLM made); others pass through.
VOICES = {
    "alloy": "Zephyr",
    "ash": "Charon",
    "ballad": "Fenrir",
    "cedar": "Charon",
    "coral": "Aoede",
    "echo": "Puck",
    "marin": "Aoede",
    "sage": "Kore",
    "shimmer": "Leda",
    "verse": "Orus",
}


def upstream_modality(modalities: tuple[str, ...], caps: ModelCaps) -> str:
    if "audio" in modalities or not caps.text_output:
        return "AUDIO"
    return "TEXT"


def _activity_detection(td: dict[str, Any] | None) -> dict[str, Any]:
    if td is None:
        return {"automaticActivityDetection": {"disabled": True}}
    aad: dict[str, Any] = {"disabled": False}
    if td.get("type") == "semantic_vad":
        eagerness = td.get("eagerness")
        if eagerness == "high":
            aad["endOfSpeechSensitivity"] = "END_SENSITIVITY_HIGH"
        elif eagerness == "low":
            aad["endOfSpeechSensitivity"] = "END_SENSITIVITY_LOW"
    else:
        threshold = td.get("threshold")
        if isinstance(threshold, (int, float)):
            if threshold >= 0.6:
                aad["startOfSpeechSensitivity"] = "START_SENSITIVITY_LOW"
            elif threshold <= 0.4:
                aad["startOfSpeechSensitivity"] = "START_SENSITIVITY_HIGH"
        if isinstance(td.get("prefix_padding_ms"), int):
            aad["prefixPaddingMs"] = td["prefix_padding_ms"]
        if isinstance(td.get("silence_duration_ms"), int):
            aad["silenceDurationMs"] = td["silence_duration_ms"]
    out: dict[str, Any] = {"automaticActivityDetection": aad}
    if td.get("interrupt_response") is False:
        out["activityHandling"] = "NO_INTERRUPTION"
    return out


def build_setup(
    cfg: SessionConfig, caps: ModelCaps, extra_system: list[str] = (), warnings: list[str] | None = None
) -> dict[str, Any]:
    """A `setup` without `model`: the upstream layer owns the model path (project, location).
    What could not be mapped is appended to `warnings`."""
    modality = upstream_modality(cfg.modalities, caps)
    gen: dict[str, Any] = {"responseModalities": [modality], "temperature": cfg.temperature}
    if cfg.max_output_tokens != "inf":
        gen["maxOutputTokens"] = cfg.max_output_tokens
    setup: dict[str, Any] = {"generationConfig": gen}
    if modality == "AUDIO":
        voice = VOICES.get(cfg.voice, cfg.voice)
        gen["speechConfig"] = {"voiceConfig": {"prebuiltVoiceConfig": {"voiceName": voice}}}
        # OpenAI audio always comes with a transcript; Gemini only sends one when asked.
        setup["outputAudioTranscription"] = {}
    system = "\n\n".join(t for t in (cfg.instructions, *extra_system) if t)
    if system:
        setup["systemInstruction"] = {"role": "user", "parts": [{"text": system}]}
    setup["realtimeInputConfig"] = _activity_detection(cfg.turn_detection)
    tr = cfg.input_audio_transcription
    if tr is not None:
        spec: dict[str, Any] = {}
        if isinstance(tr.get("language"), str) and tr["language"]:
            spec["languageCodes"] = [tr["language"]]
        setup["inputAudioTranscription"] = spec
    if cfg.tools and cfg.tool_choice != "none":
        decls, dropped = declarations(cfg.tools)
        if decls:
            setup["tools"] = [{"functionDeclarations": decls}]
        if warnings is not None:
            warnings.extend(dropped)
            if cfg.tool_choice not in ("auto", None):
                # Live has no toolConfig: 'required' or a named function cannot be enforced.
                warnings.append(f"tool_choice {cfg.tool_choice!r} cannot be enforced by Gemini Live; it acts as 'auto'")
    return {"setup": setup}
