"""The effective OpenAI session of one connection: updated by beta or GA `session.update` patches,
rendered back in either dialect (the beta session object and the GA one, as the openai-python SDK types them:
`openai.types.beta.realtime.Session` and `openai.types.realtime.RealtimeSessionCreateRequest`).

Fields with no Gemini equivalent (`tracing`, `include`, `prompt`, `speed`, `truncation`, noise
reduction, a transcription model name, …) are accepted and kept so every `session.updated` echoes them.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import attrs

from relay.errors import ClientError, invalid_type, invalid_value

Dialect = Literal["beta", "ga"]

AUDIO_FORMATS = ("pcm16", "g711_ulaw", "g711_alaw")
GA_FORMATS = {
    "pcm16": {"type": "audio/pcm", "rate": 24000},
    "g711_ulaw": {"type": "audio/pcmu"},
    "g711_alaw": {"type": "audio/pcma"},
}
_FORMAT_FROM_GA = {"audio/pcm": "pcm16", "audio/pcmu": "g711_ulaw", "audio/pcma": "g711_alaw"}

DEFAULT_TURN_DETECTION: dict[str, Any] = {
    "type": "server_vad",
    "threshold": 0.5,
    "prefix_padding_ms": 300,
    "silence_duration_ms": 200,
    "create_response": True,
    "interrupt_response": True,
}

# Keys either dialect may send that we keep verbatim and echo back; they do not reach Gemini.
_KEPT = ("tracing", "include", "prompt", "truncation", "reasoning", "parallel_tool_calls", "client_secret")


@attrs.define
class SessionConfig:
    id: str
    type: str = "realtime"  # or "transcription": the session kind (relay.translate.transcription)
    instructions: str = ""
    modalities: tuple[str, ...] = ("text", "audio")
    voice: str | dict[str, Any] = "alloy"  # a name, or (GA, 2026) a custom voice object {"id": ...}
    input_audio_format: str = "pcm16"
    output_audio_format: str = "pcm16"
    input_audio_transcription: dict[str, Any] | None = None
    input_audio_noise_reduction: dict[str, Any] | None = None
    turn_detection: dict[str, Any] | None = attrs.Factory(lambda: dict(DEFAULT_TURN_DETECTION))
    tools: list[dict[str, Any]] = attrs.Factory(list)
    tool_choice: Any = "auto"
    temperature: float = 0.8
    max_output_tokens: int | Literal["inf"] = "inf"
    speed: float = 1.0
    kept: dict[str, Any] = attrs.Factory(dict)


def voice_name(voice: str | dict[str, Any]) -> str:
    return voice if isinstance(voice, str) else str(voice["id"])


def _voice(value: Any, param: str) -> str | dict[str, Any]:
    if isinstance(value, dict):
        if not isinstance(value.get("id"), str) or not value["id"]:
            raise ClientError("missing_required_parameter", f"Missing required parameter: '{param}.id'.", f"{param}.id")
        return dict(value)
    return _expect(value, str, param, "a string")


def _openai_tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The session's tools as OpenAI's schema has them: relay extensions (`google_search`) are honoured but not
    echoed, so that clients validating `session.updated` against the SDK's types accept it."""
    return [t for t in tools if t.get("type") != "google_search"]


# ---------------------------------------------------------------- reading patches


def _expect(value: Any, kinds: type | tuple[type, ...], param: str, expected: str) -> Any:
    # bool is an int in Python; OpenAI's schema does not accept true for a number.
    if isinstance(value, bool) and bool not in (kinds if isinstance(kinds, tuple) else (kinds,)):
        raise invalid_type(param, expected, value)
    if not isinstance(value, kinds):
        raise invalid_type(param, expected, value)
    return value


def _modalities(value: Any, param: str) -> tuple[str, ...]:
    _expect(value, list, param, "an array of strings")
    out = []
    for m in value:
        if m not in ("text", "audio"):
            raise invalid_value(param, m, ("text", "audio"))
        if m not in out:
            out.append(m)
    if not out:
        raise ClientError("invalid_value", f"'{param}' must not be empty.", param)
    return tuple(out)


