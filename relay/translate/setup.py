"""The upstream `setup` message, built from the effective OpenAI session (protocols.md 3.4)."""

from __future__ import annotations

from typing import Any

from relay.models import GeminiOptions, ModelCaps
from relay.session_config import SessionConfig, voice_name
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


NO_OPTIONS = GeminiOptions()
# A relay extension in session tools: Gemini's own Google Search grounding.
GOOGLE_SEARCH = "google_search"

# OpenAI `reasoning.effort` → Gemini thinking, for rows that take it.  Budgets: 2.5 Flash spans 0-24,576 tokens.
_EFFORT_LEVEL = {"minimal": "MINIMAL", "low": "LOW", "medium": "MEDIUM", "high": "HIGH", "xhigh": "HIGH"}
_EFFORT_BUDGET = {"minimal": 0, "low": 1024, "medium": 8192, "high": 16384, "xhigh": 24576}


def thinking_config(cfg: SessionConfig, caps: ModelCaps, options: GeminiOptions = NO_OPTIONS) -> dict[str, Any] | None:
    """`generationConfig.thinkingConfig` for the session's `reasoning.effort` as the model takes it, or None.

    3.8 Live rejects any thinkingConfig; extended thinking requires a level (low, medium or high: minimal is
    refused, so it becomes low); 3.1 takes a level; 2.5 native audio a budget."""
    reasoning = cfg.kept.get("reasoning")
    effort = reasoning.get("effort") if isinstance(reasoning, dict) else None
    thinking = _thinking(caps, effort, options)
    if thinking is not None and options.include_thoughts:
        thinking["includeThoughts"] = True
    return thinking


def _thinking(caps: ModelCaps, effort: Any, options: GeminiOptions) -> dict[str, Any] | None:
    configured = options.thinking_level.upper() if options.thinking_level else None
    if caps.thinking == "level_required":
        level = _EFFORT_LEVEL.get(effort, configured or "LOW") if isinstance(effort, str) else configured or "LOW"
        if caps.thinking_levels and level not in caps.thinking_levels:
            level = min(caps.thinking_levels, key=lambda name: abs(_LEVELS.index(name) - _LEVELS.index(level)))
        return {"thinkingLevel": level}
    if not isinstance(effort, str) or effort not in _EFFORT_LEVEL:
        if caps.thinking == "level" and configured:
            return {"thinkingLevel": configured}
        if caps.thinking == "budget" and options.thinking_budget is not None:
            return {"thinkingBudget": options.thinking_budget}
        return None
    if caps.thinking == "level":
        level = _EFFORT_LEVEL[effort]
        return {"thinkingLevel": level if level in caps.thinking_levels or not caps.thinking_levels
                else caps.thinking_levels[-1]}
    if caps.thinking == "budget":
        return {"thinkingBudget": _EFFORT_BUDGET[effort]}
    return None


_LEVELS = ("MINIMAL", "LOW", "MEDIUM", "HIGH")


