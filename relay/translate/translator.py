"""The per-connection protocol state machine: OpenAI client frames and Gemini server frames in,
OpenAI events, Gemini messages and actions out.  No I/O, no clock, ids come from a factory.
"""

from __future__ import annotations

import logging
from typing import Any

import attrs

from relay import codec
from relay.codec_gemini import UpstreamProtocolError, parse_server_message
from relay.errors import ClientError
from relay.events import gemini as gm
from relay.events import openai as oa
from relay.ids import IdFactory
from relay.models import ModelCaps
from relay.session_config import Dialect, SessionConfig, apply_beta, apply_ga, is_ga_shaped
from relay.translate.items import ItemStore
from relay.translate.response import ResponseBuilder, usage_from_gemini
from relay.translate.setup import build_setup, upstream_modality

log = logging.getLogger("relay.translate")


@attrs.frozen
class Connect:
    """Open the upstream socket and send this `setup` first (the upstream adds `setup.model`)."""

    setup: dict[str, Any]


@attrs.frozen
class Close:
    """Close the client socket."""

    code: int
    reason: str


@attrs.define
class Output:
    client: list[bytes] = attrs.Factory(list)
    upstream: list[dict[str, Any]] = attrs.Factory(list)
    connect: Connect | None = None
    close: Close | None = None


_UPSTREAM_NONE, _UPSTREAM_SETUP_SENT, _UPSTREAM_READY = "none", "setup_sent", "ready"


