"""Transcription sessions: OpenAI's second session kind (GA `session.type: "transcription"`, beta
`?intent=transcription` with `transcription_session.update`), over a Gemini Live connection.

The client streams `input_audio_buffer.append`; every utterance (Gemini's voice activity detection, or the
client's `commit` with turn detection off) becomes a committed user item whose transcript arrives as
`conversation.item.input_audio_transcription.delta` events and ends with `.completed` (with `usage`), or
`.failed` when the upstream connection is lost first.  Nothing else is ever said: no `response.*` event.

Upstream, a transcription model (`gemini-3.5-transcribe-live`) answers each spoken turn with its transcript as
model text; any other Live model hears the audio with input transcription on, and its replies are dropped (it
is asked not to reply, but a Live model always takes its turn, and Gemini bills it).  Whichever of the two a
connection sends first (input transcription or, from a transcription model, model text) is the transcript
for the rest of the session, so a model that sends both is not transcribed twice.  Usage is Gemini's
`usageMetadata` for the turn when it sends one (`type: "tokens"`), else the utterance's audio duration
(`type: "duration"`: what OpenAI bills whisper by, and all the relay can know).
"""

from __future__ import annotations

from collections import deque
from typing import Any

from relay.errors import ClientError
from relay.events import gemini as gm
from relay.events import openai as oa
from relay.models import GeminiOptions, ModelCaps
from relay.session_config import (
    apply_transcription_beta,
    apply_transcription_ga,
    become_realtime,
    become_transcription,
)
from relay.translate.base import UPSTREAM_NONE

# Client events a transcription session takes; the rest are refused (they would open a conversation).
TRANSCRIPTION_EVENTS = frozenset({
    "SessionUpdate", "TranscriptionSessionUpdate", "InputAudioBufferAppend", "InputAudioBufferCommit",
    "InputAudioBufferClear", "OutputAudioBufferClear", "ConversationItemRetrieve", "ConversationItemDelete",
})


class Utterance:
    __slots__ = ("item_id", "ms", "text")

    def __init__(self, item_id: str, ms: float) -> None:
        self.item_id = item_id
        self.ms = ms
        self.text: list[str] = []


class TranscriptionState:
    def __init__(self) -> None:
        self.waiting: deque[Utterance] = deque()  # committed, transcript not complete; Gemini answers in order
        self.source: str | None = None  # "input" (inputTranscription) or "model" (a transcription model's text)
        self.transcribed = 0  # utterances completed, this session
        self.asked = 0  # of `waiting`, utterances Gemini was told to transcribe (manual activityEnd)
        self.replies_dropped = 0  # model output parts of a non-transcription model, dropped
        self.finished_early = False  # the current turn's transcript was complete before its turnComplete