def compression_for_truncation(truncation: Any) -> dict[str, int] | bool | None:
    """Gemini's nearest knob for OpenAI's `truncation` (GA session field): "disabled" means no compression,
    "auto" and a retention ratio mean compression (with the ratio's token limit as trigger and the ratio of it as
    target, when given); None when the session says nothing."""
    if truncation == "disabled":
        return False
    if truncation == "auto":
        return True
    if isinstance(truncation, dict) and truncation.get("type") == "retention_ratio":
        limits = truncation.get("token_limits")
        limit = limits.get("post_instructions") if isinstance(limits, dict) else None
        ratio = truncation.get("retention_ratio")
        if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0:
            out = {"trigger_tokens": limit}
            if isinstance(ratio, int | float) and not isinstance(ratio, bool) and 0 < ratio < 1:
                out["target_tokens"] = max(1, int(limit * ratio))
            return out
        return True
    return None


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
    cfg: SessionConfig, caps: ModelCaps, extra_system: list[str] = (), warnings: list[str] | None = None,
    options: GeminiOptions = NO_OPTIONS,
) -> dict[str, Any]:
    """A `setup` without `model`: the upstream layer owns the model path (project, location).
    What could not be mapped is appended to `warnings`."""
    modality = upstream_modality(cfg.modalities, caps)
    gen: dict[str, Any] = {"responseModalities": [modality], "temperature": cfg.temperature}
    if cfg.max_output_tokens != "inf":
        gen["maxOutputTokens"] = cfg.max_output_tokens
    thinking = thinking_config(cfg, caps, options)
    if thinking is not None:
        gen["thinkingConfig"] = thinking
    if options.affective_dialog and caps.affective_dialog:
        gen["enableAffectiveDialog"] = True
    if options.media_resolution:
        gen["mediaResolution"] = "MEDIA_RESOLUTION_" + options.media_resolution.upper()
    setup: dict[str, Any] = {"generationConfig": gen}
    if modality == "AUDIO":
        # A custom OpenAI voice ({"id": "voice_..."}) has no Gemini twin: the default voice speaks, unless the
        # id names a Gemini voice.
        name = voice_name(cfg.voice)
        if not isinstance(cfg.voice, str) and name.startswith("voice_"):
            name = "alloy"
        voice = VOICES.get(name, name)
        gen["speechConfig"] = {"voiceConfig": {"prebuiltVoiceConfig": {"voiceName": voice}}}
        if options.language_code:
            gen["speechConfig"]["languageCode"] = options.language_code
        # OpenAI audio always comes with a transcript; Gemini only sends one when asked.
        setup["outputAudioTranscription"] = {}
    system = "\n\n".join(t for t in (cfg.instructions, *extra_system) if t)
    if system:
        setup["systemInstruction"] = {"role": "user", "parts": [{"text": system}]}
    setup["realtimeInputConfig"] = _activity_detection(cfg.turn_detection)
    if options.proactive_audio and caps.proactive_audio == "optional":
        setup["proactivity"] = {"proactiveAudio": True}
    tr = cfg.input_audio_transcription
    if tr is not None and not caps.input_transcription and warnings is not None:
        warnings.append(f"{caps.family} has no input transcription; input_audio_transcription has no effect")
    if tr is not None and caps.input_transcription:
        spec: dict[str, Any] = {}
        if isinstance(tr.get("language"), str) and tr["language"]:
            spec["languageCodes"] = [tr["language"]]
        setup["inputAudioTranscription"] = spec
    if cfg.tools and cfg.tool_choice != "none":
        decls, dropped = declarations(cfg.tools)
        search = any(isinstance(t, dict) and t.get("type") == GOOGLE_SEARCH for t in cfg.tools)
        if caps.function_behavior == "non_blocking_default":
            # 3.8 runs calls asynchronously unless told: the OpenAI flow (call, output, response.create) blocks.
            for decl in decls:
                decl["behavior"] = "BLOCKING"
        elif caps.function_behavior == "non_blocking_only":
            decls = []  # refused at session.update; a config override may still have left some here
        tools: list[dict[str, Any]] = [{"functionDeclarations": decls}] if decls else []
        if search:
            tools.append({"googleSearch": {}})
        if tools:
            setup["tools"] = tools
        if warnings is not None:
            warnings.extend(dropped)
            if cfg.tool_choice not in ("auto", None):
                # Live has no toolConfig: 'required' or a named function cannot be enforced.
                warnings.append(f"tool_choice {cfg.tool_choice!r} cannot be enforced by Gemini Live; it acts as 'auto'")
    return {"setup": setup}


def build_transcription_setup(cfg: SessionConfig, caps: ModelCaps) -> dict[str, Any]:
    """The `setup` of a transcription session: input transcription on, turn detection as the session says,
    nothing to say.  A transcription model answers in text; any other Live model is asked to stay silent (its
    replies are dropped: relay.translate.transcription)."""
    gen: dict[str, Any] = {"responseModalities": ["TEXT" if caps.text_output else "AUDIO"]}
    setup: dict[str, Any] = {"generationConfig": gen, "realtimeInputConfig": _activity_detection(cfg.turn_detection)}
    spec: dict[str, Any] = {}
    tr = cfg.input_audio_transcription
    if isinstance(tr, dict) and isinstance(tr.get("language"), str) and tr["language"]:
        spec["languageCodes"] = [tr["language"]]
    setup["inputAudioTranscription"] = spec
    if caps.kind != "transcription":
        setup["systemInstruction"] = {"role": "user", "parts": [{"text": STAY_SILENT}]}
    return {"setup": setup}


STAY_SILENT = ("You are a speech-to-text service. Do not answer, comment on or reply to anything you hear; "
               "say nothing at all.")
