"""What each Gemini Live model and backend accepts, in one table (issue 12).

Rows are matched by the upstream model id (first matching pattern wins) and may be overridden per model in
config (`litellm_params.capabilities`); the translator asks this table and nothing else guesses.  Facts:
Google's Live API model pages of 2026 (ai.google.dev `/gemini-api/docs/models/gemini-3.8-live` and its
siblings; the Vertex "Gemini Enterprise Agent Platform" Live API guides) and google-genai 3.6.1's types, plus
other bridges' field reports (native-audio models refuse TEXT; Vertex refused call ids and `scheduling` with
1007).  `markdown_table()` renders the README's table.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

import attrs
from attrs import validators as v

Backend = Literal["vertex", "gemini"]
Thinking = Literal["none", "budget", "level", "level_required"]
FunctionBehavior = Literal["blocking_only", "both", "non_blocking_default", "non_blocking_only"]
ProactiveAudio = Literal["no", "optional", "always"]
IdleSignal = Literal["turnComplete", "interactionStatus"]
SessionKind = Literal["realtime", "transcription", "translation"]
SESSION_KINDS: tuple[SessionKind, ...] = ("realtime", "transcription", "translation")
THINKING_LEVELS = ("MINIMAL", "LOW", "MEDIUM", "HIGH")
SENSITIVITIES = ("HIGH", "LOW")


def _literal(*choices: str) -> Any:
    return v.in_(choices)


@attrs.frozen
class ModelCaps:
    """One row.  Every field can be set per model in config under `litellm_params.capabilities`."""

    family: str = attrs.field(default="Gemini Live (other)", validator=v.instance_of(str))
    # The OpenAI session kind the model serves: a conversation (realtime), transcription only, or live speech
    # translation (its own socket, /v1/realtime/translations).  `model_info.mode` in config may state it.
    kind: SessionKind = attrs.field(default="realtime", validator=_literal(*SESSION_KINDS))
    # Accepts responseModalities ["TEXT"]; native-audio and 3.8 models do not: a text-only session gets AUDIO
    # with output transcription, and its text deltas come from the transcript (pitfall 9).
    text_output: bool = attrs.field(default=True, validator=v.instance_of(bool))
    # Text turns go as realtimeInput.text instead of clientContent (3.1 refused mid-session clientContent).
    text_via_realtime_input: bool = attrs.field(default=False, validator=v.instance_of(bool))
    # thinkingConfig: "none" never sent (3.8 rejects any; 2.0 has none), "budget" thinkingBudget when configured,
    # "level" thinkingLevel when asked for, "level_required" thinkingLevel always (extended thinking).
    thinking: Thinking = attrs.field(default="none", validator=_literal("none", "budget", "level", "level_required"))
    thinking_levels: tuple[str, ...] = attrs.field(default=(), converter=tuple,
                                                   validator=v.deep_iterable(_literal(*THINKING_LEVELS)))
    # Function calls: "blocking_only" (no behavior field), "both", "non_blocking_default" (3.8: the relay
    # declares BLOCKING, which the call -> output -> response.create flow needs), "non_blocking_only" (refused).
    function_behavior: FunctionBehavior = attrs.field(
        default="blocking_only",
        validator=_literal("blocking_only", "both", "non_blocking_default", "non_blocking_only"))
    # `scheduling` in function responses (SILENT / WHEN_IDLE / INTERRUPT).
    scheduling: bool = attrs.field(default=False, validator=v.instance_of(bool))
    # Takes `contextUpdate` (systemInstruction, tools) mid-session, so such a session.update needs no new connection.
    context_update: bool = attrs.field(default=False, validator=v.instance_of(bool))
    affective_dialog: bool = attrs.field(default=False, validator=v.instance_of(bool))
    # "always": on and not to be sent (3.8 rejects proactiveAudio false); "optional": may be turned on.
    proactive_audio: ProactiveAudio = attrs.field(default="no", validator=_literal("no", "optional", "always"))
    input_transcription: bool = attrs.field(default=True, validator=v.instance_of(bool))
    # What says the model is idle: turnComplete, or interactionStatus IDLE (extended thinking: turnComplete is not).
    idle_signal: IdleSignal = attrs.field(default="turnComplete",
                                          validator=_literal("turnComplete", "interactionStatus"))
    # Automatic activity detection's default sensitivities (start, end) when the session names none.
    vad_start: str = attrs.field(default="HIGH", validator=_literal(*SENSITIVITIES))
    vad_end: str = attrs.field(default="HIGH", validator=_literal(*SENSITIVITIES))
    # Backend facts.  Vertex has rejected functionResponses[].id with close 1007 (pitfall 6).
    function_response_id: bool = attrs.field(default=True, validator=v.instance_of(bool))


@attrs.frozen
class GeminiOptions:
    """Gemini features an operator turns on per model (`litellm_params`), checked against the model's row at start."""

    thinking_budget: int | None = None  # rows that take a budget; a session's reasoning.effort overrides it
    thinking_level: str | None = None  # rows that take a level (MINIMAL, LOW, MEDIUM, HIGH)
    include_thoughts: bool = False  # Gemini sends thought summaries; the relay never forwards them as text
    affective_dialog: bool = False
    proactive_audio: bool | None = None
    media_resolution: str | None = None  # LOW | MEDIUM | HIGH
    language_code: str | None = None  # the language of the model's speech, e.g. "de-DE"

    def problems(self, caps: ModelCaps) -> list[tuple[str, str]]:
        """(field, message) for each option `caps` cannot take."""
        out: list[tuple[str, str]] = []
        if self.thinking_budget is not None and caps.thinking != "budget":
            out.append(("thinking_budget", f"{caps.family} takes no thinkingBudget"
                        + (" (it takes thinking_level)" if caps.thinking in ("level", "level_required") else "")))
        if self.thinking_level is not None:
            if caps.thinking not in ("level", "level_required"):
                out.append(("thinking_level", f"{caps.family} takes no thinkingLevel"))
            elif caps.thinking_levels and self.thinking_level.upper() not in caps.thinking_levels:
                out.append(("thinking_level", f"{caps.family} takes " + ", ".join(caps.thinking_levels)))
        if self.include_thoughts and caps.thinking == "none":
            out.append(("include_thoughts", f"{caps.family} takes no thinking configuration"))
        if self.affective_dialog and not caps.affective_dialog:
            out.append(("affective_dialog", f"{caps.family} has no affective dialog"))
        if self.proactive_audio is not None:
            if caps.proactive_audio == "no" and self.proactive_audio:
                out.append(("proactive_audio", f"{caps.family} has no proactive audio"))
            elif caps.proactive_audio == "always" and not self.proactive_audio:
                out.append(("proactive_audio", f"{caps.family} always has proactive audio on; it cannot be turned off"))
        if self.media_resolution is not None and self.media_resolution.upper() not in ("LOW", "MEDIUM", "HIGH"):
            out.append(("media_resolution", "must be low, medium or high"))
        return out