class Transcribing:
    """Mixin of `Translator`: the transcription session kind."""

    def _init_transcription(self, kind: str, transcribers: dict[str, tuple[ModelCaps, GeminiOptions]] | None,
                            model: str | None, default_transcriber: str | None) -> None:
        self._transcribers = transcribers or {}
        self._model = model  # the model the session's connections use (Connect.model)
        self._default_transcriber = default_transcriber or model
        self._stt = TranscriptionState()
        if kind == "transcription":
            become_transcription(self.session)

    @property
    def transcribing(self) -> bool:
        return self.session.type == "transcription"

    # ------------------------------------------------------------ session kind

    def _fresh_session(self) -> bool:
        """Nothing happened yet that belongs to one kind: the client may still choose the other."""
        return (self._upstream == UPSTREAM_NONE and not len(self._items) and self._response is None
                and self._audio.total_ms == 0 and not self._pending_turns)

    def _switch_kind(self, kind: str, event: str) -> None:
        if self.session.type == kind:
            return
        if not self._fresh_session():
            raise ClientError(
                "invalid_request_error",
                f"Passing a {kind} session update event to a {self.session.type} session is not allowed: the "
                f"session kind is fixed once audio, items or responses exist ({event}).",
            )
        if kind == "realtime" and self._caps.kind != "realtime":
            raise ClientError(
                "unsupported_model",
                f"This session's model serves {self._caps.kind} sessions only; connect with a realtime model for a "
                "conversation.",
            )
        if kind == "transcription":
            become_transcription(self.session)
        else:
            become_realtime(self.session)

    def _on_TranscriptionSessionUpdate(self, ev: oa.TranscriptionSessionUpdate) -> None:
        self._switch_kind("transcription", "transcription_session.update")
        self._update_transcription(ev.session, apply_transcription_beta)

    def _transcription_update(self, patch: dict[str, Any]) -> None:
        """`session.update` on a transcription session (GA `type: "transcription"`)."""
        if self.dialect == "ga":
            self._update_transcription(patch, apply_transcription_ga)
            return
        raise ClientError(
            "invalid_request_error",
            "Passing a realtime session update event to a transcription session is not allowed: use "
            "transcription_session.update.",
        )

    def _update_transcription(self, patch: dict[str, Any], apply: Any) -> None:
        before = self._transcription_setup()
        apply(self.session, patch)
        self._session_touched = True
        if self._upstream != UPSTREAM_NONE and self._transcription_setup() != before:
            self._want_switch("session.update", fresh=self._transcriber()[0] != self._model)
        self._emit(oa.TranscriptionSessionUpdated(self.session))

    def _transcription_setup(self) -> tuple[Any, ...]:
        cfg = self.session
        return (self._transcriber()[0], cfg.turn_detection, cfg.input_audio_transcription)

    def _transcriber(self) -> tuple[str | None, ModelCaps, GeminiOptions]:
        """The model for the next connection: the configured model the client's `transcription.model` names,
        else the default (the handshake's model, or the first transcription model when it named none)."""
        tr = self.session.input_audio_transcription
        name = tr.get("model") if isinstance(tr, dict) else None
        for candidate in (name, self._default_transcriber):
            if isinstance(candidate, str) and candidate in self._transcribers:
                caps, options = self._transcribers[candidate]
                return candidate, caps, options
        return self._model, self._caps, self._options

    def _refuse_in_transcription(self, ev: Any) -> None:
        name = getattr(ev, "TYPE", type(ev).__name__)
        raise ClientError(
            "unsupported_event",
            f"'{name}' is not allowed in a transcription session: a transcription session only takes "
            "input_audio_buffer.append, .commit and .clear and session updates, and never responds.",
        )

    # ------------------------------------------------------------ input

    def _transcription_commit(self) -> None:
        """The client's commit: an utterance; with turn detection off, Gemini is told the turn ended."""
        manual = self._manual_turns()
        self._utterance(asked=manual)
        if manual:
            self._end_manual_activity()

    def _utterance(self, asked: bool) -> Utterance:
        """The buffered audio committed as an utterance waiting for its transcript; `asked`: Gemini was told (or
        found itself) that it ended."""
        item_id = self._commit_audio_item()
        self._audio.transcript_item = None  # conversation bookkeeping, not used here
        utterance = Utterance(item_id, self._audio.transcript_ms)
        self._stt.waiting.append(utterance)
        self._stt.asked += asked
        return utterance

    # ------------------------------------------------------------ what Gemini says

    def _transcription_message(self, msg: gm.ServerMessage) -> None:
        stt = self._stt
        activity = msg.voice_activity.voice_activity_type if msg.voice_activity is not None else None
        if activity == "ACTIVITY_START":
            self._speech_started()
        elif activity == "ACTIVITY_END" and self._audio.speech_item is not None:
            self._vad_utterance()
        sc = msg.server_content
        if sc is None:
            return
        tr = sc.input_transcription
        if tr is not None and stt.source in (None, "input"):
            if tr.text:
                stt.source = "input"
                self._transcript_piece(tr.text)
            if tr.finished and stt.waiting:
                # The transcript is whole before the (dropped) reply ends: said now, and that turn's
                # turnComplete is then not an utterance's end.
                self._utterance_done()
                stt.finished_early = True
        if sc.model_turn is not None:
            for part in sc.model_turn.parts or ():
                if part.thought or part.inline_data is not None:
                    stt.replies_dropped += 1
                elif part.text:
                    if self._caps.kind == "transcription" and stt.source in (None, "model"):
                        stt.source = "model"
                        self._transcript_piece(part.text)
                    else:
                        stt.replies_dropped += 1
        if sc.turn_complete:
            if stt.finished_early:
                stt.finished_early = False
                self._usage = None
            else:
                self._utterance_done()

    def _vad_utterance(self) -> Utterance:
        """Gemini's voice activity detection ended an utterance: speech_stopped and the committed item."""
        self._speech_started()
        return self._utterance(asked=True)

    def _transcript_piece(self, text: str) -> None:
        waiting = self._stt.waiting
        # Under VAD the first words of an utterance are the first sign of it (unless Gemini signalled activity).
        utterance = waiting[0] if waiting else self._vad_utterance()
        utterance.text.append(text)
        self._emit(oa.InputTranscriptionDelta(utterance.item_id, 0, text))

    def _utterance_done(self) -> None:
        stt = self._stt
        if not stt.waiting:
            self._usage = None
            return
        if stt.asked == 0 and not stt.waiting[0].text:
            return  # a turn of Gemini's own (it heard nothing the client committed): the utterance still waits
        utterance = stt.waiting.popleft()
        stt.asked = max(0, stt.asked - 1)
        text = "".join(utterance.text).strip()
        item = self._items.get(utterance.item_id)
        if item is not None and item.content:
            item.content[0].transcript = text
        self._emit(oa.InputTranscriptionCompleted(utterance.item_id, 0, text, self._transcription_usage(utterance)))
        stt.transcribed += 1

    def _transcription_usage(self, utterance: Utterance) -> dict[str, Any]:
        u, self._usage = self._usage, None
        if u is not None and (u.prompt_token_count or u.total_token_count):
            prompt = u.prompt_token_count or 0
            output = u.response_token_count or u.candidates_token_count or 0
            details = {d.modality: d.token_count or 0 for d in u.prompt_tokens_details or () if d.modality}
            self.tokens_in += prompt
            self.tokens_out += output
            return {"type": "tokens", "input_tokens": prompt, "output_tokens": output,
                    "total_tokens": u.total_token_count or prompt + output,
                    "input_token_details": {"audio_tokens": details.get("AUDIO", 0),
                                            "text_tokens": details.get("TEXT", 0)}}
        return {"type": "duration", "seconds": round(utterance.ms / 1000.0, 3)}

    def _fail_transcripts(self, kind: str, code: str, message: str) -> None:
        """The connection is gone with utterances not yet transcribed: each gets `.failed`."""
        stt = self._stt
        while stt.waiting:
            utterance = stt.waiting.popleft()
            self._emit(oa.InputTranscriptionFailed(utterance.item_id, 0,
                                                   {"type": kind, "code": code, "message": message, "param": None}))
        stt.asked = 0
        stt.source = None
        stt.finished_early = False

    @property
    def _transcripts_owed(self) -> bool:
        """Gemini was told to transcribe an utterance and has not finished it."""
        return self.transcribing and self._stt.asked > 0
