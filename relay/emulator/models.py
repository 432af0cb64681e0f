"""What each Gemini Live model accepts and how it behaves, as Google's models do in December 2026.

One row per model family, matched by a regex searched in the model id (the part of ``setup.model``
after the last ``/``: Vertex sends ``projects/P/locations/L/publishers/google/models/M``, AI Studio
``models/M``); the first matching row wins and anything unmatched gets ``LEGACY``, which is what the
emulator did before it knew about models (it accepts everything, and calls are always BLOCKING).
Setup validation (``setup.py``) and the session (``session.py``) ask this table; nothing else looks
at the model name. Facts: Google's Live API model pages of 2026 (ai.google.dev and the Vertex guides).
The emulator models Google on its own, so this table is deliberately not ``relay.models``.

Most rows are conversation models. Two families only listen (``kind``): the transcription model
answers each spoken turn with its transcript as text, the translation model with translated speech;
both hear nothing but audio and never interrupt themselves for new speech.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import attrs

from .audio import InputSettings
from .wire import INVALID_ARGUMENT, ProtocolError

__all__ = [
    "AUDIO_INPUT_ONLY",
    "AUDIO_ONLY",
    "AUTOMATIC_DETECTION_ONLY",
    "EXTENDED_THINKING",
    "LEGACY",
    "NATIVE_AUDIO",
    "NO_SYSTEM_INSTRUCTION",
    "NO_TOOLS",
    "THREE_EIGHT",
    "THREE_PREVIEW",
    "TRANSCRIPTION",
    "TRANSCRIPTION_TEXT_ONLY",
    "TRANSLATION",
    "TRANSLATION_AUDIO_ONLY",
    "Kind",
    "ModelRules",
    "interaction_status",
    "model_id",
    "rules_for",
]

Thinking = Literal["any", "none", "budget", "level"]
ProactiveAudio = Literal["optional", "refused", "always"]
Behavior = Literal["BLOCKING", "NON_BLOCKING"]
Kind = Literal["conversation", "transcription", "translation"]

# The 3.8 model pages say the supported response modality is audio and to enable output
# transcription for text; Google's close reasons start with the generic sentence.
AUDIO_ONLY = (
    1007,
    "Request contains an invalid argument. "
    "The supported response modality is AUDIO; enable output audio transcription.",
)
# The listening models' refusals say what is wrong, after the generic sentence as Google's do.
_INVALID = INVALID_ARGUMENT[1]
TRANSCRIPTION_TEXT_ONLY = (1007, f"{_INVALID} The transcription model answers in TEXT; set responseModalities to TEXT.")
TRANSLATION_AUDIO_ONLY = (1007, f"{_INVALID} The translation model answers in AUDIO; set responseModalities to AUDIO.")
NO_TOOLS = (1007, f"{_INVALID} This model takes no tools.")
NO_SYSTEM_INSTRUCTION = (1007, f"{_INVALID} This model takes no system instruction.")
AUTOMATIC_DETECTION_ONLY = (
    1007,
    f"{_INVALID} This model detects speech itself; automatic activity detection cannot be disabled.",
)
AUDIO_INPUT_ONLY = (1007, f"{_INVALID} This model hears only audio (realtimeInput.audio).")
# translationConfig.targetLanguageCode: a BCP-47 code ("es", "pt-BR", "zh-Hans-CN").
_LANGUAGE_CODE = re.compile(r"[a-z]{2,3}(-[A-Za-z0-9]{2,8})*")
_ALL_LEVELS = ("MINIMAL", "LOW", "MEDIUM", "HIGH")
# proto3 JSON enums come by name or number; UNSPECIFIED means "the model's default".
_BEHAVIORS: dict[Any, Behavior | None] = {
    None: None,
    "UNSPECIFIED": None,
    "BEHAVIOR_UNSPECIFIED": None,
    0: None,
    "BLOCKING": "BLOCKING",
    1: "BLOCKING",
    "NON_BLOCKING": "NON_BLOCKING",
    2: "NON_BLOCKING",
}
_SCHEDULINGS: dict[Any, str] = {
    None: "WHEN_IDLE",
    "SCHEDULING_UNSPECIFIED": "WHEN_IDLE",
    0: "WHEN_IDLE",
    "SILENT": "SILENT",
    1: "SILENT",
    "WHEN_IDLE": "WHEN_IDLE",
    2: "WHEN_IDLE",
    "INTERRUPT": "INTERRUPT",
    3: "INTERRUPT",
}


@attrs.frozen
class ModelRules:
    """One model family's row."""

    name: str
    #: "conversation" answers every turn, text or spoken, and may be interrupted; "transcription"
    #: answers each spoken turn with its transcript as text, "translation" with translated speech
    #: (``translationConfig``). The last two hear only audio and answer every turn, in order.
    kind: Kind = "conversation"
    #: ``responseModalities: ["TEXT"]`` accepted; if not, it closes with ``text_refusal``.
    text_output: bool = True
    text_refusal: tuple[int, str] = INVALID_ARGUMENT
    #: ``responseModalities: ["AUDIO"]`` (also the default) accepted; if not, ``audio_refusal``.
    audio_output: bool = True
    audio_refusal: tuple[int, str] = INVALID_ARGUMENT
    #: A non-empty ``tools`` / any ``systemInstruction`` accepted (if not: ``NO_TOOLS`` /
    #: ``NO_SYSTEM_INSTRUCTION``).
    tools: bool = True
    system_instruction: bool = True
    #: ``automaticActivityDetection.disabled: true`` accepted (if not: ``AUTOMATIC_DETECTION_ONLY``).
    manual_activity: bool = True
    #: ``thinkingConfig``: "any" accepted and ignored (the old emulator), "none" refused outright,
    #: "budget" ``thinkingBudget`` only, "level" ``thinkingLevel`` (one of ``thinking_levels``) only.
    thinking: Thinking = "any"
    thinking_levels: tuple[str, ...] = ()
    thinking_required: bool = False
    #: ``generationConfig.enableAffectiveDialog`` accepted (False: any value is a 1007).
    affective_dialog: bool = True
    #: ``proactivity.proactiveAudio``: "optional" either way, "refused" in any form, "always" on
    #: (``false`` is a 1007).
    proactive_audio: ProactiveAudio = "optional"
    #: Declared ``behavior`` (None when unset) → how the call runs; a behavior missing from the map is
    #: a 1007. None for the whole map: ``behavior`` is ignored and every call is BLOCKING.
    behaviors: Mapping[Behavior | None, Behavior] | None = None
    #: ``functionResponses[].scheduling`` is honoured (elsewhere it is ignored, as it always was).
    scheduling: bool = False
    #: Every ``serverContent`` with ``turnComplete`` also carries ``interactionStatus``.
    interaction_status: bool = False
    #: A ``clientContent`` turn without ``role`` is a 1007 (3.1 took only explicit roles mid-session).
    content_role_required: bool = False

    @property
    def conversation(self) -> bool:
        """It takes text as well as speech and may be interrupted; the other kinds only listen."""
        return self.kind == "conversation"

    # -- setup ---------------------------------------------------------------------------------

    def check_setup(self, setup: dict[str, Any], generation: dict[str, Any], modality: str) -> bool:
        """Refuse what this model refuses in a normalized setup (ProtocolError 1007), but for function
        behaviors (``non_blocking`` checks those); returns whether the setup turns thinking on, which
        makes replies start with a thought part."""
        if modality == "TEXT" and not self.text_output:
            raise ProtocolError.of(self.text_refusal)
        if modality == "AUDIO" and not self.audio_output:
            raise ProtocolError.of(self.audio_refusal)
        if setup.get("tools") and not self.tools:
            raise ProtocolError.of(NO_TOOLS)
        if setup.get("systemInstruction") is not None and not self.system_instruction:
            raise ProtocolError.of(NO_SYSTEM_INSTRUCTION)
        if "enableAffectiveDialog" in generation and not self.affective_dialog:
            raise ProtocolError.of(INVALID_ARGUMENT)
        self._check_proactivity(setup.get("proactivity"))
        return self._check_thinking(generation.get("thinkingConfig"))

    def input_settings(self, settings: InputSettings) -> InputSettings:
        """How this model takes realtime input under the setup's ``settings``: a model that only
        listens answers every turn in order, so new speech never interrupts it."""
        if not settings.automatic and not self.manual_activity:
            raise ProtocolError.of(AUTOMATIC_DETECTION_ONLY)
        return settings if self.conversation else attrs.evolve(settings, interrupts=False)

    def translation_target(self, generation: dict[str, Any]) -> str | None:
        """``translationConfig.targetLanguageCode`` of a translation model (None without a
        ``translationConfig``, which the model takes, to stream silence); other models ignore it.
        ``echoTargetLanguage`` is accepted and ignored: the emulator detects no languages."""
        config = generation.get("translationConfig")
        if self.kind != "translation" or config is None:
            return None
        if not isinstance(config, dict) or not isinstance(config.get("echoTargetLanguage"), bool | None):
            raise ProtocolError.of(INVALID_ARGUMENT)
        code = config.get("targetLanguageCode")
        if not isinstance(code, str) or not _LANGUAGE_CODE.fullmatch(code):
            raise ProtocolError.of(INVALID_ARGUMENT)
        return code

    def _check_proactivity(self, proactivity: Any) -> None:
        if self.proactive_audio == "optional" or proactivity is None:
            return
        if not isinstance(proactivity, dict):
            raise ProtocolError.of(INVALID_ARGUMENT)
        audio = proactivity.get("proactiveAudio")
        if self.proactive_audio == "refused" and audio is not None:
            raise ProtocolError.of(INVALID_ARGUMENT)
        if self.proactive_audio == "always" and audio is False:
            raise ProtocolError.of(INVALID_ARGUMENT)  # proactive audio is always on and cannot be turned off

    def _check_thinking(self, config: Any) -> bool:
        if self.thinking == "any":
            return False  # the old emulator took thinkingConfig and ignored it; so do unknown models
        if config is None:
            if self.thinking_required:
                raise ProtocolError.of(INVALID_ARGUMENT)
            return False
        if self.thinking == "none" or not isinstance(config, dict):
            raise ProtocolError.of(INVALID_ARGUMENT)
        level, budget = config.get("thinkingLevel"), config.get("thinkingBudget")
        include = config.get("includeThoughts")
        if self.thinking == "budget":
            # thinkingBudget is an int32: a JSON number or a decimal string (-1 is "dynamic").
            if level is not None or not (budget is None or _is_int(budget)):
                raise ProtocolError.of(INVALID_ARGUMENT)
        else:
            if budget is not None or not (level is None or isinstance(level, str)):
                raise ProtocolError.of(INVALID_ARGUMENT)
            if level is None and self.thinking_required:
                raise ProtocolError.of(INVALID_ARGUMENT)
            if level is not None and level.upper() not in self.thinking_levels:
                raise ProtocolError.of(INVALID_ARGUMENT)
        if not isinstance(include, bool | None):
            raise ProtocolError.of(INVALID_ARGUMENT)
        return (
            (isinstance(level, str) and level.upper() != "MINIMAL")
            or (budget is not None and int(budget) > 0)
            or include is True
        )

    # -- function calling ----------------------------------------------------------------------

    def non_blocking(self, tools: Any) -> frozenset[str]:
        """The names of the declared functions (``setup.tools`` or a ``contextUpdate``'s) whose calls run
        NON_BLOCKING; 1007 for a ``behavior`` this model refuses."""
        if self.behaviors is None or not isinstance(tools, list):
            return frozenset()
        names = set()
        for decl in _declarations(tools):
            runs = self.behaviors.get(_enum(decl.get("behavior"), _BEHAVIORS))
            if runs is None:
                raise ProtocolError.of(INVALID_ARGUMENT)
            if runs == "NON_BLOCKING" and isinstance(decl.get("name"), str):
                names.add(decl["name"])
        return frozenset(names)

    def scheduling_of(self, responses: Iterable[dict[str, Any]]) -> str:
        """How the model takes a toolResponse: SILENT (no new turn) only when every response says so,
        INTERRUPT when any does, else WHEN_IDLE (after what it is saying). Models that do not honour
        ``scheduling`` always answer as WHEN_IDLE; an unknown value is a 1007 on those that do."""
        if not self.scheduling:
            return "WHEN_IDLE"
        values = {_enum(r.get("scheduling"), _SCHEDULINGS) for r in responses}
        if "INTERRUPT" in values:
            return "INTERRUPT"
        return "SILENT" if values == {"SILENT"} else "WHEN_IDLE"

    def check_turns(self, turns: list[Any]) -> None:
        """Refuse ``clientContent`` turns this model refuses mid-session."""
        if self.content_role_required and any(isinstance(t, dict) and "role" not in t for t in turns):
            raise ProtocolError.of(INVALID_ARGUMENT)


