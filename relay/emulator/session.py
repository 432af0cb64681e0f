"""One emulated Gemini Live session: setup, conversation history and the streamed replies."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import attrs
import orjson
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from .wire import (
    INTERNAL_ERROR,
    INVALID_ARGUMENT,
    INVALID_JSON,
    NOT_FOUND,
    Endpoint,
    Fault,
    ProtocolError,
    audio_reply_frames,
    camel_key,
    cap_words,
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


@attrs.define
class SessionConfig:
    """The parts of ``setup`` the emulator honours (keys already camelCased)."""

    model: str
    modality: str
    system_instruction: Any = None
    max_output_tokens: int | None = None
    input_transcription: bool = False
    output_transcription: bool = False
    # Kept verbatim for the VAD emulation of audio input, which will read it.
    realtime_input_config: dict[str, Any] = attrs.Factory(dict)
    resumption: dict[str, Any] | None = None


@attrs.define
class ResumeState:
    """What a resumption handle restores: the logical session and its history."""

    session_id: str
    turns: int
    history: list[dict[str, Any]]


def parse_setup(body: Any) -> SessionConfig:
    """Validate a normalized ``setup`` body; raise ProtocolError(1007) like the service does."""
    if not isinstance(body, dict):
        raise ProtocolError.of(INVALID_ARGUMENT)
    model = body.get("model")
    gen = body.get("generationConfig") or {}
    if not isinstance(model, str) or not model or not isinstance(gen, dict):
        raise ProtocolError.of(INVALID_ARGUMENT)
    # Vertex defaults to AUDIO when absent (the SDK fills it in); the service wants exactly one.
    modalities = gen.get("responseModalities") or ["AUDIO"]
    if not isinstance(modalities, list) or len(modalities) != 1 or modalities[0] not in ("TEXT", "AUDIO"):
        raise ProtocolError.of(INVALID_ARGUMENT)
    max_tokens = gen.get("maxOutputTokens")
    if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int)):
        raise ProtocolError.of(INVALID_ARGUMENT)
    ric = body.get("realtimeInputConfig") or {}
    resumption = body.get("sessionResumption")
    if not isinstance(ric, dict) or not isinstance(resumption, dict | None):
        raise ProtocolError.of(INVALID_ARGUMENT)
    return SessionConfig(
        model=model,
        modality=modalities[0],
        system_instruction=body.get("systemInstruction"),
        max_output_tokens=max_tokens,
        input_transcription=body.get("inputAudioTranscription") is not None,
        output_transcription=body.get("outputAudioTranscription") is not None,
        realtime_input_config=ric,
        resumption=resumption,
    )


def _user_texts(content: Any) -> list[str]:
    if not isinstance(content, dict) or content.get("role", "user") != "user":
        return []
    parts = content.get("parts") or []
    return [p["text"] for p in parts if isinstance(p, dict) and isinstance(p.get("text"), str)]


@attrs.define(eq=False)
class _Reply:
    scope: trio.CancelScope
    binary: bool = False
    finished: bool = False
    sent_text: str = ""
    done: trio.Event = attrs.Factory(trio.Event)


class Session:
    """Drives one accepted WebSocket until either side closes it.

    Replies run as a separate task under their own cancel scope so a new turn can interrupt
    them; all sends go through one lock so frames from the two tasks never interleave.
    """

    def __init__(self, emulator: Emulator, ws: WebSocketConnection, endpoint: Endpoint) -> None:
        self._emulator = emulator
        self._options = emulator.options
        self._ws = ws
        self._endpoint = endpoint
        self._config: SessionConfig | None = None
        self._history: list[dict[str, Any]] = []
        self._session_id = ""
        self._turns = 0
        self._send_lock = trio.Lock()
        self._reply: _Reply | None = None
        self._nursery: trio.Nursery | None = None

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
        self._emulator.received.append(message)
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
        # toolResponse: recorded in ``received`` only; tool calls are not emulated yet.

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
        await self._send({"setupComplete": {}})

    async def _on_client_content(self, body: dict[str, Any]) -> None:
        turns = body.get("turns") or []
        if not isinstance(turns, list) or not all(self._valid_turn(t) for t in turns):
            raise ProtocolError.of(INVALID_ARGUMENT)
        # Any clientContent interrupts the current generation (LiveClientContent docs).
        await self._interrupt()
        self._history.extend(turns)
        if body.get("turnComplete"):
            self._start_reply()

    @staticmethod
    def _valid_turn(turn: Any) -> bool:
        return (
            isinstance(turn, dict)
            and turn.get("role", "user") in ("user", "model")
            and isinstance(turn.get("parts", []), list)
        )

    async def _on_realtime_input(self, body: dict[str, Any]) -> None:
        text = body.get("text")
        if isinstance(text, str):
            await self._interrupt()
            self._history.append({"role": "user", "parts": [{"text": text}]})
            self._start_reply()
            return
        self._on_realtime_media(body)

    def _on_realtime_media(self, body: dict[str, Any]) -> None:
        """Audio, video, activity and stream-end signals: recorded only, nothing is generated.

        This is the hook for voice-activity emulation, which will use
        ``self._config.realtime_input_config``.
        """

    # -- replies -------------------------------------------------------------------------------

    def _last_user_text(self) -> str:
        for content in reversed(self._history):
            texts = _user_texts(content)
            if texts:
                return " ".join(texts)
        return ""

    def _start_reply(self) -> None:
        assert self._nursery is not None
        reply = _Reply(scope=trio.CancelScope())
        self._reply = reply
        self._nursery.start_soon(self._run_reply, reply, self._last_user_text())

    async def _interrupt(self) -> None:
        reply = self._reply
        if reply is None or reply.done.is_set():
            return
        reply.scope.cancel()
        await reply.done.wait()
        if not reply.finished:
            await self._send({"serverContent": {"interrupted": True}}, binary=reply.binary)

    async def _run_reply(self, reply: _Reply, user_text: str) -> None:
        try:
            with reply.scope:
                await self._stream_reply(reply, user_text)
        except ConnectionClosed:
            pass
        finally:
            if reply.sent_text:
                self._history.append({"role": "model", "parts": [{"text": reply.sent_text}]})
            reply.done.set()

    async def _stream_reply(self, reply: _Reply, user_text: str) -> None:
        assert self._config is not None
        # A reply interrupted before it started must not leak its first (shielded) frame.
        await trio.lowlevel.checkpoint_if_cancelled()
        faults = find_faults(user_text)
        for fault, code_reason in _CLOSE_FAULTS.items():
            if fault in faults:
                await self._close(*code_reason)
                return
        reply.binary = Fault.BINARY in faults
        delay = _SLOW_DELAY if Fault.SLOW in faults else self._options.chunk_delay
        if Fault.GOAWAY in faults:
            await self._send({"goAway": {"timeLeft": "50s"}}, binary=reply.binary)
        text = cap_words(f"Echo: {user_text}", self._config.max_output_tokens)
        first = True
        for message, covered in self._reply_frames(text):
            if not first:
                if delay > 0:
                    await trio.sleep(delay)
                else:
                    await trio.lowlevel.checkpoint_if_cancelled()
            first = False
            await self._send(message, binary=reply.binary)
            reply.sent_text += covered
            if Fault.MID_1011 in faults:
                await self._close(*INTERNAL_ERROR)
                return
        # From here on nothing yields to cancellation: a reply whose generation completed is
        # never reported as interrupted.
        reply.finished = True
        await self._send({"serverContent": {"generationComplete": True}}, binary=reply.binary)
        usage = usage_metadata(self._endpoint.backend, self._prompt_tokens(), count_words(text), self._config.modality)
        await self._send({"serverContent": {"turnComplete": True}, "usageMetadata": usage}, binary=reply.binary)
        self._turns += 1
        if self._config.resumption is not None:
            handle = f"{self._session_id}-h{self._turns}"
            self._emulator.remember(
                handle,
                ResumeState(self._session_id, self._turns, [*self._history, self._model_turn(reply)]),
            )
            update = {"sessionResumptionUpdate": {"newHandle": handle, "resumable": True}}
            await self._send(update, binary=reply.binary)

    @staticmethod
    def _model_turn(reply: _Reply) -> dict[str, Any]:
        return {"role": "model", "parts": [{"text": reply.sent_text}]}

    def _reply_frames(self, text: str) -> Iterator[tuple[dict[str, Any], str]]:
        assert self._config is not None
        if self._config.modality == "TEXT":
            return text_reply_frames(text, self._options.chunk_words)
        return audio_reply_frames(
            text, self._options.chunk_words, self._options.audio_chunk_ms, self._config.output_transcription
        )

    def _prompt_tokens(self) -> int:
        return sum(count_words(text) for content in self._history for text in _user_texts(content))

    # -- I/O -----------------------------------------------------------------------------------

    async def _send(self, message: dict[str, Any], *, binary: bool = False) -> None:
        data = orjson.dumps(message)
        payload: str | bytes = data if binary else data.decode()
        with trio.CancelScope(shield=True):
            with trio.move_on_after(_SEND_GUARD) as guard:
                async with self._send_lock:
                    await self._ws.send_message(payload)
        if guard.cancelled_caught:
            log.warning("emulator: peer stopped reading; dropping connection")
            await self._close(*INTERNAL_ERROR)
            raise ConnectionClosed(None)

    async def _close(self, code: int, reason: str) -> None:
        reason_bytes = reason.encode()[:_MAX_REASON_BYTES]
        with trio.CancelScope(shield=True), trio.move_on_after(_CLOSE_GUARD):
            await self._ws.aclose(code, reason_bytes.decode(errors="ignore"))


__all__ = ["ResumeState", "Session", "SessionConfig", "parse_setup"]