class Translator:
    def __init__(
        self,
        ids: IdFactory,
        caps: ModelCaps,
        dialect: Dialect | None = None,
        max_frame_bytes: int = 16 * 1024 * 1024,
    ) -> None:
        self._ids = ids
        self._caps = caps
        self.dialect: Dialect | None = dialect
        self._dialect_fixed = dialect is not None
        self._max_frame = max_frame_bytes
        self.session = SessionConfig(id=ids("sess_"))
        self._conversation_id = ids("conv_")
        self._items = ItemStore()
        self._out = Output()
        self._session_touched = False
        # upstream
        self._upstream = _UPSTREAM_NONE
        self._upstream_modality = "TEXT"
        self._queued: list[dict[str, Any]] = []
        self._pending_turns: list[dict[str, Any]] = []
        self._system_notes: list[str] = []
        self.resumption_handle: str | None = None
        # responses
        self._held: dict[str, Any] | None = None  # response.create before any user input
        self._had_user_input = False
        self._response: ResponseBuilder | None = None
        self._discarding = False  # output of a cancelled turn, until its turnComplete
        self._queued_request: dict[str, Any] | None = None
        self._swallow_turn_complete = False
        self._usage: gm.UsageMetadata | None = None

    # ============================================================ entry points

    def start(self) -> Output:
        self._emit(oa.SessionCreated(self.session))
        return self._take()

    def client_frame(self, frame: str | bytes) -> Output:
        event_id = None
        try:
            if len(frame) > self._max_frame:
                raise ClientError(
                    "message_too_large",
                    f"The event is {len(frame)} bytes; the limit is {self._max_frame} bytes.",
                )
            data = codec.parse_json(frame)
            event_id = codec.event_id_of(data)
            self._detect_dialect(data)
            event = codec.structure_client_event(data)
            self._client_event(event)
        except ClientError as exc:
            self._error(exc.code, exc.message, exc.param, event_id)
        return self._take()

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
        if code in (1007, 1008) or (code is not None and 4000 <= code < 5000):
            kind = "invalid_request_error"
        else:
            kind = "server_error"
        text = f"Gemini closed the connection ({code})" + (f": {reason}" if reason else ".")
        self._upstream_fault(kind, "upstream_closed", text)
        return self._take()

    def upstream_failed(self, status: int | None, message: str) -> Output:
        """The upstream could not be reached or refused the handshake (or credentials failed)."""
        kind = "invalid_request_error" if status is not None and 400 <= status < 500 else "server_error"
        self._upstream_fault(kind, "upstream_connection_failed", message)
        return self._take()

    # ============================================================ plumbing

    def _take(self) -> Output:
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
        if self._upstream == _UPSTREAM_READY:
            self._out.upstream.append(message)
        else:
            self._queued.append(message)

    def _ensure_upstream(self, response_params: dict[str, Any] | None = None) -> None:
        """Send `setup` as late as possible: only when something needs the model."""
        if self._upstream != _UPSTREAM_NONE:
            return
        self._upstream = _UPSTREAM_SETUP_SENT
        cfg = self.session
        if response_params and not self._session_touched:
            # A client may shape the session through its first response.create alone (LiteLLM's docs do).
            cfg = attrs.evolve(cfg, kept=dict(cfg.kept))
            try:
                apply_beta(cfg, _session_fields(response_params), "response")
            except ClientError:
                pass
        self._upstream_modality = upstream_modality(cfg.modalities, self._caps)
        self._out.connect = Connect(build_setup(cfg, self._caps, self._system_notes))

    def _upstream_fault(self, kind: str, code: str, message: str) -> None:
        self._error(code, message, kind=kind)
        if self._response is not None and not self._response.finished:
            self._response.finish("failed", None, error={"type": kind, "code": code, "message": message})
        self._response = None
        self._discarding = False
        self._queued_request = None
        # The next thing that needs the model opens a fresh upstream and replays the conversation.
        self._upstream = _UPSTREAM_NONE
        self._queued.clear()
        self._pending_turns = [t for t in (_turn_of(i) for i in self._items) if t is not None]

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
        handler = getattr(self, "_on_" + type(ev).__name__)
        handler(ev)

    def _on_SessionUpdate(self, ev: oa.SessionUpdate) -> None:
        before = self._setup_fields()
        if self.dialect == "ga":
            apply_ga(self.session, ev.session)
        else:
            apply_beta(self.session, ev.session)
        self._session_touched = True
        notice = None
        if self._upstream != _UPSTREAM_NONE:
            after = self._setup_fields()
            differ = [k for k in before.keys() | after.keys() if before.get(k) != after.get(k)]
            changed = sorted({_OPENAI_NAME.get(k, k) for k in differ})
            if changed:
                notice = (
                    "Gemini Live fixes its configuration when the model session starts; the change to "
                    + ", ".join(changed)
                    + " applies from the relay's next upstream connection."
                )
                log.info("session.update after setup changes %s", ", ".join(changed))
        self._emit(oa.SessionUpdated(self.session, notice))

    def _setup_fields(self) -> dict[str, Any]:
        setup = build_setup(self.session, self._caps, self._system_notes)["setup"]
        # compare generation settings one by one so the notice can name them
        for key, value in setup.pop("generationConfig").items():
            setup["generationConfig." + key] = value
        return setup

    def _on_TranscriptionSessionUpdate(self, ev: oa.TranscriptionSessionUpdate) -> None:
        raise ClientError(
            "unsupported_event",
            "Transcription sessions are not supported by this relay; use a realtime session.",
        )

    def _on_ConversationItemCreate(self, ev: oa.ConversationItemCreate) -> None:
        item = ev.item
        if item.type == "message":
            self._check_message(item)
            turn = _turn_of(item)
            if item.role == "system" and self._upstream == _UPSTREAM_NONE:
                # Before setup a system message can still join the system instruction.
                self._system_notes.append(_text_of(item))
                turn = None
        elif item.type in ("function_call", "function_call_output"):
            raise ClientError(
                "unsupported_item_type",
                f"Items of type '{item.type}' are not supported yet.",
                "item.type",
            )
        else:
            raise ClientError(
                "invalid_value",
                f"Invalid value: '{item.type}'. Supported values are: 'message', 'function_call', "
                "'function_call_output'.",
                "item.type",
            )
        if ev.previous_item_id not in (None, self._items.last_id()):
            # Gemini's context is append-only; say so instead of silently reordering.
            log.info("previous_item_id %r ignored: items are appended", ev.previous_item_id)
        if item.id is None:
            item.id = self._ids("item_")
        elif self._items.get(item.id) is not None:
            raise ClientError("duplicate_item_id", f"Item with id '{item.id}' already exists.", "item.id")
        item.object = "realtime.item"
        item.status = "completed"
        previous = self._items.last_id()
        self._items.add(item)
        self._emit(oa.ConversationItemAdded(item, previous))
        self._emit(oa.ConversationItemDone(item, previous))
        if turn is not None:
            self._pending_turns.append(turn)
        if item.role == "user":
            self._user_input()

    def _check_message(self, item: oa.Item) -> None:
        if item.role not in ("user", "assistant", "system"):
            raise ClientError(
                "invalid_value",
                f"Invalid value: '{item.role}'. Supported values are: 'user', 'assistant', 'system'.",
                "item.role",
            )
        allowed = {
            "user": ("input_text", "input_audio"),
            "system": ("input_text",),
            "assistant": ("text", "output_text"),
        }[item.role]
        for i, part in enumerate(item.content or ()):
            if part.type not in allowed:
                raise ClientError(
                    "invalid_value",
                    f"Invalid value: '{part.type}'. Supported values for {item.role} content are: "
                    + ", ".join(f"'{a}'" for a in allowed) + ".",
                    f"item.content[{i}].type",
                )
            if part.type == "output_text":
                part.type = "text"
        if not item.content:
            raise ClientError(
                "missing_required_parameter", "Missing required parameter: 'item.content'.", "item.content"
            )

    def _on_InputText(self, ev: oa.InputText) -> None:
        answers_held = self._held is not None
        item = oa.Item(type="message", role="user", content=[oa.ContentPart(type="input_text", text=ev.text)])
        self._on_ConversationItemCreate(oa.ConversationItemCreate(item=item))
        if not answers_held:
            self._on_ResponseCreate(oa.ResponseCreate())

    def _user_input(self) -> None:
        self._had_user_input = True
        if self._held is not None:
            held, self._held = self._held, None
            self._request_response(held)

    def _on_ResponseCreate(self, ev: oa.ResponseCreate) -> None:
        params = ev.response or {}
        if self._response is not None and not self._response.finished:
            raise ClientError(
                "conversation_already_has_active_response",
                f"Conversation already has an active response in progress: {self._response.id}. "
                "Wait until the response is finished before creating a new one.",
            )
        # Validate the overrides the same way session.update does, without applying them.
        probe = attrs.evolve(self.session, kept={})
        apply_beta(probe, _session_fields(params), "response")
        if self._queued_request is not None:
            raise ClientError(
                "conversation_already_has_active_response",
                "A response is already queued behind the cancelled one.",
            )
        if not self._had_user_input and not self._pending_turns:
            if self._held is not None:
                raise ClientError(
                    "conversation_already_has_active_response",
                    "A response is already waiting for the first user input.",
                )
            self._held = params
            return
        self._request_response(params)

    def _request_response(self, params: dict[str, Any]) -> None:
        if self._discarding:
            self._queued_request = params
            return
        self._ensure_upstream(params)
        probe = attrs.evolve(self.session, kept={})
        fields = _session_fields(params)
        try:
            apply_beta(probe, fields, "response")
        except ClientError:
            probe = self.session
        modalities = probe.modalities
        if self._upstream_modality == "TEXT":
            modalities = ("text",)  # a TEXT upstream session cannot speak
        metadata = params.get("metadata") if isinstance(params.get("metadata"), dict) else None
        response = oa.Response(
            id=self._ids("resp_"), conversation_id=self._conversation_id, modalities=modalities,
            voice=probe.voice, output_audio_format=probe.output_audio_format, temperature=probe.temperature,
            max_output_tokens=probe.max_output_tokens, metadata=metadata,
        )
        self._emit(oa.ResponseCreated(response))
        self._response = ResponseBuilder(response, self._ids, self._items, self._emit)
        self._usage = None
        turns, self._pending_turns = self._pending_turns, []
        self._send_turns(turns)

    def _send_turns(self, turns: list[dict[str, Any]]) -> None:
        if self._caps.text_via_realtime_input and self._upstream == _UPSTREAM_READY and turns:
            text = "\n".join(p["text"] for t in turns for p in t["parts"] if "text" in p)
            self._send_upstream({"realtimeInput": {"text": text}})
            return
        content: dict[str, Any] = {"turnComplete": True}
        if turns:
            content = {"turns": turns, "turnComplete": True}
        self._send_upstream({"clientContent": content})

    def _on_ResponseCancel(self, ev: oa.ResponseCancel) -> None:
        r = self._response
        if r is None or r.finished or (ev.response_id is not None and ev.response_id != r.id):
            raise ClientError("response_cancel_not_active", "Cancellation failed: no active response found.")
        r.finish("cancelled", "client_cancelled", usage=usage_from_gemini(self._usage))
        self._response = None
        # Gemini has no cancel: drop the rest of this turn's output when it comes.
        self._discarding = True

    def _on_ConversationItemRetrieve(self, ev: oa.ConversationItemRetrieve) -> None:
        item = self._items.get(ev.item_id)
        if item is None:
            raise ClientError("item_not_found", f"Item with id '{ev.item_id}' not found.", "item_id")
        self._emit(oa.ConversationItemRetrieved(item))

    def _on_ConversationItemDelete(self, ev: oa.ConversationItemDelete) -> None:
        if not self._items.delete(ev.item_id):
            raise ClientError("item_not_found", f"Item with id '{ev.item_id}' not found.", "item_id")
        self._emit(oa.ConversationItemDeleted(ev.item_id))

    def _on_ConversationItemTruncate(self, ev: oa.ConversationItemTruncate) -> None:
        item = self._items.get(ev.item_id)
        if item is None:
            raise ClientError("item_not_found", f"Item with id '{ev.item_id}' not found.", "item_id")
        if item.role != "assistant" or not item.content or item.content[0].type != "audio":
            raise ClientError(
                "invalid_value", "Only assistant messages with audio can be truncated.", "item_id"
            )
        self._emit(oa.ConversationItemTruncated(ev.item_id, ev.content_index, ev.audio_end_ms))

    def _on_InputAudioBufferAppend(self, ev: oa.InputAudioBufferAppend) -> None:
        raise ClientError("unsupported_event", "Audio input is not supported yet.")

    def _on_InputAudioBufferCommit(self, ev: oa.InputAudioBufferCommit) -> None:
        raise ClientError(
            "input_audio_buffer_commit_empty",
            "Error committing input audio buffer: buffer too small. Expected at least 100ms of audio, "
            "but buffer only has 0.00ms of audio.",
        )

    def _on_InputAudioBufferClear(self, ev: oa.InputAudioBufferClear) -> None:
        self._emit(oa.InputAudioBufferCleared())

    def _on_OutputAudioBufferClear(self, ev: oa.OutputAudioBufferClear) -> None:
        pass  # WebRTC/SIP only: nothing is buffered on a WebSocket

    # ============================================================ upstream messages

    def _upstream_message(self, msg: gm.ServerMessage) -> None:
        if msg.setup_complete is not None and self._upstream == _UPSTREAM_SETUP_SENT:
            self._upstream = _UPSTREAM_READY
            queued, self._queued = self._queued, []
            self._out.upstream.extend(queued)
        if msg.usage_metadata is not None:
            self._usage = msg.usage_metadata
        if msg.session_resumption_update is not None:
            upd = msg.session_resumption_update
            if upd.resumable and upd.new_handle:
                self.resumption_handle = upd.new_handle
        if msg.go_away is not None:
            log.info("upstream goAway, time left %s", msg.go_away.time_left)
        sc = msg.server_content
        if sc is None:
            return
        if sc.model_turn is not None or sc.output_transcription is not None:
            self._swallow_turn_complete = False
            r = self._active_for_output()
            if r is not None:
                for part in (sc.model_turn.parts or ()) if sc.model_turn is not None else ():
                    if part.thought:
                        continue
                    if part.text:
                        r.text(part.text)
                    if part.inline_data is not None:
                        r.audio(part.inline_data)
                if sc.output_transcription is not None and sc.output_transcription.text:
                    r.transcript(sc.output_transcription.text)
        if sc.interrupted:
            self._interrupted()
        if sc.turn_complete:
            self._turn_complete(sc.turn_complete_reason)

    def _active_for_output(self) -> ResponseBuilder | None:
        if self._discarding:
            return None
        if self._response is None or self._response.finished:
            # Output nobody asked for (Gemini speaking on its own, e.g. after a tool response).
            self._request_response_for_output()
        return self._response

    def _request_response_for_output(self) -> None:
        cfg = self.session
        modalities = ("text",) if self._upstream_modality == "TEXT" else cfg.modalities
        response = oa.Response(
            id=self._ids("resp_"), conversation_id=self._conversation_id, modalities=modalities,
            voice=cfg.voice, output_audio_format=cfg.output_audio_format, temperature=cfg.temperature,
            max_output_tokens=cfg.max_output_tokens,
        )
        self._emit(oa.ResponseCreated(response))
        self._response = ResponseBuilder(response, self._ids, self._items, self._emit)

    def _interrupted(self) -> None:
        if self._discarding:
            self._end_discard()
        elif self._response is not None and not self._response.finished:
            self._response.finish("cancelled", "turn_detected", usage=usage_from_gemini(self._usage))
            self._response = None
        self._swallow_turn_complete = True

    def _turn_complete(self, reason: str | None) -> None:
        if self._discarding:
            self._end_discard()
            return
        if self._swallow_turn_complete:
            self._swallow_turn_complete = False
            return
        r = self._response
        if r is None or r.finished:
            return  # an empty turn (e.g. after a tool call): nothing to tell the client
        status, why = "completed", None
        if (reason and "SAFETY" in reason) or reason in ("PROHIBITED_INPUT_CONTENT", "RESPONSE_REJECTED"):
            status, why = "incomplete", "content_filter"
        elif reason == "MAX_TOKENS":
            status, why = "incomplete", "max_output_tokens"
        elif reason == "MALFORMED_FUNCTION_CALL":
            status, why = "failed", None
        r.finish(status, why, usage=usage_from_gemini(self._usage))
        self._response = None
        self._usage = None

    def _end_discard(self) -> None:
        self._discarding = False
        self._usage = None
        if self._queued_request is not None:
            params, self._queued_request = self._queued_request, None
            self._request_response(params)


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


