"""Translation sessions: OpenAI's realtime translation socket (`/v1/realtime/translations`, the SDK's
`client.realtime.translations.connect()`) over Gemini's live translation model, sans-IO like `Translator`.

A translation session is one continuous stream, not a conversation: the client appends 24 kHz PCM16, the
model speaks the translation as it goes.  `session.update` sets `audio.output.language` (Gemini's
`translationConfig.targetLanguageCode`, fixed at `setup`) and, optionally, `audio.input.transcription`
(Gemini's input transcription, for `session.input_transcript.delta`).  Out: Gemini's `outputTranscription`
becomes `session.output_transcript.delta`, its audio `session.output_audio.delta`.

Long sessions work as in a conversation, on a smaller scale: every `setup` asks for resumption handles; after
`goAway`, or a change of language, the connection is switched between two translated segments (Gemini's
`turnComplete`), resumed with the newest handle and given again the speech no finished segment covers
(`SpeechLog`); a connection that drops is resumed at once.  `session.close` lets the speech already appended
be translated first.
"""

from __future__ import annotations

import base64
import logging
import re
from collections import Counter, deque
from typing import Any

import attrs
import orjson

from relay.audio import InputConverter, OutputConverter
from relay.codec_gemini import UpstreamProtocolError, parse_server_message
from relay.errors import ClientError, invalid_type
from relay.events import gemini as gm
from relay.ids import IdFactory
from relay.models import GeminiOptions, ModelCaps
from relay.translate.base import UPSTREAM_NONE, UPSTREAM_READY, UPSTREAM_SETUP_SENT, Close, Connect, Output
from relay.translate.frames import ClientFrames
from relay.translate.idle import loud
from relay.translate.response import Meter
from relay.translate.resumption import DEFAULT_SWITCH_BUFFER_MS, RESUMABLE_CLOSES, Buffer, audio_ms_of

log = logging.getLogger("relay.translate")

OUTPUT_RATE = 24000
# ISO 639-1: the primary subtag of a target language (Gemini takes BCP-47 codes such as "es", "pt-BR", "zh-Hant").
ISO_639_1 = frozenset("""
aa ab ae af ak am an ar as av ay az ba be bg bh bi bm bn bo br bs ca ce ch co cr cs cu cv cy da de dv dz ee el en
eo es et eu fa ff fi fj fo fr fy ga gd gl gn gu gv ha he hi ho hr ht hu hy hz ia id ie ig ii ik io is it iu ja jv
ka kg ki kj kk kl km kn ko kr ks ku kv kw ky la lb lg li ln lo lt lu lv mg mh mi mk ml mn mr ms mt my na nb nd ne
ng nl nn no nr nv ny oc oj om or os pa pi pl ps pt qu rm rn ro ru rw sa sc sd se sg si sk sl sm sn so sq sr ss st
su sv sw ta te tg th ti tk tl tn to tr ts tt tw ty ug uk ur uz ve vi vo wa wo xh yi yo za zh zu fil yue cmn
""".split())
_BCP47 = re.compile(r"^([A-Za-z]{2,3})(-[A-Za-z0-9]{2,8})*$")
CLIENT_TYPES = ("session.update", "session.input_audio_buffer.append", "session.close")


def check_language(value: Any, param: str) -> str:
    """A BCP-47 target language whose primary subtag is an ISO 639 language; a ClientError otherwise."""
    if not isinstance(value, str):
        raise invalid_type(param, "a string", value)
    match = _BCP47.match(value)
    if match is None or match.group(1).lower() not in ISO_639_1:
        raise ClientError("invalid_value", f"Invalid '{param}': '{value[:40]}' is not a supported language code; use "
                          "a BCP-47 code such as 'es', 'fr', 'pt-BR' or 'zh-Hant'.", param)
    return value


@attrs.define
class TranslationConfig:
    """The session as `session.created` / `.updated` show it (openai.types.realtime.RealtimeTranslationSession)."""

    id: str
    model: str
    expires_at: int
    language: str | None = None
    transcription: dict[str, Any] | None = None
    noise_reduction: dict[str, Any] | None = None

    def render(self) -> dict[str, Any]:
        return {
            "id": self.id, "type": "translation", "object": "realtime.translation_session", "model": self.model,
            "expires_at": self.expires_at,
            "audio": {"input": {"transcription": self.transcription, "noise_reduction": self.noise_reduction},
                      "output": {"language": self.language}},
        }


