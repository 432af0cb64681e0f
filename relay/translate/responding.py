"""Responses: response.create and response.cancel, and Gemini output turned into responses."""

from __future__ import annotations

from typing import Any

import attrs

from relay.errors import ClientError
from relay.events import openai as oa
from relay.session_config import apply_beta
from relay.translate.base import UPSTREAM_NONE, UPSTREAM_READY
from relay.translate.response import ResponseBuilder, usage_from_gemini

# Private key of a response.create's params: its instructions, to be sent as a note for that reply.
NOTE = "_relay_note"


class Responding:
    """Mixin of `Translator`: response handlers and the output side of a Gemini turn."""

    def _on_ResponseCreate(self, ev: oa.ResponseCreate) -> None:
        params = ev.response or {}
        metadata = params.get("metadata")
        if metadata is not None and not (
            isinstance(metadata, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
        ):
            raise ClientError(
                "invalid_type", "Invalid type for 'response.metadata': expected a map of strings to strings.",
                "response.metadata",
            )
        # Validate the overrides the same way session.update does, without applying them (a response.create that
        # adopts a tool continuation is checked as any other).
        probe = attrs.evolve(self.session, kept={})
        apply_beta(probe, session_fields(params), "response")
        active = self._responding
        if not active:
            self._check_overrides(params, probe)
        if self._adopt_continuation(params):
            return
        if active:
            raise ClientError(
                "conversation_already_has_active_response",
                f"Conversation already has an active response in progress: {self._response.id}. "
                "Wait until the response is finished before creating a new one.",
            )
        note = params.get("instructions")
        if self._upstream != UPSTREAM_NONE and isinstance(note, str) and note and note != self.session.instructions:
            params = {**params, NOTE: note}  # the first response shapes setup instead: its instructions are in it
        if self._queued_request is not None:
            raise ClientError(
                "conversation_already_has_active_response",
                "A response is already queued behind the cancelled one.",
            )
        if not self._had_user_input and not self._pending_turns and self._audio.buffer_ms == 0:
            if self._held is not None:
                raise ClientError(
                    "conversation_already_has_active_response",
                    "A response is already waiting for the first user input.",
                )
            self._held = params
            return
        self._request_response(params)

    def _check_overrides(self, params: dict[str, Any], probe: Any) -> None:
        """Per-response overrides Gemini cannot apply to one response get a precise error (protocols.md 1.7).

        Instructions become a note for the one reply, and a text-only response on an audio session is answered
        in text; everything else `setup` fixes for the connection, so it can only change by `session.update`.
        Before the first connection the first response's fields shape `setup` and nothing is refused."""
        if params.get("conversation") not in (None, "auto"):
            raise ClientError("unsupported_parameter", "Out-of-band responses (conversation: 'none') are not "
                              "supported: a Gemini Live session has one conversation.", "response.conversation")
        if params.get("input") is not None:
            raise ClientError("unsupported_parameter", "response.input (a context of its own for one response) is "
                              "not supported: Gemini Live answers from the whole conversation.", "response.input")
        if self._upstream == UPSTREAM_NONE:
            return
        fixed = [name for name, differs in (
            ("tools", "tools" in params and params["tools"] != self.session.tools),
            ("tool_choice", "tool_choice" in params and params["tool_choice"] != self.session.tool_choice),
            ("voice", probe.voice != self.session.voice),
            ("temperature", probe.temperature != self.session.temperature),
            ("max_output_tokens", probe.max_output_tokens != self.session.max_output_tokens),
            ("reasoning", "reasoning" in params and params["reasoning"] != self.session.kept.get("reasoning")),
            ("output_modalities", ("modalities" in params or "output_modalities" in params)
             and "audio" in probe.modalities and self._upstream_modality == "TEXT"),
        ) if differs]
        if fixed:
            raise ClientError(
                "unsupported_parameter",
                f"Per-response {', '.join(fixed)} cannot be applied: Gemini Live fixes "
                f"{'it' if len(fixed) == 1 else 'them'} for the whole connection. Change the session with "
                "session.update (applied at the next turn boundary) instead.", f"response.{fixed[0]}")

    def _request_response(self, params: dict[str, Any]) -> None:
        # A response.create held for the first input is answered by whichever response comes first.
        self._held = None
        if self._discarding:
            self._queued_request = params
            return
        self._ensure_upstream(params)
        if self._audio.buffer_ms > 0 and (self._audio.activity_open or not self._manual_turns()):
            # Audio the model will hear anyway joins the conversation before the response.
            if self._manual_turns():
                self._commit_audio_item()
            else:
                self._vad_turn_ended()
        self._start_response(params, send=True)

    def _start_response(self, params: dict[str, Any], send: bool) -> None:
        """response.created, and (with `send`) the pending turns that make Gemini answer."""
        self._idle_disarm()
        self.responses += 1
        self._audio.turn_taken = False
        probe = attrs.evolve(self.session, kept={})
        try:
            apply_beta(probe, session_fields(params), "response")
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
        self._response = ResponseBuilder(response, self._ids, self._items, self._emit, self.audio_out_meter)
        self._usage = None
        if send:
            self._tools.create_absorbed = False  # a new generation: the tool turn is over
            turns, self._pending_turns = self._pending_turns, []
            if params.get(NOTE):
                # Gemini has no per-turn instructions: a note for this reply, after the turn it answers.
                turns.append(instructions_note(params[NOTE]))
            self._send_turns(turns)

    def _send_turns(self, turns: list[dict[str, Any]]) -> None:
        self._context_turns(turns)
        if self._audio.activity_open:
            # Manual turn: the held activityEnd is what makes Gemini answer (protocols.md 3.6).
            if turns:
                self._send_upstream({"clientContent": {"turns": turns, "turnComplete": False}})
            self._end_manual_activity()
            return
        if self._caps.text_via_realtime_input and self._upstream == UPSTREAM_READY and turns:
            # Images and recorded audio go the way of the text on these models: as realtime input, before it.
            for blob in (p["inlineData"] for t in turns for p in t["parts"] if "inlineData" in p):
                kind = "video" if blob["mimeType"].startswith("image/") else "audio"
                self._send_upstream({"realtimeInput": {kind: blob}})
            text = "\n".join(p["text"] for t in turns for p in t["parts"] if "text" in p)
            if text or not any("inlineData" in p for t in turns for p in t["parts"]):
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

    def _active_for_output(self) -> ResponseBuilder | None:
        if self._discarding:
            return None
        if not self._responding:
            # Output nobody asked for (Gemini speaking on its own, e.g. after a tool response).
            self._request_response_for_output()
            self._continuation_started()
        return self._response

    def _request_response_for_output(self) -> None:
        self._held = None  # Gemini is already answering: a held response.create has nothing left to wait for
        self._vad_turn_ended()
        self._audio.turn_taken = False
        self._idle_disarm()
        self.responses += 1
        cfg = self.session
        modalities = ("text",) if self._upstream_modality == "TEXT" else cfg.modalities
        response = oa.Response(
            id=self._ids("resp_"), conversation_id=self._conversation_id, modalities=modalities,
            voice=cfg.voice, output_audio_format=cfg.output_audio_format, temperature=cfg.temperature,
            max_output_tokens=cfg.max_output_tokens,
        )
        self._emit(oa.ResponseCreated(response))
        self._response = ResponseBuilder(response, self._ids, self._items, self._emit, self.audio_out_meter)

    def _interrupted(self) -> None:
        if self._discarding:
            self._end_discard()
        elif self._responding:
            self._response.finish("cancelled", "turn_detected", usage=usage_from_gemini(self._usage))
            self._response = None
        self._swallow_turn_complete = True

    def _turn_complete(self, reason: str | None) -> None:
        self._audio.turn_taken = False  # answered or not, the next audio is the next turn
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
        self._finish_response(status, why)

    def _finish_response(self, status: str, reason: str | None = None) -> None:
        if self._responding:
            usage = usage_from_gemini(self._usage)
            self.tokens_in += usage.input_tokens  # cumulative, for the operator's metrics
            self.tokens_out += usage.output_tokens
            self._response.finish(status, reason, usage=usage)
            self._model_reply_done(self._response.response.output)
            self._response = None
            self._idle_arm()
        self._response = None
        self._usage = None

    def _end_discard(self) -> None:
        self._discarding = False
        self._usage = None
        if self._queued_request is not None:
            params, self._queued_request = self._queued_request, None
            self._request_response(params)




def instructions_note(text: str) -> dict[str, Any]:
    """The user turn that carries a response.create's own instructions to Gemini."""
    return {"role": "user", "parts": [{"text": f"Instructions for this reply only: {text}"}]}


def session_fields(params: dict[str, Any]) -> dict[str, Any]:
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