def _session_fields(params: dict[str, Any]) -> dict[str, Any]:
    """The parts of a response.create that look like session fields."""
    keys = ("modalities", "output_modalities", "instructions", "voice", "output_audio_format", "temperature",
            "max_response_output_tokens", "max_output_tokens", "audio")
    out = {k: v for k, v in params.items() if k in keys}
    if "audio" in out:
        audio = out.pop("audio")
        if isinstance(audio, dict) and isinstance(audio.get("output"), dict):
            if "voice" in audio["output"]:
                out["voice"] = audio["output"]["voice"]
    if "output_modalities" in out:
        out["modalities"] = out.pop("output_modalities")
        if isinstance(out["modalities"], list) and "audio" in out["modalities"]:
            out["modalities"] = ["text", "audio"]
    if "max_output_tokens" in out:
        out["max_response_output_tokens"] = out.pop("max_output_tokens")
    return out


def _text_of(item: oa.Item) -> str:
    return "".join(p.text or p.transcript or "" for p in item.content or ())


def _turn_of(item: oa.Item) -> dict[str, Any] | None:
    """An item as a Gemini `clientContent` turn (history replay uses this too)."""
    if item.type != "message":
        return None
    parts: list[dict[str, Any]] = []
    for p in item.content or ():
        if p.type in ("input_text", "text", "output_text") and p.text:
            parts.append({"text": p.text})
        elif p.type == "input_audio" and p.audio:
            parts.append({"inlineData": {"mimeType": "audio/pcm;rate=24000", "data": p.audio}})
        elif p.type in ("audio", "input_audio") and p.transcript:
            parts.append({"text": p.transcript})
    if not parts:
        return None
    if item.role == "system":
        parts = [{"text": "System instruction: " + "".join(p.get("text", "") for p in parts)}]
    return {"role": "model" if item.role == "assistant" else "user", "parts": parts}