def _max_tokens(value: Any, param: str) -> int | Literal["inf"]:
    if value == "inf" or value is None:
        return "inf"
    _expect(value, int, param, "an integer or 'inf'")
    if not 1 <= value <= 4096:
        raise ClientError(
            "invalid_value", f"Invalid '{param}': integer must be between 1 and 4096 or 'inf'.", param
        )
    return value


def _turn_detection(value: Any, param: str) -> dict[str, Any] | None:
    if value is None:
        return None
    _expect(value, dict, param, "an object or null")
    kind = value.get("type", "server_vad")
    if kind not in ("server_vad", "semantic_vad"):
        raise invalid_value(f"{param}.type", kind, ("server_vad", "semantic_vad"))
    td = dict(value)
    td["type"] = kind
    for key in ("threshold",):
        if key in td and td[key] is not None:
            _expect(td[key], (int, float), f"{param}.{key}", "a number")
    for key in ("prefix_padding_ms", "silence_duration_ms", "idle_timeout_ms"):
        if key in td and td[key] is not None:
            _expect(td[key], int, f"{param}.{key}", "an integer")
    for key in ("create_response", "interrupt_response"):
        if key in td and td[key] is not None:
            _expect(td[key], bool, f"{param}.{key}", "a boolean")
    return td


def _format(value: Any, param: str, ga: bool) -> str:
    if ga and isinstance(value, dict):
        kind = value.get("type")
        if kind not in _FORMAT_FROM_GA:
            raise invalid_value(f"{param}.type", kind, tuple(_FORMAT_FROM_GA))
        rate = value.get("rate", 24000)
        if kind == "audio/pcm" and rate != 24000:
            raise invalid_value(f"{param}.rate", rate, ("24000",))
        return _FORMAT_FROM_GA[kind]
    if value not in AUDIO_FORMATS:
        raise invalid_value(param, value, AUDIO_FORMATS)
    return value


# OpenAI's tool types (MCP is accepted and not offered to Gemini) and the relay's Google Search extension; another
# type would be echoed in session.updated, which the SDKs refuse to parse.
_TOOL_TYPES = ("function", "mcp", "google_search")


def _tools(value: Any, param: str) -> list[dict[str, Any]]:
    _expect(value, list, param, "an array")
    for i, tool in enumerate(value):
        _expect(tool, dict, f"{param}[{i}]", "an object")
        if tool.get("type", "function") not in _TOOL_TYPES:
            raise invalid_value(f"{param}[{i}].type", tool.get("type"), _TOOL_TYPES)
        if "name" in tool:
            _expect(tool["name"], str, f"{param}[{i}].name", "a string")
    return list(value)


def _object_or_null(value: Any, param: str) -> dict[str, Any] | None:
    if value is None:
        return None
    return dict(_expect(value, dict, param, "an object or null"))


def apply_beta(cfg: SessionConfig, patch: dict[str, Any], prefix: str = "session") -> None:
    """Apply a flat (beta-shaped) patch; also used for `response.create` overrides."""
    p = prefix
    # Validate everything before changing anything, so a bad patch leaves the session as it was.
    changes: dict[str, Any] = {}
    for key, value in patch.items():
        if key == "modalities":
            changes["modalities"] = _modalities(value, f"{p}.modalities")
        elif key == "instructions":
            changes["instructions"] = _expect(value, str, f"{p}.instructions", "a string")
        elif key == "voice":
            changes["voice"] = _voice(value, f"{p}.voice")
        elif key in ("input_audio_format", "output_audio_format"):
            changes[key] = _format(value, f"{p}.{key}", ga=False)
        elif key in ("input_audio_transcription", "input_audio_noise_reduction"):
            changes[key] = _object_or_null(value, f"{p}.{key}")
        elif key == "turn_detection":
            changes["turn_detection"] = _turn_detection(value, f"{p}.turn_detection")
        elif key == "tools":
            changes["tools"] = _tools(value, f"{p}.tools")
        elif key == "tool_choice":
            changes["tool_choice"] = _expect(value, (str, dict), f"{p}.tool_choice", "a string or object")
        elif key == "temperature":
            changes["temperature"] = float(_expect(value, (int, float), f"{p}.temperature", "a number"))
        elif key in ("max_response_output_tokens", "max_output_tokens"):
            changes["max_output_tokens"] = _max_tokens(value, f"{p}.{key}")
        elif key == "speed":
            changes["speed"] = float(_expect(value, (int, float), f"{p}.speed", "a number"))
        elif key in ("model", "type", "object", "id", "expires_at"):
            continue  # fixed for the connection
        else:
            changes.setdefault("kept", {})[key] = value
    _commit(cfg, changes)