# Rows per model family with their Gemini API facts, and what differs on Vertex.  Patterns search the model id.
_ROWS: tuple[tuple[str, str, ModelCaps, dict[str, Any]], ...] = (
    ("gemini-3.8-live-extended-thinking", r"^gemini-3\.8-live-extended-thinking", ModelCaps(
        family="3.8 Live, extended thinking", text_output=False, text_via_realtime_input=True,
        thinking="level_required", thinking_levels=("LOW", "MEDIUM", "HIGH"), function_behavior="non_blocking_only",
        context_update=True, proactive_audio="always", idle_signal="interactionStatus"), {}),
    ("gemini-3.8-live", r"^gemini-3\.8-live", ModelCaps(
        family="3.8 Live (the stable default)", text_output=False, text_via_realtime_input=True, thinking="none",
        function_behavior="non_blocking_default", scheduling=True, context_update=True, proactive_audio="always"),
     {}),
    ("gemini-3.5-transcribe-live, gemini-3.5-transcribe-live-preview", r"^gemini-3\.5-transcribe-live", ModelCaps(
        family="3.5 Transcribe Live (speech to text)", kind="transcription"), {}),
    ("gemini-3.5-live-translate-preview", r"^gemini-3\.5-live-translate", ModelCaps(
        family="3.5 Live Translate (speech to speech)", kind="translation", text_output=False,
        function_behavior="non_blocking_only"), {}),
    ("gemini-3.1-flash-live-preview", r"^gemini-3\.", ModelCaps(
        family="3.1 Flash Live (legacy preview)", text_via_realtime_input=True, thinking="level",
        thinking_levels=THINKING_LEVELS), {}),
    ("gemini-live-2.5-flash-native-audio, gemini-2.5-flash-native-audio-*", r"native-audio", ModelCaps(
        family="2.5 Flash native audio", text_output=False, thinking="budget", function_behavior="both",
        scheduling=True, affective_dialog=True, proactive_audio="optional"),
     # Vertex's GA page: start LOW, end HIGH; `scheduling` in function responses has drawn 1007 there (pitfall 6).
     {"vad_end": "HIGH", "scheduling": False}),
    ("gemini-live-2.5-flash", r"^gemini-live-2\.5-flash", ModelCaps(
        family="2.5 Flash Live (half cascade)", function_behavior="both", scheduling=True), {"scheduling": False}),
    ("gemini-2.0-flash-live-*", r"^gemini-2\.0", ModelCaps(family="2.0 Flash Live"), {}),
)
# Vertex: no `id` in tool responses (it has rejected them with 1007), LOW default sensitivities (protocols.md 2.2).
# (The relay never sends what only one backend takes: audioStreamEnd, willContinue, labels, transparent.)
_VERTEX = {"function_response_id": False, "vad_start": "LOW", "vad_end": "LOW"}
_OTHER = ModelCaps()