# Quiet audio that separates two segments: Gemini ends a segment at a pause at least this long.
PAUSE_MS = 200.0
# What session.close appends to flush the last segment: longer than any end-of-speech silence Gemini waits for.
FLUSH_SILENCE = base64.b64encode(bytes(48 * 1500)).decode()  # 1.5 s of 24 kHz pcm16


class SpeechLog:
    """Audio sent on the current connection that a resumed connection must be given again.

    A resumption handle restores what the model has translated, not speech it was still hearing, so the log is
    not emptied by handles: when Gemini finishes a segment (`turnComplete`), the oldest speech in the log and the
    pause after it are dropped, and what follows (the next segment's beginning, if the speaker went on) is kept.
    Bounded like the conversation's switch buffer: past `limit_ms` the oldest audio goes, counted."""

    def __init__(self, limit_ms: float) -> None:
        self.limit_ms = limit_ms
        self.entries: deque[tuple[dict[str, Any], float, bool]] = deque()  # (message, ms, loud)
        self.ms = 0.0
        self.speech = 0  # loud entries: speech no finished segment covers yet
        self.dropped = 0

    def add(self, message: dict[str, Any]) -> None:
        ms = audio_ms_of(message)
        is_loud = loud(message["realtimeInput"]["audio"]["data"]) if ms else False
        self.entries.append((message, ms, is_loud))
        self.ms += ms
        self.speech += is_loud
        while self.ms > self.limit_ms and self.entries:
            self._pop()
            self.dropped += 1

    def _pop(self) -> None:
        _, ms, is_loud = self.entries.popleft()
        self.ms -= ms
        self.speech -= is_loud

    def trim(self) -> None:
        """A segment is finished: drop the oldest speech and the pause that ended it (Gemini finishes segments in
        order); audio with no speech goes too.  Speech with no pause after it yet is kept."""
        spoke, quiet, cut = False, 0.0, len(self.entries)
        for index, (_, ms, is_loud) in enumerate(self.entries):
            if is_loud:
                spoke, quiet = True, 0.0
            else:
                quiet += ms
                if spoke and quiet >= PAUSE_MS:
                    cut = index + 1
                    break
        else:
            if spoke:
                return
        for _ in range(cut):
            self._pop()

    def take(self) -> list[dict[str, Any]]:
        out = [message for message, _, _ in self.entries]
        self.clear()
        return out

    def clear(self) -> None:
        self.entries.clear()
        self.ms = 0.0
        self.speech = 0