def apply_ga(cfg: SessionConfig, patch: dict[str, Any], prefix: str = "session") -> None:
    """Apply a GA-shaped patch (`audio.input.*`, `output_modalities`, format objects)."""
    p = prefix
    kind = patch.get("type", "realtime")
    if kind not in ("realtime", "transcription"):
        raise invalid_value(f"{p}.type", kind, ("realtime", "transcription"))
    if kind == "transcription":
        apply_transcription_ga(cfg, patch, prefix)
        return
    flat: dict[str, Any] = {}
    for key, value in patch.items():
        if key == "output_modalities":
            mods = _modalities(value, f"{p}.output_modalities")
            flat["modalities"] = ["text", "audio"] if "audio" in mods else ["text"]
        elif key == "audio":
            _expect(value, dict, f"{p}.audio", "an object")
            inp = _object_or_null(value.get("input"), f"{p}.audio.input") or {}
            out = _object_or_null(value.get("output"), f"{p}.audio.output") or {}
            if "format" in inp:
                flat["input_audio_format"] = _format(inp["format"], f"{p}.audio.input.format", ga=True)
            if "transcription" in inp:
                flat["input_audio_transcription"] = inp["transcription"]
            if "noise_reduction" in inp:
                flat["input_audio_noise_reduction"] = inp["noise_reduction"]
            if "turn_detection" in inp:
                flat["turn_detection"] = inp["turn_detection"]
            if "format" in out:
                flat["output_audio_format"] = _format(out["format"], f"{p}.audio.output.format", ga=True)
            for key2 in ("voice", "speed"):
                if key2 in out:
                    flat[key2] = out[key2]
        else:
            flat[key] = value
    apply_beta(cfg, flat, prefix)


# ---------------------------------------------------------------- transcription sessions

TRANSCRIPTION_TURN_DETECTION: dict[str, Any] = {
    "type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300, "silence_duration_ms": 500,
}
_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")


def _transcription(value: Any, param: str) -> dict[str, Any] | None:
    """`{model, language, prompt}` (all optional), or null."""
    if value is None:
        return None
    _expect(value, dict, param, "an object or null")
    out = dict(value)
    for key in ("model", "prompt"):
        if out.get(key) is not None:
            _expect(out[key], str, f"{param}.{key}", "a string")
    language = out.get("language")
    if language is not None:
        _expect(language, str, f"{param}.language", "a string")
        if not _LANGUAGE.match(language):
            raise ClientError("invalid_value", f"Invalid 'language': '{language}' is not an ISO-639-1 (or BCP-47) "
                              "language code, such as 'en' or 'pt-BR'.", f"{param}.language")
    return out


def _transcription_turns(value: Any, param: str) -> dict[str, Any] | None:
    td = _turn_detection(value, param)
    if td is not None:
        # "Not available for transcription sessions": a transcription session never responds.
        td.pop("create_response", None)
        td.pop("interrupt_response", None)
    return td