def _enum(value: Any, table: Mapping[Any, Any]) -> Any:
    """A proto enum value (name or number, or None when unset) looked up in ``table``; 1007 if unknown."""
    if isinstance(value, bool) or not isinstance(value, str | int | None) or value not in table:
        raise ProtocolError.of(INVALID_ARGUMENT)
    return table[value]


def _is_int(value: Any) -> bool:
    if isinstance(value, str):
        return re.fullmatch(r"-?\d+", value) is not None
    return isinstance(value, int) and not isinstance(value, bool)


def _declarations(tools: list[Any]) -> Iterable[dict[str, Any]]:
    for tool in tools:
        if isinstance(tool, dict):
            for decl in tool.get("functionDeclarations") or ():
                if isinstance(decl, dict):
                    yield decl


def interaction_status(waits_on_call: bool, calls_running: bool) -> str:
    """``interactionStatus`` for a ``turnComplete``: REQUIRES_ACTION right after a toolCall the model
    waits on, IN_PROGRESS while a NON_BLOCKING call it made still runs, else IDLE."""
    if waits_on_call:
        return "REQUIRES_ACTION"
    return "IN_PROGRESS" if calls_running else "IDLE"


LEGACY = ModelRules(name="other (2.0, 2.5 half cascade, unknown)")
# Both 3.8 models: audio out only, affective dialog removed from the API, proactive audio always on.
_THREE_EIGHT: dict[str, Any] = {
    "text_output": False,
    "text_refusal": AUDIO_ONLY,
    "affective_dialog": False,
    "proactive_audio": "always",
    "scheduling": True,
}
EXTENDED_THINKING = ModelRules(
    name="3.8 Live extended thinking",
    thinking="level",
    thinking_levels=("LOW", "MEDIUM", "HIGH"),
    thinking_required=True,
    behaviors={None: "NON_BLOCKING", "NON_BLOCKING": "NON_BLOCKING"},
    interaction_status=True,
    **_THREE_EIGHT,
)
THREE_EIGHT = ModelRules(
    name="3.8 Live",
    thinking="none",
    behaviors={None: "NON_BLOCKING", "NON_BLOCKING": "NON_BLOCKING", "BLOCKING": "BLOCKING"},
    **_THREE_EIGHT,
)
NATIVE_AUDIO = ModelRules(
    name="2.5 Flash native audio",
    text_output=False,
    thinking="budget",
    behaviors={None: "BLOCKING", "BLOCKING": "BLOCKING", "NON_BLOCKING": "NON_BLOCKING"},
    scheduling=True,
)
# 3.1 Flash Live (a legacy preview) and any other 3.x model but 3.8.
THREE_PREVIEW = ModelRules(
    name="3.x Live preview",
    thinking="level",
    thinking_levels=_ALL_LEVELS,
    affective_dialog=False,
    proactive_audio="refused",
    behaviors={None: "BLOCKING", "BLOCKING": "BLOCKING"},
    content_role_required=True,
)
# Speech to text over the Live API: audio in, each spoken turn's transcript out as model text.
TRANSCRIPTION = ModelRules(
    name="3.5 transcribe Live",
    kind="transcription",
    audio_output=False,
    audio_refusal=TRANSCRIPTION_TEXT_ONLY,
    tools=False,
)
# Speech to speech: a continuous audio stream in, translated speech (and its transcript) out.
TRANSLATION = ModelRules(
    name="3.5 Live translate",
    kind="translation",
    text_output=False,
    text_refusal=TRANSLATION_AUDIO_ONLY,
    tools=False,
    system_instruction=False,
    manual_activity=False,
)
# The listening models first: they are 3.x ids too, which THREE_PREVIEW would otherwise take.
_ROWS: tuple[tuple[re.Pattern[str], ModelRules], ...] = (
    (re.compile(r"^gemini-3\.5-transcribe-live"), TRANSCRIPTION),
    (re.compile(r"^gemini-3\.5-live-translate"), TRANSLATION),
    (re.compile(r"^gemini-3\.8-live-extended-thinking"), EXTENDED_THINKING),
    (re.compile(r"^gemini-3\.8-live"), THREE_EIGHT),
    (re.compile(r"native-audio"), NATIVE_AUDIO),
    (re.compile(r"^gemini-3\."), THREE_PREVIEW),
)


def model_id(model: str) -> str:
    """``M`` from ``projects/P/locations/L/publishers/google/models/M``, ``models/M`` or ``M``."""
    return model.rsplit("/", 1)[-1]


def rules_for(model: str) -> ModelRules:
    """The row of ``setup.model`` (either backend's spelling); ``LEGACY`` when no row matches."""
    name = model_id(model)
    return next((rules for pattern, rules in _ROWS if pattern.search(name)), LEGACY)
