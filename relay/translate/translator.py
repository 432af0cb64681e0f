"""The per-connection protocol state machine: OpenAI client frames and Gemini server frames in,
OpenAI events, Gemini messages and actions out.  No I/O, no clock, ids come from a factory.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import attrs

from relay import codec
from relay.codec_gemini import UpstreamProtocolError, parse_server_message
from relay.errors import ClientError
from relay.events import gemini as gm
from relay.events import openai as oa
from relay.ids import IdFactory
from relay.models import GeminiOptions, ModelCaps
from relay.session_config import Dialect, SessionConfig, apply_beta, apply_ga, is_ga_shaped
from relay.translate.audio_in import AudioInput, InputAudioState
from relay.translate.base import UPSTREAM_NONE, UPSTREAM_READY, UPSTREAM_SETUP_SENT, Output
from relay.translate.conversation import Conversation
from relay.translate.frames import ClientFrames
from relay.translate.idle import IdleTimer
from relay.translate.items import ItemStore
from relay.translate.responding import Responding, session_fields
from relay.translate.response import Meter, ResponseBuilder
from relay.translate.resumption import (
    DEFAULT_SWITCH_BUFFER_MS,
    RESUMABLE_CLOSES,
    Resumption,
    audio_ms_of,
    is_activity_signal,
)
from relay.translate.setup import (
    build_setup,
    build_transcription_setup,
    compression_for_truncation,
    upstream_modality,
)
from relay.translate.tools import ToolCalls, ToolState
from relay.translate.transcription import TRANSCRIPTION_EVENTS, Transcribing

log = logging.getLogger("relay.translate")


class Translator(ClientFrames, Conversation, Responding, AudioInput, ToolCalls, Resumption, IdleTimer, Transcribing):
    def __init__(
        self,
        ids: IdFactory,
        caps: ModelCaps,
        dialect: Dialect | None = None,
        max_frame_bytes: int = 16 * 1024 * 1024,
        compression: dict[str, int] | bool | None = None,
        switch_buffer_ms: float = DEFAULT_SWITCH_BUFFER_MS,
        options: GeminiOptions | None = None,
        kind: str = "realtime",
        model: str | None = None,
        transcribers: dict[str, tuple[ModelCaps, GeminiOptions]] | None = None,
        default_transcriber: str | None = None,
    ) -> None:
        """`compression`: Gemini's contextWindowCompression, as `{trigger_tokens, target_tokens}` (either
        optional), True, False, or None for the default (on for sessions with audio).  `kind`: the session kind
        it starts as ("realtime" or "transcription"); `model`: the configured model it connects to;
        `transcribers`: the configured models a transcription session may name in `transcription.model`, and
        `default_transcriber` the one it gets when it names none of them (else `model`)."""
        self._ids = ids
        self._caps = caps
        self._options = options or GeminiOptions()  # the operator's Gemini features for this model
        self.dialect: Dialect | None = dialect
        self._dialect_fixed = dialect is not None
        self._max_frame = max_frame_bytes
        self.session = SessionConfig(id=ids("sess_"))
        self._conversation_id = ids("conv_")
        self._items = ItemStore()
        self._out = Output()
        self._session_touched = False
        # upstream
        self._upstream = UPSTREAM_NONE
        self._upstream_modality = "TEXT"
        self._upstream_manual: bool | None = None  # turn mode fixed by the current upstream's setup
        self._pending_turns: list[dict[str, Any]] = []
        self._system_notes: list[str] = []
        self._compression = compression
        self._first_response_params: dict[str, Any] | None = None  # may shape the first setup (_next_setup)
        self._init_resumption(switch_buffer_ms)
        self._init_idle()
        self.tokens_in = self.tokens_out = 0  # Gemini's usage over the session's finished responses
        self.responses = 0  # responses started, for the session's end line
        self.events_in: Counter[str] = Counter()  # client events by type, for the metrics
        self.messages_in: Counter[str] = Counter()  # Gemini messages by kind
        self.audio_out_meter = Meter()  # audio put out to the client
        self.oversized = 0  # client events refused for their size
        # responses
        self._held: dict[str, Any] | None = None  # response.create before any user input
        self._had_user_input = False
        self._response: ResponseBuilder | None = None
        self._discarding = False  # output of a cancelled turn, until its turnComplete
        self._queued_request: dict[str, Any] | None = None
        self._swallow_turn_complete = False
        self._usage: gm.UsageMetadata | None = None
        self._audio = InputAudioState()
        self._tools = ToolState()
        self._init_transcription(kind, transcribers, model, default_transcriber)

    # ============================================================ entry points

    def start(self) -> Output:
        # Before the dialect is known, `session.created` with both shapes validates against both SDKs (beta's
        # `transcription_session.created` is in neither union).
        beta_transcription = self.transcribing and self.dialect == "beta"
        self._emit((oa.TranscriptionSessionCreated if beta_transcription else oa.SessionCreated)(self.session))
        return self._take()

    def _client_data(self, data: dict[str, Any]) -> None:
        self._detect_dialect(data)
        self._client_event(codec.structure_client_event(data))

    def upstream_frame(self, frame: str | bytes) -> Output:
        try:
            msg = parse_server_message(frame)
        except UpstreamProtocolError as exc:
            self._upstream_fault("server_error", "upstream_protocol_error", str(exc))
            return self._take()
        self._upstream_message(msg)
        return self._take()

    def upstream_closed(self, code: int | None, reason: str) -> Output:
        """The upstream socket ended (not by us)."""
        if code in RESUMABLE_CLOSES and self.resumption_handle is not None and self._upstream == UPSTREAM_READY:
            self._resume_after_close(code, reason)
            return self._take()
        if code in (1007, 1008) or (code is not None and 4000 <= code < 5000):
            kind = "invalid_request_error"
        else:
            kind = "server_error"
        text = f"Gemini closed the connection ({code})" + (f": {reason}" if reason else ".")
        self._upstream_fault(kind, "upstream_closed", text)
        return self._take()

    def upstream_stalled(self, seconds: float) -> Output:
        """Gemini owed output (see `awaiting_model`) and sent nothing for `seconds`; the shell dropped the link."""
        self._upstream_fault(
            "server_error", "upstream_timeout",
            f"Gemini sent nothing for {seconds:g} s during a response; the relay closed that connection "
            "(the next request opens a new one).",
        )
        return self._take()

    @property
    def _responding(self) -> bool:
        """A response is open: created and not yet done."""
        return self._response is not None and not self._response.finished

    @property
    def at_rest(self) -> bool:
        """No response open and nothing owed by Gemini: a point where the session can end without cutting a reply."""
        return not self._responding and not self.awaiting_model

    @property
    def response_progress(self) -> tuple[int, bool]:
        """(responses started, whether the newest has put out content yet): the shell times the first token."""
        r = self._response
        return self.responses, r is not None and r.has_output

    @property
    def turns(self) -> int:
        """The session's units of work, for its end line: responses, or utterances transcribed."""
        return self.responses + self._stt.transcribed

    @property
    def audio_in_seconds(self) -> float:
        return self._audio.total_ms / 1000

    @property
    def audio_out_seconds(self) -> float:
        return self.audio_out_meter.ms / 1000

    @property
    def awaiting_model(self) -> bool:
        """Gemini owes output: a response is open, a cancelled one awaits its end, a tool answer was sent, or (a
        transcription session) the transcript of an utterance it was given."""
        return (self._responding or self._discarding or self._tools.awaiting_continuation
                or self._transcripts_owed)

    def upstream_failed(self, status: int | None, message: str) -> Output:
        """The upstream could not be reached or refused the handshake (or credentials failed)."""
        kind = "invalid_request_error" if status is not None and 400 <= status < 500 else "server_error"
        # 429 is Gemini's quota (RESOURCE_EXHAUSTED): the code OpenAI clients already handle for their own limits.
        self._upstream_fault(kind, "rate_limit_exceeded" if status == 429 else "upstream_connection_failed", message)
        return self._take()

    # ============================================================ plumbing

    def _take(self) -> Output:
        self._maybe_switch()
        out, self._out = self._out, Output()
        return out

    def _emit(self, event: Any) -> None:
        data = codec.serialize(event, self._ids("event_"), self.dialect)
        if data is not None:
            self._out.client.append(data)

    def _error(
        self, code: str | None, message: str, param: str | None = None, event_id: str | None = None,
        kind: str = "invalid_request_error",
    ) -> None:
        self._emit(oa.ErrorEvent(oa.ErrorInfo(kind, code, message, param, event_id)))

    def _send_upstream(self, message: dict[str, Any]) -> None:
        if self._upstream == UPSTREAM_READY:
            self._out.upstream.append(message)
            self._sent(message)
        elif self._queued.add(message, audio_ms_of(message)):
            # Said once per reconnect: the client streams on, unaware that Gemini is not hearing it.
            self._error("audio_dropped", f"The Gemini connection is not ready yet; the relay holds at most "
                        f"{self._queued.limit_ms / 1000:g} s of input audio meanwhile and is dropping the oldest.",
                        kind="server_error")

    def _ensure_upstream(self, response_params: dict[str, Any] | None = None) -> None:
        """Send `setup` as late as possible: only when something needs the model."""
        if self._upstream != UPSTREAM_NONE:
            return
        self._first_response_params = response_params
        self._connect(None)

    def _next_setup(self) -> dict[str, Any]:
        """The `setup` for the next connection, from the effective session; fixes the turn mode and modality."""
        if self.transcribing:
            return self._next_transcription_setup()
        cfg = self.session
        params, self._first_response_params = self._first_response_params, None
        if params and not self._session_touched:
            # A client may shape the session through its first response.create alone (LiteLLM's docs do).
            cfg = attrs.evolve(cfg, kept=dict(cfg.kept))
            try:
                apply_beta(cfg, session_fields(params), "response")
            except ClientError:
                pass
        manual = cfg.turn_detection is None
        if self._upstream_manual is not None and manual != self._upstream_manual:
            self._audio.activity_open = False  # an open manual activity cannot go on under automatic detection
        self._upstream_modality = upstream_modality(cfg.modalities, self._caps)
        self._upstream_manual = manual
        warnings: list[str] = []
        setup = build_setup(cfg, self._caps, self._system_notes, warnings, self._options)
        for warning in warnings:
            log.warning("%s", warning)
        body = setup["setup"]
        body["sessionResumption"] = {}
        compression = self._compression
        if compression is None:
            compression = compression_for_truncation(cfg.kept.get("truncation"))
        if compression is None:
            compression = self._upstream_modality == "AUDIO" or not manual or self._audio.total_ms > 0
        if isinstance(compression, dict):
            window: dict[str, Any] = {}
            if compression.get("target_tokens") is not None:
                window["targetTokens"] = compression["target_tokens"]
            body["contextWindowCompression"] = {"slidingWindow": window}
            if compression.get("trigger_tokens") is not None:
                body["contextWindowCompression"]["triggerTokens"] = compression["trigger_tokens"]
        elif compression:
            body["contextWindowCompression"] = {"slidingWindow": {}}
        return setup

    def _next_transcription_setup(self) -> dict[str, Any]:
        self._model, self._caps, self._options = self._transcriber()
        self._upstream_manual = self.session.turn_detection is None
        self._upstream_modality = "TEXT" if self._caps.text_output else "AUDIO"
        setup = build_transcription_setup(self.session, self._caps)
        setup["setup"]["sessionResumption"] = {}
        return setup

    def _upstream_fault(self, kind: str, code: str, message: str) -> None:
        self._error(code, message, kind=kind)
        if self.transcribing:
            self._fail_transcripts(kind, code, message)
        if self._responding:
            self._response.finish("failed", None, error={"type": kind, "code": code, "message": message})
        self._response = None
        self._discarding = False
        self._queued_request = None
        # The next thing that needs the model opens a fresh upstream and replays the conversation.
        self._upstream = UPSTREAM_NONE
        self._upstream_manual = None
        self._reset_input_audio()
        self._tools = ToolState()  # calls of the dead connection can no longer be answered
        self._queued.clear()
        self._log.clear()
        self._clear_context()
        self._uncovered = False
        self._switch_reason = None
        self.resumption_handle = None
        self._pending_turns = self._replay_turns()

    # ============================================================ dialect

    def _detect_dialect(self, data: dict[str, Any]) -> None:
        if self._dialect_fixed:
            return
        kind = data.get("type")
        ga = False
        if kind == "session.update":
            ga = is_ga_shaped(data.get("session"))
        elif kind == "response.create":
            resp = data.get("response")
            ga = isinstance(resp, dict) and ("output_modalities" in resp or "audio" in resp)
        elif kind == "conversation.item.create":
            item = data.get("item")
            content = item.get("content") if isinstance(item, dict) else None
            ga = isinstance(content, list) and any(
                isinstance(p, dict) and p.get("type") in ("output_text", "output_audio") for p in content
            )
        self.dialect = "ga" if ga else "beta"
        self._dialect_fixed = True

    # ============================================================ client events

    def _client_event(self, ev: oa.ClientEvent) -> None:
        self.events_in[getattr(ev, "TYPE", type(ev).__name__)] += 1
        name = type(ev).__name__
        if self.transcribing and name not in TRANSCRIPTION_EVENTS:
            self._refuse_in_transcription(ev)
        getattr(self, "_on_" + name)(ev)

    def _on_SessionUpdate(self, ev: oa.SessionUpdate) -> None:
        kind = ev.session.get("type") if self.dialect == "ga" else None
        if kind == "transcription":
            self._switch_kind("transcription", "session.update")
        elif kind == "realtime":
            self._switch_kind("realtime", "session.update")
        if self.transcribing:
            self._transcription_update(ev.session)
            return
        tools = ev.session.get("tools")
        if self._caps.function_behavior == "non_blocking_only" and isinstance(tools, list) and any(
                isinstance(t, dict) and t.get("type", "function") == "function" for t in tools):
            raise ClientError(
                "invalid_value",
                f"{self._caps.family} runs function calls only asynchronously (NON_BLOCKING), which the OpenAI "
                "flow of call, output and response.create cannot follow: function tools are not supported on this "
                "model, and the session was not changed.",
                param="session.tools",
            )
        before = self._setup_fields()
        if self.dialect == "ga":
            apply_ga(self.session, ev.session)
        else:
            apply_beta(self.session, ev.session)
        self._session_touched = True
        if self._upstream != UPSTREAM_NONE:
            after = self._setup_fields()
            differ = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
            if differ:
                self._reconfigure(differ, after)
        self._emit(oa.SessionUpdated(self.session))

    def _reconfigure(self, differ: set[str], after: dict[str, Any]) -> None:
        """Apply a changed session to Gemini: `contextUpdate` where the model takes it and only the system
        instruction or tools changed, else a switch to a connection with the new `setup` at a turn boundary."""
        changed = ", ".join(sorted({_OPENAI_NAME.get(k, k) for k in differ}))
        if self._caps.context_update and differ <= {"systemInstruction", "tools"}:
            update: dict[str, Any] = {}
            if "systemInstruction" in differ:
                update["systemInstruction"] = after.get("systemInstruction") or {"role": "user", "parts": []}
            if "tools" in differ:
                # LiveClientContextUpdate wraps the list: {"tools": {"tools": [...]}} (a bare list is refused).
                update["tools"] = {"tools": after.get("tools") or []}
            log.info("session.update changes %s: sent as contextUpdate", changed)
            self._send_upstream({"contextUpdate": update})
            return
        log.info("session.update changes %s: applied by a switch at the next turn boundary", changed)
        self._want_switch("session.update")

    def _setup_fields(self) -> dict[str, Any]:
        setup = build_setup(self.session, self._caps, self._system_notes, options=self._options)["setup"]
        # compare generation settings one by one so the notice can name them
        for key, value in setup.pop("generationConfig").items():
            setup["generationConfig." + key] = value
        return setup

    # ============================================================ upstream messages

    def _upstream_message(self, msg: gm.ServerMessage) -> None:
        kind = ("serverContent" if msg.server_content is not None else "toolCall" if msg.tool_call is not None
                else "sessionResumptionUpdate" if msg.session_resumption_update is not None
                else "usageMetadata" if msg.usage_metadata is not None else "other")
        self.messages_in[kind] += 1
        if msg.setup_complete is not None and self._upstream == UPSTREAM_SETUP_SENT:
            self._upstream = UPSTREAM_READY
            for message in self._queued.take():
                if not self._upstream_manual and is_activity_signal(message):
                    continue  # queued under manual turns; this connection detects activity itself (1007 otherwise)
                self._out.upstream.append(message)
                self._sent(message)
        if msg.usage_metadata is not None:
            self._usage = msg.usage_metadata
        if msg.server_content is not None or msg.tool_call is not None:
            self._unanswered = False
        if msg.session_resumption_update is not None:
            upd = msg.session_resumption_update
            self._resumption_update(upd.new_handle, upd.resumable)
        if msg.go_away is not None:
            self._go_away(msg.go_away.time_left)
        if self.transcribing:
            self._transcription_message(msg)
            return
        sc = msg.server_content
        if msg.tool_call is not None:
            self._continuation_started()
        if sc is None:
            if msg.tool_call is not None:
                self._tool_call(msg.tool_call)
            if msg.tool_call_cancellation is not None:
                self._tool_call_cancellation(msg.tool_call_cancellation)
            return
        if sc.interaction_status is not None and self._caps.idle_signal == "interactionStatus":
            # turnComplete is not idleness on these models: background work would be lost by a switch.
            self._model_busy = sc.interaction_status != "IDLE"
        if sc.input_transcription is not None:
            self._input_transcription(sc.input_transcription)
        if sc.model_turn is not None or sc.output_transcription is not None:
            self._continuation_started()
            self._swallow_turn_complete = False
            r = self._active_for_output()
            if r is not None:
                for part in (sc.model_turn.parts or ()) if sc.model_turn is not None else ():
                    if part.thought:
                        continue
                    if part.text:
                        r.text(part.text)
                    if part.inline_data is not None:
                        try:
                            r.audio(part.inline_data)
                        except ValueError as exc:
                            # One bad chunk is dropped, and said; the response goes on with the next.
                            self._error("upstream_protocol_error", f"Gemini sent an audio chunk the relay "
                                        f"dropped: {exc}", kind="server_error")
                if sc.output_transcription is not None and sc.output_transcription.text:
                    r.transcript(sc.output_transcription.text)
        if msg.tool_call is not None:
            self._tool_call(msg.tool_call)
        if msg.tool_call_cancellation is not None:
            self._tool_call_cancellation(msg.tool_call_cancellation)
        if sc.interrupted or sc.turn_complete:
            self._continuation_ended()
        if sc.interrupted:
            self._speech_started()  # barge-in: the user is speaking (1.9 E)
            self._interrupted()
        if sc.turn_complete:
            self._turn_complete(sc.turn_complete_reason)

# ================================================================ helpers

# setup fields (flattened one level) → the OpenAI session field a client changed
_OPENAI_NAME = {
    "systemInstruction": "instructions",
    "generationConfig.responseModalities": "modalities",
    "outputAudioTranscription": "modalities",
    "generationConfig.speechConfig": "voice",
    "generationConfig.temperature": "temperature",
    "generationConfig.maxOutputTokens": "max_output_tokens",
    "realtimeInputConfig": "turn_detection",
    "inputAudioTranscription": "input_audio_transcription",
    "tools": "tools",
}

