"""One emulated Gemini Live session: setup, conversation history and the streamed replies."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import attrs
import orjson
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from relay.gate import Gate

from .audio import InputAudio, audio_blobs, decode_data, parse_rate, transcript_text, turn_ms
from .history import audio_turn_transcript, last_user_text, model_turn, prompt_tokens, spoken_turn
from .setup import ResumeState, SessionConfig, parse_setup
from .tools import calls_in, declared_functions, result_text, valid_function_responses
from .wire import (
    INTERNAL_ERROR,
    INVALID_ARGUMENT,
    INVALID_JSON,
    NOT_FOUND,
    Backend,
    Endpoint,
    Fault,
    ProtocolError,
    audio_frame_seconds,
    audio_reply_frames,
    camel_key,
    cap_words,
    chunk_text,
    count_words,
    find_faults,
    normalize,
    text_reply_frames,
    usage_metadata,
)

if TYPE_CHECKING:
    from .server import Emulator

log = logging.getLogger(__name__)

_KNOWN_MESSAGES = frozenset({"setup", "clientContent", "realtimeInput", "toolResponse", "contextUpdate"})
_CLOSE_FAULTS = {
    Fault.CLOSE_1011: INTERNAL_ERROR,
    Fault.CLOSE_1007: INVALID_ARGUMENT,
    Fault.CLOSE_1008: NOT_FOUND,
}
_SLOW_DELAY = 0.5
# A send is shielded so a cancelled reply never tears a frame; this bounds the shield if the
# peer stops reading.
_SEND_GUARD = 10.0
_CLOSE_GUARD = 5.0
_MAX_REASON_BYTES = 123  # close-frame payload limit minus the code


@attrs.define(eq=False)
class _Reply:
    scope: trio.CancelScope
    # NO_INTERRUPTION: the reply this one queues behind; it starts once that one is done.
    after: _Reply | None = None
    # An audio turn is put into the history (and transcribed) by its reply, after any queueing,
    # so the history keeps the order in which things were said and answered.
    audio_turn: dict[str, Any] | None = None
    turn_recorded: bool = False
    binary: bool = False
    finished: bool = False
    sent_text: str = ""
    done: trio.Event = attrs.Factory(trio.Event)
    # A continuation after a toolResponse says this text instead of echoing the user.
    text: str | None = None


class Session:
    """Drives one accepted WebSocket until either side closes it.

    Replies run as a separate task under their own cancel scope so a new turn can interrupt
    them; all sends go through one lock so frames from the two tasks never interleave.
    """

    def __init__(self, emulator: Emulator, ws: WebSocketConnection, endpoint: Endpoint) -> None:
        self._emulator = emulator
        self._options = emulator.options
        self._received: list[dict[str, Any]] = []
        emulator.by_connection.append(self._received)
        self._ws = ws
        self._endpoint = endpoint
        self._config: SessionConfig | None = None
        self._input: InputAudio | None = None
        self._history: list[dict[str, Any]] = []
        # (entries counted, text tokens, audio tokens): history only grows, so usage is counted once per entry.
        self._counted = (0, 0, 0)
        self._session_id = ""
        self._turns = 0
        self._send_lock = Gate()
        self._reply: _Reply | None = None
        self._nursery: trio.Nursery | None = None
        self._functions: dict[str, dict[str, Any]] = {}  # declared tools: name → parameters
        self._pending_calls: dict[str, str] = {}  # call id → name, awaiting a toolResponse
        self._tool_results: list[dict[str, Any]] = []
        self._calls_made = 0

    async def run(self) -> None:
        """Serve the connection; returns once it is closed."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            try:
                while True:
                    await self._dispatch(self._parse(await self._ws.get_message()))
            except ProtocolError as exc:
                await self._close(exc.code, exc.reason)
            except ConnectionClosed:
                pass
            finally:
                nursery.cancel_scope.cancel()

    def _parse(self, raw: str | bytes) -> dict[str, Any]:
        try:
            message = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise ProtocolError.of(INVALID_JSON) from None
        if not isinstance(message, dict):
            raise ProtocolError.of(INVALID_JSON)
        # A benchmark's audio stream would grow this list (and the GC's work) without bound.
        if not (self._options.echo_audio and _is_audio_input(message)):
            self._emulator.received.append(message)
            self._received.append(message)
        return message

    async def _dispatch(self, message: dict[str, Any]) -> None:
        if len(message) != 1:  # the message is a proto oneof
            raise ProtocolError.of(INVALID_ARGUMENT)
        ((raw_key, raw_body),) = message.items()
        key = camel_key(raw_key)
        if key not in _KNOWN_MESSAGES:
            raise ProtocolError(1007, f'Invalid JSON payload received. Unknown name "{raw_key}": Cannot find field.')
        body = normalize(raw_body)
        if key == "setup":
            await self._on_setup(body)
            return
        if self._config is None:
            raise ProtocolError.of(INVALID_ARGUMENT)
        if not isinstance(body, dict):
            raise ProtocolError.of(INVALID_ARGUMENT)
        if key == "clientContent":
            await self._on_client_content(body)
        elif key == "realtimeInput":
            await self._on_realtime_input(body)
        elif key == "contextUpdate" and "systemInstruction" in body:
            self._config.system_instruction = body["systemInstruction"]
        elif key == "toolResponse":
            await self._on_tool_response(body)

    async def _on_setup(self, body: Any) -> None:
        if self._config is not None:
            raise ProtocolError.of(INVALID_ARGUMENT)
        config = parse_setup(body)
        handle = (config.resumption or {}).get("handle")
        if handle:
            state = self._emulator.resume(handle)
            if state is None:
                raise ProtocolError(1008, "BidiGenerateContent session not found.")
            self._session_id, self._turns, self._history = state.session_id, state.turns, list(state.history)
        else:
            self._session_id = self._emulator.new_session_id()
        self._config = config
        self._functions = declared_functions(body) if isinstance(body, dict) else {}
        self._input = InputAudio(
            config.input_settings,
            threshold=self._options.vad_threshold,
            silence_ms=self._options.vad_silence_ms,
            max_speech_ms=self._options.vad_max_speech_ms,
        )
        await self._send({"setupComplete": {}})

    async def _on_client_content(self, body: dict[str, Any]) -> None:
        turns = body.get("turns") or []
        if not isinstance(turns, list) or not all(self._valid_turn(t) for t in turns):
            raise ProtocolError.of(INVALID_ARGUMENT)
        # Any clientContent interrupts the current generation (LiveClientContent docs).
        await self._interrupt()
        self._history.extend(turns)
        if body.get("turnComplete"):
            self._start_reply(last_user_text(self._history))

    @staticmethod
    def _valid_turn(turn: Any) -> bool:
        return (
            isinstance(turn, dict)
            and turn.get("role", "user") in ("user", "model")
            and isinstance(turn.get("parts", []), list)
        )

    # -- realtime input --------------------------------------------------------------------------

    async def _on_realtime_input(self, body: dict[str, Any]) -> None:
        # One field per message is the norm; should several come together they are handled in
        # this fixed order, which keeps the outcome deterministic.
        if "activityStart" in body:
            await self._on_activity_start()
        for blob in audio_blobs(body):
            await self._on_audio(blob)
        if "activityEnd" in body:
            await self._on_activity_end()
        if "audioStreamEnd" in body:
            await self._on_audio_stream_end(body["audioStreamEnd"])
        text = body.get("text")
        if isinstance(text, str):
            await self._interrupt()
            self._history.append({"role": "user", "parts": [{"text": text}]})
            self._start_reply(text)
        # video: recorded in ``received`` only.

    async def _on_audio(self, blob: dict[str, Any]) -> None:
        assert self._config is not None and self._input is not None
        mime_type = blob.get("mimeType", "audio/pcm")
        rate = parse_rate(mime_type)
        if rate is None:
            return
        if self._options.echo_audio:
            # Validated like any chunk (bad base64 still closes 1007), then returned untouched so a
            # client can match the echo to what it sent by the string alone.
            data = blob.get("data")
            decode_data(data)
            part = {"inlineData": {"mimeType": mime_type, "data": data}}
            await self._send({"serverContent": {"modelTurn": {"parts": [part]}}})
            return
        result = self._input.audio(decode_data(blob.get("data")), rate)
        if result.loud and self._config.input_settings.interrupts:
            await self._interrupt()  # barge-in
        if result.ended_us is not None:
            await self._end_audio_turn(result.ended_us)

    async def _on_activity_start(self) -> None:
        assert self._config is not None and self._input is not None
        # The service only takes explicit activity signals with automatic detection disabled.
        if self._input.automatic:
            raise ProtocolError.of(INVALID_ARGUMENT)
        if self._input.activity_start() and self._config.input_settings.interrupts:
            await self._interrupt()

    async def _on_activity_end(self) -> None:
        assert self._input is not None
        if self._input.automatic:
            raise ProtocolError.of(INVALID_ARGUMENT)
        duration = self._input.activity_end()
        if duration is not None:
            await self._end_audio_turn(duration)

    async def _on_audio_stream_end(self, value: Any) -> None:
        assert self._input is not None
        # Vertex has no audioStreamEnd (the SDK refuses to send it there); the service rejects it.
        if self._endpoint.backend is Backend.VERTEX:
            raise ProtocolError.of(INVALID_ARGUMENT)
        if value is True:
            duration = self._input.stream_end()
            if duration is not None:
                await self._end_audio_turn(duration)

    async def _end_audio_turn(self, duration_us: int) -> None:
        assert self._config is not None
        if self._options.echo_audio:
            return  # echo mode never answers audio (an activityEnd in manual mode lands here)
        ms = turn_ms(duration_us)
        transcript = self._options.audio_transcript or transcript_text(ms)
        after = None
        if self._config.input_settings.interrupts:
            await self._interrupt()
        elif self._reply is not None and not self._reply.done.is_set():
            after = self._reply
        self._start_reply(transcript, audio_turn=spoken_turn(ms, transcript), after=after)

    # -- tools ---------------------------------------------------------------------------------

    async def _call_tools(self, reply: _Reply, user_text: str) -> bool:
        """A turn that names declared functions is answered with a toolCall (relay/emulator/tools.py)."""
        calls = calls_in(user_text, self._functions) if self._functions else []
        if not calls:
            return False
        function_calls = []
        for name, args in calls:
            self._calls_made += 1
            call_id = f"function-call-{self._session_id}-{self._calls_made}"
            self._pending_calls[call_id] = name
            function_calls.append({"id": call_id, "name": name, "args": args})
        self._tool_results = []
        await self._send({"toolCall": {"functionCalls": function_calls}}, binary=reply.binary)
        reply.finished = True
        if Fault.CANCEL_TOOLS in find_faults(user_text):
            ids = list(self._pending_calls)
            self._pending_calls.clear()
            await self._send({"toolCallCancellation": {"ids": ids}}, binary=reply.binary)
        return True

    async def _on_tool_response(self, body: dict[str, Any]) -> None:
        responses = valid_function_responses(body)
        if responses is None:
            raise ProtocolError.of(INVALID_ARGUMENT)
        for r in responses:
            call_id = r.get("id") or next((c for c, n in self._pending_calls.items() if n == r["name"]), None)
            if call_id in self._pending_calls:
                del self._pending_calls[call_id]
                self._tool_results.append(r)
        self._history.append({"role": "user", "parts": [{"functionResponse": r} for r in responses]})
        if not self._pending_calls and self._tool_results:
            # Gemini continues by itself once every call is answered.
            results, self._tool_results = self._tool_results, []
            self._start_reply("", text=result_text(results))

    # -- replies -------------------------------------------------------------------------------

    def _start_reply(
        self,
        user_text: str,
        *,
        audio_turn: dict[str, Any] | None = None,
        after: _Reply | None = None,
        text: str | None = None,
    ) -> None:
        assert self._nursery is not None
        reply = _Reply(scope=trio.CancelScope(), after=after, audio_turn=audio_turn, text=text)
        self._reply = reply
        self._nursery.start_soon(self._run_reply, reply, user_text)

    async def _interrupt(self) -> None:
        """Stop the streaming reply and any queued behind it; say so if one had not finished."""
        pending: list[_Reply] = []
        reply = self._reply
        while reply is not None and not reply.done.is_set():
            pending.append(reply)
            reply = reply.after
        if not pending:
            return
        for reply in pending:
            reply.scope.cancel()
        for reply in pending:
            await reply.done.wait()
        if not all(reply.finished for reply in pending):
            await self._send({"serverContent": {"interrupted": True}}, binary=pending[-1].binary)

    async def _run_reply(self, reply: _Reply, user_text: str) -> None:
        try:
            with reply.scope:
                if reply.after is not None:
                    await reply.after.done.wait()
                await self._record_audio_turn(reply)
                await self._stream_reply(reply, user_text)
            # Cancelled while queued: the user still spoke, so the turn is kept and transcribed.
            await self._record_audio_turn(reply)
        except ConnectionClosed:
            pass
        finally:
            reply.after = None
            if reply.sent_text:
                self._history.append(model_turn(reply.sent_text))
            reply.done.set()

    async def _record_audio_turn(self, reply: _Reply) -> None:
        assert self._config is not None
        if reply.audio_turn is None or reply.turn_recorded:
            return
        reply.turn_recorded = True
        self._history.append(reply.audio_turn)
        if self._config.input_transcription:
            # Sends are shielded, so the whole transcript goes out even for a cancelled reply.
            for piece in chunk_text(audio_turn_transcript(reply.audio_turn), self._options.chunk_words):
                await self._send({"serverContent": {"inputTranscription": {"text": piece}}})
            await self._send({"serverContent": {"inputTranscription": {"finished": True}}})

    async def _stream_reply(self, reply: _Reply, user_text: str) -> None:
        assert self._config is not None
        # A reply interrupted before it started must not leak its first (shielded) frame.
        await trio.lowlevel.checkpoint_if_cancelled()
        faults = find_faults(user_text)
        for fault, code_reason in _CLOSE_FAULTS.items():
            if fault in faults:
                await self._close(*code_reason)
                return
        if Fault.SILENT in faults:
            await trio.sleep_forever()  # a turn taken and never answered (the session itself stays up)
        reply.binary = Fault.BINARY in faults
        delay = _SLOW_DELAY if Fault.SLOW in faults else self._options.chunk_delay
        if Fault.GOAWAY in faults:
            await self._send({"goAway": {"timeLeft": "50s"}}, binary=reply.binary)
        if reply.text is None and await self._call_tools(reply, user_text):
            return
        text = cap_words(reply.text if reply.text is not None else f"Echo: {user_text}", self._config.max_output_tokens)
        text_tokens, audio_prompt_tokens = self._prompt_tokens()
        usage = usage_metadata(
            self._endpoint.backend, text_tokens, count_words(text), self._config.modality, audio_prompt_tokens
        )
        ending = [{"serverContent": {"generationComplete": True}},
                  {"serverContent": {"turnComplete": True}, "usageMetadata": usage}]
        if delay == 0 and not self._options.audio_realtime and Fault.MID_1011 not in faults:
            # Unpaced, the whole reply exists at once: one write, as a busy server's TCP stream would carry it.
            frames = list(self._reply_frames(text))
            reply.finished = True
            await self._send_all([m for m, _ in frames] + ending, binary=reply.binary)
            reply.sent_text += "".join(covered for _, covered in frames)
        else:
            wait: float | None = None  # None before the first frame
            for message, covered in self._reply_frames(text):
                if wait is not None:
                    if wait > 0:
                        await trio.sleep(wait)
                    else:
                        await trio.lowlevel.checkpoint_if_cancelled()
                await self._send(message, binary=reply.binary)
                reply.sent_text += covered
                if Fault.MID_1011 in faults:
                    await self._close(*INTERNAL_ERROR)
                    return
                wait = self._pause_after(message, delay)
            # From here on nothing yields to cancellation: a reply whose generation completed is
            # never reported as interrupted.
            reply.finished = True
            await self._send_all(ending, binary=reply.binary)
        self._turns += 1
        if self._config.resumption is not None:
            handle = f"{self._session_id}-h{self._turns}"
            self._emulator.remember(
                handle,
                ResumeState(self._session_id, self._turns, [*self._history, model_turn(reply.sent_text)]),
            )
            update = {"sessionResumptionUpdate": {"newHandle": handle, "resumable": True}}
            await self._send(update, binary=reply.binary)

    def _prompt_tokens(self) -> tuple[int, int]:
        seen, text, audio = self._counted
        if seen > len(self._history):  # replaced by a resumed session's
            seen, text, audio = 0, 0, 0
        more_text, more_audio = prompt_tokens(self._history[seen:])
        self._counted = (len(self._history), text + more_text, audio + more_audio)
        return text + more_text, audio + more_audio

    def _pause_after(self, message: dict[str, Any], delay: float) -> float:
        """How long to wait after sending a reply frame before the next one."""
        if "outputTranscription" in message["serverContent"]:
            return 0.0  # a transcription piece goes out together with the audio chunk after it
        if self._options.audio_realtime:
            return max(delay, audio_frame_seconds(message))
        return delay

    def _reply_frames(self, text: str) -> Iterator[tuple[dict[str, Any], str]]:
        assert self._config is not None
        if self._config.modality == "TEXT":
            return text_reply_frames(text, self._options.chunk_words)
        return audio_reply_frames(
            text,
            self._options.chunk_words,
            self._options.audio_chunk_ms,
            self._config.output_transcription,
            self._config.tone_hz,
            self._options.reply_audio_chunks,
        )

    # -- I/O -----------------------------------------------------------------------------------

    async def _send(self, message: dict[str, Any], *, binary: bool = False) -> None:
        await self._send_all([message], binary=binary)

    async def _send_all(self, messages: list[dict[str, Any]], *, binary: bool = False) -> None:
        """Send `messages` in order, in one write where the socket can (the relay's seam sockets)."""
        datas = [orjson.dumps(m) for m in messages]
        batch = getattr(self._ws, "send_texts", None)
        # Shielded from the reply's cancellation, yet bounded by its own deadline: one scope does both.
        with trio.CancelScope(shield=True, deadline=trio.current_time() + _SEND_GUARD) as guard:
            async with self._send_lock:
                if batch is not None and not binary:
                    await batch(datas)
                else:
                    for data in datas:
                        await self._ws.send_message(data if binary else data.decode())
        if guard.cancelled_caught:
            log.warning("emulator: peer stopped reading; dropping connection")
            await self._close(*INTERNAL_ERROR)
            raise ConnectionClosed(None)

    async def _close(self, code: int, reason: str) -> None:
        reason_bytes = reason.encode()[:_MAX_REASON_BYTES]
        with trio.CancelScope(shield=True), trio.move_on_after(_CLOSE_GUARD):
            await self._ws.aclose(code, reason_bytes.decode(errors="ignore"))


def _is_audio_input(message: dict[str, Any]) -> bool:
    """A ``realtimeInput`` message carrying nothing but audio (what echo mode sends back)."""
    body = message.get("realtimeInput", message.get("realtime_input"))
    return isinstance(body, dict) and body.keys() <= {"audio", "mediaChunks", "media_chunks"}


__all__ = ["ResumeState", "Session", "SessionConfig", "parse_setup"]