def apply_transcription_beta(cfg: SessionConfig, patch: dict[str, Any], prefix: str = "session") -> None:
    """Apply a beta `transcription_session.update` patch (openai.types.beta.realtime.TranscriptionSessionUpdate)."""
    p = prefix
    changes: dict[str, Any] = {}
    for key, value in patch.items():
        if key == "input_audio_format":
            changes[key] = _format(value, f"{p}.{key}", ga=False)
        elif key == "input_audio_transcription":
            changes[key] = _transcription(value, f"{p}.{key}")
        elif key == "input_audio_noise_reduction":
            changes[key] = _object_or_null(value, f"{p}.{key}")
        elif key == "turn_detection":
            changes[key] = _transcription_turns(value, f"{p}.{key}")
        elif key == "modalities":
            _modalities(value, f"{p}.modalities")  # checked and echoed; a transcription session answers in text
            changes.setdefault("kept", {})[key] = list(value)
        elif key in ("include", "client_secret"):
            changes.setdefault("kept", {})[key] = value
        elif key in ("model", "type", "object", "id", "expires_at"):
            continue
        else:
            raise ClientError("unknown_parameter", f"Unknown parameter: '{p}.{key}'.", f"{p}.{key}")
    _commit(cfg, changes)


def apply_transcription_ga(cfg: SessionConfig, patch: dict[str, Any], prefix: str = "session") -> None:
    """Apply a GA `session.update` whose session is `type: "transcription"`
    (openai.types.realtime.RealtimeTranscriptionSessionCreateRequest: `audio.input.*` and `include`); errors name
    the GA parameter."""
    p = prefix
    changes: dict[str, Any] = {}
    for key, value in patch.items():
        if key == "audio":
            _expect(value, dict, f"{p}.audio", "an object")
            for part in value:
                if part != "input":
                    raise ClientError("unknown_parameter", f"Unknown parameter: '{p}.audio.{part}'.",
                                      f"{p}.audio.{part}")
            inp = _object_or_null(value.get("input"), f"{p}.audio.input") or {}
            at = f"{p}.audio.input"
            for name, field in inp.items():
                if name == "format":
                    changes["input_audio_format"] = _format(field, f"{at}.format", ga=True)
                elif name == "transcription":
                    changes["input_audio_transcription"] = _transcription(field, f"{at}.transcription")
                elif name == "noise_reduction":
                    changes["input_audio_noise_reduction"] = _object_or_null(field, f"{at}.noise_reduction")
                elif name == "turn_detection":
                    changes["turn_detection"] = _transcription_turns(field, f"{at}.turn_detection")
                else:
                    raise ClientError("unknown_parameter", f"Unknown parameter: '{at}.{name}'.", f"{at}.{name}")
        elif key == "include":
            changes.setdefault("kept", {})[key] = value
        elif key not in ("type", "model", "object", "id", "expires_at"):
            raise ClientError("unknown_parameter", f"Unknown parameter: '{p}.{key}'.", f"{p}.{key}")
    _commit(cfg, changes)


def become_transcription(cfg: SessionConfig) -> None:
    """Turn a realtime session (nothing done yet) into a transcription session with OpenAI's defaults."""
    cfg.type = "transcription"
    cfg.modalities = ("text",)
    cfg.turn_detection = dict(TRANSCRIPTION_TURN_DETECTION)


def become_realtime(cfg: SessionConfig) -> None:
    cfg.type = "realtime"
    cfg.modalities = ("text", "audio")
    cfg.turn_detection = dict(DEFAULT_TURN_DETECTION)


def _commit(cfg: SessionConfig, changes: dict[str, Any]) -> None:
    kept = changes.pop("kept", None)
    for key, value in changes.items():
        setattr(cfg, key, value)
    if kept:
        cfg.kept.update(kept)


# ---------------------------------------------------------------- rendering