def _model_id(model: str) -> str:
    """`gemini-x` from `projects/P/locations/L/publishers/google/models/gemini-x`, `models/gemini-x` or itself."""
    return model.rsplit("/", 1)[-1]


def caps_for(model: str, backend: Backend = "vertex", overrides: Mapping[str, Any] | None = None) -> ModelCaps:
    """The row for `model` on `backend`, with config `overrides` (field -> value) applied last."""
    name = _model_id(model)
    base, vertex = next(((caps, extra) for _, pattern, caps, extra in _ROWS if re.search(pattern, name)), (_OTHER, {}))
    if backend == "vertex":
        base = attrs.evolve(base, **{**_VERTEX, **vertex})
    if overrides:
        base = with_overrides(base, overrides)
    return base


def with_overrides(caps: ModelCaps, overrides: Mapping[str, Any]) -> ModelCaps:
    """`caps` with config values applied; ValueError naming the field for an unknown one or a wrong value."""
    known = {f.name: f for f in attrs.fields(ModelCaps)}
    for key, value in overrides.items():
        if key not in known:
            raise ValueError(f"{key}: unknown capability; known: {', '.join(sorted(known))}")
        field = known[key]
        if field.type in ("bool", bool) and not isinstance(value, bool):
            raise ValueError(f"{key}: must be true or false, got {value!r}")
        try:
            caps = attrs.evolve(caps, **{key: value})
        except (ValueError, TypeError) as exc:
            choices = _choices(field)
            raise ValueError(f"{key}: {value!r} is not accepted" + (f"; one of {choices}" if choices else "")
                             + ("" if choices else f" ({exc})")) from None
    return caps


def _choices(field: attrs.Attribute[Any]) -> str:
    validator = field.validator
    options = getattr(validator, "options", None)
    if options is None:
        options = getattr(getattr(validator, "member_validator", None), "options", None)
    return ", ".join(map(str, options)) if options else ""


def rows() -> list[tuple[str, ModelCaps]]:
    """(model ids, row) for each family, as the README lists them."""
    return [(models, caps) for models, _, caps, _ in _ROWS]


def markdown_table() -> str:
    """The README's capability table (Gemini API facts; the Vertex column notes what differs there)."""
    def yes(flag: bool) -> str:
        return "yes" if flag else "no"

    def thinking(caps: ModelCaps) -> str:
        if caps.thinking == "none":
            return "not sent"
        if caps.thinking == "budget":
            return "`thinkingBudget` when configured"
        levels = "/".join(level.lower() for level in caps.thinking_levels)
        return f"`thinkingLevel` {levels}" + (", always (default low)" if caps.thinking == "level_required"
                                               else " when asked")

    behaviour = {"blocking_only": "BLOCKING only", "both": "BLOCKING (relay default) or NON_BLOCKING",
                 "non_blocking_default": "NON_BLOCKING by default: the relay declares BLOCKING",
                 "non_blocking_only": "NON_BLOCKING only: function tools are refused"}
    head = ("| models | family | sessions | TEXT output | text input | thinking | functions | scheduling "
            "| `contextUpdate` | affective dialog | proactive audio | idle signal "
            "| VAD start/end (AI Studio; Vertex) |")
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for models, caps in rows():
        vertex = caps_for(_first_id(models), "vertex")
        lines.append(
            f"| `{models}` | {caps.family} | {caps.kind} | {'yes' if caps.text_output else 'no: AUDIO + transcript'} "
            f"| {'`realtimeInput.text`' if caps.text_via_realtime_input else '`clientContent`'} | {thinking(caps)} "
            f"| {behaviour[caps.function_behavior]} | {yes(caps.scheduling)} | {yes(caps.context_update)} "
            f"| {yes(caps.affective_dialog)} | {caps.proactive_audio} | `{caps.idle_signal}` "
            f"| {caps.vad_start}/{caps.vad_end}; {vertex.vad_start}/{vertex.vad_end} |")
    lines.append(f"| any other | {_OTHER.family} | realtime | yes | `clientContent` | not sent | BLOCKING only | no "
                 f"| no | no | no | `turnComplete` | HIGH/HIGH; LOW/LOW |")
    return "\n".join(lines)


def _first_id(models: str) -> str:
    return models.split(",")[0].strip().rstrip("*").rstrip("-")