class LiveTranslation(ClientFrames):
    """The translation socket's state machine: the same entry points as `Translator`, for `relay.session`."""

    dialect = "ga"  # the translation socket exists in GA only

    def __init__(self, ids: IdFactory, caps: ModelCaps, *, model: str, expires_at: int,
                 max_frame_bytes: int = 16 * 1024 * 1024, switch_buffer_ms: float = DEFAULT_SWITCH_BUFFER_MS,
                 options: GeminiOptions | None = None) -> None:
        self._ids = ids
        self._caps = caps
        self._options = options or GeminiOptions()
        self._max_frame = max_frame_bytes
        self.session = TranslationConfig(ids("sess_"), model, expires_at)
        self._out = Output()
        self._upstream = UPSTREAM_NONE
        self._input = InputConverter("pcm16")
        self._output = OutputConverter("pcm16")
        self.resumption_handle: str | None = None
        self._log = SpeechLog(switch_buffer_ms)  # audio sent that no finished segment covers
        self._queued = Buffer(switch_buffer_ms)  # audio made while no connection was ready
        self._switch_reason: str | None = None
        self._segment_open = False  # Gemini is translating: output came since its last turnComplete
        self._closing = False  # session.close: end once the segment in flight is done
        self.switches = 0
        # what the shell and the metrics read
        self.events_in: Counter[str] = Counter()
        self.messages_in: Counter[str] = Counter()
        self.audio_out_meter = Meter()
        self.input_ms = 0.0
        self.oversized = 0
        self.tokens_in = self.tokens_out = 0
        self.responses = 0  # translated segments
        self.idle_armed = False
        self.idle_epoch = 0
        self.idle_timeout_ms: int | None = None

    # ============================================================ what the shell reads

    @property
    def turns(self) -> int:
        """Segments translated, for the session's end line."""
        return self.responses

    @property
    def audio_in_seconds(self) -> float:
        return self.input_ms / 1000

    @property
    def audio_out_seconds(self) -> float:
        return self.audio_out_meter.ms / 1000

    @property
    def audio_dropped(self) -> int:
        return self._log.dropped + self._queued.dropped

    @property
    def awaiting_model(self) -> bool:
        """Only a close waits for Gemini (for the speech it was given): a stream of silence owes no output."""
        return self._closing and self._owed

    @property
    def _owed(self) -> bool:
        """Gemini is translating, or has been given speech it has not finished (or will be given it)."""
        return (self._segment_open or self._log.speech > 0 or self._queued.audio_ms > 0) \
            and self._upstream != UPSTREAM_NONE

    @property
    def at_rest(self) -> bool:
        return not self._segment_open

    @property
    def response_progress(self) -> tuple[int, bool]:
        return 0, False

    def idle_timeout(self, epoch: int) -> Output:
        return self._take()

    # ============================================================ entry points

    def start(self) -> Output:
        self._emit("session.created", session=self.session.render())
        return self._take()

    def upstream_frame(self, frame: str | bytes) -> Output:
        try:
            msg = parse_server_message(frame)
        except UpstreamProtocolError as exc:
            self._fault("server_error", "upstream_protocol_error", str(exc))
            return self._take()
        self._upstream_message(msg)
        return self._take()

    def upstream_closed(self, code: int | None, reason: str) -> Output:
        if code in RESUMABLE_CLOSES and self.resumption_handle is not None and self._upstream == UPSTREAM_READY:
            log.info("upstream closed (%s %s): resuming the translation", code, reason)
            self._segment_open = False
            self._open_next()
            return self._take()
        kind = "invalid_request_error" if code in (1007, 1008) or (code is not None and 4000 <= code < 5000) \
            else "server_error"
        self._fault(kind, "upstream_closed", f"Gemini closed the connection ({code})" + (f": {reason}" if reason
                                                                                        else "."))
        return self._take()

    def upstream_stalled(self, seconds: float) -> Output:
        if self._closing:
            self._closed()
            return self._take()
        self._fault("server_error", "upstream_timeout", f"Gemini sent nothing for {seconds:g} s; the relay closed "
                    "that connection (the next audio opens a new one).")
        return self._take()

    def upstream_failed(self, status: int | None, message: str) -> Output:
        kind = "invalid_request_error" if status is not None and 400 <= status < 500 else "server_error"
        self._fault(kind, "rate_limit_exceeded" if status == 429 else "upstream_connection_failed", message)
        return self._take()

    def resume_failed(self, why: str) -> Output:
        log.warning("resumption failed (%s); the translation goes on in a fresh Gemini session", why)
        self.resumption_handle = None
        self._connect()  # what was queued for the resumed connection goes to the fresh one
        return self._take()

    # ============================================================ client events

    def _client_data(self, data: dict[str, Any]) -> None:
        kind = data.get("type")
        if kind is None:
            raise ClientError("missing_required_parameter", "The 'type' field is missing.", "type")
        if kind not in CLIENT_TYPES:
            raise ClientError("invalid_value", f"Invalid value: '{str(kind)[:100]}'. Supported values are: "
                              + ", ".join(f"'{k}'" for k in CLIENT_TYPES) + ".", "type")
        self.events_in[kind] += 1
        if kind == "session.update":
            self._on_session_update(data.get("session"))
        elif kind == "session.input_audio_buffer.append":
            self._on_append(data.get("audio"))
        else:
            self._on_close()

    def _on_session_update(self, patch: Any) -> None:
        if not isinstance(patch, dict):
            raise invalid_type("session", "an object", patch)
        cfg = self.session
        changes: dict[str, Any] = {}
        for key, value in patch.items():
            if key == "audio":
                changes.update(_audio_patch(value))
            elif key == "model" and value != cfg.model:
                raise ClientError("invalid_value", "A translation session's model is fixed when it is created; "
                                  "connect again to use another.", "session.model")
            elif key == "type" and value != "translation":
                raise ClientError("invalid_value", f"Invalid value: '{value}'. Supported values are: 'translation'.",
                                  "session.type")
            elif key not in ("model", "type", "id", "object", "expires_at"):
                raise ClientError("unknown_parameter", f"Unknown parameter: 'session.{key}'.", f"session.{key}")
        before = (cfg.language, cfg.transcription is not None)
        for key, value in changes.items():
            setattr(cfg, key, value)
        if self._upstream != UPSTREAM_NONE and (cfg.language, cfg.transcription is not None) != before:
            log.info("session.update changes the translation's setup: switching connections")
            self._switch_reason = "session.update"
            self._maybe_switch()
        self._emit("session.updated", session=cfg.render())

    def _on_append(self, audio: Any) -> None:
        if not isinstance(audio, str):
            raise invalid_type("audio", "a base64 string", audio)
        if self.session.language is None:
            raise ClientError("missing_required_parameter", "Set the target language first: session.update with "
                              "session.audio.output.language (e.g. 'es'); this audio was not translated.",
                              "session.audio.output.language")
        try:
            ms = self._input.duration_ms(audio)
            chunks = self._input.convert(audio)
        except ValueError as exc:
            raise ClientError("invalid_value", f"Invalid 'audio': {exc}", "audio") from None
        if not chunks:
            return
        self.input_ms += ms
        if self._upstream == UPSTREAM_NONE:
            self._connect()
        for chunk in chunks:
            self._send({"realtimeInput": {"audio": {"mimeType": self._input.mime_type, "data": chunk}}})

    def _on_close(self) -> None:
        """Gemini's translation of the speech already appended comes first, as OpenAI flushes pending input: the
        relay appends a pause long enough for Gemini's voice activity detection to end the last segment, and
        closes once every segment is done (the shell's response_timeout bounds the wait)."""
        if self._closing:
            return
        self._closing = True
        if not self._owed:
            self._closed()
            return
        for chunk in self._input.convert(FLUSH_SILENCE):
            self._send({"realtimeInput": {"audio": {"mimeType": self._input.mime_type, "data": chunk}}})

    def _closed(self) -> None:
        self._emit("session.closed")
        self._out.close = Close(1000, "session closed")

    # ============================================================ Gemini

    def _upstream_message(self, msg: gm.ServerMessage) -> None:
        self.messages_in["serverContent" if msg.server_content is not None else "other"] += 1
        if msg.setup_complete is not None and self._upstream == UPSTREAM_SETUP_SENT:
            self._upstream = UPSTREAM_READY
            for message in self._queued.take():
                self._out.upstream.append(message)
                self._log.add(message)
        if msg.usage_metadata is not None:
            u = msg.usage_metadata
            self.tokens_in += u.prompt_token_count or 0
            self.tokens_out += u.response_token_count or u.candidates_token_count or 0
        upd = msg.session_resumption_update
        if upd is not None and upd.resumable and upd.new_handle:
            self.resumption_handle = upd.new_handle
        if msg.go_away is not None:
            log.info("upstream goAway (time left %s): switching between segments", msg.go_away.time_left)
            self._switch_reason = "goAway"
        sc = msg.server_content
        if sc is not None:
            self._content(sc)
        self._maybe_switch()

    def _content(self, sc: gm.ServerContent) -> None:
        elapsed_out = int(self.audio_out_meter.ms)
        tr = sc.input_transcription
        if tr is not None and tr.text and self.session.transcription is not None:
            self._emit("session.input_transcript.delta", delta=tr.text,
                       elapsed_ms=int(self.input_ms // 200 * 200))
        if sc.output_transcription is not None and sc.output_transcription.text:
            self._segment_open = True
            self._emit("session.output_transcript.delta", delta=sc.output_transcription.text, elapsed_ms=elapsed_out)
        for part in (sc.model_turn.parts or ()) if sc.model_turn is not None else ():
            blob = part.inline_data
            if blob is None or not blob.data:
                continue
            self._segment_open = True
            try:
                data = self._output.convert(blob.data, blob.mime_type)
            except ValueError as exc:
                self._error("upstream_protocol_error", f"Gemini sent an audio chunk the relay dropped: {exc}",
                            kind="server_error")
                continue
            if data:
                start = int(self.audio_out_meter.ms)
                self.audio_out_meter.ms += self._output.duration_ms(data)
                self._emit("session.output_audio.delta", delta=data, format="pcm16", sample_rate=OUTPUT_RATE,
                           channels=1, elapsed_ms=start)
        if sc.turn_complete:
            if self._segment_open:
                self.responses += 1
            self._segment_open = False
            self._log.trim()
            if self._closing and not self._owed:
                self._closed()

    # ============================================================ connections

    def _connect(self) -> None:
        """Ask the shell for a connection: resumed with the newest handle when there is one."""
        gen: dict[str, Any] = {"responseModalities": ["AUDIO"],
                               "translationConfig": {"targetLanguageCode": self.session.language}}
        setup: dict[str, Any] = {"generationConfig": gen, "outputAudioTranscription": {}, "sessionResumption": {}}
        if self.session.transcription is not None:
            setup["inputAudioTranscription"] = {}
        if self.resumption_handle is not None:
            setup["sessionResumption"]["handle"] = self.resumption_handle
        self._upstream = UPSTREAM_SETUP_SENT
        self._out.connect = Connect({"setup": setup}, resume=self.resumption_handle is not None)

    def _maybe_switch(self) -> None:
        if self._switch_reason is None or self._segment_open or self._upstream != UPSTREAM_READY:
            return
        log.info("switching the translation's upstream connection (%s)", self._switch_reason)
        self._switch_reason = None
        self._open_next()

    def _open_next(self) -> None:
        """The next connection, given first the audio the handle does not cover."""
        self.switches += 1
        resend = self._log.take()
        self._connect()
        for message in resend:
            self._queued.add(message, audio_ms_of(message))

    def _send(self, message: dict[str, Any]) -> None:
        ms = audio_ms_of(message)
        if self._upstream == UPSTREAM_READY:
            self._out.upstream.append(message)
            self._log.add(message)
        elif self._queued.add(message, ms):
            self._error("audio_dropped", f"The Gemini connection is not ready yet; the relay holds at most "
                        f"{self._queued.limit_ms / 1000:g} s of input audio meanwhile and is dropping the oldest.",
                        kind="server_error")

    def _fault(self, kind: str, code: str, message: str) -> None:
        self._error(code, message, kind=kind)
        self._upstream = UPSTREAM_NONE
        self.resumption_handle = None
        self._segment_open = False
        self._switch_reason = None
        self._log.clear()
        self._queued.clear()
        self._output.reset()
        if self._closing:
            self._closed()

    # ============================================================ plumbing

    def _take(self) -> Output:
        out, self._out = self._out, Output()
        return out

    def _emit(self, kind: str, **fields: Any) -> None:
        self._out.client.append(orjson.dumps({"type": kind, "event_id": self._ids("event_"), **fields}))

    def _error(self, code: str | None, message: str, param: str | None = None, event_id: str | None = None,
               kind: str = "invalid_request_error") -> None:
        self._emit("error", error={"type": kind, "code": code, "message": message, "param": param,
                                   "event_id": event_id})


def _audio_patch(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise invalid_type("session.audio", "an object", value)
    out: dict[str, Any] = {}
    for side, fields in value.items():
        if side not in ("input", "output"):
            raise ClientError("unknown_parameter", f"Unknown parameter: 'session.audio.{side}'.",
                              f"session.audio.{side}")
        if fields is None:
            continue
        if not isinstance(fields, dict):
            raise invalid_type(f"session.audio.{side}", "an object", fields)
        for key, v in fields.items():
            param = f"session.audio.{side}.{key}"
            if side == "output" and key == "language":
                out["language"] = check_language(v, param)
            elif side == "input" and key == "transcription":
                if v is not None and not (isinstance(v, dict) and isinstance(v.get("model"), str)):
                    raise ClientError("invalid_value", f"'{param}' must be null or an object with a 'model' string.",
                                      param)
                out["transcription"] = dict(v) if v is not None else None
            elif side == "input" and key == "noise_reduction":
                # accepted and shown; Gemini has no noise reduction to ask for
                if v is not None and not isinstance(v, dict):
                    raise invalid_type(param, "an object or null", v)
                if v is not None and v.get("type") not in ("near_field", "far_field"):
                    raise ClientError("invalid_value", f"Invalid value for '{param}.type': "
                                      "supported values are 'near_field' and 'far_field'.", f"{param}.type")
                out["noise_reduction"] = dict(v) if v is not None else None
            else:
                raise ClientError("unknown_parameter", f"Unknown parameter: '{param}'.", param)
    return out