def render_beta(cfg: SessionConfig) -> dict[str, Any]:
    # No `model`: beta's schema takes only OpenAI model names there (reference 1.5).
    out = {
        "id": cfg.id,
        "object": "realtime.session",
        "modalities": list(cfg.modalities),
        "instructions": cfg.instructions,
        "voice": voice_name(cfg.voice),  # beta has no voice objects
        "input_audio_format": cfg.input_audio_format,
        "output_audio_format": cfg.output_audio_format,
        "input_audio_transcription": cfg.input_audio_transcription,
        "input_audio_noise_reduction": cfg.input_audio_noise_reduction,
        "turn_detection": cfg.turn_detection,
        "tools": _openai_tools(cfg.tools),
        "tool_choice": cfg.tool_choice,
        "temperature": cfg.temperature,
        "max_response_output_tokens": cfg.max_output_tokens,
        "speed": cfg.speed,
        "tracing": None,
    }
    out.update(cfg.kept)
    return out


def render_ga(cfg: SessionConfig) -> dict[str, Any]:
    td = cfg.turn_detection
    if td is not None and td.get("type") == "server_vad":
        td = {"idle_timeout_ms": None, **td}
    out = {
        "type": "realtime",
        "object": "realtime.session",
        "id": cfg.id,
        "output_modalities": ["audio"] if "audio" in cfg.modalities else ["text"],
        "instructions": cfg.instructions,
        "tools": _openai_tools(cfg.tools),
        "tool_choice": cfg.tool_choice,
        "max_output_tokens": cfg.max_output_tokens,
        "tracing": None,
        "prompt": None,
        "include": None,
        "audio": {
            "input": {
                "format": GA_FORMATS[cfg.input_audio_format],
                "transcription": cfg.input_audio_transcription,
                "noise_reduction": cfg.input_audio_noise_reduction,
                "turn_detection": td,
            },
            "output": {"format": GA_FORMATS[cfg.output_audio_format], "voice": cfg.voice, "speed": cfg.speed},
        },
    }
    out.update(cfg.kept)
    return out


def render_neutral(cfg: SessionConfig) -> dict[str, Any]:
    """Before the dialect is known: a GA session object that also carries beta's flat fields, so the
    one `session.created` validates against both SDKs (unknown keys are allowed by both)."""
    out = render_beta(cfg)
    out.update(render_ga(cfg))
    return out


def render_transcription_beta(cfg: SessionConfig) -> dict[str, Any]:
    """openai.types.beta.realtime.TranscriptionSession (without `client_secret`'s value: "not present when a session
    is updated via the WebSocket API", the SDK's docstring says)."""
    return {
        "id": cfg.id,
        "object": "realtime.transcription_session",
        "input_audio_format": cfg.input_audio_format,
        "input_audio_transcription": cfg.input_audio_transcription,
        "input_audio_noise_reduction": cfg.input_audio_noise_reduction,
        "turn_detection": cfg.turn_detection,
        "modalities": cfg.kept.get("modalities", ["text"]),
        "include": cfg.kept.get("include"),
        "client_secret": None,
    }


def render_transcription_ga(cfg: SessionConfig) -> dict[str, Any]:
    """openai.types.realtime.RealtimeTranscriptionSessionCreateRequest, with the response object's id and object."""
    return {
        "type": "transcription",
        "object": "realtime.transcription_session",
        "id": cfg.id,
        "include": cfg.kept.get("include"),
        "audio": {
            "input": {
                "format": GA_FORMATS[cfg.input_audio_format],
                "transcription": cfg.input_audio_transcription,
                "noise_reduction": cfg.input_audio_noise_reduction,
                "turn_detection": cfg.turn_detection,
            },
        },
    }


def render(cfg: SessionConfig, dialect: Dialect | None) -> dict[str, Any]:
    if cfg.type == "transcription":
        if dialect == "ga":
            return render_transcription_ga(cfg)
        out = render_transcription_beta(cfg)
        if dialect is None:
            out.update(render_transcription_ga(cfg))
        return out
    if dialect == "beta":
        return render_beta(cfg)
    if dialect == "ga":
        return render_ga(cfg)
    return render_neutral(cfg)


def is_ga_shaped(patch: Any) -> bool:
    return isinstance(patch, dict) and ("type" in patch or "output_modalities" in patch or "audio" in patch)
