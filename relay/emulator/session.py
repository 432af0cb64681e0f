"""One emulated Gemini Live session: setup, conversation history and the streamed replies.

``Session`` is assembled from mixins, one concept each: the replies (``replies.py``), realtime
input (``realtime.py``) and the connection's ageing, resumption updates and goAway
(``lifetime.py``). What outlives a connection is in ``registry.py``, which is all a session knows
of the server.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import orjson
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from relay.gate import Gate

from .audio import InputAudio
from .history import last_user_text
from .images import Image, turn_images
from .models import AUDIO_INPUT_ONLY, interaction_status
from .options import EmulatorOptions
from .realtime import RealtimeInput
from .registry import LogicalSession, Registry
from .replies import Replies, Reply
from .setup import SessionConfig, parse_setup
from .tools import calls_in, declared_functions, result_text, valid_function_responses
from .wire import (
    INTERNAL_ERROR,
    INVALID_ARGUMENT,
    INVALID_JSON,
    Backend,
    Endpoint,
    Fault,
    ProtocolError,
    camel_key,
    find_faults,
    normalize,
)

__all__ = ["Session"]

log = logging.getLogger(__name__)

_KNOWN_MESSAGES = frozenset({"setup", "clientContent", "realtimeInput", "toolResponse", "contextUpdate"})
# A send is shielded so a cancelled reply never tears a frame; this bounds the shield if the
# peer stops reading.
_SEND_GUARD = 10.0
_CLOSE_GUARD = 5.0
_MAX_REASON_BYTES = 123  # close-frame payload limit minus the code


# Replies before RealtimeInput: its declarations of the reply methods exist for type checkers only.
class Session(Replies, RealtimeInput):
    """Drives one accepted WebSocket until either side closes it.

    Replies run as a separate task under their own cancel scope so a new turn can interrupt
    them; all sends go through one lock so frames from the two tasks never interleave.
    """

    def __init__(self, registry: Registry, options: EmulatorOptions, ws: WebSocketConnection, endpoint: Endpoint):
        self._registry = registry
        self._options = options
        self._received = registry.connection_opened()
        self._ws = ws
        self._endpoint = endpoint
        self._config: SessionConfig | None = None
        self._logical: LogicalSession | None = None
        self._input: InputAudio | None = None
        self._history: list[dict[str, Any]] = []
        self._counted = (0, 0, 0, 0)
        self._client_index = -1
        self._completed = 0
        self._goaway_sent = False
        self._send_lock = Gate()
        self._reply: Reply | None = None
        self._nursery: trio.Nursery | None = None
        self._pending_calls: dict[str, str] = {}  # call id → name, awaiting a toolResponse
        self._running: set[str] = set()  # those of them that run NON_BLOCKING (the model talks on)
        self._tool_results: list[dict[str, Any]] = []
        self._images: list[Image] = []  # received since the previous reply, which acknowledges them

    @property
    def logical(self) -> LogicalSession | None:
        """The logical session this connection carries, once setup has succeeded."""
        return self._logical

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
        self._client_index += 1
        # A benchmark's audio stream would grow this list (and the GC's work) without bound.
        if not (self._options.echo_audio and _is_audio_input(message)):
            self._registry.received.append(message)
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
        if key == "contextUpdate" and not re.search(self._options.context_update_models, self._config.model):
            # Older models' API has no such field, so the service fails to parse the message.
            raise ProtocolError(1007, f'Invalid JSON payload received. Unknown name "{raw_key}": Cannot find field.')
        if not isinstance(body, dict):
            raise ProtocolError.of(INVALID_ARGUMENT)
        if key in ("clientContent", "toolResponse") and not self._config.rules.conversation:
            raise ProtocolError.of(AUDIO_INPUT_ONLY)  # a listening model takes no turns and has no tools
        if key == "clientContent":
            await self._on_client_content(body)
        elif key == "realtimeInput":
            await self._on_realtime_input(body)
        elif key == "contextUpdate":
            self._on_context_update(body)
        elif key == "toolResponse":
            await self._on_tool_response(body)

    async def _on_setup(self, body: Any) -> None:
        if self._config is not None:
            raise ProtocolError.of(INVALID_ARGUMENT)
        config = parse_setup(body, self._endpoint.backend)
        if config.resume_handle is not None:
            self._logical = self._registry.resume_session(config.resume_handle)
        else:
            self._logical = self._registry.start_session(self._history)
        # A resumed session keeps its history but takes everything else from the new setup.
        self._history = self._logical.history
        self._logical.config = self._config = config
        self._input = InputAudio(
            config.input_settings,
            threshold=self._options.vad_threshold,
            silence_ms=self._options.vad_silence_ms,
            max_speech_ms=self._options.vad_max_speech_ms,
        )
        await self._send({"setupComplete": {}})
        await self._resumable(self._history)
        self._start_clock()

    async def _on_client_content(self, body: dict[str, Any]) -> None:
        turns = body.get("turns") or []
        if not isinstance(turns, list) or not all(self._valid_turn(t) for t in turns):
            raise ProtocolError.of(INVALID_ARGUMENT)
        assert self._config is not None
        self._config.rules.check_turns(turns)
        images = turn_images(turns)
        # Any clientContent interrupts the current generation (LiveClientContent docs).
        await self._interrupt()
        self._images.extend(images)
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

    def _on_context_update(self, body: dict[str, Any]) -> None:
        """Replace the system instruction and/or the declared functions (the model accepts it)."""
        assert self._config is not None
        instruction = body.get("systemInstruction")
        tools = body.get("tools")
        # The SDK's LiveClientContextUpdate wraps the list ({"tools": [...]}); a bare list is accepted too.
        if isinstance(tools, dict):
            tools = tools.get("tools")
        if not isinstance(instruction, dict | None) or not isinstance(tools, list | None):
            raise ProtocolError.of(INVALID_ARGUMENT)
        if instruction is not None:
            self._config.system_instruction = instruction
        if tools is not None:
            self._config.non_blocking = self._config.rules.non_blocking(tools)
            self._config.functions = declared_functions({"tools": tools})

    # -- tools ---------------------------------------------------------------------------------

    async def _call_tools(self, reply: Reply, user_text: str, lead: list[dict[str, Any]]) -> str | None:
        """A turn that names declared functions is answered with a toolCall (relay/emulator/tools.py),
        after ``lead`` (the thought part of a thinking model). Returns None without calls, "talk" when
        every call runs NON_BLOCKING (the model goes on talking in this turn), else "wait"."""
        assert self._config is not None and self._logical is not None
        functions = self._config.functions
        calls = calls_in(user_text, functions) if functions else []
        if not calls:
            return None
        function_calls = []
        background = []
        for name, args in calls:
            self._logical.calls += 1  # per logical session, so ids stay unique across resumptions
            call_id = f"function-call-{self._logical.id}-{self._logical.calls}"
            self._pending_calls[call_id] = name
            if name in self._config.non_blocking:
                background.append(call_id)
            function_calls.append({"id": call_id, "name": name, "args": args})
        # The model waits for the toolResponse if any call blocks it; the others run meanwhile.
        talks = len(background) == len(calls)
        self._running.update(background)
        self._tool_results = []
        messages = [*lead, {"toolCall": {"functionCalls": function_calls}}]
        if not talks and self._config.rules.interaction_status:
            status = interaction_status(waits_on_call=True, calls_running=bool(self._running))
            messages.append({"serverContent": {"turnComplete": True, "interactionStatus": status}})
        await self._send_all(messages, binary=reply.binary)
        reply.finished = True
        await self._not_resumable(binary=reply.binary)
        if Fault.CANCEL_TOOLS in find_faults(user_text):
            ids = list(self._pending_calls)
            self._pending_calls.clear()
            self._running.clear()
            await self._send({"toolCallCancellation": {"ids": ids}}, binary=reply.binary)
        return "talk" if talks else "wait"

    async def _on_tool_response(self, body: dict[str, Any]) -> None:
        assert self._config is not None
        responses = valid_function_responses(body)
        if responses is None:
            raise ProtocolError.of(INVALID_ARGUMENT)
        # Vertex's FunctionResponse has no willContinue (the SDK refuses to send it there).
        if self._endpoint.backend is Backend.VERTEX and any("willContinue" in r for r in responses):
            raise ProtocolError.of(INVALID_ARGUMENT)
        scheduling = self._config.rules.scheduling_of(responses)
        for r in responses:
            call_id = r.get("id") or next((c for c, n in self._pending_calls.items() if n == r["name"]), None)
            if call_id in self._pending_calls:
                del self._pending_calls[call_id]
                self._running.discard(call_id)
                self._tool_results.append(r)
        self._history.append({"role": "user", "parts": [{"functionResponse": r} for r in responses]})
        if self._pending_calls or not self._tool_results:
            return
        # Gemini continues by itself once every call is answered: in a new turn after what it may
        # still be saying (WHEN_IDLE), at once (INTERRUPT) or not at all (SILENT).
        results, self._tool_results = self._tool_results, []
        if scheduling == "SILENT":
            return
        if scheduling == "INTERRUPT":
            await self._interrupt()
        speaking = self._reply if self._reply is not None and not self._reply.done.is_set() else None
        self._start_reply("", text=result_text(results), after=speaking)

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

